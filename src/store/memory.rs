//! The in-memory store: sharded hash maps of [`Torrent`]s behind short-held mutexes.
//!
//! Torrents are spread over shards by info hash; an announce locks one shard for the time of a
//! binary search and a sample, so threads serving different torrents rarely meet and no lock is
//! global. Store-wide totals are kept per shard as announces change them, so a stats page never
//! walks the swarms. Owns memory layout and locking; policy comes in as [`Policy`] and random
//! numbers as an RNG, and there is no clock here.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use rand_core::Rng;
use siphasher::sip::SipHasher13;

use super::{AnnounceError, Full, PeerAnnounce, PeerStore, StoreError, Totals};
use crate::protocol::types::{Event, InfoHash, SwarmCounts};
use crate::ratelimit::{Limiter, RateLimit, client_group};
use crate::swarm::Policy;
use crate::swarm::peer_list::Delta;
use crate::swarm::torrent::Torrent;
use crate::swarm::{PeerAddr, PeerStatus};
use crate::time::UnixTime;

/// Keyed SipHash-1-3 for the torrent maps. Info hashes come from the network, so an unkeyed
/// hash would let anyone fill one bucket chain; the key comes from the caller (no entropy here).
#[derive(Clone, Copy)]
pub(crate) struct KeyedHasher(pub(crate) [u8; 16]);

impl BuildHasher for KeyedHasher {
    type Hasher = SipHasher13;
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_key(&self.0)
    }
}

/// A shard on cache lines of its own. Every announce writes its shard's lock, so shards sharing
/// a line would make threads on different shards invalidate each other's copy (false sharing);
/// 128 rather than 64 bytes because x86 prefetches lines in pairs. One attribute, so no crate
/// (crossbeam's `CachePadded`) for it.
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Default, Clone, Copy)]
struct ShardTotals {
    seeders_v4: i64,
    leechers_v4: i64,
    seeders_v6: i64,
    leechers_v6: i64,
}

struct Shard {
    torrents: HashMap<InfoHash, Torrent, KeyedHasher>,
    totals: ShardTotals,
    /// Torrents a sweep found without peers (kept for their completed count), in the order it
    /// found them, with the day it did (their `quiet_since` then): at `max_torrents` the oldest
    /// makes room for a new torrent. An entry whose torrent has since gained peers or been
    /// dropped no longer matches its torrent and is skipped; sweeps drop such entries.
    quiet: VecDeque<(InfoHash, u16)>,
    /// Peers that said `completed` within the peer timeout, and when they last did: another
    /// `completed` from the same address and port in that time (after going back to leeching,
    /// or stopping and starting again) is not another download. Kept aside rather than in every
    /// peer's slot; sweeps forget entries past the timeout.
    completed: HashMap<(InfoHash, PeerAddr), UnixTime, KeyedHasher>,
}

/// The Unix day of `now`, as [`Torrent::quiet_since`] keeps it (never 0, which means "has peers").
fn day_of(now: UnixTime) -> u16 {
    ((now.secs() / 86_400) as u16).max(1)
}

/// Whether `hash` is a torrent without peers since `day` (an entry of [`Shard::quiet`] that still
/// holds).
fn quiet_since(
    torrents: &HashMap<InfoHash, Torrent, KeyedHasher>,
    hash: &InfoHash,
    day: u16,
) -> bool {
    torrents
        .get(hash)
        .is_some_and(|t| !t.has_peers() && t.quiet_since == day)
}

impl Shard {
    fn new(hash_key: [u8; 16]) -> Self {
        Shard {
            torrents: HashMap::with_hasher(KeyedHasher(hash_key)),
            totals: ShardTotals::default(),
            quiet: VecDeque::new(),
            completed: HashMap::with_hasher(KeyedHasher(hash_key)),
        }
    }

    /// Drops entries of [`Shard::quiet`] that no longer match their torrent, after a sweep that
    /// left `quiet_now` torrents without peers, and of [`Shard::completed`] older than `timeout`
    /// at `now`, so neither outgrows what it describes.
    fn tidy_aside(&mut self, quiet_now: usize, now: UnixTime, timeout: u32) {
        let torrents = &self.torrents;
        self.quiet
            .retain(|(hash, day)| quiet_since(torrents, hash, *day));
        // A torrent that went quiet, gained a peer and went quiet again on the same day has
        // two entries that both match: rare, but repeated every sweep it would add up.
        if self.quiet.len() > quiet_now {
            let mut seen = HashSet::with_capacity(quiet_now);
            self.quiet.retain(|(hash, _)| seen.insert(*hash));
        }
        self.completed.retain(|_, at| now.since(*at) <= timeout);
        if self.quiet.capacity() > 2 * self.quiet.len() + 64 {
            self.quiet.shrink_to_fit();
        }
        if self.completed.capacity() > 2 * self.completed.len() + 64 {
            self.completed.shrink_to_fit();
        }
    }

    /// The day the oldest torrent of [`Shard::quiet`] went quiet; stale entries in front of it
    /// are dropped.
    fn oldest_quiet(&mut self) -> Option<u16> {
        while let Some(&(hash, day)) = self.quiet.front() {
            if quiet_since(&self.torrents, &hash, day) {
                return Some(day);
            }
            self.quiet.pop_front();
        }
        None
    }

    /// Drops the oldest torrent kept without peers; false if there is none.
    fn evict_oldest_quiet(&mut self) -> bool {
        if self.oldest_quiet().is_none() {
            return false;
        }
        let (hash, _) = self.quiet.pop_front().expect("just seen");
        self.torrents.remove(&hash);
        true
    }

    fn apply(&mut self, v6: bool, d: Delta) {
        if v6 {
            self.totals.seeders_v6 += d.seeders;
            self.totals.leechers_v6 += d.leechers;
        } else {
            self.totals.seeders_v4 += d.seeders;
            self.totals.leechers_v4 += d.leechers;
        }
    }
}

