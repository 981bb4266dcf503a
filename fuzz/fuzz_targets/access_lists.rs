//! The operator's access files (allow/deny lists, passkeys) and the paths and BEP 41 URL data
//! passkeys are read from.
#![no_main]

use edgetracker::access::{Access, ListMode};
use edgetracker::protocol::route;
use edgetracker::stats_access;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = route::route(data);
    let _ = route::udp_passkey(data);
    let _ = stats_access::query_token(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [ListMode::Allow, ListMode::Deny] {
        if let Ok(a) = Access::open().with_list(mode, text) {
            assert_eq!(a.mode(), mode);
        }
    }
    if let Ok(a) = Access::open().with_passkeys(text) {
        assert!(a.is_private());
    }
});
