//! The native tracker over HTTP (BEP 3, 7, 23, 48), through real sockets on 127.0.0.1 and ::1.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use edgetracker::protocol::http::announce_query;
use edgetracker::protocol::percent::encode;
use edgetracker::protocol::types::{AnnounceRequest, Event};
use serde_bencode::value::Value;

type Dict = HashMap<Vec<u8>, Value>;

fn decode(body: &[u8]) -> Dict {
    match serde_bencode::from_bytes::<Value>(body) {
        Ok(Value::Dict(d)) => d,
        other => panic!(
            "not a bencoded dict: {other:?} from {}",
            String::from_utf8_lossy(body)
        ),
    }
}

fn int(d: &Dict, k: &str) -> i64 {
    match d.get(k.as_bytes()) {
        Some(Value::Int(i)) => *i,
        other => panic!("{k}: {other:?}"),
    }
}

fn bytes<'a>(d: &'a Dict, k: &str) -> &'a [u8] {
    match d.get(k.as_bytes()) {
        Some(Value::Bytes(b)) => b,
        other => panic!("{k}: {other:?}"),
    }
}

fn get(addr: std::net::SocketAddr, target: &str) -> Dict {
    let (status, _, body) = http_get(addr, target, &[]);
    assert_eq!(status, 200, "{target}");
    decode(&body)
}

fn http_announce(addr: std::net::SocketAddr, a: &AnnounceRequest) -> Dict {
    get(addr, &format!("/announce?{}", announce_query(a)))
}

fn failure(addr: std::net::SocketAddr, target: &str) -> String {
    let d = get(addr, target);
    String::from_utf8(bytes(&d, "failure reason").to_vec()).unwrap()
}

#[test]
fn two_peers_find_each_other_compact() {
    let t = tracker();
    let addr = http_addr(&t, false);
    let h = hash(1);
    let first = http_announce(addr, &announce(h, 6881, 0, Event::Started));
    assert_eq!(
        (
            int(&first, "complete"),
            int(&first, "incomplete"),
            int(&first, "interval"),
            int(&first, "min interval")
        ),
        (1, 0, 1800, 900)
    );
    assert_eq!(bytes(&first, "peers"), b"");
    let second = http_announce(addr, &announce(h, 6882, 50, Event::Started));
    assert_eq!(bytes(&second, "peers"), &[127, 0, 0, 1, 0x1a, 0xe1]);
    assert_eq!(
        (
            int(&second, "complete"),
            int(&second, "incomplete"),
            int(&second, "downloaded")
        ),
        (1, 1, 0)
    );
    assert!(!second.contains_key(&b"peers6"[..]));
    t.shutdown();
}

#[test]
fn non_compact_replies_list_dicts() {
    let t = tracker();
    let addr = http_addr(&t, false);
    let h = hash(2);
    http_announce(addr, &announce(h, 7001, 0, Event::Started));
    let mut a = announce(h, 7002, 9, Event::Started);
    a.compact = false;
    let d = http_announce(addr, &a);
    let Some(Value::List(peers)) = d.get(&b"peers"[..]) else {
        panic!("peers is not a list: {d:?}")
    };
    assert_eq!(peers.len(), 1);
    let Value::Dict(p) = &peers[0] else { panic!() };
    assert_eq!((bytes(p, "ip"), int(p, "port")), (&b"127.0.0.1"[..], 7001));
    t.shutdown();
}

#[test]
fn ipv6_clients_get_peers6_and_swarms_stay_apart() {
    let t = tracker();
    let (a4, a6) = (http_addr(&t, false), http_addr(&t, true));
    let h = hash(3);
    http_announce(a4, &announce(h, 4001, 0, Event::Started));
    http_announce(a6, &announce(h, 6001, 0, Event::Started));
    let d = http_announce(a6, &announce(h, 6002, 5, Event::Started));
    let mut expected = [0u8; 18];
    expected[15] = 1;
    expected[16..].copy_from_slice(&6001u16.to_be_bytes());
    assert_eq!(bytes(&d, "peers6"), &expected);
    assert_eq!(bytes(&d, "peers"), b"");
    assert_eq!(
        (int(&d, "complete"), int(&d, "incomplete")),
        (1, 1),
        "counts of the IPv6 swarm"
    );
    let d = http_announce(a4, &announce(h, 4002, 5, Event::Started));
    assert_eq!(bytes(&d, "peers"), &[127, 0, 0, 1, 0x0f, 0xa1]);
    // Scrape counts both families.
    let s = get(a4, &format!("/scrape?info_hash={}", encode(&h.0)));
    let Some(Value::Dict(files)) = s.get(&b"files"[..]) else {
        panic!()
    };
    let Some(Value::Dict(f)) = files.get(&h.0[..]) else {
        panic!()
    };
    assert_eq!((int(f, "complete"), int(f, "incomplete")), (2, 2));
    t.shutdown();
}

