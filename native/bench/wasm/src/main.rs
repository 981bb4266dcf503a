//! The native side of `native/bench/edge_cpu.sh`: `edge-cpu-native CASE PEERS ITERATIONS` runs
//! one case of the library and prints nanoseconds per iteration (wall clock of the run alone,
//! single-threaded, as Node's side measures its own).

use std::time::Instant;

use edgetracker_wasm_bench::{CASES, prepare, run};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [case, peers, iterations] = &args[..] else {
        eprintln!("usage: edge-cpu-native CASE PEERS ITERATIONS   (CASE: {CASES:?})");
        std::process::exit(2);
    };
    let case = CASES
        .iter()
        .position(|c| c == case)
        .unwrap_or_else(|| panic!("CASE is one of {CASES:?}")) as u32;
    let peers: u32 = peers.parse().expect("PEERS is a number");
    let iterations: u32 = iterations.parse().expect("ITERATIONS is a number");
    prepare(case, peers);
    run(iterations / 10 + 1);
    let start = Instant::now();
    let check = run(iterations);
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{ns:.0} {check}");
}
