use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::swarm::chunks::{self, CHUNK, MIN_FILL, Run};

fn a(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [10, b[1], b[2], b[3], 0x1a, 0xe1]
}

fn peers<const K: usize>(list: &PeerList<6, (), K>) -> Vec<([u8; 6], bool)> {
    list.iter().map(|(a, s)| (*a, s)).collect()
}

/// The layout's promises: each role sorted, counts right, chunks bounded and filled.
fn check<const K: usize>(list: &PeerList<6, (), K>) {
    let all = peers(list);
    let (l, s): (Vec<&([u8; 6], bool)>, Vec<_>) = all.iter().partition(|(_, seeding)| !seeding);
    assert!(
        all.iter().take(l.len()).all(|(_, seeding)| !seeding),
        "leechers first"
    );
    assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "leechers sorted");
    assert!(s.windows(2).all(|w| w[0].0 < w[1].0), "seeders sorted");
    assert_eq!(
        (list.leechers(), list.seeders()),
        (l.len() as u32, s.len() as u32)
    );
    if let Repr::Chunked(runs) = &list.repr {
        assert!(list.len() > FLAT_AGAIN, "small lists are flat");
        for run in runs.iter() {
            let chunks = run.chunks();
            let bounds = run.bounds();
            assert_eq!(bounds.len(), chunks.len().saturating_sub(1));
            for (i, b) in bounds.iter().enumerate() {
                assert!(
                    chunks[i].last().unwrap().addr < *b,
                    "chunk {i} stays below its bound"
                );
                assert!(
                    *b <= chunks[i + 1][0].addr,
                    "chunk {} starts at its bound",
                    i + 1
                );
            }
            for c in chunks {
                assert!(c.len() <= CHUNK && !c.is_empty());
                assert!(
                    chunks.len() == 1 || c.len() >= MIN_FILL,
                    "chunk of {}",
                    c.len()
                );
                assert!(c.capacity() <= CHUNK, "chunks never grow past their size");
            }
        }
    } else {
        assert!(list.len() <= FLAT_MAX, "large lists are chunked");
    }
}

#[test]
fn slots_are_compact() {
    assert_eq!(std::mem::size_of::<Slot<6>>(), 8);
    assert_eq!(std::mem::size_of::<Slot<18>>(), 20);
    assert!(std::mem::size_of::<PeerList<6>>() <= 32);
    assert!(std::mem::size_of::<PeerList<6, (), 3>>() <= 32);
    assert!(std::mem::size_of::<PeerList<18, (), 1>>() <= 32);
}

fn is_inline<const K: usize>(l: &PeerList<6, (), K>) -> bool {
    matches!(l.repr, Repr::Inline { .. })
}

