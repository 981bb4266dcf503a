//! The protocol's vocabulary, shared by the HTTP and UDP front ends.

use std::fmt;
use std::net::IpAddr;

/// A torrent's info hash: 20 opaque bytes (v2/hybrid torrents announce their truncated hash).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InfoHash(pub [u8; 20]);

/// A peer's self-chosen id. Untrusted: peers are keyed by address, never by this.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PeerId(pub [u8; 20]);

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::hex::encode(&self.0))
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PeerId({})",
            String::from_utf8_lossy(&self.0).escape_debug()
        )
    }
}

/// What an announce says happened (BEP 3 `event`, BEP 15 event codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Event {
    /// A regular, periodic announce.
    #[default]
    None,
    Started,
    Completed,
    Stopped,
}

/// An announce, as either front end parsed it. The client's address is not in here: it comes
/// from the transport (socket or trusted header), never from the request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// The port the peer accepts BitTorrent connections on (never 0).
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes still missing; 0 means the peer is a seeder.
    pub left: u64,
    pub event: Event,
    /// Peers wanted; `None` when the client left it to the tracker.
    pub numwant: Option<u32>,
    /// BEP 23: the client accepts compact peer lists (HTTP only; UDP is always compact).
    pub compact: bool,
    /// The client does not want `peer id` in non-compact peer dicts.
    pub no_peer_id: bool,
    /// The client's `key` (BEP 3 extension): lets a tracker recognise a peer across IP changes.
    pub key: Option<u32>,
    /// An address the client claims for itself (`ip=`, `ipv4=`, `ipv6=`, or BEP 15's IP field).
    /// Ignored unless the operator opts in: it is a DDoS vector (BEP 7, 2020 revision).
    pub claimed_ip: Option<IpAddr>,
}

/// The address family of a request, which decides the swarm it joins and the peers it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family a client really speaks: IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack
    /// socket reports for IPv4 clients) counts as IPv4.
    pub fn of(ip: IpAddr) -> Family {
        match canonical_ip(ip) {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// Unwraps IPv4-mapped IPv6 addresses, so one client has one identity however it arrived.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Swarm counts as reported by announce and scrape replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SwarmCounts {
    /// Seeders (`complete`).
    pub complete: u32,
    /// Leechers (`incomplete`).
    pub incomplete: u32,
    /// Times the torrent was completed (`downloaded`): announces with event=completed.
    pub downloaded: u32,
}
