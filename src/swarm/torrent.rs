//! One torrent in memory: its IPv4 and IPv6 [`PeerList`]s and its completed count.
//!
//! IPv6 peers live in a separate, boxed list so IPv4-only torrents pay one pointer for them.

use super::peer_list::{Delta, PeerList};
use crate::protocol::types::SwarmCounts;
use crate::time::UnixTime;

/// IPv4 peers kept inside the torrent: three 8-byte slots fit where the vector's header would
/// be, so a torrent stays 48 bytes and most torrents (a few peers each) need no allocation.
pub const V4_INLINE: usize = 3;
/// IPv6 peers kept inside their (boxed) list: one 20-byte slot fits the same way, which saves
/// the list's second allocation (not its cache miss: the list itself is boxed).
pub const V6_INLINE: usize = 1;

/// One torrent: its IPv4 and IPv6 swarms and its completed count.
#[derive(Clone, Debug, Default)]
pub struct Torrent {
    pub v4: PeerList<6, (), V4_INLINE>,
    pub v6: Option<Box<PeerList<18, (), V6_INLINE>>>,
    /// Completed downloads: announces with event=completed from peers not already seeding.
    pub downloaded: u32,
    /// The day (Unix days, 0: not quiet) a sweep first found the torrent without peers; its
    /// completed count is kept only so long (see `Policy::completed_retention`). Saved with the
    /// torrent, so a restart does not start the wait again.
    pub quiet_since: u16,
}

impl Torrent {
    /// Counts over both families (what a scrape reports).
    pub fn counts(&self) -> SwarmCounts {
        let (s6, l6) = self
            .v6
            .as_ref()
            .map_or((0, 0), |v6| (v6.seeders(), v6.leechers()));
        SwarmCounts {
            complete: self.v4.seeders() + s6,
            incomplete: self.v4.leechers() + l6,
            downloaded: self.downloaded,
        }
    }

    pub fn has_peers(&self) -> bool {
        !self.v4.is_empty() || self.v6.as_ref().is_some_and(|v6| !v6.is_empty())
    }

    /// Drops expired peers of both families.
    pub fn expire(&mut self, now: UnixTime, timeout: u32) -> Delta {
        let mut d = self.v4.expire(now, timeout);
        if let Some(v6) = &mut self.v6 {
            d += v6.expire(now, timeout);
            if v6.is_empty() {
                self.v6 = None;
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::SwarmCounts;
    use crate::swarm::PeerStatus;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn torrents_stay_small() {
        assert!(std::mem::size_of::<Torrent>() <= 48);
    }

    #[test]
    fn counts_cover_both_families() {
        let mut t = Torrent::default();
        t.v4.announce([10, 0, 0, 1, 0x1a, 0xe1], PeerStatus::Seeding, UnixTime(1));
        t.v6.get_or_insert_default()
            .announce([1; 18], PeerStatus::Leeching, UnixTime(1));
        t.downloaded = 4;
        assert_eq!(
            t.counts(),
            SwarmCounts {
                complete: 1,
                incomplete: 1,
                downloaded: 4
            }
        );
        t.expire(UnixTime(10_000), 100);
        assert!(t.v6.is_none());
        assert!(!t.has_peers());
    }
}
