//! Announce cost against swarm size: one torrent of 10, 1 k, 100 k or 10 M peers in the memory
//! store, through `MemoryStore::announce_now` (shard lock, torrent lookup, the peer list's
//! change, and a sample of 50 peers), as the UDP and HTTP servers call it.
//!
//! `cargo bench -p edgetracker-native --bench swarm`. Measured per iteration:
//! - `join_leave`: a new peer joins at a random place in the address order, then leaves;
//! - `join_leave_no_peers`: the same, asking for no peers (the swarm's bookkeeping alone);
//! - `front_join_leave`: the same for a peer that sorts before every other (the costliest place
//!   for one sorted vector: an attacker's choice);
//! - `reannounce`: a random known peer announces again.
//!
//! `SWARM_BENCH_SIZES=10,1000` limits the sizes (the 10 M swarm takes about 100 MB and a few
//! seconds to fill).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgetracker::InfoHash;
use edgetracker::protocol::types::Event;
use edgetracker::store::PeerAnnounce;
use edgetracker::store::memory::MemoryStore;
use edgetracker::swarm::{PeerAddr, Policy};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const NOW: u32 = 1_000_000;

fn peer(ip: u32, port: u16) -> PeerAddr {
    PeerAddr::new(std::net::Ipv4Addr::from(ip).into(), port)
}

fn announce(info_hash: InfoHash, peer: PeerAddr, seeding: bool, event: Event) -> PeerAnnounce {
    PeerAnnounce {
        info_hash,
        peer,
        event,
        seeding,
        want: if event == Event::Stopped { 0 } else { 50 },
    }
}

/// [`announce`] asking for no peers: what the swarm's bookkeeping costs without the sample.
fn announce_no_peers(info_hash: InfoHash, peer: PeerAddr, event: Event) -> PeerAnnounce {
    PeerAnnounce {
        want: 0,
        ..announce(info_hash, peer, false, event)
    }
}

/// A store holding one torrent of `n` peers at 10.0.0.0 upwards, port 6881: the even ones
/// leeching, the odd ones seeding. Each role is filled in address order, so that even a store
/// that keeps one sorted vector per swarm fills in linear time.
fn swarm_of(n: u32) -> (MemoryStore, InfoHash) {
    let policy = Policy {
        max_peers: 20_000_000,
        max_peers_per_torrent: 20_000_000,
        ..Policy::default()
    };
    let store = MemoryStore::new(policy, [7; 16]);
    let hash = InfoHash([0xab; 20]);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = Vec::new();
    for seeding in [false, true] {
        for i in (u32::from(seeding)..n).step_by(2) {
            let a = announce(hash, peer(0x0a00_0000 + i, 6881), seeding, Event::None);
            out.clear();
            store
                .announce_now(&PeerAnnounce { want: 0, ..a }, NOW, &mut rng, &mut out)
                .expect("under the caps");
        }
    }
    assert_eq!(
        store.totals().seeders_v4 + store.totals().leechers_v4,
        u64::from(n)
    );
    (store, hash)
}

fn sizes() -> Vec<u32> {
    std::env::var("SWARM_BENCH_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("a size"))
                .collect()
        })
        .unwrap_or_else(|| vec![10, 1_000, 100_000, 10_000_000])
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("announce");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in sizes() {
        let (store, hash) = swarm_of(n);
        let mut rng = SmallRng::seed_from_u64(2);
        let mut out = Vec::with_capacity(50 * 6);
        let join_leave = |who: PeerAddr, out: &mut Vec<u8>, rng: &mut SmallRng| {
            out.clear();
            store
                .announce_now(&announce(hash, who, false, Event::Started), NOW, rng, out)
                .expect("joins");
            black_box(&out);
            store
                .announce_now(&announce(hash, who, false, Event::Stopped), NOW, rng, out)
                .expect("leaves");
        };
        group.bench_function(BenchmarkId::new("join_leave", n), |b| {
            b.iter(|| {
                let who = peer(0x0a00_0000 + rng.random_range(0..n), 7000);
                join_leave(who, &mut out, &mut rng)
            })
        });
        group.bench_function(BenchmarkId::new("join_leave_no_peers", n), |b| {
            b.iter(|| {
                let who = peer(0x0a00_0000 + rng.random_range(0..n), 7000);
                for event in [Event::Started, Event::Stopped] {
                    let a = announce_no_peers(hash, who, event);
                    store
                        .announce_now(&a, NOW, &mut rng, &mut out)
                        .expect("joins, leaves");
                }
            })
        });
        group.bench_function(BenchmarkId::new("front_join_leave", n), |b| {
            b.iter(|| join_leave(peer(0x09ff_ffff, 1), &mut out, &mut rng))
        });
        group.bench_function(BenchmarkId::new("reannounce", n), |b| {
            b.iter(|| {
                let i = rng.random_range(0..n);
                let a = announce(hash, peer(0x0a00_0000 + i, 6881), i % 2 == 1, Event::None);
                out.clear();
                store
                    .announce_now(&a, NOW, &mut rng, &mut out)
                    .expect("known");
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
