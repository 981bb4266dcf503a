//! The messages between the Worker and a swarm's Durable Object: fixed binary layouts, so a call
//! costs a few dozen bytes and no JSON. A call travels hex-encoded as the path of a GET to the
//! object, its reply as the response body.
//!
//! ```text
//! call    announce: 1, knobs, info hash [20], event u8, seeding u8, want u16, peer [6 | 18]
//!         scrape:   2, knobs, info hash [20]
//!         knobs:    now u32, timeout u32, interval u32, max peers u32, max peers per address u32
//! reply   complete u32, incomplete u32, downloaded u32, rows read u32, rows written u32, peers
//!         (status 409 instead, one byte: the cap that refused the peer, see `full_code`)
//! ```
//!
//! All integers big-endian. `now` is the Worker's clock, so the object answers for the same
//! instant the Worker does (and tests can pass any time); the peer timeout and announce interval
//! are the calling Worker's too, so an object always runs on the knobs of the code that called
//! it, across a redeploy as well. Owns these layouts only.

use crate::protocol::types::{Event, InfoHash, SwarmCounts};
use crate::store::mirror::Knobs;
use crate::store::{Full, PeerAnnounce};
use crate::swarm::PeerAddr;
use crate::time::UnixTime;

/// A call to a swarm object: what, when, and on which knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub now: UnixTime,
    pub knobs: Knobs,
    pub op: Op,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Announce(PeerAnnounce),
    Scrape(InfoHash),
}

/// SQLite rows an object's storage read and wrote for one call, as its cursors report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RowCounts {
    pub read: u32,
    pub written: u32,
}

/// An object's answer: counts, the cost, and (for an announce) compact peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub counts: SwarmCounts,
    pub rows: RowCounts,
    pub peers: Vec<u8>,
}

const ANNOUNCE: u8 = 1;
const SCRAPE: u8 = 2;
/// Op, now, the four knobs, info hash.
const CALL_HEAD: usize = 41;

/// The byte a 409 reply carries for each cap.
pub fn full_code(f: Full) -> u8 {
    match f {
        Full::Torrents => 1,
        Full::Peers => 2,
        Full::PeersInTorrent => 3,
        Full::PeersFromAddress => 4,
        Full::NewTorrentsFromAddress => 5,
    }
}

pub fn full_from_code(code: u8) -> Option<Full> {
    Full::ALL.into_iter().find(|&f| full_code(f) == code)
}
const REPLY_HEAD: usize = 20;

/// An event as both wire layouts (this one and [`super::rtc_wire`]) carry it.
pub(super) fn event_code(e: Event) -> u8 {
    match e {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    }
}

