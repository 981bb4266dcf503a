// The request → reply vectors of tests/vectors/*.vec replayed through the built Worker, once with
// each swarm store: the same bytes must come back as from the core natively (tests/vectors.rs).
// The Worker serves HTTP only, so the UDP vectors are skipped here, saying so.
//
// The Worker runs on the vectors' policy (the core's defaults) and its own clock: the vectors'
// timestamps lie within seconds of each other, so no reply depends on which clock reads them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startWorker, get } from "./helpers.mjs";

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../vectors");

/** The core's Policy::default(), as vars. */
const VECTOR_POLICY = {
  ANNOUNCE_INTERVAL: "1800", MIN_INTERVAL: "900", PEER_TIMEOUT: "2700",
  NUMWANT_DEFAULT: "50", NUMWANT_MAX: "200", SCRAPE_MAX_HASHES: "64", SPARSE_SWARM_INTERVAL: "0",
};

/** `\xNN` and `\\` escapes of the .vec format, back to bytes. */
function unescape(s) {
  const out = [];
  for (let i = 0; i < s.length;) {
    if (s[i] === "\\" && s[i + 1] === "x") { out.push(parseInt(s.slice(i + 2, i + 4), 16)); i += 4; }
    else if (s[i] === "\\" && s[i + 1] === "\\") { out.push(0x5c); i += 2; }
    else { out.push(s.charCodeAt(i)); i += 1; }
  }
  return Buffer.from(out);
}

/** [{ line, kind, ip, target, want }] of one file. */
function exchanges(text) {
  const out = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const m = /^(http|udp) (\S+) (\d+) (.*)$/.exec(line);
    if (!m) return;
    const reply = lines[i + 1] ?? "";
    assert.ok(reply.startsWith("=>"), `line ${i + 2}: a reply line follows each request`);
    out.push({ line: i + 1, kind: m[1], ip: m[2], target: m[4], want: unescape(reply.replace(/^=> ?/, "")) });
  });
  return out;
}

const files = readdirSync(DIR).filter((f) => f.endsWith(".vec")).sort();

for (const store of ["kv", "durable-object"]) {
  for (const file of files) {
    const all = exchanges(readFileSync(path.join(DIR, file), "latin1"));
    const http = all.filter((x) => x.kind === "http");
    test(`${file} through the Worker with SWARM_STORE=${store}`, async (t) => {
      if (http.length === 0) {
        t.skip(`the Worker serves no UDP: ${all.length} UDP exchanges not replayed`);
        return;
      }
      assert.equal(http.length, all.length, `${file} mixes UDP into an HTTP file`);
      // The edge caps SCRAPE_MAX_HASHES at 50 on Durable Objects (the free plan's subrequests);
      // no vector scrapes more than 3 hashes, so no reply depends on the cap.
      const cap = store === "durable-object" ? { SCRAPE_MAX_HASHES: "50" } : {};
      const mf = await startWorker({ ...VECTOR_POLICY, ...cap, SWARM_STORE: store });
      try {
        for (const x of http) {
          const r = await get(mf, x.target, x.ip);
          assert.equal(r.status, 200, `${file}:${x.line}`);
          assert.equal(r.body.toString("latin1"), x.want.toString("latin1"), `${file}:${x.line}: reply differs`);
        }
      } finally {
        await mf.dispose();
      }
    });
  }
}