/// A torrent as a state file keeps it, for [`MemoryStore::restore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedTorrent {
    pub hash: InfoHash,
    /// Its completed count.
    pub downloaded: u32,
    /// The day it was found without peers (see [`Torrent::quiet_since`]; 0: not, or not known).
    pub quiet_since: u16,
}

/// A peer as a state file keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedPeer {
    pub addr: PeerAddr,
    pub seeding: bool,
    /// When it last announced.
    pub last_seen: UnixTime,
}

/// What [`MemoryStore::restore`] put back, and what the caps kept out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Peers added.
    pub peers: usize,
    /// Peers a cap refused (not those past the peer timeout, nor repeats).
    pub refused_peers: usize,
    /// The torrent was new and `max_torrents` full.
    pub refused_torrent: bool,
}

/// Swarms in process memory. `Sync`: share it between socket threads behind an `Arc`.
pub struct MemoryStore {
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// Picks a torrent's shard. Keyed, and with a key of its own: info hashes come from clients,
    /// who could otherwise pile every torrent they make into one shard (and one lock, one sweep,
    /// one save slice); and the maps' own hash must stay independent of the shard, or each
    /// shard's map would see keys whose hashes share their low bits.
    shard_hasher: KeyedHasher,
    policy: Policy,
    /// The latest `now` a sweep ran at. Sweeps never run at an earlier time than that: with a
    /// clock stepped back, 16-bit stamps of fresh peers would look 18 hours old.
    latest_sweep: AtomicU32,
    /// Torrents and peers in the whole store, for the caps (kept as shards change them, so a
    /// cap check reads one number rather than every shard).
    torrent_count: AtomicUsize,
    peer_count: AtomicI64,
    quiet_evicted: AtomicU64,
    /// Shards come in `groups` runs of `shards_per_group`, one run per [`torrent_group`]; the
    /// keyed hash picks the shard within the run (1 group: the whole store).
    groups: usize,
    shards_per_group: usize,
    /// Each client's budget of new torrents ([`Policy::new_torrents_per_minute`]), and its
    /// network's (four times as much).
    new_torrents: Limiter,
    new_torrents_by_group: Limiter,
}

/// Which of `groups` a torrent belongs to: the first four bytes of its info-hash, big-endian,
/// modulo `groups`. Info-hashes are SHA-1 (or truncated SHA-256) digests, so that spreads real
/// torrents evenly. It is deliberately this simple: the native UDP server has the kernel compute
/// the same in a classic BPF program, which cannot run a keyed hash. A client can therefore pick
/// the group of a hash it makes up (not the shard within it), which is what it can already do
/// with a thread by picking its source port.
pub fn torrent_group(hash: &InfoHash, groups: usize) -> usize {
    let word = u32::from_be_bytes([hash.0[0], hash.0[1], hash.0[2], hash.0[3]]);
    word as usize % groups.max(1)
}

/// Shards: enough that a handful of socket threads rarely contend, few enough that each shard's
/// map is big (a map's growth slack is per map).
pub const DEFAULT_SHARDS: usize = 64;

/// How many clients' budgets of new torrents a client's network ([`client_group`]) gets.
pub const GROUP_SHARE: u32 = 4;

/// Shards per group at least, in a store [`MemoryStore::with_groups`]: 512 shards for 64 groups.
pub const MIN_SHARDS_PER_GROUP: usize = 8;

impl MemoryStore {
    /// `hash_key` keys the hash maps against collision attacks: draw it at random.
    pub fn new(policy: Policy, hash_key: [u8; 16]) -> Self {
        Self::with_shards(policy, hash_key, DEFAULT_SHARDS)
    }

    pub fn with_shards(policy: Policy, hash_key: [u8; 16], shards: usize) -> Self {
        Self::with_layout(policy, hash_key, shards, 1)
    }

    /// A store whose shards are split into `groups` sets, one per [`torrent_group`]: threads
    /// that each serve one group's torrents (as the kernel steers them, see the native UDP
    /// server) then never lock, read or write a shard of another group, and the store's cache
    /// lines stay with the threads of their group. Any thread may still serve any torrent; it is
    /// only slower.
    ///
    /// Each group gets at least [`MIN_SHARDS_PER_GROUP`] shards: a client picks the group of a
    /// hash it makes up, and must not pick the shard (one lock, one sweep, one save slice) too.
    pub fn with_groups(policy: Policy, hash_key: [u8; 16], groups: usize) -> Self {
        let groups = groups.max(1);
        let per_group = DEFAULT_SHARDS.div_ceil(groups).max(MIN_SHARDS_PER_GROUP);
        Self::with_layout(policy, hash_key, per_group * groups, groups)
    }

