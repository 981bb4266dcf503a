//! The WebTorrent tracker protocol: JSON text frames over a WebSocket, as the npm
//! `bittorrent-tracker` client (and so `webtorrent`) speaks it.
//!
//! A client sends `announce` (with up to N WebRTC `offers` for the tracker to hand to other peers
//! of the swarm, or with one `answer` to an offer it was handed) and `scrape`; the tracker
//! answers announces and scrapes, and forwards offers and answers as messages of its own.
//! `info_hash` and `peer_id` are "binary strings": 20 characters, each a code point 0–255 standing
//! for one byte (JavaScript's way of carrying bytes in a string). Offer ids and the `{type,
//! sdp}` objects are the clients' own, forwarded as they came: the client sends 20 random bytes
//! as a binary string (so any code point up to 255, `\u0000` included), and the tracker treats
//! the id as an opaque short string.
//!
//! Where the clients and a document differ, the clients win: `event` may be absent, `"update"`,
//! `"empty"` or `"paused"` (a regular announce, as the client's own event table has it); numbers may be JSON floats or `null`; unknown fields are
//! ignored; `action` may also be the numbers 1 (announce) and 2 (scrape).
//!
//! Owns the message layouts and their validation. Sans-IO: text in, [`ClientMessage`] out; typed
//! messages in, text out. Knows nothing of swarms, sockets or clocks.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::types::{Event, InfoHash, PeerId};

/// Longest text frame a tracker should read: a browser's offer SDP is 1–4 KB, and a client sends
/// at most ten of them.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The failure reason for a binary frame: the protocol is JSON text.
pub const BINARY_REFUSED: &str = "binary frames are not part of the protocol: send JSON text";
/// Longest offer id forwarded, in UTF-8 bytes (the clients' 20-byte binary string takes 20–40).
pub const MAX_OFFER_ID: usize = 64;
/// Longest offer id an answer may name: a forwarded offer's id carries a tracker's tag of up to
/// this much more in front of the offerer's.
pub const OFFER_ID_TAG_ROOM: usize = 16;

/// A client's message, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    Announce(Announce),
    Scrape(Scrape),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub event: Event,
    /// Bytes left to download: `Some(0)` is a seeder; `None` when the client does not say.
    pub left: Option<u64>,
    /// Peers wanted: the tracker hands out at most one offer to each.
    pub numwant: Option<u32>,
    pub offers: Vec<Offer>,
    /// An answer to an offer this client was handed, for the peer that made it.
    pub answer: Option<Answer>,
}

impl Announce {
    pub fn seeding(&self) -> bool {
        self.left == Some(0)
    }
}

/// A WebRTC offer for the tracker to hand to one other peer of the swarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub offer_id: String,
    pub offer: Sdp,
}

/// A peer's answer to an offer, for the peer `to_peer_id` that made offer `offer_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub to_peer_id: PeerId,
    pub offer_id: String,
    pub answer: Sdp,
}

/// A session description: `{"type": "offer" | "answer", "sdp": "..."}`, forwarded as it came.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sdp {
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
}

/// A scrape: some torrents, or (an empty list) every torrent, where the tracker allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scrape {
    pub info_hashes: Vec<InfoHash>,
}

/// Why a message was refused. The tracker answers with [`write_error`]; the socket stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsError {
    TooLong,
    /// Not JSON, or not a JSON object of the expected shape.
    Malformed(String),
    UnknownAction,
    /// The message was for this action, and names this torrent when it could be read.
    Invalid {
        action: WsAction,
        info_hash: Option<InfoHash>,
        reason: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsAction {
    Announce,
    Scrape,
}

impl WsAction {
    fn as_str(self) -> &'static str {
        match self {
            WsAction::Announce => "announce",
            WsAction::Scrape => "scrape",
        }
    }
}

impl WsError {
    /// The `failure reason` sent back.
    pub fn reason(&self) -> String {
        match self {
            WsError::TooLong => format!("message longer than {MAX_MESSAGE} bytes"),
            WsError::Malformed(why) => format!("malformed message: {why}"),
            WsError::UnknownAction => "unknown action".to_string(),
            WsError::Invalid { reason, .. } => (*reason).to_string(),
        }
    }
}

