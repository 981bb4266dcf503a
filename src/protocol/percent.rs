//! Strict percent-decoding of query-string values (RFC 3986), straight into caller buffers.
//!
//! Hand-written rather than taken from `percent-encoding`: that crate passes malformed escapes
//! such as `%zz` through unchanged, while a tracker must refuse them (a mangled `info_hash` would
//! silently join the wrong swarm), and decoding here writes into fixed 20-byte arrays with no
//! allocation. `+` is a literal byte, as RFC 3986 says; clients escape everything else.

use super::hex;

/// Why a value could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// More decoded bytes than the destination holds.
    TooLong,
}

/// Decodes `src` into `dst`, returning the number of bytes written.
pub fn decode_into(src: &[u8], dst: &mut [u8]) -> Result<usize, PercentError> {
    let mut written = 0;
    let mut i = 0;
    while i < src.len() {
        let byte = if src[i] == b'%' {
            let hi = src.get(i + 1).copied().and_then(hex::nibble);
            let lo = src.get(i + 2).copied().and_then(hex::nibble);
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    hi << 4 | lo
                }
                _ => return Err(PercentError::BadEscape),
            }
        } else {
            i += 1;
            src[i - 1]
        };
        *dst.get_mut(written).ok_or(PercentError::TooLong)? = byte;
        written += 1;
    }
    Ok(written)
}

/// Percent-encodes every byte outside RFC 3986's unreserved set (what BitTorrent clients send).
pub fn encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn decodes_escapes_and_literals() {
        let mut buf = [0u8; 8];
        let n = decode_into(b"a%20b%ff+", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"a b\xff+");
    }

    #[test]
    fn refuses_malformed_escapes() {
        let mut buf = [0u8; 8];
        for bad in [&b"%"[..], b"%4", b"%zz", b"ab%g0", b"%%41"] {
            assert_eq!(
                decode_into(bad, &mut buf),
                Err(PercentError::BadEscape),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_overflow() {
        let mut buf = [0u8; 2];
        assert_eq!(decode_into(b"abc", &mut buf), Err(PercentError::TooLong));
        assert_eq!(
            decode_into(b"%41%42%43", &mut buf),
            Err(PercentError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let encoded = encode(&bytes);
            let mut buf = [0u8; 64];
            let n = decode_into(encoded.as_bytes(), &mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &bytes[..]);
        }

        #[test]
        fn never_panics(src in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = [0u8; 20];
            let _ = decode_into(&src, &mut buf);
        }
    }
}