    /// `groups` is at least 1 (both callers make sure).
    fn with_layout(policy: Policy, hash_key: [u8; 16], shards: usize, groups: usize) -> Self {
        // Whole runs of shards, one per group.
        let shards_per_group = (shards / groups).max(1);
        let shards = (0..shards_per_group * groups)
            .map(|_| Padded(Mutex::new(Shard::new(hash_key))))
            .collect();
        let mut shard_key = hash_key;
        shard_key.iter_mut().for_each(|b| *b ^= 0x5c);
        let budget = RateLimit {
            per_minute: policy.new_torrents_per_minute,
            burst: policy.new_torrents_burst,
        };
        let group_budget = RateLimit {
            per_minute: budget.per_minute.saturating_mul(GROUP_SHARE),
            burst: budget.burst.saturating_mul(GROUP_SHARE),
        };
        MemoryStore {
            new_torrents: Limiter::new(budget),
            new_torrents_by_group: Limiter::keyed_by(group_budget, client_group),
            shards_per_group,
            groups,
            shards,
            shard_hasher: KeyedHasher(shard_key),
            policy,
            latest_sweep: AtomicU32::new(0),
            torrent_count: AtomicUsize::new(0),
            peer_count: AtomicI64::new(0),
            quiet_evicted: AtomicU64::new(0),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn shard_index(&self, hash: &InfoHash) -> usize {
        let within = (self.shard_hasher.hash_one(hash) % self.shards_per_group as u64) as usize;
        // Ungrouped (the default), the group's division would be a `% 1` on every announce.
        if self.groups == 1 {
            return within;
        }
        torrent_group(hash, self.groups) * self.shards_per_group + within
    }

    fn shard(&self, hash: &InfoHash) -> std::sync::MutexGuard<'_, Shard> {
        self.lock_shard(self.shard_index(hash))
    }

    fn lock_shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while a shard was locked cannot leave it half-updated in a way that matters
        // more than losing the tracker: keep serving.
        self.shards[i]
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Synchronous [`PeerStore::announce`], for callers on the native hot path.
    pub fn announce_now(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> Result<SwarmCounts, Full> {
        let stopped = a.event == Event::Stopped;
        let index = self.shard_index(&a.info_hash);
        let mut guard = self.lock_shard(index);
        let shard = &mut *guard;
        // At the cap, a new torrent first makes room (here, since making room needs the shard
        // that the entry below borrows): rare, so the hot path pays one atomic load for it.
        let mut budget_spent = false;
        if !stopped && self.at_torrent_cap() && !shard.torrents.contains_key(&a.info_hash) {
            self.spend_new_torrent_budget(&a.peer, now)?;
            budget_spent = true;
            if !self.make_room(shard, index) {
                return Err(Full::Torrents);
            }
        }
        // One lookup on the hot path: the entry decides whether the torrent is new.
        let (new_torrent, torrent) = match shard.torrents.entry(a.info_hash) {
            Entry::Occupied(known) => (false, known.into_mut()),
            // Never create a torrent just to remove a peer from it.
            Entry::Vacant(_) if stopped => return Ok(SwarmCounts::default()),
            Entry::Vacant(vacant) => {
                if !budget_spent {
                    self.spend_new_torrent_budget(&a.peer, now)?;
                }
                if self.at_torrent_cap() {
                    return Err(Full::Torrents);
                }
                self.torrent_count.fetch_add(1, Ordering::Relaxed);
                (true, vacant.insert(Torrent::default()))
            }
        };
        let in_torrent = torrent.v4.len() + torrent.v6.as_ref().map_or(0, |l| l.len());
        // Asked only for a peer that would be new to the swarm.
        let may_join = |same_address: usize| self.may_join(0, in_torrent, same_address);
        let joined = match &a.peer {
            PeerAddr::V4(addr) => torrent
                .v4
                .announce_admitting(*addr, a.status(), now, |l| {
                    may_join(l.count_prefix(&addr[..4]))
                })
                .map(|(r, me)| {
                    if !stopped {
                        torrent.v4.select(me, a.seeding, a.want, rng, peers);
                    }
                    (r, (torrent.v4.seeders(), torrent.v4.leechers()), false)
                }),
            PeerAddr::V6(addr) => {
                let list = torrent.v6.get_or_insert_default();
                let joined = list
                    .announce_admitting(*addr, a.status(), now, |l| {
                        may_join(l.count_prefix(&addr[..8]))
                    })
                    .map(|(r, me)| {
                        if !stopped {
                            list.select(me, a.seeding, a.want, rng, peers);
                        }
                        (r, (list.seeders(), list.leechers()), true)
                    });
                if list.is_empty() {
                    torrent.v6 = None;
                }
                joined
            }
        };
        let (announced, counts, v6) = match joined {
            Ok(joined) => joined,
            Err(full) => {
                if new_torrent {
                    shard.torrents.remove(&a.info_hash);
                    self.torrent_count.fetch_sub(1, Ordering::Relaxed);
                }
                return Err(full);
            }
        };
        // A completion counts once per peer within the peer timeout: a peer that seeded and
        // says `completed` again, after leeching again or leaving and coming back, is not
        // another download.
        if a.event == Event::Completed && !announced.was_seeder {
            let key = (a.info_hash, a.peer);
            let timeout = self.policy.peer_timeout;
            // Each `completed` restarts the wait, so a peer cycling through it is not counted
            // again for as long as it keeps cycling.
            if shard
                .completed
                .insert(key, now)
                .is_none_or(|at| now.since(at) > timeout)
            {
                torrent.downloaded = torrent.downloaded.saturating_add(1);
            }
        }
        let downloaded = torrent.downloaded;
        if torrent.has_peers() {
            // Written only when it changes: the torrent sits inline in the shard's map, and a
            // store would dirty a line that other threads' lookups in this shard read.
            if torrent.quiet_since != 0 {
                torrent.quiet_since = 0;
            }
        } else if downloaded == 0 {
            shard.torrents.remove(&a.info_hash);
            self.torrent_count.fetch_sub(1, Ordering::Relaxed);
        }
        self.apply(shard, v6, announced.delta);
        Ok(SwarmCounts {
            complete: counts.0,
            incomplete: counts.1,
            downloaded,
        })
    }

    /// Whether a peer new to a torrent of `in_torrent` peers, `same_address` of them from its
    /// client, fits the caps, with `pending` peers added but not yet in the store's count.
    fn may_join(&self, pending: i64, in_torrent: usize, same_address: usize) -> Result<(), Full> {
        let policy = &self.policy;
        if self.peer_count.load(Ordering::Relaxed) + pending >= i64::from(policy.max_peers) {
            Err(Full::Peers)
        } else if in_torrent >= policy.max_peers_per_torrent as usize {
            Err(Full::PeersInTorrent)
        } else if same_address >= policy.max_peers_per_address as usize {
            Err(Full::PeersFromAddress)
        } else {
            Ok(())
        }
    }

    fn at_torrent_cap(&self) -> bool {
        self.torrent_count.load(Ordering::Relaxed) >= self.policy.max_torrents as usize
    }

    /// Spends one of the budgets of new torrents of `peer`'s client and network, or says which
    /// is spent.
    fn spend_new_torrent_budget(&self, peer: &PeerAddr, now: UnixTime) -> Result<(), Full> {
        let ip = peer.socket_addr().ip();
        // The network's first: a network out of budget then adds no bucket per client.
        if self.new_torrents_by_group.allow(ip, now) && self.new_torrents.allow(ip, now) {
            Ok(())
        } else {
            Err(Full::NewTorrentsFromAddress)
        }
    }

    /// Drops the torrent that has been without peers longest, to admit a new one at
    /// `max_torrents`: from `own` (shard `own_index`, locked by the caller) or from another shard
    /// that is free at once (waiting for one while holding `own` could deadlock). False when no
    /// torrent is kept without peers: the cap is full of swarms, and the new torrent is refused.
    fn make_room(&self, own: &mut Shard, own_index: usize) -> bool {
        let mut oldest = own.oldest_quiet();
        let mut other = None;
        for (i, shard) in self.shards.iter().enumerate() {
            if i == own_index {
                continue;
            }
            let mut guard = match shard.0.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            if let Some(day) = guard.oldest_quiet()
                && oldest.is_none_or(|best| day < best)
            {
                oldest = Some(day);
                other = Some(guard);
            }
        }
        let evicted = match other {
            Some(mut shard) => shard.evict_oldest_quiet(),
            None => own.evict_oldest_quiet(),
        };
        if evicted {
            self.torrent_count.fetch_sub(1, Ordering::Relaxed);
            self.quiet_evicted.fetch_add(1, Ordering::Relaxed);
        }
        evicted
    }

    /// Torrents kept without peers that were dropped to make room for new ones at
    /// `max_torrents`.
    pub fn quiet_evicted(&self) -> u64 {
        self.quiet_evicted.load(Ordering::Relaxed)
    }

    /// Applies a change of seeders and leechers to a shard's totals and the store's.
    fn apply(&self, shard: &mut Shard, v6: bool, d: Delta) {
        shard.apply(v6, d);
        let peers = d.seeders + d.leechers;
        if peers != 0 {
            self.peer_count.fetch_add(peers, Ordering::Relaxed);
        }
    }

    /// Synchronous [`PeerStore::scrape`].
    pub fn scrape_now(&self, hashes: &[InfoHash], out: &mut Vec<SwarmCounts>) {
        out.extend(hashes.iter().map(|h| {
            self.shard(h)
                .torrents
                .get(h)
                .map(Torrent::counts)
                .unwrap_or_default()
        }));
    }

    /// Synchronous [`PeerStore::expire`]: one shard at a time, so announces wait at most for one
    /// shard's sweep. Torrents left without peers are dropped, or, with a completed count, kept
    /// for `completed_retention` after the sweep that first found them so.
    pub fn expire_now(&self, now: UnixTime) {
        let now = UnixTime(self.latest_sweep.fetch_max(now.secs(), Ordering::Relaxed)).max(now);
        let timeout = self.policy.peer_timeout;
        let today = day_of(now);
        let retention_days = self.policy.completed_retention.div_ceil(86_400);
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            let shard = &mut *shard;
            let mut gone4 = Delta::default();
            let mut gone6 = Delta::default();
            let before = shard.torrents.len();
            let quiet = &mut shard.quiet;
            let mut quiet_now = 0;
            shard.torrents.retain(|hash, t| {
                gone4 += t.v4.expire(now, timeout);
                if let Some(v6) = &mut t.v6 {
                    gone6 += v6.expire(now, timeout);
                    if v6.is_empty() {
                        t.v6 = None;
                    }
                }
                if t.has_peers() {
                    t.quiet_since = 0;
                    return true;
                }
                if t.downloaded == 0 || self.policy.completed_retention == 0 {
                    return false;
                }
                if t.quiet_since == 0 {
                    t.quiet_since = today;
                    quiet.push_back((*hash, today));
                }
                let keep = u32::from(today.wrapping_sub(t.quiet_since)) < retention_days;
                quiet_now += usize::from(keep);
                keep
            });
            shard.tidy_aside(quiet_now, now, timeout);
            self.torrent_count
                .fetch_sub(before - shard.torrents.len(), Ordering::Relaxed);
            self.apply(shard, false, gone4);
            self.apply(shard, true, gone6);
            if shard.torrents.capacity() > 2 * shard.torrents.len() + 64 {
                shard.torrents.shrink_to_fit();
            }
        }
        self.prune_budgets(now);
    }

    /// Forgets the budgets of new torrents that have refilled (every sweep: without it, each
    /// client that ever made a torrent would keep a bucket).
    fn prune_budgets(&self, now: UnixTime) {
        self.new_torrents.prune(now);
        self.new_torrents_by_group.prune(now);
    }

    /// Store-wide totals, from the per-shard counters.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for shard in self.shards.iter() {
            let shard = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            t.torrents += shard.torrents.len() as u64;
            t.seeders_v4 += shard.totals.seeders_v4 as u64;
            t.leechers_v4 += shard.totals.leechers_v4 as u64;
            t.seeders_v6 += shard.totals.seeders_v6 as u64;
            t.leechers_v6 += shard.totals.leechers_v6 as u64;
        }
        t
    }

    /// Puts a saved torrent back with its peers, within the caps: a file written under other
    /// caps, or crafted, must not load what announces could not have made. Peers already past
    /// the peer timeout at `now` are left out. A torrent may come in several calls (its peers a
    /// part at a time).
    pub fn restore(
        &self,
        saved: SavedTorrent,
        peers: impl IntoIterator<Item = SavedPeer>,
        now: UnixTime,
    ) -> Restored {
        let SavedTorrent {
            hash,
            downloaded,
            quiet_since,
        } = saved;
        let mut out = Restored::default();
        let timeout = self.policy.peer_timeout;
        let mut shard = self.shard(&hash);
        let shard = &mut *shard;
        let torrent = match shard.torrents.entry(hash) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(_) if self.at_torrent_cap() => {
                out.refused_torrent = true;
                out.refused_peers = peers
                    .into_iter()
                    .filter(|p| now.since(p.last_seen.min(now)) <= timeout)
                    .count();
                return out;
            }
            Entry::Vacant(vacant) => {
                self.torrent_count.fetch_add(1, Ordering::Relaxed);
                vacant.insert(Torrent::default())
            }
        };
        torrent.downloaded = torrent.downloaded.max(downloaded);
        // A restart must not restart the retention of a count kept without peers.
        if torrent.quiet_since == 0 {
            torrent.quiet_since = quiet_since;
        }
        let (mut d4, mut d6) = (Delta::default(), Delta::default());
        for SavedPeer {
            addr,
            seeding,
            last_seen,
        } in peers
        {
            let seen = last_seen.min(now);
            if now.since(seen) > timeout {
                continue;
            }
            let in_torrent = torrent.v4.len() + torrent.v6.as_ref().map_or(0, |l| l.len());
            // Added by this call so far: the store's count takes them at the end.
            let added = d4.seeders + d4.leechers + d6.seeders + d6.leechers;
            let room = |same_address: usize| self.may_join(added, in_torrent, same_address);
            let status = PeerStatus::staying(seeding);
            let joined = match addr {
                PeerAddr::V4(addr) => torrent
                    .v4
                    .announce_admitting(addr, status, seen, |l| room(l.count_prefix(&addr[..4])))
                    .map(|(a, _)| d4 += a.delta),
                PeerAddr::V6(addr) => torrent
                    .v6
                    .get_or_insert_default()
                    .announce_admitting(addr, status, seen, |l| room(l.count_prefix(&addr[..8])))
                    .map(|(a, _)| d6 += a.delta),
            };
            out.refused_peers += usize::from(joined.is_err());
        }
        if torrent.v6.as_ref().is_some_and(|l| l.is_empty()) {
            torrent.v6 = None;
        }
        // Peers added, not entries read: a file naming one peer twice restores it once.
        out.peers = (d4.seeders + d4.leechers + d6.seeders + d6.leechers) as usize;
        if torrent.has_peers() {
            // A part of its peers read earlier may have found it quiet.
            torrent.quiet_since = 0;
        } else {
            if torrent.downloaded == 0 {
                shard.torrents.remove(&hash);
                self.torrent_count.fetch_sub(1, Ordering::Relaxed);
            } else {
                // Evictable at once, as a sweep would make it (a torrent restored in parts may
                // be queued twice: the next sweep keeps one).
                if torrent.quiet_since == 0 {
                    torrent.quiet_since = day_of(now);
                }
                shard.quiet.push_back((hash, torrent.quiet_since));
            }
        }
        self.apply(shard, false, d4);
        self.apply(shard, true, d6);
        out
    }

    /// Visits every torrent (for snapshots), one shard locked at a time.
    pub fn for_each_torrent(&self, mut f: impl FnMut(&InfoHash, &Torrent)) {
        for i in 0..self.shards.len() {
            self.for_each_torrent_of_shard(i, &mut f);
        }
    }

    /// How many shards there are, for visiting them one by one.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Visits the torrents of shard `i` while it is locked: a caller that must do slow work (I/O)
    /// between shards does it after this returns, with no lock held.
    pub fn for_each_torrent_of_shard(&self, i: usize, mut f: impl FnMut(&InfoHash, &Torrent)) {
        let shard = self.shards[i].0.lock().unwrap_or_else(|p| p.into_inner());
        for (h, t) in &shard.torrents {
            f(h, t);
        }
    }
}

