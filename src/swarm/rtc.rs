//! One WebTorrent swarm: browser peers, known by peer id and the connection that carries them.
//!
//! A WebTorrent peer has no address to hand out. The tracker forwards its WebRTC offers to other
//! peers of the swarm, and their answers back, over the WebSocket each peer keeps open; so a
//! member is a peer id and the home's handle of its connection ([`ConnId`]). Members are kept in
//! one vector per role (a seeder's offers go to leechers only) with an index by peer id: a join,
//! a leave or a lookup is O(1), and choosing whom to hand offers to is [`select::indices`] over
//! the candidates, uniform and without repeats.
//!
//! Peer ids are the clients' own, and any client in a swarm learns others' from the offers it is
//! handed: a member keeps its id against every other connection for as long as its own
//! connection is open (the home says which are), so nobody can take over a peer's answers or
//! stop it. A client that reconnects gets its id back once its old socket is closed. Owns who is
//! in one swarm; knows nothing of JSON, sockets, locks or the other swarms.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::IpAddr;

use rand_core::Rng;

use super::PeerStatus;
use super::select;
use crate::protocol::types::{Event, PeerId};
use crate::time::UnixTime;

/// The home's handle of a WebSocket connection.
pub type ConnId = u64;

/// The WebTorrent knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtcPolicy {
    /// Seconds between a client's announces (`interval`). Browsers' offers expire within a
    /// minute, so a peer meets newcomers mostly through its own announces: short, as the
    /// public WebTorrent trackers run it.
    pub announce_interval: u32,
    /// A member silent this long is dropped, socket or not.
    pub peer_timeout: u32,
    /// Most offers one announce may carry (each is handed to a different peer).
    pub max_offers: usize,
    /// Most swarms one connection may be in at once.
    pub max_torrents_per_connection: usize,
    /// Offers one connection may have forwarded a minute, after a burst of `offers_burst` (0:
    /// no limit). Each offer asks a browser to build a WebRTC answer: without a budget one
    /// socket had the tracker push 86,800 offers a second to the peers of its swarms.
    pub offers_per_minute: u32,
    pub offers_burst: u32,
}

impl RtcPolicy {
    /// Refuses knobs a swarm cannot run on (both homes check theirs with this).
    pub fn validate(&self) -> Result<(), String> {
        if self.announce_interval == 0 || self.peer_timeout < self.announce_interval {
            return Err("announce_interval must be positive and at most peer_timeout".into());
        }
        if !(1..=100).contains(&self.max_offers) {
            return Err("max_offers must be between 1 and 100".into());
        }
        if self.max_torrents_per_connection == 0 {
            return Err("max_torrents_per_connection must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for RtcPolicy {
    fn default() -> Self {
        RtcPolicy {
            announce_interval: 120,
            peer_timeout: 360,
            max_offers: 10,
            max_torrents_per_connection: 64,
            // A browser in 64 swarms, announcing each every 120 s with 10 offers, sends 640 at
            // its start and 320 a minute after.
            offers_per_minute: 600,
            offers_burst: 640,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    peer_id: PeerId,
    conn: ConnId,
    seen: UnixTime,
    /// Its client ([`RtcAnnounce::client`]) as a keyed hash; 0: not known (restored), not
    /// counted.
    client: u64,
}

/// An announce into a WebTorrent swarm.
#[derive(Clone, Copy, Debug)]
pub struct RtcAnnounce {
    pub peer_id: PeerId,
    pub conn: ConnId,
    pub event: Event,
    pub seeding: bool,
    /// Peers to hand an offer to: the offers the client sent (at most what it wants).
    pub offers: usize,
    /// Who the peer is, for the cap per client ([`RtcSwarm::with_client_cap`]): its IPv4
    /// address or IPv6 /64 (`client_key`). `None`: not counted.
    pub client: Option<IpAddr>,
}

/// Why an announce changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcRefusal {
    /// Another connection announced this peer id within the announce interval.
    PeerIdTaken,
    /// The swarm holds its cap of peers.
    Full,
    /// The tracker holds its cap of torrents (a new torrent only).
    TooManyTorrents,
    /// The swarm holds its cap of peers from the announcing client.
    FromAddress,
}

impl RtcRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            RtcRefusal::PeerIdTaken => "peer_id in use by another connection",
            RtcRefusal::Full => "torrent full: no room for another peer in this swarm",
            RtcRefusal::TooManyTorrents => "tracker full: no room for another torrent",
            RtcRefusal::FromAddress => "too many peers from your address in this torrent",
        }
    }
}

/// What an announce did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcAnnounced {
    /// The peer was not in the swarm before.
    pub joined: bool,
    /// The peer id is now held by this announce's connection and was not before (a join, or an
    /// id taken over from a closed connection): the connection must leave it when it closes.
    pub claimed: bool,
    /// The peer was in the swarm and left it (`stopped`).
    pub left: bool,
}

