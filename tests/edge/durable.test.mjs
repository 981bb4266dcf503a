// The built Worker with SWARM_STORE = "durable-object", in Miniflare with SQLite-backed Durable
// Objects: what clients see (consistency KV cannot give), what each request costs (from the
// x-do-ops header), the store conformance suite inside the Worker, and a failing object.
//
// Run: npm test (after `worker-build`); tests/run.sh does both.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker, workerOptions, decode, enc, hash, peerId, get as getFrom, announceQuery } from "./helpers.mjs";

let mf;
before(async () => { mf = await startWorker({ SWARM_STORE: "durable-object", CONFORMANCE_TESTS: "1" }); });
after(async () => { await mf?.dispose(); });

const get = (target, ip) => getFrom(mf, target, ip);

async function announce(ip, h, port, opts = {}) {
  const r = await get(`/announce?${announceQuery(h, port, opts)}`, ip);
  assert.equal(r.status, 200);
  return { ...r, d: decode(r.body) };
}

const compact4 = (ip, port) => Buffer.from([...ip.split(".").map(Number), port >> 8, port & 255]);
const costs = (r) => Object.fromEntries(r.doOps.split(" ").map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)]));

test("the store conformance suite passes against Durable Objects", async () => {
  const r = await get("/__conformance?store=durable-object");
  assert.equal(r.status, 200, r.body.toString());
  assert.match(r.body.toString(), /^ok: 10 cases passed against Durable Objects/);
});

test("the second peer of a new torrent finds the first at once, with a full interval", async () => {
  const h = hash(31);
  const first = await announce("10.1.0.1", h, 6881, { left: 5, event: "started" });
  assert.deepEqual(first.d.get("peers"), Buffer.alloc(0));
  assert.equal(first.d.get("interval"), 1800, "no short interval needed: the store is consistent");
  const second = await announce("10.1.0.2", h, 6882, { left: 5, event: "started" });
  assert.deepEqual(second.d.get("peers"), compact4("10.1.0.1", 6881));
  assert.equal(second.d.get("incomplete"), 2);
  assert.equal(second.ops, "list=0 get=0 put=0 delete=0", "no KV at all");
});

test("stopped leaves at once; completed counts are exact under concurrent completions", async () => {
  const h = hash(32);
  const n = 20;
  const ips = Array.from({ length: n }, (_, i) => `10.2.0.${i + 1}`);
  for (const ip of ips) await announce(ip, h, 1, { left: 5, event: "started" });
  const done = await Promise.all(ips.map((ip) => announce(ip, h, 1, { left: 0, event: "completed" })));
  assert.deepEqual(done.map((r) => r.d.get("downloaded")).sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1),
    "each of 20 simultaneous completions counted once, none lost");
  const stop = await announce(ips[0], h, 1, { left: 0, event: "stopped" });
  assert.deepEqual(stop.d.get("peers"), Buffer.alloc(0));
  const r = await get(`/scrape?info_hash=${enc(h)}`);
  const f = decode(r.body).get("files").get(h.toString("latin1"));
  assert.deepEqual([f.get("complete"), f.get("incomplete"), f.get("downloaded")], [n - 1, 0, n]);
});

test("a steady announce costs one object request and no row written; a new peer one row", async () => {
  const h = hash(33);
  const id = peerId();
  const first = await announce("10.3.0.1", h, 1, { left: 3, event: "started", id });
  assert.equal(costs(first).requests, 1);
  assert.equal(costs(first).rows_written, 3, "a new torrent: its table (2 rows, as SQLite bills it) and the peer's row");
  const second = await announce("10.3.0.2", h, 2, { left: 3, event: "started" });
  assert.deepEqual(costs(second), { requests: 1, rows_read: 0, rows_written: 1 }, "a new peer: one row");
  const steady = await announce("10.3.0.1", h, 1, { left: 3, id });
  assert.deepEqual(costs(steady), { requests: 1, rows_read: 0, rows_written: 0 }, "steady: nothing read, nothing written");
  const role = await announce("10.3.0.1", h, 1, { left: 0, id });
  assert.equal(costs(role).rows_written, 1, "becoming a seeder rewrites the row");
  const done = await announce("10.3.0.2", h, 2, { left: 0, event: "completed" });
  assert.equal(costs(done).rows_written, 2, "the row and the completed count");
  const stats = JSON.parse((await get("/stats")).body.toString());
  assert.equal(stats.store, "durable-object");
  assert.ok(stats.announce.do_ops.requests >= 5);
  assert.ok(stats.announce.do_ops.rows_written >= 5);
});

test("a scrape of N hashes asks N objects, and unknown torrents store nothing", async () => {
  const [a, b, unknown] = [hash(34), hash(35), hash(36)];
  await announce("10.4.0.1", a, 1);
  await announce("2001:db8::34", a, 2, { left: 1 });
  await announce("10.4.0.2", b, 1, { left: 1 });
  const r = await get(`/scrape?info_hash=${enc(a)}&info_hash=${enc(b)}&info_hash=${enc(unknown)}`);
  const files = decode(r.body).get("files");
  const counts = (h) => { const f = files.get(h.toString("latin1")); return [f.get("complete"), f.get("incomplete"), f.get("downloaded")]; };
  assert.deepEqual(counts(a), [1, 1, 0], "both families summed");
  assert.deepEqual(counts(b), [0, 1, 0]);
  assert.deepEqual(counts(unknown), [0, 0, 0]);
  assert.deepEqual(costs(r), { requests: 3, rows_read: costs(r).rows_read, rows_written: 0 });
  const again = await get(`/scrape?info_hash=${enc(unknown)}`);
  assert.equal(costs(again).rows_written, 0, "scraping an unknown torrent twice writes nothing");
});

