//! torrent_passes: the 32 characters after the first `/` of a private site's announce URL.
//!
//! A pass names its user in one of two ways, tried in this order (as XBT does):
//!
//! - **derived**: 8 hex digits of the uid, then the first 12 bytes (24 hex digits) of
//!   `sha1("<torrent_pass_private_key> <torrent_pass_version> <uid> " + the 20 raw bytes of the
//!   info hash)`. The site computes it per user and torrent and revokes all of a user's passes by
//!   raising its `torrent_pass_version`; the tracker checks it without storing it.
//! - **plain**: equal to a user's `xbt_users.torrent_pass`.

use std::collections::HashMap;

use sha1::{Digest, Sha1};

use crate::protocol::hex;
use crate::protocol::types::InfoHash;

/// Characters in a torrent_pass.
pub const PASS_LEN: usize = 32;

/// What the tracker needs of a user to check their passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassUser {
    pub uid: u32,
    /// `xbt_users.torrent_pass_version` (0 where the column does not exist).
    pub version: u32,
}

/// The first 12 bytes of the derived pass's hash.
fn derived_mac(private_key: &str, version: u32, uid: u32, info_hash: &InfoHash) -> [u8; 12] {
    let mut h = Sha1::new();
    h.update(format!("{private_key} {version} {uid} ").as_bytes());
    h.update(info_hash.0);
    let digest = h.finalize();
    let mut mac = [0u8; 12];
    mac.copy_from_slice(&digest[..12]);
    mac
}

/// The derived pass of user `uid` (at `version`) for the torrent `info_hash`, as a site computes
/// it: lowercase hex.
pub fn derived_pass(private_key: &str, version: u32, uid: u32, info_hash: &InfoHash) -> String {
    let mac = derived_mac(private_key, version, uid, info_hash);
    format!("{uid:08x}{}", hex::encode(&mac))
}

/// The users whose passes the tracker accepts: by uid (for derived passes) and by plain pass.
#[derive(Clone, Debug, Default)]
pub struct Passes {
    versions: HashMap<u32, u32>,
    plain: HashMap<[u8; PASS_LEN], u32>,
}

impl Passes {
    /// Adds user `user`, with a plain pass if the site gave them one (one that is not exactly 32
    /// characters is not a pass: XBT ignores it too).
    pub fn insert(&mut self, user: PassUser, plain: Option<&[u8]>) {
        self.versions.insert(user.uid, user.version);
        if let Some(pass) = plain.and_then(|p| <[u8; PASS_LEN]>::try_from(p).ok()) {
            self.plain.insert(pass, user.uid);
        }
    }

    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The uid `pass` names for an announce or scrape of `info_hash`: a derived pass that checks
    /// against its user's version first, then a plain pass. `None`: no user (XBT's
    /// "unregistered torrent pass").
    pub fn find(&self, pass: &[u8], private_key: &str, info_hash: &InfoHash) -> Option<u32> {
        if pass.len() != PASS_LEN {
            return None;
        }
        let text = std::str::from_utf8(pass).ok()?;
        let derived = text
            .get(..8)
            .and_then(hex::decode_array::<4>)
            .map(u32::from_be_bytes)
            .and_then(|uid| Some((uid, *self.versions.get(&uid)?)))
            .filter(|&(uid, version)| {
                text.get(8..)
                    .and_then(hex::decode_array::<12>)
                    .is_some_and(|mac| {
                        subtle::ConstantTimeEq::ct_eq(
                            &mac[..],
                            &derived_mac(private_key, version, uid, info_hash)[..],
                        )
                        .into()
                    })
            });
        match derived {
            Some((uid, _)) => Some(uid),
            None => <[u8; PASS_LEN]>::try_from(pass)
                .ok()
                .and_then(|p| self.plain.get(&p).copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const HASH: InfoHash = InfoHash([0xab; 20]);

    #[test]
    fn a_derived_pass_is_the_sites_formula() {
        // Computed independently (Python: "%08x" % uid + sha1(b"key 2 7 " + bytes(20 × 0xab))
        // .hexdigest()[:24]).
        assert_eq!(
            derived_pass("key", 2, 7, &HASH),
            "000000074f9122efa13063e8bdcd1e6b"
        );
    }

    #[test]
    fn passes_name_their_users_derived_first_then_plain() {
        let mut passes = Passes::default();
        passes.insert(PassUser { uid: 7, version: 2 }, None);
        passes.insert(
            PassUser { uid: 9, version: 0 },
            Some(b"0123456789abcdef0123456789abcdef"),
        );
        passes.insert(
            PassUser {
                uid: 10,
                version: 0,
            },
            Some(b"too short"),
        );
        let derived = derived_pass("key", 2, 7, &HASH);
        assert_eq!(passes.find(derived.as_bytes(), "key", &HASH), Some(7));
        assert_eq!(
            passes.find(derived.to_uppercase().as_bytes(), "key", &HASH),
            Some(7),
            "hex in either case"
        );
        assert_eq!(
            passes.find(derived.as_bytes(), "key", &InfoHash([1; 20])),
            None,
            "a derived pass is for one torrent"
        );
        assert_eq!(
            passes.find(derived_pass("key", 1, 7, &HASH).as_bytes(), "key", &HASH),
            None,
            "an older version is revoked"
        );
        assert_eq!(passes.find(derived.as_bytes(), "other", &HASH), None);
        assert_eq!(
            passes.find(b"0123456789abcdef0123456789abcdef", "key", &HASH),
            Some(9)
        );
        assert_eq!(
            passes.find(b"0123456789abcdef0123456789abcde", "key", &HASH),
            None
        );
        assert_eq!(
            passes.find(b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "key", &HASH),
            None
        );
        assert_eq!(passes.len(), 3);
    }
}
