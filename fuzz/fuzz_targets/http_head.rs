//! The native tracker's at-accept head reader (native/src/http/at_accept.rs), which decides from
//! a connection's first bytes whether to answer them without hyper. Beyond "no panic": a head it
//! takes is one whole GET, ends where the input ends, asks to close, and is no upgrade.
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
    let keep_alive = head
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"keep-alive"));
    assert!(!keep_alive, "keep-alive");
    let _ = route::route(split_target(head.target.as_bytes()).0);
});
