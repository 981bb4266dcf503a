//! The state file: swarms and completed counts saved across restarts.
//!
//! Layout (little-endian), versioned and checksummed so a torn or corrupted file is recognised
//! instead of half-loaded:
//!
//! ```text
//! "ETSTATE\0"  u32 version (2)  u32 saved-at (Unix s)
//! blocks, one per shard with torrents: u32 torrents (> 0), then each torrent:
//!              [u8;20] info hash  u32 completed  u16 quiet since (Unix day, 0: has peers)
//!              u32 IPv4 peers  u32 IPv6 peers
//!              IPv4 peers: [u8;6] address+port  u8 flags (1 = seeding)  u32 last announce
//!              IPv6 peers: [u8;18] address+port  u8 flags  u32 last announce
//! u32 0 (no more blocks)
//! u32 CRC-32 of everything before it
//! ```
//!
//! (Version 1, still read, had one torrent count in the header, no blocks, and no quiet day.)
//!
//! Both ways stream, so neither needs a copy of the swarms in memory: a save serialises one shard
//! at a time under its lock into a buffer, then writes it with no lock held; a load reads the
//! file twice, once to check it whole (structure and checksum, allocating nothing for it) and
//! once to restore it, so a bad file still loads nothing. Written to `<file>.tmp`, flushed to
//! disk, then renamed over the file, so a crash mid-write leaves the previous state intact. Owns
//! the file and its format; the store's contents are the core's.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use edgetracker::InfoHash;
use edgetracker::UnixTime;
use edgetracker::store::memory::{MemoryStore, SavedPeer, SavedTorrent};
use edgetracker::swarm::PeerAddr;
use edgetracker::swarm::torrent::Torrent;

const MAGIC: &[u8; 8] = b"ETSTATE\0";
const VERSION: u32 = 2;

/// What a save or a load covered, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub torrents: usize,
    pub peers: usize,
    /// A load's torrents and peers that the caps kept out (a file written under larger caps,
    /// or made up).
    pub refused_torrents: usize,
    pub refused_peers: usize,
}

/// Peers of one torrent handed to the store at a time while loading: a file naming millions of
/// peers for one torrent must not be held whole in memory (nor past the caps).
const RESTORE_PART: usize = 1 << 16;

/// A writer that keeps the CRC-32 of everything written through it.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_torrent(out: &mut Vec<u8>, hash: &InfoHash, t: &Torrent, now: UnixTime) -> usize {
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(&t.downloaded.to_le_bytes());
    out.extend_from_slice(&t.quiet_since.to_le_bytes());
    let v6 = t.v6.as_deref();
    out.extend_from_slice(&(t.v4.len() as u32).to_le_bytes());
    out.extend_from_slice(&(v6.map_or(0, |l| l.len()) as u32).to_le_bytes());
    for (addr, seeding, seen) in t.v4.iter_seen(now) {
        out.extend_from_slice(addr);
        out.push(u8::from(seeding));
        out.extend_from_slice(&seen.secs().to_le_bytes());
    }
    for (addr, seeding, seen) in v6.into_iter().flat_map(|l| l.iter_seen(now)) {
        out.extend_from_slice(addr);
        out.push(u8::from(seeding));
        out.extend_from_slice(&seen.secs().to_le_bytes());
    }
    t.v4.len() + v6.map_or(0, |l| l.len())
}

/// Writes every torrent of `store` to `out`, one shard at a time: each shard is copied under its
/// lock into one reused buffer (no I/O while announces wait), then written with no lock held.
pub fn write(store: &MemoryStore, now: UnixTime, out: impl Write) -> io::Result<Summary> {
    let mut out = Checksummed {
        inner: out,
        crc: crc32fast::Hasher::new(),
    };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&now.secs().to_le_bytes())?;
    let mut summary = Summary::default();
    let mut block = Vec::new();
    for shard in 0..store.shard_count() {
        block.clear();
        let mut torrents = 0u32;
        store.for_each_torrent_of_shard(shard, |hash, t| {
            torrents += 1;
            summary.peers += put_torrent(&mut block, hash, t, now);
        });
        if torrents > 0 {
            summary.torrents += torrents as usize;
            out.write_all(&torrents.to_le_bytes())?;
            out.write_all(&block)?;
        }
        // A shard's buffer is freed once a large one has passed, not kept at its peak.
        if block.capacity() > 1 << 20 {
            block = Vec::new();
        }
    }
    out.write_all(&0u32.to_le_bytes())?;
    let crc = out.crc.clone().finalize();
    out.inner.write_all(&crc.to_le_bytes())?;
    out.inner.flush()?;
    Ok(summary)
}

