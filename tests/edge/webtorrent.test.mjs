// WebTorrent at the edge: the built Worker in Miniflare, browsers' WebSocket messages as the npm
// `bittorrent-tracker` client sends them, over real WebSockets through the Worker's announce path
// into socket and swarm Durable Objects (SQLite-backed, as deployed).
//
// Run: npm test (after `worker-build`); tests/run.sh does both.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startWorker } from "./helpers.mjs";

let mf;
before(async () => {
  mf = await startWorker({
    SWARM_STORE: "durable-object",
    ACCESS_LIST_MODE: "deny",
    ACCESS_LIST: "dd".repeat(20),
  });
});
after(async () => { await mf?.dispose(); });

const LIMITED = "rate limited: too many announces from your address, retry later";
const bin = (byte) => String.fromCharCode(...new Array(20).fill(byte));

/** A WebSocket through the Worker (`worker`, else the shared one), with an inbox read in order
 * by `next()`. */
async function open(ip, path = "/announce", worker = mf) {
  const res = await worker.dispatchFetch(`http://tracker.test${path}`, {
    headers: { Upgrade: "websocket", "CF-Connecting-IP": ip },
  });
  assert.equal(res.status, 101, `upgrade of ${path}: ${res.status}`);
  const ws = res.webSocket;
  const inbox = [];
  const waiting = [];
  let closed = false;
  ws.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    const w = waiting.shift();
    if (w) w(m); else inbox.push(m);
  });
  ws.addEventListener("close", () => { closed = true; });
  ws.accept();
  return {
    send: (m) => ws.send(typeof m === "string" ? m : JSON.stringify(m)),
    sendBinary: (bytes) => ws.send(bytes),
    /** The next message, within 5 s. */
    next: () => inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no message within 5 s")), 5000);
      waiting.push((m) => { clearTimeout(t); resolve(m); });
    }),
    /** No message arrives within `ms`. */
    quiet: async (ms = 300) => {
      await new Promise((r) => setTimeout(r, ms));
      assert.deepEqual(inbox, [], "no message expected");
    },
    /** Every message that arrived within `ms`, taken from the inbox. */
    drain: async (ms = 500) => {
      await new Promise((r) => setTimeout(r, ms));
      return inbox.splice(0);
    },
    close: () => ws.close(1000, "bye"),
    get closed() { return closed; },
  };
}

function announce(hash, peer, { left = 1000, offers = 0, event = "started" } = {}) {
  return {
    action: "announce", info_hash: hash, peer_id: bin(peer), uploaded: 0, downloaded: 0, left, event,
    numwant: offers,
    offers: Array.from({ length: offers }, (_, i) => ({
      offer_id: `${peer.toString(16).padStart(2, "0")}${String(i).padStart(38, "0")}`,
      offer: { type: "offer", sdp: `v=0\r\no=- ${peer} ${i} IN IP4 127.0.0.1\r\n` },
    })),
  };
}

async function scrape(ws, hash) {
  ws.send({ action: "scrape", info_hash: hash });
  const r = await ws.next();
  return r.files[hash];
}

