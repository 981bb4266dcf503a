//! What a WebTorrent socket's object must remember across hibernation, in the socket's
//! attachment (which survives hibernation and holds at most 2,048 bytes): the connection's id,
//! the client's address, the passkey of its URL, the swarms it joined, and what is left of its
//! budget of offers.
//!
//! ```text
//! version 2 u8, conn u64, family u8 (4 | 6), address [4 | 16], passkey length u8 (255: none),
//! passkey, swarms u8, (info hash [20], peer id [20]) each,
//! budget u8 (0: untouched; 1: followed by milli-offers u64 and last spent u32)
//! ```
//!
//! (Version 1, still read, had no budget: a socket attached before the upgrade starts whole.)
//!
//! Binary, not JSON, so that the most swarms a socket may join
//! ([`super::super::config::MAX_TORRENTS_PER_CONNECTION`]) fit with the longest passkey. Owns
//! this layout only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::protocol::types::{InfoHash, PeerId};
use crate::service::ws::OfferBudget;
use crate::swarm::rtc::ConnId;
use crate::time::UnixTime;

/// The longest passkey a WebSocket URL may carry here.
pub const MAX_PASSKEY: usize = 64;

/// What the attachment holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub conn: ConnId,
    pub client: IpAddr,
    pub passkey: Option<Vec<u8>>,
    pub joined: Vec<(InfoHash, PeerId)>,
    pub offer_budget: Option<OfferBudget>,
}

const VERSION: u8 = 2;
const NO_PASSKEY: u8 = 255;

impl Attachment {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + 40 * self.joined.len());
        out.push(VERSION);
        out.extend_from_slice(&self.conn.to_be_bytes());
        match self.client {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        match &self.passkey {
            Some(key) => {
                let key = &key[..key.len().min(MAX_PASSKEY)];
                out.push(key.len() as u8);
                out.extend_from_slice(key);
            }
            None => out.push(NO_PASSKEY),
        }
        out.push(self.joined.len().min(255) as u8);
        for (hash, peer) in self.joined.iter().take(255) {
            out.extend_from_slice(&hash.0);
            out.extend_from_slice(&peer.0);
        }
        match self.offer_budget {
            None => out.push(0),
            Some(budget) => {
                out.push(1);
                out.extend_from_slice(&budget.milli.to_be_bytes());
                out.extend_from_slice(&budget.last.secs().to_be_bytes());
            }
        }
        out
    }

    /// `None` for anything that is not exactly an attachment this module writes.
    pub fn decode(b: &[u8]) -> Option<Attachment> {
        let (&[version @ (1 | VERSION)], b) = b.split_first_chunk::<1>()? else {
            return None;
        };
        let (conn, b) = b.split_first_chunk::<8>()?;
        let (&[family], b) = b.split_first_chunk::<1>()?;
        let (client, b) = match family {
            4 => {
                let (ip, b) = b.split_first_chunk::<4>()?;
                (IpAddr::V4(Ipv4Addr::from(*ip)), b)
            }
            6 => {
                let (ip, b) = b.split_first_chunk::<16>()?;
                (IpAddr::V6(Ipv6Addr::from(*ip)), b)
            }
            _ => return None,
        };
        let (&[len], b) = b.split_first_chunk::<1>()?;
        let (passkey, b) = match len {
            NO_PASSKEY => (None, b),
            len if usize::from(len) <= MAX_PASSKEY => {
                let (key, b) = b.split_at_checked(usize::from(len))?;
                (Some(key.to_vec()), b)
            }
            _ => return None,
        };
        let (&[n], b) = b.split_first_chunk::<1>()?;
        let (joined, rest) = b.split_at_checked(usize::from(n) * 40)?;
        let offer_budget = match (version, rest) {
            (1, []) | (VERSION, [0]) => None,
            (VERSION, [1, budget @ ..]) if budget.len() == 12 => Some(OfferBudget {
                milli: u64::from_be_bytes(budget[..8].try_into().ok()?),
                last: UnixTime(u32::from_be_bytes(budget[8..].try_into().ok()?)),
            }),
            _ => return None,
        };
        let joined = joined
            .chunks_exact(40)
            .map(|c| {
                let (hash, peer) = c.split_at(20);
                (
                    InfoHash(hash.try_into().expect("20 bytes")),
                    PeerId(peer.try_into().expect("20 bytes")),
                )
            })
            .collect();
        Some(Attachment {
            conn: u64::from_be_bytes(*conn),
            client,
            passkey,
            joined,
            offer_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::config::MAX_TORRENTS_PER_CONNECTION;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_largest_attachment_fits_hibernation_and_round_trips() {
        let largest = Attachment {
            conn: u64::MAX,
            client: IpAddr::V6(Ipv6Addr::LOCALHOST),
            passkey: Some(vec![b'k'; MAX_PASSKEY]),
            joined: (0..MAX_TORRENTS_PER_CONNECTION)
                .map(|i| (InfoHash([i as u8; 20]), PeerId([!(i as u8); 20])))
                .collect(),
            offer_budget: Some(OfferBudget {
                milli: u64::MAX,
                last: UnixTime(u32::MAX),
            }),
        };
        let bytes = largest.encode();
        // The structured clone of a Uint8Array adds a few bytes of its own.
        assert!(bytes.len() + 32 <= 2048, "{} bytes", bytes.len());
        assert_eq!(Attachment::decode(&bytes), Some(largest));
        let small = Attachment {
            conn: 7,
            client: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            passkey: None,
            joined: Vec::new(),
            offer_budget: None,
        };
        assert_eq!(Attachment::decode(&small.encode()), Some(small.clone()));
        // A version 1 attachment (no budget) still reads.
        let mut v1 = small.encode();
        v1[0] = 1;
        v1.pop();
        assert_eq!(Attachment::decode(&v1), Some(small.clone()));
        let bytes = small.encode();
        for cut in 0..bytes.len() {
            assert_eq!(Attachment::decode(&bytes[..cut]), None);
        }
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(Attachment::decode(&longer), None);
    }
}
