// Access control on the edge: an allow list and passkeys from the Worker's vars.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, decode, enc, hash, get, announceQuery } from "./helpers.mjs";

const ALLOWED = hash(0x21);
const OTHER = hash(0x22);
let mf;
before(async () => {
  mf = await startWorker({
    ACCESS_LIST_MODE: "allow",
    ACCESS_LIST: `${ALLOWED.toString("hex")}, ${hash(0x23).toString("hex")}`,
    PASSKEYS: "alice0123456789ab bob_9876543210cd",
  });
});
after(async () => { await mf?.dispose(); });

async function reason(target) {
  const r = await get(mf, target, "10.1.0.1");
  assert.equal(r.status, 200);
  const d = decode(r.body);
  return d.has("failure reason") ? d.get("failure reason").toString() : null;
}

test("a passkey in the path admits; none or an unknown one is refused", async () => {
  const q = announceQuery(ALLOWED, 1);
  assert.equal(await reason(`/alice0123456789ab/announce?${q}`), null);
  assert.equal(await reason(`/announce?${q}`), "private tracker: announce to the URL with your passkey (/<passkey>/announce)");
  assert.equal(await reason(`/mallory/announce?${q}`), "unknown passkey");
  assert.equal(await reason(`/bob_9876543210cd/scrape?info_hash=${enc(ALLOWED)}`), null);
});

test("torrents off the allow list are refused, saying why", async () => {
  const refused = "torrent not allowed on this tracker (not on its allow list)";
  assert.equal(await reason(`/alice0123456789ab/announce?${announceQuery(OTHER, 1)}`), refused);
  assert.equal(await reason(`/alice0123456789ab/scrape?info_hash=${enc(OTHER)}`), refused);
});
