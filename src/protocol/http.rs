//! HTTP tracker requests (BEP 3, 7, 23, 48): the raw query string in, typed requests out.
//!
//! Works on the raw bytes of the request target: `info_hash` and `peer_id` are arbitrary binary
//! and any UTF-8 decoding before percent-decoding would corrupt them. Unknown parameters are
//! ignored, as every tracker does; the first occurrence of a repeated announce parameter wins.

use std::fmt;
use std::net::IpAddr;

use super::percent::{self, PercentError};
use super::types::{AnnounceRequest, Event, InfoHash, PeerId};

/// Longest query string accepted. Real announces are ~300 bytes; a scrape of 200 hashes is ~12 KB.
pub const MAX_QUERY_LEN: usize = 16 * 1024;

/// What was wrong with a request; its `Display` is the bencoded `failure reason` clients show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    Missing(&'static str),
    BadEncoding(&'static str),
    WrongLength {
        field: &'static str,
        expected: usize,
        got: usize,
    },
    Invalid(&'static str),
    ZeroPort,
    UnknownEvent,
    QueryTooLong,
    TooManyHashes {
        max: usize,
    },
    /// A scrape without `info_hash` while full scrapes are not served.
    FullScrapeDisabled,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Missing(field) => write!(f, "missing {field}"),
            RequestError::BadEncoding(field) => write!(f, "invalid percent-encoding in {field}"),
            RequestError::WrongLength {
                field,
                expected,
                got,
            } => {
                write!(f, "{field} must be {expected} bytes, got {got}")
            }
            RequestError::Invalid(field) => write!(f, "invalid {field}"),
            RequestError::ZeroPort => write!(f, "port must not be 0"),
            RequestError::UnknownEvent => {
                write!(
                    f,
                    "unknown event (expected started, stopped, completed or empty)"
                )
            }
            RequestError::QueryTooLong => write!(f, "query string too long"),
            RequestError::TooManyHashes { max } => {
                write!(f, "too many info_hash in one scrape (at most {max})")
            }
            RequestError::FullScrapeDisabled => {
                write!(f, "full scrape is disabled: pass at least one info_hash")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Splits a request target (`/announce?a=b`) into path and raw query.
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &[]),
    }
}

/// Iterates the `key=value` pairs of a raw query; keys and values stay percent-encoded. The one
/// reader of query strings: every home and endpoint goes through it.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        })
}

fn decode_fixed<const N: usize>(field: &'static str, raw: &[u8]) -> Result<[u8; N], RequestError> {
    // One spare byte tells "too long" apart from "exactly N".
    let mut buf = [0u8; 64];
    let len = match percent::decode_into(raw, &mut buf) {
        Ok(len) => len,
        Err(PercentError::BadEscape) => return Err(RequestError::BadEncoding(field)),
        Err(PercentError::TooLong) => buf.len() + 1,
    };
    if len != N {
        return Err(RequestError::WrongLength {
            field,
            expected: N,
            got: len,
        });
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[..N]);
    Ok(out)
}

/// Decodes a short textual value (a number, an event name) into `buf`.
fn decode_short<'b>(
    field: &'static str,
    raw: &[u8],
    buf: &'b mut [u8; 48],
) -> Result<&'b [u8], RequestError> {
    match percent::decode_into(raw, buf) {
        Ok(len) => Ok(&buf[..len]),
        Err(PercentError::BadEscape) => Err(RequestError::BadEncoding(field)),
        Err(PercentError::TooLong) => Err(RequestError::Invalid(field)),
    }
}

fn decode_number<T: std::str::FromStr>(field: &'static str, raw: &[u8]) -> Result<T, RequestError> {
    let mut buf = [0u8; 48];
    let text = decode_short(field, raw, &mut buf)?;
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::Invalid(field));
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RequestError::Invalid(field))
}

fn decode_flag(field: &'static str, raw: &[u8]) -> Result<bool, RequestError> {
    match decode_number::<u8>(field, raw)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(RequestError::Invalid(field)),
    }
}