/// The whole file in memory (tests, fuzzing).
pub fn encode(store: &MemoryStore, now: UnixTime) -> (Vec<u8>, Summary) {
    let mut bytes = Vec::new();
    let summary = write(store, now, &mut bytes).expect("writing to memory");
    (bytes, summary)
}

/// A reader of the file's fields that keeps the CRC-32 of everything read through it.
struct Fields<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Fields<R> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => "truncated".to_string(),
            _ => format!("cannot read it: {e}"),
        })?;
        self.crc.update(&b);
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
}

/// Reads a whole file from `input`, handing each torrent to `restore` (hash, completed count,
/// peers, and whether these are its last peers); checks the checksum at the end. Allocates at
/// most [`RESTORE_PART`] peers at a time (a torrent with more comes in several calls), and for
/// them only what the bytes read so far back (a header cannot make it reserve more).
fn parse(
    input: impl Read,
    mut restore: impl FnMut(SavedTorrent, &mut Vec<SavedPeer>, bool),
) -> Result<(), String> {
    let mut r = Fields {
        inner: input,
        crc: crc32fast::Hasher::new(),
    };
    let magic: [u8; 8] = r.take().map_err(|e| match e.as_str() {
        "truncated" => "too short to be a state file".to_string(),
        _ => e,
    })?;
    if &magic != MAGIC {
        return Err("not an edgetracker state file".into());
    }
    let version = r.u32()?;
    if version != 1 && version != VERSION {
        return Err(format!("unsupported state file version {version}"));
    }
    let _saved_at = r.u32()?;
    let mut peers = Vec::new();
    let mut block = r.u32()?;
    loop {
        if version == VERSION && block == 0 {
            break;
        }
        for _ in 0..block {
            let hash = InfoHash(r.take()?);
            let downloaded = r.u32()?;
            let quiet_since = if version == 1 {
                0
            } else {
                u16::from_le_bytes(r.take()?)
            };
            let (n4, n6) = (r.u32()?, r.u32()?);
            let saved = SavedTorrent {
                hash,
                downloaded,
                quiet_since,
            };
            peers.clear();
            for i in 0..u64::from(n4) + u64::from(n6) {
                let addr = if i < u64::from(n4) {
                    PeerAddr::V4(r.take()?)
                } else {
                    PeerAddr::V6(r.take()?)
                };
                let [flags] = r.take()?;
                peers.push(SavedPeer {
                    addr,
                    seeding: flags & 1 == 1,
                    last_seen: UnixTime(r.u32()?),
                });
                if peers.len() == RESTORE_PART {
                    restore(saved, &mut peers, false);
                    peers.clear();
                }
            }
            restore(saved, &mut peers, true);
        }
        if version == 1 {
            break;
        }
        block = r.u32()?;
    }
    let expected = r.crc.clone().finalize();
    let mut crc = [0u8; 4];
    r.inner
        .read_exact(&mut crc)
        .map_err(|_| "truncated".to_string())?;
    if u32::from_le_bytes(crc) != expected {
        return Err("checksum mismatch (torn or corrupted write)".into());
    }
    let mut rest = [0u8; 1];
    if r.inner.read(&mut rest).map_err(|e| e.to_string())? != 0 {
        return Err("trailing bytes after the checksum".into());
    }
    Ok(())
}

