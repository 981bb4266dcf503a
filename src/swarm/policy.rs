//! The knobs of tracker policy, and the decisions that follow from them alone.

use std::net::IpAddr;

use crate::protocol::types::{AnnounceRequest, Event};

use super::peer::PeerAddr;

/// Tracker policy shared by every home. All durations are seconds.
///
/// The native tracker's `[tracker]` configuration section embeds it (serde: every field but
/// `sparse_swarm_interval`, an edge setting, is a key there, with these defaults); the Worker
/// reads the same knobs from its vars.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Policy {
    /// How often clients should announce (`interval`).
    pub announce_interval: u32,
    /// How often clients may announce at most (`min interval`).
    pub min_interval: u32,
    /// A peer that has not announced for this long is dropped (about 1.5 × interval).
    pub peer_timeout: u32,
    /// Peers returned when the client does not say (`numwant` absent).
    pub numwant_default: u32,
    /// Most peers returned whatever the client asks.
    pub numwant_max: u32,
    /// Most info hashes in one scrape.
    pub scrape_max_hashes: u32,
    /// Trust the address a client claims (`ip=`, BEP 15's IP field). Off by default: it lets
    /// anyone aim a swarm at a third party (BEP 7, 2020 revision).
    pub accept_claimed_ip: bool,
    /// `interval` for a client that starts alone in its swarm (0: off, always
    /// `announce_interval`). A store that shows new peers late (Workers KV lists lag writes by
    /// up to a minute) sets it, so the first peers of a torrent, who may each have seen an empty
    /// swarm, meet within minutes. Only `event=started` gets it: a client already in the swarm
    /// is visible to newcomers, and a lone seeder is not asked back fifteen times as often.
    #[serde(skip)]
    pub sparse_swarm_interval: u32,
    /// Seconds a torrent's completed count is kept after its last peer left (0: dropped with
    /// the last peer). Without a bound, anyone could fill memory with peerless torrents by
    /// announcing `completed` once in each.
    pub completed_retention: u32,
    /// Most torrents tracked at once. At the cap, torrents kept without peers (for their
    /// completed count) make room for a new one, oldest first; a torrent with peers is never
    /// pushed out.
    pub max_torrents: u32,
    /// New torrents one client (an IPv4 address, an IPv6 /64) may create a minute, after a
    /// burst of `new_torrents_burst` (0: no limit). Its network (an IPv4 /24, an IPv6 /48) may
    /// create four times as many. Without it one address could fill `max_torrents` with made-up
    /// info hashes in a minute and a half.
    pub new_torrents_per_minute: u32,
    pub new_torrents_burst: u32,
    /// Most peers tracked at once, over all torrents.
    pub max_peers: u32,
    /// Most peers in one torrent (both families).
    pub max_peers_per_torrent: u32,
    /// Most peers in one torrent from one client (an IPv4 address, an IPv6 /64): many ports of
    /// one address would otherwise crowd out everyone else's peers.
    pub max_peers_per_address: u32,
}

/// Longest peer timeout: peers keep a 16-bit last-seen stamp in seconds that wraps every 18 h,
/// and expiry must run well within one wrap.
pub const MAX_PEER_TIMEOUT: u32 = 12 * 3600;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            announce_interval: 1800,
            min_interval: 900,
            peer_timeout: 2700,
            numwant_default: 50,
            numwant_max: 200,
            scrape_max_hashes: 64,
            accept_claimed_ip: false,
            sparse_swarm_interval: 0,
            completed_retention: 30 * 86_400,
            max_torrents: 5_000_000,
            new_torrents_per_minute: 100,
            new_torrents_burst: 1000,
            max_peers: 20_000_000,
            max_peers_per_torrent: 1_000_000,
            max_peers_per_address: 16,
        }
    }
}

impl Policy {
    /// Checks the knobs make sense together; the message names the knob.
    pub fn validate(&self) -> Result<(), String> {
        if self.announce_interval == 0 {
            return Err("announce_interval must be positive".into());
        }
        if self.min_interval > self.announce_interval {
            return Err("min_interval must not exceed announce_interval".into());
        }
        if self.peer_timeout < self.announce_interval {
            return Err("peer_timeout must be at least announce_interval (peers would vanish between announces)".into());
        }
        if self.peer_timeout > MAX_PEER_TIMEOUT {
            return Err(format!("peer_timeout must be at most {MAX_PEER_TIMEOUT} s"));
        }
        if self.numwant_default > self.numwant_max {
            return Err("numwant_default must not exceed numwant_max".into());
        }
        if self.sparse_swarm_interval > self.announce_interval {
            return Err("sparse_swarm_interval must not exceed announce_interval".into());
        }
        for (cap, name) in [
            (self.max_torrents, "max_torrents"),
            (self.max_peers, "max_peers"),
            (self.max_peers_per_torrent, "max_peers_per_torrent"),
            (self.max_peers_per_address, "max_peers_per_address"),
        ] {
            if cap == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.scrape_max_hashes == 0 {
            return Err("scrape_max_hashes must be positive".into());
        }
        Ok(())
    }

    /// The (`interval`, `min interval`) to send a client that announced `event` and whose swarm
    /// (its family's, itself included) now counts `swarm_size` peers.
    pub fn intervals(&self, event: Event, swarm_size: u64) -> (u32, u32) {
        if self.sparse_swarm_interval > 0 && event == Event::Started && swarm_size <= 1 {
            let i = self.sparse_swarm_interval;
            (i, self.min_interval.min(i))
        } else {
            (self.announce_interval, self.min_interval)
        }
    }

    /// How many peers to return for a request asking for `numwant`, within `transport_max`
    /// (what fits one reply on this transport).
    pub fn peers_wanted(&self, numwant: Option<u32>, transport_max: usize) -> usize {
        let n = numwant
            .unwrap_or(self.numwant_default)
            .min(self.numwant_max);
        (n as usize).min(transport_max)
    }

    /// The address a peer is reached at: the transport's source address, unless the operator
    /// trusts claimed addresses and the client claimed one of the same family.
    pub fn peer_addr(&self, source: IpAddr, req: &AnnounceRequest) -> PeerAddr {
        let from_source = PeerAddr::new(source, req.port);
        match req.claimed_ip {
            Some(claimed) if self.accept_claimed_ip => {
                let claimed = PeerAddr::new(claimed, req.port);
                if claimed.family() == from_source.family() {
                    claimed
                } else {
                    from_source
                }
            }
            _ => from_source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_client_starting_alone_gets_the_sparse_interval_when_one_is_set() {
        let off = Policy::default();
        assert_eq!(off.intervals(Event::Started, 0), (1800, 900));
        assert_eq!(off.intervals(Event::Started, 1), (1800, 900));
        let on = Policy {
            sparse_swarm_interval: 120,
            ..Policy::default()
        };
        assert_eq!(
            on.intervals(Event::Started, 1),
            (120, 120),
            "starting alone"
        );
        assert_eq!(
            on.intervals(Event::Started, 2),
            (1800, 900),
            "someone to meet"
        );
        assert_eq!(
            on.intervals(Event::None, 1),
            (1800, 900),
            "already visible to newcomers"
        );
        assert_eq!(on.intervals(Event::Completed, 1), (1800, 900));
        let too_long = Policy {
            sparse_swarm_interval: 1801,
            ..Policy::default()
        };
        assert!(
            too_long
                .validate()
                .unwrap_err()
                .contains("sparse_swarm_interval")
        );
    }
}
