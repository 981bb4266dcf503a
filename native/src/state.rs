//! The state file: swarms and completed counts saved across restarts.
//!
//! Layout (little-endian), versioned and checksummed so a torn or corrupted file is recognised
//! instead of half-loaded:
//!
//! ```text
//! "ETSTATE\0"  u32 version  u32 saved-at (Unix s)  u32 torrents
//! per torrent: [u8;20] info hash  u32 completed  u32 IPv4 peers  u32 IPv6 peers
//!              IPv4 peers: [u8;6] address+port  u8 flags (1 = seeding)  u32 last announce
//!              IPv6 peers: [u8;18] address+port  u8 flags  u32 last announce
//! u32 CRC-32 of everything before it
//! ```
//!
//! Written to `<file>.tmp`, flushed to disk, then renamed over the file, so a crash mid-write
//! leaves the previous state intact. Owns the file and its format; the store's contents are the
//! core's.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use edgetracker::InfoHash;
use edgetracker::store::memory::MemoryStore;
use edgetracker::swarm::PeerAddr;

const MAGIC: &[u8; 8] = b"ETSTATE\0";
/// Fewest bytes a torrent and a peer take in the file.
const TORRENT_MIN: usize = 20 + 4 + 4 + 4;
const PEER_MIN: usize = 6 + 1 + 4;
const VERSION: u32 = 1;

/// What a save or a load covered, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub torrents: usize,
    pub peers: usize,
}

/// Serialises every torrent of `store`. Each shard is copied under its lock into memory (no I/O
/// while announces wait); the file is written afterwards.
pub fn encode(store: &MemoryStore, now: u32) -> (Vec<u8>, Summary) {
    let mut body = Vec::new();
    let mut summary = Summary::default();
    store.for_each_torrent(|hash, t| {
        summary.torrents += 1;
        body.extend_from_slice(&hash.0);
        body.extend_from_slice(&t.downloaded.to_le_bytes());
        let v6 = t.v6.as_deref();
        body.extend_from_slice(&(t.v4.len() as u32).to_le_bytes());
        body.extend_from_slice(&(v6.map_or(0, |l| l.len()) as u32).to_le_bytes());
        for (addr, seeding, seen) in t.v4.iter_seen(now) {
            body.extend_from_slice(addr);
            body.push(u8::from(seeding));
            body.extend_from_slice(&seen.to_le_bytes());
        }
        for (addr, seeding, seen) in v6.into_iter().flat_map(|l| l.iter_seen(now)) {
            body.extend_from_slice(addr);
            body.push(u8::from(seeding));
            body.extend_from_slice(&seen.to_le_bytes());
        }
        summary.peers += t.v4.len() + v6.map_or(0, |l| l.len());
    });
    let mut out = Vec::with_capacity(body.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&now.to_le_bytes());
    out.extend_from_slice(&(summary.torrents as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    (out, summary)
}

/// Reads fields off a byte slice, failing (never panicking) past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
}

/// Checks and loads `bytes` into `store`, dropping peers past the timeout at `now`. Nothing is
/// loaded unless the whole file checks out.
pub fn decode_into(bytes: &[u8], store: &MemoryStore, now: u32) -> Result<Summary, String> {
    let (content, crc) = bytes
        .split_at_checked(bytes.len().saturating_sub(4))
        .filter(|_| bytes.len() >= 24)
        .ok_or("too short to be a state file")?;
    if !content.starts_with(MAGIC) {
        return Err("not an edgetracker state file".into());
    }
    if crc32fast::hash(content).to_le_bytes() != crc {
        return Err("checksum mismatch (torn or corrupted write)".into());
    }
    let mut r = Reader(&content[MAGIC.len()..]);
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!("unsupported state file version {version}"));
    }
    let _saved_at = r.u32()?;
    let torrents = r.u32()?;
    // Parse everything before touching the store, so a bad file loads nothing. Room is reserved
    // only for what the bytes left can hold: a header claiming 4 billion torrents must not
    // allocate for them (the fuzzer found 48 MB reserved by a 30-byte file).
    let mut parsed = Vec::with_capacity((torrents as usize).min(r.0.len() / TORRENT_MIN));
    for _ in 0..torrents {
        let hash = InfoHash(r.array()?);
        let downloaded = r.u32()?;
        let (n4, n6) = (r.u32()?, r.u32()?);
        let claimed = (n4 as usize).saturating_add(n6 as usize);
        let mut peers = Vec::with_capacity(claimed.min(r.0.len() / PEER_MIN));
        for _ in 0..n4 {
            let addr = PeerAddr::V4(r.array()?);
            peers.push((addr, r.take(1)?[0] & 1 == 1, r.u32()?));
        }
        for _ in 0..n6 {
            let addr = PeerAddr::V6(r.array()?);
            peers.push((addr, r.take(1)?[0] & 1 == 1, r.u32()?));
        }
        parsed.push((hash, downloaded, peers));
    }
    if !r.0.is_empty() {
        return Err("trailing bytes after the last torrent".into());
    }
    let mut summary = Summary::default();
    for (hash, downloaded, peers) in parsed {
        summary.peers += store.restore(hash, downloaded, peers, now);
        summary.torrents += 1;
    }
    Ok(summary)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Saves `store` to `path` atomically: write a temporary file, flush it to disk, rename.
pub fn save(store: &MemoryStore, path: &Path, now: u32) -> io::Result<Summary> {
    let (bytes, summary) = encode(store, now);
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename lives in the directory: sync it too, or a power cut can undo it.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(summary)
}