/// Parses the query of an HTTP announce.
pub fn parse_announce(query: &[u8]) -> Result<AnnounceRequest, RequestError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(RequestError::QueryTooLong);
    }
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut uploaded = None;
    let mut downloaded = None;
    let mut left = None;
    let mut event = None;
    let mut numwant = None;
    let mut compact = None;
    let mut no_peer_id = None;
    let mut key = None;
    let mut claimed_ip = None;

    for (name, value) in query_pairs(query) {
        match name {
            b"info_hash" if info_hash.is_none() => {
                info_hash = Some(InfoHash(decode_fixed("info_hash", value)?));
            }
            b"peer_id" if peer_id.is_none() => {
                peer_id = Some(PeerId(decode_fixed("peer_id", value)?))
            }
            b"port" if port.is_none() => port = Some(decode_number::<u16>("port", value)?),
            b"uploaded" if uploaded.is_none() => uploaded = Some(decode_number("uploaded", value)?),
            b"downloaded" if downloaded.is_none() => {
                downloaded = Some(decode_number("downloaded", value)?);
            }
            b"left" if left.is_none() => left = Some(decode_number("left", value)?),
            b"event" if event.is_none() => {
                let mut buf = [0u8; 48];
                event = Some(match decode_short("event", value, &mut buf)? {
                    b"" | b"empty" | b"paused" => Event::None,
                    b"started" => Event::Started,
                    b"completed" => Event::Completed,
                    b"stopped" => Event::Stopped,
                    _ => return Err(RequestError::UnknownEvent),
                });
            }
            b"numwant" | b"num_want" if numwant.is_none() => {
                // Some clients send -1 for "default"; anything else non-numeric is refused.
                let mut buf = [0u8; 48];
                numwant = Some(match decode_short("numwant", value, &mut buf)? {
                    b"-1" => None,
                    _ => Some(decode_number::<u32>("numwant", value)?),
                });
            }
            b"compact" if compact.is_none() => compact = Some(decode_flag("compact", value)?),
            b"no_peer_id" if no_peer_id.is_none() => {
                no_peer_id = Some(decode_flag("no_peer_id", value)?)
            }
            b"key" if key.is_none() => key = Some(parse_key(value)?),
            b"ip" | b"ipv4" | b"ipv6" if claimed_ip.is_none() => {
                // Parsed so a misconfigured client learns nothing odd; used only if enabled.
                let mut buf = [0u8; 48];
                let text = decode_short("ip", value, &mut buf)?;
                claimed_ip = std::str::from_utf8(text)
                    .ok()
                    .and_then(|s| s.parse::<IpAddr>().ok());
            }
            _ => {}
        }
    }

    let port = port.ok_or(RequestError::Missing("port"))?;
    if port == 0 {
        return Err(RequestError::ZeroPort);
    }
    Ok(AnnounceRequest {
        info_hash: info_hash.ok_or(RequestError::Missing("info_hash"))?,
        peer_id: peer_id.ok_or(RequestError::Missing("peer_id"))?,
        port,
        // BEP 3 makes these required, but many clients omit them on stop; 0 is harmless.
        uploaded: uploaded.unwrap_or(0),
        downloaded: downloaded.unwrap_or(0),
        // A missing `left` must not turn a leecher into a seeder.
        left: left.unwrap_or(u64::MAX),
        event: event.unwrap_or_default(),
        numwant: numwant.flatten(),
        // BEP 23: trackers may answer compact unless told compact=0; nearly all clients want it.
        compact: compact.unwrap_or(true),
        no_peer_id: no_peer_id.unwrap_or(false),
        key,
        claimed_ip,
    })
}

