//! Who may see the stats (`/stats`, `/metrics`): the same rule on both homes. Everyone, unless
//! the operator lists addresses or sets a token; then a listed address or the token.
//!
//! Owns the decision only: where the list and token come from, and what the stats say, is each
//! home's business.

use std::net::IpAddr;

use crate::protocol::http::query_pairs;
use crate::protocol::types::canonical_ip;

/// Whether a secret the client gave (a stats token) is the expected one, compared in constant
/// time so response timing says nothing about how much of it was right.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// The `token=` parameter of a raw query string, as sent.
pub fn query_token(query: &[u8]) -> Option<&[u8]> {
    query_pairs(query).find_map(|(k, v)| (k == b"token").then_some(v))
}

/// Who may see the stats, the same on both homes: everyone when neither `allow` nor `token` is
/// set; otherwise a client whose address is listed, or one presenting the token (in the query or
/// as `Authorization: Bearer`, passed here without the `Bearer ` prefix).
pub fn stats_permitted(
    allow: &[IpAddr],
    token: &str,
    client: Option<IpAddr>,
    query: &[u8],
    bearer: Option<&[u8]>,
) -> bool {
    if allow.is_empty() && token.is_empty() {
        return true;
    }
    let client = client.map(canonical_ip);
    if allow.iter().any(|&a| Some(canonical_ip(a)) == client) {
        return true;
    }
    let same = |given: &[u8]| !token.is_empty() && same_secret(given, token.as_bytes());
    query_token(query).is_some_and(same) || bearer.is_some_and(same)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn stats_are_public_unless_restricted_then_by_address_or_token() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert!(stats_permitted(&[], "", ip("10.0.0.1"), b"", None));
        let allow = [ip("192.0.2.10").unwrap()];
        assert!(stats_permitted(
            &allow,
            "",
            ip("::ffff:192.0.2.10"),
            b"",
            None
        ));
        assert!(!stats_permitted(
            &allow,
            "",
            ip("10.0.0.1"),
            b"token=",
            Some(b"")
        ));
        assert!(!stats_permitted(
            &allow,
            "t0k",
            ip("10.0.0.1"),
            b"a=1&token=t0",
            None
        ));
        assert!(stats_permitted(
            &allow,
            "t0k",
            ip("10.0.0.1"),
            b"a=1&token=t0k",
            None
        ));
        assert!(stats_permitted(&allow, "t0k", None, b"", Some(b"t0k")));
        assert!(!stats_permitted(&[], "t0k", None, b"", Some(b"t0K")));
    }

    #[test]
    fn secrets_match_only_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cret!", b"s3cret"));
        assert!(!same_secret(b"S3cret", b"s3cret"));
    }
}