#[test]
fn stopped_removes_completed_counts_and_scrape_takes_many() {
    let t = tracker();
    let addr = http_addr(&t, false);
    let (h1, h2, unknown) = (hash(4), hash(5), hash(6));
    http_announce(addr, &announce(h1, 1, 10, Event::Started));
    http_announce(addr, &announce(h1, 2, 10, Event::Started));
    http_announce(addr, &announce(h2, 3, 10, Event::Started));
    let d = http_announce(addr, &announce(h1, 1, 0, Event::Completed));
    assert_eq!(
        (
            int(&d, "complete"),
            int(&d, "incomplete"),
            int(&d, "downloaded")
        ),
        (1, 1, 1)
    );
    let d = http_announce(addr, &announce(h1, 2, 10, Event::Stopped));
    assert_eq!(bytes(&d, "peers"), b"", "a stopping peer gets no peers");
    let d = http_announce(addr, &announce(h1, 1, 0, Event::None));
    assert_eq!(
        bytes(&d, "peers"),
        b"",
        "the stopped peer is gone (and a seeder gets no seeders)"
    );

    let q = [h1, h2, unknown]
        .iter()
        .map(|h| format!("info_hash={}", encode(&h.0)))
        .collect::<Vec<_>>()
        .join("&");
    let s = get(addr, &format!("/scrape?{q}"));
    let Some(Value::Dict(files)) = s.get(&b"files"[..]) else {
        panic!()
    };
    let counts = |h: &edgetracker::InfoHash| {
        let Some(Value::Dict(f)) = files.get(&h.0[..]) else {
            panic!("no entry")
        };
        (
            int(f, "complete"),
            int(f, "incomplete"),
            int(f, "downloaded"),
        )
    };
    assert_eq!(counts(&h1), (1, 0, 1));
    assert_eq!(counts(&h2), (0, 1, 0));
    assert_eq!(counts(&unknown), (0, 0, 0));
    t.shutdown();
}

#[test]
fn malformed_requests_get_a_failure_reason() {
    let t = tracker_with(|c| {
        c.tracker.policy.scrape_max_hashes = 2;
        // Room for the core's own query cap (16 KiB) to speak; by default the 8 KiB head
        // buffer refuses such a request first, with 431 (tests/native/abuse.rs).
        c.network.http_max_header_bytes = 32 * 1024;
    });
    let addr = http_addr(&t, false);
    let ih = encode(&[7u8; 20]);
    let pid = "-ET0001-abcdefghijkl";
    let cases = [
        (
            format!("/announce?peer_id={pid}&port=1"),
            "missing info_hash",
        ),
        (
            format!("/announce?info_hash=abc&peer_id={pid}&port=1"),
            "info_hash must be 20 bytes, got 3",
        ),
        (
            format!("/announce?info_hash=%G1{}&peer_id={pid}&port=1", &ih[3..]),
            "invalid percent-encoding in info_hash",
        ),
        (
            format!("/announce?info_hash={ih}&port=1"),
            "missing peer_id",
        ),
        (
            format!("/announce?info_hash={ih}&peer_id={pid}"),
            "missing port",
        ),
        (
            format!("/announce?info_hash={ih}&peer_id={pid}&port=0"),
            "port must not be 0",
        ),
        (
            format!("/announce?info_hash={ih}&peer_id={pid}&port=99999"),
            "invalid port",
        ),
        (
            format!("/announce?info_hash={ih}&peer_id={pid}&port=1&event=bogus"),
            "unknown event (expected started, stopped, completed or empty)",
        ),
        (
            format!("/announce?info_hash={ih}&peer_id={pid}&port=1&left=x"),
            "invalid left",
        ),
        (
            format!(
                "/announce?info_hash={ih}&peer_id={pid}&port=1&pad={}",
                "a".repeat(17_000)
            ),
            "query string too long",
        ),
        (
            format!(
                "/scrape?info_hash={ih}&info_hash={}&info_hash={}",
                encode(&[8; 20]),
                encode(&[9; 20])
            ),
            "too many info_hash in one scrape (at most 2)",
        ),
        (
            "/scrape".to_string(),
            "full scrape is disabled: pass at least one info_hash",
        ),
    ];
    for (target, reason) in &cases {
        assert_eq!(
            failure(addr, target),
            *reason,
            "{}",
            &target[..target.len().min(80)]
        );
    }
    let (status, _, body) = http_get(addr, "/nothing/here", &[]);
    assert_eq!(status, 404);
    assert!(bytes(&decode(&body), "failure reason").starts_with(b"not found"));
    // Still serving, and the errors were counted.
    assert_eq!(
        int(
            &http_announce(addr, &announce(hash(7), 1, 0, Event::Started)),
            "complete"
        ),
        1
    );
    let (_, _, stats) = http_get(addr, "/stats", &[]);
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["requests"]["http"]["ipv4"]["announce"]["errors"], 10);
    assert_eq!(stats["requests"]["http"]["ipv4"]["scrape"]["errors"], 2);
    t.shutdown();
}

