//! The mirror against the conformance suite (with storage kept in step and, in one variant, the
//! object "evicted" before every request so each answer comes from storage alone), and the
//! writes each kind of announce costs.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_core::Rng;

use super::*;
use crate::protocol::types::{InfoHash, SwarmCounts};
use crate::store::conformance;
use crate::store::{AnnounceError, PeerStore, StoreError, now_or_never};
use crate::time::UnixTime;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// What one object's storage holds.
#[derive(Default, Debug, PartialEq)]
struct Stored {
    rows: BTreeMap<PeerAddr, Row>,
    downloaded: u32,
}

impl Stored {
    fn apply(&mut self, writes: &[Write]) {
        assert!(
            !writes.contains(&Write::Clear) || writes.len() == 1,
            "a Clear comes alone: {writes:?}"
        );
        for w in writes {
            match *w {
                Write::Peer(r) => {
                    self.rows.insert(r.peer, r);
                }
                Write::Forget(p) => {
                    self.rows.remove(&p);
                }
                Write::Downloaded(n) => self.downloaded = n,
                Write::Clear => *self = Stored::default(),
            }
        }
    }
    fn rows(&self) -> Vec<Row> {
        // As the Durable Object reads them: leechers, then seeders, each by address.
        let mut rows: Vec<Row> = self.rows.values().copied().collect();
        rows.sort_by_key(|r| (r.seeding, r.peer));
        rows
    }
}

/// One mirrored swarm per info hash, as the Durable Object store keeps them.
struct Objects {
    policy: Policy,
    evict_every_request: bool,
    objects: RefCell<HashMap<InfoHash, (Option<MirroredSwarm>, Stored)>>,
    writes: RefCell<usize>,
}

impl Objects {
    fn new(evict_every_request: bool) -> Self {
        Objects {
            policy: conformance::policy(),
            evict_every_request,
            objects: RefCell::default(),
            writes: RefCell::new(0),
        }
    }

    fn with<T>(
        &self,
        hash: InfoHash,
        now: UnixTime,
        f: impl FnOnce(&mut MirroredSwarm, &mut Vec<Write>) -> T,
    ) -> T {
        let mut objects = self.objects.borrow_mut();
        let (memory, stored) = objects.entry(hash).or_default();
        let mut writes = Vec::new();
        if self.evict_every_request || memory.as_ref().is_none_or(|m| m.must_reload(now)) {
            // As the Durable Object does: load only what exists.
            let knobs = Knobs::of(&self.policy);
            *memory = Some(if *stored == Stored::default() {
                MirroredSwarm::new(knobs, now)
            } else {
                MirroredSwarm::load(knobs, stored.rows(), stored.downloaded, now, &mut writes)
            });
        }
        let swarm = memory.as_mut().expect("loaded");
        let out = f(swarm, &mut writes);
        stored.apply(&writes);
        *self.writes.borrow_mut() += writes.len();
        // Storage mirrors memory exactly after every request.
        let mut expected: Vec<Row> = swarm.rows().collect();
        expected.sort_by_key(|r| (r.seeding, r.peer));
        assert_eq!(stored.rows(), expected, "storage mirrors the swarm");
        assert_eq!(stored.downloaded, swarm.downloaded());
        out
    }
}