/// What a client may send, as it may send it: every field optional and loosely typed, so that
/// the checks below say what was wrong.
#[derive(Deserialize)]
struct Raw {
    action: Option<serde_json::Value>,
    info_hash: Option<HashField>,
    peer_id: Option<String>,
    event: Option<String>,
    #[serde(default, deserialize_with = "loose_number")]
    left: Option<f64>,
    #[serde(default, deserialize_with = "loose_number")]
    numwant: Option<f64>,
    offers: Option<Vec<RawOffer>>,
    answer: Option<Sdp>,
    to_peer_id: Option<String>,
    offer_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HashField {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawOffer {
    offer_id: String,
    offer: Sdp,
}

/// A number, a numeric string or `null` (clients differ); anything else is an error.
fn loose_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Number(f64),
        Text(String),
    }
    match Option::<Loose>::deserialize(d)? {
        None => Ok(None),
        Some(Loose::Number(n)) => Ok(Some(n)),
        Some(Loose::Text(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom("expected a number")),
    }
}

/// A binary string's bytes: each character one byte (code point ≤ 255).
pub fn binary_string<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut chars = s.chars();
    for b in &mut out {
        *b = u8::try_from(u32::from(chars.next()?)).ok()?;
    }
    chars.next().is_none().then_some(out)
}

/// Bytes as a binary string (each byte one character), for JSON.
pub fn to_binary_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn offer_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_OFFER_ID
}

/// Parses one text frame. `max_offers` is the policy's cap on offers per announce; more is an
/// error (a client that sends more than it was allowed is refused, not silently cut).
pub fn parse(text: &str, max_offers: usize) -> Result<ClientMessage, WsError> {
    if text.len() > MAX_MESSAGE {
        return Err(WsError::TooLong);
    }
    let raw: Raw = serde_json::from_str(text).map_err(|e| {
        // serde_json's message without its position: the client knows what it sent.
        let text = e.to_string();
        WsError::Malformed(text.split(" at line ").next().unwrap_or(&text).to_string())
    })?;
    let action = match &raw.action {
        Some(serde_json::Value::String(s)) if s == "announce" => WsAction::Announce,
        Some(serde_json::Value::String(s)) if s == "scrape" => WsAction::Scrape,
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(1) => WsAction::Announce,
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(2) => WsAction::Scrape,
        _ => return Err(WsError::UnknownAction),
    };
    let invalid = |info_hash, reason| WsError::Invalid {
        action,
        info_hash,
        reason,
    };
    match action {
        WsAction::Scrape => {
            let texts = match raw.info_hash {
                None => Vec::new(),
                Some(HashField::One(h)) => vec![h],
                Some(HashField::Many(hs)) => hs,
            };
            let info_hashes = texts
                .iter()
                .map(|h| binary_string(h).map(InfoHash))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(None, "info_hash must be 20 bytes"))?;
            Ok(ClientMessage::Scrape(Scrape { info_hashes }))
        }
        WsAction::Announce => {
            let info_hash = match &raw.info_hash {
                Some(HashField::One(h)) => binary_string(h).map(InfoHash),
                _ => None,
            }
            .ok_or_else(|| invalid(None, "info_hash must be 20 bytes"))?;
            let invalid = |reason| invalid(Some(info_hash), reason);
            let peer_id = raw
                .peer_id
                .as_deref()
                .and_then(binary_string)
                .map(PeerId)
                .ok_or_else(|| invalid("peer_id must be 20 bytes"))?;
            let event = match raw.event.as_deref() {
                None | Some("" | "update" | "empty" | "paused") => Event::None,
                Some("started") => Event::Started,
                Some("completed") => Event::Completed,
                Some("stopped") => Event::Stopped,
                Some(_) => return Err(invalid("unknown event")),
            };
            let count = |n: Option<f64>, what| match n {
                None => Ok(None),
                Some(n) if n >= 0.0 && n.is_finite() => Ok(Some(n as u64)),
                Some(_) => Err(invalid(what)),
            };
            let left = count(raw.left, "left must be a number of bytes")?;
            let numwant = count(raw.numwant, "numwant must be a count")?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            let offers = raw.offers.unwrap_or_default();
            if offers.len() > max_offers {
                return Err(invalid("too many offers"));
            }
            let offers = offers
                .into_iter()
                .map(|o| {
                    offer_id_ok(&o.offer_id)
                        .then_some(Offer {
                            offer_id: o.offer_id,
                            offer: o.offer,
                        })
                        .ok_or_else(|| invalid("offer_id must be 1 to 64 bytes"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let answer = match (raw.answer, raw.to_peer_id, raw.offer_id) {
                (None, _, _) => None,
                (Some(answer), Some(to), Some(offer_id)) => {
                    let to_peer_id = binary_string(&to)
                        .map(PeerId)
                        .ok_or_else(|| invalid("to_peer_id must be 20 bytes"))?;
                    if offer_id.is_empty() || offer_id.len() > MAX_OFFER_ID + OFFER_ID_TAG_ROOM {
                        return Err(invalid("an answer's offer_id must be 1 to 80 bytes"));
                    }
                    Some(Answer {
                        to_peer_id,
                        offer_id,
                        answer,
                    })
                }
                (Some(_), _, _) => return Err(invalid("an answer needs to_peer_id and offer_id")),
            };
            Ok(ClientMessage::Announce(Announce {
                info_hash,
                peer_id,
                event,
                left,
                numwant,
                offers,
                answer,
            }))
        }
    }
}

/// The tracker's reply to an announce.
pub fn write_announce_reply(
    info_hash: &InfoHash,
    interval: u32,
    complete: u32,
    incomplete: u32,
) -> String {
    #[derive(Serialize)]
    struct Reply<'a> {
        action: &'a str,
        interval: u32,
        info_hash: String,
        complete: u32,
        incomplete: u32,
    }
    to_text(&Reply {
        action: "announce",
        interval,
        info_hash: to_binary_string(&info_hash.0),
        complete,
        incomplete,
    })
}

/// An offer from `from` (in swarm `info_hash`), as the peer it is handed to receives it, under
/// the offer id `offer_id`.
pub fn write_offer(info_hash: &InfoHash, from: &PeerId, offer_id: &str, offer: &Sdp) -> String {
    write_forward(info_hash, from, offer_id, Some(offer), None)
}

/// An answer from `from` to offer `offer_id`, as the peer that made the offer receives it.
pub fn write_answer(info_hash: &InfoHash, from: &PeerId, offer_id: &str, answer: &Sdp) -> String {
    write_forward(info_hash, from, offer_id, None, Some(answer))
}

/// A forwarded offer or answer: the sender, the offer id, and the session description.
fn write_forward(
    info_hash: &InfoHash,
    from: &PeerId,
    offer_id: &str,
    offer: Option<&Sdp>,
    answer: Option<&Sdp>,
) -> String {
    #[derive(Serialize)]
    struct Forward<'a> {
        action: &'a str,
        info_hash: String,
        peer_id: String,
        offer_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        offer: Option<&'a Sdp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        answer: Option<&'a Sdp>,
    }
    to_text(&Forward {
        action: "announce",
        info_hash: to_binary_string(&info_hash.0),
        peer_id: to_binary_string(&from.0),
        offer_id,
        offer,
        answer,
    })
}

/// Counts of one torrent in a scrape reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScrapeCounts {
    pub complete: u32,
    pub incomplete: u32,
    pub downloaded: u32,
}