#[test]
fn garbage_on_the_socket_does_not_hurt() {
    let t = tracker();
    let addr = http_addr(&t, false);
    for junk in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET /announce?\xff\xfe HTTP/1.1\r\n\r\n",
        b"GET",
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(junk).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    assert_eq!(
        int(
            &http_announce(addr, &announce(hash(8), 1, 0, Event::Started)),
            "complete"
        ),
        1
    );
    t.shutdown();
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let t = tracker();
    let addr = http_addr(&t, false);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for port in [1u16, 2] {
        let q = announce_query(&announce(hash(9), port, 1, Event::Started));
        s.write_all(format!("GET /announce?{q} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let (status, head, body) = split_response(&buf[..n]);
        assert_eq!(status, 200);
        assert!(head.to_ascii_lowercase().contains("content-length"));
        assert_eq!(int(&decode(&body), "incomplete"), i64::from(port));
    }
    t.shutdown();
}

/// `/stats`' count of requests answered at accept, without hyper.
fn answered_at_accept(addr: std::net::SocketAddr) -> u64 {
    let (_, _, body) = http_get(addr, "/stats?format=json", &[]);
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    stats["http_connections"]["answered_at_accept"]
        .as_u64()
        .expect("answered_at_accept")
}

/// Writes `request` on a fresh connection and reads until the tracker closes; the reply with
/// its `date:` value blanked, so that two replies compare.
fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    text.lines()
        .map(|l| {
            if l.starts_with("date: ") {
                "date: -"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn requests_that_close_are_answered_at_accept_with_the_bytes_hyper_writes() {
    let t = tracker();
    let addr = http_addr(&t, false);
    http_announce(addr, &announce(hash(20), 1, 0, Event::Started));
    let scrape = format!("/scrape?info_hash={}", encode(&hash(20).0));
    for (target, version, connection) in [
        (
            scrape.as_str(),
            "HTTP/1.1",
            "Connection: keep-alive, Close\r\n",
        ),
        (scrape.as_str(), "HTTP/1.0", ""),
        ("/announce?port=1", "HTTP/1.1", "Connection: close\r\n"),
        ("/announce?port=1", "HTTP/1.0", "Connection: other\r\n"),
        (scrape.as_str(), "HTTP/1.0", "Connection: close\r\n"),
    ] {
        let request = format!("GET {target} {version}\r\nHost: t\r\n{connection}\r\n");
        let before = answered_at_accept(addr);
        let at_accept = exchange(addr, request.as_bytes());
        assert_eq!(answered_at_accept(addr), before + 1, "{request}");
        // The same request with a second one behind it is hyper's (more than one request's
        // bytes), which answers the first and closes.
        let pipelined = format!("{request}{request}");
        let by_hyper = exchange(addr, pipelined.as_bytes());
        assert_eq!(answered_at_accept(addr), before + 1, "{request}");
        assert_eq!(at_accept, by_hyper, "{request}");
        assert!(
            at_accept.starts_with(&format!("{version} 200 OK")),
            "{at_accept}"
        );
        assert!(at_accept.contains("date: -"), "{at_accept}");
        if target == scrape {
            assert!(at_accept.ends_with("d8:completei1e10:downloadedi0e10:incompletei0eeee"));
        } else {
            assert!(at_accept.contains("failure reason"), "{at_accept}");
        }
    }
    t.shutdown();
}

#[test]
fn requests_in_pieces_kept_alive_or_upgraded_go_to_hyper() {
    let t = tracker();
    let addr = http_addr(&t, false);
    http_announce(addr, &announce(hash(21), 1, 1, Event::Started));
    let before = answered_at_accept(addr);
    // A slow client: what the accept loop read of it is replayed to hyper in front of the rest,
    // sent once /stats shows its connection open (in hyper's hands).
    let target = format!("/scrape?info_hash={}", encode(&hash(21).0));
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET /scr").unwrap();
    let open = || {
        let (_, _, body) = http_get(addr, "/stats?format=json", &[]);
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        stats["http_connections"]["open"].as_u64().unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow connection never opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rest = format!(
        "{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        &target[4..]
    );
    slow.write_all(rest.as_bytes()).unwrap();
    let mut raw = Vec::new();
    slow.read_to_end(&mut raw).unwrap();
    let reply = String::from_utf8_lossy(&raw).to_string();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(
        reply.ends_with("d8:completei0e10:downloadedi0e10:incompletei1eeee"),
        "{reply}"
    );
    // Keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked), a body, a WebSocket upgrade.
    for request in [
        format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"),
        format!("GET {target} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab"
        ),
        "GET /announce HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_string(),
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(
            head.starts_with("HTTP/1.1 200")
                || head.starts_with("HTTP/1.0 200")
                || head.starts_with("HTTP/1.1 101"),
            "{request}: {head}"
        );
    }
    // What hyper refuses, refused alike: bytes its URI parser does not take, lengths that
    // disagree (answered at accept, these got a tracker's reply).
    for request in [
        "GET /announce?port=1&key=<x> HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /scrape HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let reply = exchange(addr, request.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 400"), "{request}: {reply}");
    }
    assert_eq!(answered_at_accept(addr), before);
    t.shutdown();
}

#[test]
fn trusted_proxy_header_gives_the_client_address() {
    let t = tracker_with(|c| c.network.trusted_proxy_header = "X-Forwarded-For".into());
    let addr = http_addr(&t, false);
    let h = hash(10);
    let q1 = announce_query(&announce(h, 5000, 0, Event::Started));
    let (status, _, body) = http_get(
        addr,
        &format!("/announce?{q1}"),
        &[("X-Forwarded-For", "6.6.6.6, 203.0.113.9")],
    );
    assert_eq!(status, 200);
    assert_eq!(int(&decode(&body), "complete"), 1);
    let q2 = announce_query(&announce(h, 5001, 5, Event::Started));
    let (_, _, body) = http_get(
        addr,
        &format!("/announce?{q2}"),
        &[("X-Forwarded-For", "198.51.100.1")],
    );
    assert_eq!(
        bytes(&decode(&body), "peers"),
        &[203, 0, 113, 9, 0x13, 0x88],
        "the rightmost hop, not the socket or the first entry"
    );
    let (_, _, body) = http_get(addr, &format!("/announce?{q2}"), &[]);
    assert_eq!(
        bytes(&decode(&body), "failure reason"),
        b"missing X-Forwarded-For header from the proxy"
    );
    t.shutdown();
}

#[test]
fn a_client_cannot_choose_its_address_through_the_proxy_header() {
    // A proxy that appends its own line (HAProxy) after the client's forged one: the proxy's
    // line decides. (Before: the first line, the client's, was read.)
    let t = tracker_with(|c| c.network.trusted_proxy_header = "X-Forwarded-For".into());
    let addr = http_addr(&t, false);
    let h = hash(12);
    let q1 = announce_query(&announce(h, 5000, 0, Event::Started));
    http_get(
        addr,
        &format!("/announce?{q1}"),
        &[
            ("X-Forwarded-For", "203.0.113.66"),
            ("X-Forwarded-For", "198.51.100.20"),
        ],
    );
    let q2 = announce_query(&announce(h, 5001, 5, Event::Started));
    let (_, _, body) = http_get(
        addr,
        &format!("/announce?{q2}"),
        &[("X-Forwarded-For", "198.51.100.21")],
    );
    assert_eq!(
        bytes(&decode(&body), "peers"),
        &[198, 51, 100, 20, 0x13, 0x88],
        "the proxy's line, not the client's"
    );
    t.shutdown();

    // The header is believed only from the configured proxies: from anywhere else the socket
    // address is the client. (Before: from any connecting address.)
    let t = tracker_with(|c| {
        c.network.trusted_proxy_header = "X-Forwarded-For".into();
        c.network.trusted_proxies = vec!["192.0.2.0/24".into()];
    });
    let addr = http_addr(&t, false);
    http_get(
        addr,
        &format!("/announce?{q1}"),
        &[("X-Forwarded-For", "203.0.113.66")],
    );
    let (_, _, body) = http_get(
        addr,
        &format!("/announce?{q2}"),
        &[("X-Forwarded-For", "203.0.113.67")],
    );
    assert_eq!(
        bytes(&decode(&body), "peers"),
        &[127, 0, 0, 1, 0x13, 0x88],
        "not a proxy: the socket address"
    );
    t.shutdown();
}

#[test]
fn claimed_ip_is_ignored_by_default() {
    let t = tracker();
    let addr = http_addr(&t, false);
    let mut a = announce(hash(11), 5000, 0, Event::Started);
    a.claimed_ip = Some(ip("203.0.113.7"));
    http_announce(addr, &a);
    let d = http_announce(addr, &announce(hash(11), 5001, 5, Event::Started));
    assert_eq!(bytes(&d, "peers"), &[127, 0, 0, 1, 0x13, 0x88]);
    t.shutdown();
}

#[test]
fn stats_in_json_and_prometheus() {
    let t = tracker();
    let (a4, a6) = (http_addr(&t, false), http_addr(&t, true));
    http_announce(a4, &announce(hash(12), 1, 0, Event::Started));
    http_announce(a6, &announce(hash(12), 2, 5, Event::Started));
    let (status, head, body) = http_get(a4, "/stats", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("application/json"));
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            j["torrents"].as_u64(),
            j["seeders"].as_u64(),
            j["leechers"].as_u64(),
            j["peers"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(2))
    );
    assert_eq!(j["requests"]["http"]["ipv6"]["announce"]["requests"], 1);
    // One UDP thread per address, nothing received yet.
    let u4 = udp_addr(&t, false);
    assert_eq!(
        j["udp_threads"]["steering"], "client",
        "one thread: nothing to steer"
    );
    let threads = j["udp_threads"]["threads"].as_array().expect("udp_threads");
    assert_eq!(threads.len(), 2, "{threads:?}");
    assert!(
        threads
            .contains(&serde_json::json!({"address": u4.to_string(), "thread": 0, "datagrams": 0}))
    );
    let client = udp_client(u4);
    udp_exchange(&client, &edgetracker::protocol::udp::connect_request(1));
    for target in ["/stats?format=prometheus", "/metrics"] {
        let (status, _, body) = http_get(a4, target, &[]);
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("edgetracker_torrents 1\n"), "{text}");
        assert!(text.contains(
            "edgetracker_requests_total{protocol=\"http\",family=\"ipv4\",action=\"announce\"} 1\n"
        ));
        assert!(text.contains("edgetracker_peers{family=\"ipv6\",role=\"leecher\"} 1\n"));
        let datagrams =
            format!("edgetracker_udp_datagrams_total{{address=\"{u4}\",thread=\"0\"}} 1\n");
        assert!(text.contains(&datagrams), "{text}");
        assert!(
            text.contains("edgetracker_udp_steered_by_torrent 0\n"),
            "{text}"
        );
    }
    t.shutdown();
}

#[test]
fn announces_beyond_the_rate_limit_are_refused_and_counted() {
    let t = tracker_with(|c| {
        c.tracker.rate_limit_per_minute = 1;
        c.tracker.rate_limit_burst = 2;
    });
    let addr = http_addr(&t, false);
    let a = announce(hash(13), 1, 0, Event::Started);
    assert_eq!(int(&http_announce(addr, &a), "complete"), 1);
    assert_eq!(int(&http_announce(addr, &a), "complete"), 1);
    let d = http_announce(addr, &a);
    assert_eq!(
        bytes(&d, "failure reason"),
        b"rate limited: too many announces from your address, retry later"
    );
    // Another address (::1) has its own bucket.
    assert_eq!(int(&http_announce(http_addr(&t, true), &a), "complete"), 1);
    let (_, _, stats) = http_get(addr, "/stats", &[]);
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["rate_limited"], 1);
    let (_, _, metrics) = http_get(addr, "/metrics", &[]);
    assert!(
        String::from_utf8(metrics)
            .unwrap()
            .contains("edgetracker_rate_limited_total 1\n")
    );
    t.shutdown();
}

#[test]
fn full_scrape_when_enabled_is_gzipped_and_limited_per_address() {
    let t = tracker_with(|c| {
        c.tracker.full_scrape = true;
        c.tracker.full_scrape_interval = 600;
    });
    let (v4, v6) = (http_addr(&t, false), http_addr(&t, true));
    http_announce(v4, &announce(hash(21), 1, 0, Event::Started));
    http_announce(v4, &announce(hash(21), 2, 9, Event::Started));
    http_announce(v4, &announce(hash(22), 3, 0, Event::Completed));
    let (status, head, body) = http_get(v4, "/scrape", &[("Accept-Encoding", "gzip, deflate")]);
    assert_eq!(status, 200);
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-encoding: gzip") && lower.contains("vary: accept-encoding"),
        "{head}"
    );
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain).unwrap();
    let files = |d: &Dict| match d.get(&b"files"[..]) {
        Some(Value::Dict(f)) => f.clone(),
        other => panic!("{other:?}"),
    };
    let all = files(&decode(&plain));
    assert_eq!(all.len(), 2);
    let counts = |h: u8| match all.get(&hash(h).0[..]) {
        Some(Value::Dict(f)) => (
            int(f, "complete"),
            int(f, "incomplete"),
            int(f, "downloaded"),
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!((counts(21), counts(22)), ((1, 1, 0), (1, 0, 1)));
    // Again from the same address: refused until the interval has passed.
    assert_eq!(
        bytes(&get(v4, "/scrape"), "failure reason"),
        b"full scrape rate limited: once every 600 s per address"
    );
    // Another address, not accepting gzip, gets plain bencode.
    let (_, head, body) = http_get(v6, "/scrape", &[]);
    assert!(!head.to_ascii_lowercase().contains("content-encoding"));
    assert_eq!(files(&decode(&body)).len(), 2);
    t.shutdown();
}

#[test]
fn full_scrape_lists_only_torrents_the_access_rules_admit() {
    use edgetracker::access::{Access, ListMode};
    let t = tracker_with(|c| {
        c.tracker.full_scrape = true;
        c.tracker.full_scrape_interval = 0;
    });
    let a = http_addr(&t, false);
    http_announce(a, &announce(hash(31), 1, 0, Event::Started));
    http_announce(a, &announce(hash(32), 2, 0, Event::Started));
    let listed = || -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = match get(a, "/scrape").get(&b"files"[..]) {
            Some(Value::Dict(f)) => f.keys().cloned().collect(),
            other => panic!("{other:?}"),
        };
        keys.sort();
        keys
    };
    assert_eq!(listed(), vec![hash(31).0.to_vec(), hash(32).0.to_vec()]);
    // The operator denies a torrent that already has a swarm: the next full scrape (well within
    // the 30 s the answer is cached for) leaves it out.
    let denied: String = hash(32).0.iter().map(|b| format!("{b:02x}")).collect();
    t.shared
        .tracker
        .set_access(Access::open().with_list(ListMode::Deny, &denied).unwrap());
    assert_eq!(listed(), vec![hash(31).0.to_vec()]);
    t.shutdown();
}

