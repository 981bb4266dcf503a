// The built Worker (worker-build output in build/) loaded in Miniflare with an in-memory KV,
// driven through /announce and /scrape as a BitTorrent client would: reply bytes, swarm
// contents, errors, and the KV operations each request costs.
//
// Run: npm test (after `worker-build`); tests/run.sh does both.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, decode, enc, hash, peerId, get as getFrom, announceQuery } from "./helpers.mjs";
// (SWARM_STORE unset: this file is the Workers KV store's; durable.test.mjs the Durable Objects'.)

let mf;
before(async () => { mf = await startWorker({ CONFORMANCE_TESTS: "1" }); });
after(async () => { await mf?.dispose(); });

const get = (target, ip) => getFrom(mf, target, ip);

async function announce(ip, h, port, opts = {}) {
  const r = await get(`/announce?${announceQuery(h, port, opts)}`, ip);
  assert.equal(r.status, 200);
  return { ...r, d: decode(r.body) };
}

const compact4 = (ip, port) => Buffer.from([...ip.split(".").map(Number), port >> 8, port & 255]);

test("two peers find each other through /announce (compact)", async () => {
  const h = hash(1);
  const first = await announce("10.0.0.1", h, 6881, { event: "started" });
  assert.equal(first.d.get("complete"), 1);
  assert.equal(first.d.get("incomplete"), 0);
  assert.equal(first.d.get("interval"), 120, "starting alone in a KV swarm: asked back soon (SPARSE_SWARM_INTERVAL)");
  assert.equal(first.d.get("min interval"), 120);
  assert.deepEqual(first.d.get("peers"), Buffer.alloc(0));
  const second = await announce("10.0.0.2", h, 6882, { left: 10, event: "started" });
  assert.deepEqual(second.d.get("peers"), compact4("10.0.0.1", 6881));
  assert.equal(second.d.get("complete"), 1);
  assert.equal(second.d.get("incomplete"), 1);
  assert.equal(second.d.get("interval"), 1800, "someone to meet: the full interval");
  const again = await announce("10.0.0.1", h, 6881);
  assert.deepEqual(again.d.get("peers"), compact4("10.0.0.2", 6882), "the seeder gets the leecher");
});

test("non-compact replies list dicts", async () => {
  const h = hash(2);
  await announce("10.0.1.1", h, 7001);
  const r = await announce("10.0.1.2", h, 7002, { left: 5, compact: 0 });
  const peers = r.d.get("peers");
  assert.equal(peers.length, 1);
  assert.equal(peers[0].get("ip").toString(), "10.0.1.1");
  assert.equal(peers[0].get("port"), 7001);
});

test("an IPv6 CF-Connecting-IP gets peers6, and the families stay apart", async () => {
  const h = hash(3);
  await announce("10.0.2.1", h, 4001);
  await announce("2001:db8::1", h, 6001);
  const r = await announce("2001:db8::2", h, 6002, { left: 1 });
  const expected = Buffer.alloc(18);
  expected[0] = 0x20; expected[1] = 0x01; expected[2] = 0x0d; expected[3] = 0xb8; expected[15] = 1;
  expected.writeUInt16BE(6001, 16);
  assert.deepEqual(r.d.get("peers6"), expected);
  assert.deepEqual(r.d.get("peers"), Buffer.alloc(0));
  assert.equal(r.d.get("complete"), 1);
  const r4 = await announce("10.0.2.2", h, 4002, { left: 1 });
  assert.deepEqual(r4.d.get("peers"), compact4("10.0.2.1", 4001));
});

test("stopped removes the peer; completed counts once", async () => {
  const h = hash(4);
  await announce("10.0.3.1", h, 1, { left: 5, event: "started" });
  await announce("10.0.3.2", h, 2, { left: 5, event: "started" });
  const done = await announce("10.0.3.1", h, 1, { left: 0, event: "completed" });
  assert.equal(done.d.get("downloaded"), 1);
  assert.equal(done.d.get("complete"), 1);
  const again = await announce("10.0.3.1", h, 1, { left: 0, event: "completed" });
  assert.equal(again.d.get("downloaded"), 1, "a repeated completed is not another download");
  const stop = await announce("10.0.3.2", h, 2, { left: 5, event: "stopped" });
  assert.deepEqual(stop.d.get("peers"), Buffer.alloc(0));
  assert.match(stop.ops, /delete=1/);
  const after = await announce("10.0.3.1", h, 1, { left: 0 });
  assert.equal(after.d.get("incomplete"), 0, "the stopped leecher is gone");
  assert.deepEqual(after.d.get("peers"), Buffer.alloc(0));
});

