//! Bencoded HTTP replies (BEP 3, 7, 23, 48), written by serde_bencode.
//!
//! Peers arrive here already in compact form (6 bytes per IPv4 peer, 18 per IPv6 peer), which is
//! what the swarm produces and what UDP sends as is; non-compact replies expand them to dicts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use serde_bytes::{ByteBuf, Bytes};

use super::types::{Family, InfoHash, SwarmCounts};

/// Compact entry sizes (BEP 23, BEP 7).
pub const COMPACT_V4_LEN: usize = 6;
pub const COMPACT_V6_LEN: usize = 18;

/// Everything an announce reply says.
#[derive(Clone, Copy, Debug)]
pub struct AnnounceReply<'a> {
    pub interval: u32,
    pub min_interval: u32,
    pub counts: SwarmCounts,
    /// The family of `peers` (the requester's).
    pub family: Family,
    /// Compact peer entries of `family`.
    pub peers: &'a [u8],
    /// BEP 23 compact form, or a list of dicts.
    pub compact: bool,
}

/// An announce reply; `P` is the compact byte string or the list of dicts.
#[derive(Serialize)]
struct Announce<'a, P> {
    complete: u32,
    downloaded: u32,
    incomplete: u32,
    interval: u32,
    #[serde(rename = "min interval")]
    min_interval: u32,
    peers: P,
    #[serde(skip_serializing_if = "Option::is_none")]
    peers6: Option<&'a Bytes>,
}

/// A non-compact peer. Peer ids are not stored (they would triple the memory per peer, and
/// peers are keyed by address anyway), so dicts carry `ip` and `port` only, as opentracker's do;
/// BitTorrent clients accept that (BEP 3 peers learn the id from the handshake).
#[derive(Serialize)]
struct PeerDict {
    ip: String,
    port: u16,
}

/// Decodes compact entries of `family` into addresses and ports.
pub fn compact_peers(family: Family, peers: &[u8]) -> impl Iterator<Item = (IpAddr, u16)> + '_ {
    let len = match family {
        Family::V4 => COMPACT_V4_LEN,
        Family::V6 => COMPACT_V6_LEN,
    };
    peers.chunks_exact(len).map(move |chunk| {
        let (ip, port) = chunk.split_at(len - 2);
        let ip = match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).expect("4 bytes"))),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).expect("16 bytes"))),
        };
        (ip, u16::from_be_bytes([port[0], port[1]]))
    })
}

/// Writes an announce reply. IPv4 requesters get `peers`; IPv6 requesters get `peers6` (BEP 7)
/// next to an empty `peers`, which clients that predate BEP 7 still expect to find.
pub fn write_announce(reply: &AnnounceReply<'_>) -> Vec<u8> {
    match (reply.compact, reply.family) {
        (true, Family::V4) => write_compact(reply, reply.peers, None),
        (true, Family::V6) => write_compact(reply, &[], Some(reply.peers)),
        (false, family) => {
            let dicts: Vec<PeerDict> = compact_peers(family, reply.peers)
                .map(|(ip, port)| PeerDict {
                    ip: ip.to_string(),
                    port,
                })
                .collect();
            serialize_announce(reply, dicts, None)
        }
    }
}

/// A compact announce reply, the one nearly every announce gets, written straight into one
/// buffer: serde_bencode sorts a struct's fields through a map of owned keys and values, which
/// cost more allocations than the rest of an announce. The bytes are serde_bencode's (keys in
/// sorted order; a property test compares the two), as for [`write_scrape_sorted`].
fn write_compact(reply: &AnnounceReply<'_>, peers: &[u8], peers6: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    let c = reply.counts;
    let mut out = Vec::with_capacity(112 + peers.len() + peers6.map_or(0, <[u8]>::len));
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "d8:completei{}e10:downloadedi{}e10:incompletei{}e8:intervali{}e12:min intervali{}e5:peers{}:",
        c.complete,
        c.downloaded,
        c.incomplete,
        reply.interval,
        reply.min_interval,
        peers.len()
    );
    out.extend_from_slice(peers);
    if let Some(peers6) = peers6 {
        let _ = write!(out, "6:peers6{}:", peers6.len());
        out.extend_from_slice(peers6);
    }
    out.push(b'e');
    out
}