/// Up to its room a list stays inline through joins, role changes and leaves; one more peer
/// moves it to a vector, and a sweep that leaves it small brings it back.
#[test]
fn small_lists_live_inline() {
    let mut l = PeerList::<6, (), 3>::default();
    assert!(is_inline(&l), "an empty list allocates nothing");
    l.announce(a(5), PeerStatus::Seeding, UnixTime(100));
    l.announce(a(3), PeerStatus::Leeching, UnixTime(100));
    l.announce(a(4), PeerStatus::Leeching, UnixTime(200));
    assert!(is_inline(&l));
    assert_eq!(
        peers(&l),
        vec![(a(3), false), (a(4), false), (a(5), true)],
        "leechers first, each role sorted"
    );
    // A leecher becomes a seeder: it moves to the seeders' side, in order.
    let (r, _) = l.announce(a(3), PeerStatus::Seeding, UnixTime(200));
    assert_eq!(r.delta.seeders - r.delta.leechers, 2);
    assert_eq!(peers(&l), vec![(a(4), false), (a(3), true), (a(5), true)]);
    assert!(is_inline(&l));
    // A leecher's picks from an inline list: everyone but itself.
    let (_, me) = l.announce(a(4), PeerStatus::Leeching, UnixTime(200));
    let mut out = Vec::new();
    l.select(me, false, 50, &mut SmallRng::seed_from_u64(1), &mut out);
    assert_eq!(out, [a(3), a(5)].concat());
    assert_eq!(l.count_prefix(&a(3)[..4]), 1);

    l.announce(a(1), PeerStatus::Leeching, UnixTime(200));
    assert!(!is_inline(&l), "the fourth peer moves the list to a vector");
    assert_eq!(
        peers(&l),
        vec![(a(1), false), (a(4), false), (a(3), true), (a(5), true)]
    );
    // a(5) was last seen at 100: a sweep at 250 with a timeout of 100 drops it alone.
    let mut dropped = Vec::new();
    let gone = l.expire_each(UnixTime(250), 100, |addr, seeding| {
        dropped.push((*addr, seeding))
    });
    assert_eq!(dropped, vec![(a(5), true)]);
    assert_eq!(gone, Delta::one(true, -1));
    assert!(
        is_inline(&l),
        "a sweep leaving three peers brings them back inline"
    );
    assert_eq!(peers(&l), vec![(a(1), false), (a(4), false), (a(3), true)]);
    // Leaving from inline.
    l.announce(a(4), PeerStatus::Stopped, UnixTime(260));
    assert_eq!(peers(&l), vec![(a(1), false), (a(3), true)]);
    assert_eq!((l.leechers(), l.seeders()), (1, 1));
    // An inline sweep keeps the order and the counts.
    l.expire(UnixTime(10_000), 100);
    assert!(l.is_empty() && is_inline(&l));
}

#[test]
fn announce_inserts_updates_moves_and_removes() {
    let mut l = PeerList::<6>::default();
    let (r, at) = l.announce(a(3), PeerStatus::Leeching, UnixTime(100));
    assert_eq!((r.delta, r.was_seeder), (Delta::one(false, 1), false));
    assert!(at.is_some());
    l.announce(a(1), PeerStatus::Leeching, UnixTime(100));
    l.announce(a(2), PeerStatus::Seeding, UnixTime(100));
    assert_eq!(peers(&l), vec![(a(1), false), (a(3), false), (a(2), true)]);
    assert_eq!((l.seeders(), l.leechers()), (1, 2));

    // Same role: only the stamp changes.
    let (r, at) = l.announce(a(3), PeerStatus::Leeching, UnixTime(200));
    assert_eq!(r.delta, Delta::default());
    assert!(at.is_some());

    // Leecher finishes: moves to the seeder run.
    let (r, _) = l.announce(a(1), PeerStatus::Seeding, UnixTime(200));
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
    assert_eq!(peers(&l), vec![(a(3), false), (a(1), true), (a(2), true)]);

    // A known seeder re-announcing says so.
    let (r, _) = l.announce(a(1), PeerStatus::Seeding, UnixTime(201));
    assert_eq!(
        r,
        Announced {
            delta: Delta::default(),
            was_seeder: true
        }
    );

    // Stopped removes; stopping an unknown peer changes nothing.
    let (r, at) = l.announce(a(2), PeerStatus::Stopped, UnixTime(200));
    assert_eq!((r.delta, at), (Delta::one(true, -1), None));
    let (r, _) = l.announce(a(9), PeerStatus::Stopped, UnixTime(200));
    assert_eq!(r.delta, Delta::default());
    assert_eq!(peers(&l), vec![(a(3), false), (a(1), true)]);
}

