//! One torrent's swarm in memory, laid out for the hot path and for bytes per peer.
//!
//! A swarm of one address family is a single `Vec` of fixed-size slots (compact address + a
//! 16-bit last-seen stamp: 8 bytes per IPv4 peer, 20 per IPv6 peer), split in two sorted runs:
//! leechers first, then seeders. Finding a peer is a binary search in one run; "seeders get no
//! seeders" is a sample from the first run only; counts are the run lengths, kept as they change,
//! never rescanned. IPv6 peers live in a separate, boxed list so IPv4-only torrents pay one
//! pointer for them.

use rand_core::Rng;

use super::select;
use crate::protocol::types::SwarmCounts;

/// One peer: compact address (`N` = 6 or 18 bytes), when it last announced, and whatever a
/// store keeps beside it (`X`; nothing for the memory store, so a slot stays 8 or 20 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Slot<const N: usize, X = ()> {
    addr: [u8; N],
    /// Unix seconds mod 2^16 of the last announce. Wraps every 18 h; expiry, which runs far more
    /// often than that, compares with wrapping arithmetic.
    seen: u16,
    extra: X,
}

/// Seconds a last-seen stamp may lie ahead of the sweep's `now` and still count as fresh.
pub const FUTURE_SLACK: u16 = 600;

fn stamp(now: u32) -> u16 {
    now as u16
}

/// Change in a swarm's seeder and leecher counts, for store-wide totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub seeders: i64,
    pub leechers: i64,
}

impl std::ops::AddAssign for Delta {
    fn add_assign(&mut self, o: Delta) {
        self.seeders += o.seeders;
        self.leechers += o.leechers;
    }
}

/// The outcome of one announce on a peer list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    pub delta: Delta,
    /// The peer was already known as a seeder before this announce, so an event=completed from
    /// it is a repeat and must not count as another download.
    pub was_seeder: bool,
}

/// The peers of one family of one torrent. `X` is per-peer data of the store's (default none),
/// reset to `X::default()` whenever a peer joins or changes role.
#[derive(Clone, Debug)]
pub struct PeerList<const N: usize, X = ()> {
    /// `[0, leechers)` leechers, `[leechers, len)` seeders, each run sorted by address.
    slots: Vec<Slot<N, X>>,
    leechers: u32,
}

impl<const N: usize, X> Default for PeerList<N, X> {
    fn default() -> Self {
        PeerList {
            slots: Vec::new(),
            leechers: 0,
        }
    }
}

impl<const N: usize, X: Copy + Default> PeerList<N, X> {
    pub fn seeders(&self) -> u32 {
        self.slots.len() as u32 - self.leechers
    }

