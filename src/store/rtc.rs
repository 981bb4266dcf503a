//! WebTorrent swarms: the seam ([`RtcStore`]) the core forwards offers and answers through, and
//! its in-memory backend, for a home that holds every peer's WebSocket itself (native).
//!
//! Sharded by info hash like [`super::memory::MemoryStore`], each shard a map of
//! [`RtcSwarm`]s behind its own mutex; keyed hashing throughout, since info hashes and peer ids
//! come from the network. Caps the torrents held (a new torrent past the cap is refused) and the
//! peers per swarm. An emptied swarm is dropped with its completed count: a WebTorrent swarm
//! lives as long as some browser has it open. Owns the collection and its caps; what one
//! announce does is [`crate::swarm::rtc`]'s.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand_core::Rng;

use super::StoreError;
use super::memory::KeyedHasher;
use crate::protocol::types::{InfoHash, PeerId};
use crate::swarm::rtc::{ConnId, RtcAnnounce, RtcAnnounced, RtcCounts, RtcRefusal, RtcSwarm};
use crate::time::UnixTime;

const SHARDS: usize = 64;

/// What an announce into a WebTorrent swarm came to: done (with the swarm's counts after it), or
/// refused.
pub type RtcResult = Result<(RtcAnnounced, RtcCounts), RtcRefusal>;

/// Where WebTorrent swarms live, as the core sees them: the one seam between the WebSocket
/// service and a home's swarms (as [`super::PeerStore`] is for address swarms). The memory
/// backend answers at once, so the native path pays nothing for the futures; the edge's
/// backend asks each torrent's Durable Object. A backend that cannot be reached says so with a
/// [`StoreError`]; the service turns it into a failure reply.
pub trait RtcStore {
    /// [`RtcSwarm::announce`] in torrent `hash`, created if new and under the torrent cap.
    /// `is_open` says whether a connection is still open, where the backend can know it (a
    /// backend that cannot treats a member as open until it leaves or times out). The backend
    /// may draw recipients with its own RNG.
    fn announce(
        &self,
        hash: &InfoHash,
        a: &RtcAnnounce,
        now: UnixTime,
        is_open: &dyn Fn(ConnId) -> bool,
        rng: &mut impl Rng,
        recipients: &mut Vec<ConnId>,
    ) -> impl Future<Output = Result<RtcResult, StoreError>>;

    /// Where an answer from `from` on connection `conn` goes: `None` if `from` is not a member
    /// held by `conn` (it may not answer), else the offerer's connection, if it is still in the
    /// swarm.
    fn answer_route(
        &self,
        hash: &InfoHash,
        from: &PeerId,
        conn: ConnId,
        to: &PeerId,
    ) -> impl Future<Output = Result<Option<Option<ConnId>>, StoreError>>;

    /// The counts of each of `hashes` (zeros for an unknown torrent), appended to `out`.
    fn counts(
        &self,
        hashes: &[InfoHash],
        out: &mut Vec<RtcCounts>,
    ) -> impl Future<Output = Result<(), StoreError>>;

    /// Every torrent with its counts (a full scrape), appended to `out`; a backend with no
    /// index of its torrents says so with an error.
    fn all_counts(
        &self,
        out: &mut Vec<(InfoHash, RtcCounts)>,
    ) -> impl Future<Output = Result<(), StoreError>>;
}

impl RtcStore for RtcSwarms {
    fn announce(
        &self,
        hash: &InfoHash,
        a: &RtcAnnounce,
        now: UnixTime,
        is_open: &dyn Fn(ConnId) -> bool,
        rng: &mut impl Rng,
        recipients: &mut Vec<ConnId>,
    ) -> impl Future<Output = Result<RtcResult, StoreError>> {
        ready(Ok(RtcSwarms::announce(
            self, hash, a, now, is_open, rng, recipients,
        )))
    }

    fn answer_route(
        &self,
        hash: &InfoHash,
        from: &PeerId,
        conn: ConnId,
        to: &PeerId,
    ) -> impl Future<Output = Result<Option<Option<ConnId>>, StoreError>> {
        ready(Ok(RtcSwarms::answer_route(self, hash, from, conn, to)))
    }

    fn counts(
        &self,
        hashes: &[InfoHash],
        out: &mut Vec<RtcCounts>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        out.extend(hashes.iter().map(|h| RtcSwarms::counts(self, h)));
        ready(Ok(()))
    }

    fn all_counts(
        &self,
        out: &mut Vec<(InfoHash, RtcCounts)>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.iter().map(|(h, swarm)| (*h, swarm.counts())));
        }
        ready(Ok(()))
    }
}

type Shard = HashMap<InfoHash, RtcSwarm<KeyedHasher>, KeyedHasher>;

pub struct RtcSwarms {
    shards: Box<[Mutex<Shard>]>,
    shard_hasher: KeyedHasher,
    peer_hasher: KeyedHasher,
    max_torrents: usize,
    max_peers_per_torrent: usize,
    max_peers_per_client: usize,
    torrents: AtomicUsize,
    peers: AtomicUsize,
}

