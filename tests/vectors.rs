//! Request → reply test vectors: exact bytes the tracker must answer, replayed through every
//! home.
//!
//! Each `tests/vectors/*.vec` file is a conversation with one fresh tracker (default policy, a
//! fixed connection-id key, the memory store); the format is `tests/vectors/format.rs`'s.
//!
//! Here the core answers them directly, natively (`cargo test`) and as wasm32 under Node
//! (`wasm-pack test --node`), so both builds provably answer alike. The same files go through the
//! native binary's real sockets (`tests/native/vectors.rs`) and through the built Worker with each
//! swarm store (`tests/edge/vectors.test.mjs`). `BLESS=1 cargo test --test vectors` rewrites the expected
//! replies from the implementation — review the diff before committing it.

use std::net::IpAddr;

use edgetracker::UnixTime;
use edgetracker::protocol::connection_id::ConnectionIds;
use edgetracker::protocol::http::split_target;
use edgetracker::protocol::route::{self, Endpoint};
use edgetracker::service::{Scratch, Tracker};
use edgetracker::store::memory::MemoryStore;
use edgetracker::store::now_or_never;
use edgetracker::swarm::Policy;
use rand::SeedableRng;
use rand::rngs::SmallRng;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[path = "vectors/format.rs"]
mod format;
use format::{escape, hex, unescape};

/// The vector files, embedded so the wasm build needs no file system.
pub const FILES: &[(&str, &str)] = &[
    ("http.vec", include_str!("vectors/http.vec")),
    ("udp.vec", include_str!("vectors/udp.vec")),
];

pub const CONNECTION_ID_KEY: [u8; 16] = *b"edgetracker-test";

/// Runs one file; returns the file with every `=>` line replaced by what the tracker answered.
pub fn run(text: &str) -> String {
    let policy = Policy::default();
    let tracker = Tracker::new(MemoryStore::new(policy.clone(), [0; 16]), policy)
        .with_udp(ConnectionIds::new(CONNECTION_ID_KEY, 120, 0));
    let mut rng = SmallRng::seed_from_u64(0);
    let mut scratch = Scratch::default();
    let mut cid = String::new();
    let mut out = String::new();
    let mut last_reply: Option<Vec<u8>> = None;
    for line in text.lines() {
        if line.starts_with("=>") {
            let reply = last_reply.take().expect("=> follows a request");
            out.push_str(
                if reply.is_empty() {
                    "=>".into()
                } else {
                    format!("=> {}", escape(&reply))
                }
                .as_str(),
            );
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
        let mut words = line.splitn(4, ' ');
        let (kind, ip, now, rest) = (words.next(), words.next(), words.next(), words.next());
        let reply = match (kind, ip, now, rest) {
            (Some("http"), Some(ip), Some(now), Some(target)) => {
                let (ip, now) = (
                    ip.parse::<IpAddr>().expect("ip"),
                    now.parse::<u32>().expect("now"),
                );
                let (path, query) = split_target(target.as_bytes());
                let route = route::route(path)
                    .unwrap_or_else(|| panic!("unknown path {}", String::from_utf8_lossy(path)));
                let passkey = route.passkey;
                let (body, _) = match route.endpoint {
                    Endpoint::Announce => now_or_never(tracker.http_announce(
                        query,
                        passkey,
                        ip,
                        UnixTime(now),
                        &mut rng,
                        &mut scratch,
                    )),
                    Endpoint::Scrape => now_or_never(tracker.http_scrape(
                        query,
                        passkey,
                        ip,
                        UnixTime(now),
                        &mut scratch,
                    )),
                };
                body
            }
            (Some("udp"), Some(ip), Some(now), Some(packet)) => {
                let (ip, now) = (
                    ip.parse::<IpAddr>().expect("ip"),
                    now.parse::<u32>().expect("now"),
                );
                let packet = hex(&packet.replace("{cid}", &cid));
                let mut reply = Vec::new();
                now_or_never(tracker.udp(
                    &packet,
                    ip,
                    UnixTime(now),
                    &mut rng,
                    &mut scratch,
                    &mut reply,
                ));
                if reply.len() == 16 && reply[..4] == [0, 0, 0, 0] {
                    cid = reply[8..].iter().map(|b| format!("{b:02x}")).collect();
                }
                reply
            }
            _ => continue,
        };
        last_reply = Some(reply);
    }
    out
}

/// Compares a file's expected replies with the tracker's, line by line.
pub fn check(name: &str, text: &str) {
    let got = run(text);
    for (n, (want, got)) in text.lines().zip(got.lines()).enumerate() {
        if want.starts_with("=>") {
            assert_eq!(
                unescape(want),
                unescape(got),
                "{name}:{}: reply differs\nwant {want}\ngot  {got}",
                n + 1
            );
        }
    }
}

#[test]
fn vectors() {
    for (name, text) in FILES {
        #[cfg(not(target_arch = "wasm32"))]
        if std::env::var_os("BLESS").is_some() {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/vectors")
                .join(name);
            std::fs::write(path, run(text)).expect("write blessed vectors");
            continue;
        }
        check(name, text);
    }
}

#[test]
fn escaping_round_trips() {
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(unescape(&escape(&bytes)), bytes);
}
