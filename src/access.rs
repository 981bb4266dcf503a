//! Who may use the tracker: info-hash access lists and private-mode passkeys (BEP 27).
//!
//! Pure data and decisions: parsing the operator's lists from text, and answering "may this
//! request proceed, and if not, why". Where the text comes from (a file, a Worker var, KV) and
//! when it is reloaded is each home's business. Knows nothing of swarms or stores.

use crate::protocol::hex;
use crate::protocol::types::InfoHash;
use std::collections::HashSet;

/// How the info-hash list is applied. Written `off`, `allow` or `deny` (in a configuration file or
/// a Worker var, any case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum ListMode {
    /// Every torrent is served.
    #[default]
    Off,
    /// Only listed torrents are served (a whitelist).
    Allow,
    /// Listed torrents are refused (a blacklist).
    Deny,
}

impl ListMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ListMode::Off => "off",
            ListMode::Allow => "allow",
            ListMode::Deny => "deny",
        }
    }
}

impl From<ListMode> for &'static str {
    fn from(mode: ListMode) -> &'static str {
        mode.as_str()
    }
}

impl TryFrom<String> for ListMode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for ListMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "" => Ok(ListMode::Off),
            "allow" => Ok(ListMode::Allow),
            "deny" => Ok(ListMode::Deny),
            other => Err(format!(
                "unknown access list mode {other:?} (expected off, allow or deny)"
            )),
        }
    }
}

/// Shortest passkey accepted: 16 random URL-safe characters are about 95 bits, beyond guessing
/// even at a tracker's full request rate (real trackers hand out 32 hex digits).
pub const MIN_PASSKEY_LEN: usize = 16;

/// Why a request was refused; the text is what the client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed,
    Denied,
    PasskeyRequired,
    UnknownPasskey,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "torrent not allowed on this tracker (not on its allow list)",
            Refusal::Denied => "torrent refused by this tracker (on its deny list)",
            Refusal::PasskeyRequired => {
                "private tracker: announce to the URL with your passkey (/<passkey>/announce)"
            }
            Refusal::UnknownPasskey => "unknown passkey",
        }
    }
}

/// The operator's access rules, as one immutable value a home swaps whole on reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    mode: ListMode,
    hashes: HashSet<InfoHash>,
    /// `None`: public tracker. `Some`: private, only these passkeys.
    passkeys: Option<HashSet<String>>,
}

/// Lines of a list file: `#` starts a comment, blank lines are skipped, fields are trimmed.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// Parses 40 hex digits (either case) into an info hash.
pub fn parse_hex_hash(s: &str) -> Option<InfoHash> {
    hex::decode_array(s).map(InfoHash)
}

impl Access {
    /// A public tracker serving every torrent.
    pub fn open() -> Self {
        Access::default()
    }

    /// Sets the info-hash list from text: one 40-digit hex info hash per line. A bad line is an
    /// error naming its line number: a list that silently lost entries would let denied
    /// torrents through.
    pub fn with_list(mut self, mode: ListMode, text: &str) -> Result<Self, String> {
        let mut hashes = HashSet::new();
        for (n, entry) in entries(text) {
            let hash = parse_hex_hash(entry)
                .ok_or_else(|| format!("line {n}: not a 40-digit hex info hash: {entry:?}"))?;
            hashes.insert(hash);
        }
        self.mode = mode;
        self.hashes = hashes;
        Ok(self)
    }

