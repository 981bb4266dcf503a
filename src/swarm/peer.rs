//! A peer's identity in a swarm: its address and port, in compact wire form.

use std::net::{IpAddr, SocketAddr};

use crate::protocol::types::{Event, Family, canonical_ip};

/// What an announce says of a peer's part in its swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStatus {
    /// In the swarm with something left to download.
    Leeching,
    /// In the swarm with the whole torrent.
    Seeding,
    /// Leaving the swarm (`event=stopped`), whatever it held.
    Stopped,
}

impl PeerStatus {
    /// From an announce's event and whether it has nothing left to download (`left == 0`).
    pub fn new(event: Event, seeding: bool) -> PeerStatus {
        match event {
            Event::Stopped => PeerStatus::Stopped,
            _ if seeding => PeerStatus::Seeding,
            _ => PeerStatus::Leeching,
        }
    }

    /// A peer staying in the swarm in the role `seeding` says.
    pub fn staying(seeding: bool) -> PeerStatus {
        if seeding {
            PeerStatus::Seeding
        } else {
            PeerStatus::Leeching
        }
    }
}

/// A peer as it is keyed and sent: 6 bytes (IPv4 + port) or 18 bytes (IPv6 + port), network
/// order, which is also the BEP 23 / BEP 7 compact form. Peers are keyed by address and port, not
/// by peer id, so nobody can push another peer out of a swarm by claiming its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerAddr {
    V4([u8; 6]),
    V6([u8; 18]),
}

impl PeerAddr {
    pub fn new(ip: IpAddr, port: u16) -> PeerAddr {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 6];
                b[..4].copy_from_slice(&v4.octets());
                b[4..].copy_from_slice(&port.to_be_bytes());
                PeerAddr::V4(b)
            }
            IpAddr::V6(v6) => {
                let mut b = [0u8; 18];
                b[..16].copy_from_slice(&v6.octets());
                b[16..].copy_from_slice(&port.to_be_bytes());
                PeerAddr::V6(b)
            }
        }
    }

    pub fn family(&self) -> Family {
        match self {
            PeerAddr::V4(_) => Family::V4,
            PeerAddr::V6(_) => Family::V6,
        }
    }

    /// The compact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PeerAddr::V4(b) => b,
            PeerAddr::V6(b) => b,
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        let b = self.as_bytes();
        let port = u16::from_be_bytes([b[b.len() - 2], b[b.len() - 1]]);
        let ip = match self {
            PeerAddr::V4(b) => IpAddr::from(<[u8; 4]>::try_from(&b[..4]).expect("4 bytes")),
            PeerAddr::V6(b) => IpAddr::from(<[u8; 16]>::try_from(&b[..16]).expect("16 bytes")),
        };
        SocketAddr::new(ip, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn compact_forms() {
        let v4 = PeerAddr::new("10.0.0.1".parse().unwrap(), 6881);
        assert_eq!(v4.as_bytes(), &[10, 0, 0, 1, 0x1a, 0xe1]);
        let mapped = PeerAddr::new("::ffff:10.0.0.1".parse().unwrap(), 6881);
        assert_eq!(mapped, v4, "IPv4-mapped IPv6 is the IPv4 peer");
        let v6 = PeerAddr::new("2001:db8::1".parse().unwrap(), 1);
        assert_eq!(v6.family(), Family::V6);
        assert_eq!(v6.as_bytes().len(), 18);
        assert_eq!(v6.socket_addr(), "[2001:db8::1]:1".parse().unwrap());
    }
}
