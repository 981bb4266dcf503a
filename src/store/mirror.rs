//! One torrent's swarm held in memory and mirrored to row storage with as few writes as
//! possible: the brain of the edge's Durable Object store, without its I/O.
//!
//! The swarm lives in memory and answers from there (the same [`PeerList`]s, selection and counts
//! as the memory store, so the same request gets the same bytes). What storage must learn comes
//! out as [`Write`]s for the caller to carry out: a row when a peer joins or changes role, or when
//! its row would otherwise look expired before the client's next announce; a delete when a peer
//! stops or expires; the completed count when it changes; and [`Write::Clear`] when the swarm
//! empties and has no completed count, so an abandoned torrent keeps no storage. Most steady
//! announces write nothing.
//!
//! Storage is the truth after a restart: [`MirroredSwarm::load`] rebuilds the swarm from rows,
//! each peer taken as last seen when its row was written (so a reload may make a peer look older,
//! never younger). Expiry is lazy: a sweep runs on access at most every [`SWEEP_EVERY`] seconds, so
//! nothing needs a timer to keep the object awake. Owns that bookkeeping; knows no SQL, clock,
//! socket or wire format.

use std::collections::BTreeSet;

use rand_core::Rng;

use super::{Full, PeerAnnounce};
use crate::protocol::types::{Event, SwarmCounts};
use crate::swarm::peer_list::{Delta, PeerList};
use crate::swarm::{PeerAddr, PeerStatus, Policy};
use crate::time::UnixTime;

/// Seconds between lazy expiry sweeps: an expired peer may be served this much past its timeout.
pub const SWEEP_EVERY: u32 = 30;

/// Longest gap between two uses after which the in-memory stamps (16-bit, wrapping every 18 h)
/// can no longer be trusted and the swarm must be reloaded from storage. Well within
/// `2^16 − MAX_PEER_TIMEOUT − SWEEP_EVERY` seconds.
pub const RELOAD_AFTER: u32 = 6 * 3600;

/// The knobs of [`Policy`] a mirrored swarm runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// A peer silent this long is gone.
    pub peer_timeout: u32,
    /// How often clients announce.
    pub announce_interval: u32,
    /// Most peers in the swarm (both families).
    pub max_peers: u32,
    /// Most peers in the swarm from one client (an IPv4 address, an IPv6 /64).
    pub max_peers_per_address: u32,
}

impl Knobs {
    pub fn of(policy: &Policy) -> Knobs {
        Knobs {
            peer_timeout: policy.peer_timeout,
            announce_interval: policy.announce_interval,
            max_peers: policy.max_peers_per_torrent,
            max_peers_per_address: policy.max_peers_per_address,
        }
    }

    /// Whether a swarm can run on them (the in-memory stamps: see
    /// [`crate::swarm::policy::MAX_PEER_TIMEOUT`]; caps of at least one).
    pub fn is_valid(&self) -> bool {
        self.announce_interval > 0
            && self.peer_timeout >= self.announce_interval
            && self.peer_timeout <= crate::swarm::policy::MAX_PEER_TIMEOUT
            && self.max_peers > 0
            && self.max_peers_per_address > 0
    }

    /// A row older than this is rewritten at the peer's next announce: it would otherwise not
    /// outlive the client's next announce plus a minute of slack for late clients. With a
    /// timeout of 3 × interval, every other steady announce writes.
    fn refresh_after(&self) -> u32 {
        self.peer_timeout
            .saturating_sub(self.announce_interval)
            .saturating_sub(60)
    }
}

/// A peer's row in storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub peer: PeerAddr,
    pub seeding: bool,
    /// When the row was written: on reload, the peer counts as last seen then.
    pub written: UnixTime,
    /// A leecher that was a seeder: its next `completed` is not another download.
    pub demoted: bool,
}

/// What storage must do to mirror the swarm, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Insert or replace this peer's row.
    Peer(Row),
    /// Delete this peer's row (it stopped or expired).
    Forget(PeerAddr),
    /// Store the completed count.
    Downloaded(u32),
    /// No peers and no completed count: delete everything stored. Always the only write of
    /// its request.
    Clear,
}

/// Per-peer data beside the in-memory slot: when the peer's row was last written.
type Written = UnixTime;