impl RtcSwarms {
    /// `hash_key` keys the maps against collision attacks: draw it at random.
    /// `max_peers_per_client` is per swarm ([`RtcSwarm::with_client_cap`]).
    pub fn new(
        hash_key: [u8; 16],
        max_torrents: usize,
        max_peers_per_torrent: usize,
        max_peers_per_client: usize,
    ) -> Self {
        let derive = |x: u8| {
            let mut k = hash_key;
            k.iter_mut().for_each(|b| *b ^= x);
            KeyedHasher(k)
        };
        RtcSwarms {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(derive(0x36))))
                .collect(),
            shard_hasher: derive(0x5c),
            peer_hasher: derive(0x6a),
            max_torrents,
            max_peers_per_torrent,
            max_peers_per_client,
            torrents: AtomicUsize::new(0),
            peers: AtomicUsize::new(0),
        }
    }

    fn shard(&self, hash: &InfoHash) -> std::sync::MutexGuard<'_, Shard> {
        use std::hash::BuildHasher;
        let i = (self.shard_hasher.hash_one(hash) % SHARDS as u64) as usize;
        // A panic while a shard was locked cannot leave it worse than losing the tracker.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`RtcSwarm::announce`] in torrent `hash` (created if new and under the torrent cap), with
    /// the swarm's counts after it.
    pub fn announce(
        &self,
        hash: &InfoHash,
        a: &RtcAnnounce,
        now: UnixTime,
        is_open: &dyn Fn(ConnId) -> bool,
        rng: &mut impl Rng,
        recipients: &mut Vec<ConnId>,
    ) -> RtcResult {
        let mut shard = self.shard(hash);
        let swarm = match shard.get_mut(hash) {
            Some(swarm) => swarm,
            None => {
                if a.event == crate::protocol::types::Event::Stopped {
                    return Ok((RtcAnnounced::default(), RtcCounts::default()));
                }
                // One atomic step, so threads creating torrents at once cannot overshoot the cap.
                let max = self.max_torrents;
                self.torrents
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .map_err(|_| RtcRefusal::TooManyTorrents)?;
                shard.entry(*hash).or_insert_with(|| {
                    RtcSwarm::with_hasher(self.peer_hasher)
                        .with_client_cap(self.max_peers_per_client)
                })
            }
        };
        let before = swarm.len();
        let result = swarm.announce(a, now, is_open, self.max_peers_per_torrent, rng, recipients);
        let (after, counts) = (swarm.len(), swarm.counts());
        self.settle(&mut shard, hash, before, after);
        result.map(|done| (done, counts))
    }

    /// Keeps the peer count, and drops the swarm if it emptied.
    fn settle(&self, shard: &mut Shard, hash: &InfoHash, before: usize, after: usize) {
        if after > before {
            self.peers.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.peers.fetch_sub(before - after, Ordering::Relaxed);
        }
        if after == 0 {
            shard.remove(hash);
            self.torrents.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Where an answer from `from` on connection `conn` goes, under one lock: `None` if `from`
    /// is not a member held by `conn` (it may not answer), else the offerer's connection, if
    /// it is still in the swarm.
    pub fn answer_route(
        &self,
        hash: &InfoHash,
        from: &PeerId,
        conn: ConnId,
        to: &PeerId,
    ) -> Option<Option<ConnId>> {
        let shard = self.shard(hash);
        let swarm = shard.get(hash)?;
        (swarm.conn_of(from) == Some(conn)).then(|| swarm.conn_of(to))
    }

    /// The counts of torrent `hash` (zeros if unknown).
    pub fn counts(&self, hash: &InfoHash) -> RtcCounts {
        self.shard(hash)
            .get(hash)
            .map(RtcSwarm::counts)
            .unwrap_or_default()
    }

    /// [`RtcSwarm::leave`]: a connection closed.
    pub fn leave(&self, hash: &InfoHash, peer_id: &PeerId, conn: ConnId) {
        let mut shard = self.shard(hash);
        if let Some(swarm) = shard.get_mut(hash)
            && swarm.leave(peer_id, conn)
        {
            let after = swarm.len();
            self.settle(&mut shard, hash, after + 1, after);
        }
    }

    /// Drops members silent for more than `timeout` seconds, one shard at a time.
    pub fn expire(&self, now: UnixTime, timeout: u32) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let mut gone_torrents = 0;
            let mut gone_peers = 0;
            shard.retain(|_, swarm| {
                gone_peers += swarm.expire(now, timeout);
                let keep = !swarm.is_empty();
                gone_torrents += usize::from(!keep);
                keep
            });
            self.peers.fetch_sub(gone_peers, Ordering::Relaxed);
            self.torrents.fetch_sub(gone_torrents, Ordering::Relaxed);
        }
    }

    /// Torrents and peers held.
    pub fn totals(&self) -> (usize, usize) {
        (
            self.torrents.load(Ordering::Relaxed),
            self.peers.load(Ordering::Relaxed),
        )
    }
}
