//! The native tracker over UDP (BEP 15), through real sockets on 127.0.0.1 and ::1.

mod common;

use std::time::Duration;

use common::*;
use edgetracker::protocol::types::Event;
use edgetracker::protocol::udp::{announce_request, connect_request, scrape_request};

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Connects and returns the connection id.
fn connect(s: &std::net::UdpSocket) -> [u8; 8] {
    let reply = udp_exchange(s, &connect_request(0xabcd));
    assert_eq!(
        reply.len(),
        16,
        "a connect reply is exactly as long as the request"
    );
    assert_eq!((be32(&reply, 0), be32(&reply, 4)), (0, 0xabcd));
    reply[8..16].try_into().unwrap()
}

struct AnnounceReply {
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: Vec<Vec<u8>>,
}

fn udp_announce(
    s: &std::net::UdpSocket,
    id: [u8; 8],
    a: &edgetracker::protocol::types::AnnounceRequest,
    url_data: &[u8],
) -> AnnounceReply {
    let reply = udp_exchange(s, &announce_request(id, 77, a, url_data));
    assert_eq!(be32(&reply, 0), 1, "action announce, got {reply:?}");
    assert_eq!(be32(&reply, 4), 77);
    let per = if s.peer_addr().unwrap().is_ipv6() {
        18
    } else {
        6
    };
    assert_eq!(
        (reply.len() - 20) % per,
        0,
        "whole peers of the packet's family"
    );
    AnnounceReply {
        interval: be32(&reply, 8),
        leechers: be32(&reply, 12),
        seeders: be32(&reply, 16),
        peers: reply[20..].chunks(per).map(<[u8]>::to_vec).collect(),
    }
}

fn compact(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut v = ip.to_vec();
    v.extend_from_slice(&port.to_be_bytes());
    v
}

