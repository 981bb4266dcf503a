//! The `edgetracker` binary as an operator runs it: flags, startup, serving, SIGTERM, exit codes.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use edgetracker::protocol::types::Event;
use edgetracker::protocol::udp::{announce_request, connect_request};
use edgetracker_native::config::{Config, DEFAULT_TOML};

const BIN: &str = env!("CARGO_BIN_EXE_edgetracker");

/// Starts the binary; returns it and the addresses it reports serving (`serving ...` log lines).
fn spawn(args: &[&str]) -> (Child, Vec<String>) {
    let (child, urls, _) = spawn_with_log(args, &[]);
    (child, urls)
}

/// As [`spawn`], with environment variables, also handing back the rest of its log.
fn spawn_with_log(args: &[&str], env: &[(&str, &str)]) -> (Child, Vec<String>, Log) {
    let mut command = Command::new(BIN);
    command.args(args);
    spawn_command(command, env)
}

/// As [`spawn_with_log`], for a command that runs the binary (a shell that sets limits first).
fn spawn_command(mut command: Command, env: &[(&str, &str)]) -> (Child, Vec<String>, Log) {
    let mut child = command
        // No state file unless the test asks for one (`env` may override this).
        .env("EDGETRACKER__STATE__FILE", "\"\"")
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut urls = Vec::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while urls.len() < 2 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("serving lines within 10 s");
        seen.push(line.clone());
        if let Some(at) = line.find("serving ") {
            urls.push(
                line[at + 8..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    (child, urls, Log { seen, rx })
}

/// The binary's log: lines read so far, and the rest as they come.
struct Log {
    seen: Vec<String>,
    rx: mpsc::Receiver<String>,
}

impl Log {
    /// The first line containing `pattern`, waiting up to `wait` for it to be logged.
    fn find(&mut self, pattern: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        let mut next = 0;
        loop {
            if let Some(line) = self.seen[next..].iter().find(|l| l.contains(pattern)) {
                return Some(line.clone());
            }
            next = self.seen.len();
            let line = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()?;
            self.seen.push(line);
        }
    }
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serves_udp_and_http_on_one_port_and_exits_cleanly_on_sigterm() {
    let (child, urls) = spawn(&["--listen", "127.0.0.1", "--port", "0"]);
    let udp = urls
        .iter()
        .find(|u| u.starts_with("udp://"))
        .expect("udp url");
    let http = urls
        .iter()
        .find(|u| u.starts_with("http://"))
        .expect("http url");
    let port = |u: &str| {
        u.rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    assert_eq!(port(udp), port(http), "UDP and HTTP share one port");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", port(http)).parse().unwrap();

    let s = udp_client(addr);
    let reply = udp_exchange(&s, &connect_request(5));
    let id: [u8; 8] = reply[8..16].try_into().unwrap();
    let reply = udp_exchange(
        &s,
        &announce_request(id, 6, &announce(hash(1), 1000, 0, Event::Started), b""),
    );
    assert_eq!(&reply[..4], &[0, 0, 0, 1]);
    let q =
        edgetracker::protocol::http::announce_query(&announce(hash(1), 1001, 9, Event::Started));
    let (status, _, body) = http_get(addr, &format!("/announce?{q}"), &[]);
    assert_eq!(status, 200);
    let needle: &[u8] = b"5:peers6:\x7f\x00\x00\x01\x03\xe8";
    assert!(
        body.windows(needle.len()).any(|w| w == needle),
        "{}",
        String::from_utf8_lossy(&body)
    );

    let status = terminate(child);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn default_listen_is_dual_stack_on_one_port() {
    // Both wildcard families, as the default does, on a port of the kernel's choosing.
    let (child, urls) = spawn(&["--listen", "0.0.0.0", "--listen", "::", "--port", "0"]);
    assert!(
        urls.iter().any(|u| u.contains("0.0.0.0")) && urls.iter().any(|u| u.contains("[::]")),
        "{urls:?}"
    );
    assert!(terminate(child).success());
}

#[test]
fn print_config_prints_the_commented_default() {
    let out = Command::new(BIN).arg("--print-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, DEFAULT_TOML);
    assert_eq!(toml::from_str::<Config>(&text).unwrap(), Config::default());
}

#[test]
fn bad_configuration_is_refused_with_a_message() {
    let out = Command::new(BIN)
        .env("EDGETRACKER__TRACKER__PEER_TIMEOUT", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer_timeout"));
    let out = Command::new(BIN)
        .args(["--port", "notaport"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sighup_reloads_the_access_files_and_does_not_stop_the_tracker() {
    let dir = std::env::temp_dir().join(format!("edgetracker-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("deny.txt");
    std::fs::write(&list, "").unwrap();
    let list_path = list.display().to_string();
    let env = [
        ("EDGETRACKER__ACCESS__LIST_MODE", "\"deny\""),
        ("EDGETRACKER__ACCESS__LIST_FILE", list_path.as_str()),
    ];
    let (child, _, mut log) = spawn_with_log(&["--listen", "127.0.0.1", "--port", "0"], &env);
    let pid = child.id().to_string();
    let hangup = || {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    // The file unchanged, so only the signal can cause this reload (the watcher reloads changes).
    hangup();
    let line = log
        .find("access reloaded (SIGHUP)", Duration::from_secs(10))
        .expect("a reload line within 10 s");
    assert!(line.contains("deny list of 0 torrents"), "{line}");
    // Edited, then signalled: the new list is in force.
    std::fs::write(&list, "0101010101010101010101010101010101010101\n").unwrap();
    hangup();
    log.find("deny list of 1 torrents", Duration::from_secs(10))
        .expect("the edited list reloaded within 10 s");
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not end the tracker"
    );
    assert!(terminate(child).success());
    std::fs::remove_dir_all(dir).ok();
}

/// Announces over UDP (a seeder) and HTTP (a leecher), then scrapes; returns the scrape reply.
fn fill_and_scrape(addr: std::net::SocketAddr) -> Vec<u8> {
    let s = udp_client(addr);
    let id: [u8; 8] = udp_exchange(&s, &connect_request(1))[8..16]
        .try_into()
        .unwrap();
    udp_exchange(
        &s,
        &announce_request(id, 2, &announce(hash(7), 3000, 0, Event::Started), b""),
    );
    let mut done = announce(hash(8), 3001, 0, Event::Completed);
    done.numwant = Some(5);
    udp_exchange(&s, &announce_request(id, 3, &done, b""));
    let q =
        edgetracker::protocol::http::announce_query(&announce(hash(7), 3002, 5, Event::Started));
    assert_eq!(http_get(addr, &format!("/announce?{q}"), &[]).0, 200);
    scrape(addr)
}

fn scrape(addr: std::net::SocketAddr) -> Vec<u8> {
    let s = udp_client(addr);
    let id: [u8; 8] = udp_exchange(&s, &connect_request(1))[8..16]
        .try_into()
        .unwrap();
    udp_exchange(
        &s,
        &edgetracker::protocol::udp::scrape_request(id, 9, &[hash(7), hash(8)]),
    )
}

fn local_addr(urls: &[String]) -> std::net::SocketAddr {
    let port = urls[0]
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    format!("127.0.0.1:{port}").parse().unwrap()
}

#[test]
fn swarms_survive_sigterm_and_a_restart() {
    let dir = std::env::temp_dir().join(format!("edgetracker-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tracker.state");
    let file_env = file.display().to_string();
    let env = [("EDGETRACKER__STATE__FILE", file_env.as_str())];
    let args = ["--listen", "127.0.0.1", "--port", "0"];

    let (child, urls, _) = spawn_with_log(&args, &env);
    let before = fill_and_scrape(local_addr(&urls));
    // seeders, completed, leechers: hash 7 has a UDP seeder and an HTTP leecher; hash 8 one
    // seeder that completed.
    assert_eq!(
        &before[8..],
        &[
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0
        ]
    );
    assert!(terminate(child).success());
    assert!(file.exists(), "SIGTERM saved the state");

    let (child, urls, mut log) = spawn_with_log(&args, &env);
    let addr = local_addr(&urls);
    assert_eq!(
        scrape(addr)[8..],
        before[8..],
        "same counts after the restart"
    );
    // And the same peers: a new leecher gets the seeder (UDP) and the leecher (HTTP) back.
    let q =
        edgetracker::protocol::http::announce_query(&announce(hash(7), 3003, 5, Event::Started));
    let (_, _, body) = http_get(addr, &format!("/announce?{q}"), &[]);
    let peers_at = body
        .windows(9)
        .position(|w| w == b"5:peers12")
        .expect("two compact peers")
        + 10;
    let mut ports: Vec<u16> = body[peers_at..peers_at + 12]
        .chunks(6)
        .map(|p| u16::from_be_bytes([p[4], p[5]]))
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![3000, 3002]);
    assert!(
        log.find("restored 2 torrents and 3 live peers", Duration::ZERO)
            .is_some()
    );
    assert!(terminate(child).success());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_corrupt_state_file_is_reported_set_aside_and_skipped() {
    let dir = std::env::temp_dir().join(format!("edgetracker-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tracker.state");
    // A torn write: the start of a real header, then nothing.
    std::fs::write(&file, b"ETSTATE\0\x01\x00\x00\x00torn and more torn bytes").unwrap();
    let file_env = file.display().to_string();
    let env = [("EDGETRACKER__STATE__FILE", file_env.as_str())];
    let (child, urls, mut log) = spawn_with_log(&["--listen", "127.0.0.1", "--port", "0"], &env);
    let line = log
        .find("state file skipped, starting empty", Duration::ZERO)
        .expect("reported");
    assert!(line.contains("checksum mismatch"), "{line}");
    assert!(dir.join("tracker.state.corrupt").exists());
    assert_eq!(
        &scrape(local_addr(&urls))[8..],
        &[0u8; 24][..],
        "serving, empty"
    );
    assert!(terminate(child).success());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[allow(unsafe_code, reason = "getrlimit, which std does not wrap")]
fn the_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    // Before: the soft limit stayed as inherited (often 1,024; 256 here), and at ~87 new
    // connections a second most announces failed with "Too many open files".
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0);
    if limit.rlim_max <= 256 {
        eprintln!(
            "hard open-file limit {} leaves nothing to raise",
            limit.rlim_max
        );
        return;
    }
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!("ulimit -Sn 256 && exec {BIN} --listen 127.0.0.1 --port 0"),
        ])
        .env("EDGETRACKER__STATE__FILE", "\"\"")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open until the end: a closed pipe would fail the binary's own logging.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = stderr
        .by_ref()
        .map_while(Result::ok)
        .take(20)
        .find(|l| l.contains("HTTP connections and"))
        .expect("the connection cap is logged");
    // Signal handlers are in place once it serves (SIGTERM before that would kill it outright).
    stderr
        .by_ref()
        .map_while(Result::ok)
        .take(20)
        .find(|l| l.contains("serving "))
        .expect("serving");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .expect("Max open files");
    assert_eq!(soft, limit.rlim_max, "{limits}");
    assert!(
        line.contains(&format!("open-file limit {}", limit.rlim_max)),
        "{line}"
    );
    assert_eq!(terminate(child).code(), Some(0));
    drop(stderr);
}

#[test]
fn refused_connections_stay_within_the_open_file_limit() {
    // Before: the connection cap was the limit less 128 descriptors in reserve, and up to 256
    // refused connections lingered beyond it: 2-3 "accept: Too many open files" per cap test,
    // at limits of 256 and 1,024.
    let mut command = Command::new("bash");
    command.args([
        "-c",
        &format!("ulimit -n 256 && exec {BIN} --listen 127.0.0.1 --port 0"),
    ]);
    // Silent connections handed over at once, so each takes a descriptor from the start.
    let (child, urls, mut log) =
        spawn_command(command, &[("EDGETRACKER__NETWORK__HTTP_DEFER_ACCEPT", "0")]);
    let http: std::net::SocketAddr = urls
        .iter()
        .find_map(|u| u.strip_prefix("http://"))
        .and_then(|a| a.split('/').next()?.parse().ok())
        .expect("an HTTP address");
    // 600 connections from 10 networks (the caps per address and network would refuse most
    // from one), far past the cap; held open for a second, then dropped.
    let held: Vec<std::net::TcpStream> = (0..600)
        .filter_map(|i| {
            let from = std::net::SocketAddr::new(
                std::net::IpAddr::from([127, 0, (i % 10) as u8 + 1, (i / 10) as u8 + 1]),
                0,
            );
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.bind(&from.into()).ok()?;
            s.connect(&http.into()).ok()?;
            Some(s.into())
        })
        .collect();
    assert!(held.len() > 400, "{} connections made", held.len());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        log.find("Too many open files", Duration::from_secs(2)),
        None,
        "the tracker ran out of descriptors"
    );
    drop(held);
    assert_eq!(terminate(child).code(), Some(0));
}