/** The KV key of `peer` (compact) in the IPv4 swarm of `h`, found by its metadata. */
async function keyOf(kv, h, peer) {
  const { keys } = await kv.list({ prefix: `q4:${Buffer.from(h).toString("hex")}:` });
  const key = keys.find((k) => k.metadata?.a === peer.toString("hex"));
  assert.ok(key, "the peer's key");
  return key.name;
}

test("stopped deletes the peer's key even when the lagging list did not show it", async () => {
  // KV lists lag writes by up to a minute: a peer that starts and stops within that lag is not
  // in the list its stop reads. Its key, written behind the store's back without the metadata
  // the store lists peers by, stands in for such an entry.
  const h = hash(12);
  const kv = await mf.getKVNamespace("SWARMS");
  await announce("10.0.8.1", h, 1, { left: 1 });
  const key = await keyOf(kv, h, compact4("10.0.8.1", 1));
  await kv.put(key, "", { expirationTtl: 5400 });
  const stop = await announce("10.0.8.1", h, 1, { left: 1, event: "stopped" });
  assert.equal(stop.ops, "list=1 get=1 put=0 delete=1");
  assert.equal(await kv.get(key), null, "no ghost left until the TTL");
});

test("only a client starting alone gets the short interval; SPARSE_SWARM_INTERVAL = 0 turns it off", async () => {
  const h = hash(13);
  const start = await announce("10.0.9.1", h, 1, { left: 1, event: "started" });
  assert.equal(start.d.get("interval"), 120);
  const lone = await announce("10.0.9.1", h, 1, { left: 1 });
  assert.equal(lone.d.get("interval"), 1800, "already listed, so newcomers see it: not asked back every 2 minutes");
  const plain = await startWorker({ SPARSE_SWARM_INTERVAL: "0" });
  const bad = await startWorker({ SPARSE_SWARM_INTERVAL: "4000" });
  try {
    const r = await getFrom(plain, `/announce?${announceQuery(hash(14), 1, { left: 1, event: "started" })}`, "10.0.9.2");
    assert.equal(decode(r.body).get("interval"), 1800);
    const refused = await getFrom(bad, `/announce?${announceQuery(hash(14), 1, { left: 1 })}`, "10.0.9.2");
    assert.match(decode(refused.body).get("failure reason").toString(), /sparse_swarm_interval must not exceed announce_interval/);
  } finally {
    await plain.dispose();
    await bad.dispose();
  }
});

test("SCRAPE_MAX_HASHES is bounded by what one invocation may do", async () => {
  // Unbounded, a 200-hash scrape cost 603 KV operations, and ~111 hashes pass KV's 1,000 per
  // invocation (on Durable Objects, 50 subrequests on the free plan).
  for (const [store, most] of [["kv", 100], ["durable-object", 50]]) {
    const over = await startWorker({ SWARM_STORE: store, SCRAPE_MAX_HASHES: String(most + 1) });
    const ok = await startWorker({ SWARM_STORE: store, SCRAPE_MAX_HASHES: String(most) });
    try {
      const r = await getFrom(over, `/scrape?info_hash=${enc(hash(15))}`);
      assert.equal(decode(r.body).get("failure reason").toString(),
        `tracker misconfigured: var SCRAPE_MAX_HASHES must be at most ${most} with SWARM_STORE = "${store}"`);
      const many = Array.from({ length: most }, (_, i) => `info_hash=${enc(hash(100 + (i % 100)))}`).join("&");
      const fine = await getFrom(ok, `/scrape?${many}`);
      assert.ok(decode(fine.body).get("files"), `${store}: a scrape of ${most} hashes is served`);
    } finally {
      await over.dispose();
      await ok.dispose();
    }
  }
});

test("scrape answers several hashes, zeros for unknown ones", async () => {
  const [a, b, unknown] = [hash(5), hash(6), hash(7)];
  await announce("10.0.4.1", a, 1);
  await announce("10.0.4.2", a, 2, { left: 3 });
  await announce("2001:db8::5", a, 3, { left: 3 });
  await announce("10.0.4.3", b, 1, { left: 3 });
  const r = await get(`/scrape?info_hash=${enc(a)}&info_hash=${enc(b)}&info_hash=${enc(unknown)}`);
  const files = decode(r.body).get("files");
  const counts = (h) => { const f = files.get(h.toString("latin1")); return [f.get("complete"), f.get("incomplete"), f.get("downloaded")]; };
  assert.deepEqual(counts(a), [1, 2, 0], "both families summed");
  assert.deepEqual(counts(b), [0, 1, 0]);
  assert.deepEqual(counts(unknown), [0, 0, 0]);
  assert.match(r.ops, /^list=6 get=3 put=0 delete=0$/, "two lists and one read per hash");
});

