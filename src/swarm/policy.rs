//! The knobs of tracker policy, and the decisions that follow from them alone.

use std::net::IpAddr;

use crate::protocol::types::AnnounceRequest;

use super::peer::PeerAddr;

/// Tracker policy shared by every home. All durations are seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
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
        if self.scrape_max_hashes == 0 {
            return Err("scrape_max_hashes must be positive".into());
        }
        Ok(())
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
