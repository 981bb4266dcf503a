//! The operator's access files: the info-hash list and the passkeys, loaded at start and
//! reloaded on SIGHUP or when a file changes.
//!
//! Owns reading files and noticing changes; the rules themselves are the core's
//! ([`edgetracker::access`]). A reload that fails (unreadable file, bad line) keeps the rules in
//! force and says why in the log: a typo must not open a private tracker or drop its allow list.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use edgetracker::access::{Access, ListMode};

use crate::config::AccessSection;

/// What identifies a file's version without reading it: modification time and size, and on Unix
/// the inode and change time too, which no copy that preserves times (`cp -p`, `rsync -t`) and no
/// rename over the file can keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileVersion {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
    #[cfg(unix)]
    changed: (i64, i64),
}

fn version_of(path: &Path) -> Option<FileVersion> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Some(FileVersion {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: meta.ino(),
        #[cfg(unix)]
        changed: (meta.ctime(), meta.ctime_nsec()),
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub struct AccessFiles {
    mode: ListMode,
    list_file: Option<PathBuf>,
    passkeys_file: Option<PathBuf>,
    /// The versions last loaded.
    versions: (Option<FileVersion>, Option<FileVersion>),
    /// Versions seen changed at the last check, not yet loaded.
    settling: Option<(Option<FileVersion>, Option<FileVersion>)>,
}

impl AccessFiles {
    /// The files `config` names (which [`crate::config::Config::validate`] has checked).
    pub fn new(config: &AccessSection) -> Self {
        AccessFiles {
            mode: config.list_mode,
            list_file: config.list_file.clone(),
            passkeys_file: config.passkeys_file.clone(),
            versions: (None, None),
            settling: None,
        }
    }

    /// Reads both files into rules. Their versions are noted first, so a file that fails to
    /// load is reported once, not at every check, until it changes again.
    pub fn load(&mut self) -> Result<Access, String> {
        self.versions = self.current_versions();
        self.settling = None;
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

    fn current_versions(&self) -> (Option<FileVersion>, Option<FileVersion>) {
        (
            self.list_file.as_deref().and_then(version_of),
            self.passkeys_file.as_deref().and_then(version_of),
        )
    }

    /// Whether either file changed since the last load and has held still since the previous
    /// check: an editor that truncates and rewrites in place is not caught halfway, which for a
    /// deny list would let its torrents through until the next check.
    pub fn changed(&mut self) -> bool {
        let now = self.current_versions();
        if now == self.versions {
            self.settling = None;
            return false;
        }
        let settled = self.settling == Some(now);
        self.settling = Some(now);
        settled
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_same_size_rewrite_with_its_old_mtime_is_noticed_once_it_holds_still() {
        let dir = std::env::temp_dir().join(format!("edgetracker-versions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passkeys.txt");
        std::fs::write(&path, "alice0123456789ab\n").unwrap();
        let mut files = AccessFiles::new(&AccessSection {
            passkeys_file: Some(path.clone()),
            ..AccessSection::default()
        });
        let before = files.load().unwrap();
        assert!(!files.changed());

        // One passkey swapped for another of the same length, times kept (as `cp -p` does).
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "mallo0123456789ab\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(!files.changed(), "first seen: let it settle");
        assert!(files.changed(), "unchanged since: load it");
        let after = files.load().unwrap();
        assert_ne!(after, before);
        assert_eq!(
            after.check_passkey(Some(b"alice0123456789ab")),
            Err(edgetracker::access::Refusal::UnknownPasskey)
        );
        assert!(!files.changed());
        std::fs::remove_dir_all(dir).ok();
    }
}