    pub fn leechers(&self) -> u32 {
        self.leechers
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn run(&self, seeding: bool) -> (usize, usize) {
        let l = self.leechers as usize;
        if seeding {
            (l, self.slots.len())
        } else {
            (0, l)
        }
    }

    /// Where `addr` is (or would go) in the run of `seeding`.
    fn search(&self, addr: &[u8; N], seeding: bool) -> Result<usize, usize> {
        let (lo, hi) = self.run(seeding);
        match self.slots[lo..hi].binary_search_by(|s| s.addr.cmp(addr)) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }

    fn remove_at(&mut self, at: usize, seeding: bool) -> Delta {
        self.slots.remove(at);
        if seeding {
            Delta {
                seeders: -1,
                leechers: 0,
            }
        } else {
            self.leechers -= 1;
            Delta {
                seeders: 0,
                leechers: -1,
            }
        }
    }

    fn insert(&mut self, addr: [u8; N], seeding: bool, now: u32) -> (usize, Delta) {
        let at = self.search(&addr, seeding).unwrap_err();
        self.slots.insert(
            at,
            Slot {
                addr,
                seen: stamp(now),
                extra: X::default(),
            },
        );
        if seeding {
            (
                at,
                Delta {
                    seeders: 1,
                    leechers: 0,
                },
            )
        } else {
            self.leechers += 1;
            (
                at,
                Delta {
                    seeders: 0,
                    leechers: 1,
                },
            )
        }
    }

    /// Records an announce of `addr`. Returns what changed and, unless the peer left, its index.
    pub fn announce(
        &mut self,
        addr: [u8; N],
        seeding: bool,
        stopped: bool,
        now: u32,
    ) -> (Announced, Option<usize>) {
        match self.announce_admitting(addr, seeding, stopped, now, |_| Ok::<(), ()>(())) {
            Ok(done) => done,
            Err(()) => unreachable!("admits everyone"),
        }
    }

    /// [`PeerList::announce`], asking `may_join` first when `addr` would be a new peer: its
    /// refusal is returned and nothing changes.
    pub fn announce_admitting<E>(
        &mut self,
        addr: [u8; N],
        seeding: bool,
        stopped: bool,
        now: u32,
        may_join: impl FnOnce(&Self) -> Result<(), E>,
    ) -> Result<(Announced, Option<usize>), E> {
        let mut out = Announced::default();
        let found = match self.search(&addr, seeding) {
            Ok(at) => Some((at, seeding)),
            Err(_) => self.search(&addr, !seeding).ok().map(|at| (at, !seeding)),
        };
        Ok(match found {
            Some((at, was_seeding)) if stopped => {
                out.delta = self.remove_at(at, was_seeding);
                (out, None)
            }
            None if stopped => (out, None),
            Some((at, was_seeding)) if was_seeding == seeding => {
                self.slots[at].seen = stamp(now);
                out.was_seeder = was_seeding;
                (out, Some(at))
            }
            Some((at, was_seeding)) => {
                out.delta = self.remove_at(at, was_seeding);
                let (at, d) = self.insert(addr, seeding, now);
                out.delta += d;
                out.was_seeder = was_seeding;
                (out, Some(at))
            }
            None => {
                may_join(self)?;
                let (at, d) = self.insert(addr, seeding, now);
                out.delta = d;
                (out, Some(at))
            }
        })
    }

    /// Peers whose address starts with `prefix` (an IPv4 address, an IPv6 /64): a binary search
    /// in each run, since both are sorted by address.
    pub fn count_prefix(&self, prefix: &[u8]) -> usize {
        let k = prefix.len().min(N);
        let prefix = &prefix[..k];
        [self.run(false), self.run(true)]
            .into_iter()
            .map(|(lo, hi)| {
                let run = &self.slots[lo..hi];
                let start = run.partition_point(|s| &s.addr[..k] < prefix);
                let end = run.partition_point(|s| &s.addr[..k] <= prefix);
                end - start
            })
            .sum()
    }

    /// Appends up to `want` random peers' compact addresses to `out`: leechers only for a seeder,
    /// everyone else for a leecher, never the requester (at index `requester`).
    pub fn select(
        &self,
        requester: Option<usize>,
        seeding: bool,
        want: usize,
        rng: &mut impl Rng,
        out: &mut Vec<u8>,
    ) {
        select::for_requester(
            self.leechers as usize,
            self.slots.len(),
            requester,
            seeding,
            want,
            rng,
            |i| out.extend_from_slice(&self.slots[i].addr),
        );
    }

    /// The store's data of the peer at `at` (an index [`PeerList::announce`] returned).
    pub fn extra_mut(&mut self, at: usize) -> &mut X {
        &mut self.slots[at].extra
    }

    /// Drops peers not seen for more than `timeout` seconds; gives back spare capacity.
    pub fn expire(&mut self, now: u32, timeout: u32) -> Delta {
        self.expire_each(now, timeout, |_, _| {})
    }

    /// [`PeerList::expire`], calling `on_gone` with each dropped peer's address and role.
    pub fn expire_each(
        &mut self,
        now: u32,
        timeout: u32,
        mut on_gone: impl FnMut(&[u8; N], bool),
    ) -> Delta {
        let now = stamp(now);
        let timeout = timeout.min(u32::from(u16::MAX)) as u16;
        let leechers = self.leechers as usize;
        let mut index = 0usize;
        let mut gone = Delta::default();
        self.slots.retain(|s| {
            // An age within the last FUTURE_SLACK seconds of the span is a stamp from a few
            // minutes ahead (a clock stepped back), not one 18 hours old: ages that large never
            // reach a sweep (peer_timeout + sweep interval stay below the span less the slack).
            let age = now.wrapping_sub(s.seen);
            let keep = age <= timeout || age > u16::MAX - FUTURE_SLACK;
            if !keep {
                on_gone(&s.addr, index >= leechers);
                if index < leechers {
                    gone.leechers -= 1
                } else {
                    gone.seeders -= 1
                }
            }
            index += 1;
            keep
        });
        self.leechers = (self.leechers as i64 + gone.leechers) as u32;
        if self.slots.capacity() > 2 * self.slots.len() + 4 {
            self.slots.shrink_to_fit();
        }
        gone
    }

    /// Every peer with its role and when it last announced (Unix seconds, recovered from the
    /// 16-bit stamp relative to `now`), for snapshots.
    pub fn iter_seen(&self, now: u32) -> impl Iterator<Item = (&[u8; N], bool, u32)> {
        let stamp_now = stamp(now);
        self.iter()
            .zip(&self.slots)
            .map(move |((addr, seeding), s)| {
                (
                    addr,
                    seeding,
                    now.wrapping_sub(u32::from(stamp_now.wrapping_sub(s.seen))),
                )
            })
    }

    /// Every peer with its role and the store's data.
    pub fn iter_extra(&self) -> impl Iterator<Item = (&[u8; N], bool, &X)> {
        self.iter()
            .zip(&self.slots)
            .map(|((a, s), slot)| (a, s, &slot.extra))
    }

    /// Every peer with its role, for snapshots and tests.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; N], bool)> {
        let l = self.leechers as usize;
        self.slots
            .iter()
            .enumerate()
            .map(move |(i, s)| (&s.addr, i >= l))
    }
}