/// Segments `s` has received (Linux `TCP_INFO`'s `tcpi_segs_in`).
#[cfg(target_os = "linux")]
#[allow(unsafe_code, reason = "getsockopt(TCP_INFO), which std does not wrap")]
fn segments_received(s: &TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is a plain C struct of integers, for which all zeroes is a value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is that long.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_segs_in
}

#[test]
#[cfg(target_os = "linux")]
fn a_reply_at_accept_leaves_with_the_close_in_one_segment() {
    // Before: the reply, then the FIN in a segment of its own. One packet more per connection,
    // and in the bench (README, HTTP) 1.27x the tracker's CPU per connection-per-request announce.
    let t = tracker();
    let addr = http_addr(&t, false);
    let scrape = format!("/scrape?info_hash={}", encode(&hash(21).0));
    let request = format!("GET {scrape} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for _ in 0..3 {
        let before = answered_at_accept(addr);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert!(raw.starts_with(b"HTTP/1.1 200 OK"));
        assert_eq!(answered_at_accept(addr), before + 1, "answered at accept");
        // The SYN-ACK, the request's acknowledgement (a new connection acknowledges at once),
        // then the reply carrying the FIN; before, the FIN came as a fourth.
        let segments = segments_received(&s);
        assert!(
            (2..=3).contains(&segments),
            "{segments} segments: reply and FIN apart?"
        );
    }
    t.shutdown();
}