/// Whether the last 4 bytes of `input` are the CRC-32 of all before them, read in chunks.
fn checksum_matches(mut input: impl Read) -> Result<(), String> {
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    // The last 4 bytes seen so far: the checksum, unless more follow.
    let (mut tail, mut total) = (Vec::with_capacity(4), 0usize);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read it: {e}")),
        };
        total += n;
        tail.extend_from_slice(&buf[..n]);
        let keep = tail.len().min(4);
        let done = tail.len() - keep;
        crc.update(&tail[..done]);
        tail.drain(..done);
    }
    if total < MAGIC.len() + 12 {
        return Err("too short to be a state file".into());
    }
    if tail[..] != crc.finalize().to_le_bytes() {
        return Err("checksum mismatch (torn or corrupted write)".into());
    }
    Ok(())
}

/// Checks a whole file, then loads it into `store`, dropping peers past the timeout at `now`.
/// `input` is read from its start once per pass: the checksum first (so a torn or corrupted
/// file is reported as such), then the structure, then the restore. One open file for all three,
/// so a save renaming a new file into place meanwhile cannot mix two files. Nothing is loaded
/// unless the whole file checks out.
fn load_from(
    mut input: impl Read + Seek,
    store: &MemoryStore,
    now: UnixTime,
) -> Result<Summary, String> {
    let rewind = |input: &mut dyn SeekRead| {
        input
            .seek(SeekFrom::Start(0))
            .map(|_| ())
            .map_err(|e| format!("cannot read it: {e}"))
    };
    let mut head = [0u8; 8];
    let n = input
        .read(&mut head)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if n == MAGIC.len() && &head != MAGIC {
        return Err("not an edgetracker state file".into());
    }
    rewind(&mut input)?;
    checksum_matches(&mut input)?;
    rewind(&mut input)?;
    parse(&mut input, |_, _, _| {})?;
    rewind(&mut input)?;
    let mut summary = Summary::default();
    let mut refused_torrent = false;
    parse(&mut input, |saved, peers, last| {
        let restored = store.restore(saved, peers.drain(..), now);
        summary.peers += restored.peers;
        summary.refused_peers += restored.refused_peers;
        refused_torrent |= restored.refused_torrent;
        if last {
            summary.torrents += 1;
            summary.refused_torrents += usize::from(std::mem::take(&mut refused_torrent));
        }
    })?;
    Ok(summary)
}

trait SeekRead: Read + Seek {}
impl<T: Read + Seek> SeekRead for T {}