test("a swarm that empties deletes its rows, and a new peer starts it again", async () => {
  const h = hash(37);
  const first = await announce("10.5.0.1", h, 1, { left: 1, event: "started" });
  assert.equal(costs(first).rows_written, 3);
  const stop = await announce("10.5.0.1", h, 1, { left: 1, event: "stopped" });
  assert.equal(costs(stop).rows_written, 0, "no row deleted one by one: the whole storage goes");
  const back = await announce("10.5.0.2", h, 1, { left: 1, event: "started" });
  assert.equal(back.d.get("incomplete"), 1, "the stopped peer is not back");
  assert.equal(costs(back).rows_written, 3, "stored afresh, table and all");
});

/** The tracker with its swarm objects replaced by `script`'s class `Broken` (its socket objects
 * as built). */
async function withBrokenSwarms(script, run) {
  const tracker = workerOptions({ SWARM_STORE: "durable-object" });
  const broken = new Miniflare({
    workers: [
      {
        ...tracker,
        name: "tracker",
        durableObjects: {
          ...tracker.durableObjects,
          SWARM_OBJECTS: { className: "Broken", scriptName: "broken", useSQLite: true },
        },
      },
      {
        name: "broken",
        modules: true,
        compatibilityDate: "2026-07-01",
        script: `${script}
        export default { fetch() { return new Response("not used"); } };`,
        durableObjects: { BROKEN: { className: "Broken", useSQLite: true } },
      },
    ],
    cf: false,
  });
  try {
    await broken.ready;
    await run(broken);
  } finally {
    await broken.dispose();
  }
}

const FAILURES = {
  "throws": `export class Broken { fetch() { throw new Error("internal error"); } }`,
  "is overloaded": `export class Broken {
    fetch() { const e = new Error("Durable Object is overloaded. Too many requests queued."); e.overloaded = true; throw e; }
  }`,
  "has its storage fail": `export class Broken {
    fetch() { return new Response("SQLITE_FULL: database or disk is full", { status: 500 }); }
  }`,
};

for (const [what, script] of Object.entries(FAILURES)) {
  test(`a swarm object that ${what}: a failure reason with a retry hint, counted`, async () => {
    // Before: a well-formed announce without peers and the full 30-minute interval, so the
    // client waited half an hour without a word.
    await withBrokenSwarms(script, async (broken) => {
      const h = hash(38);
      const r = await getFrom(broken, `/announce?${announceQuery(h, 1, { left: 1, event: "started" })}`, "10.6.0.1");
      assert.equal(r.status, 200);
      const d = decode(r.body);
      assert.equal(d.get("failure reason").toString(), "tracker storage unavailable, retry later");
      assert.equal(d.get("retry in"), 5, "BEP 31: minutes");
      assert.equal(r.storeError, "1");
      const s = await getFrom(broken, `/scrape?info_hash=${enc(h)}&info_hash=${enc(hash(39))}`, "10.6.0.1");
      assert.equal(s.status, 200);
      assert.equal(decode(s.body).get("files").size, 2, "zeros for every hash");
      const stats = JSON.parse((await getFrom(broken, "/stats")).body.toString());
      assert.equal(stats.store_errors, 2);
      // A browser's announce over a WebSocket gets a failure message; its socket stays open.
      const res = await broken.dispatchFetch("http://tracker.test/announce", {
        headers: { Upgrade: "websocket", "CF-Connecting-IP": "10.6.0.2" },
      });
      assert.equal(res.status, 101);
      const ws = res.webSocket;
      const inbox = [];
      ws.addEventListener("message", (e) => inbox.push(JSON.parse(e.data)));
      ws.accept();
      const bin = String.fromCharCode(...new Array(20).fill(0x38));
      ws.send(JSON.stringify({
        action: "announce", info_hash: bin, peer_id: bin, left: 1, event: "started", numwant: 0, offers: [],
      }));
      for (let i = 0; i < 50 && !inbox.length; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(inbox[0]?.["failure reason"], "tracker storage unavailable, retry later");
      ws.close(1000, "bye");
    });
  });
}

test("swarms and completed counts survive a restart: objects reload from SQLite", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "edgetracker-do-"));
  const start = () => startWorker({ SWARM_STORE: "durable-object" }, { durableObjectsPersist: dir });
  const h = hash(40);
  try {
    const before = await start();
    try {
      await getFrom(before, `/announce?${announceQuery(h, 1, { left: 0, event: "started" })}`, "10.7.0.1");
      await getFrom(before, `/announce?${announceQuery(h, 2, { left: 5, event: "started" })}`, "10.7.0.2");
      await getFrom(before, `/announce?${announceQuery(h, 2, { left: 0, event: "completed" })}`, "10.7.0.2");
    } finally {
      await before.dispose();
    }
    const after = await start();
    try {
      const r = await getFrom(after, `/announce?${announceQuery(h, 3, { left: 5, event: "started" })}`, "10.7.0.3");
      const d = decode(r.body);
      assert.deepEqual([d.get("complete"), d.get("incomplete"), d.get("downloaded")], [2, 1, 1]);
      const peers = d.get("peers");
      assert.deepEqual([peers.subarray(0, 6), peers.subarray(6)].map((p) => p.toString("hex")).sort(),
        [compact4("10.7.0.1", 1), compact4("10.7.0.2", 2)].map((p) => p.toString("hex")));
      assert.ok(costs(r).rows_read >= 3, `the woken object read its rows (${r.doOps})`);
    } finally {
      await after.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
