// Shared by the Worker tests: start the built Worker in Miniflare, speak to it, read bencode.
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";
import path from "node:path";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BUILD = path.join(ROOT, "build");

/**
 * The Miniflare options of the built Worker with wrangler.toml's vars (Miniflare does not read
 * wrangler.toml), its KV namespace and its SQLite-backed Durable Object class; `extra` adds or
 * overrides vars. `SWARM_STORE` is unset here, which means KV: tests of the Durable Object store
 * say so.
 */
export function workerOptions(extra = {}) {
  return {
    modules: true,
    scriptPath: path.join(BUILD, "worker/shim.mjs"),
    modulesRoot: BUILD,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2026-07-01",
    kvNamespaces: ["SWARMS"],
    durableObjects: {
      SWARM_OBJECTS: { className: "SwarmObject", useSQLite: true },
      SOCKET_OBJECTS: { className: "SocketObject", useSQLite: true },
    },
    bindings: {
      ANNOUNCE_INTERVAL: "1800", MIN_INTERVAL: "900", PEER_TIMEOUT: "5400",
      NUMWANT_DEFAULT: "50", NUMWANT_MAX: "100", SCRAPE_MAX_HASHES: "16",
      ...extra,
    },
  };
}

/** The built Worker in Miniflare; `options` adds Miniflare options (other bindings). */
export async function startWorker(extra = {}, options = {}) {
  const mf = new Miniflare({ ...workerOptions(extra), cf: false, ...options });
  await mf.ready;
  return mf;
}

/** A minimal bencode decoder (byte strings stay Buffers, dict keys become latin1 strings). */
export function decode(buf) {
  let i = 0;
  function value() {
    const c = buf[i];
    if (c === 0x69) { // i
      const end = buf.indexOf(0x65, i);
      const n = Number(buf.subarray(i + 1, end).toString());
      i = end + 1;
      return n;
    }
    if (c === 0x6c) { // l
      i++;
      const out = [];
      while (buf[i] !== 0x65) out.push(value());
      i++;
      return out;
    }
    if (c === 0x64) { // d
      i++;
      const out = new Map();
      while (buf[i] !== 0x65) {
        const k = value();
        out.set(k.toString("latin1"), value());
      }
      i++;
      return out;
    }
    const colon = buf.indexOf(0x3a, i);
    const len = Number(buf.subarray(i, colon).toString());
    const s = buf.subarray(colon + 1, colon + 1 + len);
    i = colon + 1 + len;
    return s;
  }
  const v = value();
  assert.equal(i, buf.length, "trailing bytes after the bencoded value");
  return v;
}

export const enc = (bytes) => [...bytes].map((b) => "%" + b.toString(16).padStart(2, "0")).join("");
export const hash = (b) => Buffer.alloc(20, b);
let nextPeerId = 0;
export const peerId = () => Buffer.from("-ET0001-" + String(nextPeerId++).padStart(12, "0"));

/** GET `target` from the Worker as a client at `ip` (CF-Connecting-IP). */
export async function get(mf, target, ip = "10.0.0.1") {
  const headers = ip ? { "CF-Connecting-IP": ip } : {};
  const res = await mf.dispatchFetch("http://tracker.test" + target, { headers });
  const body = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status, body, type: res.headers.get("content-type"),
    ops: res.headers.get("x-kv-ops"), doOps: res.headers.get("x-do-ops"), storeError: res.headers.get("x-store-error"),
  };
}

/** An announce query string. */
export function announceQuery(h, port, { left = 0, event, compact, numwant, id } = {}) {
  let q = `info_hash=${enc(h)}&peer_id=${enc(id ?? peerId())}&port=${port}&uploaded=0&downloaded=0&left=${left}`;
  if (event) q += `&event=${event}`;
  if (compact !== undefined) q += `&compact=${compact}`;
  if (numwant !== undefined) q += `&numwant=${numwant}`;
  return q;
}
