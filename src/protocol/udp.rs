//! BEP 15 UDP tracker packets (with BEP 41 URL data): parsing requests, writing replies.
//!
//! Parsing borrows from the datagram and allocates nothing. Writers append to a caller-owned
//! buffer so a socket loop can reuse one buffer for every reply. Connection-id checks need a
//! clock and the sender's address, so they live with the caller ([`super::connection_id`]).

use std::net::{IpAddr, Ipv4Addr};

use super::types::{AnnounceRequest, Event, Family, InfoHash, PeerId, SwarmCounts};

/// The magic constant a connect request starts with.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

/// Fixed part of an announce request; BEP 41 options may follow.
pub const ANNOUNCE_LEN: usize = 98;
/// A connect request, and the smallest packet worth a reply.
pub const CONNECT_LEN: usize = 16;
/// Largest request considered: anything bigger was not sent by a BitTorrent client (a scrape
/// of somewhat more than 74 hashes still gets a readable error).
pub const MAX_REQUEST_LEN: usize = 2048;
/// BEP 15: a scrape request of 74 hashes fills a classic 1500-byte MTU datagram.
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Largest reply payload that still travels unfragmented over a 1500-byte MTU path.
pub fn max_reply_len(family: Family) -> usize {
    match family {
        Family::V4 => 1500 - 20 - 8,
        Family::V6 => 1500 - 40 - 8,
    }
}

/// How many peers fit one unfragmented announce reply (20-byte header, then 6 or 18 per peer).
pub fn max_peers_per_reply(family: Family) -> usize {
    let per_peer = match family {
        Family::V4 => 6,
        Family::V6 => 18,
    };
    (max_reply_len(family) - 20) / per_peer
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Connect {
        transaction_id: u32,
    },
    Announce {
        connection_id: [u8; 8],
        transaction_id: u32,
        announce: AnnounceRequest,
        options: Options<'a>,
    },
    Scrape {
        connection_id: [u8; 8],
        transaction_id: u32,
        info_hashes: &'a [[u8; 20]],
    },
}

/// Why a packet is not a request we serve. `transaction_id` is set when the packet got far enough
/// to have one, i.e. when an error reply is possible at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub transaction_id: Option<u32>,
    pub reason: &'static str,
}

impl ParseError {
    fn silent(reason: &'static str) -> Self {
        ParseError {
            transaction_id: None,
            reason,
        }
    }
    fn reply(transaction_id: u32, reason: &'static str) -> Self {
        ParseError {
            transaction_id: Some(transaction_id),
            reason,
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn array_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("N bytes")
}

/// Parses one datagram.
pub fn parse_request(packet: &[u8]) -> Result<Request<'_>, ParseError> {
    if packet.len() < CONNECT_LEN {
        return Err(ParseError::silent("packet too short"));
    }
    if packet.len() > MAX_REQUEST_LEN {
        return Err(ParseError::silent("packet too long"));
    }
    let connection_id = array_at::<8>(packet, 0);
    let action = u32_at(packet, 8);
    let transaction_id = u32_at(packet, 12);
    match action {
        ACTION_CONNECT => {
            if u64::from_be_bytes(connection_id) != PROTOCOL_ID {
                return Err(ParseError::silent("connect without the protocol id"));
            }
            Ok(Request::Connect { transaction_id })
        }
        ACTION_ANNOUNCE => {
            if packet.len() < ANNOUNCE_LEN {
                return Err(ParseError::reply(
                    transaction_id,
                    "announce packet too short",
                ));
            }
            let event = match u32_at(packet, 80) {
                0 => Event::None,
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                _ => return Err(ParseError::reply(transaction_id, "unknown event")),
            };
            let claimed = u32_at(packet, 84);
            let numwant = u32_at(packet, 92) as i32;
            let port = u16::from_be_bytes(array_at(packet, 96));
            if port == 0 {
                return Err(ParseError::reply(transaction_id, "port must not be 0"));
            }
            let announce = AnnounceRequest {
                info_hash: InfoHash(array_at(packet, 16)),
                peer_id: PeerId(array_at(packet, 36)),
                downloaded: u64_at(packet, 56),
                left: u64_at(packet, 64),
                uploaded: u64_at(packet, 72),
                event,
                claimed_ip: (claimed != 0).then(|| IpAddr::V4(Ipv4Addr::from(claimed))),
                key: Some(u32_at(packet, 88)),
                numwant: u32::try_from(numwant).ok(),
                port,
                compact: true,
                no_peer_id: true,
            };
            let options = Options(&packet[ANNOUNCE_LEN..]);
            Ok(Request::Announce {
                connection_id,
                transaction_id,
                announce,
                options,
            })
        }
        ACTION_SCRAPE => {
            let hashes = &packet[16..];
            let (info_hashes, rest) = hashes.as_chunks::<20>();
            if info_hashes.is_empty() || !rest.is_empty() {
                return Err(ParseError::reply(
                    transaction_id,
                    "scrape must carry whole 20-byte info hashes",
                ));
            }
            if info_hashes.len() > MAX_SCRAPE_HASHES {
                return Err(ParseError::reply(
                    transaction_id,
                    "too many info hashes in one scrape",
                ));
            }
            Ok(Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            })
        }
        _ => Err(ParseError::reply(transaction_id, "unknown action")),
    }
}

