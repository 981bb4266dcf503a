//! A state file cannot make the tracker allocate for data it does not hold: counts in a crafted
//! header are believed only as far as the bytes behind them go. (The fuzzer found a 30-byte file
//! that reserved 48 MB at every start.) Its own test binary, for its counting allocator.

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
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_crafted_header_does_not_reserve_memory_for_what_it_claims() {
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
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let refused = state::decode_into(&file, &store, 1_750_000_000);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(refused, Err("truncated".to_string()));
    assert!(
        peak < 64 * 1024,
        "reading a {}-byte file reserved {peak} bytes",
        file.len()
    );
}