/// `key` is opaque text; hex (what libtorrent sends) becomes its value, anything else a hash of it.
fn parse_key(raw: &[u8]) -> Result<u32, RequestError> {
    let mut buf = [0u8; 48];
    let text = decode_short("key", raw, &mut buf)?;
    if let Some(v) = std::str::from_utf8(text)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
    {
        return Ok(v);
    }
    // FNV-1a: stable across platforms and versions, which `DefaultHasher` is not.
    Ok(text.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    }))
}

/// Parses the query of an HTTP scrape into `out` (cleared first). An empty `out` afterwards
/// means a full scrape was asked for; the caller decides whether to serve it.
pub fn parse_scrape(
    query: &[u8],
    max_hashes: usize,
    out: &mut Vec<InfoHash>,
) -> Result<(), RequestError> {
    out.clear();
    if query.len() > MAX_QUERY_LEN {
        return Err(RequestError::QueryTooLong);
    }
    for (name, value) in query_pairs(query) {
        if name == b"info_hash" {
            if out.len() == max_hashes {
                return Err(RequestError::TooManyHashes { max: max_hashes });
            }
            let hash = InfoHash(decode_fixed("info_hash", value)?);
            // Repeats would only be answered once in the `files` dict.
            if !out.contains(&hash) {
                out.push(hash);
            }
        }
    }
    Ok(())
}

