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
//!
//! The group above keeps one torrent and nothing else, so a 10-peer swarm sits in the L1 cache
//! while a 10 M-peer swarm's announce misses to memory at nearly every step: it measures the
//! cache as much as the swarm. The group `same_store` holds the store's size fixed instead —
//! `SWARM_BENCH_STORE` peers (default 10 M) cut into torrents of each size (1 M torrents of 10
//! peers … one of 10 M) — and announces into a random torrent, as a tracker's traffic does. What
//! then differs between sizes is the swarm's own cost:
//! - `reannounce`: a random known peer of a random torrent announces again, wanting 50;
//! - `join_leave`: a new peer joins a random torrent at a random place, then leaves;
//! - `…_no_peers`: the same, asking for no peers: the swarm's bookkeeping without the sample,
//!   whose cost is one cache miss or so per peer returned, and a 10-peer swarm returns 9.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgetracker::InfoHash;
use edgetracker::UnixTime;
use edgetracker::protocol::types::Event;
use edgetracker::store::PeerAnnounce;
use edgetracker::store::memory::MemoryStore;
use edgetracker::swarm::{PeerAddr, Policy};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const NOW: UnixTime = UnixTime(1_000_000);

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
        new_torrents_per_minute: 0,
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

/// A torrent's info hash for the `same_store` group: spread over the shards and the hash map.
fn torrent(t: u32) -> InfoHash {
    let mut h = [0u8; 20];
    h[..8].copy_from_slice(&(u64::from(t) * 0x9e37_79b9_7f4a_7c15).to_be_bytes());
    h[8..12].copy_from_slice(&t.to_be_bytes());
    InfoHash(h)
}

/// A store of `total` peers in torrents of `size` peers each (addresses 10.0.0.0 upwards in each,
/// even ones leeching), filled in address order.
fn store_of(total: u32, size: u32) -> MemoryStore {
    let policy = Policy {
        max_peers: 20_000_000,
        max_peers_per_torrent: 20_000_000,
        new_torrents_per_minute: 0,
        ..Policy::default()
    };
    let store = MemoryStore::new(policy, [7; 16]);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = Vec::new();
    for t in 0..total / size {
        for seeding in [false, true] {
            for i in (u32::from(seeding)..size).step_by(2) {
                let a = announce_no_peers(torrent(t), peer(0x0a00_0000 + i, 6881), Event::None);
                let a = PeerAnnounce { seeding, ..a };
                store
                    .announce_now(&a, NOW, &mut rng, &mut out)
                    .expect("under the caps");
            }
        }
    }
    assert_eq!(
        store.totals().seeders_v4 + store.totals().leechers_v4,
        u64::from(total / size * size)
    );
    store
}

fn same_store(c: &mut Criterion) {
    let total: u32 = std::env::var("SWARM_BENCH_STORE")
        .ok()
        .map_or(10_000_000, |s| s.trim().parse().expect("a peer count"));
    let mut group = c.benchmark_group("same_store");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for size in sizes().into_iter().filter(|&s| s <= total) {
        let store = store_of(total, size);
        let torrents = total / size;
        let mut rng = SmallRng::seed_from_u64(2);
        let mut out = Vec::with_capacity(50 * 6);
        group.bench_function(BenchmarkId::new("reannounce", size), |b| {
            b.iter(|| {
                let t = torrent(rng.random_range(0..torrents));
                let i = rng.random_range(0..size);
                let a = announce(t, peer(0x0a00_0000 + i, 6881), i % 2 == 1, Event::None);
                out.clear();
                store
                    .announce_now(&a, NOW, &mut rng, &mut out)
                    .expect("known");
                black_box(&out);
            })
        });
        for want in [50, 0] {
            let name = if want == 0 {
                "join_leave_no_peers"
            } else {
                "join_leave"
            };
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| {
                    let t = torrent(rng.random_range(0..torrents));
                    let who = peer(0x0a00_0000 + rng.random_range(0..size), 7000);
                    for event in [Event::Started, Event::Stopped] {
                        let a = PeerAnnounce {
                            want: want.min(announce(t, who, false, event).want),
                            ..announce(t, who, false, event)
                        };
                        out.clear();
                        store
                            .announce_now(&a, NOW, &mut rng, &mut out)
                            .expect("joins, leaves");
                        black_box(&out);
                    }
                })
            });
        }
        group.bench_function(BenchmarkId::new("reannounce_no_peers", size), |b| {
            b.iter(|| {
                let t = torrent(rng.random_range(0..torrents));
                let i = rng.random_range(0..size);
                let a = announce(t, peer(0x0a00_0000 + i, 6881), i % 2 == 1, Event::None);
                out.clear();
                store
                    .announce_now(&PeerAnnounce { want: 0, ..a }, NOW, &mut rng, &mut out)
                    .expect("known");
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, same_store);
criterion_main!(benches);