#[test]
fn two_peers_find_each_other_and_scrape_counts() {
    let t = tracker();
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    let h = hash(1);
    let first = udp_announce(&s, id, &announce(h, 6881, 0, Event::Started), b"");
    assert_eq!(
        (first.seeders, first.leechers, first.peers.len()),
        (1, 0, 0)
    );
    assert_eq!(first.interval, 1800);
    let second = udp_announce(&s, id, &announce(h, 6882, 100, Event::Started), b"");
    assert_eq!((second.seeders, second.leechers), (1, 1));
    assert_eq!(second.peers, vec![compact([127, 0, 0, 1], 6881)]);
    let again = udp_announce(&s, id, &announce(h, 6881, 0, Event::None), b"");
    assert_eq!(
        again.peers,
        vec![compact([127, 0, 0, 1], 6882)],
        "the seeder gets the leecher"
    );

    // Completed: the leecher finishes; scrape reports seeders, completed, leechers.
    udp_announce(&s, id, &announce(h, 6882, 0, Event::Completed), b"");
    let reply = udp_exchange(&s, &scrape_request(id, 5, &[h, hash(99)]));
    assert_eq!((be32(&reply, 0), be32(&reply, 4)), (2, 5));
    assert_eq!(
        &reply[8..],
        &[
            0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    t.shutdown();
}

#[test]
fn stopped_removes_the_peer() {
    let t = tracker();
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    let h = hash(2);
    udp_announce(&s, id, &announce(h, 7001, 5, Event::Started), b"");
    udp_announce(&s, id, &announce(h, 7002, 5, Event::Started), b"");
    let stopped = udp_announce(&s, id, &announce(h, 7001, 5, Event::Stopped), b"");
    assert!(stopped.peers.is_empty());
    let r = udp_announce(&s, id, &announce(h, 7002, 5, Event::None), b"");
    assert_eq!((r.leechers, r.peers.len()), (1, 0));
    t.shutdown();
}

#[test]
fn ipv4_and_ipv6_swarms_are_apart() {
    let t = tracker();
    let s4 = udp_client(udp_addr(&t, false));
    let s6 = udp_client(udp_addr(&t, true));
    let (id4, id6) = (connect(&s4), connect(&s6));
    let h = hash(3);
    udp_announce(&s4, id4, &announce(h, 4001, 0, Event::Started), b"");
    udp_announce(&s6, id6, &announce(h, 6001, 0, Event::Started), b"");
    let r6 = udp_announce(&s6, id6, &announce(h, 6002, 9, Event::Started), b"");
    let mut expected = [0u8; 18];
    expected[15] = 1; // ::1
    expected[16..].copy_from_slice(&6001u16.to_be_bytes());
    assert_eq!(
        r6.peers,
        vec![expected.to_vec()],
        "an IPv6 client gets 18-byte IPv6 peers only"
    );
    assert_eq!((r6.seeders, r6.leechers), (1, 1));
    let r4 = udp_announce(&s4, id4, &announce(h, 4002, 9, Event::Started), b"");
    assert_eq!(r4.peers, vec![compact([127, 0, 0, 1], 4001)]);
    // A connection id issued to ::1 is not valid from 127.0.0.1.
    let reply = udp_exchange(
        &s4,
        &announce_request(id6, 1, &announce(h, 4003, 9, Event::None), b""),
    );
    assert_eq!(be32(&reply, 0), 3);
    t.shutdown();
}

#[test]
fn bad_connection_ids_are_refused_without_amplification() {
    let t = tracker();
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    let mut forged = id;
    forged[7] ^= 0x55;
    let packet = announce_request(forged, 9, &announce(hash(4), 1, 0, Event::Started), b"");
    let reply = udp_exchange(&s, &packet);
    assert_eq!((be32(&reply, 0), be32(&reply, 4)), (3, 9));
    assert_eq!(&reply[8..], b"invalid or expired connection id");
    assert!(reply.len() <= packet.len());
    let reply = udp_exchange(&s, &scrape_request(forged, 10, &[hash(4)]));
    assert_eq!(be32(&reply, 0), 3);
    assert!(
        reply.len() <= 36,
        "error to a 36-byte scrape is cut to 36 bytes, got {}",
        reply.len()
    );
    // The swarm did not change.
    let r = udp_exchange(&s, &scrape_request(id, 11, &[hash(4)]));
    assert_eq!(&r[8..], &[0; 12]);
    t.shutdown();
}

#[test]
fn malformed_packets_get_errors_or_silence_and_the_server_lives_on() {
    let t = tracker();
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    let quiet = Duration::from_millis(300);
    // Too short to carry a transaction id: dropped.
    assert!(udp_no_reply(&s, &[1, 2, 3], quiet));
    assert!(udp_no_reply(&s, &[], quiet));
    // A connect without the magic protocol id: dropped.
    let mut bad = connect_request(1);
    bad[0] = 0xff;
    assert!(udp_no_reply(&s, &bad, quiet));
    // Oversized: dropped.
    assert!(udp_no_reply(&s, &vec![0u8; 3000], quiet));
    // Unknown action: an error no longer than the request.
    let mut unknown = connect_request(0x42);
    unknown[11] = 7;
    let reply = udp_exchange(&s, &unknown);
    assert_eq!((be32(&reply, 0), be32(&reply, 4)), (3, 0x42));
    assert_eq!(reply.len(), 16);
    assert_eq!(&reply[8..], b"unknown ");
    // Zero port, truncated announce, ragged scrape.
    let mut zero = announce_request(id, 3, &announce(hash(5), 1, 0, Event::None), b"");
    zero[96..98].copy_from_slice(&[0, 0]);
    let reply = udp_exchange(&s, &zero);
    assert_eq!(&reply[8..], b"port must not be 0");
    let full = announce_request(id, 3, &announce(hash(5), 1, 0, Event::None), b"");
    assert_eq!(be32(&udp_exchange(&s, &full[..60]), 0), 3);
    let ragged = scrape_request(id, 3, &[hash(5)]);
    assert_eq!(be32(&udp_exchange(&s, &ragged[..30]), 0), 3);
    // Still serving.
    let r = udp_announce(&s, id, &announce(hash(5), 1, 0, Event::Started), b"");
    assert_eq!(r.seeders, 1);
    let stats = t.shared.stats.json(&t.shared.tracker.store.totals(), 0);
    assert!(
        stats["requests"]["udp"]["ipv4"]["invalid"]["requests"]
            .as_u64()
            .unwrap()
            >= 5
    );
    t.shutdown();
}

#[test]
fn bep41_url_data_is_accepted() {
    let t = tracker();
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    let r = udp_announce(
        &s,
        id,
        &announce(hash(6), 1234, 0, Event::Started),
        b"/announce?passkey=abc",
    );
    assert_eq!(r.seeders, 1);
    t.shutdown();
}

#[test]
fn replies_fit_one_datagram() {
    // 300 peers from one test address: past the per-address cap, raised here.
    let t = tracker_with(|c| {
        c.tracker.policy.numwant_max = 1000;
        c.tracker.policy.max_peers_per_address = 1000;
    });
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    let h = hash(7);
    for port in 1..=300u16 {
        udp_exchange(
            &s,
            &announce_request(id, 1, &announce(h, port, 0, Event::Started), b""),
        );
    }
    let mut a = announce(h, 9999, 10, Event::Started);
    a.numwant = Some(1000);
    let r = udp_announce(&s, id, &a, b"");
    assert_eq!(r.peers.len(), 242, "1472-byte payload: 20 + 242 × 6");
    a.numwant = Some(5);
    assert_eq!(
        udp_announce(&s, id, &a, b"").peers.len(),
        5,
        "numwant honoured"
    );
    a.numwant = None;
    assert_eq!(
        udp_announce(&s, id, &a, b"").peers.len(),
        50,
        "default numwant"
    );
    t.shutdown();
}

#[test]
fn peers_expire_after_the_timeout() {
    let t = tracker_with(|c| {
        c.tracker.policy.announce_interval = 1;
        c.tracker.policy.min_interval = 1;
        c.tracker.policy.peer_timeout = 1;
        c.tracker.cleanup_interval = 1;
    });
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    udp_announce(&s, id, &announce(hash(8), 1, 0, Event::Started), b"");
    let scrape = || udp_exchange(&s, &scrape_request(id, 1, &[hash(8)]))[8..].to_vec();
    assert_eq!(scrape(), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Expiry is at least 1 s after the announce and runs every second: give it up to 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while scrape() != [0; 12] {
        assert!(std::time::Instant::now() < deadline, "peer never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    t.shutdown();
}

#[test]
fn udp_announces_beyond_the_rate_limit_get_an_error() {
    let t = tracker_with(|c| {
        c.tracker.rate_limit_per_minute = 1;
        c.tracker.rate_limit_burst = 1;
    });
    let s = udp_client(udp_addr(&t, false));
    let id = connect(&s);
    udp_announce(&s, id, &announce(hash(9), 1, 0, Event::Started), b"");
    let reply = udp_exchange(
        &s,
        &announce_request(id, 5, &announce(hash(9), 1, 0, Event::None), b""),
    );
    assert_eq!((be32(&reply, 0), be32(&reply, 4)), (3, 5));
    assert!(reply[8..].starts_with(b"rate limited"));
    // Connects are not announces: still answered.
    connect(&s);
    t.shutdown();
}

#[test]
fn several_udp_threads_each_read_a_socket_of_their_own_and_share_the_swarms() {
    let t = tracker_with(|c| {
        c.network.udp_threads = 3;
        c.tracker.policy.max_peers_per_address = 100;
    });
    for v6 in [false, true] {
        let addr = udp_addr(&t, v6);
        // Clients on many ports, which the kernel spreads over the threads' sockets; each
        // thread sees the same swarm.
        let clients: Vec<_> = (0..24).map(|_| udp_client(addr)).collect();
        let h = hash(40 + u8::from(v6));
        for (i, s) in clients.iter().enumerate() {
            let id = connect(s);
            let port = 1000 + i as u16;
            let reply = udp_announce(s, id, &announce(h, port, 1, Event::Started), b"");
            assert_eq!(
                reply.leechers as usize,
                i + 1,
                "client {i}: one swarm for all threads"
            );
        }
        // The threads' sockets are bound with SO_REUSEPORT, which another socket of the same
        // user can join (and a socket without it cannot): one more is let in.
        #[cfg(target_os = "linux")]
        {
            use socket2::{Domain, Protocol, Socket, Type};
            let joiner =
                Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).unwrap();
            if v6 {
                joiner.set_only_v6(true).unwrap();
            }
            joiner.set_reuse_port(true).unwrap();
            assert!(
                joiner.bind(&addr.into()).is_ok(),
                "sockets bound with SO_REUSEPORT"
            );
            drop(joiner);
            let plain = std::net::UdpSocket::bind(addr);
            assert!(plain.is_err(), "the port is still the tracker's");
        }
    }
    t.shutdown();
}

#[test]
#[cfg(target_os = "linux")]
fn udp_threads_do_not_join_another_process_sockets_on_the_port() {
    // Before: the threads' SO_REUSEPORT sockets joined any same-user SO_REUSEPORT socket already
    // on the port, and the two processes silently split the datagrams (only a TCP bind on the
    // same port would have noticed, and not with `http = false`).
    use socket2::{Domain, Protocol, Socket, Type};
    let other = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    other.set_reuse_port(true).unwrap();
    other
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let taken = other.local_addr().unwrap().as_socket().unwrap().port();
    let mut config = edgetracker_native::config::Config::default();
    config.network.listen = vec!["127.0.0.1".parse().unwrap()];
    config.network.port = taken;
    config.network.http = false;
    config.network.udp_threads = 2;
    config.state.file = None;
    match edgetracker_native::start(config) {
        Ok(t) => {
            t.shutdown();
            panic!("the tracker started on a port another process holds");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}"),
    }
}

/// `/stats`' `udp_threads`.
#[cfg(target_os = "linux")]
fn udp_thread_stats(t: &edgetracker_native::Running) -> serde_json::Value {
    let (status, _, body) = http_get(http_addr(t, false), "/stats?format=json", &[]);
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
    stats["udp_threads"].clone()
}

/// Datagrams each UDP thread on `addr` has received, by thread, from `/stats`.
#[cfg(target_os = "linux")]
fn datagrams_by_thread(t: &edgetracker_native::Running, addr: std::net::SocketAddr) -> Vec<u64> {
    let stats = udp_thread_stats(t);
    let mut threads: Vec<_> = stats["threads"]
        .as_array()
        .expect("udp_threads")
        .iter()
        .filter(|t| t["address"] == addr.to_string())
        .map(|t| {
            (
                t["thread"].as_u64().unwrap(),
                t["datagrams"].as_u64().unwrap(),
            )
        })
        .collect();
    threads.sort();
    threads.into_iter().map(|(_, n)| n).collect()
}

/// An info-hash of steering group `group` of 2 (its first four bytes, big-endian, are odd or even).
#[cfg(target_os = "linux")]
fn hash_of_group(group: u8, fill: u8) -> edgetracker::InfoHash {
    let mut h = [fill; 20];
    h[3] = (fill & !1) | group;
    edgetracker::InfoHash(h)
}

/// Announces and scrapes from 16 clients (16 source ports) for one torrent, after each has
/// connected; returns the datagrams each thread received for them.
#[cfg(target_os = "linux")]
fn spread_of_one_torrent(
    t: &edgetracker_native::Running,
    v6: bool,
    h: edgetracker::InfoHash,
) -> Vec<u64> {
    let addr = udp_addr(t, v6);
    let clients: Vec<_> = (0..16).map(|_| udp_client(addr)).collect();
    let ids: Vec<_> = clients.iter().map(connect).collect();
    let before = datagrams_by_thread(t, addr);
    for (i, (s, id)) in clients.iter().zip(&ids).enumerate() {
        let reply = udp_announce(
            s,
            *id,
            &announce(h, 2000 + i as u16, 1, Event::Started),
            b"",
        );
        assert_eq!(reply.leechers as usize, i + 1, "one swarm");
        let reply = udp_exchange(s, &scrape_request(*id, 6, &[h]));
        assert_eq!(be32(&reply, 0), 2, "a scrape reply");
    }
    let after = datagrams_by_thread(t, addr);
    after.iter().zip(&before).map(|(a, b)| a - b).collect()
}

#[test]
#[cfg(target_os = "linux")]
fn udp_threads_steered_by_torrent_serve_each_torrent_on_one_thread() {
    // Before: the kernel spread datagrams by the client's address and port, so every thread
    // served every torrent and the swarms' memory moved between cores.
    let t = tracker_with(|c| {
        c.network.udp_threads = 2;
        c.tracker.policy.max_peers_per_address = 100;
    });
    assert_eq!(udp_thread_stats(&t)["steering"], "torrent");
    for v6 in [false, true] {
        for group in [0u8, 1] {
            let spread = spread_of_one_torrent(&t, v6, hash_of_group(group, 60 + u8::from(v6)));
            let mut expected = vec![0; 2];
            expected[usize::from(group)] = 32;
            assert_eq!(
                spread, expected,
                "v6 {v6}: all of group {group}'s on thread {group}"
            );
        }
    }
    t.shutdown();
}

#[test]
#[cfg(target_os = "linux")]
fn udp_threads_steered_by_client_share_each_torrent() {
    let t = tracker_with(|c| {
        c.network.udp_threads = 2;
        c.network.udp_steering = edgetracker_native::config::UdpSteering::Client;
        c.tracker.policy.max_peers_per_address = 100;
    });
    assert_eq!(udp_thread_stats(&t)["steering"], "client");
    // 16 source ports all hashed to one thread: one chance in 32,768.
    let spread = spread_of_one_torrent(&t, false, hash_of_group(0, 70));
    assert!(
        spread.iter().all(|&n| n > 0),
        "spread by client: {spread:?}"
    );
    assert_eq!(spread.iter().sum::<u64>(), 32);
    t.shutdown();
}
