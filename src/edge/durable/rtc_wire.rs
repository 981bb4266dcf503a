//! The messages between a WebTorrent socket's object and a torrent's swarm object: fixed binary
//! layouts, like [`super::wire`]'s (a call hex-encoded as the path of a GET to `/rtc/<hex>`,
//! the reply as the body).
//!
//! ```text
//! call    head:     op u8, now u32, interval u32, timeout u32, max peers u32, peer id [20], conn u64
//!         announce: 1, head, event u8, seeding u8, offers u8
//!         answer:   2, head, to peer id [20]          (peer id: who answers; conn: its socket)
//!         counts:   3, head                           (peer id and conn unused)
//!         leave:    4, head                           (the socket closed)
//! reply   complete u32, incomplete u32, downloaded u32, then
//!         announce: outcome u8 (0 done, else the refusal: see `refusal_code`),
//!                   done flags u8 (joined 1, claimed 2, left 4), recipients u64 each
//!         answer:   route u8 (0 not a member on that socket, 1 offerer gone, 2 offerer at), conn u64
//! ```
//!
//! All integers big-endian. The knobs ride in every call for the reason [`super::wire`] gives:
//! an object runs on the knobs of the code that called it. Owns these layouts only.

use super::wire::{event_code, event_of, u32_at};
use crate::protocol::types::{Event, PeerId};
use crate::swarm::rtc::{ConnId, RtcAnnounced, RtcCounts, RtcRefusal};
use crate::time::UnixTime;

/// The knobs a swarm object needs for its WebTorrent members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcKnobs {
    pub announce_interval: u32,
    pub peer_timeout: u32,
    pub max_peers: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcOp {
    Announce {
        event: Event,
        seeding: bool,
        offers: u8,
    },
    Answer {
        to: PeerId,
    },
    Counts,
    Leave,
}

/// A call to a swarm object's WebTorrent members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcCall {
    pub now: UnixTime,
    pub knobs: RtcKnobs,
    pub peer_id: PeerId,
    pub conn: ConnId,
    pub op: RtcOp,
}

/// A swarm object's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtcReply {
    pub counts: RtcCounts,
    /// Announce: what it did, or why it was refused.
    pub announced: Option<Result<RtcAnnounced, RtcRefusal>>,
    pub recipients: Vec<ConnId>,
    /// Answer: `None` if the answerer may not answer, else where the offerer is.
    pub route: Option<Option<ConnId>>,
}

const HEAD: usize = 1 + 16 + 20 + 8;
const REPLY_HEAD: usize = 12;

fn refusal_code(r: RtcRefusal) -> u8 {
    match r {
        RtcRefusal::PeerIdTaken => 1,
        RtcRefusal::Full => 2,
        RtcRefusal::TooManyTorrents => 3,
        RtcRefusal::FromAddress => 4,
    }
}

fn refusal_of(code: u8) -> Option<RtcRefusal> {
    Some(match code {
        1 => RtcRefusal::PeerIdTaken,
        2 => RtcRefusal::Full,
        3 => RtcRefusal::TooManyTorrents,
        4 => RtcRefusal::FromAddress,
        _ => return None,
    })
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl RtcCall {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + 20);
        out.push(match self.op {
            RtcOp::Announce { .. } => 1,
            RtcOp::Answer { .. } => 2,
            RtcOp::Counts => 3,
            RtcOp::Leave => 4,
        });
        for n in [
            self.now.secs(),
            self.knobs.announce_interval,
            self.knobs.peer_timeout,
            self.knobs.max_peers,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&self.peer_id.0);
        out.extend_from_slice(&self.conn.to_be_bytes());
        match self.op {
            RtcOp::Announce {
                event,
                seeding,
                offers,
            } => out.extend_from_slice(&[event_code(event), u8::from(seeding), offers]),
            RtcOp::Answer { to } => out.extend_from_slice(&to.0),
            RtcOp::Counts | RtcOp::Leave => {}
        }
        out
    }

    /// `None` for anything that is not exactly a call this module writes.
    pub fn decode(b: &[u8]) -> Option<RtcCall> {
        let knobs = RtcKnobs {
            announce_interval: u32_at(b, 5)?,
            peer_timeout: u32_at(b, 9)?,
            max_peers: u32_at(b, 13)?,
        };
        let peer_id = PeerId(b.get(17..37)?.try_into().ok()?);
        let conn = u64_at(b, 37)?;
        let rest = &b[HEAD..];
        let op = match (b[0], rest) {
            (1, &[event, seeding, offers]) => RtcOp::Announce {
                event: event_of(event)?,
                seeding: match seeding {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
                offers,
            },
            (2, to) => RtcOp::Answer {
                to: PeerId(to.try_into().ok()?),
            },
            (3, []) => RtcOp::Counts,
            (4, []) => RtcOp::Leave,
            _ => return None,
        };
        Some(RtcCall {
            now: UnixTime(u32_at(b, 1)?),
            knobs,
            peer_id,
            conn,
            op,
        })
    }
}

