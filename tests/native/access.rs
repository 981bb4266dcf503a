//! Access control as operators use it: allow/deny lists and passkeys from files, reloaded when
//! the files change, over HTTP and UDP.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use edgetracker::access::ListMode;
use edgetracker::protocol::http::announce_query;
use edgetracker::protocol::types::Event;
use edgetracker::protocol::udp::{announce_request, connect_request, scrape_request};

fn hex(h: &edgetracker::InfoHash) -> String {
    h.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// A scratch directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgetracker-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn http_reason(addr: std::net::SocketAddr, target: &str) -> Option<String> {
    let (status, _, body) = http_get(addr, target, &[]);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).to_string();
    text.strip_prefix("d14:failure reason").map(|rest| {
        rest.split_once(':')
            .unwrap()
            .1
            .trim_end_matches('e')
            .to_string()
    })
}

/// UDP announce from a fresh socket: Ok(()) or the error message.
fn udp_announce(
    addr: std::net::SocketAddr,
    h: edgetracker::InfoHash,
    url_data: &[u8],
) -> Result<(), String> {
    let s = udp_client(addr);
    let reply = udp_exchange(&s, &connect_request(1));
    let id: [u8; 8] = reply[8..16].try_into().unwrap();
    let reply = udp_exchange(
        &s,
        &announce_request(id, 2, &announce(h, 7000, 0, Event::Started), url_data),
    );
    match reply[3] {
        1 => Ok(()),
        3 => Err(String::from_utf8_lossy(&reply[8..]).to_string()),
        other => panic!("action {other}"),
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn allow_list_refuses_other_torrents_over_http_and_udp_and_follows_the_file() {
    let d = dir("allow");
    let list = d.join("torrents.txt");
    let (ok, other) = (hash(1), hash(2));
    std::fs::write(&list, format!("# allowed\n{}\n", hex(&ok))).unwrap();
    let t = tracker_with(|c| {
        c.access.list_mode = ListMode::Allow;
        c.access.list_file = Some(list.clone());
    });
    let (h, u) = (http_addr(&t, false), udp_addr(&t, false));
    let q = |x| {
        format!(
            "/announce?{}",
            announce_query(&announce(x, 1, 0, Event::Started))
        )
    };
    assert_eq!(http_reason(h, &q(ok)), None);
    let refused = "torrent not allowed on this tracker (not on its allow list)";
    assert_eq!(http_reason(h, &q(other)).as_deref(), Some(refused));
    assert_eq!(udp_announce(u, ok, b""), Ok(()));
    assert_eq!(udp_announce(u, other, b""), Err(refused.to_string()));
    let scrape = format!(
        "/scrape?info_hash={}",
        edgetracker::protocol::percent::encode(&other.0)
    );
    assert_eq!(http_reason(h, &scrape).as_deref(), Some(refused));

    // The operator adds the other torrent: it is served within a few seconds, no restart.
    std::fs::write(&list, format!("{}\n{}\n", hex(&ok), hex(&other))).unwrap();
    wait_until("the edited list applies", || {
        http_reason(h, &q(other)).is_none()
    });

    // A broken edit keeps the rules in force. The watcher checks every 2 s and loads a change
    // that held still for one check, so after 5 s the broken file has surely been tried.
    std::fs::write(&list, "not a hash\n").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(http_reason(h, &q(other)), None);
    assert_eq!(http_reason(h, &q(hash(3))).as_deref(), Some(refused));
    t.shutdown();
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn deny_list_refuses_listed_torrents() {
    let d = dir("deny");
    let list = d.join("banned.txt");
    std::fs::write(&list, hex(&hash(9))).unwrap();
    let t = tracker_with(|c| {
        c.access.list_mode = ListMode::Deny;
        c.access.list_file = Some(list.clone());
    });
    let denied = "torrent refused by this tracker (on its deny list)";
    assert_eq!(
        udp_announce(udp_addr(&t, false), hash(9), b""),
        Err(denied.to_string())
    );
    assert_eq!(udp_announce(udp_addr(&t, true), hash(8), b""), Ok(()));
    let q = format!(
        "/announce?{}",
        announce_query(&announce(hash(9), 1, 0, Event::Started))
    );
    assert_eq!(
        http_reason(http_addr(&t, false), &q).as_deref(),
        Some(denied)
    );
    // UDP scrape too.
    let s = udp_client(udp_addr(&t, false));
    let id: [u8; 8] = udp_exchange(&s, &connect_request(1))[8..16]
        .try_into()
        .unwrap();
    let reply = udp_exchange(&s, &scrape_request(id, 4, &[hash(9)]));
    assert_eq!(
        (reply[3], &reply[8..]),
        (3, denied.as_bytes()),
        "the whole reason: the connection id proved the client's address"
    );
    t.shutdown();
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn private_mode_takes_passkeys_in_the_http_path_and_in_bep41_url_data() {
    let d = dir("private");
    let keys = d.join("passkeys.txt");
    std::fs::write(&keys, "alice0123456789ab\nbob_9876543210cd\n").unwrap();
    let t = tracker_with(|c| c.access.passkeys_file = Some(keys.clone()));
    let (h, u) = (http_addr(&t, false), udp_addr(&t, false));
    let q = announce_query(&announce(hash(4), 1, 0, Event::Started));
    assert_eq!(
        http_reason(h, &format!("/alice0123456789ab/announce?{q}")),
        None
    );
    assert_eq!(
        http_reason(h, &format!("/announce?{q}")).as_deref(),
        Some("private tracker: announce to the URL with your passkey (/<passkey>/announce)")
    );
    assert_eq!(
        http_reason(h, &format!("/mallory/announce?{q}")).as_deref(),
        Some("unknown passkey")
    );
    let scrape = format!(
        "bob_9876543210cd/scrape?info_hash={}",
        edgetracker::protocol::percent::encode(&hash(4).0)
    );
    assert_eq!(http_reason(h, &format!("/{scrape}")), None);

    assert_eq!(
        udp_announce(u, hash(4), b"/bob_9876543210cd/announce"),
        Ok(())
    );
    assert_eq!(
        udp_announce(u, hash(4), b"/mallory/announce"),
        Err("unknown passkey".into())
    );
    assert!(
        udp_announce(u, hash(4), b"")
            .unwrap_err()
            .starts_with("private tracker")
    );

    // Revoking a key takes effect without a restart.
    std::fs::write(&keys, "bob_9876543210cd\n").unwrap();
    wait_until("the revoked key is refused", || {
        http_reason(h, &format!("/alice0123456789ab/announce?{q}")).as_deref()
            == Some("unknown passkey")
    });
    t.shutdown();
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn a_missing_or_broken_file_stops_startup_with_a_reason() {
    let mut config = edgetracker_native::config::Config::default();
    config.network.listen = vec![ip("127.0.0.1")];
    config.network.port = 0;
    config.access.list_mode = ListMode::Allow;
    let err = edgetracker_native::start(config.clone())
        .err()
        .expect("no list file");
    assert!(err.to_string().contains("needs a list_file"), "{err}");
    config.access.list_file = Some("/nonexistent/list.txt".into());
    let err = edgetracker_native::start(config).err().expect("unreadable");
    assert!(
        err.to_string()
            .contains("cannot read /nonexistent/list.txt"),
        "{err}"
    );
}

#[test]
fn guessing_passkeys_is_rate_limited_and_short_passkeys_are_refused() {
    let d = dir("guessing");
    let keys = d.join("passkeys.txt");
    std::fs::write(&keys, "alice0123456789ab\n").unwrap();
    let t = tracker_with(|c| {
        c.access.passkeys_file = Some(keys.clone());
        c.tracker.rate_limit_per_minute = 30;
        c.tracker.rate_limit_burst = 10;
        c.tracker.full_scrape = true;
    });
    let h = http_addr(&t, false);
    let q = announce_query(&announce(hash(5), 1, 0, Event::Started));
    let scrape = format!(
        "scrape?info_hash={}",
        edgetracker::protocol::percent::encode(&hash(5).0)
    );
    // Before the fix, every guess got its answer ("unknown passkey"), however many came.
    let answers: Vec<Option<String>> = (0..40)
        .map(|i| {
            let target = match i % 3 {
                0 => format!("/guess{i:012}/announce?{q}"),
                1 => format!("/guess{i:012}/{scrape}"),
                // A full scrape checks the passkey on its own path: guesses cost a token there too.
                _ => format!("/guess{i:012}/scrape"),
            };
            http_reason(h, &target)
        })
        .collect();
    let limited = answers
        .iter()
        .filter(|a| a.as_deref().is_some_and(|r| r.starts_with("rate limited")))
        .count();
    assert_eq!(
        answers[..10],
        vec![Some("unknown passkey".to_string()); 10],
        "the burst"
    );
    assert!(limited >= 25, "only {limited} of 40 guesses were limited");
    assert!(
        String::from_utf8_lossy(&http_get(h, "/stats?format=json", &[]).2)
            .contains("\"rate_limited\":")
    );
    t.shutdown();

    // A passkey file with a short (guessable) key does not start.
    std::fs::write(&keys, "alice0123456789ab\nbob\n").unwrap();
    let mut config = edgetracker_native::config::Config::default();
    config.network.listen = vec!["127.0.0.1".parse().unwrap()];
    config.network.port = 0;
    config.state.file = None;
    config.access.passkeys_file = Some(keys.clone());
    let err = edgetracker_native::start(config).err().expect("refused");
    assert!(err.to_string().contains("at least 16 characters"), "{err}");
    std::fs::remove_dir_all(d).ok();
}
