//! The peers of one address family of one torrent, laid out for the hot path and for bytes per
//! peer.
//!
//! A peer is a fixed-size slot: compact address + a 16-bit last-seen stamp, 8 bytes per IPv4
//! peer, 20 per IPv6 peer. Each role (leechers, seeders) is kept sorted by address, so finding a
//! peer is a binary search, counting one address's ports is two, and "seeders get no seeders" is a
//! sample from the leechers only. Counts are kept as they change, never rescanned.
//!
//! Up to `INLINE` peers (a parameter: 0 unless the store asks for more) live inside the list
//! itself, leechers then seeders: most torrents have a handful of peers, and kept inline they
//! cost no allocation, and an announce no cache miss beyond the one that found the torrent. Up to
//! [`FLAT_MAX`] peers the list is one vector in the same order, as compact as it gets. Beyond
//! that each role becomes a [`Run`] of bounded chunks, so that no announce moves more than one
//! chunk, whatever the swarm's size; it turns back into one vector when it shrinks well below
//! that size, and back inline at a sweep that finds it that small.

use crate::time::UnixTime;
use rand_core::Rng;

use super::PeerStatus;
use super::chunks::{self, Run};
use super::select;

/// One peer: compact address (`N` = 6 or 18 bytes), when it last announced, and whatever a
/// store keeps beside it (`X`; nothing for the memory store, so a slot stays 8 or 20 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Slot<const N: usize, X = ()> {
    pub(super) addr: [u8; N],
    /// Unix seconds mod 2^16 of the last announce. Wraps every 18 h; expiry, which runs far more
    /// often than that, compares with wrapping arithmetic.
    seen: u16,
    extra: X,
}

/// Seconds a last-seen stamp may lie ahead of the sweep's `now` and still count as fresh.
pub const FUTURE_SLACK: u16 = 600;

/// Most peers kept as one vector; one more and the list is cut into chunks.
pub const FLAT_MAX: usize = 2 * chunks::CHUNK;
/// A chunked list this small or smaller becomes one vector again.
const FLAT_AGAIN: usize = chunks::CHUNK / 2;

/// The low 16 bits of `now`: a slot's last-seen time, read back relative to a later `now`.
fn stamp(now: UnixTime) -> u16 {
    now.secs() as u16
}

/// Change in a swarm's seeder and leecher counts, for store-wide totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub seeders: i64,
    pub leechers: i64,
}

impl Delta {
    fn one(seeding: bool, by: i64) -> Delta {
        if seeding {
            Delta {
                seeders: by,
                leechers: 0,
            }
        } else {
            Delta {
                seeders: 0,
                leechers: by,
            }
        }
    }
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

/// Where a peer sits in its [`PeerList`]; valid until the list next changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAt {
    seeding: bool,
    /// In a flat list: 0 and the index in the role's run. Chunked: chunk and offset.
    pos: chunks::Pos,
}

impl PeerAt {
    /// Its index in a one-slice list (inline or flat) whose first `leechers` peers leech.
    fn index(self, leechers: usize) -> usize {
        (if self.seeding { leechers } else { 0 }) + self.pos.1 as usize
    }
}

/// The peers of one family of one torrent. `X` is per-peer data of the store's (default none),
/// reset to `X::default()` whenever a peer joins or changes role. Up to `INLINE` peers are kept
/// without an allocation (a store picks it so that they fit where the vector's header would be;
/// more gains nothing, since the list would grow).
#[derive(Clone, Debug)]
pub struct PeerList<const N: usize, X = (), const INLINE: usize = 0> {
    repr: Repr<N, X, INLINE>,
}

#[derive(Clone, Debug)]
enum Repr<const N: usize, X, const INLINE: usize> {
    /// `slots[..len]`: `[0, leechers)` leechers, `[leechers, len)` seeders, each sorted by
    /// address, as in `Flat`.
    Inline {
        slots: [Slot<N, X>; INLINE],
        len: u8,
        leechers: u8,
    },
    /// `[0, leechers)` leechers, `[leechers, len)` seeders, each sorted by address.
    Flat {
        slots: Vec<Slot<N, X>>,
        leechers: u32,
    },
    /// Leechers, seeders.
    Chunked(Box<[Run<N, X>; 2]>),
}