/// The swarm's seeders, leechers and completions, for replies and scrapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcCounts {
    pub complete: u32,
    pub incomplete: u32,
    pub downloaded: u32,
}

/// One torrent's WebTorrent peers. `H` hashes peer ids (keyed: they come from the network).
#[derive(Debug)]
pub struct RtcSwarm<H> {
    /// Leechers, then seeders.
    roles: [Vec<Member>; 2],
    /// Where each member is: its role (seeding) and index in that role's vector.
    index: HashMap<PeerId, (bool, u32), H>,
    /// Members per client, by the keyed hash in [`Member::client`] (already keyed: the map's own
    /// hash need not be).
    per_client: HashMap<u64, u32, BuildHasherDefault<DefaultHasher>>,
    max_per_client: usize,
    downloaded: u32,
}

impl<H: BuildHasher> RtcSwarm<H> {
    pub fn with_hasher(hasher: H) -> Self {
        RtcSwarm {
            roles: [Vec::new(), Vec::new()],
            index: HashMap::with_hasher(hasher),
            per_client: HashMap::default(),
            max_per_client: usize::MAX,
            downloaded: 0,
        }
    }

    /// A swarm taking at most `max` peers from one client (`max_peers_per_address`): one
    /// address's sockets would otherwise fill the swarm everyone else's offers go to.
    pub fn with_client_cap(mut self, max: usize) -> Self {
        self.max_per_client = max;
        self
    }

    fn client_hash(&self, client: Option<IpAddr>) -> u64 {
        client.map_or(0, |ip| self.index.hasher().hash_one(ip).max(1))
    }

