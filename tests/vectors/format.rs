//! The `.vec` format of the request → reply vectors, shared by every test that replays them
//! (the core's `tests/vectors.rs`, the native sockets' `tests/native/vectors.rs`; the Worker's
//! `tests/edge/vectors.test.mjs` reads the same lines in JavaScript).
//!
//! ```text
//! # comment
//! http <client-ip> <unix-now> <target>      an HTTP GET of /announce or /scrape
//! udp  <client-ip> <unix-now> <hex>         a BEP 15 datagram; {cid} is the last connect's id
//! => <bytes>                                the exact reply (printable ASCII, \xNN, \\); `=>` alone: none
//! ```
#![allow(dead_code)]

use std::net::IpAddr;

/// One request of a file and the reply it must get.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// 1-based line of the request.
    pub line: usize,
    pub kind: Kind,
    pub client: IpAddr,
    pub now: u32,
    /// The target (HTTP) or the hex datagram with `{cid}` unreplaced (UDP).
    pub request: String,
    pub want: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Udp,
}

/// Every exchange of a file, in order.
pub fn exchanges(text: &str) -> Vec<Exchange> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut words = line.splitn(4, ' ');
        let kind = match words.next() {
            Some("http") => Kind::Http,
            Some("udp") => Kind::Udp,
            _ => continue,
        };
        let (Some(ip), Some(now), Some(request)) = (words.next(), words.next(), words.next())
        else {
            panic!("line {}: want `{kind:?} <ip> <now> <request>`", i + 1);
        };
        let reply = lines.get(i + 1).copied().unwrap_or_default();
        let want = reply
            .strip_prefix("=>")
            .unwrap_or_else(|| panic!("line {}: a `=>` line follows each request", i + 2));
        out.push(Exchange {
            line: i + 1,
            kind,
            client: ip.parse().expect("client ip"),
            now: now.parse().expect("unix now"),
            request: request.to_string(),
            want: unescape(want.strip_prefix(' ').unwrap_or(want)),
        });
    }
    out
}

pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xNN"));
            i += 4;
        } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