/// BEP 41 options following an announce's fixed fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a>(pub &'a [u8]);

const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_URL_DATA: u8 = 2;

impl<'a> Options<'a> {
    /// The URL data fragments in order; together they form the path and query of the tracker URL
    /// (e.g. `/<passkey>/announce`). Unknown options are skipped; a truncated option ends the list,
    /// as BEP 41 asks of trackers that meet garbage.
    pub fn url_data(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            loop {
                let (&kind, after) = rest.split_first()?;
                match kind {
                    OPTION_END => {
                        rest = &[];
                        return None;
                    }
                    OPTION_NOP => rest = after,
                    _ => {
                        let (&len, after) = after.split_first()?;
                        let len = usize::from(len);
                        if after.len() < len {
                            rest = &[];
                            return None;
                        }
                        let (data, after) = after.split_at(len);
                        rest = after;
                        if kind == OPTION_URL_DATA {
                            return Some(data);
                        }
                    }
                }
            }
        })
    }
}

/// Appends a connect reply.
pub fn write_connect(out: &mut Vec<u8>, transaction_id: u32, connection_id: [u8; 8]) {
    out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&connection_id);
}

/// Appends an announce reply. `peers` are compact entries of the packet's family, already
/// limited to [`max_peers_per_reply`].
pub fn write_announce(
    out: &mut Vec<u8>,
    transaction_id: u32,
    interval: u32,
    counts: SwarmCounts,
    peers: &[u8],
) {
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&interval.to_be_bytes());
    out.extend_from_slice(&counts.incomplete.to_be_bytes());
    out.extend_from_slice(&counts.complete.to_be_bytes());
    out.extend_from_slice(peers);
}

/// Appends a scrape reply: seeders, completed, leechers per hash, in request order.
pub fn write_scrape(
    out: &mut Vec<u8>,
    transaction_id: u32,
    counts: impl IntoIterator<Item = SwarmCounts>,
) {
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.complete.to_be_bytes());
        out.extend_from_slice(&c.downloaded.to_be_bytes());
        out.extend_from_slice(&c.incomplete.to_be_bytes());
    }
}

/// Appends an error reply, its message cut so the reply is at most `max_len` bytes (the size of
/// the request it answers: a tracker must never amplify). Returns false, writing nothing, if not
/// even the 8-byte header fits.
pub fn write_error(out: &mut Vec<u8>, transaction_id: u32, message: &str, max_len: usize) -> bool {
    let Some(room) = max_len.checked_sub(8) else {
        return false;
    };
    out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&message.as_bytes()[..message.len().min(room)]);
    true
}

/// Builds a connect request (for tests and load tools).
pub fn connect_request(transaction_id: u32) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    p[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    p[12..].copy_from_slice(&transaction_id.to_be_bytes());
    p
}