pub(super) fn event_of(code: u8) -> Option<Event> {
    Some(match code {
        0 => Event::None,
        1 => Event::Completed,
        2 => Event::Started,
        3 => Event::Stopped,
        _ => return None,
    })
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Call {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CALL_HEAD + 22);
        let info_hash = match &self.op {
            Op::Announce(a) => {
                out.push(ANNOUNCE);
                &a.info_hash
            }
            Op::Scrape(h) => {
                out.push(SCRAPE);
                h
            }
        };
        out.extend_from_slice(&self.now.secs().to_be_bytes());
        out.extend_from_slice(&self.knobs.peer_timeout.to_be_bytes());
        out.extend_from_slice(&self.knobs.announce_interval.to_be_bytes());
        out.extend_from_slice(&self.knobs.max_peers.to_be_bytes());
        out.extend_from_slice(&self.knobs.max_peers_per_address.to_be_bytes());
        out.extend_from_slice(&info_hash.0);
        if let Op::Announce(a) = &self.op {
            out.push(event_code(a.event));
            out.push(u8::from(a.seeding));
            out.extend_from_slice(&(a.want.min(usize::from(u16::MAX)) as u16).to_be_bytes());
            out.extend_from_slice(a.peer.as_bytes());
        }
        out
    }

    /// `None` for anything that is not exactly a call this module writes, or whose knobs a
    /// swarm cannot run on.
    pub fn decode(b: &[u8]) -> Option<Call> {
        let now = u32_at(b, 1)?;
        let knobs = Knobs {
            peer_timeout: u32_at(b, 5)?,
            announce_interval: u32_at(b, 9)?,
            max_peers: u32_at(b, 13)?,
            max_peers_per_address: u32_at(b, 17)?,
        };
        if !knobs.is_valid() {
            return None;
        }
        let info_hash = InfoHash(b.get(21..CALL_HEAD)?.try_into().ok()?);
        let op = match *b.first()? {
            SCRAPE if b.len() == CALL_HEAD => Op::Scrape(info_hash),
            ANNOUNCE => {
                let event = event_of(*b.get(CALL_HEAD)?)?;
                let seeding = match *b.get(CALL_HEAD + 1)? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let want = b.get(CALL_HEAD + 2..CALL_HEAD + 4)?;
                let want = usize::from(u16::from_be_bytes(want.try_into().ok()?));
                let peer = match &b[CALL_HEAD + 4..] {
                    p if p.len() == 6 => PeerAddr::V4(p.try_into().ok()?),
                    p if p.len() == 18 => PeerAddr::V6(p.try_into().ok()?),
                    _ => return None,
                };
                Op::Announce(PeerAnnounce {
                    info_hash,
                    peer,
                    event,
                    seeding,
                    want,
                })
            }
            _ => return None,
        };
        Some(Call {
            now: UnixTime(now),
            knobs,
            op,
        })
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPLY_HEAD + self.peers.len());
        for n in [
            self.counts.complete,
            self.counts.incomplete,
            self.counts.downloaded,
            self.rows.read,
            self.rows.written,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&self.peers);
        out
    }

    /// `None` for a reply too short to be one. Peers of the wrong length for `peer_len` (6 or
    /// 18) are refused too: they would corrupt the client's compact list.
    pub fn decode(b: &[u8], peer_len: usize) -> Option<Reply> {
        let peers = b.get(REPLY_HEAD..)?;
        if peer_len == 0 || !peers.len().is_multiple_of(peer_len) {
            return None;
        }
        Some(Reply {
            counts: SwarmCounts {
                complete: u32_at(b, 0)?,
                incomplete: u32_at(b, 4)?,
                downloaded: u32_at(b, 8)?,
            },
            rows: RowCounts {
                read: u32_at(b, 12)?,
                written: u32_at(b, 16)?,
            },
            peers: peers.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KNOBS: Knobs = Knobs {
        peer_timeout: 5400,
        announce_interval: 1800,
        max_peers: 1_000_000,
        max_peers_per_address: 16,
    };

    fn announce(peer: PeerAddr, event: Event) -> Call {
        Call {
            now: UnixTime(1_750_000_000),
            knobs: KNOBS,
            op: Op::Announce(PeerAnnounce {
                info_hash: InfoHash([9; 20]),
                peer,
                event,
                seeding: true,
                want: 50,
            }),
        }
    }

    fn scrape(now: UnixTime) -> Call {
        Call {
            now,
            knobs: KNOBS,
            op: Op::Scrape(InfoHash([3; 20])),
        }
    }

    #[test]
    fn calls_round_trip_in_both_families() {
        for event in [
            Event::None,
            Event::Started,
            Event::Completed,
            Event::Stopped,
        ] {
            for peer in [PeerAddr::V4([1, 2, 3, 4, 5, 6]), PeerAddr::V6([7; 18])] {
                let c = announce(peer, event);
                assert_eq!(Call::decode(&c.encode()), Some(c));
            }
        }
        let s = scrape(UnixTime(5));
        assert_eq!(s.encode().len(), 41);
        assert_eq!(Call::decode(&s.encode()), Some(s));
    }

    #[test]
    fn malformed_calls_are_refused() {
        let good = announce(PeerAddr::V4([1; 6]), Event::None).encode();
        assert_eq!(Call::decode(&[]), None);
        assert_eq!(Call::decode(&good[..good.len() - 1]), None, "a 5-byte peer");
        let mut bad = good.clone();
        bad[41] = 4;
        assert_eq!(Call::decode(&bad), None, "unknown event");
        let mut bad = good.clone();
        bad[42] = 2;
        assert_eq!(Call::decode(&bad), None, "seeding is 0 or 1");
        let mut bad = good.clone();
        bad[0] = 3;
        assert_eq!(Call::decode(&bad), None, "unknown call");
        let mut bad = good;
        bad[5..9].copy_from_slice(&100_000u32.to_be_bytes());
        assert_eq!(
            Call::decode(&bad),
            None,
            "a timeout the 16-bit stamps cannot carry"
        );
        let mut s = scrape(UnixTime(1)).encode();
        s.push(0);
        assert_eq!(Call::decode(&s), None, "trailing bytes");
    }

    #[test]
    fn every_cap_has_its_own_code() {
        for f in Full::ALL {
            assert_eq!(full_from_code(full_code(f)), Some(f));
        }
        assert_eq!(full_from_code(0), None);
    }

    #[test]
    fn replies_round_trip_and_wrong_peer_lengths_are_refused() {
        let r = Reply {
            counts: SwarmCounts {
                complete: 1,
                incomplete: 2,
                downloaded: 3,
            },
            rows: RowCounts {
                read: 4,
                written: 5,
            },
            peers: vec![1; 12],
        };
        assert_eq!(Reply::decode(&r.encode(), 6), Some(r.clone()));
        assert_eq!(Reply::decode(&r.encode(), 18), None);
        assert_eq!(Reply::decode(&r.encode()[..19], 6), None);
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(c) = Call::decode(&b) {
                prop_assert_eq!(c.encode(), b.clone());
            }
            let _ = Reply::decode(&b, 6);
        }
    }
}
