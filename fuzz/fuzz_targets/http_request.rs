//! HTTP request targets (path and query) through the whole HTTP path: routing with passkeys,
//! query parsing, access rules, store, bencoded reply; on a public and on a private tracker with
//! an allow list. Beyond "no panic": every answer is a bencoded dictionary.
#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use edgetracker::access::{self, Access, Endpoint, ListMode};
use edgetracker::protocol::connection_id::ConnectionIds;
use edgetracker::protocol::http::split_target;
use edgetracker::service::{Scratch, Tracker};
use edgetracker::store::memory::MemoryStore;
use edgetracker::store::now_or_never;
use edgetracker::swarm::Policy;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;

const NOW: u32 = 1_750_000_000;

fn tracker(private: bool) -> Tracker<MemoryStore> {
    let policy = Policy::default();
    let t = Tracker::new(
        MemoryStore::new(policy.clone(), [1; 16]),
        policy,
        ConnectionIds::new([2; 16], 120, 0),
    );
    if private {
        let rules = Access::open()
            .with_list(
                ListMode::Allow,
                "0102030405060708090a0b0c0d0e0f1011121314\n",
            )
            .and_then(|a| a.with_passkeys("alice0123456789ab\n"))
            .expect("rules");
        t.set_access(rules);
    }
    t
}

static TRACKERS: LazyLock<[Tracker<MemoryStore>; 2]> =
    LazyLock::new(|| [tracker(false), tracker(true)]);

fuzz_target!(|data: &[u8]| {
    let Some((&selector, target)) = data.split_first() else {
        return;
    };
    let client: IpAddr = if selector & 1 == 0 {
        "10.0.0.1".parse().unwrap()
    } else {
        "2001:db8::1".parse().unwrap()
    };
    let tracker = &TRACKERS[usize::from(selector >> 1 & 1)];
    let (path, query) = split_target(target);
    let Some(route) = access::route(path) else {
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