#[test]
fn seeders_get_only_leechers_and_nobody_gets_themselves() {
    let mut l = PeerList::<6>::default();
    for i in 0..10 {
        l.announce(a(i), PeerStatus::staying(i % 2 == 0), UnixTime(1));
    }
    let mut rng = SmallRng::seed_from_u64(9);
    let (_, me) = l.announce(a(0), PeerStatus::Seeding, UnixTime(1));
    let mut out = Vec::new();
    l.select(me, true, 50, &mut rng, &mut out);
    let got: Vec<u8> = out.chunks(6).map(|c| c[3]).collect();
    assert_eq!(got, vec![1, 3, 5, 7, 9]);

    let (_, me) = l.announce(a(1), PeerStatus::Leeching, UnixTime(1));
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
    l.announce(a(1), PeerStatus::Leeching, UnixTime(t0));
    l.announce(a(2), PeerStatus::Seeding, UnixTime(t0 + 1000));
    l.announce(a(3), PeerStatus::Leeching, UnixTime(t0 + 1000));
    assert_eq!(
        l.expire(UnixTime(t0 + 1000 + 100), 900),
        Delta::one(false, -1)
    );
    assert_eq!(peers(&l), vec![(a(3), false), (a(2), true)]);
    let d = l.expire(UnixTime(t0 + 3000), 900);
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
    l.announce(a(1), PeerStatus::Seeding, UnixTime(65_530)); // stamps wrap at 65,536
    l.announce(a(2), PeerStatus::Leeching, UnixTime(66_000));
    let seen: Vec<(u8, bool, u32)> = l
        .iter_seen(UnixTime(66_100))
        .map(|(a, s, t)| (a[3], s, t.secs()))
        .collect();
    assert_eq!(seen, vec![(2, false, 66_000), (1, true, 65_530)]);
}

/// A swarm past [`FLAT_MAX`], joined front-first (each new peer sorts before every other: the
/// costliest order for one sorted vector), then left by most of its peers.
#[test]
fn large_swarms_are_chunked_and_shrink_back() {
    let mut l = PeerList::<6>::default();
    let n = 20 * CHUNK as u32;
    for i in (0..n).rev() {
        l.announce(a(i), PeerStatus::staying(i % 3 == 0), UnixTime(1));
    }
    assert!(l.is_chunked());
    check(&l);
    assert_eq!(l.len(), n as usize);
    assert_eq!(l.seeders(), n.div_ceil(3));
    // Every peer is found where it is: re-announcing changes nothing.
    for i in (0..n).step_by(97) {
        let (r, at) = l.announce(a(i), PeerStatus::staying(i % 3 == 0), UnixTime(2));
        assert_eq!((r.delta, r.was_seeder), (Delta::default(), i % 3 == 0));
        assert!(at.is_some());
    }
    // Most leave, from the front (each leave empties the first chunk a little more).
    for i in 0..n - 100 {
        l.announce(a(i), PeerStatus::Stopped, UnixTime(3));
        if i % 501 == 0 {
            check(&l);
        }
    }
    check(&l);
    assert!(!l.is_chunked());
    let mut left: Vec<[u8; 6]> = peers(&l).into_iter().map(|(p, _)| p).collect();
    left.sort();
    assert_eq!(left, (n - 100..n).map(a).collect::<Vec<_>>());
}

#[test]
fn chunked_expiry_keeps_the_fresh_and_the_layout() {
    let mut l = PeerList::<6>::default();
    let n = 10 * CHUNK as u32;
    for i in 0..n {
        // Every seventh peer is fresh at the first sweep.
        let seen = if i % 7 == 0 { 5_000 } else { 1_000 };
        l.announce(a(i), PeerStatus::staying(i % 2 == 0), UnixTime(seen));
    }
    assert!(l.is_chunked());
    let d = l.expire(UnixTime(5_100), 1_000);
    check(&l);
    assert_eq!(-(d.seeders + d.leechers), i64::from(n - n.div_ceil(7)));
    assert!(
        l.iter()
            .all(|(p, _)| u32::from_be_bytes([0, p[1], p[2], p[3]]).is_multiple_of(7))
    );
    assert!(l.is_chunked(), "{} peers stay chunked", l.len());
    for i in (0..n).step_by(49) {
        l.announce(a(i), PeerStatus::staying(i % 2 == 0), UnixTime(9_000));
    }
    l.expire(UnixTime(9_100), 1_000);
    check(&l);
    assert_eq!(l.len() as u32, n.div_ceil(49));
    assert!(!l.is_chunked(), "{} peers are one vector again", l.len());
}

