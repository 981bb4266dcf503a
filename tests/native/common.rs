//! Shared helpers for the native integration tests: start a tracker on loopback, speak to it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use edgetracker::protocol::types::{AnnounceRequest, Event, InfoHash, PeerId};
use edgetracker_native::config::Config;
use edgetracker_native::{Running, start};

/// A tracker on 127.0.0.1 and ::1, on a port of the kernel's choosing.
pub fn tracker() -> Running {
    tracker_with(|_| {})
}

pub fn tracker_with(tweak: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::default();
    config.network.listen = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    config.network.port = 0;
    // Tests that want a state file say so; the others must not leave one behind.
    config.state.file = None;
    tweak(&mut config);
    start(config).expect("tracker starts")
}

pub fn udp_addr(t: &Running, v6: bool) -> SocketAddr {
    *t.udp_addrs()
        .iter()
        .find(|a| a.is_ipv6() == v6)
        .expect("address of that family")
}

pub fn http_addr(t: &Running, v6: bool) -> SocketAddr {
    *t.http_addrs()
        .iter()
        .find(|a| a.is_ipv6() == v6)
        .expect("address of that family")
}

pub fn hash(b: u8) -> InfoHash {
    InfoHash([b; 20])
}

pub fn announce(info_hash: InfoHash, port: u16, left: u64, event: Event) -> AnnounceRequest {
    let mut peer_id = *b"-ET0001-000000000000";
    peer_id[14..].copy_from_slice(format!("{port:06}").as_bytes());
    AnnounceRequest {
        info_hash,
        peer_id: PeerId(peer_id),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: None,
        compact: true,
        no_peer_id: false,
        key: None,
        claimed_ip: None,
    }
}

/// A UDP client socket bound to loopback of the tracker's family.
pub fn udp_client(tracker: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if tracker.is_ipv6() {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let s = UdpSocket::bind(local).unwrap();
    s.connect(tracker).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `packet`, returns the reply.
pub fn udp_exchange(s: &UdpSocket, packet: &[u8]) -> Vec<u8> {
    s.send(packet).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("a reply");
    buf[..n].to_vec()
}

/// Sends `packet` and expects silence for `wait`.
pub fn udp_no_reply(s: &UdpSocket, packet: &[u8], wait: Duration) -> bool {
    s.send(packet).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let silent = s.recv(&mut buf).is_err();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    silent
}

/// One HTTP/1.1 exchange on a fresh connection: (status, headers, body).
pub fn http_get(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: tracker\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    split_response(&raw)
}

pub fn split_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, raw[end + 4..].to_vec())
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
