// Access rules on the edge from Workers KV: lists too long for a var, uploaded as the same
// files the native tracker reads, reread per isolate, failing closed.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, decode, enc, hash, get, announceQuery } from "./helpers.mjs";

const LISTED = hash(0x31);
const OTHER = hash(0x32);
const workers = [];
after(async () => { await Promise.all(workers.map((mf) => mf.dispose())); });

async function worker(vars) {
  const mf = await startWorker(vars);
  workers.push(mf);
  return mf;
}

async function reason(mf, target, ip = "10.2.0.1") {
  const r = await get(mf, target, ip);
  assert.equal(r.status, 200);
  const d = decode(r.body);
  return { reason: d.has("failure reason") ? d.get("failure reason").toString() : null, ops: r.ops };
}

const KV_VARS = {
  ACCESS_LIST_MODE: "allow",
  ACCESS_LIST_KV: "access:list",
  PASSKEYS_KV: "access:passkeys",
};

test("lists in KV admit, refuse, and follow the values as they change", async () => {
  const mf = await worker({ ...KV_VARS, ACCESS_REFRESH: "0" });
  const kv = await mf.getKVNamespace("SWARMS");
  const q = (h) => announceQuery(h, 7000);

  // Keys not there yet (a typo, or KV still propagating them): refused, never served unchecked.
  const UNAVAILABLE = "access rules unavailable, try again later";
  assert.equal((await reason(mf, `/carol-2024-000000/announce?${q(LISTED)}`)).reason, UNAVAILABLE);

  // The native files' format: comments, blank lines, either case.
  await kv.put("access:passkeys", "# one passkey a line\ncarol-2024-000000\n\ndave_99-000000000  # a comment\n");
  await kv.put("access:list", `# torrents\n${LISTED.toString("hex").toUpperCase()}\n`);
  const admitted = await reason(mf, `/carol-2024-000000/announce?${q(LISTED)}`);
  assert.equal(admitted.reason, null);
  assert.match(admitted.ops, /get=3 /, "two list reads (ACCESS_REFRESH=0) and the completed count");
  assert.equal((await reason(mf, `/dave_99-000000000/scrape?info_hash=${enc(LISTED)}`)).reason, null);
  assert.equal((await reason(mf, `/carol-2024-000000/announce?${q(OTHER)}`)).reason,
    "torrent not allowed on this tracker (not on its allow list)");
  assert.equal((await reason(mf, `/mallory/announce?${q(LISTED)}`)).reason, "unknown passkey");
  assert.equal((await reason(mf, `/announce?${q(LISTED)}`)).reason,
    "private tracker: announce to the URL with your passkey (/<passkey>/announce)");

  // A passkey revoked in KV is refused from the next reread on.
  await kv.put("access:passkeys", "dave_99-000000000\n");
  assert.equal((await reason(mf, `/carol-2024-000000/announce?${q(LISTED)}`)).reason, "unknown passkey");

  // A value with a bad line is not applied, nor is a deleted key: the rules in force stay (a
  // typo must not open or close the tracker).
  await kv.put("access:list", `${OTHER.toString("hex")}\nnot-a-hash\n`);
  assert.equal((await reason(mf, `/dave_99-000000000/announce?${q(LISTED)}`)).reason, null);
  assert.equal((await reason(mf, `/dave_99-000000000/announce?${q(OTHER)}`)).reason,
    "torrent not allowed on this tracker (not on its allow list)");
  await kv.delete("access:list");
  assert.equal((await reason(mf, `/dave_99-000000000/announce?${q(LISTED)}`)).reason, null);
});

test("a deny list whose key is missing refuses instead of serving denied torrents", async () => {
  const mf = await worker({ ACCESS_LIST_MODE: "deny", ACCESS_LIST_KV: "access:deny" });
  const kv = await mf.getKVNamespace("SWARMS");
  assert.equal((await reason(mf, `/announce?${announceQuery(LISTED, 7010)}`)).reason,
    "access rules unavailable, try again later");
  await kv.put("access:deny", `${LISTED.toString("hex")}\n`);
  // ACCESS_REFRESH is 60 s, but an isolate without rules reads again at once.
  assert.equal((await reason(mf, `/announce?${announceQuery(LISTED, 7011)}`)).reason,
    "torrent refused by this tracker (on its deny list)");
  assert.equal((await reason(mf, `/announce?${announceQuery(OTHER, 7012)}`)).reason, null);
});

test("an isolate rereads KV lists once per ACCESS_REFRESH, not per request", async () => {
  const mf = await worker(KV_VARS); // ACCESS_REFRESH defaults to 60 s
  const kv = await mf.getKVNamespace("SWARMS");
  await kv.put("access:passkeys", "erin-0000000000000\n");
  await kv.put("access:list", LISTED.toString("hex"));
  const first = await reason(mf, `/erin-0000000000000/announce?${announceQuery(LISTED, 7001)}`);
  assert.equal(first.reason, null);
  assert.match(first.ops, /get=3 /);
  const second = await reason(mf, `/erin-0000000000000/announce?${announceQuery(LISTED, 7002)}`);
  assert.equal(second.reason, null);
  assert.match(second.ops, /get=1 /, "the rules came from the isolate, only the count from KV");
});

test("a bad first read refuses (fails closed) and saying both sources is a misconfiguration", async () => {
  const mf = await worker({ ...KV_VARS, ACCESS_REFRESH: "0" });
  const kv = await mf.getKVNamespace("SWARMS");
  await kv.put("access:passkeys", "frank-000000000000\n");
  await kv.put("access:list", "zz\n");
  assert.equal((await reason(mf, `/frank-000000000000/announce?${announceQuery(LISTED, 7003)}`)).reason,
    'tracker misconfigured: access list line 1: not a 40-digit hex info hash: "zz"');

  const both = await worker({ ACCESS_LIST: LISTED.toString("hex"), ACCESS_LIST_KV: "access:list" });
  assert.equal((await reason(both, `/announce?${announceQuery(LISTED, 7004)}`)).reason,
    "tracker misconfigured: set ACCESS_LIST or ACCESS_LIST_KV, not both");
  const none = await worker({ ACCESS_LIST_MODE: "deny" });
  assert.equal((await reason(none, `/announce?${announceQuery(LISTED, 7005)}`)).reason,
    "tracker misconfigured: ACCESS_LIST_MODE needs ACCESS_LIST or ACCESS_LIST_KV");
});
