//! Attacks on the HTTP side, reproduced on loopback (bounded in time and count), and what the
//! tracker must do about each: close, refuse with a reason, count.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Protocol, Socket, Type};

/// The HTTP connection counters of `/stats`, asked from an address of its own (127.0.0.9), so
/// the asking never counts against the caps the tests fill from other addresses.
/// (Null while the tracker is at its total cap and refuses the asking connection too.)
fn connections(addr: SocketAddr) -> serde_json::Value {
    let mut s = silent_from("127.0.0.9".parse().unwrap(), addr);
    let mut raw = Vec::new();
    let asked = s
        .write_all(b"GET /stats?format=json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .and_then(|()| s.read_to_end(&mut raw));
    if asked.is_err() || !raw.starts_with(b"HTTP/1.1 200") {
        return serde_json::Value::Null;
    }
    let (_, _, body) = split_response(&raw);
    let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
    stats["http_connections"].clone()
}

/// A connection from `from` (any 127.0.0.x) to `to` that has begun a request and stops there
/// (a silent one would wait in the kernel: see `http_defer_accept`).
fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let mut s = silent_from(from, to);
    s.write_all(b"GET ").unwrap();
    s
}

/// A connection from `from` to `to` that sends nothing.
fn silent_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.bind(&SocketAddr::new(from, 0).into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// One response from a connection kept alive: its head and as many body bytes as it announces.
fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).expect("a response");
        assert!(n > 0, "closed before a whole response");
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        if raw.len() >= end + 4 + length {
            return raw;
        }
    }
}