/// The reply to a scrape: `files` keyed by binary-string info hash.
pub fn write_scrape_reply(files: &[(InfoHash, ScrapeCounts)]) -> String {
    #[derive(Serialize)]
    struct Reply<'a> {
        action: &'a str,
        files: serde_json::Map<String, serde_json::Value>,
    }
    let files = files
        .iter()
        .map(|(h, c)| {
            let counts = serde_json::to_value(c).expect("counts serialize");
            (to_binary_string(&h.0), counts)
        })
        .collect();
    to_text(&Reply {
        action: "scrape",
        files,
    })
}

/// A refusal: `failure reason`, with the action and torrent when known.
pub fn write_error(err: &WsError) -> String {
    let (action, info_hash) = match err {
        WsError::Invalid {
            action, info_hash, ..
        } => (Some(*action), *info_hash),
        _ => (None, None),
    };
    write_failure(action, info_hash.as_ref(), &err.reason())
}

/// A refusal for a well-formed message (an access rule, a cap, the rate limit).
pub fn write_failure(
    action: Option<WsAction>,
    info_hash: Option<&InfoHash>,
    reason: &str,
) -> String {
    #[derive(Serialize)]
    struct Failure<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        action: Option<&'a str>,
        #[serde(rename = "failure reason")]
        reason: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        info_hash: Option<String>,
    }
    to_text(&Failure {
        action: action.map(WsAction::as_str),
        reason,
        info_hash: info_hash.map(|h| to_binary_string(&h.0)),
    })
}

fn to_text(message: &impl Serialize) -> String {
    // Serializing strings and numbers into a String cannot fail.
    serde_json::to_string(message).expect("messages serialize")
}

#[cfg(test)]
mod tests;