test("malformed requests get a bencoded failure reason, never a 500", async () => {
  const reason = async (target, ip) => {
    const r = await get(target, ip);
    return [r.status, decode(r.body).get("failure reason").toString()];
  };
  const pid = enc(peerId());
  assert.deepEqual(await reason(`/announce?peer_id=${pid}&port=1`), [200, "missing info_hash"]);
  assert.deepEqual(await reason(`/announce?info_hash=abc&peer_id=${pid}&port=1`), [200, "info_hash must be 20 bytes, got 3"]);
  assert.deepEqual(await reason(`/announce?info_hash=%zz&peer_id=${pid}&port=1`), [200, "invalid percent-encoding in info_hash"]);
  assert.deepEqual(await reason(`/announce?info_hash=${enc(hash(8))}&peer_id=${pid}&port=0`), [200, "port must not be 0"]);
  assert.deepEqual(await reason(`/scrape`), [200, "full scrape is disabled: pass at least one info_hash"]);
  const many = Array.from({ length: 17 }, (_, i) => `info_hash=${enc(hash(100 + i))}`).join("&");
  assert.deepEqual(await reason(`/scrape?${many}`), [200, "too many info_hash in one scrape (at most 16)"]);
  // (Miniflare fills in a missing CF-Connecting-IP itself, so send a broken one.)
  assert.deepEqual(await reason(`/announce?info_hash=${enc(hash(8))}&peer_id=${pid}&port=1`, "not-an-address"), [200, "no client address (CF-Connecting-IP)"]);
  assert.deepEqual(await reason(`/elsewhere`), [404, "not found: this tracker serves /announce and /scrape"]);
});

test("a steady-state announce costs one list, one read and no write", async () => {
  const h = hash(9);
  const id = peerId();
  const first = await announce("10.0.5.1", h, 1, { event: "started", id });
  assert.equal(first.ops, "list=1 get=1 put=1 delete=0", "a new peer is written once");
  const steady = await announce("10.0.5.1", h, 1, { id });
  assert.equal(steady.ops, "list=1 get=1 put=0 delete=0", "a fresh peer is not written again");
  const stats = JSON.parse((await get("/stats")).body.toString());
  assert.ok(stats.announce.requests >= 2);
  assert.ok(stats.announce.kv_ops.list >= 2);
});

test("an entry is rewritten only when it would expire before the next announce", async () => {
  // PEER_TIMEOUT 5400, interval 1800: entries older than 5400 - 1800 - 60 = 3540 s are refreshed.
  const h = hash(11);
  const kv = await mf.getKVNamespace("SWARMS");
  const now = Math.floor(Date.now() / 1000);
  // Three seeders' entries, then their write times set back.
  for (const ip of ["10.0.7.1", "10.0.7.2", "10.0.7.3"]) await announce(ip, h, 1);
  const keys = {};
  for (const ip of ["10.0.7.1", "10.0.7.2", "10.0.7.3"]) keys[ip] = await keyOf(kv, h, compact4(ip, 1));
  const key = (ip) => keys[ip];
  const a = (ip) => compact4(ip, 1).toString("hex");
  await kv.put(key("10.0.7.1"), "", { expirationTtl: 5400, metadata: { s: 1, t: now - 1000, a: a("10.0.7.1") } });
  await kv.put(key("10.0.7.2"), "", { expirationTtl: 5400, metadata: { s: 1, t: now - 3600, a: a("10.0.7.2") } });
  assert.equal((await announce("10.0.7.1", h, 1)).ops, "list=1 get=1 put=0 delete=0", "still fresh: no write");
  assert.equal((await announce("10.0.7.2", h, 1)).ops, "list=1 get=1 put=1 delete=0", "due: rewritten");
  const { metadata } = await kv.getWithMetadata(key("10.0.7.2"));
  assert.ok(metadata.t >= now, "the rewrite records the new announce time");
  // A seeder that starts leeching again changes role: rewritten at once.
  assert.equal((await announce("10.0.7.1", h, 1, { left: 5 })).ops, "list=1 get=1 put=1 delete=0");
  // Entries past the timeout are not served even before KV drops them.
  await kv.put(key("10.0.7.3"), "", { expirationTtl: 600, metadata: { s: 1, t: now - 6000, a: a("10.0.7.3") } });
  const r = await announce("10.0.7.4", h, 1, { left: 1 });
  assert.equal(r.d.get("complete"), 1, "10.0.7.2 only: 10.0.7.1 leeches, 10.0.7.3 is stale");
});

