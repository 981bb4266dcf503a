//! HTTP request targets (path and query) through the whole HTTP path: routing with passkeys,
//! query parsing, access rules, store, bencoded reply; on a public and on a private tracker with
//! an allow list. Beyond "no panic": every answer is a bencoded dictionary.
#![no_main]

mod common;

use std::sync::LazyLock;

use common::{NOW, client, tracker};
use edgetracker::protocol::http::split_target;
use edgetracker::protocol::route::{self, Endpoint};
use edgetracker::service::{Scratch, Tracker};
use edgetracker::store::memory::MemoryStore;
use edgetracker::store::now_or_never;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;

static TRACKERS: LazyLock<[Tracker<MemoryStore>; 2]> =
    LazyLock::new(|| [tracker(false), tracker(true)]);

fuzz_target!(|data: &[u8]| {
    let Some((&selector, target)) = data.split_first() else {
        return;
    };
    let client = client(selector);
    let tracker = &TRACKERS[usize::from(selector >> 1 & 1)];
    let (path, query) = split_target(target);
    let Some(route) = route::route(path) else {
        return;
    };
    let mut rng = SmallRng::seed_from_u64(u64::from(selector));
    let mut scratch = Scratch::default();
    let (body, _) = match route.endpoint {
        Endpoint::Announce => now_or_never(tracker.http_announce(
            query,
            route.passkey,
            client,
            NOW,
            &mut rng,
            &mut scratch,
        )),
        Endpoint::Scrape => {
            now_or_never(tracker.http_scrape(query, route.passkey, client, NOW, &mut scratch))
        }
    };
    assert!(
        body.starts_with(b"d") && body.ends_with(b"e"),
        "not a bencoded dictionary"
    );
});