    /// Makes the tracker private with these passkeys: one per line, URL-safe characters only,
    /// at least [`MIN_PASSKEY_LEN`] of them.
    pub fn with_passkeys(mut self, text: &str) -> Result<Self, String> {
        let mut keys = HashSet::new();
        for (n, entry) in entries(text) {
            if entry.len() < MIN_PASSKEY_LEN {
                return Err(format!(
                    "line {n}: a passkey must be at least {MIN_PASSKEY_LEN} characters long (short ones can be guessed)"
                ));
            }
            if !entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "line {n}: a passkey may hold letters, digits, - and _ only"
                ));
            }
            keys.insert(entry.to_string());
        }
        self.passkeys = Some(keys);
        Ok(self)
    }

    pub fn mode(&self) -> ListMode {
        self.mode
    }

    pub fn listed(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_private(&self) -> bool {
        self.passkeys.is_some()
    }

    pub fn passkey_count(&self) -> usize {
        self.passkeys.as_ref().map_or(0, HashSet::len)
    }

    /// May this torrent be announced or scraped?
    pub fn check_torrent(&self, hash: &InfoHash) -> Result<(), Refusal> {
        match self.mode {
            ListMode::Off => Ok(()),
            ListMode::Allow if self.hashes.contains(hash) => Ok(()),
            ListMode::Allow => Err(Refusal::NotAllowed),
            ListMode::Deny if self.hashes.contains(hash) => Err(Refusal::Denied),
            ListMode::Deny => Ok(()),
        }
    }

    /// May a request carrying `passkey` (from the URL path or BEP 41 URL data) proceed? A public
    /// tracker ignores passkeys, so private-tracker URLs keep working against it.
    pub fn check_passkey(&self, passkey: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(keys) = &self.passkeys else {
            return Ok(());
        };
        let key = passkey.ok_or(Refusal::PasskeyRequired)?;
        let key = std::str::from_utf8(key).map_err(|_| Refusal::UnknownPasskey)?;
        if keys.contains(key) {
            Ok(())
        } else {
            Err(Refusal::UnknownPasskey)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const A: &str = "0102030405060708090a0b0c0d0e0f1011121314";

    #[test]
    fn lists_parse_with_comments_and_report_bad_lines() {
        let text = format!(
            "# torrents\n{A}  # first\n\n{}\n",
            A.to_uppercase().replace("01", "AA")
        );
        let access = Access::open().with_list(ListMode::Allow, &text).unwrap();
        assert_eq!(access.listed(), 2);
        let err = Access::open()
            .with_list(ListMode::Deny, "abc\n")
            .unwrap_err();
        assert_eq!(err, "line 1: not a 40-digit hex info hash: \"abc\"");
        assert_eq!("Deny".parse::<ListMode>(), Ok(ListMode::Deny));
        assert!("maybe".parse::<ListMode>().is_err());
    }

    #[test]
    fn modes_decide() {
        let listed = parse_hex_hash(A).unwrap();
        let other = InfoHash([9; 20]);
        let allow = Access::open().with_list(ListMode::Allow, A).unwrap();
        assert_eq!(allow.check_torrent(&listed), Ok(()));
        assert_eq!(allow.check_torrent(&other), Err(Refusal::NotAllowed));
        let deny = Access::open().with_list(ListMode::Deny, A).unwrap();
        assert_eq!(deny.check_torrent(&listed), Err(Refusal::Denied));
        assert_eq!(deny.check_torrent(&other), Ok(()));
        assert_eq!(Access::open().check_torrent(&other), Ok(()));
    }

    #[test]
    fn passkeys_decide_only_when_private() {
        assert_eq!(Access::open().check_passkey(None), Ok(()));
        assert_eq!(Access::open().check_passkey(Some(b"whatever")), Ok(()));
        let private = Access::open()
            .with_passkeys("alice-1234567890ab\nbob_4567890abcdef\n")
            .unwrap();
        assert_eq!(private.check_passkey(Some(b"alice-1234567890ab")), Ok(()));
        assert_eq!(
            private.check_passkey(Some(b"mallory")),
            Err(Refusal::UnknownPasskey)
        );
        assert_eq!(private.check_passkey(None), Err(Refusal::PasskeyRequired));
        assert!(Access::open().with_passkeys("a b\n").is_err());
        let short = Access::open().with_passkeys("long-enough-0123456\nshort-0123\n");
        assert_eq!(
            short.err().as_deref(),
            Some(
                "line 2: a passkey must be at least 16 characters long (short ones can be guessed)"
            )
        );
    }

    #[test]
    fn a_hash_is_forty_hex_digits_and_nothing_else() {
        assert!(parse_hex_hash(A).is_some());
        // from_str_radix alone reads "+f" as 15: such a line once passed for the hash 0f…
        let signed = format!("+f{}", &A[2..]);
        assert_eq!(parse_hex_hash(&signed), None);
        assert_eq!(parse_hex_hash(&A[1..]), None);
        assert!(Access::open().with_list(ListMode::Allow, &signed).is_err());
    }
}
