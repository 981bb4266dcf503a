//! How the tracker's request path scales across threads, without sockets: the service layer
//! (`Tracker::udp`, and the `/stats` counters after it, as the UDP threads call them) driven by 1
//! and then 2 threads with pre-built BEP 15 announces, each thread its own clients, all on one
//! shared memory store.
//!
//! `cargo bench -p edgetracker-native --bench threads [-- SECONDS [ROUNDS] [one|shared|steered|apart]]`
//! (default 3 s per run, 3 rounds, each round running the four in turn; naming a run does that one
//! alone, for a profiler). Runs:
//! - `one`: one thread;
//! - `shared`: two threads, each announcing to any torrent (UDP threads steered by client, or
//!   HTTP threads);
//! - `steered`: two threads, each announcing only to the torrents of its group, on a store
//!   grouped for two threads: what the kernel does for UDP threads with
//!   `udp_steering = "torrent"` (the default);
//! - `apart`: two threads with a tracker each, sharing nothing at all: the machine's own
//!   ceiling (a VM's two vCPUs rarely give two cores' worth).
//!
//! Prints announces per second per thread and the ratios of two threads' per-thread rate to one
//! thread's: 1.0 would mean nothing shared slows them (the store's shard locks, its atomic
//! counters, the access rules, cache lines moving between cores). Run it on an otherwise idle
//! machine with at least two cores.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use edgetracker::InfoHash;
use edgetracker::UnixTime;
use edgetracker::protocol::connection_id::ConnectionIds;
use edgetracker::protocol::types::Family;
use edgetracker::protocol::types::{AnnounceRequest, Event, PeerId};
use edgetracker::protocol::udp::announce_request;
use edgetracker::service::{Scratch, Tracker};
use edgetracker::store::memory::{MemoryStore, torrent_group};
use edgetracker::store::now_or_never;
use edgetracker::swarm::Policy;
use edgetracker_native::stats::{Protocol, Stats};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const NOW: UnixTime = UnixTime(1_000_000);
const TORRENTS: u32 = 100_000;
/// Distinct clients per thread, each announcing in turn to a random torrent.
const CLIENTS: u32 = 50_000;

/// Torrent `t`'s info-hash: spread over all 20 bytes, as SHA-1's are.
fn info_hash(t: u32) -> InfoHash {
    let mut rng = SmallRng::seed_from_u64(u64::from(t) ^ 0x5a5a_0000_0000);
    InfoHash(rng.random())
}

/// One thread's announces: (client address, datagram with that client's connection id). With
/// `steered`, only torrents `udp::steer` sends to this thread's socket of `threads`.
fn requests(
    thread: u32,
    threads: u32,
    steered: bool,
    ids: &ConnectionIds,
) -> Vec<(IpAddr, Vec<u8>)> {
    let mut rng = SmallRng::seed_from_u64(u64::from(thread));
    (0..CLIENTS)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + thread * CLIENTS + i));
            let hash = loop {
                let hash = info_hash(rng.random_range(0..TORRENTS));
                if !steered || torrent_group(&hash, threads as usize) == thread as usize {
                    break hash;
                }
            };
            let a = AnnounceRequest {
                info_hash: hash,
                peer_id: PeerId([7; 20]),
                port: 6881,
                uploaded: 0,
                downloaded: 0,
                left: if i % 4 == 0 { 0 } else { 1 },
                event: Event::None,
                numwant: Some(30),
                compact: true,
                no_peer_id: true,
                key: None,
                claimed_ip: None,
            };
            let id = ids.issue(NOW, ip);
            (ip, announce_request(id, i, &a, &[]))
        })
        .collect()
}

/// A tracker and its `/stats` counters, as the native server holds them.
struct Served {
    tracker: Tracker<MemoryStore>,
    stats: Stats,
}

