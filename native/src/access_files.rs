//! The operator's access files: the info-hash list and the passkeys, loaded at start and
//! reloaded on SIGHUP or when a file changes.
//!
//! Owns reading files and noticing changes; the rules themselves are the core's
//! ([`edgetracker::access`]). A reload that fails (unreadable file, bad line) keeps the rules in
//! force and says why in the log: a typo must not open a private tracker or drop its allow list.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use edgetracker::access::{Access, ListMode};

use crate::config::AccessConfig;

/// What identifies a file's version without reading it.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub struct AccessFiles {
    mode: ListMode,
    list_file: Option<PathBuf>,
    passkeys_file: Option<PathBuf>,
    stamps: (Stamp, Stamp),
}

impl AccessFiles {
    pub fn new(config: &AccessConfig) -> Result<Self, String> {
        let path = |p: &str| (!p.is_empty()).then(|| PathBuf::from(p));
        let files = AccessFiles {
            mode: config.list_mode.parse()?,
            list_file: path(&config.list_file),
            passkeys_file: path(&config.passkeys_file),
            stamps: (None, None),
        };
        if files.mode != ListMode::Off && files.list_file.is_none() {
            return Err(format!(
                "[access] list_mode = {:?} needs a list_file",
                config.list_mode
            ));
        }
        Ok(files)
    }

    /// Reads both files into rules. Their versions are noted first, so a file that fails to
    /// load is reported once, not at every check, until it changes again.
    pub fn load(&mut self) -> Result<Access, String> {
        self.stamps = self.current_stamps();
        let mut access = Access::open();
        if let Some(path) = &self.list_file {
            let text = read(path)?;
            access = access
                .with_list(self.mode, &text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(path) = &self.passkeys_file {
            let text = read(path)?;
            access = access
                .with_passkeys(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(access)
    }

    fn current_stamps(&self) -> (Stamp, Stamp) {
        (
            self.list_file.as_deref().and_then(stamp),
            self.passkeys_file.as_deref().and_then(stamp),
        )
    }

    /// Whether either file changed (modification time or size) since the last load.
    pub fn changed(&self) -> bool {
        self.current_stamps() != self.stamps
    }
}

/// Describes rules for the log.
pub fn describe(access: &Access) -> String {
    let list = match access.mode() {
        ListMode::Off => "no info-hash list".to_string(),
        ListMode::Allow => format!("allow list of {} torrents", access.listed()),
        ListMode::Deny => format!("deny list of {} torrents", access.listed()),
    };
    if access.is_private() {
        format!("{list}, private with {} passkeys", access.passkey_count())
    } else {
        format!("{list}, public")
    }
}