impl PeerStore for Objects {
    fn announce(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> impl Future<Output = Result<SwarmCounts, AnnounceError>> {
        let counts = self.with(a.info_hash, now, |s, w| s.announce(a, now, rng, peers, w));
        std::future::ready(counts.map_err(AnnounceError::Full))
    }

    fn scrape(
        &self,
        hashes: &[InfoHash],
        now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        for h in hashes {
            out.push(self.with(*h, now, |s, w| s.counts(now, w)));
        }
        std::future::ready(Ok(()))
    }

    fn expire(&self, _now: UnixTime) -> impl Future<Output = Result<(), StoreError>> {
        std::future::ready(Ok(()))
    }
}

#[test]
fn conformance_in_memory_with_storage_in_step() {
    let mut rng = SmallRng::seed_from_u64(1);
    now_or_never(conformance::run_all(|| Objects::new(false), &mut rng));
}

#[test]
fn conformance_answering_from_storage_alone() {
    let mut rng = SmallRng::seed_from_u64(2);
    now_or_never(conformance::run_all(|| Objects::new(true), &mut rng));
}

const T0: UnixTime = UnixTime(1_750_000_000);
const HASH: InfoHash = InfoHash([7; 20]);

fn peer(i: u8) -> PeerAddr {
    PeerAddr::V4([10, 0, 0, i, 0x1a, 0xe1])
}

fn ann(p: PeerAddr, event: Event, seeding: bool) -> PeerAnnounce {
    PeerAnnounce {
        info_hash: HASH,
        peer: p,
        event,
        seeding,
        want: 50,
    }
}

/// The policy of the edge as shipped: interval 1800, timeout 5400 (rows refreshed after 3540 s).
fn edge_policy() -> Policy {
    Policy {
        peer_timeout: 5400,
        ..Policy::default()
    }
}

fn run(
    s: &mut MirroredSwarm,
    a: PeerAnnounce,
    now: UnixTime,
) -> (SwarmCounts, Vec<u8>, Vec<Write>) {
    let mut rng = SmallRng::seed_from_u64(3);
    let (mut peers, mut writes) = (Vec::new(), Vec::new());
    let counts = s
        .announce(&a, now, &mut rng, &mut peers, &mut writes)
        .expect("admitted");
    (counts, peers, writes)
}

#[test]
fn steady_announces_write_nothing_until_the_row_would_look_expired() {
    let mut s = MirroredSwarm::new(Knobs::of(&edge_policy()), T0);
    let (_, _, w) = run(&mut s, ann(peer(1), Event::Started, false), T0);
    assert_eq!(
        w,
        vec![Write::Peer(Row {
            peer: peer(1),
            seeding: false,
            written: T0,
            demoted: false,
        })],
        "a new peer: one row"
    );
    let (_, _, w) = run(&mut s, ann(peer(1), Event::None, false), T0 + 1800);
    assert!(w.is_empty(), "steady: nothing written, got {w:?}");
    let (_, _, w) = run(&mut s, ann(peer(1), Event::None, false), T0 + 3600);
    assert_eq!(
        w,
        vec![Write::Peer(Row {
            peer: peer(1),
            seeding: false,
            written: T0 + 3600,
            demoted: false,
        })],
        "refresh due after 3540 s"
    );
    let (_, _, w) = run(&mut s, ann(peer(1), Event::None, true), T0 + 3601);
    assert_eq!(
        w,
        vec![Write::Peer(Row {
            peer: peer(1),
            seeding: true,
            written: T0 + 3601,
            demoted: false,
        })],
        "a role change is written at once"
    );
}

#[test]
fn completed_is_counted_exactly_and_stored() {
    let mut s = MirroredSwarm::new(Knobs::of(&edge_policy()), T0);
    run(&mut s, ann(peer(1), Event::Started, false), T0);
    let (c, _, w) = run(&mut s, ann(peer(1), Event::Completed, true), T0 + 1);
    assert_eq!(c.downloaded, 1);
    assert_eq!(
        w,
        vec![
            Write::Peer(Row {
                peer: peer(1),
                seeding: true,
                written: T0 + 1,
                demoted: false,
            }),
            Write::Downloaded(1)
        ]
    );
    let (c, _, w) = run(&mut s, ann(peer(1), Event::Completed, true), T0 + 2);
    assert_eq!(
        (c.downloaded, w),
        (1, vec![]),
        "a seeder's repeated completed is not another download"
    );
}

#[test]
fn a_swarm_that_empties_clears_its_storage_unless_it_has_a_completed_count() {
    let mut s = MirroredSwarm::new(Knobs::of(&edge_policy()), T0);
    run(&mut s, ann(peer(1), Event::Started, false), T0);
    run(&mut s, ann(peer(2), Event::Started, false), T0);
    let (_, peers, w) = run(&mut s, ann(peer(1), Event::Stopped, false), T0 + 1);
    assert_eq!((peers, w), (vec![], vec![Write::Forget(peer(1))]));
    let (_, _, w) = run(&mut s, ann(peer(2), Event::Stopped, false), T0 + 2);
    assert_eq!(
        w,
        vec![Write::Clear],
        "the last peer leaves: nothing is kept"
    );
    let (_, _, w) = run(&mut s, ann(peer(2), Event::Stopped, false), T0 + 3);
    assert!(w.is_empty(), "stopping in an empty swarm writes nothing");

    let mut s = MirroredSwarm::new(Knobs::of(&edge_policy()), T0);
    run(&mut s, ann(peer(1), Event::Completed, true), T0);
    let (c, _, w) = run(&mut s, ann(peer(1), Event::Stopped, true), T0 + 1);
    assert_eq!(
        (c.downloaded, w),
        (1, vec![Write::Forget(peer(1))]),
        "the count outlives the peers"
    );
}

#[test]
fn expiry_is_lazy_and_deletes_rows() {
    let p = edge_policy();
    let mut s = MirroredSwarm::new(Knobs::of(&p), T0);
    run(&mut s, ann(peer(1), Event::Started, true), T0);
    run(&mut s, ann(peer(2), Event::Started, true), T0 + 3000);
    let mut w = Vec::new();
    let c = s.counts(T0 + p.peer_timeout + 1, &mut w);
    assert_eq!((c.complete, w), (1, vec![Write::Forget(peer(1))]));
    let mut w = Vec::new();
    s.counts(T0 + 3000 + p.peer_timeout + 1, &mut w);
    assert_eq!(w, vec![Write::Clear]);
    assert!(s.is_empty());
}

#[test]
fn loading_drops_rows_past_the_timeout_and_keeps_the_rest() {
    let p = edge_policy();
    let now = T0 + 10_000;
    let rows = [
        Row {
            peer: peer(1),
            seeding: false,
            written: now - 100,
            demoted: false,
        },
        Row {
            peer: peer(2),
            seeding: true,
            written: now - p.peer_timeout - 1,
            demoted: false,
        },
        Row {
            peer: PeerAddr::V6([1; 18]),
            seeding: true,
            written: now - 5,
            demoted: false,
        },
    ];
    let mut w = Vec::new();
    let mut s = MirroredSwarm::load(Knobs::of(&p), rows, 4, now, &mut w);
    assert_eq!(w, vec![Write::Forget(peer(2))]);
    let mut w = Vec::new();
    assert_eq!(
        s.counts(now, &mut w),
        SwarmCounts {
            complete: 1,
            incomplete: 1,
            downloaded: 4
        }
    );
    // A reloaded peer counts as seen when its row was written: it is not rewritten while fresh.
    let (_, peers, w) = run(&mut s, ann(peer(1), Event::None, false), now + 1);
    assert!(w.is_empty());
    assert!(peers.is_empty(), "the IPv4 leecher has no other IPv4 peer");

    let mut w = Vec::new();
    let mut s = MirroredSwarm::load(
        Knobs::of(&p),
        [Row {
            peer: peer(1),
            seeding: false,
            written: UnixTime(1),
            demoted: false,
        }],
        0,
        now,
        &mut w,
    );
    s.counts(now, &mut w);
    assert_eq!(
        w,
        vec![Write::Clear],
        "only expired rows: the storage is cleared"
    );
    assert!(s.is_empty());
}

#[test]
fn a_peer_joining_a_swarm_whose_rows_all_expired_is_stored() {
    // The object wakes to rows that all expired and, in the same request, a peer joins and
    // completes: its row and the count must be written, not lost behind a Clear.
    let p = edge_policy();
    let now = T0 + 100_000;
    let mut w = Vec::new();
    let old = Row {
        peer: peer(1),
        seeding: false,
        written: T0,
        demoted: false,
    };
    let mut s = MirroredSwarm::load(Knobs::of(&p), [old], 0, now, &mut w);
    let mut rng = SmallRng::seed_from_u64(5);
    s.announce(
        &ann(peer(2), Event::Completed, true),
        now,
        &mut rng,
        &mut Vec::new(),
        &mut w,
    )
    .expect("admitted");
    let joined = Row {
        peer: peer(2),
        seeding: true,
        written: now,
        demoted: false,
    };
    assert_eq!(
        w,
        vec![
            Write::Forget(peer(1)),
            Write::Peer(joined),
            Write::Downloaded(1)
        ]
    );
    // And a sweep that empties the swarm just before a join does the same.
    let mut s = MirroredSwarm::new(Knobs::of(&p), T0);
    run(&mut s, ann(peer(1), Event::Started, false), T0);
    let later = T0 + p.peer_timeout + 100;
    let (_, _, w) = run(&mut s, ann(peer(2), Event::Started, false), later);
    let joined = Row {
        peer: peer(2),
        seeding: false,
        written: later,
        demoted: false,
    };
    assert_eq!(w, vec![Write::Forget(peer(1)), Write::Peer(joined)]);
}

#[test]
fn a_clock_stepped_back_does_not_expire_fresh_peers_and_a_long_gap_asks_for_a_reload() {
    let p = edge_policy();
    let mut s = MirroredSwarm::new(Knobs::of(&p), T0);
    run(&mut s, ann(peer(1), Event::Started, true), T0 + 100);
    let mut w = Vec::new();
    assert_eq!(s.counts(T0 + 40, &mut w).complete, 1, "60 s back in time");
    assert!(w.is_empty());
    assert!(!s.must_reload(T0 + 100 + RELOAD_AFTER));
    assert!(s.must_reload(T0 + 101 + RELOAD_AFTER));
}

#[test]
fn a_day_of_steady_announces_writes_half_a_row_per_announce() {
    // The edge as shipped: interval 1800 s, timeout 5400 s. 100 peers, each announcing every
    // interval (staggered) for 24 h after joining: the row of each is refreshed every other
    // announce, so steady state writes 0.5 rows per announce (the README's cost table).
    let p = edge_policy();
    let mut s = MirroredSwarm::new(Knobs::of(&p), T0);
    let mut rng = SmallRng::seed_from_u64(4);
    let (mut announces, mut rows) = (0u32, 0u32);
    for round in 0..=48u32 {
        for i in 0..100u8 {
            let now = T0 + round * 1800 + u32::from(i) * 17;
            let event = if round == 0 {
                Event::Started
            } else {
                Event::None
            };
            let (mut peers, mut writes) = (Vec::new(), Vec::new());
            s.announce(
                &ann(peer(i), event, false),
                now,
                &mut rng,
                &mut peers,
                &mut writes,
            )
            .expect("admitted");
            if round > 0 {
                announces += 1;
                rows += writes.len() as u32;
            }
        }
    }
    assert_eq!(s.len(), 100);
    assert_eq!(f64::from(rows) / f64::from(announces), 0.5);
}