/** Polls `check` (a socket's close reaches the swarm object asynchronously), for up to 5 s. */
async function eventually(check) {
  for (let i = 0; i < 100; i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test("two browsers exchange an offer and an answer through the Worker", async () => {
  const h = bin(0xa1);
  const a = await open("10.9.0.1");
  const b = await open("2001:db8::9");
  a.send(announce(h, 1));
  assert.deepEqual(await a.next(), { action: "announce", interval: 120, info_hash: h, complete: 0, incomplete: 1 });
  b.send(announce(h, 2, { left: 0, offers: 3 }));
  const reply = await b.next();
  assert.deepEqual([reply.complete, reply.incomplete], [1, 1]);
  // A, the only other peer, gets exactly one of B's offers, through its own socket object.
  const offer = await a.next();
  assert.equal(offer.peer_id, bin(2));
  assert.equal(offer.info_hash, h);
  assert.equal(offer.offer.type, "offer");
  assert.ok(offer.offer.sdp.startsWith("v=0\r\no=- 2 "), offer.offer.sdp);
  await a.quiet();
  a.send({
    action: "announce", info_hash: h, peer_id: bin(1), to_peer_id: offer.peer_id, offer_id: offer.offer_id,
    answer: { type: "answer", sdp: "v=0\r\nanswer from 1\r\n" },
  });
  // A saw B's offer id behind the tracker's 16-character tag; B gets its own back.
  assert.equal(offer.offer_id.length, 16 + 40);
  assert.deepEqual(await b.next(), {
    action: "announce", info_hash: h, peer_id: bin(1), offer_id: offer.offer_id.slice(16),
    answer: { type: "answer", sdp: "v=0\r\nanswer from 1\r\n" },
  });
  assert.deepEqual(await scrape(a, h), { complete: 1, incomplete: 1, downloaded: 0 });
  a.close();
  b.close();
});

test("an answer goes straight back to the offerer's socket, without asking the swarm object", async () => {
  // Seen from outside: the offerer has stopped (left the swarm) when the answer comes, so the
  // swarm object no longer knows it; the answer still arrives, by the route its offer brought.
  const h = bin(0xa6);
  const a = await open("10.9.0.8");
  const b = await open("10.9.0.9");
  a.send(announce(h, 11));
  await a.next();
  b.send(announce(h, 12, { offers: 1 }));
  await b.next();
  const offer = await a.next();
  b.send(announce(h, 12, { event: "stopped" }));
  assert.equal((await b.next()).incomplete, 1, "the offerer left the swarm");
  a.send({
    action: "announce", info_hash: h, peer_id: bin(11), to_peer_id: offer.peer_id, offer_id: offer.offer_id,
    answer: { type: "answer", sdp: "v=0\r\nlate answer\r\n" },
  });
  assert.equal((await b.next()).answer.sdp, "v=0\r\nlate answer\r\n");
  // A peer id that is not this socket's may not answer, shortcut or not.
  a.send({
    action: "announce", info_hash: h, peer_id: bin(99), to_peer_id: offer.peer_id, offer_id: offer.offer_id,
    answer: { type: "answer", sdp: "v=0\r\n" },
  });
  assert.equal((await a.next())["failure reason"], "answer from a peer that is not in the swarm");
  await b.quiet();
  a.close();
  b.close();
});

test("stopped leaves at once; a closed socket's peers leave every swarm it joined", async () => {
  const [h1, h2] = [bin(0xa2), bin(0xa3)];
  const a = await open("10.9.0.2");
  const b = await open("10.9.0.3");
  for (const h of [h1, h2]) {
    a.send(announce(h, 3));
    await a.next();
  }
  b.send(announce(h1, 4));
  assert.equal((await b.next()).incomplete, 2);
  b.send(announce(h1, 4, { event: "stopped" }));
  assert.equal((await b.next()).incomplete, 1, "stopped: gone at once");
  a.close();
  assert.ok(await eventually(async () => {
    const [c1, c2] = [await scrape(b, h1), await scrape(b, h2)];
    return c1.incomplete === 0 && c2.incomplete === 0;
  }), "the closed socket's peers left both swarms");
  // An answer to a peer that left goes nowhere, and is no error; one from a non-member is refused.
  b.send({
    action: "announce", info_hash: h1, peer_id: bin(4), to_peer_id: bin(3), offer_id: "x".repeat(20),
    answer: { type: "answer", sdp: "v=0\r\n" },
  });
  const refused = await b.next();
  assert.equal(refused["failure reason"], "answer to an offer this connection was not handed");
  b.close();
});

test("only the socket an offer was handed to may answer it", async () => {
  // Before: any member that knew an offer's id could answer it in the place of the peer it was
  // handed to, and the answer reached the offerer.
  const h = bin(0xa7);
  const [a, b, c] = [await open("10.9.0.21"), await open("10.9.0.22"), await open("10.9.0.23")];
  a.send(announce(h, 21));
  await a.next();
  b.send(announce(h, 22));
  await b.next();
  // C's one offer goes to A or B; the other, also a member, answers with its id.
  c.send(announce(h, 23, { offers: 1 }));
  await c.next();
  const [toA, toB] = [await a.drain(), await b.drain()];
  assert.equal(toA.length + toB.length, 1, "one offer handed");
  const [handed, other, otherPeer] = toA.length ? [toA[0], b, 22] : [toB[0], a, 21];
  other.send({
    action: "announce", info_hash: h, peer_id: bin(otherPeer), to_peer_id: bin(23),
    offer_id: handed.offer_id, answer: { type: "answer", sdp: "v=0\r\nnot mine\r\n" },
  });
  assert.equal((await other.next())["failure reason"], "answer to an offer this connection was not handed");
  await c.quiet();
  for (const ws of [a, b, c]) ws.close();
});

test("offers past a socket's budget are not forwarded", async () => {
  // Before: nothing paced a socket; each frame had up to 10 offers pushed to swarm members.
  const budgeted = await startWorker({
    SWARM_STORE: "durable-object", WEBTORRENT_OFFERS_BURST: "3", WEBTORRENT_OFFERS_PER_MINUTE: "1",
  });
  try {
    const h = bin(0xa8);
    const victims = [];
    for (const n of [31, 33, 34]) {
      const v = await open(`10.9.0.${n}`, "/announce", budgeted);
      v.send(announce(h, n));
      await v.next();
      victims.push(v);
    }
    const flooder = await open("10.9.0.32", "/announce", budgeted);
    for (let i = 0; i < 3; i++) {
      flooder.send(announce(h, 32, { offers: 2 }));
      assert.equal((await flooder.next()).incomplete, 4, "each announce is answered");
    }
    // Six offers sent over three announces (the socket object hibernating or not between
    // them: the budget rides in its attachment); the burst of three reaches the others.
    let got = 0;
    for (const v of victims) got += (await v.drain()).filter((m) => m.offer).length;
    assert.equal(got, 3);
    for (const ws of [...victims, flooder]) ws.close();
  } finally {
    await budgeted.dispose();
  }
});

test("announces sent at once on one socket are all remembered: closing it leaves every swarm", async () => {
  // The socket object handles one message at a time; were they interleaved, each would start
  // from the same list of joined swarms and the last to finish would drop the others'.
  const hashes = [0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6].map(bin);
  const a = await open("10.9.0.10");
  for (const h of hashes) a.send(announce(h, 13));
  for (const _ of hashes) assert.equal((await a.next()).incomplete, 1);
  a.close();
  const b = await open("10.9.0.11");
  assert.ok(await eventually(async () => {
    for (const h of hashes) if ((await scrape(b, h)).incomplete !== 0) return false;
    return true;
  }), "every swarm the closed socket joined was left");
  b.close();
});

test("a peer id held by an open socket cannot be taken over by another", async () => {
  const h = bin(0xa4);
  const a = await open("10.9.0.4");
  const thief = await open("10.9.0.5");
  a.send(announce(h, 5));
  await a.next();
  thief.send(announce(h, 5, { event: "stopped" }));
  assert.equal((await thief.next())["failure reason"], "peer_id in use by another connection");
  assert.deepEqual(await scrape(a, h), { complete: 0, incomplete: 1, downloaded: 0 });
  a.close();
  thief.close();
});

test("access lists, passkeys, and malformed, binary and unknown frames are refused in words", async () => {
  const ws = await open("10.9.0.6");
  ws.send(announce(bin(0xdd), 6));
  const denied = await ws.next();
  assert.equal(denied.action, "announce");
  assert.equal(denied["failure reason"], "torrent refused by this tracker (on its deny list)");
  ws.send("{not json");
  assert.ok((await ws.next())["failure reason"]);
  ws.send({ action: "announce", info_hash: "short", peer_id: bin(1) });
  assert.ok((await ws.next())["failure reason"]);
  ws.sendBinary(new Uint8Array([1, 2, 3]));
  assert.equal((await ws.next())["failure reason"], "binary frames are not part of the protocol: send JSON text");
  ws.send({ action: "scrape", info_hash: [] });
  assert.ok((await ws.next())["failure reason"]);
  // The socket still serves after every refusal.
  ws.send(announce(bin(0xa5), 6));
  assert.equal((await ws.next()).incomplete, 1);
  ws.close();
});

test("WebTorrent off: an upgrade is an ordinary announce request, refused in bencode", async () => {
  const off = await startWorker({ SWARM_STORE: "durable-object", WEBTORRENT: "off" });
  try {
    const res = await off.dispatchFetch("http://tracker.test/announce", {
      headers: { Upgrade: "websocket", "CF-Connecting-IP": "10.9.0.7" },
    });
    assert.notEqual(res.status, 101);
    assert.match(await res.text(), /^d14:failure reason/);
  } finally {
    await off.dispose();
  }
});

test("the rate limit and passkeys apply as over HTTP", async () => {
  const limited = await startWorker({ SWARM_STORE: "durable-object", PASSKEYS: "passkey-of-alice-0123" }, {
    ratelimits: { ANNOUNCE_LIMITER: { namespace_id: "1001", simple: { limit: 3, period: 60 } } },
  });
  try {
    // Opening the socket costs a token, each announce one more.
    const ws = await open("10.9.1.1", "/passkey-of-alice-0123/announce", limited);
    for (let i = 0; i < 2; i++) {
      ws.send(announce(bin(0xb1), 7));
      assert.equal((await ws.next()).incomplete, 1);
    }
    ws.send(announce(bin(0xb1), 7));
    assert.equal((await ws.next())["failure reason"], LIMITED);
    const again = await limited.dispatchFetch("http://tracker.test/announce", {
      headers: { Upgrade: "websocket", "CF-Connecting-IP": "10.9.1.1" },
    });
    assert.equal(again.status, 429, "no more sockets than announces");
    assert.equal(await again.text(), `d14:failure reason${LIMITED.length}:${LIMITED}e`);
    const stranger = await open("10.9.1.2", "/nope/announce", limited);
    stranger.send(announce(bin(0xb1), 8));
    assert.equal((await stranger.next())["failure reason"], "unknown passkey");
    const none = await open("10.9.1.3", "/announce", limited);
    none.send(announce(bin(0xb1), 9));
    assert.match((await none.next())["failure reason"], /passkey/);
    for (const s of [ws, stranger, none]) s.close();
  } finally {
    await limited.dispose();
  }
});

test("a swarm object's WebTorrent members survive a restart of the runtime", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "edgetracker-wt-"));
  const start = () => startWorker({ SWARM_STORE: "durable-object" }, { durableObjectsPersist: dir });
  const h = bin(0xb2);
  try {
    const first = await start();
    const a = await open("10.9.2.1", "/announce", first);
    a.send(announce(h, 10));
    assert.equal((await a.next()).incomplete, 1);
    a.send(announce(h, 10, { left: 0, event: "completed" }));
    assert.equal((await a.next()).complete, 1);
    await first.dispose();

    const second = await start();
    const b = await open("10.9.2.2", "/announce", second);
    b.send({ action: "scrape", info_hash: h });
    assert.deepEqual((await b.next()).files[h], { complete: 1, incomplete: 0, downloaded: 1 },
      "the seeder and the completed count, read back from the object's storage");
    b.close();
    await second.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
