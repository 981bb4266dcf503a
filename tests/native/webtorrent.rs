//! WebTorrent over real WebSockets on 127.0.0.1 and ::1: browsers' messages as the npm
//! `bittorrent-tracker` client sends them, through the native binary's HTTP port.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use edgetracker::access::ListMode;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<TcpStream>;

fn bin(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

const HASH: [u8; 20] = [0xab; 20];

fn open(addr: SocketAddr, path: &str) -> Result<Socket, String> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let url = format!("ws://{addr}{path}");
    tungstenite::client(url.as_str(), stream)
        .map(|(socket, _)| socket)
        .map_err(|e| e.to_string())
}

fn send(s: &mut Socket, m: &Value) {
    s.send(Message::text(m.to_string())).unwrap();
}

/// The next text message (bounded by the socket's 5 s read timeout).
fn recv(s: &mut Socket) -> Value {
    loop {
        match s.read().expect("a message within 5 s") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn announce(peer: u8, left: u64, offers: usize) -> Value {
    json!({
        "action": "announce",
        "info_hash": bin(&HASH),
        "peer_id": bin(&[peer; 20]),
        "uploaded": 0,
        "downloaded": 0,
        "left": left,
        "event": "started",
        "numwant": offers,
        "offers": (0..offers).map(|i| json!({
            "offer_id": format!("{peer:02x}{i:038x}"),
            "offer": {"type": "offer", "sdp": format!("v=0\r\no=- {peer} {i} IN IP4 127.0.0.1\r\n")},
        })).collect::<Vec<_>>(),
    })
}

fn scrape(s: &mut Socket) -> Value {
    send(s, &json!({"action": "scrape", "info_hash": bin(&HASH)}));
    recv(s)["files"][bin(&HASH)].clone()
}

/// Polls `check` until it holds (closing a socket is noticed by the tracker asynchronously).
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn stats(t: &edgetracker_native::Running) -> Value {
    let (_, _, body) = http_get(http_addr(t, false), "/stats?format=json", &[]);
    serde_json::from_slice::<Value>(&body).unwrap()["webtorrent"].clone()
}

#[test]
fn two_browsers_exchange_an_offer_and_an_answer_over_ipv4_and_ipv6() {
    let t = tracker();
    let mut a = open(http_addr(&t, false), "/announce").unwrap();
    let mut b = open(http_addr(&t, true), "/announce").unwrap();
    send(&mut a, &announce(1, 1000, 0));
    assert_eq!(
        recv(&mut a),
        json!({"action": "announce", "interval": 120, "info_hash": bin(&HASH), "complete": 0, "incomplete": 1})
    );
    send(&mut b, &announce(2, 0, 3));
    let reply = recv(&mut b);
    assert_eq!(
        (reply["complete"].clone(), reply["incomplete"].clone()),
        (json!(1), json!(1))
    );
    // A, the only other peer, gets exactly one of B's offers.
    let offer = recv(&mut a);
    assert_eq!(offer["peer_id"], json!(bin(&[2; 20])));
    assert_eq!(offer["info_hash"], json!(bin(&HASH)));
    assert_eq!(offer["offer"]["type"], json!("offer"));
    assert!(
        offer["offer"]["sdp"]
            .as_str()
            .unwrap()
            .starts_with("v=0\r\no=- 2 ")
    );
    send(
        &mut a,
        &json!({
            "action": "announce", "info_hash": bin(&HASH), "peer_id": bin(&[1; 20]),
            "to_peer_id": offer["peer_id"], "offer_id": offer["offer_id"],
            "answer": {"type": "answer", "sdp": "v=0\r\nanswer from 1\r\n"},
        }),
    );
    // The offer id A saw carries the tracker's tag in front of B's; B gets its own back.
    let original = format!("02{:038x}", 0);
    let tagged = offer["offer_id"].as_str().unwrap();
    assert_eq!(tagged.len(), 16 + original.len());
    assert!(tagged.ends_with(&original), "{tagged}");
    let answer = recv(&mut b);
    assert_eq!(
        answer,
        json!({"action": "announce", "info_hash": bin(&HASH), "peer_id": bin(&[1; 20]),
               "offer_id": original, "answer": {"type": "answer", "sdp": "v=0\r\nanswer from 1\r\n"}})
    );
    let s = stats(&t);
    assert_eq!(
        (
            &s["connections"],
            &s["offers_forwarded"],
            &s["answers_forwarded"],
            &s["peers"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(2)),
        "{s}"
    );
    t.shutdown();
}

#[test]
fn stopped_and_a_closed_socket_leave_the_swarm() {
    let t = tracker();
    let addr = http_addr(&t, false);
    let mut a = open(addr, "/announce").unwrap();
    let mut b = open(addr, "/announce").unwrap();
    let mut watcher = open(addr, "/announce").unwrap();
    send(&mut a, &announce(1, 0, 0));
    recv(&mut a);
    send(&mut b, &announce(2, 5, 0));
    recv(&mut b);
    assert_eq!(
        scrape(&mut watcher),
        json!({"complete": 1, "incomplete": 1, "downloaded": 0})
    );
    let mut stop = announce(2, 5, 0);
    stop["event"] = json!("stopped");
    send(&mut b, &stop);
    recv(&mut b);
    assert_eq!(scrape(&mut watcher)["incomplete"], json!(0));
    a.close(None).unwrap();
    drop(a);
    assert!(
        eventually(|| scrape(&mut watcher)["complete"] == json!(0)),
        "a closed socket's peer leaves"
    );
    assert!(eventually(|| stats(&t)["connections"] == json!(2)));
    t.shutdown();
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgetracker-ws-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn access_rules_apply_to_browsers() {
    let d = dir("deny");
    let list = d.join("deny.txt");
    std::fs::write(
        &list,
        HASH.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n",
    )
    .unwrap();
    let t = tracker_with(|c| {
        c.access.list_mode = ListMode::Deny;
        c.access.list_file = Some(list.clone());
    });
    let mut a = open(http_addr(&t, false), "/announce").unwrap();
    send(&mut a, &announce(1, 0, 0));
    let reply = recv(&mut a);
    assert!(
        reply["failure reason"]
            .as_str()
            .unwrap()
            .contains("deny list"),
        "{reply}"
    );
    assert_eq!(stats(&t)["peers"], json!(0));
    t.shutdown();

    let keys = d.join("passkeys.txt");
    std::fs::write(&keys, "sesame-0123456789\n").unwrap();
    let t = tracker_with(|c| c.access.passkeys_file = Some(keys.clone()));
    let addr = http_addr(&t, true);
    let mut wrong = open(addr, "/guess-0123456789/announce").unwrap();
    send(&mut wrong, &announce(1, 0, 0));
    assert!(recv(&mut wrong)["failure reason"].is_string());
    let mut member = open(addr, "/sesame-0123456789/announce").unwrap();
    send(&mut member, &announce(1, 0, 0));
    assert_eq!(recv(&mut member)["complete"], json!(1));
    t.shutdown();
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn bad_frames_get_a_reason_or_a_close_and_the_tracker_serves_on() {
    let t = tracker();
    let addr = http_addr(&t, false);
    let mut s = open(addr, "/announce").unwrap();
    for text in [
        "not json",
        "{}",
        r#"{"action":"announce","info_hash":"short"}"#,
    ] {
        s.send(Message::text(text)).unwrap();
        assert!(recv(&mut s)["failure reason"].is_string(), "{text}");
    }
    s.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert!(recv(&mut s)["failure reason"].is_string());
    let too_many = announce(1, 0, 11);
    send(&mut s, &too_many);
    assert_eq!(recv(&mut s)["failure reason"], json!("too many offers"));
    // A frame past 64 KiB closes the socket.
    let _ = s.send(Message::text("x".repeat(70 * 1024)));
    let closed = loop {
        match s.read() {
            Ok(Message::Close(_)) | Err(_) => break true,
            Ok(_) => continue,
        }
    };
    assert!(closed);
    // Others are served as before, and plain HTTP announces still work on the same path.
    let mut other = open(addr, "/announce").unwrap();
    send(&mut other, &announce(2, 0, 0));
    assert_eq!(recv(&mut other)["complete"], json!(1));
    let (status, _, body) = http_get(
        addr,
        "/announce?info_hash=%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab&peer_id=-qB0000-000000000000&port=6881&uploaded=0&downloaded=0&left=0&compact=1",
        &[],
    );
    assert_eq!(status, 200);
    assert!(
        body.starts_with(b"d8:complete"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    t.shutdown();
}

#[test]
fn a_silent_socket_is_closed_and_its_peer_leaves() {
    let t = tracker_with(|c| {
        c.webtorrent.announce_interval = 1;
        c.webtorrent.peer_timeout = 60;
        c.webtorrent.idle_timeout = 2;
    });
    let mut a = open(http_addr(&t, false), "/announce").unwrap();
    send(&mut a, &announce(1, 0, 0));
    recv(&mut a);
    assert!(eventually(
        || stats(&t)["connections_closed_idle"] == json!(1)
    ));
    assert_eq!(stats(&t)["peers"], json!(0));
    t.shutdown();
}

#[test]
fn disabled_webtorrent_refuses_the_upgrade() {
    let t = tracker_with(|c| c.webtorrent.enabled = false);
    assert!(open(http_addr(&t, false), "/announce").is_err());
    t.shutdown();
}

/// A browser that stops reading while others' offers keep coming: its queue is bounded (the
/// excess dropped and counted), and once a write to it stalls for 10 s its socket is closed and
/// its peer leaves, instead of the tracker holding the socket, the task and the queue forever.
#[test]
fn a_socket_that_never_reads_is_bounded_then_closed() {
    // (Its offers unbudgeted: the budget has a test of its own.)
    let t = tracker_with(|c| c.webtorrent.offers_per_minute = 0);
    let addr = http_addr(&t, false);
    let mut sleeper = open(addr, "/announce").unwrap();
    send(&mut sleeper, &announce(1, 1000, 0));
    recv(&mut sleeper);
    let mut talker = open(addr, "/announce").unwrap();
    // Each announce hands one 60 KB offer to the sleeper, who never reads again.
    let big = "a=candidate ".repeat(5000);
    let until = Instant::now() + Duration::from_secs(40);
    let mut closed = false;
    let mut sent = 0;
    while Instant::now() < until {
        let mut m = announce(2, 0, 1);
        m["offers"][0]["offer"]["sdp"] = json!(big);
        send(&mut talker, &m);
        recv(&mut talker);
        sent += 1;
        if sent % 20 == 0 {
            let s = stats(&t);
            if s["peers"] == json!(1) {
                assert!(s["messages_dropped"].as_u64().unwrap() > 0, "{s}");
                closed = true;
                break;
            }
        }
        if sent > 400 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert!(
        closed,
        "the sleeper's socket was closed after {sent} offers"
    );
    t.shutdown();
}

#[test]
fn a_full_scrape_over_a_websocket_lists_every_swarm_and_shares_the_http_interval() {
    let t = tracker_with(|c| c.tracker.full_scrape = true);
    let mut a = open(http_addr(&t, false), "/announce").unwrap();
    send(&mut a, &announce(1, 1000, 0));
    recv(&mut a);
    send(&mut a, &json!({"action": "scrape"}));
    assert_eq!(
        recv(&mut a),
        json!({"action": "scrape", "files": {
            bin(&HASH): {"complete": 0, "incomplete": 1, "downloaded": 0},
        }})
    );
    // One full scrape per client per interval, whichever way it asks.
    send(&mut a, &json!({"action": "scrape"}));
    let again = recv(&mut a);
    assert!(
        again["failure reason"]
            .as_str()
            .unwrap()
            .starts_with("full scrape rate limited"),
        "{again}"
    );
    let (_, _, body) = http_get(http_addr(&t, false), "/scrape", &[]);
    assert!(
        String::from_utf8_lossy(&body).contains("full scrape rate limited"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    t.shutdown();
}

#[test]
fn one_socket_cannot_flood_its_swarms_with_offers() {
    // Before: with the rate limit off (the default) nothing paced a socket: one socket had
    // 868,000 offers forwarded to 20 reading peers in 10 s, 4.03 bytes out per byte in.
    let t = tracker();
    let addr = http_addr(&t, false);
    let _victims: Vec<Socket> = (1..=10)
        .map(|n| {
            let mut v = open(addr, "/announce").unwrap();
            send(&mut v, &announce(n, 1000, 0));
            recv(&mut v);
            v
        })
        .collect();
    let mut flooder = open(addr, "/announce").unwrap();
    for _ in 0..100 {
        send(&mut flooder, &announce(99, 1000, 10));
        recv(&mut flooder);
    }
    // 1,000 offers sent: the budget forwards its burst (640) and what a minute's rate refills
    // in the seconds the test takes, no more.
    let s = stats(&t);
    let forwarded = s["offers_forwarded"].as_u64().unwrap();
    let over = s["offers_over_budget"].as_u64().unwrap();
    assert_eq!(forwarded + over, 1000, "{s}");
    assert!((640..700).contains(&forwarded), "{s}");
    t.shutdown();
}

#[test]
fn one_address_holds_at_most_max_peers_per_address_in_a_webtorrent_swarm() {
    // Before: WebTorrent ignored max_peers_per_address (4 peer ids per swarm per socket, 64
    // sockets per address): one address put 256 peers in one swarm.
    let t = tracker_with(|c| c.tracker.policy.max_peers_per_address = 3);
    let mut sockets: Vec<Socket> = (0..2)
        .map(|_| open(http_addr(&t, false), "/announce").unwrap())
        .collect();
    let mut refused = Vec::new();
    for n in 1..=4u8 {
        let s = &mut sockets[usize::from(n % 2)];
        send(s, &announce(n, 1000, 0));
        let reply = recv(s);
        if let Some(reason) = reply["failure reason"].as_str() {
            refused.push((n, reason.to_string()));
        }
    }
    assert_eq!(
        refused,
        [(
            4,
            "too many peers from your address in this torrent".to_string()
        )]
    );
    // Another address still joins, and sees the three.
    let mut other = open(http_addr(&t, true), "/announce").unwrap();
    send(&mut other, &announce(5, 1000, 0));
    assert_eq!(recv(&mut other)["incomplete"], json!(4));
    t.shutdown();
}

#[test]
fn websockets_have_connection_caps_of_their_own() {
    // Before: WebSockets counted under the HTTP connection cap: 128 sockets from 2 addresses
    // (cap lowered to match) got every announce a 503 for as long as they stayed open.
    let t = tracker_with(|c| {
        c.network.http_max_connections = 2;
        c.webtorrent.max_connections = 2;
    });
    let addr = http_addr(&t, false);
    let mut first = open(addr, "/announce").unwrap();
    let mut second = open(addr, "/announce").unwrap();
    send(&mut second, &announce(2, 1000, 0));
    recv(&mut second);
    // Two sockets open, and the HTTP connections are all free for announces.
    for _ in 0..3 {
        assert_eq!(http_get(addr, "/scrape", &[]).0, 200);
    }
    // A third socket: the one silent longest (the first, which never sent a message) makes
    // room, once it has been silent for shed_idle_after (1 s).
    std::thread::sleep(Duration::from_millis(1200));
    send(&mut second, &announce(2, 1000, 0));
    recv(&mut second);
    let mut third = open(addr, "/announce").expect("room made");
    send(&mut third, &announce(3, 1000, 0));
    assert_eq!(recv(&mut third)["incomplete"], json!(2));
    assert!(
        eventually(|| matches!(first.read(), Err(_) | Ok(Message::Close(_)))),
        "the idlest socket was closed"
    );
    let (_, _, body) = http_get(addr, "/stats?format=json", &[]);
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s["websocket_connections"]["shed_idle"], 1, "{s}");
    assert_eq!(s["websocket_connections"]["open"], 2, "{s}");
    t.shutdown();
}

#[test]
fn a_full_websocket_pool_refuses_the_upgrade_with_a_reason() {
    let t = tracker_with(|c| {
        c.webtorrent.max_connections = 1;
        c.network.shed_idle_after = 0;
    });
    let addr = http_addr(&t, false);
    let _held = open(addr, "/announce").unwrap();
    let refused = open(addr, "/announce").expect_err("no room");
    assert!(refused.contains("503"), "{refused}");
    t.shutdown();
}

#[test]
fn all_sockets_queues_together_stay_within_max_queued_bytes() {
    // Before: each socket's queue was bounded (256 KiB), all of them together were not: 16,384
    // sockets that never read could hold 4 GiB.
    let t = tracker_with(|c| {
        c.webtorrent.max_queued_bytes = 100_000;
        c.webtorrent.offers_per_minute = 0;
    });
    let addr = http_addr(&t, false);
    let mut sleepers: Vec<Socket> = (1..=3)
        .map(|n| {
            let mut s = open(addr, "/announce").unwrap();
            send(&mut s, &announce(n, 1000, 0));
            recv(&mut s);
            s
        })
        .collect();
    let mut talker = open(addr, "/announce").unwrap();
    // Three offers of 18 KB in one message (a message is at most 64 KiB).
    let big = "a=candidate ".repeat(1500);
    // Until the kernel's socket buffers are full and messages wait in the tracker's queues,
    // and then some (bounded: 400 rounds, about 20 MB).
    let mut most = 0;
    for round in 0..400 {
        let mut m = announce(9, 0, 3);
        for i in 0..3 {
            m["offers"][i]["offer"]["sdp"] = json!(big);
        }
        send(&mut talker, &m);
        recv(&mut talker);
        if round % 10 == 0 {
            let s = stats(&t);
            most = most.max(s["queued_bytes"].as_u64().unwrap());
            if s["messages_dropped"].as_u64() > Some(30) {
                break;
            }
        }
    }
    let s = stats(&t);
    assert!(most <= 100_000, "{most} bytes queued at most");
    assert!(s["messages_dropped"].as_u64().unwrap() > 0, "{s}");
    // Closed sockets give their queued bytes back.
    for s in &mut sleepers {
        let _ = s.close(None);
    }
    drop(sleepers);
    assert!(
        eventually(|| stats(&t)["queued_bytes"] == 0),
        "{}",
        stats(&t)
    );
    t.shutdown();
}