/// What a refused connection was told before it was closed.
fn refusal(mut s: TcpStream) -> String {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_client_that_pipelines_and_never_reads_is_closed() {
    // Before: after a request was parsed no timer ran at all; 250 such connections at a
    // 256-descriptor limit stopped every other request for 35 s, one stayed open 320 s.
    let t = tracker_with(|c| c.network.http_idle_timeout = 2);
    let addr = http_addr(&t, false);
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Far more answers than the socket buffers hold (each /stats answer is a few KB), sent
    // until the tracker stops taking them; never read.
    let request = b"GET /stats?format=json HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
    let began = Instant::now();
    for _ in 0..200 {
        if s.write_all(&request).is_err() || began.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    wait_for(
        "the stalled connection closed",
        Duration::from_secs(10),
        || connections(addr)["closed_idle"] == 1,
    );
    assert_eq!(
        connections(addr)["open"],
        1,
        "only the stats request's own connection"
    );
    t.shutdown();
}

#[test]
fn connections_over_the_caps_are_refused_with_a_reason_and_counted() {
    // Before: no cap at all, total or per address, and the open-file limit was the process's
    // default (1,024 at most places): ~87 new connections a second from one address made 9 of
    // 13 announces of other clients fail.
    let t = tracker_with(|c| {
        c.network.http_max_connections = 6;
        c.network.http_max_connections_per_address = 4;
        // Refused, not shed, however long the test takes (shedding has a test of its own).
        c.network.shed_idle_after = 0;
    });
    let addr = http_addr(&t, false);
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let held: Vec<TcpStream> = (0..4).map(|_| connect_from(one, addr)).collect();
    wait_for("4 connections admitted", Duration::from_secs(5), || {
        connections(addr)["open"] == 5
    });
    let fifth = refusal(connect_from(one, addr));
    assert!(fifth.starts_with("HTTP/1.1 503"), "{fifth}");
    assert!(
        fifth
            .ends_with("d14:failure reason51:too many connections from your address, retry latere"),
        "{fifth}"
    );
    // Other clients still get in, up to the total of 6 (connections are admitted in the order
    // they arrive, so these two before the next).
    let other = connect_from("127.0.0.2".parse().unwrap(), addr);
    let another = connect_from("127.0.0.3".parse().unwrap(), addr);
    let busy = refusal(connect_from("127.0.0.4".parse().unwrap(), addr));
    assert!(
        busy.contains("tracker busy: too many connections, retry later"),
        "{busy}"
    );
    drop((held, other, another));
    wait_for(
        "the held connections closed",
        Duration::from_secs(5),
        || connections(addr)["open"] == 1,
    );
    let c = connections(addr);
    assert_eq!(c["refused_per_address_cap"], 1);
    // (The test's own stats requests may have met the total cap while it was full, too.)
    assert!(c["refused_total_cap"].as_u64() >= Some(1), "{c}");
    let (_, _, metrics) = http_get(addr, "/metrics", &[]);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("edgetracker_http_connections_refused_total{cap=\"per_address\"} 1\n"),
        "{metrics}"
    );
    t.shutdown();
}

#[test]
fn a_refused_client_that_sent_its_request_still_reads_the_reason() {
    // Before: the socket was closed with the client's request arriving or unread, so the kernel
    // answered with a reset, and a client may drop the 503 it had not read yet.
    let t = tracker_with(|c| c.network.http_max_connections_per_address = 1);
    let addr = http_addr(&t, false);
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let _held = connect_from(one, addr);
    wait_for("1 connection admitted", Duration::from_secs(5), || {
        connections(addr)["open"] == 2
    });
    for _ in 0..5 {
        let mut s = silent_from(one, addr);
        s.write_all(b"GET /announce?info_hash=x HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        let read = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(read.is_ok(), "{read:?} after {text:?}: reset, not closed");
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.ends_with("retry latere"), "{text}");
    }
    t.shutdown();
}

#[test]
#[cfg(target_os = "linux")] // TCP_DEFER_ACCEPT
fn silent_connections_take_no_place_until_they_speak() {
    // With connections handed over at once (http_defer_accept = 0), each silent one held a
    // descriptor and a place under the caps from its first moment: 64 of them from one
    // address shut that address out.
    let t = tracker_with(|c| c.network.http_max_connections_per_address = 2);
    let addr = http_addr(&t, false);
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let mut silent: Vec<TcpStream> = (0..4).map(|_| silent_from(one, addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(connections(addr)["open"], 1, "only the stats request's own");
    // The address still gets in, and a silent connection that speaks is served.
    assert_eq!(http_get(addr, "/announce", &[]).0, 200);
    let mut last = silent.pop().unwrap();
    last.write_all(b"GET /scrape HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    last.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    t.shutdown();
}

#[test]
#[cfg(target_os = "linux")] // queued through TCP_DEFER_ACCEPT
fn requests_answered_at_accept_give_way_to_other_connections() {
    // Before: the accept loop answered connection after connection without giving its thread
    // back for as long as more were waiting (its readiness wait used none of tokio's task
    // budget), so with one HTTP thread a steady flood of requests that close held back every
    // hyper connection (keep-alive clients, /stats, WebSockets) until the flood paused.
    const QUEUED: usize = 600;
    let t = tracker_with(|c| {
        c.network.http_max_connections_per_address = 10_000;
        c.network.http_max_connections_per_network = 10_000;
    });
    let addr = http_addr(&t, false);
    // A keep-alive client, its first request answered: it now waits in hyper.
    let mut keep = TcpStream::connect(addr).unwrap();
    keep.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let stats = b"GET /stats?format=json HTTP/1.1\r\nHost: t\r\n\r\n";
    keep.write_all(stats).unwrap();
    read_response(&mut keep);
    // Connections that say nothing yet wait in the kernel (http_defer_accept); their requests,
    // sent all at once, then reach the accept loop together, the keep-alive request halfway.
    let mut queued: Vec<TcpStream> = (0..QUEUED)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for (i, c) in queued.iter_mut().enumerate() {
        if i == QUEUED / 2 {
            keep.write_all(stats).unwrap();
        }
        c.write_all(b"GET /announce?port=1 HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    // The stats it gets say how many of the queued had been answered before it: all of them
    // if the loop never gave way, at most half and one budget (128) if it did.
    let (_, _, body) = split_response(&read_response(&mut keep));
    let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
    let answered = stats["http_connections"]["answered_at_accept"]
        .as_u64()
        .unwrap();
    assert!(
        answered < QUEUED as u64 * 9 / 10,
        "{answered} of {QUEUED} answered before it"
    );
    drop(queued);
    t.shutdown();
}

#[test]
fn request_heads_beyond_the_buffer_are_refused() {
    // Before: hyper's default 400 KB buffer per connection; 3,000 connections sending endless
    // headers took 1.18 GB. An announce is under 1 KB.
    let t = tracker();
    let addr = http_addr(&t, false);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "GET /announce HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = s.write_all(head.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let reply = String::from_utf8_lossy(&raw);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    t.shutdown();
}

#[test]
fn one_address_cannot_fill_a_swarm_or_the_tracker() {
    // Before: one IPv4 address made 1,000,000 torrents in 28.7 s, and 8 addresses put 524 k
    // peers in one torrent; in the edge's KV view, 4,000 ports of one address were every peer
    // handed out.
    let t = tracker_with(|c| {
        c.tracker.policy.max_peers_per_address = 3;
        c.tracker.policy.max_torrents = 5;
    });
    let (h, u) = (http_addr(&t, false), udp_addr(&t, false));
    let announce_http = |hash: u8, port: u16| {
        announce_over_http(
            h,
            hash,
            port,
            5,
            edgetracker::protocol::types::Event::Started,
        )
    };
    for port in 1..=3 {
        assert_eq!(announce_http(1, port), None, "port {port} joins");
    }
    assert_eq!(
        announce_http(1, 4).as_deref(),
        Some("too many peers from your address in this torrent")
    );
    // Over UDP too (with a valid connection id, so the whole reason comes back).
    let s = udp_client(u);
    let connect = udp_exchange(&s, &edgetracker::protocol::udp::connect_request(1));
    let id: [u8; 8] = connect[8..16].try_into().unwrap();
    let a = announce(
        common::hash(1),
        5,
        5,
        edgetracker::protocol::types::Event::Started,
    );
    let reply = udp_exchange(
        &s,
        &edgetracker::protocol::udp::announce_request(id, 9, &a, b""),
    );
    assert_eq!(&reply[..4], &[0, 0, 0, 3], "an error");
    assert_eq!(
        &reply[8..],
        b"too many peers from your address in this torrent"
    );
    // Torrents: 5 at most.
    for hash in 2..=5 {
        assert_eq!(announce_http(hash, 1), None);
    }
    assert_eq!(
        announce_http(6, 1).as_deref(),
        Some("tracker full: no room for another torrent, retry later")
    );
    let (_, _, stats) = http_get(h, "/stats?format=json", &[]);
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["refused_at_cap"]["peers_from_address"], 2);
    assert_eq!(stats["refused_at_cap"]["torrents"], 1);
    assert_eq!(stats["torrents"], 5);
    t.shutdown();
}

#[test]
fn at_the_connection_cap_the_idlest_holder_makes_room() {
    // Before: 17,000 connections from 300 addresses, each sending one byte, held every slot:
    // 11 of 11 HTTP probes failed over 33 s.
    let t = tracker_with(|c| {
        c.network.http_max_connections = 4;
        c.network.http_max_connections_per_address = 2;
        c.network.http_max_connections_per_network = 100;
    });
    let addr = http_addr(&t, false);
    // Four holders from four addresses, each with a request begun and never finished: the cap.
    let mut held: Vec<TcpStream> = (1..=4)
        .map(|i| connect_from(format!("127.0.0.{i}").parse().unwrap(), addr))
        .collect();
    // Longer than shed_idle_after (1 s): until then a newcomer is refused, every holder busy.
    std::thread::sleep(Duration::from_millis(1500));
    // New clients still get in and are answered: the first in the place of the idlest holder,
    // the next in the place the first left.
    for i in 0..3 {
        let mut s = silent_from(format!("127.0.0.{}", 20 + i).parse().unwrap(), addr);
        s.write_all(b"GET /scrape HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let answer = refusal(s);
        assert!(answer.starts_with("HTTP/1.1 200"), "client {i}: {answer}");
    }
    let c = connections(addr);
    assert_eq!(c["shed_idle"], 1, "{c}");
    assert_eq!(c["refused_total_cap"], 0, "{c}");
    // The shed holder was closed (it reads the end of its stream); the others wait on.
    for s in &held {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let closed = held
        .iter_mut()
        .map(|s| s.read(&mut [0u8; 64]))
        .filter(|read| matches!(read, Ok(0)))
        .count();
    assert_eq!(closed, 1, "holders closed");
    let (_, _, metrics) = http_get(addr, "/metrics", &[]);
    assert!(
        String::from_utf8_lossy(&metrics).contains("edgetracker_http_connections_shed_total "),
        "counted in Prometheus form too"
    );
    t.shutdown();
}

#[test]
fn one_network_cannot_fill_the_connection_cap() {
    // Before: the per-client cap (an IPv4 address, an IPv6 /64) was the only one below the
    // total: 256 addresses of one network, or one IPv6 /56, filled 16,384 slots.
    let t = tracker_with(|c| {
        c.network.http_max_connections_per_address = 2;
        c.network.http_max_connections_per_network = 3;
        c.network.shed_idle_after = 0;
    });
    let addr = http_addr(&t, false);
    let _held: Vec<TcpStream> = (1..=3)
        .map(|i| connect_from(format!("127.0.0.{i}").parse().unwrap(), addr))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = refusal(connect_from("127.0.0.4".parse().unwrap(), addr));
    assert!(
        refused.ends_with("too many connections from your network, retry latere"),
        "{refused}"
    );
    // Another network is served (::1 is one of its own), and sees the refusal counted.
    let (status, _, stats) = http_get(http_addr(&t, true), "/stats?format=json", &[]);
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["http_connections"]["refused_per_network_cap"], 1);
    assert_eq!(stats["http_connections"]["open"], 4, "3 held and this one");
    t.shutdown();
}

fn failure_reason(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body).to_string();
    text.strip_prefix("d14:failure reason").map(|r| {
        r.split_once(':')
            .unwrap()
            .1
            .trim_end_matches('e')
            .to_string()
    })
}

fn announce_over_http(
    addr: SocketAddr,
    hash: u8,
    port: u16,
    left: u64,
    event: edgetracker::protocol::types::Event,
) -> Option<String> {
    let q = edgetracker::protocol::http::announce_query(&announce(
        common::hash(hash),
        port,
        left,
        event,
    ));
    failure_reason(&http_get(addr, &format!("/announce?{q}"), &[]).2)
}

#[test]
fn a_cap_full_of_completed_only_torrents_still_takes_torrents_with_peers() {
    // Before: one address filled max_torrents with `completed` announces to made-up hashes,
    // each torrent kept 30 days without peers (and saved); every new torrent from anyone was
    // refused, over HTTP and UDP, also after a restart. One client made 54,868 torrents a
    // second.
    use edgetracker::protocol::types::Event;
    let t = tracker_with(|c| {
        c.tracker.policy.max_torrents = 20;
        c.tracker.policy.new_torrents_burst = 22;
        c.tracker.policy.new_torrents_per_minute = 1;
        c.tracker.cleanup_interval = 1;
    });
    let (h4, h6) = (http_addr(&t, false), http_addr(&t, true));
    for hash in 1..=20 {
        assert_eq!(announce_over_http(h4, hash, 1, 0, Event::Completed), None);
        assert_eq!(announce_over_http(h4, hash, 1, 0, Event::Stopped), None);
    }
    // The address's budget of new torrents: 2 left, then refused.
    assert_eq!(
        announce_over_http(h4, 100, 1, 5, Event::Started).as_deref(),
        Some("tracker full: no room for another torrent, retry later"),
        "before a sweep has found the 20 without peers"
    );
    // Once a sweep has, a torrent with peers takes the place of the oldest, over HTTP from
    // another client and over UDP.
    wait_for(
        "room made for a torrent with peers",
        Duration::from_secs(5),
        || announce_over_http(h6, 101, 1, 5, Event::Started).is_none(),
    );
    let u = udp_client(udp_addr(&t, false));
    let connect = udp_exchange(&u, &edgetracker::protocol::udp::connect_request(1));
    let id: [u8; 8] = connect[8..16].try_into().unwrap();
    let a = announce(common::hash(102), 7, 5, Event::Started);
    let reply = udp_exchange(
        &u,
        &edgetracker::protocol::udp::announce_request(id, 9, &a, b""),
    );
    assert_eq!(&reply[..4], &[0, 0, 0, 1], "an announce reply: {reply:?}");
    // The address has spent its budget of new torrents now (20 + 2).
    assert_eq!(
        announce_over_http(h4, 103, 1, 5, Event::Started).as_deref(),
        Some("too many new torrents from your address, retry later")
    );
    let (_, _, stats) = http_get(h4, "/stats?format=json", &[]);
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["torrents"], 20);
    assert_eq!(stats["quiet_torrents_dropped"], 2);
    assert_eq!(stats["refused_at_cap"]["new_torrents_from_address"], 1);
    t.shutdown();
}

#[test]
fn a_peer_cycling_through_completed_is_counted_once() {
    // Before: a peer alternating a leeching announce and `completed` was counted each cycle
    // (50 cycles from one UDP peer: scrape `downloaded` = 50).
    use edgetracker::protocol::types::Event;
    let t = tracker();
    let u = udp_client(udp_addr(&t, false));
    let connect = udp_exchange(&u, &edgetracker::protocol::udp::connect_request(1));
    let id: [u8; 8] = connect[8..16].try_into().unwrap();
    for cycle in 0..10u32 {
        for (left, event) in [(5, Event::None), (0, Event::Completed)] {
            let a = announce(common::hash(9), 7, left, event);
            let reply = udp_exchange(
                &u,
                &edgetracker::protocol::udp::announce_request(id, cycle, &a, b""),
            );
            assert_eq!(&reply[..4], &[0, 0, 0, 1], "announce");
        }
    }
    let reply = udp_exchange(
        &u,
        &edgetracker::protocol::udp::scrape_request(id, 1, &[common::hash(9)]),
    );
    assert_eq!(&reply[..4], &[0, 0, 0, 2], "a scrape reply");
    let downloaded = u32::from_be_bytes(reply[12..16].try_into().unwrap());
    assert_eq!(downloaded, 1);
    t.shutdown();
}
