//! The storage seam: where swarms live.
//!
//! [`PeerStore`] is the one interface every backend implements (this crate's [`memory`] store,
//! the edge's Workers KV and Durable Object stores) and [`conformance`] is the one suite every
//! backend must pass. [`mirror`] is the Durable Object store's swarm logic without its I/O.
//! [`rtc`] holds WebTorrent swarms in memory (peers known by their connections, not addresses).
//! Methods return futures so a remote store (KV) fits the same seam; the memory store's futures
//! are `std::future::Ready`. The native servers poll the service's futures once, on the socket
//! thread ([`now_or_never`]): no executor, no task, no waiting, since nothing in them can pend;
//! the memory store also has synchronous methods (`announce_now`, …) for callers outside the
//! service, such as benchmarks and state loading.
//!
//! A store owns bookkeeping (who is in which swarm, since when, completed counts); the policy of
//! what an announce means stays in [`crate::swarm`]. Stores may not parse or write wire formats.

pub mod conformance;
pub mod memory;
pub mod mirror;
pub mod rtc;

use std::fmt;
use std::future::Future;

use rand_core::Rng;

use crate::protocol::types::{Event, InfoHash, SwarmCounts};
use crate::swarm::{PeerAddr, PeerStatus};
use crate::time::UnixTime;

/// An announce as a store sees it: already validated, addressed and sized by policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAnnounce {
    pub info_hash: InfoHash,
    /// The peer's key in the swarm, and the family of the swarm it joins.
    pub peer: PeerAddr,
    pub event: Event,
    /// `left == 0`.
    pub seeding: bool,
    /// How many peers to return (0 for a stopping peer).
    pub want: usize,
}

impl PeerAnnounce {
    pub fn status(&self) -> PeerStatus {
        PeerStatus::new(self.event, self.seeding)
    }
}

/// A backend failure. Callers degrade (serve what they can) rather than fail the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A configured cap that refused a new torrent or peer ([`Policy`](crate::swarm::Policy)'s
/// `max_*`); the client is told which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Full {
    Torrents,
    Peers,
    PeersInTorrent,
    PeersFromAddress,
    /// The client's (or its network's) budget of new torrents is spent for now.
    NewTorrentsFromAddress,
}

impl Full {
    pub const ALL: [Full; 5] = [
        Full::Torrents,
        Full::Peers,
        Full::PeersInTorrent,
        Full::PeersFromAddress,
        Full::NewTorrentsFromAddress,
    ];

    /// What the client is told.
    pub fn reason(self) -> &'static str {
        match self {
            Full::Torrents => "tracker full: no room for another torrent, retry later",
            Full::Peers => "tracker full: no room for another peer, retry later",
            Full::PeersInTorrent => "torrent full: no room for another peer in this swarm",
            Full::PeersFromAddress => "too many peers from your address in this torrent",
            Full::NewTorrentsFromAddress => "too many new torrents from your address, retry later",
        }
    }

    /// Its name in counters.
    pub fn name(self) -> &'static str {
        match self {
            Full::Torrents => "torrents",
            Full::Peers => "peers",
            Full::PeersInTorrent => "peers_in_torrent",
            Full::PeersFromAddress => "peers_from_address",
            Full::NewTorrentsFromAddress => "new_torrents_from_address",
        }
    }
}

/// Why an announce was not recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnnounceError {
    /// A cap refused the peer: the client's answer says so.
    Full(Full),
    /// The backend failed: the client gets a well-formed answer without peers.
    Store(StoreError),
}

impl From<StoreError> for AnnounceError {
    fn from(e: StoreError) -> Self {
        AnnounceError::Store(e)
    }
}

impl From<Full> for AnnounceError {
    fn from(f: Full) -> Self {
        AnnounceError::Full(f)
    }
}

/// Totals over a whole store, for stats pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub torrents: u64,
    pub seeders_v4: u64,
    pub leechers_v4: u64,
    pub seeders_v6: u64,
    pub leechers_v6: u64,
}

impl Totals {
    pub fn seeders(&self) -> u64 {
        self.seeders_v4 + self.seeders_v6
    }
    pub fn leechers(&self) -> u64 {
        self.leechers_v4 + self.leechers_v6
    }
    pub fn peers(&self) -> u64 {
        self.seeders() + self.leechers()
    }
}

/// The storage seam. `now` comes from the home's clock; randomness comes from `rng`.
pub trait PeerStore {
    /// Records `a` and appends up to `a.want` compact peers of the announcing peer's family to
    /// `peers` (leechers only for a seeder, never the peer itself). Returns the counts of that
    /// family's swarm, with the torrent's completed count. A new torrent or peer beyond the
    /// policy's caps is refused with [`AnnounceError::Full`] and changes nothing.
    fn announce(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> impl Future<Output = Result<SwarmCounts, AnnounceError>>;

    /// Appends one entry per hash, in order, to `out`: counts over both families, zeros for
    /// unknown torrents. A store that fails for some hashes only may still append one entry per
    /// hash (zeros for those) and return the error: the entries are served, the error counted.
    fn scrape(
        &self,
        hashes: &[InfoHash],
        now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> impl Future<Output = Result<(), StoreError>>;

    /// Forgets peers that have not announced within the peer timeout. (A store whose backend
    /// expires entries by itself, as KV does with `expirationTtl`, may do nothing.)
    fn expire(&self, now: UnixTime) -> impl Future<Output = Result<(), StoreError>>;
}

/// Drives a future that is expected to be ready at once (the memory store's) to completion.
/// Panics if it is not: use it only where the store is known to be synchronous.
pub fn now_or_never<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("now_or_never: the future was not ready"),
    }
}
