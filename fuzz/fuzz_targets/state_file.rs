//! State files: arbitrary bytes as they are, and arbitrary bodies behind a valid header and
//! checksum (so the fuzzer gets past the CRC into the parser and the store's restore).
#![no_main]

use edgetracker::UnixTime;
use edgetracker::store::memory::MemoryStore;
use edgetracker::swarm::Policy;
use edgetracker_native::state;
use libfuzzer_sys::fuzz_target;

const NOW: UnixTime = UnixTime(1_750_000_000);

fuzz_target!(|data: &[u8]| {
    let store = MemoryStore::with_shards(Policy::default(), [1; 16], 4);
    let _ = state::decode_into(data, &store, NOW);
    let mut file = b"ETSTATE\0".to_vec();
    file.extend_from_slice(data);
    let crc = crc32fast::hash(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    let store = MemoryStore::with_shards(Policy::default(), [1; 16], 4);
    if let Ok(summary) = state::decode_into(&file, &store, NOW) {
        assert_eq!(
            store.totals().peers() as usize,
            summary.peers,
            "every restored peer counted"
        );
    }
});
