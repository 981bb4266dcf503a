//! Answering at accept: a tracker request that arrived whole with its connection, and asks for
//! the connection to close after it, is answered by the accept loop itself.
//!
//! Many BitTorrent clients open a connection per announce. For them a hyper connection costs
//! more than the announce: an epoll registration and its removal, a task, two timers, hyper's
//! buffers and a half-close before the close. Here such a request costs one `recv`, one `send`
//! and the close. Anything else — a request not whole in the first read, keep-alive, a body or
//! any `Content-Length`, pipelined bytes, another method or path, a WebSocket upgrade, a full
//! scrape, a malformed request or a target hyper's URI parser refuses — goes to hyper unchanged,
//! with the bytes already read handed to it first (`connections::Watched`), so this path never
//! changes what a client sees: its replies are the bytes hyper writes (the tests compare the
//! two). Owns the quick parse and the reply's framing; what the reply says is
//! `tracker_answer`'s (in the parent module).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use edgetracker::protocol::http::split_target;
use edgetracker::protocol::route;
use hyper::StatusCode;
use hyper::http::uri::PathAndQuery;

use super::{Answer, BENCODE, Headers, tracker_answer};
use crate::Shared;

/// Headers a request may have and still be answered here (hyper allows 100; past this the
/// request goes to hyper, which applies its own limit).
pub const MAX_HEADERS: usize = 32;

/// What became of an accepted connection.
pub enum AtAccept {
    /// Answered in full; dropping the socket closes the connection.
    Answered,
    /// Closed or reset by the client before a request: nothing to answer.
    Gone,
    /// The reply did not fit the socket's send buffer at once: the rest, to write before closing.
    Unsent(Vec<u8>),
    /// For hyper, with the bytes read so far (none if nothing had arrived).
    ToHyper(Vec<u8>),
}

thread_local! {
    /// The read buffer, and the reply being framed: one of each per thread, reused.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The `date:` value, formatted once per second as hyper does.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Reads what the client has sent so far (without waiting) and answers it if it is a whole
/// tracker request that asks to close.
pub fn answer(socket: &socket2::Socket, remote: SocketAddr, shared: &Shared) -> AtAccept {
    BUFFERS.with_borrow_mut(|(buf, reply)| {
        buf.resize(shared.config.network.http_max_header_bytes, 0);
        // socket2 reads and writes a `&Socket` with plain recv(2) and send(2).
        let read = match (&mut &*socket).read(buf) {
            Ok(0) => return AtAccept::Gone,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return AtAccept::ToHyper(Vec::new()),
            Err(_) => return AtAccept::Gone,
        };
        let request = &buf[..read];
        if !answerable(request, remote, shared, reply) {
            return AtAccept::ToHyper(request.to_vec());
        }
        match send_before_close(socket, reply) {
            Ok(n) if n == reply.len() => AtAccept::Answered,
            Ok(n) => AtAccept::Unsent(reply[n..].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => AtAccept::Unsent(reply.clone()),
            Err(_) => AtAccept::Gone,
        }
    })
}

/// Sends a reply the connection's close follows at once. On Linux with `MSG_MORE`: the kernel
/// holds the reply's last segment back for more, the close then sets FIN on it, and reply and
/// FIN leave as one packet rather than two (a partial send's rest, written later without the
/// flag, pushes it as usual). One packet fewer per connection, for the tracker's core and the
/// network: on loopback about a fifth less CPU per announce on its own connection (README).
/// A client that sends more after a request that closes, and so breaks its own
/// `Connection: close`, finds its reply dropped by the reset such a close becomes, where it had
/// the reply and then the reset before.
fn send_before_close(socket: &socket2::Socket, reply: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    return socket.send_with_flags(reply, libc::MSG_MORE);
    #[cfg(not(target_os = "linux"))]
    return socket.send(reply);
}

/// Frames the reply into `reply` if `request` is one this path answers; `false` leaves it to
/// hyper.
fn answerable(request: &[u8], remote: SocketAddr, shared: &Shared, reply: &mut Vec<u8>) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some(head) = read_head(request, &mut headers) else {
        return false;
    };
    let (path, query) = split_target(head.target.as_str().as_bytes());
    let Some(route) = route::route(path) else {
        return false;
    };
    let Answer::Bencoded(body) = tracker_answer(&head.headers, remote, shared, route, query) else {
        return false;
    };
    frame(reply, head.http10, StatusCode::OK, &body);
    true
}

/// A request this path may answer, as [`read_head`] found it.
pub struct Head<'h, 'b> {
    pub http10: bool,
    /// The request target, read as hyper reads it (a fragment dropped), not yet routed.
    pub target: PathAndQuery,
    headers: Parsed<'h, 'b>,
}

impl Head<'_, '_> {
    /// The value of the last `name` header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.last(name)
    }
}