/// One torrent: its IPv4 and IPv6 swarms and its completed count.
#[derive(Clone, Debug, Default)]
pub struct Torrent {
    pub v4: PeerList<6>,
    pub v6: Option<Box<PeerList<18>>>,
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
    pub fn expire(&mut self, now: u32, timeout: u32) -> Delta {
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
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn a(i: u8) -> [u8; 6] {
        [10, 0, 0, i, 0x1a, 0xe1]
    }

    fn peers(list: &PeerList<6>) -> Vec<([u8; 6], bool)> {
        list.iter().map(|(a, s)| (*a, s)).collect()
    }

    #[test]
    fn slots_are_compact() {
        assert_eq!(std::mem::size_of::<Slot<6>>(), 8);
        assert_eq!(std::mem::size_of::<Slot<18>>(), 20);
        assert!(std::mem::size_of::<Torrent>() <= 48);
    }

    #[test]
    fn announce_inserts_updates_moves_and_removes() {
        let mut l = PeerList::<6>::default();
        let (r, at) = l.announce(a(3), false, false, 100);
        assert_eq!(
            (r.delta, r.was_seeder, at),
            (
                Delta {
                    seeders: 0,
                    leechers: 1
                },
                false,
                Some(0)
            )
        );
        l.announce(a(1), false, false, 100);
        l.announce(a(2), true, false, 100);
        assert_eq!(peers(&l), vec![(a(1), false), (a(3), false), (a(2), true)]);
        assert_eq!((l.seeders(), l.leechers()), (1, 2));

        // Same role: only the stamp changes.
        let (r, at) = l.announce(a(3), false, false, 200);
        assert_eq!((r.delta, at), (Delta::default(), Some(1)));

        // Leecher finishes: moves to the seeder run.
        let (r, at) = l.announce(a(1), true, false, 200);
        assert_eq!(
            r,
            Announced {
                delta: Delta {
                    seeders: 1,
                    leechers: -1
                },
                was_seeder: false
            }
        );
        assert_eq!(at, Some(1));
        assert_eq!(peers(&l), vec![(a(3), false), (a(1), true), (a(2), true)]);

        // A known seeder re-announcing says so.
        let (r, _) = l.announce(a(1), true, false, 201);
        assert_eq!(
            r,
            Announced {
                delta: Delta::default(),
                was_seeder: true
            }
        );

        // Stopped removes; stopping an unknown peer changes nothing.
        let (r, at) = l.announce(a(2), true, true, 200);
        assert_eq!(
            (r.delta, at),
            (
                Delta {
                    seeders: -1,
                    leechers: 0
                },
                None
            )
        );
        let (r, _) = l.announce(a(9), false, true, 200);
        assert_eq!(r.delta, Delta::default());
        assert_eq!(peers(&l), vec![(a(3), false), (a(1), true)]);
    }

    #[test]
    fn seeders_get_only_leechers_and_nobody_gets_themselves() {
        let mut l = PeerList::<6>::default();
        for i in 0..10 {
            l.announce(a(i), i % 2 == 0, false, 1);
        }
        let mut rng = SmallRng::seed_from_u64(9);
        let (_, me) = l.announce(a(0), true, false, 1);
        let mut out = Vec::new();
        l.select(me, true, 50, &mut rng, &mut out);
        let got: Vec<u8> = out.chunks(6).map(|c| c[3]).collect();
        assert_eq!(got, vec![1, 3, 5, 7, 9]);

        let (_, me) = l.announce(a(1), false, false, 1);
        out.clear();
        l.select(me, false, 50, &mut rng, &mut out);
        let mut got: Vec<u8> = out.chunks(6).map(|c| c[3]).collect();
        got.sort_unstable();
        assert_eq!(got, vec![0, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn expiry_drops_stale_peers_across_stamp_wraparound() {
        let mut l = PeerList::<6>::default();
        let t0 = 65_000u32; // stamps wrap at 65,536
        l.announce(a(1), false, false, t0);
        l.announce(a(2), true, false, t0 + 1000);
        l.announce(a(3), false, false, t0 + 1000);
        let d = l.expire(t0 + 1000 + 100, 900);
        assert_eq!(
            d,
            Delta {
                seeders: 0,
                leechers: -1
            }
        );
        assert_eq!(peers(&l), vec![(a(3), false), (a(2), true)]);
        let d = l.expire(t0 + 3000, 900);
        assert_eq!(
            d,
            Delta {
                seeders: -1,
                leechers: -1
            }
        );
        assert!(l.is_empty());
    }

    #[test]
    fn last_seen_is_recovered_from_the_stamp() {
        let mut l = PeerList::<6>::default();
        l.announce(a(1), true, false, 65_530); // stamps wrap at 65,536
        l.announce(a(2), false, false, 66_000);
        let seen: Vec<(u8, bool, u32)> =
            l.iter_seen(66_100).map(|(a, s, t)| (a[3], s, t)).collect();
        assert_eq!(seen, vec![(2, false, 66_000), (1, true, 65_530)]);
    }

    #[test]
    fn counts_cover_both_families() {
        let mut t = Torrent::default();
        t.v4.announce(a(1), true, false, 1);
        t.v6.get_or_insert_default()
            .announce([1; 18], false, false, 1);
        t.downloaded = 4;
        assert_eq!(
            t.counts(),
            SwarmCounts {
                complete: 1,
                incomplete: 1,
                downloaded: 4
            }
        );
        t.expire(10_000, 100);
        assert!(t.v6.is_none());
        assert!(!t.has_peers());
    }
}