impl<const N: usize, X: Copy + Default, const INLINE: usize> Default for PeerList<N, X, INLINE> {
    fn default() -> Self {
        PeerList {
            repr: Repr::empty(),
        }
    }
}

impl<const N: usize, X: Copy + Default, const INLINE: usize> Repr<N, X, INLINE> {
    /// No peers, nothing allocated.
    fn empty() -> Self {
        Self::inline_of(&[], 0)
    }

    /// `peers` (no more than `INLINE`, the first `leechers` of them leechers) kept inline.
    fn inline_of(peers: &[Slot<N, X>], leechers: usize) -> Self {
        const { assert!(INLINE <= u8::MAX as usize, "an inline length is a u8") };
        let blank = Slot {
            addr: [0; N],
            seen: 0,
            extra: X::default(),
        };
        let mut slots = [blank; INLINE];
        slots[..peers.len()].copy_from_slice(peers);
        Repr::Inline {
            slots,
            len: peers.len() as u8,
            leechers: leechers as u8,
        }
    }

    /// The peers as one slice with the count of leechers at its start, or the chunked runs.
    fn view(&self) -> View<'_, N, X> {
        match self {
            Repr::Inline {
                slots,
                len,
                leechers,
            } => View::Flat(&slots[..usize::from(*len)], usize::from(*leechers)),
            Repr::Flat { slots, leechers } => View::Flat(slots, *leechers as usize),
            Repr::Chunked(runs) => View::Chunked(runs),
        }
    }
}

