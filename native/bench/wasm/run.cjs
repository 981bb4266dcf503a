// The wasm side of native/bench/edge_cpu.sh: `node run.cjs DIR CASE PEERS ITERATIONS` loads the
// module wasm-bindgen wrote into DIR, runs one case as edge-cpu-native does (a warm-up tenth,
// then the timed run, wall clock), and prints nanoseconds per iteration and the checksum.
const [dir, caseName, peers, iterations] = process.argv.slice(2);
const m = require(require("node:path").resolve(dir, "edgetracker_wasm_bench.js"));
const cases = ["announce", "object", "scrape"];
const c = cases.indexOf(caseName);
if (c < 0 || !(Number(peers) > 0) || !(Number(iterations) > 0)) {
  console.error(`usage: node run.cjs DIR CASE PEERS ITERATIONS   (CASE: ${cases})`);
  process.exit(2);
}
m.prepare(c, Number(peers));
m.run(Math.floor(Number(iterations) / 10) + 1);
const start = process.hrtime.bigint();
const check = m.run(Number(iterations));
const ns = Number(process.hrtime.bigint() - start) / Number(iterations);
console.log(`${ns.toFixed(0)} ${check}`);