/// What happened when loading at start.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// No state file yet: a first start.
    Missing,
    Loaded(Summary),
    /// The file was unreadable or corrupt; it was moved aside to `<file>.corrupt` and the
    /// tracker starts empty rather than not at all.
    Skipped {
        reason: String,
    },
}

/// Loads `path` into `store` if it exists. A file that cannot be used is moved aside, never left
/// where the next save would overwrite it; `Err` when it cannot even be moved (the tracker must
/// not start and destroy it then).
pub fn load(store: &MemoryStore, path: &Path, now: u32) -> Result<Loaded, String> {
    let reason = match std::fs::read(path) {
        Ok(bytes) => match decode_into(&bytes, store, now) {
            Ok(summary) => return Ok(Loaded::Loaded(summary)),
            Err(reason) => reason,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => format!("cannot read it: {e}"),
    };
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = PathBuf::from(aside);
    match std::fs::rename(path, &aside) {
        Ok(()) => Ok(Loaded::Skipped {
            reason: format!("{}: {reason} (kept as {})", path.display(), aside.display()),
        }),
        Err(e) => Err(format!(
            "state file {}: {reason}, and it cannot be moved aside ({e}); fix or remove it, or \
             set [state] file = \"\" to run without one",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetracker::protocol::types::{Event, SwarmCounts};
    use edgetracker::store::PeerAnnounce;
    use edgetracker::swarm::Policy;
    use rand::SeedableRng;

    fn store() -> MemoryStore {
        MemoryStore::new(Policy::default(), [3; 16])
    }

    fn filled(now: u32) -> MemoryStore {
        let s = store();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        for (i, ip) in ["10.0.0.1", "10.0.0.2", "2001:db8::7"].iter().enumerate() {
            let a = PeerAnnounce {
                info_hash: InfoHash([i as u8 % 2; 20]),
                peer: PeerAddr::new(ip.parse().unwrap(), 1000 + i as u16),
                event: if i == 1 {
                    Event::Completed
                } else {
                    Event::Started
                },
                seeding: i != 2,
                want: 0,
            };
            s.announce_now(&a, now, &mut rng, &mut out).unwrap();
        }
        s
    }

    fn counts(s: &MemoryStore) -> Vec<SwarmCounts> {
        let mut out = Vec::new();
        s.scrape_now(&[InfoHash([0; 20]), InfoHash([1; 20])], &mut out);
        out
    }

    #[test]
    fn round_trips_swarms_and_completed_counts() {
        let original = filled(1_000_000);
        let (bytes, summary) = encode(&original, 1_000_100);
        assert_eq!(
            summary,
            Summary {
                torrents: 2,
                peers: 3
            }
        );
        let restored = store();
        assert_eq!(
            decode_into(&bytes, &restored, 1_000_200),
            Ok(Summary {
                torrents: 2,
                peers: 3
            })
        );
        assert_eq!(counts(&restored), counts(&original));
        assert_eq!(restored.totals(), original.totals());
    }

    #[test]
    fn expired_peers_are_dropped_on_load() {
        let (bytes, _) = encode(&filled(1_000_000), 1_000_000);
        let restored = store();
        let later = 1_000_000 + Policy::default().peer_timeout + 1;
        assert_eq!(
            decode_into(&bytes, &restored, later),
            Ok(Summary {
                torrents: 2,
                peers: 0
            })
        );
        assert_eq!(
            counts(&restored)[1].downloaded,
            1,
            "completed counts outlive their peers"
        );
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_refused_without_loading_anything() {
        let (bytes, _) = encode(&filled(1_000_000), 1_000_000);
        for cut in 0..bytes.len() {
            let s = store();
            assert!(
                decode_into(&bytes[..cut], &s, 1_000_000).is_err(),
                "cut at {cut}"
            );
            assert_eq!(s.totals().torrents, 0);
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let s = store();
            assert!(decode_into(&bad, &s, 1_000_000).is_err(), "flip at {i}");
            assert_eq!(s.totals().torrents, 0);
        }
    }

    #[test]
    fn save_is_atomic_and_load_sets_corrupt_files_aside() {
        let dir =
            std::env::temp_dir().join(format!("edgetracker-state-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        assert_eq!(load(&store(), &path, 1), Ok(Loaded::Missing));
        save(&filled(1_000_000), &path, 1_000_000).unwrap();
        assert!(!tmp_path(&path).exists());
        assert_eq!(
            load(&store(), &path, 1_000_001),
            Ok(Loaded::Loaded(Summary {
                torrents: 2,
                peers: 3
            }))
        );
        std::fs::write(&path, b"garbage").unwrap();
        let Ok(Loaded::Skipped { reason }) = load(&store(), &path, 1) else {
            panic!("loaded garbage")
        };
        assert!(reason.contains("too short"), "{reason}");
        assert!(dir.join("state.corrupt").exists() && !path.exists());
        // Unreadable (here: a directory where the file should be) is set aside just the same,
        // so the next save cannot overwrite what it holds.
        std::fs::remove_file(dir.join("state.corrupt")).unwrap();
        std::fs::create_dir(&path).unwrap();
        let Ok(Loaded::Skipped { reason }) = load(&store(), &path, 1) else {
            panic!("loaded a directory")
        };
        assert!(reason.contains("cannot read it"), "{reason}");
        assert!(dir.join("state.corrupt").is_dir() && !path.exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