/// A list seen without caring whether its one slice is inline or allocated.
enum View<'a, const N: usize, X> {
    /// All peers, leechers (their count) first.
    Flat(&'a [Slot<N, X>], usize),
    /// Leechers' and seeders' runs.
    Chunked(&'a [Run<N, X>; 2]),
}

impl<const N: usize, X: Copy + Default, const INLINE: usize> PeerList<N, X, INLINE> {
    pub fn leechers(&self) -> u32 {
        match &self.repr {
            Repr::Inline { leechers, .. } => u32::from(*leechers),
            Repr::Flat { leechers, .. } => *leechers,
            Repr::Chunked(runs) => runs[0].len() as u32,
        }
    }

    pub fn seeders(&self) -> u32 {
        self.len() as u32 - self.leechers()
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Inline { len, .. } => usize::from(*len),
            Repr::Flat { slots, .. } => slots.len(),
            Repr::Chunked(runs) => runs[0].len() + runs[1].len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `addr` is (or would go) among the peers of role `seeding`.
    fn find(&self, addr: &[u8; N], seeding: bool) -> Result<PeerAt, PeerAt> {
        let at = |pos| PeerAt { seeding, pos };
        match self.repr.view() {
            View::Flat(slots, leechers) => {
                let run = if seeding {
                    &slots[leechers..]
                } else {
                    &slots[..leechers]
                };
                match run.binary_search_by(|s| s.addr.cmp(addr)) {
                    Ok(i) => Ok(at((0, i as u32))),
                    Err(i) => Err(at((0, i as u32))),
                }
            }
            View::Chunked(runs) => runs[usize::from(seeding)].find(addr).map(at).map_err(at),
        }
    }

    fn slot_mut(&mut self, at: PeerAt) -> &mut Slot<N, X> {
        match &mut self.repr {
            Repr::Inline {
                slots, leechers, ..
            } => &mut slots[at.index(usize::from(*leechers))],
            Repr::Flat { slots, leechers } => &mut slots[at.index(*leechers as usize)],
            Repr::Chunked(runs) => runs[usize::from(at.seeding)].get_mut(at.pos),
        }
    }

    fn remove(&mut self, at: PeerAt) -> Delta {
        match &mut self.repr {
            Repr::Inline {
                slots,
                len,
                leechers,
            } => {
                let i = at.index(usize::from(*leechers));
                slots.copy_within(i + 1..usize::from(*len), i);
                *len -= 1;
                if !at.seeding {
                    *leechers -= 1;
                }
            }
            Repr::Flat { slots, leechers } => {
                slots.remove(at.index(*leechers as usize));
                if !at.seeding {
                    *leechers -= 1;
                }
            }
            Repr::Chunked(runs) => {
                runs[usize::from(at.seeding)].remove(at.pos);
                self.flatten_if_small();
            }
        }
        Delta::one(at.seeding, -1)
    }

    /// Adds a peer absent from the list, at `at` if it is known where it goes.
    fn insert(
        &mut self,
        addr: [u8; N],
        seeding: bool,
        now: UnixTime,
        at: Option<PeerAt>,
    ) -> (PeerAt, Delta) {
        let slot = Slot {
            addr,
            seen: stamp(now),
            extra: X::default(),
        };
        let Some(at) = at.or_else(|| self.find(&addr, seeding).err()) else {
            unreachable!("inserted only when absent")
        };
        let at = match &mut self.repr {
            Repr::Inline {
                slots,
                len,
                leechers,
            } if usize::from(*len) < INLINE => {
                let i = at.index(usize::from(*leechers));
                slots.copy_within(i..usize::from(*len), i + 1);
                slots[i] = slot;
                *len += 1;
                if !seeding {
                    *leechers += 1;
                }
                at
            }
            Repr::Inline {
                slots,
                len,
                leechers,
            } => {
                // Full: the peers move to a vector, where the new one joins them at the same
                // place. Room for four at least, as a Vec's first push would make.
                let mut moved = Vec::with_capacity((INLINE + 1).max(4));
                moved.extend_from_slice(&slots[..usize::from(*len)]);
                self.repr = Repr::Flat {
                    slots: moved,
                    leechers: u32::from(*leechers),
                };
                return self.insert(addr, seeding, now, Some(at));
            }
            Repr::Flat { slots, leechers } => {
                slots.insert(at.index(*leechers as usize), slot);
                if !seeding {
                    *leechers += 1;
                }
                if slots.len() > FLAT_MAX {
                    let (l, s) = slots.split_at(*leechers as usize);
                    self.repr = Repr::Chunked(Box::new([Run::from_sorted(l), Run::from_sorted(s)]));
                    self.find(&addr, seeding).expect("just inserted")
                } else {
                    at
                }
            }
            Repr::Chunked(runs) => PeerAt {
                seeding,
                pos: runs[usize::from(seeding)].insert(at.pos, slot),
            },
        };
        (at, Delta::one(seeding, 1))
    }

    fn flatten_if_small(&mut self) {
        if let Repr::Chunked(runs) = &self.repr
            && runs[0].len() + runs[1].len() <= FLAT_AGAIN
        {
            let mut slots = Vec::with_capacity(runs[0].len() + runs[1].len());
            runs[0].append_to(&mut slots);
            runs[1].append_to(&mut slots);
            let leechers = runs[0].len();
            self.repr = if slots.len() <= INLINE {
                Repr::inline_of(&slots, leechers)
            } else {
                Repr::Flat {
                    slots,
                    leechers: leechers as u32,
                }
            };
        }
    }

    /// Records an announce of `addr`. Returns what changed and, unless the peer left, where it is.
    pub fn announce(
        &mut self,
        addr: [u8; N],
        status: PeerStatus,
        now: UnixTime,
    ) -> (Announced, Option<PeerAt>) {
        match self.announce_admitting(addr, status, now, |_| Ok::<(), ()>(())) {
            Ok(done) => done,
            Err(()) => unreachable!("admits everyone"),
        }
    }

    /// [`PeerList::announce`], asking `may_join` first when `addr` would be a new peer: its
    /// refusal is returned and nothing changes.
    pub fn announce_admitting<E>(
        &mut self,
        addr: [u8; N],
        status: PeerStatus,
        now: UnixTime,
        may_join: impl FnOnce(&Self) -> Result<(), E>,
    ) -> Result<(Announced, Option<PeerAt>), E> {
        let stopped = status == PeerStatus::Stopped;
        let seeding = status == PeerStatus::Seeding;
        let mut out = Announced::default();
        let here = self.find(&addr, seeding);
        let found = match here {
            Ok(at) => Some(at),
            Err(_) => self.find(&addr, !seeding).ok(),
        };
        Ok(match found {
            Some(at) if stopped => {
                out.delta = self.remove(at);
                (out, None)
            }
            None if stopped => (out, None),
            Some(at) if at.seeding == seeding => {
                self.slot_mut(at).seen = stamp(now);
                out.was_seeder = at.seeding;
                (out, Some(at))
            }
            Some(was) => {
                // Leaving one role may have changed the layout: look up the other afresh.
                out.delta = self.remove(was);
                let (at, d) = self.insert(addr, seeding, now, None);
                out.delta += d;
                out.was_seeder = was.seeding;
                (out, Some(at))
            }
            None => {
                may_join(self)?;
                let (at, d) = self.insert(addr, seeding, now, here.err());
                out.delta = d;
                (out, Some(at))
            }
        })
    }

    /// Peers whose address starts with `prefix` (an IPv4 address, an IPv6 /64): a binary search
    /// in each role, since both are sorted by address.
    pub fn count_prefix(&self, prefix: &[u8]) -> usize {
        let prefix = &prefix[..prefix.len().min(N)];
        let k = prefix.len();
        match self.repr.view() {
            View::Flat(slots, leechers) => {
                let (l, s) = slots.split_at(leechers);
                [l, s]
                    .into_iter()
                    .map(|run| {
                        let start = run.partition_point(|s| &s.addr[..k] < prefix);
                        let end = run.partition_point(|s| &s.addr[..k] <= prefix);
                        end - start
                    })
                    .sum()
            }
            View::Chunked(runs) => runs.iter().map(|r| r.count_prefix(prefix)).sum(),
        }
    }

    /// Appends up to `want` random peers' compact addresses to `out`: leechers only for a seeder,
    /// everyone else for a leecher, never the requester (at `requester`).
    pub fn select(
        &self,
        requester: Option<PeerAt>,
        seeding: bool,
        want: usize,
        rng: &mut impl Rng,
        out: &mut Vec<u8>,
    ) {
        match self.repr.view() {
            View::Flat(slots, leechers) => select::for_requester(
                leechers,
                slots.len(),
                requester.map(|at| at.index(leechers)),
                seeding,
                want,
                rng,
                |i| out.extend_from_slice(&slots[i].addr),
            ),
            View::Chunked(runs) => {
                let candidates: &[&Run<N, X>] = if seeding {
                    &[&runs[0]]
                } else {
                    &[&runs[0], &runs[1]]
                };
                chunks::sample(
                    candidates,
                    requester.map(|at| (usize::from(at.seeding), at.pos)),
                    want,
                    rng,
                    |s| out.extend_from_slice(&s.addr),
                );
            }
        }
    }

    /// The store's data of the peer at `at` (a place [`PeerList::announce`] returned).
    pub fn extra_mut(&mut self, at: PeerAt) -> &mut X {
        &mut self.slot_mut(at).extra
    }

    /// Drops peers not seen for more than `timeout` seconds; gives back spare capacity.
    pub fn expire(&mut self, now: UnixTime, timeout: u32) -> Delta {
        self.expire_each(now, timeout, |_, _| {})
    }

    /// [`PeerList::expire`], calling `on_gone` with each dropped peer's address and role.
    pub fn expire_each(
        &mut self,
        now: UnixTime,
        timeout: u32,
        mut on_gone: impl FnMut(&[u8; N], bool),
    ) -> Delta {
        let now = stamp(now);
        let timeout = timeout.min(u32::from(u16::MAX)) as u16;
        // An age within the last FUTURE_SLACK seconds of the span is a stamp from a few minutes
        // ahead (a clock stepped back), not one 18 hours old: ages that large never reach a
        // sweep (peer_timeout + sweep interval stay below the span less the slack).
        let fresh = |s: &Slot<N, X>| {
            let age = now.wrapping_sub(s.seen);
            age <= timeout || age > u16::MAX - FUTURE_SLACK
        };
        let mut gone = Delta::default();
        let mut keep = |s: &Slot<N, X>, seeding: bool| {
            let fresh = fresh(s);
            if !fresh {
                on_gone(&s.addr, seeding);
                gone += Delta::one(seeding, -1);
            }
            fresh
        };
        match &mut self.repr {
            Repr::Inline {
                slots,
                len,
                leechers,
            } => {
                let (kept, kept_leechers) = compact(
                    &mut slots[..usize::from(*len)],
                    usize::from(*leechers),
                    keep,
                );
                *len = kept as u8;
                *leechers = kept_leechers as u8;
            }
            Repr::Flat { slots, leechers } => {
                let (kept, kept_leechers) = compact(slots, *leechers as usize, keep);
                slots.truncate(kept);
                *leechers = kept_leechers as u32;
                // A list hovering at INLINE + 1 may move out at a join and back at each sweep:
                // one allocation per sweep interval at most.
                if slots.len() <= INLINE {
                    self.repr = Repr::inline_of(slots, *leechers as usize);
                } else if slots.capacity() > 2 * slots.len() + 4 {
                    slots.shrink_to_fit();
                }
            }
            Repr::Chunked(runs) => {
                for (run, seeding) in runs.iter_mut().zip([false, true]) {
                    run.retain(|s| keep(s, seeding));
                }
                self.flatten_if_small();
            }
        }
        gone
    }

    /// Each role's peers as slices in address order: leechers' first.
    fn pieces(&self) -> impl Iterator<Item = (&[Slot<N, X>], bool)> {
        let (flat, runs): ([&[Slot<N, X>]; 2], &[Run<N, X>]) = match self.repr.view() {
            View::Flat(slots, leechers) => {
                let (l, s) = slots.split_at(leechers);
                ([l, s], &[])
            }
            View::Chunked(runs) => ([&[], &[]], &runs[..]),
        };
        flat.into_iter().zip([false, true]).chain(
            runs.iter()
                .zip([false, true])
                .flat_map(|(run, seeding)| run.chunks().iter().map(move |c| (&c[..], seeding))),
        )
    }

    fn slots(&self) -> impl Iterator<Item = (&Slot<N, X>, bool)> {
        self.pieces()
            .flat_map(|(piece, seeding)| piece.iter().map(move |s| (s, seeding)))
    }

    /// Every peer with its role and when it last announced (recovered from the 16-bit stamp
    /// relative to `now`), for snapshots.
    pub fn iter_seen(&self, now: UnixTime) -> impl Iterator<Item = (&[u8; N], bool, UnixTime)> {
        let stamp_now = stamp(now);
        self.slots().map(move |(s, seeding)| {
            (
                &s.addr,
                seeding,
                now - u32::from(stamp_now.wrapping_sub(s.seen)),
            )
        })
    }

    /// Every peer with its role and the store's data.
    pub fn iter_extra(&self) -> impl Iterator<Item = (&[u8; N], bool, &X)> {
        self.slots()
            .map(|(s, seeding)| (&s.addr, seeding, &s.extra))
    }

    /// Every peer with its role, for snapshots and tests.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; N], bool)> {
        self.slots().map(|(s, seeding)| (&s.addr, seeding))
    }

    /// Whether the list is cut into chunks (for tests of both layouts).
    pub fn is_chunked(&self) -> bool {
        matches!(self.repr, Repr::Chunked(_))
    }
}

/// Moves the peers of `slots` (leechers first, `leechers` of them) that `keep(peer, seeding)`
/// accepts to the front, in order, for a one-slice list's sweep. Returns how many stayed and how
/// many of those leech.
fn compact<T: Copy>(
    slots: &mut [T],
    leechers: usize,
    mut keep: impl FnMut(&T, bool) -> bool,
) -> (usize, usize) {
    let (mut kept, mut kept_leechers) = (0, 0);
    for i in 0..slots.len() {
        let s = slots[i];
        let seeding = i >= leechers;
        if keep(&s, seeding) {
            slots[kept] = s;
            kept += 1;
            kept_leechers += usize::from(!seeding);
        }
    }
    (kept, kept_leechers)
}

#[cfg(test)]
mod tests;