/// Builds an announce request (for tests and load tools), with optional BEP 41 URL data.
pub fn announce_request(
    connection_id: [u8; 8],
    transaction_id: u32,
    a: &AnnounceRequest,
    url_data: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(ANNOUNCE_LEN + url_data.len() + 8);
    p.extend_from_slice(&connection_id);
    p.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    p.extend_from_slice(&transaction_id.to_be_bytes());
    p.extend_from_slice(&a.info_hash.0);
    p.extend_from_slice(&a.peer_id.0);
    p.extend_from_slice(&a.downloaded.to_be_bytes());
    p.extend_from_slice(&a.left.to_be_bytes());
    p.extend_from_slice(&a.uploaded.to_be_bytes());
    let event: u32 = match a.event {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    };
    p.extend_from_slice(&event.to_be_bytes());
    let ip = match a.claimed_ip {
        Some(IpAddr::V4(v4)) => u32::from(v4),
        _ => 0,
    };
    p.extend_from_slice(&ip.to_be_bytes());
    p.extend_from_slice(&a.key.unwrap_or(0).to_be_bytes());
    let numwant = a.numwant.map_or(-1, |n| n.min(i32::MAX as u32) as i32);
    p.extend_from_slice(&numwant.to_be_bytes());
    p.extend_from_slice(&a.port.to_be_bytes());
    for chunk in url_data.chunks(255) {
        p.push(OPTION_URL_DATA);
        p.push(chunk.len() as u8);
        p.extend_from_slice(chunk);
    }
    if !url_data.is_empty() {
        p.push(OPTION_END);
    }
    p
}