test("swarms larger than one KV list page are read in bounded pages", async () => {
  const h = hash(10);
  const kv = await mf.getKVNamespace("SWARMS");
  const now = Math.floor(Date.now() / 1000);
  const hex = Buffer.from(h).toString("hex");
  const writes = [];
  for (let i = 0; i < 1500; i++) {
    const peer = Buffer.from([10, 9, i >> 8, i & 255, 0x1a, 0xe1]).toString("hex");
    writes.push(kv.put(`q4:${hex}:${String(i).padStart(16, "0")}`, "", { expirationTtl: 3600, metadata: { s: 1, t: now, a: peer } }));
  }
  await Promise.all(writes);
  const r = await announce("10.0.6.1", h, 1, { left: 1, numwant: 100 });
  assert.equal(r.d.get("complete"), 1500, "every listed seeder counted");
  assert.equal(r.d.get("peers").length, 100 * 6, "numwant honoured");
  assert.match(r.ops, /^list=2 /, "1500 keys = two pages of 1000");
});

test("a peer beyond the pages a swarm's list reads is looked up, not rewritten or recounted", async () => {
  // Before: the Worker saw a swarm only through its first 4,000 keys; a peer past them was
  // rewritten at every announce and its repeated completed counted again. A peer beyond the
  // view is found by its own key; and a full view turns no newcomer away (before: 250
  // addresses whose keys sorted first filled it, and every new peer was refused).
  const h = hash(16);
  const kv = await mf.getKVNamespace("SWARMS");
  const now = Math.floor(Date.now() / 1000);
  const hex = Buffer.from(h).toString("hex");
  const id = peerId();
  await announce("10.200.0.1", h, 1, { left: 5, id });
  // Planted in front of every real key (a real one starts with 12 zero digits once in 2^48).
  const writes = [];
  for (let i = 0; i < 4100; i++) {
    const peer = Buffer.from([10, 8, i >> 8, i & 255, 0x1a, 0xe1]).toString("hex");
    writes.push(kv.put(`q4:${hex}:${String(i).padStart(16, "0")}`, "", { expirationTtl: 3600, metadata: { s: 0, t: now, a: peer } }));
  }
  await Promise.all(writes);
  const steady = await announce("10.200.0.1", h, 1, { left: 5, id });
  assert.equal(steady.ops, "list=4 get=2 put=0 delete=0", "found by its key, not rewritten");
  const done = await announce("10.200.0.1", h, 1, { left: 0, event: "completed", id });
  assert.equal(done.d.get("downloaded"), 1);
  const again = await announce("10.200.0.1", h, 1, { left: 0, event: "completed", id });
  assert.equal(again.d.get("downloaded"), 1, "a seeder's repeated completed is not counted again");
  const newcomer = await announce("10.201.0.1", h, 1, { left: 5, event: "started" });
  assert.equal(newcomer.d.get("failure reason"), undefined, "a full view turns no newcomer away");
  assert.equal(newcomer.d.get("peers").length, 50 * 6, "and hands it peers of the view");
});

test("a swarm's KV keys are ordered by a keyed hash, not by address", async () => {
  // Before: keys were p4:<hash>:<address>, listed in address order: whoever held the lowest
  // addresses filled the pages every announce read, and was every peer handed out.
  const h = hash(17);
  const kv = await mf.getKVNamespace("SWARMS");
  const hex = Buffer.from(h).toString("hex");
  for (let i = 1; i <= 30; i++) await announce(`10.17.0.${i}`, h, 1000 + i, { left: 1 });
  const { keys } = await kv.list({ prefix: `q4:${hex}:` });
  assert.equal(keys.length, 30);
  const listed = keys.map((k) => k.metadata.a);
  const byAddress = [...listed].sort();
  assert.notDeepEqual(listed, byAddress, "list order is not address order");
  for (const k of keys) {
    assert.match(k.name, /^q4:[0-9a-f]{40}:[0-9a-f]{16}$/);
    assert.ok(!k.name.includes(k.metadata.a), "the key does not hold the address");
  }
  // The same peer keeps its key: a re-announce writes nothing new.
  await announce("10.17.0.1", h, 1001, { left: 1 });
  assert.equal((await kv.list({ prefix: `q4:${hex}:` })).keys.length, 30);
});

test("KV: a seeder gone back to leeching is not counted completed again", async () => {
  // Before: a peer alternating a leeching announce and `completed` was counted every cycle.
  const h = hash(18);
  const id = peerId();
  await announce("10.18.0.1", h, 1, { left: 5, event: "started", id });
  for (let i = 0; i < 3; i++) {
    const done = await announce("10.18.0.1", h, 1, { left: 0, event: "completed", id });
    assert.equal(done.d.get("downloaded"), 1, `cycle ${i}`);
    await announce("10.18.0.1", h, 1, { left: 5, id });
  }
});

test("the store conformance suite passes against Workers KV", async () => {
  const r = await get("/__conformance");
  assert.equal(r.status, 200, r.body.toString());
  assert.match(r.body.toString(), /^ok: 10 cases passed against Workers KV/);
});