    fn count_client(&mut self, client: u64, by: i32) {
        if client == 0 {
            return;
        }
        let n = self.per_client.entry(client).or_insert(0);
        *n = n.saturating_add_signed(by);
        if *n == 0 {
            self.per_client.remove(&client);
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn counts(&self) -> RtcCounts {
        RtcCounts {
            complete: self.roles[1].len() as u32,
            incomplete: self.roles[0].len() as u32,
            downloaded: self.downloaded,
        }
    }

    /// The connection holding `peer_id`, to forward an answer to it.
    pub fn conn_of(&self, peer_id: &PeerId) -> Option<ConnId> {
        let &(seeding, i) = self.index.get(peer_id)?;
        Some(self.roles[usize::from(seeding)][i as usize].conn)
    }

    fn remove(&mut self, peer_id: &PeerId) -> Option<Member> {
        let (seeding, i) = self.index.remove(peer_id)?;
        let role = &mut self.roles[usize::from(seeding)];
        let gone = role.swap_remove(i as usize);
        if let Some(moved) = role.get(i as usize) {
            self.index.insert(moved.peer_id, (seeding, i));
        }
        self.count_client(gone.client, -1);
        Some(gone)
    }

    /// Adds `member` to a role; returns where it is.
    fn insert(&mut self, member: Member, seeding: bool) -> (bool, u32) {
        let role = &mut self.roles[usize::from(seeding)];
        let at = (seeding, role.len() as u32);
        self.index.insert(member.peer_id, at);
        role.push(member);
        self.count_client(member.client, 1);
        at
    }

    /// Records an announce, and appends to `recipients` up to `a.offers` other members to hand
    /// an offer each: leechers only for a seeder, anyone for a leecher, chosen at random. A peer
    /// new to the swarm is refused when it holds `max_peers`; a peer id held by another
    /// connection that `is_open` is refused (announce and stop alike).
    pub fn announce(
        &mut self,
        a: &RtcAnnounce,
        now: UnixTime,
        is_open: &dyn Fn(ConnId) -> bool,
        max_peers: usize,
        rng: &mut impl Rng,
        recipients: &mut Vec<ConnId>,
    ) -> Result<RtcAnnounced, RtcRefusal> {
        let status = PeerStatus::new(a.event, a.seeding);
        // One lookup: where the peer is, and its member.
        let known = self.index.get(&a.peer_id).map(|&(seeding, i)| {
            let m = self.roles[usize::from(seeding)][i as usize];
            (seeding, i, m)
        });
        if let Some((_, _, m)) = known
            && m.conn != a.conn
            && is_open(m.conn)
        {
            return Err(RtcRefusal::PeerIdTaken);
        }
        let claimed = known.is_none_or(|(_, _, m)| m.conn != a.conn);
        let was_seeder = known.is_some_and(|(seeding, _, _)| seeding);
        if status == PeerStatus::Stopped {
            return Ok(RtcAnnounced {
                joined: false,
                claimed: false,
                left: self.remove(&a.peer_id).is_some(),
            });
        }
        if known.is_none() && self.len() >= max_peers {
            return Err(RtcRefusal::Full);
        }
        let client = self.client_hash(a.client);
        if known.is_none()
            && client != 0
            && self.per_client.get(&client).map_or(0, |&n| n as usize) >= self.max_per_client
        {
            return Err(RtcRefusal::FromAddress);
        }
        let member = Member {
            peer_id: a.peer_id,
            conn: a.conn,
            seen: now,
            client,
        };
        let at = match known {
            Some((seeding, i, old)) if seeding == a.seeding => {
                if old.client != client {
                    self.count_client(old.client, -1);
                    self.count_client(client, 1);
                }
                self.roles[usize::from(seeding)][i as usize] = member;
                (seeding, i)
            }
            _ => {
                self.remove(&a.peer_id);
                self.insert(member, a.seeding)
            }
        };
        if a.event == Event::Completed && !was_seeder {
            self.downloaded = self.downloaded.saturating_add(1);
        }
        self.choose(at, a.offers, rng, recipients);
        Ok(RtcAnnounced {
            joined: known.is_none(),
            claimed,
            left: false,
        })
    }

    /// Up to `want` members other than the requester (at `(seeding, index)`), at random:
    /// leechers only for a seeder.
    fn choose(
        &self,
        (seeding, i): (bool, u32),
        want: usize,
        rng: &mut impl Rng,
        out: &mut Vec<ConnId>,
    ) {
        let (leechers, seeders) = (&self.roles[0], &self.roles[1]);
        let requester_at = Some(if seeding {
            leechers.len() + i as usize
        } else {
            i as usize
        });
        select::for_requester(
            leechers.len(),
            leechers.len() + seeders.len(),
            requester_at,
            seeding,
            want,
            rng,
            |i| {
                let m = match leechers.get(i) {
                    Some(m) => m,
                    None => &seeders[i - leechers.len()],
                };
                out.push(m.conn);
            },
        );
    }

    /// Removes `peer_id` if `conn` still holds it (its socket closed); true if it was removed.
    pub fn leave(&mut self, peer_id: &PeerId, conn: ConnId) -> bool {
        if self.conn_of(peer_id) == Some(conn) {
            self.remove(peer_id);
            true
        } else {
            false
        }
    }

    /// Drops members silent for more than `timeout` seconds (a client whose socket lives on
    /// but who stopped announcing); returns how many.
    pub fn expire(&mut self, now: UnixTime, timeout: u32) -> usize {
        self.expire_each(now, timeout, |_| ())
    }

    /// [`Self::expire`], telling `gone` each peer id dropped (a home that mirrors the swarm
    /// into storage deletes its row).
    pub fn expire_each(
        &mut self,
        now: UnixTime,
        timeout: u32,
        mut gone: impl FnMut(PeerId),
    ) -> usize {
        let stale: Vec<PeerId> = self
            .roles
            .iter()
            .flatten()
            .filter(|m| now.since(m.seen) > timeout)
            .map(|m| m.peer_id)
            .collect();
        for p in &stale {
            self.remove(p);
            gone(*p);
        }
        stale.len()
    }

    /// A member as last announced: its connection, whether it seeds, and when it was seen.
    pub fn member(&self, peer_id: &PeerId) -> Option<(ConnId, bool, UnixTime)> {
        let &(seeding, i) = self.index.get(peer_id)?;
        let m = self.roles[usize::from(seeding)][i as usize];
        Some((m.conn, seeding, m.seen))
    }

    /// Puts back a member a home kept in storage (a peer id already present is left as it is).
    pub fn restore(&mut self, peer_id: PeerId, conn: ConnId, seeding: bool, seen: UnixTime) {
        if !self.index.contains_key(&peer_id) {
            self.insert(
                Member {
                    peer_id,
                    conn,
                    seen,
                    client: 0,
                },
                seeding,
            );
        }
    }

    /// Puts back the completed count a home kept in storage.
    pub fn restore_downloaded(&mut self, downloaded: u32) {
        self.downloaded = downloaded;
    }
}

#[cfg(test)]
mod tests;