/// Builds the query string a client would send for `req` (used by tests and load tools).
pub fn announce_query(req: &AnnounceRequest) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}",
        percent::encode(&req.info_hash.0),
        percent::encode(&req.peer_id.0),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        u8::from(req.compact),
    );
    let event = match req.event {
        Event::None => None,
        Event::Started => Some("started"),
        Event::Completed => Some("completed"),
        Event::Stopped => Some("stopped"),
    };
    if let Some(event) = event {
        q.push_str("&event=");
        q.push_str(event);
    }
    if let Some(n) = req.numwant {
        q.push_str(&format!("&numwant={n}"));
    }
    if req.no_peer_id {
        q.push_str("&no_peer_id=1");
    }
    if let Some(key) = req.key {
        q.push_str(&format!("&key={key:08X}"));
    }
    if let Some(ip) = req.claimed_ip {
        q.push_str(&format!("&ip={ip}"));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const HASH: &str = "%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14";

    fn q(extra: &str) -> Vec<u8> {
        format!("info_hash={HASH}&peer_id=-XX0001-abcdefghijkl&port=6881{extra}").into_bytes()
    }

    #[test]
    fn parses_a_typical_announce() {
        let req = parse_announce(&q(
            "&uploaded=1&downloaded=2&left=3&event=started&numwant=7&compact=1&key=1A2B",
        ))
        .unwrap();
        assert_eq!(req.info_hash.0, std::array::from_fn(|i| i as u8 + 1));
        assert_eq!(&req.peer_id.0, b"-XX0001-abcdefghijkl");
        assert_eq!(
            (req.port, req.uploaded, req.downloaded, req.left),
            (6881, 1, 2, 3)
        );
        assert_eq!(req.event, Event::Started);
        assert_eq!(req.numwant, Some(7));
        assert!(req.compact);
        assert_eq!(req.key, Some(0x1A2B));
        assert_eq!(req.claimed_ip, None);
    }

    #[test]
    fn defaults_are_safe() {
        let req = parse_announce(&q("")).unwrap();
        assert_eq!(req.left, u64::MAX, "a missing left must not make a seeder");
        assert_eq!(req.event, Event::None);
        assert_eq!(req.numwant, None);
        assert!(req.compact);
        assert!(!req.no_peer_id);
    }

    #[test]
    fn each_error_names_what_was_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"peer_id=-XX0001-abcdefghijkl&port=1", "missing info_hash"),
            (
                b"info_hash=abc&peer_id=-XX0001-abcdefghijkl&port=1",
                "info_hash must be 20 bytes, got 3",
            ),
            (
                b"info_hash=%zz&port=1",
                "invalid percent-encoding in info_hash",
            ),
            (&q("")[..q("").len() - "&port=6881".len()], "missing port"),
            (&q("&x")[..], ""),
        ];
        for (query, reason) in cases {
            match parse_announce(query) {
                Err(e) => assert_eq!(e.to_string(), *reason, "{}", String::from_utf8_lossy(query)),
                Ok(_) => assert!(
                    reason.is_empty(),
                    "{} parsed",
                    String::from_utf8_lossy(query)
                ),
            }
        }
        let bad = |extra: &str| parse_announce(&q(extra)).unwrap_err().to_string();
        assert_eq!(
            bad("&event=exploded"),
            "unknown event (expected started, stopped, completed or empty)"
        );
        assert_eq!(bad("&left=-1"), "invalid left");
        assert_eq!(bad("&numwant=lots"), "invalid numwant");
        assert_eq!(bad("&compact=2"), "invalid compact");
        let zero = format!("info_hash={HASH}&peer_id=-XX0001-abcdefghijkl&port=0");
        assert_eq!(
            parse_announce(zero.as_bytes()).unwrap_err(),
            RequestError::ZeroPort
        );
        let big = format!("info_hash={HASH}&peer_id=-XX0001-abcdefghijkl&port=65536");
        assert_eq!(
            parse_announce(big.as_bytes()).unwrap_err().to_string(),
            "invalid port"
        );
        let long = vec![b'a'; MAX_QUERY_LEN + 1];
        assert_eq!(
            parse_announce(&long).unwrap_err(),
            RequestError::QueryTooLong
        );
    }

    #[test]
    fn numwant_minus_one_means_default() {
        assert_eq!(parse_announce(&q("&numwant=-1")).unwrap().numwant, None);
    }

    #[test]
    fn scrape_takes_many_hashes_and_caps_them() {
        let mut out = Vec::new();
        let one = format!("info_hash={HASH}");
        let query = format!("{one}&{}&{one}", "info_hash=AAAAAAAAAAAAAAAAAAAA");
        parse_scrape(query.as_bytes(), 3, &mut out).unwrap();
        assert_eq!(out.len(), 2, "repeats collapse");
        assert_eq!(out[1].0, *b"AAAAAAAAAAAAAAAAAAAA");
        let err = parse_scrape(query.as_bytes(), 1, &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "too many info_hash in one scrape (at most 1)"
        );
        parse_scrape(b"", 3, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn split_target_separates_path_and_query() {
        assert_eq!(
            split_target(b"/announce?a=1"),
            (&b"/announce"[..], &b"a=1"[..])
        );
        assert_eq!(split_target(b"/scrape"), (&b"/scrape"[..], &b""[..]));
    }

    fn arb_request() -> impl Strategy<Value = AnnounceRequest> {
        let event = prop_oneof![
            Just(Event::None),
            Just(Event::Started),
            Just(Event::Completed),
            Just(Event::Stopped)
        ];
        (
            any::<[u8; 20]>(),
            any::<[u8; 20]>(),
            1u16..,
            any::<(u64, u64, u64)>(),
            event,
            proptest::option::of(any::<u32>()),
            any::<(bool, bool)>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<std::net::IpAddr>()),
        )
            .prop_map(
                |(
                    ih,
                    pid,
                    port,
                    (up, down, left),
                    event,
                    numwant,
                    (compact, no_peer_id),
                    key,
                    claimed_ip,
                )| {
                    AnnounceRequest {
                        info_hash: InfoHash(ih),
                        peer_id: PeerId(pid),
                        port,
                        uploaded: up,
                        downloaded: down,
                        left,
                        event,
                        numwant,
                        compact,
                        no_peer_id,
                        key,
                        claimed_ip,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn announce_round_trips(req in arb_request()) {
            let query = announce_query(&req);
            prop_assert_eq!(parse_announce(query.as_bytes()).unwrap(), req);
        }

        #[test]
        fn arbitrary_queries_never_panic(query in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_announce(&query);
            let mut out = Vec::new();
            let _ = parse_scrape(&query, 10, &mut out);
        }
    }
}
