//! The native tracker's at-accept head reader (native/src/http/at_accept.rs), which decides from
//! a connection's first bytes whether to answer them without hyper. Beyond "no panic": a head it
//! takes is one whole GET without a body, ends where the input ends, asks to close, and is no
//! upgrade.
#![no_main]

use edgetracker::protocol::http::split_target;
use edgetracker::protocol::route;
use edgetracker_native::http::at_accept::{MAX_HEADERS, read_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some(head) = read_head(data, &mut headers) else {
        return;
    };
    // Empty lines before the request line are skipped (RFC 9112 §2.2), by hyper alike.
    let start = data.iter().position(|b| !b"\r\n".contains(b)).unwrap_or(0);
    assert!(data[start..].starts_with(b"GET "), "not a GET");
    assert!(data.ends_with(b"\n\n") || data.ends_with(b"\n\r\n"), "bytes past the head");
    assert!(head.header("upgrade").is_none(), "an upgrade");
    assert!(head.header("content-length").is_none(), "a body");
    // It asks to close, by its own reading of every Connection header (RFC 9112 §9.3).
    let mut all = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut again = httparse::Request::new(&mut all);
    assert!(again.parse(data).is_ok_and(|s| s.is_complete()), "not whole");
    let token = |wanted: &[u8]| {
        again.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(wanted))
        })
    };
    if head.http10 {
        assert!(!token(b"keep-alive"), "HTTP/1.0 keep-alive");
    } else {
        assert!(token(b"close"), "HTTP/1.1 without close");
    }
    let _ = route::route(split_target(head.target.as_str().as_bytes()).0);
});
