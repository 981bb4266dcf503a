//! Memory per peer in the memory store, filled in process through `MemoryStore::announce_now`
//! (the path UDP and HTTP announces take), measured two ways: live heap bytes (a counting
//! allocator: what the data structures ask for) and resident memory growth (what the operating
//! system sees, with the allocator's own overhead and slack).
//!
//! `cargo bench -p edgetracker-native --bench memory`. Scenarios, each in a fresh child process
//! so that one's freed memory does not flatter the next:
//! - `1M_peers_100k_torrents`: 10 IPv4 peers in each of 100,000 torrents (the usual comparison
//!   with other trackers: most swarms are small);
//! - `1M_peers_500k_torrents`: 2 IPv4 peers in each of 500,000 torrents (the long tail, where a
//!   torrent's peers fit inside it);
//! - `10M_peers_1_torrent`: one IPv4 swarm of 10,000,000 peers (the chunked layout).

// A counting global allocator must implement the unsafe `GlobalAlloc`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};

use edgetracker::protocol::types::Event;
use edgetracker::store::PeerAnnounce;
use edgetracker::store::memory::MemoryStore;
use edgetracker::swarm::{PeerAddr, Policy};
use edgetracker::{InfoHash, UnixTime};
use rand::SeedableRng;
use rand::rngs::SmallRng;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract, passed on unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SCENARIOS: [(&str, u32, u32); 3] = [
    ("1M_peers_100k_torrents", 1_000_000, 100_000),
    ("1M_peers_500k_torrents", 1_000_000, 500_000),
    ("10M_peers_1_torrent", 10_000_000, 1),
];

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// A spread-out info hash per torrent (SplitMix64), as real ones are.
fn info_hash(t: u32) -> InfoHash {
    let mut h = [0u8; 20];
    let mut x = u64::from(t).wrapping_add(0x9e37_79b9_7f4a_7c15);
    for part in h.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        part.copy_from_slice(&z.to_be_bytes()[..part.len()]);
    }
    InfoHash(h)
}

/// Fills a store with `peers` over `torrents` and prints bytes per peer.
fn measure(name: &str, peers: u32, torrents: u32) {
    let policy = Policy {
        max_peers_per_torrent: 20_000_000,
        // Every torrent is new and made from a handful of addresses.
        new_torrents_per_minute: 0,
        ..Policy::default()
    };
    let hashes: Vec<InfoHash> = (0..torrents).map(info_hash).collect();
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), resident_bytes());
    let store = MemoryStore::new(policy, [3; 16]);
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = Vec::new();
    for i in 0..peers {
        // Peer k of torrent t: one address per torrent and a port per peer (within the
        // per-address cap) for small swarms; distinct addresses for the one large swarm.
        let (t, k) = (i % torrents, i / torrents);
        let peer = if torrents == 1 {
            PeerAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 6881)
        } else {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, 1 + (t % 4) as u8);
            PeerAddr::new(ip.into(), 10_000 + k as u16)
        };
        let a = PeerAnnounce {
            info_hash: hashes[t as usize],
            peer,
            event: Event::Started,
            seeding: i % 2 == 0,
            want: 0,
        };
        out.clear();
        store
            .announce_now(&a, UnixTime(1_000_000), &mut rng, &mut out)
            .expect("under the caps");
    }
    let heap = LIVE.load(Ordering::Relaxed) - heap0;
    let rss = resident_bytes() - rss0;
    let t = store.totals();
    assert_eq!(t.seeders_v4 + t.leechers_v4, u64::from(peers));
    println!(
        "memory/{name}: heap {:.1} B/peer, resident {:.1} B/peer ({} peers, {} torrents)",
        heap as f64 / f64::from(peers),
        rss as f64 / f64::from(peers),
        peers,
        t.torrents
    );
}

fn main() {
    if let Ok(name) = std::env::var("MEMORY_BENCH_SCENARIO") {
        let (name, peers, torrents) = SCENARIOS
            .into_iter()
            .find(|s| s.0 == name)
            .expect("a known scenario");
        return measure(name, peers, torrents);
    }
    // `cargo bench` passes `--bench`; a filter argument picks scenarios by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let me = std::env::current_exe().expect("own path");
    for (name, ..) in SCENARIOS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let status = Command::new(&me)
            .env("MEMORY_BENCH_SCENARIO", name)
            .status()
            .expect("run the scenario");
        assert!(status.success(), "{name} failed");
    }
}
