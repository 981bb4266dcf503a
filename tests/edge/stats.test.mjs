// The edge's /stats: public by default, restrictable to addresses or a token, as natively.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, decode } from "./helpers.mjs";

let open, closed;
before(async () => {
  open = await startWorker();
  closed = await startWorker({ STATS_TOKEN: "edge-s3cret", STATS_ALLOW: "192.0.2.10, 2001:db8::10" });
});
after(async () => { await Promise.all([open?.dispose(), closed?.dispose()]); });

async function stats(mf, target, ip, headers = {}) {
  const res = await mf.dispatchFetch("http://tracker.test" + target,
    { headers: { "CF-Connecting-IP": ip, ...headers } });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

test("without STATS_TOKEN or STATS_ALLOW anyone sees the isolate's counters", async () => {
  const r = await stats(open, "/stats", "10.5.0.1");
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).scope, "this isolate since it started");
});

test("restricted: listed addresses or the token, others get 403 with a failure reason", async () => {
  for (const [target, headers] of [["/stats", {}], ["/stats?token=wrong", {}],
    ["/stats", { Authorization: "Bearer edge-s3cre" }]]) {
    const r = await stats(closed, target, "10.5.0.1", headers);
    assert.equal(r.status, 403, `${target} ${JSON.stringify(headers)}`);
    assert.equal(decode(r.body).get("failure reason").toString(), "the stats are not public on this tracker");
  }
  assert.equal((await stats(closed, "/stats?token=edge-s3cret", "10.5.0.1")).status, 200);
  assert.equal((await stats(closed, "/stats", "10.5.0.1", { Authorization: "Bearer edge-s3cret" })).status, 200);
  assert.equal((await stats(closed, "/stats", "192.0.2.10")).status, 200);
  assert.equal((await stats(closed, "/stats", "2001:db8::10")).status, 200);
});