/// `request`, if it is exactly one whole GET without a body that asks to close the connection
/// and is not a WebSocket upgrade, with a target hyper would take; anything else (partial,
/// malformed, another method, any `Content-Length` or `Transfer-Encoding`, bytes past the head,
/// keep-alive, a target hyper refuses with 400 or 414) is `None`, hyper's to serve or refuse.
/// Pure, for the fuzzer.
pub fn read_head<'h, 'b>(
    request: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Option<Head<'h, 'b>> {
    let mut parsed = httparse::Request::new(headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(len)) if len == request.len() => {}
        _ => return None,
    }
    if parsed.method != Some("GET") {
        return None;
    }
    let http10 = parsed.version == Some(0);
    // httparse takes bytes in a target that hyper's `Uri` refuses (`"`, `<`, `>` …), and
    // longer ones; hyper reads the target as this, so both paths see the same path and query.
    let target = parsed.path.filter(|t| t.len() < usize::from(u16::MAX))?;
    let target = PathAndQuery::try_from(target).ok()?;
    let headers = Parsed(parsed.headers);
    let plain = closes(&headers, http10)
        && headers.last("upgrade").is_none()
        && headers.last("transfer-encoding").is_none()
        && headers.last("content-length").is_none();
    plain.then_some(Head {
        http10,
        target,
        headers,
    })
}

/// Whether the client asked for the connection to close after this request: `Connection: close`
/// in HTTP/1.1, the absence of `Connection: keep-alive` in HTTP/1.0 (RFC 9112 §9.3).
fn closes(headers: &Parsed<'_, '_>, http10: bool) -> bool {
    let has = |token: &str| {
        headers.0.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if http10 {
        !has("keep-alive")
    } else {
        has("close")
    }
}

/// httparse's headers, read as the handlers read hyper's.
struct Parsed<'h, 'b>(&'h [httparse::Header<'b>]);

impl Headers for Parsed<'_, '_> {
    fn last(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// The reply as hyper frames it for a request that closes: the same headers in the same order,
/// `connection: close` only for HTTP/1.1 (an HTTP/1.0 client closes by default).
fn frame(reply: &mut Vec<u8>, http10: bool, status: StatusCode, body: &[u8]) {
    reply.clear();
    let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let reason = status.canonical_reason().unwrap_or("");
    let connection = if http10 { "" } else { "connection: close\r\n" };
    DATE.with_borrow_mut(|(at, date)| {
        let now = std::time::SystemTime::now();
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != *at {
            *at = secs;
            *date = httpdate::fmt_http_date(now);
        }
        let _ = write!(
            reply,
            "{version} {} {reason}\r\ncontent-type: {BENCODE}\r\n{connection}content-length: {}\r\ndate: {date}\r\n\r\n",
            status.as_u16(),
            body.len()
        );
    });
    reply.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closes_with(version_10: bool, values: &[&str]) -> bool {
        let headers: Vec<_> = values
            .iter()
            .map(|v| httparse::Header {
                name: "Connection",
                value: v.as_bytes(),
            })
            .collect();
        closes(&Parsed(&headers), version_10)
    }

    #[test]
    fn connection_tokens_decide_who_closes() {
        assert!(closes_with(false, &["close"]));
        assert!(closes_with(false, &["Keep-Alive , CLOSE"]));
        assert!(closes_with(false, &["upgrade", "close"]));
        assert!(!closes_with(false, &[]));
        assert!(!closes_with(false, &["closed", "keep-alive"]));
        assert!(closes_with(true, &[]));
        assert!(closes_with(true, &["other"]));
        assert!(!closes_with(true, &["keep-alive"]));
    }

    #[test]
    fn replies_are_framed_as_hyper_frames_them() {
        let mut reply = Vec::new();
        frame(&mut reply, false, StatusCode::OK, b"de");
        let text = String::from_utf8(reply.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let lines: Vec<_> = head.split("\r\n").collect();
        assert_eq!(
            lines[..4],
            [
                "HTTP/1.1 200 OK",
                "content-type: text/plain; charset=utf-8",
                "connection: close",
                "content-length: 2"
            ]
        );
        assert!(lines[4].starts_with("date: ") && lines[4].ends_with(" GMT"));
        assert_eq!(body, "de");
        frame(&mut reply, true, StatusCode::OK, b"");
        assert!(reply.starts_with(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 0\r\ndate: "));
    }
}