#[test]
fn chunked_lists_count_one_address_across_chunk_edges() {
    let mut l = PeerList::<6>::default();
    // 3,000 peers of distinct addresses, then 40 ports of one address in the middle.
    for i in 0..FLAT_MAX as u32 + 1_000 {
        l.announce(a(i * 2), PeerStatus::Leeching, UnixTime(1));
    }
    let mut addr = a(2_000);
    for port in 0..40u16 {
        addr[4..].copy_from_slice(&port.to_be_bytes());
        l.announce(addr, PeerStatus::staying(port % 2 == 0), UnixTime(1));
    }
    assert!(l.is_chunked());
    check(&l);
    assert_eq!(l.count_prefix(&a(2_000)[..4]), 41);
    assert_eq!(l.count_prefix(&a(2_001)[..4]), 0);
    assert_eq!(l.count_prefix(&a(0)[..4]), 1);
}

#[derive(Clone, Copy, Debug)]
enum Sampling {
    /// `PeerList::select`, whichever way it picks.
    Select,
    Walking,
    Drawing,
}

fn draw(
    l: &PeerList<6>,
    me: Option<PeerAt>,
    seeding: bool,
    want: usize,
    how: Sampling,
    rng: &mut SmallRng,
    out: &mut Vec<u8>,
) {
    let Repr::Chunked(runs) = &l.repr else {
        panic!("chunked")
    };
    let candidates: &[&Run<6, ()>] = if seeding {
        &[&runs[0]]
    } else {
        &[&runs[0], &runs[1]]
    };
    let exclude = me.map(|at| (usize::from(at.seeding), at.pos));
    let emit = |s: &Slot<6>| out.extend_from_slice(&s.addr);
    match how {
        Sampling::Select => l.select(me, seeding, want, rng, out),
        Sampling::Walking => chunks::sample_walking(candidates, exclude, want, rng, emit),
        Sampling::Drawing => chunks::sample_drawing(candidates, exclude, want, rng, emit),
    }
}

/// Peers drawn from a chunked swarm, both ways: distinct, never the requester, seeders get
/// leechers only, and every candidate equally likely (the spread of picks per peer is that of
/// independent draws; a bias towards some chunks or places would widen it).
#[test]
fn chunked_selection_is_uniform_and_keeps_the_rules() {
    let n = 40_000u32;
    let mut l = PeerList::<6>::default();
    for i in 0..n {
        l.announce(a(i), PeerStatus::staying(i % 4 == 0), UnixTime(1));
    }
    assert!(l.is_chunked());
    for (how, want) in [
        (Sampling::Select, 50usize),
        (Sampling::Walking, 50),
        (Sampling::Drawing, 50),
        (Sampling::Drawing, 3),
    ] {
        let mut rng = SmallRng::seed_from_u64(want as u64);
        let (_, leecher) = l.announce(a(1), PeerStatus::Leeching, UnixTime(1));
        let (_, seeder) = l.announce(a(0), PeerStatus::Seeding, UnixTime(1));
        let mut hits = vec![0u32; n as usize];
        let draws = 20 * n as usize / want;
        let mut out = Vec::new();
        for _ in 0..draws {
            for (me, seeding) in [(leecher, false), (seeder, true)] {
                out.clear();
                draw(&l, me, seeding, want, how, &mut rng, &mut out);
                assert_eq!(out.len(), 6 * want, "{how:?}");
                let mut got: Vec<u32> = out
                    .chunks(6)
                    .map(|p| u32::from_be_bytes([0, p[1], p[2], p[3]]))
                    .collect();
                assert!(!got.contains(&u32::from(!seeding)), "not the requester");
                if seeding {
                    assert!(got.iter().all(|i| i % 4 != 0), "seeders get leechers");
                } else {
                    got.iter().for_each(|&i| hits[i as usize] += 1);
                }
                got.sort_unstable();
                got.dedup();
                assert_eq!(got.len(), want, "distinct");
            }
        }
        assert_eq!(hits[1], 0);
        let others: Vec<f64> = hits
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 1)
            .map(|(_, &h)| f64::from(h))
            .collect();
        let mean = others.iter().sum::<f64>() / others.len() as f64;
        let var = others.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / others.len() as f64;
        assert!((mean - 20.0).abs() < 0.01, "{how:?}: mean {mean}");
        assert!(
            (0.9..1.1).contains(&(var / mean)),
            "{how:?} want {want}: variance {var:.2} over mean {mean:.2}"
        );
    }
}

