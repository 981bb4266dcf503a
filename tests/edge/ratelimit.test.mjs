// Announce rate limiting on the edge through Cloudflare's Rate Limiting binding (Miniflare's
// implementation of it), keyed per IPv4 address and per IPv6 /64.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, decode, enc, hash, get, announceQuery } from "./helpers.mjs";

const LIMITED = "rate limited: too many announces from your address, retry later";
let mf, open;
before(async () => {
  mf = await startWorker({}, {
    ratelimits: { ANNOUNCE_LIMITER: { namespace_id: "1001", simple: { limit: 3, period: 60 } } },
  });
  open = await startWorker();
});
after(async () => { await Promise.all([mf?.dispose(), open?.dispose()]); });

async function announce(worker, ip, port) {
  const r = await get(worker, `/announce?${announceQuery(hash(0x41), port)}`, ip);
  assert.equal(r.status, 200);
  const d = decode(r.body);
  return d.has("failure reason") ? d.get("failure reason").toString() : null;
}

test("a client gets its limit of announces, then a failure reason; others are unaffected", async () => {
  for (let i = 0; i < 3; i++) assert.equal(await announce(mf, "10.4.0.1", 8000 + i), null);
  assert.equal(await announce(mf, "10.4.0.1", 8003), LIMITED);
  assert.equal(await announce(mf, "10.4.0.2", 8004), null, "another address has its own budget");

  // Scrapes are not limited.
  const scrape = await get(mf, `/scrape?info_hash=${enc(hash(0x41))}`, "10.4.0.1");
  assert.ok(decode(scrape.body).has("files"));

  const stats = JSON.parse((await get(mf, "/stats")).body.toString());
  assert.equal(stats.rate_limited, 1);
});

test("an IPv6 /64 is one client", async () => {
  for (let i = 1; i <= 3; i++) assert.equal(await announce(mf, `2001:db8:7:7::${i}`, 8100 + i), null);
  assert.equal(await announce(mf, "2001:db8:7:7:abcd::99", 8104), LIMITED, "same /64, new address");
  assert.equal(await announce(mf, "2001:db8:7:8::1", 8105), null, "the next /64");
});

test("without the binding announces are not limited", async () => {
  for (let i = 0; i < 6; i++) assert.equal(await announce(open, "10.4.0.9", 8200 + i), null);
});