/// An announce reply through serde_bencode: the non-compact form, and the reference the compact
/// writer is tested against.
fn serialize_announce<P: Serialize>(
    reply: &AnnounceReply<'_>,
    peers: P,
    peers6: Option<&Bytes>,
) -> Vec<u8> {
    let SwarmCounts {
        complete,
        incomplete,
        downloaded,
    } = reply.counts;
    let (interval, min_interval) = (reply.interval, reply.min_interval);
    serde_bencode::to_bytes(&Announce {
        complete,
        downloaded,
        incomplete,
        interval,
        min_interval,
        peers,
        peers6,
    })
    .expect("serializing integers and byte strings cannot fail")
}

#[derive(Serialize)]
struct ScrapeFile {
    complete: u32,
    downloaded: u32,
    incomplete: u32,
}

#[derive(Serialize)]
struct Scrape {
    files: BTreeMap<ByteBuf, ScrapeFile>,
}

/// Writes a scrape reply (BEP 48): one `files` entry per hash, zeros for unknown torrents.
pub fn write_scrape<'a>(entries: impl IntoIterator<Item = (&'a InfoHash, SwarmCounts)>) -> Vec<u8> {
    let files = entries
        .into_iter()
        .map(|(hash, c)| {
            let file = ScrapeFile {
                complete: c.complete,
                downloaded: c.downloaded,
                incomplete: c.incomplete,
            };
            (ByteBuf::from(hash.0.to_vec()), file)
        })
        .collect();
    serde_bencode::to_bytes(&Scrape { files })
        .expect("serializing integers and byte strings cannot fail")
}

/// Writes a scrape reply of many torrents, e.g. a full scrape, straight into `out`. `entries`
/// must be sorted by info hash (bencode dicts are). Equivalent to [`write_scrape`], but without
/// building a map of the whole tracker: a full scrape of a million torrents stays a sorted
/// vector plus the output.
pub fn write_scrape_sorted(entries: &[(InfoHash, SwarmCounts)], out: &mut Vec<u8>) {
    debug_assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted, no duplicates"
    );
    use std::io::Write as _;
    out.extend_from_slice(b"d5:filesd");
    for (hash, c) in entries {
        out.extend_from_slice(b"20:");
        out.extend_from_slice(&hash.0);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "d8:completei{}e10:downloadedi{}e10:incompletei{}ee",
            c.complete, c.downloaded, c.incomplete
        );
    }
    out.extend_from_slice(b"ee");
}

#[derive(Serialize)]
struct Failure<'a> {
    #[serde(rename = "failure reason")]
    reason: &'a str,
}

/// Writes an error reply: HTTP 200 with a `failure reason`, which every client shows its user.
pub fn write_failure(reason: &str) -> Vec<u8> {
    serde_bencode::to_bytes(&Failure { reason }).expect("serializing a string cannot fail")
}

#[derive(Serialize)]
struct FailureRetry<'a> {
    #[serde(rename = "failure reason")]
    reason: &'a str,
    #[serde(rename = "retry in")]
    retry_in: u32,
}

/// An error reply that says when to try again: BEP 31's `retry in`, in minutes (libtorrent and
/// others wait that long instead of their own back-off).
pub fn write_failure_retry(reason: &str, retry_in_minutes: u32) -> Vec<u8> {
    serde_bencode::to_bytes(&FailureRetry {
        reason,
        retry_in: retry_in_minutes,
    })
    .expect("serializing a string and an integer cannot fail")
}