/// One torrent's swarm, mirrored.
#[derive(Debug)]
pub struct MirroredSwarm {
    v4: PeerList<6, Written>,
    v6: PeerList<18, Written>,
    downloaded: u32,
    /// Leechers that were seeders in this swarm (their rows say so too): a completion counts once
    /// per peer. Few, so kept aside rather than beside every peer.
    demoted: BTreeSet<PeerAddr>,
    knobs: Knobs,
    /// A row older than this is rewritten at the peer's next announce.
    refresh_after: u32,
    last_sweep: UnixTime,
    /// The latest `now` seen: time never runs backwards here (a clock stepped back would make
    /// fresh stamps look 18 h old).
    last_now: UnixTime,
    /// Storage holds something (rows or a count), so emptying the swarm must clear it.
    stored: bool,
}

impl MirroredSwarm {
    /// An empty swarm with nothing stored.
    pub fn new(knobs: Knobs, now: UnixTime) -> Self {
        MirroredSwarm {
            v4: PeerList::default(),
            v6: PeerList::default(),
            downloaded: 0,
            demoted: BTreeSet::new(),
            knobs,
            refresh_after: knobs.refresh_after(),
            last_sweep: now,
            last_now: now,
            stored: false,
        }
    }

    /// Rebuilds a swarm from what storage holds (call it only when storage holds something: a
    /// swarm loaded here clears storage once it is empty). Rows already past the timeout are
    /// dropped and their deletion pushed to `writes`.
    pub fn load(
        knobs: Knobs,
        rows: impl IntoIterator<Item = Row>,
        downloaded: u32,
        now: UnixTime,
        writes: &mut Vec<Write>,
    ) -> Self {
        let mut swarm = MirroredSwarm::new(knobs, now);
        swarm.downloaded = downloaded;
        swarm.stored = true;
        for row in rows {
            let seen = row.written.min(now);
            if now.since(seen) > swarm.knobs.peer_timeout {
                writes.push(Write::Forget(row.peer));
                continue;
            }
            match row.peer {
                PeerAddr::V4(addr) => load_into(&mut swarm.v4, addr, &row, seen),
                PeerAddr::V6(addr) => load_into(&mut swarm.v6, addr, &row, seen),
            }
            if row.demoted && !row.seeding {
                swarm.demoted.insert(row.peer);
            }
        }
        swarm
    }

    /// Takes new knobs (an operator changed them and redeployed) from the next request on.
    pub fn set_knobs(&mut self, knobs: Knobs) {
        self.knobs = knobs;
        self.refresh_after = knobs.refresh_after();
    }

    /// Whether so much time passed since the last use that the swarm must be reloaded from
    /// storage before it answers again.
    pub fn must_reload(&self, now: UnixTime) -> bool {
        now.since(self.last_now) > RELOAD_AFTER
    }

    /// Records an announce (see [`super::PeerStore::announce`]), pushing what storage must do.
    /// A new peer beyond the knobs' caps is refused and changes nothing (but a due sweep).
    pub fn announce(
        &mut self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
        writes: &mut Vec<Write>,
    ) -> Result<SwarmCounts, Full> {
        let now = self.clock(now);
        self.sweep(now, writes);
        let in_swarm = self.len();
        let knobs = self.knobs;
        let may_join = |same_address: usize| {
            if in_swarm >= knobs.max_peers as usize {
                Err(Full::PeersInTorrent)
            } else if same_address >= knobs.max_peers_per_address as usize {
                Err(Full::PeersFromAddress)
            } else {
                Ok(())
            }
        };
        let was_demoted = self.demoted.contains(&a.peer);
        let (refresh_after, v4, v6) = (self.refresh_after, &mut self.v4, &mut self.v6);
        let (was_seeder, (complete, incomplete)) = match a.peer {
            PeerAddr::V4(addr) => {
                let admit = |l: &PeerList<6, Written>| may_join(l.count_prefix(&addr[..4]));
                announce_in(v4, addr, a, now, refresh_after, admit, rng, peers, writes)?
            }
            PeerAddr::V6(addr) => {
                let admit = |l: &PeerList<18, Written>| may_join(l.count_prefix(&addr[..8]));
                announce_in(v6, addr, a, now, refresh_after, admit, rng, peers, writes)?
            }
        };
        // A seeder that goes back to leeching stays marked until it seeds again or leaves, in
        // memory and in the row this request writes for it (a change of role always writes one).
        let demoted = !a.seeding && a.event != Event::Stopped && (was_seeder || was_demoted);
        if demoted {
            self.demoted.insert(a.peer);
        } else {
            self.demoted.remove(&a.peer);
        }
        for w in writes.iter_mut() {
            if let Write::Peer(row) = w
                && row.peer == a.peer
            {
                row.demoted = demoted;
            }
        }
        if writes.iter().any(|w| matches!(w, Write::Peer(_))) {
            self.stored = true;
        }
        if a.event == Event::Completed && !was_seeder && !was_demoted {
            self.downloaded = self.downloaded.saturating_add(1);
            writes.push(Write::Downloaded(self.downloaded));
            self.stored = true;
        }
        self.clear_if_empty(writes);
        Ok(SwarmCounts {
            complete,
            incomplete,
            downloaded: self.downloaded,
        })
    }

