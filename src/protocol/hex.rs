//! Hexadecimal, the one spelling of bytes as text in the tracker: info hashes in access lists,
//! KV keys and Durable Object names, the Durable Object call format, `InfoHash`'s `Display`.
//!
//! Strict: two digits per byte, either case, nothing else (`u8::from_str_radix` alone would take
//! a sign, so `+f` would pass for `0f`).

/// The value of one hex digit.
pub fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn byte(pair: &[u8]) -> Option<u8> {
    Some(nibble(pair[0])? << 4 | nibble(pair[1])?)
}

/// The bytes `text` spells; `None` for an odd length or anything but hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2).map(byte).collect()
}

/// [`decode`] into exactly `N` bytes (`2 * N` digits).
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (b, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *b = byte(pair)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips_and_takes_nothing_else() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        assert_eq!(encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(decode("00FF").unwrap(), [0, 0xff]);
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode("+f"), None, "no sign");
        assert_eq!(decode_array::<2>("0aFf"), Some([0x0a, 0xff]));
        assert_eq!(decode_array::<2>("0aF"), None);
        assert_eq!(decode_array::<1>("-1"), None);
    }
}
