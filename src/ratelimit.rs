//! Per-client announce rate limiting: the seam every home's limiter plugs into
//! ([`AnnounceGate`]), who counts as one client ([`client_key`]), and the in-process token
//! bucket ([`Limiter`]) the native tracker uses.
//!
//! Each client may announce `burst` times at once and then `per_minute` times a minute. Buckets
//! are sharded behind short-held mutexes (as the memory store is) and forgotten once full again,
//! so memory follows the number of recently active clients. Pure: `now` comes from the caller.
//! The edge, whose requests are spread over many isolates, plugs in Cloudflare's Rate Limiting
//! API instead (`src/edge`).

use std::collections::HashMap;
use std::future::{Future, ready};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use crate::protocol::types::canonical_ip;
use crate::time::UnixTime;

/// Who counts as one client: its IPv4 address, or its IPv6 /64. An ISP hands a subscriber at
/// least a /64, and a host can rotate through it at will (privacy addresses), so limiting single
/// IPv6 addresses would limit nobody. IPv4-mapped addresses count as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// The network a client belongs to, for caps that a host holding many addresses must not
/// multiply: an IPv4 /24 or an IPv6 /48 (what an ISP hands one site, 65,536 /64s). A cap per
/// [`client_key`] alone is one /64 of those; a second cap per group bounds the whole site.
pub fn client_group(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 48))),
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & !0xff).into()),
    }
}

/// Decides whether a client may announce now. The seam between the service and a home's limiter:
/// the in-process [`Limiter`] answers at once (a ready future, so the native hot path pays
/// nothing for the edge's async); the Worker asks a Cloudflare binding.
pub trait AnnounceGate {
    /// True when `ip` may announce at `now`; spends one announce of its budget.
    fn permit(&self, ip: IpAddr, now: UnixTime) -> impl Future<Output = bool>;
}

impl AnnounceGate for Limiter {
    fn permit(&self, ip: IpAddr, now: UnixTime) -> impl Future<Output = bool> {
        ready(self.allow(ip, now))
    }
}

/// The limit; `per_minute == 0` turns limiting off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths, so slow rates refill smoothly with whole-second clocks.
    milli: u64,
    last: UnixTime,
}

const SHARDS: usize = 16;

fn spread_byte(h: usize, b: &u8) -> usize {
    h.wrapping_mul(31).wrapping_add(usize::from(*b))
}

/// Token buckets, one per client ([`client_key`], or another key function).
pub struct Limiter {
    limit: RateLimit,
    key: fn(IpAddr) -> IpAddr,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl Limiter {
    /// One bucket per [`client_key`].
    pub fn new(limit: RateLimit) -> Self {
        Self::keyed_by(limit, client_key)
    }

    /// One bucket per `key(ip)` ([`client_group`], say).
    pub fn keyed_by(limit: RateLimit, key: fn(IpAddr) -> IpAddr) -> Self {
        Limiter {
            limit,
            key,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.limit.per_minute > 0
    }

    fn capacity(&self) -> u64 {
        u64::from(self.limit.burst.max(1)) * 1000
    }

    fn shard(&self, key: &IpAddr) -> &Mutex<HashMap<IpAddr, Bucket>> {
        // The low bytes of the prefix that vary between keys (the same for every key function).
        let spread = match key {
            IpAddr::V4(v4) => v4.octets().iter().fold(0, spread_byte),
            IpAddr::V6(v6) => v6.octets()[..8].iter().fold(0, spread_byte),
        };
        &self.shards[spread % SHARDS]
    }

    /// Takes one token for the client at `ip` ([`client_key`], or the limiter's key) at `now`;
    /// false when its bucket is empty.
    pub fn allow(&self, ip: IpAddr, now: UnixTime) -> bool {
        if !self.is_on() {
            return true;
        }
        let key = (self.key)(ip);
        let capacity = self.capacity();
        let mut buckets = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(key).or_insert(Bucket {
            milli: capacity,
            last: now,
        });
        let elapsed = u64::from(now.since(bucket.last));
        // per_minute tokens a minute = per_minute * 1000 / 60 milli-tokens a second.
        bucket.milli =
            (bucket.milli + elapsed * u64::from(self.limit.per_minute) * 1000 / 60).min(capacity);
        bucket.last = now;
        if bucket.milli >= 1000 {
            bucket.milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have refilled by `now` (they would behave as new ones).
    pub fn prune(&self, now: UnixTime) {
        let capacity = self.capacity();
        let per_second = u64::from(self.limit.per_minute) * 1000 / 60;
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, b| b.milli + u64::from(now.since(b.last)) * per_second < capacity);
        }
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn off_allows_everything() {
        let l = Limiter::new(RateLimit::default());
        assert!((0..1000).all(|_| l.allow(ip("10.0.0.1"), UnixTime(1))));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn burst_then_refill_per_address() {
        let l = Limiter::new(RateLimit {
            per_minute: 6,
            burst: 3,
        });
        let a = ip("10.0.0.1");
        assert!((0..3).all(|_| l.allow(a, UnixTime(100))));
        assert!(!l.allow(a, UnixTime(100)), "burst spent");
        assert!(
            l.allow(ip("10.0.0.2"), UnixTime(100)),
            "another address has its own bucket"
        );
        assert!(!l.allow(a, UnixTime(109)), "6 a minute: one token per 10 s");
        assert!(l.allow(a, UnixTime(110)));
        assert!(!l.allow(a, UnixTime(110)));
        assert!(
            l.allow(ip("::ffff:10.0.0.2"), UnixTime(100)),
            "mapped IPv4 is the same client (2 left)"
        );
        l.prune(UnixTime(1000));
        assert_eq!(l.tracked(), 0, "refilled buckets are forgotten");
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        let l = Limiter::new(RateLimit {
            per_minute: 1,
            burst: 2,
        });
        assert!(l.allow(ip("2001:db8:1:2::1"), UnixTime(5)));
        assert!(l.allow(ip("2001:db8:1:2::2"), UnixTime(5)));
        assert!(
            !l.allow(ip("2001:db8:1:2:ffff::3"), UnixTime(5)),
            "a new address in the same /64 shares the bucket"
        );
        assert!(
            l.allow(ip("2001:db8:1:3::1"), UnixTime(5)),
            "the next /64 does not"
        );
    }

    #[test]
    fn a_group_is_an_ipv4_24_or_an_ipv6_48() {
        assert_eq!(client_group(ip("192.0.2.7")), ip("192.0.2.0"));
        assert_eq!(client_group(ip("::ffff:192.0.2.7")), ip("192.0.2.0"));
        assert_eq!(
            client_group(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1::")
        );
        let l = Limiter::keyed_by(
            RateLimit {
                per_minute: 1,
                burst: 2,
            },
            client_group,
        );
        assert!(l.allow(ip("2001:db8:1:2::1"), UnixTime(5)));
        assert!(l.allow(ip("2001:db8:1:ffff::1"), UnixTime(5)));
        assert!(
            !l.allow(ip("2001:db8:1:abcd::1"), UnixTime(5)),
            "any /64 of the /48 shares the bucket"
        );
        assert!(l.allow(ip("2001:db8:2::1"), UnixTime(5)));
        assert!(l.allow(ip("192.0.2.1"), UnixTime(5)));
        assert!(l.allow(ip("192.0.2.200"), UnixTime(5)));
        assert!(!l.allow(ip("192.0.2.99"), UnixTime(5)), "one /24");
    }
}