#[cfg(test)]
mod tests {
    //! Differential tests: every reply is decoded by serde_bencode's own parser into a generic
    //! value and compared with what BEP 3/7/23/48 say the reply must contain.
    use super::*;
    use serde_bencode::value::Value;
    use std::collections::HashMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn dict(bytes: &[u8]) -> HashMap<Vec<u8>, Value> {
        match serde_bencode::from_bytes::<Value>(bytes).expect("valid bencode") {
            Value::Dict(d) => d,
            other => panic!("not a dict: {other:?}"),
        }
    }

    fn int(d: &HashMap<Vec<u8>, Value>, k: &str) -> i64 {
        match d.get(k.as_bytes()) {
            Some(Value::Int(i)) => *i,
            other => panic!("{k}: {other:?}"),
        }
    }

    fn bytes<'a>(d: &'a HashMap<Vec<u8>, Value>, k: &str) -> &'a [u8] {
        match d.get(k.as_bytes()) {
            Some(Value::Bytes(b)) => b,
            other => panic!("{k}: {other:?}"),
        }
    }

    const COUNTS: SwarmCounts = SwarmCounts {
        complete: 3,
        incomplete: 4,
        downloaded: 5,
    };

    #[test]
    fn compact_v4_reply_exact_bytes() {
        let peers = [10, 0, 0, 1, 0x1a, 0xe1];
        let reply = AnnounceReply {
            interval: 1800,
            min_interval: 900,
            counts: COUNTS,
            family: Family::V4,
            peers: &peers,
            compact: true,
        };
        let out = write_announce(&reply);
        assert_eq!(
            out,
            b"d8:completei3e10:downloadedi5e10:incompletei4e8:intervali1800e12:min intervali900e5:peers6:\x0a\x00\x00\x01\x1a\xe1e"
        );
        let d = dict(&out);
        assert_eq!(
            (
                int(&d, "complete"),
                int(&d, "incomplete"),
                int(&d, "downloaded")
            ),
            (3, 4, 5)
        );
        assert_eq!(bytes(&d, "peers"), &peers);
        assert!(!d.contains_key(&b"peers6"[..]));
    }

    #[test]
    fn compact_v6_reply_uses_peers6() {
        let mut peers = [0u8; 36];
        peers[15] = 1;
        peers[16..18].copy_from_slice(&6881u16.to_be_bytes());
        peers[18] = 0x20;
        peers[34..36].copy_from_slice(&51413u16.to_be_bytes());
        let reply = AnnounceReply {
            interval: 60,
            min_interval: 30,
            counts: COUNTS,
            family: Family::V6,
            peers: &peers,
            compact: true,
        };
        let d = dict(&write_announce(&reply));
        assert_eq!(bytes(&d, "peers"), b"");
        assert_eq!(bytes(&d, "peers6"), &peers);
        assert_eq!((int(&d, "interval"), int(&d, "min interval")), (60, 30));
    }

    #[test]
    fn non_compact_reply_lists_dicts() {
        let peers = [127, 0, 0, 1, 0x1a, 0xe1, 10, 1, 2, 3, 0, 80];
        let reply = AnnounceReply {
            interval: 1,
            min_interval: 1,
            counts: COUNTS,
            family: Family::V4,
            peers: &peers,
            compact: false,
        };
        let d = dict(&write_announce(&reply));
        let Some(Value::List(list)) = d.get(&b"peers"[..]) else {
            panic!("peers is not a list")
        };
        let got: Vec<(Vec<u8>, i64)> = list
            .iter()
            .map(|p| match p {
                Value::Dict(p) => (bytes(p, "ip").to_vec(), int(p, "port")),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![(b"127.0.0.1".to_vec(), 6881), (b"10.1.2.3".to_vec(), 80)]
        );
    }

    #[test]
    fn scrape_reply_has_one_file_per_hash() {
        let a = InfoHash([b'a'; 20]);
        let b = InfoHash([b'b'; 20]);
        let out = write_scrape([(&b, SwarmCounts::default()), (&a, COUNTS)]);
        let d = dict(&out);
        let Some(Value::Dict(files)) = d.get(&b"files"[..]) else {
            panic!("no files")
        };
        assert_eq!(files.len(), 2);
        let Some(Value::Dict(fa)) = files.get(&a.0[..]) else {
            panic!("no a")
        };
        assert_eq!(
            (
                int(fa, "complete"),
                int(fa, "incomplete"),
                int(fa, "downloaded")
            ),
            (3, 4, 5)
        );
        let Some(Value::Dict(fb)) = files.get(&b.0[..]) else {
            panic!("no b")
        };
        assert_eq!(
            (
                int(fb, "complete"),
                int(fb, "incomplete"),
                int(fb, "downloaded")
            ),
            (0, 0, 0)
        );
        // Keys sorted, as bencode requires: a's entry comes before b's.
        let pos = |h: &InfoHash| out.windows(20).position(|w| w == h.0).unwrap();
        assert!(pos(&a) < pos(&b));
    }

    proptest! {
        #[test]
        fn compact_announce_equals_serde_bencode(
            counts in any::<(u32, u32, u32)>(),
            intervals in any::<(u32, u32)>(),
            v6 in any::<bool>(),
            peers in proptest::collection::vec(any::<u8>(), 0..60 * 18),
        ) {
            let reply = AnnounceReply {
                interval: intervals.0,
                min_interval: intervals.1,
                counts: SwarmCounts { complete: counts.0, incomplete: counts.1, downloaded: counts.2 },
                family: if v6 { Family::V6 } else { Family::V4 },
                peers: &peers,
                compact: true,
            };
            let by_serde = if v6 {
                serialize_announce(&reply, Bytes::new(&[]), Some(Bytes::new(&peers)))
            } else {
                serialize_announce(&reply, Bytes::new(&peers), None)
            };
            prop_assert_eq!(write_announce(&reply), by_serde);
        }
    }

    proptest! {
        #[test]
        fn streamed_scrape_equals_serde_bencode(
            entries in proptest::collection::btree_map(any::<[u8; 20]>(), any::<(u32, u32, u32)>(), 0..40)
        ) {
            let entries: Vec<(InfoHash, SwarmCounts)> = entries
                .into_iter()
                .map(|(h, (a, b, c))| (InfoHash(h), SwarmCounts { complete: a, incomplete: b, downloaded: c }))
                .collect();
            let mut streamed = Vec::new();
            write_scrape_sorted(&entries, &mut streamed);
            prop_assert_eq!(streamed, write_scrape(entries.iter().map(|(h, c)| (h, *c))));
        }
    }

    #[test]
    fn failure_reply() {
        assert_eq!(
            write_failure("missing port"),
            b"d14:failure reason12:missing porte"
        );
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn replies_always_decode(
            peers in proptest::collection::vec(any::<u8>(), 0..20 * 18).prop_map(|mut v| { v.truncate(v.len() / 18 * 18); v }),
            compact in any::<bool>(),
            v6 in any::<bool>(),
            counts in any::<(u32, u32, u32)>(),
        ) {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let counts = SwarmCounts { complete: counts.0, incomplete: counts.1, downloaded: counts.2 };
            let reply = AnnounceReply { interval: 7, min_interval: 3, counts, family, peers: &peers, compact };
            let d = dict(&write_announce(&reply));
            prop_assert_eq!(int(&d, "complete"), i64::from(counts.complete));
            let n = match d.get(&b"peers"[..]) {
                Some(Value::List(l)) => l.len(),
                Some(Value::Bytes(b)) if !v6 => b.len() / 6,
                Some(Value::Bytes(_)) => bytes(&d, "peers6").len() / 18,
                other => panic!("{other:?}"),
            };
            let per = if v6 { 18 } else { 6 };
            prop_assert_eq!(n, peers.len() / per);
        }
    }
}
