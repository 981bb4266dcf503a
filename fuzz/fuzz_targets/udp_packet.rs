//! BEP 15 datagrams through the whole UDP path (parse, connection id, access, rate limit, store,
//! reply), from an IPv4 or IPv6 client, public or private tracker. Invariants beyond "no panic":
//! a reply to a packet without a valid connection id is never longer than the packet.
#![no_main]

mod common;

use std::sync::LazyLock;

use common::{NOW, client, tracker};
use edgetracker::service::{Scratch, Tracker};
use edgetracker::store::memory::MemoryStore;
use edgetracker::store::now_or_never;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;

static TRACKERS: LazyLock<[Tracker<MemoryStore>; 2]> =
    LazyLock::new(|| [tracker(false), tracker(true)]);

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let client = client(selector);
    let tracker = &TRACKERS[usize::from(selector >> 1 & 1)];
    let mut packet = packet.to_vec();
    // Half the inputs carry a valid connection id, so announces and scrapes go all the way in.
    let proven = selector & 4 != 0 && packet.len() >= 8;
    if proven {
        let id = tracker
            .connection_ids()
            .expect("serves UDP")
            .issue(NOW, client);
        packet[..8].copy_from_slice(&id);
    }
    let mut rng = SmallRng::seed_from_u64(u64::from(selector));
    let mut out = Vec::new();
    now_or_never(tracker.udp(
        &packet,
        client,
        NOW,
        &mut rng,
        &mut Scratch::default(),
        &mut out,
    ));
    if !proven {
        assert!(
            out.len() <= packet.len(),
            "a reply of {} bytes to an unproven packet of {}",
            out.len(),
            packet.len()
        );
    }
});
