//! What the service-level targets share: a tracker as the binary builds one, public or private,
//! and the client address a selector byte picks.

use std::net::IpAddr;

use edgetracker::UnixTime;
use edgetracker::access::{Access, ListMode};
use edgetracker::protocol::connection_id::ConnectionIds;
use edgetracker::ratelimit::RateLimit;
use edgetracker::service::Tracker;
use edgetracker::store::memory::MemoryStore;
use edgetracker::swarm::Policy;

pub const NOW: UnixTime = UnixTime(1_750_000_000);

/// A tracker with a rate limit (generous, so fuzzing is not all refusals); a private one also
/// with an allow list and a passkey.
pub fn tracker(private: bool) -> Tracker<MemoryStore> {
    let policy = Policy::default();
    let t = Tracker::new(MemoryStore::new(policy.clone(), [1; 16]), policy)
        .with_udp(ConnectionIds::new([2; 16], 120, 0))
        .with_rate_limit(RateLimit {
            per_minute: 60,
            burst: 1000,
        });
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

/// Bit 0 of a selector byte: an IPv4 or an IPv6 client.
pub fn client(selector: u8) -> IpAddr {
    if selector & 1 == 0 {
        "10.0.0.1".parse().unwrap()
    } else {
        "2001:db8::1".parse().unwrap()
    }
}