impl RtcReply {
    pub fn encode(&self, op: &RtcOp) -> Vec<u8> {
        let mut out = Vec::with_capacity(REPLY_HEAD + 2 + 8 * self.recipients.len());
        for n in [
            self.counts.complete,
            self.counts.incomplete,
            self.counts.downloaded,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        match op {
            RtcOp::Announce { .. } => {
                match self.announced {
                    Some(Ok(done)) => out.extend_from_slice(&[
                        0,
                        u8::from(done.joined)
                            | u8::from(done.claimed) << 1
                            | u8::from(done.left) << 2,
                    ]),
                    Some(Err(refusal)) => out.extend_from_slice(&[refusal_code(refusal), 0]),
                    None => out.extend_from_slice(&[0, 0]),
                }
                for r in &self.recipients {
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
            RtcOp::Answer { .. } => {
                let (code, conn) = match self.route {
                    None => (0, 0),
                    Some(None) => (1, 0),
                    Some(Some(conn)) => (2, conn),
                };
                out.push(code);
                out.extend_from_slice(&conn.to_be_bytes());
            }
            RtcOp::Counts | RtcOp::Leave => {}
        }
        out
    }

    /// The reply to a call of `op`; `None` if `b` is not one.
    pub fn decode(b: &[u8], op: &RtcOp) -> Option<RtcReply> {
        let mut reply = RtcReply {
            counts: RtcCounts {
                complete: u32_at(b, 0)?,
                incomplete: u32_at(b, 4)?,
                downloaded: u32_at(b, 8)?,
            },
            ..RtcReply::default()
        };
        let rest = &b[REPLY_HEAD..];
        match op {
            RtcOp::Announce { offers, .. } => {
                let (&[outcome, flags], recipients) = rest.split_first_chunk::<2>()?;
                reply.announced = Some(match outcome {
                    0 => Ok(RtcAnnounced {
                        joined: flags & 1 != 0,
                        claimed: flags & 2 != 0,
                        left: flags & 4 != 0,
                    }),
                    code => Err(refusal_of(code)?),
                });
                // Never more recipients than offers: each one is a message this socket sends.
                if recipients.len() % 8 != 0 || recipients.len() / 8 > usize::from(*offers) {
                    return None;
                }
                reply.recipients = recipients
                    .chunks_exact(8)
                    .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                    .collect();
            }
            RtcOp::Answer { .. } => {
                let (&[code], conn) = rest.split_first_chunk::<1>()?;
                let conn = u64::from_be_bytes(conn.try_into().ok()?);
                reply.route = match code {
                    0 => None,
                    1 => Some(None),
                    2 => Some(Some(conn)),
                    _ => return None,
                };
            }
            RtcOp::Counts | RtcOp::Leave => {
                if !rest.is_empty() {
                    return None;
                }
            }
        }
        Some(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn call(op: RtcOp) -> RtcCall {
        RtcCall {
            now: UnixTime(1_700_000_000),
            knobs: RtcKnobs {
                announce_interval: 120,
                peer_timeout: 360,
                max_peers: 1000,
            },
            peer_id: PeerId([7; 20]),
            conn: 0x0102_0304_0506_0708,
            op,
        }
    }

    #[test]
    fn calls_round_trip_and_nothing_else_decodes() {
        let ops = [
            RtcOp::Announce {
                event: Event::Completed,
                seeding: true,
                offers: 10,
            },
            RtcOp::Answer {
                to: PeerId([9; 20]),
            },
            RtcOp::Counts,
            RtcOp::Leave,
        ];
        for op in ops {
            let bytes = call(op).encode();
            assert_eq!(RtcCall::decode(&bytes), Some(call(op)));
            // Cut short or lengthened, it is not a call.
            assert_eq!(RtcCall::decode(&bytes[..bytes.len() - 1]), None);
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(RtcCall::decode(&longer), None);
        }
        assert_eq!(RtcCall::decode(&[]), None);
    }

    #[test]
    fn replies_round_trip_and_recipients_are_capped_by_offers() {
        let op = RtcOp::Announce {
            event: Event::None,
            seeding: false,
            offers: 2,
        };
        let reply = RtcReply {
            counts: RtcCounts {
                complete: 1,
                incomplete: 2,
                downloaded: 3,
            },
            announced: Some(Ok(RtcAnnounced {
                joined: true,
                claimed: true,
                left: false,
            })),
            recipients: vec![11, 12],
            route: None,
        };
        assert_eq!(
            RtcReply::decode(&reply.encode(&op), &op),
            Some(reply.clone())
        );
        let fewer = RtcOp::Announce {
            event: Event::None,
            seeding: false,
            offers: 1,
        };
        assert_eq!(RtcReply::decode(&reply.encode(&op), &fewer), None);
        let refused = RtcReply {
            announced: Some(Err(RtcRefusal::PeerIdTaken)),
            ..RtcReply::default()
        };
        assert_eq!(RtcReply::decode(&refused.encode(&op), &op), Some(refused));
        let answer = RtcOp::Answer {
            to: PeerId([1; 20]),
        };
        for route in [None, Some(None), Some(Some(99))] {
            let r = RtcReply {
                route,
                ..RtcReply::default()
            };
            assert_eq!(RtcReply::decode(&r.encode(&answer), &answer), Some(r));
        }
    }
}