impl PeerStore for MemoryStore {
    fn announce(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> impl Future<Output = Result<SwarmCounts, AnnounceError>> {
        std::future::ready(
            self.announce_now(a, now, rng, peers)
                .map_err(AnnounceError::Full),
        )
    }

    fn scrape(
        &self,
        hashes: &[InfoHash],
        _now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        self.scrape_now(hashes, out);
        std::future::ready(Ok(()))
    }

    fn expire(&self, now: UnixTime) -> impl Future<Output = Result<(), StoreError>> {
        self.expire_now(now);
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use rand::SeedableRng;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn passes_the_conformance_suite() {
        let policy = conformance::policy();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        crate::store::now_or_never(conformance::run_all(
            || MemoryStore::new(policy.clone(), [7; 16]),
            &mut rng,
        ));
        // Grouped for steered threads, with more shards than the default and a group count
        // that does not divide it.
        crate::store::now_or_never(conformance::run_all(
            || MemoryStore::with_groups(policy.clone(), [7; 16], 3),
            &mut rng,
        ));
    }

    #[test]
    fn caps_refuse_new_torrents_and_peers_and_say_which() {
        // Before: no cap at all; one address made 1,000,000 torrents in 29 s, and 8 addresses
        // put 524,000 peers in one torrent.
        let policy = Policy {
            max_torrents: 3,
            max_peers: 6,
            max_peers_per_torrent: 4,
            max_peers_per_address: 2,
            ..conformance::policy()
        };
        let store = MemoryStore::new(policy, [5; 16]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(8);
        let mut join = |hash: u8, ip: &str, port: u16| {
            let a = PeerAnnounce {
                info_hash: InfoHash([hash; 20]),
                peer: PeerAddr::new(ip.parse().unwrap(), port),
                event: Event::Started,
                seeding: false,
                want: 10,
            };
            store
                .announce_now(&a, UnixTime(1000), &mut rng, &mut Vec::new())
                .map(|_| ())
        };
        join(1, "10.0.0.1", 1).unwrap();
        join(1, "10.0.0.1", 2).unwrap();
        assert_eq!(join(1, "10.0.0.1", 3), Err(Full::PeersFromAddress));
        assert_eq!(join(1, "10.0.0.1", 1), Ok(()), "a known peer is not new");
        join(1, "10.0.0.2", 1).unwrap();
        join(1, "10.0.0.3", 1).unwrap();
        assert_eq!(join(1, "10.0.0.4", 1), Err(Full::PeersInTorrent));
        join(2, "10.0.0.5", 1).unwrap();
        assert_eq!(join(3, "10.0.0.5", 1), Ok(()));
        assert_eq!(join(4, "10.0.0.5", 1), Err(Full::Torrents));
        assert_eq!(join(2, "10.0.0.6", 1), Err(Full::Peers), "6 peers in all");
        let t = store.totals();
        assert_eq!((t.torrents, t.peers()), (3, 6), "refusals change nothing");
        // A peer that leaves makes room; an emptied torrent too.
        let stop = PeerAnnounce {
            info_hash: InfoHash([3; 20]),
            peer: PeerAddr::new("10.0.0.5".parse().unwrap(), 1),
            event: Event::Stopped,
            seeding: false,
            want: 0,
        };
        let mut other_rng = rand::rngs::SmallRng::seed_from_u64(9);
        store
            .announce_now(&stop, UnixTime(1001), &mut other_rng, &mut Vec::new())
            .unwrap();
        assert_eq!(join(4, "10.0.0.7", 1), Ok(()));
    }

    fn announce(hash: u32, ip: &str, port: u16, event: Event, seeding: bool) -> PeerAnnounce {
        let mut h = [0; 20];
        h[..4].copy_from_slice(&hash.to_be_bytes());
        PeerAnnounce {
            info_hash: InfoHash(h),
            peer: PeerAddr::new(ip.parse().unwrap(), port),
            event,
            seeding,
            want: 10,
        }
    }

    #[test]
    fn a_cap_full_of_torrents_without_peers_makes_room_oldest_first() {
        // Before: one address filled max_torrents with `completed` announces to made-up
        // hashes, each kept 30 days without peers (and saved); every new torrent was refused.
        let policy = Policy {
            max_torrents: 100,
            new_torrents_per_minute: 0,
            ..conformance::policy()
        };
        let store = MemoryStore::with_shards(policy, [6; 16], 4);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let day = 86_400;
        let t0 = 20_000 * day;
        let mut run = |a: &PeerAnnounce, at: u32| {
            store
                .announce_now(a, UnixTime(at), &mut rng, &mut Vec::new())
                .map(|_| ())
        };
        // 60 completed-only torrents on day 0, 40 more on day 1 (after the sweeps that find them).
        for (range, day_no) in [(0..60, 0), (60..100, 1)] {
            for i in range {
                let done = announce(i, "10.6.6.6", 1, Event::Completed, true);
                run(&done, t0 + day_no * day).unwrap();
                run(
                    &PeerAnnounce {
                        event: Event::Stopped,
                        ..done
                    },
                    t0 + day_no * day,
                )
                .unwrap();
            }
            store.expire_now(UnixTime(t0 + day_no * day + 10));
        }
        assert_eq!(store.totals().torrents, 100);
        // Another client's new torrents get in, pushing out day-0 torrents first.
        for i in 0..60 {
            run(
                &announce(1000 + i, "10.0.0.9", 1, Event::Started, false),
                t0 + day + 20,
            )
            .unwrap_or_else(|e| panic!("new torrent {i} refused: {e:?}"));
        }
        assert_eq!(store.totals().torrents, 100);
        assert_eq!(store.quiet_evicted(), 60);
        let mut counts = Vec::new();
        let hashes: Vec<InfoHash> = (0..100)
            .map(|i| announce(i, "10.0.0.1", 1, Event::None, false).info_hash)
            .collect();
        store.scrape_now(&hashes, &mut counts);
        let kept: Vec<u32> = (0..100)
            .filter(|&i| counts[i as usize].downloaded == 1)
            .collect();
        assert_eq!(kept, (60..100).collect::<Vec<_>>(), "the oldest went first");
        // Torrents with peers are never pushed out: 40 more fit, then the cap refuses.
        for i in 0..40 {
            run(
                &announce(2000 + i, "10.0.0.9", 1, Event::Started, false),
                t0 + day + 30,
            )
            .unwrap();
        }
        assert_eq!(
            run(
                &announce(3000, "10.0.0.9", 1, Event::Started, false),
                t0 + day + 30
            ),
            Err(Full::Torrents)
        );
        assert_eq!(store.totals().peers(), 100);
    }

    #[test]
    fn one_client_and_its_network_create_torrents_within_a_budget() {
        // Before: one client made 54,868 torrents a second, filling the default cap in 91 s.
        let policy = Policy {
            new_torrents_per_minute: 60,
            new_torrents_burst: 5,
            ..conformance::policy()
        };
        let store = MemoryStore::new(policy, [6; 16]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        let mut next = 0;
        let mut create = |ip: &str, at: u32| {
            next += 1;
            store
                .announce_now(
                    &announce(next, ip, 1, Event::Started, false),
                    UnixTime(at),
                    &mut rng,
                    &mut Vec::new(),
                )
                .map(|_| ())
        };
        let refused = Err(Full::NewTorrentsFromAddress);
        assert!((0..5).all(|_| create("10.0.0.1", 100).is_ok()), "the burst");
        assert_eq!(create("10.0.0.1", 100), refused);
        assert_eq!(create("10.0.0.1", 101), Ok(()), "one a second after it");
        assert_eq!(create("10.0.0.1", 101), refused);
        // Each /64 of one /48 has a budget, and the /48 four budgets in all.
        let made = (0..30)
            .filter(|i| create(&format!("2001:db8:7:{i:x}::1"), 100).is_ok())
            .count();
        assert_eq!(made, 20, "4 × the burst of 5 for the whole /48");
        assert_eq!(create("2001:db8:8::1", 100), Ok(()), "another /48");
        // Known torrents are not new: the budget is spent only by creating.
        let known = announce(1, "10.0.0.1", 2, Event::Started, false);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        assert!(
            store
                .announce_now(&known, UnixTime(101), &mut rng, &mut Vec::new())
                .is_ok()
        );
        // Budgets that refilled are forgotten at a sweep: a client that made a torrent once
        // does not keep a bucket.
        store.expire_now(UnixTime(100_000));
        assert_eq!(
            (
                store.new_torrents.tracked(),
                store.new_torrents_by_group.tracked()
            ),
            (0, 0)
        );
    }

    #[test]
    fn a_completion_counts_once_per_peer() {
        // Before: a peer alternating a leeching announce and `completed` was counted each time
        // (50 cycles from one UDP peer: downloaded = 50).
        let store = MemoryStore::new(conformance::policy(), [6; 16]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        let mut run = |ip: &str, event, seeding, at| {
            store
                .announce_now(
                    &announce(7, ip, 1, event, seeding),
                    UnixTime(at),
                    &mut rng,
                    &mut Vec::new(),
                )
                .unwrap()
                .downloaded
        };
        run("10.0.0.1", Event::Started, false, 1000);
        for cycle in 0..50 {
            run("10.0.0.1", Event::Completed, true, 1001 + 2 * cycle);
            run("10.0.0.1", Event::None, false, 1002 + 2 * cycle);
        }
        assert_eq!(run("10.0.0.1", Event::Completed, true, 1200), 1);
        // Nor by leaving and coming back.
        for cycle in 0..10 {
            run("10.0.0.1", Event::Stopped, true, 1201 + 2 * cycle);
            run("10.0.0.1", Event::Completed, true, 1202 + 2 * cycle);
        }
        assert_eq!(run("10.0.0.1", Event::None, true, 1230), 1);
        run("10.0.0.2", Event::Started, false, 1200);
        assert_eq!(
            run("10.0.0.2", Event::Completed, true, 1201),
            2,
            "another peer counts"
        );
        // A sweep forgets completions past the peer timeout; then the peer counts again.
        let later = 1300 + conformance::policy().peer_timeout + 1;
        store.expire_now(UnixTime(later));
        assert_eq!(
            store
                .shards
                .iter()
                .map(|s| s.0.lock().unwrap().completed.len())
                .sum::<usize>(),
            0
        );
        run("10.0.0.1", Event::Started, false, later);
        assert_eq!(run("10.0.0.1", Event::Completed, true, later + 1), 3);
    }

    #[test]
    fn restore_applies_the_caps() {
        // Before: a file with 10,000,000 peers in one torrent (cap 1 M) was loaded whole, and
        // 20 peers of one address (cap 16).
        let policy = Policy {
            max_torrents: 2,
            max_peers: 25,
            max_peers_per_torrent: 12,
            max_peers_per_address: 3,
            ..conformance::policy()
        };
        let store = MemoryStore::new(policy, [6; 16]);
        let now = UnixTime(50_000);
        let saved = |n: u8| SavedTorrent {
            hash: InfoHash([n; 20]),
            downloaded: 1,
            quiet_since: 0,
        };
        let peers = |n: usize| {
            (0..n).map(move |i| SavedPeer {
                addr: PeerAddr::new(
                    format!("10.0.{}.{}", i / 200, i % 200).parse().unwrap(),
                    1 + (i % 5) as u16,
                ),
                seeding: false,
                last_seen: now,
            })
        };
        let one_address = (0..20).map(|port| SavedPeer {
            addr: PeerAddr::new("10.9.9.9".parse().unwrap(), port),
            seeding: true,
            last_seen: now,
        });
        let r = store.restore(saved(1), one_address, now);
        assert_eq!((r.peers, r.refused_peers), (3, 17));
        let r = store.restore(saved(2), peers(1000), now);
        assert_eq!((r.peers, r.refused_peers), (12, 988));
        let r = store.restore(saved(3), peers(5), now);
        assert_eq!((r.peers, r.refused_peers, r.refused_torrent), (0, 5, true));
        assert_eq!((store.totals().torrents, store.totals().peers()), (2, 15));
        let r = store.restore(saved(1), peers(100), now);
        assert_eq!(r.peers, 9, "then max_peers: 25 in all");
        assert_eq!(store.totals().peers(), 24);
    }

    #[test]
    fn torrents_kept_only_for_their_completed_count_are_forgotten_after_the_retention() {
        // Before: a torrent with a completed count and no peers was kept (and saved) forever:
        // one address made 100,000 of them, and they survived expiry and a restart.
        let policy = Policy {
            completed_retention: 3 * 86_400,
            ..conformance::policy()
        };
        let store = MemoryStore::new(policy, [4; 16]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let t0 = 1_750_000_000;
        for i in 0..100u8 {
            let a = PeerAnnounce {
                info_hash: InfoHash([i; 20]),
                peer: PeerAddr::new("10.0.0.1".parse().unwrap(), 1),
                event: Event::Completed,
                seeding: true,
                want: 0,
            };
            store
                .announce_now(&a, UnixTime(t0), &mut rng, &mut Vec::new())
                .unwrap();
            let stop = PeerAnnounce {
                event: Event::Stopped,
                ..a
            };
            store
                .announce_now(&stop, UnixTime(t0 + 1), &mut rng, &mut Vec::new())
                .unwrap();
        }
        store.expire_now(UnixTime(t0 + 10));
        assert_eq!(store.totals().torrents, 100, "the counts are kept a while");
        store.expire_now(UnixTime(t0 + 2 * 86_400));
        assert_eq!(store.totals().torrents, 100);
        store.expire_now(UnixTime(t0 + 4 * 86_400));
        assert_eq!(store.totals().torrents, 0, "and then forgotten");
    }

    #[test]
    fn a_clock_stepped_back_does_not_expire_fresh_peers() {
        let store = MemoryStore::new(conformance::policy(), [4; 16]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(6);
        let a = PeerAnnounce {
            info_hash: InfoHash([1; 20]),
            peer: PeerAddr::new("10.0.0.1".parse().unwrap(), 1),
            event: Event::Started,
            seeding: true,
            want: 0,
        };
        store
            .announce_now(&a, UnixTime(100_100), &mut rng, &mut Vec::new())
            .unwrap();
        // The clock steps back a minute: before, the peer's stamp looked 65,476 s old.
        store.expire_now(UnixTime(100_040));
        assert_eq!(store.totals().seeders(), 1);
        store.expire_now(UnixTime(100_100 - 500));
        assert_eq!(store.totals().seeders(), 1, "up to 10 minutes back");
        store.expire_now(UnixTime(100_100 + conformance::policy().peer_timeout + 1));
        assert_eq!(store.totals().seeders(), 0, "and expiry still works");
    }

    #[test]
    fn grouped_stores_keep_each_group_in_shards_of_its_own() {
        for groups in [2, 3, 5, 64, 100] {
            let store = MemoryStore::with_groups(conformance::policy(), [3; 16], groups);
            let per = store.shard_count() / groups;
            assert_eq!(store.shard_count() % groups, 0);
            // A client choosing the group still leaves the keyed hash to pick among these.
            assert!(
                per >= MIN_SHARDS_PER_GROUP,
                "{groups} groups: {per} shards each"
            );
            assert!(
                store.shard_count() >= DEFAULT_SHARDS,
                "no fewer shards than ungrouped"
            );
            let mut used = std::collections::BTreeSet::new();
            for i in 0..20_000u32 {
                let mut h = [0xab; 20];
                h[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                h[16..].copy_from_slice(&i.to_be_bytes());
                let hash = InfoHash(h);
                let shard = store.shard_index(&hash);
                assert_eq!(shard / per, torrent_group(&hash, groups), "{groups} groups");
                used.insert(shard);
            }
            assert_eq!(
                used.len(),
                store.shard_count(),
                "{groups} groups: every shard used"
            );
        }
        let hash = InfoHash([0, 0, 1, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(
            torrent_group(&hash, 7),
            258 % 7,
            "the first four bytes, big-endian"
        );
    }

    #[test]
    fn clients_cannot_choose_the_shard_of_their_torrents() {
        // Hashes made to share their leading bytes (what shards were chosen by) still spread.
        let store = MemoryStore::new(conformance::policy(), [3; 16]);
        let used: std::collections::BTreeSet<usize> = (0..1000u32)
            .map(|i| {
                let mut h = [0xab; 20];
                h[16..].copy_from_slice(&i.to_be_bytes());
                store.shard_index(&InfoHash(h))
            })
            .collect();
        assert!(
            used.len() >= 60,
            "1000 crafted hashes reached only {} of 64 shards",
            used.len()
        );
    }

    #[test]
    fn restoring_a_peer_twice_counts_it_once() {
        // Found by fuzzing the state file: the summary said 4 peers restored, the store held 3.
        let store = MemoryStore::with_shards(conformance::policy(), [1; 16], 2);
        let p = PeerAddr::new("10.0.0.1".parse().unwrap(), 1);
        let now = 10_000;
        let saved = SavedTorrent {
            hash: InfoHash([2; 20]),
            downloaded: 0,
            quiet_since: 0,
        };
        let peer = |seeding| SavedPeer {
            addr: p,
            seeding,
            last_seen: UnixTime(now),
        };
        let n = store.restore(saved, [peer(true), peer(false)], UnixTime(now));
        assert_eq!((n.peers, store.totals().peers()), (1, 1));
    }

    #[test]
    fn restore_puts_back_fresh_peers_and_counts() {
        let store = MemoryStore::with_shards(conformance::policy(), [1; 16], 2);
        let timeout = conformance::policy().peer_timeout;
        let now = 10_000;
        let peer = |addr: &str, seeding, last_seen| SavedPeer {
            addr: PeerAddr::new(addr.parse().unwrap(), 1),
            seeding,
            last_seen,
        };
        let peers = [
            peer("10.0.0.1", true, UnixTime(now - 10)),
            peer("10.0.0.2", false, UnixTime(now - timeout - 1)),
            peer("2001:db8::1", false, UnixTime(now + 50)),
        ];
        let saved = SavedTorrent {
            hash: InfoHash([5; 20]),
            downloaded: 7,
            quiet_since: 0,
        };
        assert_eq!(store.restore(saved, peers, UnixTime(now)).peers, 2);
        let mut out = Vec::new();
        store.scrape_now(&[InfoHash([5; 20])], &mut out);
        assert_eq!(
            out,
            vec![SwarmCounts {
                complete: 1,
                incomplete: 1,
                downloaded: 7
            }]
        );
        assert_eq!(
            store.totals(),
            Totals {
                torrents: 1,
                seeders_v4: 1,
                leechers_v4: 0,
                seeders_v6: 0,
                leechers_v6: 1
            }
        );
    }

    #[test]
    fn totals_follow_announces_and_expiry() {
        let store = MemoryStore::with_shards(conformance::policy(), [1; 16], 4);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(6);
        let mut peers = Vec::new();
        for i in 0..10u8 {
            let a = PeerAnnounce {
                info_hash: InfoHash([i % 3; 20]),
                peer: PeerAddr::new(format!("10.0.0.{i}").parse().unwrap(), 1000),
                event: Event::Started,
                seeding: i % 2 == 0,
                want: 5,
            };
            store
                .announce_now(&a, UnixTime(1000), &mut rng, &mut peers)
                .unwrap();
        }
        let v6 = PeerAnnounce {
            info_hash: InfoHash([9; 20]),
            peer: PeerAddr::new("2001:db8::1".parse().unwrap(), 1000),
            event: Event::Started,
            seeding: false,
            want: 5,
        };
        store
            .announce_now(&v6, UnixTime(1100), &mut rng, &mut peers)
            .unwrap();
        assert_eq!(
            store.totals(),
            Totals {
                torrents: 4,
                seeders_v4: 5,
                leechers_v4: 5,
                seeders_v6: 0,
                leechers_v6: 1
            }
        );
        store.expire_now(UnixTime(1000 + conformance::policy().peer_timeout + 1));
        assert_eq!(
            store.totals(),
            Totals {
                torrents: 1,
                seeders_v4: 0,
                leechers_v4: 0,
                seeders_v6: 0,
                leechers_v6: 1
            }
        );
    }
}