/// Runs one thread per tracker of `trackers` (the same one repeated, or one each) for `secs`
/// seconds; returns announces per second per thread.
fn run(trackers: &[&Served], steered: bool, ids: &ConnectionIds, secs: u64) -> f64 {
    let threads = trackers.len() as u32;
    let work: Vec<_> = (0..threads)
        .map(|t| requests(t, threads, steered, ids))
        .collect();
    let start = Barrier::new(threads as usize);
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .iter()
            .enumerate()
            .map(|(t, reqs)| {
                let (start, tracker) = (&start, trackers[t]);
                s.spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(100 + t as u64);
                    let (mut scratch, mut out) = (Scratch::default(), Vec::new());
                    start.wait();
                    let until = Instant::now() + Duration::from_secs(secs);
                    let mut done = 0u64;
                    'run: loop {
                        for (ip, packet) in reqs {
                            let o = tracker.tracker.udp(
                                packet,
                                *ip,
                                NOW,
                                &mut rng,
                                &mut scratch,
                                &mut out,
                            );
                            let outcome = now_or_never(o);
                            assert!(outcome.error.is_none(), "{:?}", outcome.error);
                            tracker
                                .stats
                                .record(Protocol::Udp, Family::of(*ip), &outcome);
                            done += 1;
                            if done.is_multiple_of(4096) && Instant::now() >= until {
                                break 'run;
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    total as f64 / secs as f64 / f64::from(threads)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let secs: u64 = args.next().map_or(3, |s| s.parse().expect("seconds"));
    let (mut rounds, mut only) = (3usize, None);
    for arg in args {
        match arg.parse() {
            Ok(n) => rounds = n,
            // One run alone (`one`, `shared`, `steered` or `apart`), for a profiler to look at.
            Err(_) => only = Some(arg),
        }
    }
    let wanted = |run: &str| only.as_deref().is_none_or(|o| o == run);
    let ids = ConnectionIds::new([4; 16], 120, 0);
    let served = |groups: usize| {
        // Torrents are made up by the load, from few addresses: no budget of new torrents.
        let policy = Policy {
            new_torrents_per_minute: 0,
            ..Policy::default()
        };
        let store = MemoryStore::with_groups(policy.clone(), [9; 16], groups);
        Served {
            tracker: Tracker::new(store, policy).with_udp(ids.clone()),
            stats: Stats::default(),
        }
    };
    let (one, shared, grouped) = (served(1), served(1), served(2));
    let (apart_a, apart_b) = (served(1), served(1));
    // (name, the trackers of its threads, steered)
    let runs: Vec<(&str, Vec<&Served>, bool)> = vec![
        ("one", vec![&one], false),
        ("shared", vec![&shared, &shared], false),
        // As the native server builds the store for two UDP threads steered by torrent.
        ("steered", vec![&grouped, &grouped], true),
        // The machine's own ceiling: two threads that share nothing (a tracker each).
        ("apart", vec![&apart_a, &apart_b], false),
    ];
    let runs: Vec<_> = runs.into_iter().filter(|(name, ..)| wanted(name)).collect();
    // Warmed by one pass of each run's clients first; the rounds then alternate the runs, so a
    // machine whose speed drifts (a shared VM) drifts under all of them alike.
    for (_, trackers, steered) in &runs {
        run(trackers, *steered, &ids, 1);
    }
    let mut ratios: Vec<(String, Vec<f64>)> = Vec::new();
    for round in 1..=rounds {
        let rates: Vec<(&str, f64)> = runs
            .iter()
            .map(|(name, trackers, steered)| (*name, run(trackers, *steered, &ids, secs)))
            .collect();
        let rate = |name: &str| rates.iter().find(|(n, _)| *n == name).map(|r| r.1);
        let line: Vec<String> = rates
            .iter()
            .map(|(name, r)| format!("{name} {:.2} M/s", r / 1e6))
            .collect();
        println!(
            "round {round}: {} (announces per second per thread)",
            line.join(", ")
        );
        for (a, b) in [
            ("shared", "one"),
            ("steered", "one"),
            ("apart", "one"),
            ("steered", "apart"),
        ] {
            if let (Some(x), Some(y)) = (rate(a), rate(b)) {
                let key = format!("{a} / {b}");
                match ratios.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(x / y),
                    None => ratios.push((key, vec![x / y])),
                }
            }
        }
    }
    for (key, values) in ratios {
        let each: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "threads: {key} = {} (median {:.3})",
            each.join(" "),
            median(values)
        );
    }
}