#[derive(Clone, Debug)]
enum Op {
    Announce {
        peer: u16,
        seeding: bool,
        stopped: bool,
        at: u16,
    },
    Expire {
        at: u16,
    },
}

/// Announces of `peers` distinct peers, and now and then (one in `sweep_odds + 1`) a sweep
/// with a timeout below `timeout` (the clock advances one second on about half the announces).
fn ops(peers: u16, sweep_odds: u32, timeout: u16, max: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        sweep_odds => (0..peers, any::<bool>(), prop::bool::weighted(0.2), 0..2_000u16)
            .prop_map(|(peer, seeding, stopped, at)| Op::Announce { peer, seeding, stopped, at }),
        1 => (0..timeout).prop_map(|at| Op::Expire { at }),
    ];
    prop::collection::vec(op, 1..max)
}

/// Plays `ops` on a list and on a plain map of peers; they must agree throughout.
fn behaves_like_a_map<const K: usize>(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut l = PeerList::<6, (), K>::default();
    let mut model: BTreeMap<[u8; 6], (bool, u32)> = BTreeMap::new();
    let mut clock = 0u32;
    for (i, op) in ops.into_iter().enumerate() {
        if i % 512 == 0 || K > 0 {
            check(&l);
        }
        match op {
            Op::Announce {
                peer,
                seeding,
                stopped,
                at,
            } => {
                clock += u32::from(at % 2);
                let addr = a(u32::from(peer));
                let before = model.get(&addr).copied();
                let status = if stopped {
                    PeerStatus::Stopped
                } else {
                    PeerStatus::staying(seeding)
                };
                let (r, place) = l.announce(addr, status, UnixTime(clock));
                // The place returned is the peer's, whatever the layout became.
                match (place, stopped) {
                    (Some(place), false) => prop_assert_eq!(l.slot_mut(place).addr, addr),
                    (None, true) => {}
                    (place, _) => {
                        prop_assert!(false, "place {:?} after stopped={}", place, stopped)
                    }
                }
                let want_delta = match (before, stopped) {
                    (Some((was, _)), true) => Delta::one(was, -1),
                    (None, true) => Delta::default(),
                    (Some((was, _)), false) if was == seeding => Delta::default(),
                    (Some((was, _)), false) => {
                        let mut d = Delta::one(was, -1);
                        d += Delta::one(seeding, 1);
                        d
                    }
                    (None, false) => Delta::one(seeding, 1),
                };
                prop_assert_eq!(r.delta, want_delta);
                if stopped {
                    model.remove(&addr);
                } else {
                    model.insert(addr, (seeding, clock));
                }
            }
            Op::Expire { at } => {
                let timeout = u32::from(at);
                l.expire(UnixTime(clock), timeout);
                model.retain(|_, (_, seen)| clock - *seen <= timeout);
                if model.len() <= K {
                    prop_assert!(
                        matches!(l.repr, Repr::Inline { .. }),
                        "small after a sweep: inline"
                    );
                }
            }
        }
    }
    check(&l);
    let mut got = peers(&l);
    got.sort();
    let want: Vec<([u8; 6], bool)> = model.iter().map(|(p, (s, _))| (*p, *s)).collect();
    prop_assert_eq!(got, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any mix of joins, role changes, leaves and sweeps, across the flat and chunked layouts,
    /// leaves the list holding what a plain map of peers holds.
    #[test]
    fn the_list_behaves_like_a_map(ops in ops(3 * FLAT_MAX as u16 / 2, 500, 2_000, 6_000)) {
        behaves_like_a_map::<0>(ops)?;
    }

    /// The same across the inline and flat layouts of a list with room for three, with sweeps
    /// short enough to shrink it back inline.
    #[test]
    fn a_small_list_behaves_like_a_map(ops in ops(8, 8, 64, 400)) {
        behaves_like_a_map::<3>(ops)?;
    }
}
