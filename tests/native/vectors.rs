//! The request → reply vectors of `tests/vectors/*.vec` replayed through the native binary's real
//! sockets: HTTP on 127.0.0.1 and UDP on 127.0.0.x / ::1, one fresh tracker per file, the same
//! bytes back as from the core (`tests/vectors.rs`).
//!
//! What real sockets change, and how each is handled (nothing else is relaxed):
//! - HTTP client addresses come from `X-Forwarded-For` (the tracker trusts it here), so every
//!   vector's address is used as written.
//! - UDP client addresses are the sockets': each IPv4 address of a file is mapped to its own
//!   127.0.0.x, the IPv6 one to ::1, and peers in the expected replies are mapped alike.
//! - Connection ids are keyed per process and stamped with the real clock: a connect reply is
//!   compared but for its 8 id bytes, and later `{cid}`s are the id the tracker really gave.
//! - An exchange whose vector time lies past the id's validity (it tests expiry) would need the
//!   clock that far ahead: it is skipped, and the test says which.

mod common;

#[path = "../vectors/format.rs"]
mod format;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use format::{Exchange, Kind, escape, exchanges, hex};

const FILES: &[(&str, &str)] = &[
    ("http.vec", include_str!("../vectors/http.vec")),
    ("udp.vec", include_str!("../vectors/udp.vec")),
];

/// What the core's vectors use (tests/vectors.rs): the default policy, ids valid 120 s.
const ID_VALIDITY: u32 = 120;

fn replay_http(file: &str, t: &edgetracker_native::Running, x: &Exchange) {
    let (status, _, body) = http_get(
        http_addr(t, false),
        &x.request,
        &[("X-Forwarded-For", &x.client.to_string())],
    );
    assert_eq!(status, 200, "{file}:{}", x.line);
    assert_eq!(
        escape(&body),
        escape(&x.want),
        "{file}:{}: reply differs",
        x.line
    );
}

/// Vector addresses → loopback addresses a socket can really send from.
struct Loopback(HashMap<IpAddr, IpAddr>);

impl Loopback {
    fn of(exchanges: &[Exchange]) -> Loopback {
        let mut map = HashMap::new();
        let (mut v4, mut v6) = (1u8, 0);
        for x in exchanges.iter().filter(|x| x.kind == Kind::Udp) {
            map.entry(x.client).or_insert_with(|| match x.client {
                IpAddr::V4(_) => {
                    v4 += 1;
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, v4 - 1))
                }
                IpAddr::V6(_) => {
                    v6 += 1;
                    assert_eq!(v6, 1, "::1 is the only IPv6 loopback address: one per file");
                    IpAddr::V6(Ipv6Addr::LOCALHOST)
                }
            });
        }
        Loopback(map)
    }

    /// The expected reply with the peers of an announce reply (action 1) mapped.
    fn reply(&self, want: &[u8], v6: bool) -> Vec<u8> {
        let mut out = want.to_vec();
        if out.len() < 20 || out[..4] != [0, 0, 0, 1] {
            return out;
        }
        let (len, ip_len) = if v6 { (18, 16) } else { (6, 4) };
        for peer in out[20..].chunks_mut(len) {
            let ip = match v6 {
                false => IpAddr::from(<[u8; 4]>::try_from(&peer[..4]).unwrap()),
                true => IpAddr::from(<[u8; 16]>::try_from(&peer[..16]).unwrap()),
            };
            if let Some(mapped) = self.0.get(&ip) {
                match mapped {
                    IpAddr::V4(a) => peer[..ip_len].copy_from_slice(&a.octets()),
                    IpAddr::V6(a) => peer[..ip_len].copy_from_slice(&a.octets()),
                }
            }
        }
        out
    }
}

/// Replays a file's UDP exchanges; returns the lines skipped for needing another clock.
fn replay_udp(file: &str, t: &edgetracker_native::Running, all: &[Exchange]) -> Vec<usize> {
    let loopback = Loopback::of(all);
    let mut sockets: HashMap<IpAddr, UdpSocket> = HashMap::new();
    let mut cid = String::new();
    let mut issued_at = 0u32;
    let mut skipped = Vec::new();
    for x in all.iter().filter(|x| x.kind == Kind::Udp) {
        if x.request.contains("{cid}") && x.now.saturating_sub(issued_at) > ID_VALIDITY {
            skipped.push(x.line);
            continue;
        }
        let from = loopback.0[&x.client];
        let s = sockets.entry(from).or_insert_with(|| {
            let s = UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind loopback");
            s.connect(udp_addr(t, from.is_ipv6())).unwrap();
            s
        });
        let packet = hex(&x.request.replace("{cid}", &cid));
        let want = loopback.reply(&x.want, from.is_ipv6());
        if want.is_empty() {
            assert!(
                udp_no_reply(s, &packet, Duration::from_millis(300)),
                "{file}:{}: no reply expected",
                x.line
            );
            continue;
        }
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let got = udp_exchange(s, &packet);
        let is_connect = want.len() == 16 && want[..4] == [0, 0, 0, 0];
        if is_connect {
            assert_eq!(got.len(), 16, "{file}:{}: connect reply length", x.line);
            assert_eq!(
                got[..8],
                want[..8],
                "{file}:{}: action and transaction id",
                x.line
            );
            cid = got[8..].iter().map(|b| format!("{b:02x}")).collect();
            issued_at = x.now;
            continue;
        }
        assert_eq!(
            escape(&got),
            escape(&want),
            "{file}:{}: reply differs",
            x.line
        );
    }
    skipped
}

#[test]
fn the_vectors_come_back_byte_for_byte_through_real_sockets() {
    let mut replayed = 0;
    for (file, text) in FILES {
        let all = exchanges(text);
        assert!(!all.is_empty(), "{file} has exchanges");
        assert!(
            all.iter().all(|x| x.kind == all[0].kind),
            "{file}: one protocol per file (they are replayed per protocol)"
        );
        let t = tracker_with(|c| c.network.trusted_proxy_header = "X-Forwarded-For".into());
        for x in all.iter().filter(|x| x.kind == Kind::Http) {
            replay_http(file, &t, x);
            replayed += 1;
        }
        let skipped = replay_udp(file, &t, &all);
        let udp = all.iter().filter(|x| x.kind == Kind::Udp).count();
        replayed += udp - skipped.len();
        if !skipped.is_empty() {
            eprintln!(
                "{file}: lines {skipped:?} skipped: they test connection-id expiry, which needs the tracker's clock {ID_VALIDITY}+ s ahead"
            );
        }
        assert!(
            skipped.len() <= 1,
            "{file}: only the expiry vector may be skipped"
        );
    }
    let total: usize = FILES.iter().map(|(_, text)| exchanges(text).len()).sum();
    assert_eq!(
        replayed + 1,
        total,
        "every exchange but the expiry one replayed"
    );
}