    /// Counts over both families, for a scrape (after a due sweep, whose deletions go to
    /// `writes`).
    pub fn counts(&mut self, now: UnixTime, writes: &mut Vec<Write>) -> SwarmCounts {
        let now = self.clock(now);
        self.sweep(now, writes);
        self.clear_if_empty(writes);
        SwarmCounts {
            complete: self.v4.seeders() + self.v6.seeders(),
            incomplete: self.v4.leechers() + self.v6.leechers(),
            downloaded: self.downloaded,
        }
    }

    /// Peers of both families.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every peer's row as storage should hold it (for tests and checks).
    pub fn rows(&self) -> impl Iterator<Item = Row> + '_ {
        let demoted = |p: &PeerAddr| self.demoted.contains(p);
        let v4 = self.v4.iter_extra().map(move |(a, s, &w)| Row {
            peer: PeerAddr::V4(*a),
            seeding: s,
            written: w,
            demoted: demoted(&PeerAddr::V4(*a)),
        });
        let v6 = self.v6.iter_extra().map(move |(a, s, &w)| Row {
            peer: PeerAddr::V6(*a),
            seeding: s,
            written: w,
            demoted: demoted(&PeerAddr::V6(*a)),
        });
        v4.chain(v6)
    }

    pub fn downloaded(&self) -> u32 {
        self.downloaded
    }

    fn clock(&mut self, now: UnixTime) -> UnixTime {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn sweep(&mut self, now: UnixTime, writes: &mut Vec<Write>) {
        if now.since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let timeout = self.knobs.peer_timeout;
        let demoted = &mut self.demoted;
        let mut gone = |peer: PeerAddr| {
            demoted.remove(&peer);
            writes.push(Write::Forget(peer));
        };
        self.v4
            .expire_each(now, timeout, |a, _| gone(PeerAddr::V4(*a)));
        self.v6
            .expire_each(now, timeout, |a, _| gone(PeerAddr::V6(*a)));
    }

    /// The last step of every request: an empty swarm without a completed count keeps nothing,
    /// and one [`Write::Clear`] replaces whatever the request would have written. So a `Clear`
    /// is always the only write of its request (nothing can follow it and be lost).
    fn clear_if_empty(&mut self, writes: &mut Vec<Write>) {
        if self.stored && self.is_empty() && self.downloaded == 0 {
            writes.clear();
            writes.push(Write::Clear);
            self.stored = false;
        }
    }
}

/// Puts a stored peer back, last seen at `seen`, its row's write time as stored.
fn load_into<const N: usize>(
    list: &mut PeerList<N, Written>,
    addr: [u8; N],
    row: &Row,
    seen: UnixTime,
) {
    if let (_, Some(at)) = list.announce(addr, PeerStatus::staying(row.seeding), seen) {
        *list.extra_mut(at) = row.written;
    }
}

/// One announce on one family's list, new peers admitted by `may_join`. Returns whether the
/// peer was already a seeder, and the list's (seeders, leechers).
#[allow(clippy::too_many_arguments)]
fn announce_in<const N: usize>(
    list: &mut PeerList<N, Written>,
    addr: [u8; N],
    a: &PeerAnnounce,
    now: UnixTime,
    refresh_after: u32,
    may_join: impl FnOnce(&PeerList<N, Written>) -> Result<(), Full>,
    rng: &mut impl Rng,
    peers: &mut Vec<u8>,
    writes: &mut Vec<Write>,
) -> Result<(bool, (u32, u32)), Full> {
    let (announced, at) = list.announce_admitting(addr, a.status(), now, may_join)?;
    match at {
        None if announced.delta != Delta::default() => writes.push(Write::Forget(a.peer)),
        None => {}
        Some(at) => {
            let written = list.extra_mut(at);
            // A peer that joined or changed role was (re)inserted with `written == 0`.
            if announced.delta != Delta::default() || now.since(*written) >= refresh_after {
                *written = now;
                writes.push(Write::Peer(Row {
                    peer: a.peer,
                    seeding: a.seeding,
                    written: now,
                    // Set by the caller, which knows whether the peer was a seeder.
                    demoted: false,
                }));
            }
            list.select(Some(at), a.seeding, a.want, rng, peers);
        }
    }
    Ok((announced.was_seeder, (list.seeders(), list.leechers())))
}

#[cfg(test)]
mod tests;
