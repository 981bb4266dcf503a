//! How the tracker's request path scales across threads, without sockets: the service layer
//! (`Tracker::udp`, and the `/stats` counters after it, as the UDP threads call them) driven by 1
//! and then 2 threads with pre-built BEP 15 announces, each thread its own clients, all on one
//! shared memory store.
//!
//! `cargo bench -p edgetracker-native --bench threads [-- SECONDS [one|shared|apart]]` (default 5 s
//! per run; naming a run does that one alone, for a profiler). Prints
//! announces per second per thread and the ratio of two threads' per-thread rate to one thread's:
//! 1.0 would mean nothing shared slows them (the store's shard locks, its atomic counters, the
//! access rules, cache lines moving between cores). A third run, two threads with a tracker each,
//! shares nothing at all: the machine's own ceiling (a VM's two vCPUs rarely give two cores'
//! worth). Run it on an otherwise idle machine with at least two cores.

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
use edgetracker::store::memory::MemoryStore;
use edgetracker::store::now_or_never;
use edgetracker::swarm::Policy;
use edgetracker_native::stats::{Protocol, Stats};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const NOW: UnixTime = UnixTime(1_000_000);
const TORRENTS: u32 = 100_000;
/// Distinct clients per thread, each announcing in turn to a random torrent.
const CLIENTS: u32 = 50_000;

/// One thread's announces: (client address, datagram with that client's connection id).
fn requests(thread: u32, ids: &ConnectionIds) -> Vec<(IpAddr, Vec<u8>)> {
    let mut rng = SmallRng::seed_from_u64(u64::from(thread));
    (0..CLIENTS)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + thread * CLIENTS + i));
            let t = rng.random_range(0..TORRENTS);
            let mut hash = [0u8; 20];
            hash[..4].copy_from_slice(&t.to_be_bytes());
            hash[4] = 0x5a;
            let a = AnnounceRequest {
                info_hash: InfoHash(hash),
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
fn run(trackers: &[&Served], ids: &ConnectionIds, secs: u64) -> f64 {
    let threads = trackers.len() as u32;
    let work: Vec<_> = (0..threads).map(|t| requests(t, ids)).collect();
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

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let secs: u64 = args.next().map_or(5, |s| s.parse().expect("seconds"));
    // One run alone (`one`, `shared` or `apart`), for a profiler to look at.
    let only = args.next();
    let wanted = |run: &str| only.as_deref().is_none_or(|o| o == run);
    let tracker = |ids: &ConnectionIds| {
        let policy = Policy::default();
        Served {
            tracker: Tracker::new(MemoryStore::new(policy.clone(), [9; 16]), policy)
                .with_udp(ids.clone()),
            stats: Stats::default(),
        }
    };
    let ids = ConnectionIds::new([4; 16], 120, 0);
    // Each run on fresh stores, warmed by one pass of its clients first.
    let measure = |trackers: &[&Served]| {
        run(trackers, &ids, 1);
        run(trackers, &ids, secs)
    };
    let one = wanted("one").then(|| measure(&[&tracker(&ids)]));
    let two = wanted("shared").then(|| {
        let shared = tracker(&ids);
        measure(&[&shared, &shared])
    });
    // The machine's own ceiling: two threads that share nothing (a tracker each).
    let apart = wanted("apart").then(|| measure(&[&tracker(&ids), &tracker(&ids)]));
    if let Some(one) = one {
        println!("threads/1: {one:.0} announces/s per thread");
    }
    if let Some(two) = two {
        println!("threads/2: {two:.0} announces/s per thread, one tracker");
    }
    if let Some(apart) = apart {
        println!("threads/2-apart: {apart:.0} announces/s per thread, a tracker each");
    }
    if let (Some(one), Some(two), Some(apart)) = (one, two, apart) {
        println!(
            "threads: two threads on one tracker / one thread = {:.3}; / two apart = {:.3}",
            two / one,
            two / apart
        );
    }
}
