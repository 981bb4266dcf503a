//! A state file cannot make the tracker allocate for data it does not hold: counts in a crafted
//! header are believed only as far as the bytes behind them go. (The fuzzer found a 30-byte file
//! that reserved 48 MB at every start.) Its own test binary, for its counting allocator.

// A counting global allocator must implement the unsafe `GlobalAlloc`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use edgetracker::store::memory::MemoryStore;
use edgetracker::swarm::Policy;
use edgetracker_native::state;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_crafted_header_does_not_reserve_memory_for_what_it_claims() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let store = MemoryStore::with_shards(Policy::default(), [1; 16], 1);
    // A valid header claiming u32::MAX torrents, then one torrent claiming u32::MAX peers.
    let mut file = b"ETSTATE\0".to_vec();
    for n in [1u32, 1_750_000_000, u32::MAX] {
        file.extend_from_slice(&n.to_le_bytes());
    }
    file.extend_from_slice(&[7; 20]);
    for n in [0u32, u32::MAX, u32::MAX] {
        file.extend_from_slice(&n.to_le_bytes());
    }
    let crc = crc32fast::hash(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    let (refused, peak, _) =
        measure(|| state::decode_into(&file, &store, edgetracker::UnixTime(1_750_000_000)));
    assert_eq!(refused, Err("truncated".to_string()));
    // (The checksum pass reads in 64 KiB chunks; what matters is nothing near 48 MB.)
    assert!(
        peak < 256 * 1024,
        "reading a {}-byte file reserved {peak} bytes",
        file.len()
    );
}

/// Tests here measure one global allocator: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Peak bytes allocated while `f` runs, above what was live before, and what stays live after.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let kept = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    (out, peak, kept)
}

#[test]
fn saving_and_loading_stream_instead_of_copying_the_swarms() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Before: a save built the whole file in memory and a load the whole parsed swarm list:
    // with 10 M peers, RSS went 80 MB -> 267 MB at every save, 413 MB while loading.
    use edgetracker::protocol::types::Event;
    use edgetracker::store::PeerAnnounce;
    use edgetracker::swarm::PeerAddr;
    use rand::SeedableRng;
    let store = MemoryStore::new(Policy::default(), [2; 16]);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let now = edgetracker::UnixTime(1_750_000_000);
    for i in 0..200_000u32 {
        let mut hash = [7u8; 20];
        hash[..4].copy_from_slice(&(i % 5000).to_be_bytes());
        let a = PeerAnnounce {
            info_hash: edgetracker::InfoHash(hash),
            peer: PeerAddr::new(
                std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                6881,
            ),
            event: Event::Started,
            seeding: i % 3 == 0,
            want: 0,
        };
        store
            .announce_now(&a, now, &mut rng, &mut Vec::new())
            .unwrap();
    }
    let (bytes, _) = state::encode(&store, now);
    let (saved, peak, _) = measure(|| state::write(&store, now, std::io::sink()).unwrap());
    assert_eq!(saved.peers, 200_000);
    assert!(
        peak < bytes.len() / 8,
        "saving a {}-byte file allocated {peak} bytes at its peak",
        bytes.len()
    );
    let restored = MemoryStore::new(Policy::default(), [2; 16]);
    let (loaded, peak, kept) = measure(|| state::decode_into(&bytes, &restored, now).unwrap());
    assert_eq!(loaded.peers, 200_000);
    assert!(
        peak - kept < bytes.len() / 8,
        "loading a {}-byte file allocated {} bytes beyond the swarms it restored",
        bytes.len(),
        peak - kept
    );
}
