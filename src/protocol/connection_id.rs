//! BEP 15 connection ids: stateless, unforgeable, short-lived.
//!
//! An id is a 4-byte issue time plus a 4-byte keyed MAC (SipHash-2-4) of that time and the
//! client's IP, the scheme aquatic and Chihaya use. Nothing is stored per client, a spoofed source
//! cannot obtain an id it could use, and ids die after `validity` seconds (plus `leniency`, for
//! clients such as uTorrent that reuse ids minutes later). Ids from the future are refused, and
//! MACs are compared in constant time. Unlike XBT, the secret never depends on the address; unlike
//! opentracker, ids do expire.

use std::hash::Hasher;
use std::net::IpAddr;

use crate::time::UnixTime;
use siphasher::sip::SipHasher24;
use subtle::ConstantTimeEq;

use super::types::canonical_ip;

/// Issues and checks connection ids under one secret key.
#[derive(Clone)]
pub struct ConnectionIds {
    key: [u8; 16],
    max_age: u32,
}

impl ConnectionIds {
    /// `key` must be secret and random (the caller draws it; the core draws no entropy).
    /// Ids are accepted for `validity + leniency` seconds after issue.
    pub fn new(key: [u8; 16], validity: u32, leniency: u32) -> Self {
        ConnectionIds {
            key,
            max_age: validity.saturating_add(leniency),
        }
    }

    fn mac(&self, issued: UnixTime, ip: IpAddr) -> [u8; 4] {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(&issued.secs().to_be_bytes());
        match canonical_ip(ip) {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        let full = h.finish();
        (full as u32).to_be_bytes()
    }

    /// The id to hand a client connecting from `ip` at `now`.
    pub fn issue(&self, now: UnixTime, ip: IpAddr) -> [u8; 8] {
        let mut id = [0u8; 8];
        id[..4].copy_from_slice(&now.secs().to_be_bytes());
        id[4..].copy_from_slice(&self.mac(now, ip));
        id
    }

    /// Whether `id` was issued by us, to `ip`, no more than the allowed age ago.
    pub fn is_valid(&self, id: [u8; 8], now: UnixTime, ip: IpAddr) -> bool {
        let issued = UnixTime(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
        let fresh = issued <= now && now.since(issued) <= self.max_age;
        // Always compute the MAC, so timing says nothing about which check failed.
        let mac_ok = bool::from(self.mac(issued, ip).ct_eq(&id[4..]));
        fresh & mac_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ids() -> ConnectionIds {
        ConnectionIds::new(*b"0123456789abcdef", 120, 0)
    }

    const NOW: UnixTime = UnixTime(1_700_000_000);

    #[test]
    fn accepts_its_own_id_from_the_same_ip() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let id = ids().issue(NOW, ip);
        assert!(ids().is_valid(id, NOW, ip));
        assert!(ids().is_valid(id, NOW + 120, ip));
    }

    #[test]
    fn refuses_other_ips_expired_future_and_forged_ids() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let id = ids().issue(NOW, ip);
        assert!(!ids().is_valid(id, NOW, "192.0.2.2".parse().unwrap()));
        assert!(!ids().is_valid(id, NOW + 121, ip), "expired");
        assert!(
            !ids().is_valid(ids().issue(NOW + 5, ip), NOW, ip),
            "from the future"
        );
        let mut forged = id;
        forged[7] ^= 1;
        assert!(!ids().is_valid(forged, NOW, ip));
        let other_key = ConnectionIds::new([7; 16], 120, 0);
        assert!(!other_key.is_valid(id, NOW, ip));
    }

    #[test]
    fn leniency_extends_validity() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let lenient = ConnectionIds::new(*b"0123456789abcdef", 120, 600);
        let id = lenient.issue(NOW, ip);
        assert!(lenient.is_valid(id, NOW + 700, ip));
        assert!(!lenient.is_valid(id, NOW + 721, ip));
    }

    #[test]
    fn mapped_ipv4_is_the_same_client() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(ids().is_valid(ids().issue(NOW, v4), NOW, mapped));
    }
}