/// Loads a state file held in memory into `store`, as [`load`] does from disk (tests, fuzzing).
pub fn decode_into(bytes: &[u8], store: &MemoryStore, now: UnixTime) -> Result<Summary, String> {
    load_from(io::Cursor::new(bytes), store, now)
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
pub fn save(store: &MemoryStore, path: &Path, now: UnixTime) -> io::Result<Summary> {
    let tmp = tmp_path(path);
    let mut file = BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
    let summary = write(store, now, &mut file)?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
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
pub fn load(store: &MemoryStore, path: &Path, now: UnixTime) -> Result<Loaded, String> {
    let reason = match File::open(path) {
        Ok(file) => match load_from(BufReader::with_capacity(1 << 16, file), store, now) {
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

    fn filled(now: UnixTime) -> MemoryStore {
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
    fn a_file_past_the_caps_loads_within_them_a_part_at_a_time() {
        // Before: a file with 10,000,000 peers in one torrent (cap 1 M) was loaded whole, with a
        // peak of 334 MB against 107 MB steady, and 20 peers of one address (cap 16).
        let big = Policy {
            max_peers_per_torrent: u32::MAX,
            max_peers_per_address: u32::MAX,
            ..Policy::default()
        };
        let now = UnixTime(1_000_000);
        let original = MemoryStore::new(big, [3; 16]);
        let peers = 3 * RESTORE_PART as u32 / 2;
        let saved = SavedTorrent {
            hash: InfoHash([9; 20]),
            downloaded: 2,
            quiet_since: 0,
        };
        original.restore(
            saved,
            (0..peers).map(|i| SavedPeer {
                addr: PeerAddr::new(
                    std::net::Ipv4Addr::from(0x0a00_0000 + i / 4).into(),
                    i as u16 % 4,
                ),
                seeding: i % 2 == 0,
                last_seen: now,
            }),
            now,
        );
        original.restore(
            SavedTorrent {
                hash: InfoHash([8; 20]),
                ..saved
            },
            (0..20).map(|port| SavedPeer {
                addr: PeerAddr::new("10.9.9.9".parse().unwrap(), port),
                seeding: true,
                last_seen: now,
            }),
            now,
        );
        let (bytes, _) = encode(&original, now);
        let capped = MemoryStore::new(
            Policy {
                max_peers_per_torrent: 70_000,
                ..Policy::default()
            },
            [3; 16],
        );
        let loaded = decode_into(&bytes, &capped, now).unwrap();
        assert_eq!(
            loaded,
            Summary {
                torrents: 2,
                peers: 70_000 + 16,
                refused_torrents: 0,
                refused_peers: peers as usize - 70_000 + 4,
            }
        );
        assert_eq!(capped.totals().peers(), 70_016);
    }

    #[test]
    fn round_trips_swarms_and_completed_counts() {
        let original = filled(UnixTime(1_000_000));
        let (bytes, summary) = encode(&original, UnixTime(1_000_100));
        assert_eq!(
            summary,
            Summary {
                torrents: 2,
                peers: 3,
                ..Summary::default()
            }
        );
        let restored = store();
        assert_eq!(
            decode_into(&bytes, &restored, UnixTime(1_000_200)),
            Ok(Summary {
                torrents: 2,
                peers: 3,
                ..Summary::default()
            })
        );
        assert_eq!(counts(&restored), counts(&original));
        assert_eq!(restored.totals(), original.totals());
    }

    #[test]
    fn expired_peers_are_dropped_on_load() {
        let (bytes, _) = encode(&filled(UnixTime(1_000_000)), UnixTime(1_000_000));
        let restored = store();
        let later = 1_000_000 + Policy::default().peer_timeout + 1;
        assert_eq!(
            decode_into(&bytes, &restored, UnixTime(later)),
            Ok(Summary {
                torrents: 2,
                peers: 0,
                ..Summary::default()
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
        let (bytes, _) = encode(&filled(UnixTime(1_000_000)), UnixTime(1_000_000));
        for cut in 0..bytes.len() {
            let s = store();
            assert!(
                decode_into(&bytes[..cut], &s, UnixTime(1_000_000)).is_err(),
                "cut at {cut}"
            );
            assert_eq!(s.totals().torrents, 0);
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let s = store();
            assert!(
                decode_into(&bad, &s, UnixTime(1_000_000)).is_err(),
                "flip at {i}"
            );
            assert_eq!(s.totals().torrents, 0);
        }
    }

    #[test]
    fn a_restart_does_not_restart_the_retention_of_a_count_kept_without_peers() {
        let policy = Policy {
            completed_retention: 3 * 86_400,
            ..Policy::default()
        };
        let s = MemoryStore::new(policy.clone(), [3; 16]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        let t0 = 1_750_000_000;
        let done = PeerAnnounce {
            info_hash: InfoHash([8; 20]),
            peer: PeerAddr::new("10.0.0.1".parse().unwrap(), 1),
            event: Event::Completed,
            seeding: true,
            want: 0,
        };
        s.announce_now(&done, UnixTime(t0), &mut rng, &mut Vec::new())
            .unwrap();
        let stop = PeerAnnounce {
            event: Event::Stopped,
            ..done
        };
        s.announce_now(&stop, UnixTime(t0), &mut rng, &mut Vec::new())
            .unwrap();
        s.expire_now(UnixTime(t0 + 10)); // found without peers: day 1 of 3
        // Saved and restarted two days later: one day is left, not three.
        let (bytes, _) = encode(&s, UnixTime(t0 + 2 * 86_400));
        let restarted = MemoryStore::new(policy, [3; 16]);
        decode_into(&bytes, &restarted, UnixTime(t0 + 2 * 86_400)).unwrap();
        restarted.expire_now(UnixTime(t0 + 2 * 86_400 + 10));
        assert_eq!(restarted.totals().torrents, 1);
        restarted.expire_now(UnixTime(t0 + 3 * 86_400 + 10));
        assert_eq!(restarted.totals().torrents, 0, "forgotten on schedule");
    }

    #[test]
    fn a_state_file_moves_between_stores_of_any_shard_layout() {
        // A restart with a different udp_threads builds a store grouped otherwise (and each start
        // keys its shards anew): the file is by torrent, not by shard.
        let policy = Policy::default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let now = UnixTime(1_750_000_000);
        let one = MemoryStore::new(policy.clone(), [3; 16]);
        for i in 0..500u32 {
            let mut hash = [0u8; 20];
            hash[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            let a = PeerAnnounce {
                info_hash: InfoHash(hash),
                peer: PeerAddr::new("10.0.0.1".parse().unwrap(), 1 + (i % 3) as u16),
                event: Event::Started,
                seeding: i % 2 == 0,
                want: 0,
            };
            one.announce_now(&a, now, &mut rng, &mut Vec::new())
                .unwrap();
        }
        let (bytes, _) = encode(&one, now);
        let grouped = MemoryStore::with_groups(policy.clone(), [4; 16], 3);
        decode_into(&bytes, &grouped, now).unwrap();
        assert_eq!(grouped.totals(), one.totals());
        let (again, _) = encode(&grouped, now);
        let back = MemoryStore::new(policy, [5; 16]);
        decode_into(&again, &back, now).unwrap();
        assert_eq!(back.totals(), one.totals());
    }

    #[test]
    fn version_1_files_still_load() {
        // Written by the tracker before saves streamed: one count in the header, no blocks.
        let mut v1 = MAGIC.to_vec();
        for n in [1u32, 1_000_000, 1] {
            v1.extend_from_slice(&n.to_le_bytes());
        }
        v1.extend_from_slice(&[5; 20]);
        for n in [3u32, 1, 0] {
            v1.extend_from_slice(&n.to_le_bytes());
        }
        v1.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1, 1]);
        v1.extend_from_slice(&999_990u32.to_le_bytes());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let s = store();
        assert_eq!(
            decode_into(&v1, &s, UnixTime(1_000_000)),
            Ok(Summary {
                torrents: 1,
                peers: 1,
                ..Summary::default()
            })
        );
        let mut got = Vec::new();
        s.scrape_now(&[InfoHash([5; 20])], &mut got);
        assert_eq!(
            got,
            [SwarmCounts {
                complete: 1,
                incomplete: 0,
                downloaded: 3
            }]
        );
    }

    #[test]
    fn save_is_atomic_and_load_sets_corrupt_files_aside() {
        let dir =
            std::env::temp_dir().join(format!("edgetracker-state-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        assert_eq!(load(&store(), &path, UnixTime(1)), Ok(Loaded::Missing));
        save(&filled(UnixTime(1_000_000)), &path, UnixTime(1_000_000)).unwrap();
        assert!(!tmp_path(&path).exists());
        assert_eq!(
            load(&store(), &path, UnixTime(1_000_001)),
            Ok(Loaded::Loaded(Summary {
                torrents: 2,
                peers: 3,
                ..Summary::default()
            }))
        );
        std::fs::write(&path, b"garbage").unwrap();
        let Ok(Loaded::Skipped { reason }) = load(&store(), &path, UnixTime(1)) else {
            panic!("loaded garbage")
        };
        assert!(reason.contains("too short"), "{reason}");
        assert!(dir.join("state.corrupt").exists() && !path.exists());
        // Unreadable (here: a directory where the file should be) is set aside just the same,
        // so the next save cannot overwrite what it holds.
        std::fs::remove_file(dir.join("state.corrupt")).unwrap();
        std::fs::create_dir(&path).unwrap();
        let Ok(Loaded::Skipped { reason }) = load(&store(), &path, UnixTime(1)) else {
            panic!("loaded a directory")
        };
        assert!(reason.contains("cannot read it"), "{reason}");
        assert!(dir.join("state.corrupt").is_dir() && !path.exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