/// Builds a scrape request (for tests and load tools).
pub fn scrape_request(connection_id: [u8; 8], transaction_id: u32, hashes: &[InfoHash]) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + 20 * hashes.len());
    p.extend_from_slice(&connection_id);
    p.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    p.extend_from_slice(&transaction_id.to_be_bytes());
    for h in hashes {
        p.extend_from_slice(&h.0);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([0xab; 20]),
            peer_id: PeerId(*b"-qB4650-0123456789ab"),
            port: 51413,
            uploaded: 1,
            downloaded: 2,
            left: 0,
            event: Event::Started,
            numwant: Some(30),
            compact: true,
            no_peer_id: true,
            key: Some(0xdead_beef),
            claimed_ip: None,
        }
    }

    #[test]
    fn connect_request_layout() {
        let p = connect_request(0x1122_3344);
        assert_eq!(
            p,
            [
                0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44
            ]
        );
        assert_eq!(
            parse_request(&p),
            Ok(Request::Connect {
                transaction_id: 0x1122_3344
            })
        );
    }

    #[test]
    fn connect_without_magic_is_dropped_silently() {
        let mut p = connect_request(1);
        p[0] = 9;
        assert_eq!(parse_request(&p).unwrap_err().transaction_id, None);
    }

    #[test]
    fn announce_round_trips_with_url_data() {
        let p = announce_request([1; 8], 7, &sample(), b"/0123abcd/announce?x=1");
        let Ok(Request::Announce {
            connection_id,
            transaction_id,
            announce,
            options,
        }) = parse_request(&p)
        else {
            panic!("not an announce")
        };
        assert_eq!((connection_id, transaction_id), ([1; 8], 7));
        assert_eq!(announce, sample());
        assert_eq!(
            options.url_data().collect::<Vec<_>>().concat(),
            b"/0123abcd/announce?x=1"
        );
    }

    #[test]
    fn url_data_spans_several_options_and_skips_unknown_ones() {
        let opts = [
            1, 2, 3, b'/', b'a', b'b', 9, 1, 0xff, 2, 2, b'/', b'c', 0, 2, 1, b'X',
        ];
        let got: Vec<&[u8]> = Options(&opts).url_data().collect();
        assert_eq!(got, vec![&b"/ab"[..], &b"/c"[..]], "stops at EndOfOptions");
        let truncated = [2, 10, b'/'];
        assert_eq!(Options(&truncated).url_data().count(), 0);
    }

    #[test]
    fn bad_announces_get_a_reason_and_the_transaction_id() {
        let mut p = announce_request([1; 8], 9, &sample(), b"");
        p[96..98].copy_from_slice(&[0, 0]);
        assert_eq!(
            parse_request(&p).unwrap_err(),
            ParseError {
                transaction_id: Some(9),
                reason: "port must not be 0"
            }
        );
        let p = announce_request([1; 8], 9, &sample(), b"");
        assert_eq!(
            parse_request(&p[..97]).unwrap_err().reason,
            "announce packet too short"
        );
        let mut p = announce_request([1; 8], 9, &sample(), b"");
        p[80..84].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(parse_request(&p).unwrap_err().reason, "unknown event");
        let mut p = announce_request([1; 8], 9, &sample(), b"");
        p[8..12].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(parse_request(&p).unwrap_err().reason, "unknown action");
    }

    #[test]
    fn numwant_negative_means_default() {
        let mut a = sample();
        a.numwant = None;
        let p = announce_request([0; 8], 1, &a, b"");
        assert_eq!(&p[92..96], &[0xff; 4]);
        let Ok(Request::Announce { announce, .. }) = parse_request(&p) else {
            panic!()
        };
        assert_eq!(announce.numwant, None);
    }

    #[test]
    fn scrape_round_trips_and_is_capped() {
        let hashes: Vec<InfoHash> = (0..3).map(|i| InfoHash([i; 20])).collect();
        let p = scrape_request([2; 8], 5, &hashes);
        let Ok(Request::Scrape {
            info_hashes,
            transaction_id,
            ..
        }) = parse_request(&p)
        else {
            panic!()
        };
        assert_eq!(transaction_id, 5);
        assert_eq!(info_hashes, &[[0; 20], [1; 20], [2; 20]]);
        let too_many: Vec<InfoHash> = (0..75).map(|i| InfoHash([i; 20])).collect();
        assert_eq!(
            parse_request(&scrape_request([2; 8], 5, &too_many))
                .unwrap_err()
                .reason,
            "too many info hashes in one scrape"
        );
        assert!(parse_request(&p[..p.len() - 1]).is_err());
    }

    #[test]
    fn replies_have_bep15_layouts() {
        let mut out = Vec::new();
        write_connect(&mut out, 3, [9; 8]);
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 3, 9, 9, 9, 9, 9, 9, 9, 9]);
        out.clear();
        let counts = SwarmCounts {
            complete: 2,
            incomplete: 1,
            downloaded: 4,
        };
        write_announce(&mut out, 3, 1800, counts, &[10, 0, 0, 1, 0x1a, 0xe1]);
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2, 10, 0, 0, 1, 0x1a, 0xe1
            ]
        );
        out.clear();
        write_scrape(&mut out, 3, [counts]);
        assert_eq!(
            out,
            [0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1]
        );
    }

    #[test]
    fn error_replies_never_exceed_the_request() {
        let mut out = Vec::new();
        assert!(write_error(
            &mut out,
            1,
            "a long explanation of what went wrong",
            16
        ));
        assert_eq!(out.len(), 16);
        assert_eq!(&out[..8], &[0, 0, 0, 3, 0, 0, 0, 1]);
        assert_eq!(&out[8..], b"a long e");
        out.clear();
        assert!(!write_error(&mut out, 1, "x", 7));
        assert!(out.is_empty());
    }

    #[test]
    fn reply_size_limits() {
        assert_eq!(max_peers_per_reply(Family::V4), 242);
        assert_eq!(max_peers_per_reply(Family::V6), 79);
        assert!(20 + 18 * max_peers_per_reply(Family::V6) <= 1452);
    }

    proptest! {
        #[test]
        fn arbitrary_packets_never_panic(p in proptest::collection::vec(any::<u8>(), 0..1600)) {
            if let Ok(Request::Announce { options, .. }) = parse_request(&p) {
                let _ = options.url_data().count();
            }
        }

        #[test]
        fn announce_fields_round_trip(
            ih in any::<[u8; 20]>(), pid in any::<[u8; 20]>(), port in 1u16.., nums in any::<(u64, u64, u64)>(),
            ev in 0u8..4, key in any::<u32>(), numwant in proptest::option::of(0u32..=i32::MAX as u32),
            url in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let event = [Event::None, Event::Completed, Event::Started, Event::Stopped][usize::from(ev)];
            let a = AnnounceRequest {
                info_hash: InfoHash(ih), peer_id: PeerId(pid), port, uploaded: nums.0, downloaded: nums.1,
                left: nums.2, event, numwant, compact: true, no_peer_id: true, key: Some(key), claimed_ip: None,
            };
            let p = announce_request([3; 8], 77, &a, &url);
            let Ok(Request::Announce { announce, options, .. }) = parse_request(&p) else { panic!() };
            prop_assert_eq!(announce, a);
            prop_assert_eq!(options.url_data().collect::<Vec<_>>().concat(), url);
        }
    }
}
