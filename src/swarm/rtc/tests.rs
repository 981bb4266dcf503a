use std::collections::{BTreeMap, HashSet};
use std::hash::RandomState;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const T0: UnixTime = UnixTime(1_750_000_000);

fn id(n: u8) -> PeerId {
    PeerId([n; 20])
}

fn swarm() -> RtcSwarm<RandomState> {
    RtcSwarm::with_hasher(RandomState::new())
}

fn announce(n: u8, event: Event, seeding: bool, offers: usize) -> RtcAnnounce {
    RtcAnnounce {
        peer_id: id(n),
        conn: u64::from(n) * 1000,
        event,
        seeding,
        offers,
        client: None,
    }
}

fn run(
    s: &mut RtcSwarm<RandomState>,
    a: RtcAnnounce,
    now: UnixTime,
) -> Result<(RtcAnnounced, Vec<ConnId>), RtcRefusal> {
    let mut rng = SmallRng::seed_from_u64(u64::from(now.secs()) ^ a.conn);
    let mut out = Vec::new();
    s.announce(&a, now, &|_| true, 100, &mut rng, &mut out)
        .map(|r| (r, out))
}

#[test]
fn one_client_holds_at_most_its_share_of_a_swarm() {
    // Before: 64 sockets of one address, 4 peer ids each, put 256 peers in one swarm, and an
    // honest announce saw `incomplete 257`.
    let mut s = swarm().with_client_cap(2);
    let from = |n: u8, ip: [u8; 4], event| RtcAnnounce {
        client: Some(std::net::IpAddr::from(ip)),
        ..announce(n, event, false, 0)
    };
    let one = [10, 0, 0, 1];
    assert!(run(&mut s, from(1, one, Event::Started), T0).is_ok());
    assert!(run(&mut s, from(2, one, Event::Started), T0).is_ok());
    assert_eq!(
        run(&mut s, from(3, one, Event::Started), T0),
        Err(RtcRefusal::FromAddress)
    );
    assert!(run(&mut s, from(4, [10, 0, 0, 2], Event::Started), T0).is_ok());
    assert!(
        run(&mut s, from(2, one, Event::None), T0 + 1).is_ok(),
        "a member announcing again is not new"
    );
    assert!(run(&mut s, from(1, one, Event::Stopped), T0 + 2).is_ok());
    assert!(
        run(&mut s, from(3, one, Event::Started), T0 + 3).is_ok(),
        "room again"
    );
    assert_eq!(s.len(), 3);
    // Expiry gives the client's places back too.
    s.expire(T0 + 1000, 10);
    assert!(s.per_client.is_empty());
}

#[test]
fn offers_go_to_other_peers_a_seeders_to_leechers_only() {
    let mut s = swarm();
    for n in 1..=5 {
        run(&mut s, announce(n, Event::Started, false, 0), T0).unwrap();
    }
    for n in 6..=8 {
        run(&mut s, announce(n, Event::Started, true, 0), T0).unwrap();
    }
    assert_eq!(
        s.counts(),
        RtcCounts {
            complete: 3,
            incomplete: 5,
            downloaded: 0
        }
    );
    // A leecher with 10 offers reaches all 7 others, once each, never itself.
    let (_, to) = run(&mut s, announce(1, Event::None, false, 10), T0).unwrap();
    let set: HashSet<_> = to.iter().copied().collect();
    assert_eq!(set.len(), to.len(), "no peer twice");
    assert_eq!(set, (2..=8).map(|n| n * 1000).collect());
    // A seeder reaches leechers only.
    let (_, to) = run(&mut s, announce(6, Event::None, true, 10), T0).unwrap();
    let set: HashSet<_> = to.iter().copied().collect();
    assert_eq!(set, (1..=5).map(|n| n * 1000).collect());
    // Fewer offers than peers: that many distinct recipients.
    let (_, to) = run(&mut s, announce(2, Event::None, false, 3), T0).unwrap();
    assert_eq!(to.iter().collect::<HashSet<_>>().len(), 3);
    assert!(!to.contains(&2000));
}

#[test]
fn recipients_are_chosen_uniformly() {
    let mut s = swarm();
    for n in 1..=20 {
        run(&mut s, announce(n, Event::Started, false, 0), T0).unwrap();
    }
    let mut hits = BTreeMap::new();
    let mut rng = SmallRng::seed_from_u64(9);
    let mut out = Vec::new();
    for _ in 0..19_000 {
        out.clear();
        s.announce(
            &announce(1, Event::None, false, 1),
            T0,
            &|_| true,
            100,
            &mut rng,
            &mut out,
        )
        .unwrap();
        *hits.entry(out[0]).or_insert(0u32) += 1;
    }
    assert_eq!(hits.len(), 19, "every other peer is reached");
    assert!(!hits.contains_key(&1000));
    // 1,000 expected each; a peer never chosen, or chosen half as often, fails this.
    assert!(hits.values().all(|&h| (850..1150).contains(&h)), "{hits:?}");
}

#[test]
fn stopped_leaves_and_completed_counts_once() {
    let mut s = swarm();
    run(&mut s, announce(1, Event::Started, false, 0), T0).unwrap();
    run(&mut s, announce(2, Event::Started, false, 0), T0).unwrap();
    run(&mut s, announce(1, Event::Completed, true, 0), T0).unwrap();
    run(&mut s, announce(1, Event::Completed, true, 0), T0).unwrap();
    assert_eq!(
        s.counts(),
        RtcCounts {
            complete: 1,
            incomplete: 1,
            downloaded: 1
        }
    );
    let (r, to) = run(&mut s, announce(1, Event::Stopped, true, 5), T0).unwrap();
    assert_eq!(
        (r.left, to.len()),
        (true, 0),
        "a leaving peer's offers go nowhere"
    );
    assert_eq!(
        s.counts(),
        RtcCounts {
            complete: 0,
            incomplete: 1,
            downloaded: 1
        }
    );
    let (_, to) = run(&mut s, announce(2, Event::None, false, 5), T0).unwrap();
    assert!(to.is_empty(), "the stopped peer gets no offers");
    let (r, _) = run(&mut s, announce(1, Event::Stopped, true, 0), T0).unwrap();
    assert!(!r.left, "stopping twice changes nothing");
}

#[test]
fn a_peer_id_is_held_by_its_open_connection() {
    let mut s = swarm();
    run(&mut s, announce(1, Event::Started, false, 0), T0).unwrap();
    let thief = RtcAnnounce {
        conn: 666,
        ..announce(1, Event::None, true, 0)
    };
    let mut rng = SmallRng::seed_from_u64(3);
    let mut out = Vec::new();
    let open = |c: ConnId| c == 1000;
    // However long the holder has been silent, while its socket is open.
    for later in [10, 10_000] {
        let taken = s.announce(&thief, T0 + later, &open, 100, &mut rng, &mut out);
        assert_eq!(taken, Err(RtcRefusal::PeerIdTaken));
        let stop = RtcAnnounce {
            event: Event::Stopped,
            ..thief
        };
        let stopped = s.announce(&stop, T0 + later, &open, 100, &mut rng, &mut out);
        assert_eq!(stopped, Err(RtcRefusal::PeerIdTaken), "nor stop it");
    }
    assert_eq!(s.conn_of(&id(1)), Some(1000));
    assert!(
        !s.leave(&id(1), 666),
        "another connection's close leaves it in place"
    );
    // The holder's socket closed (a client reconnecting): the id goes to the new connection,
    // which must leave it when it closes in turn.
    let closed = |c: ConnId| c != 1000;
    let r = s
        .announce(&thief, T0 + 20, &closed, 100, &mut rng, &mut out)
        .unwrap();
    assert_eq!((r.joined, r.claimed), (false, true));
    assert_eq!(s.conn_of(&id(1)), Some(666));
    assert_eq!(s.counts().complete, 1);
    let again = s
        .announce(&thief, T0 + 30, &closed, 100, &mut rng, &mut out)
        .unwrap();
    assert!(!again.claimed, "held already");
    assert!(
        !s.leave(&id(1), 1000),
        "the old connection's close no longer removes it"
    );
    assert!(s.leave(&id(1), 666));
    assert!(s.is_empty());
}

#[test]
fn the_swarm_cap_refuses_newcomers_only() {
    let mut s = swarm();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut out = Vec::new();
    for n in 1..=3 {
        s.announce(
            &announce(n, Event::Started, false, 0),
            T0,
            &|_| true,
            3,
            &mut rng,
            &mut out,
        )
        .unwrap();
    }
    let refused = s.announce(
        &announce(4, Event::Started, false, 0),
        T0,
        &|_| true,
        3,
        &mut rng,
        &mut out,
    );
    assert_eq!(refused, Err(RtcRefusal::Full));
    s.announce(
        &announce(2, Event::None, true, 0),
        T0,
        &|_| true,
        3,
        &mut rng,
        &mut out,
    )
    .expect("members still announce");
    assert_eq!(s.len(), 3);
}

#[test]
fn silent_members_expire() {
    let mut s = swarm();
    run(&mut s, announce(1, Event::Started, false, 0), T0).unwrap();
    run(&mut s, announce(2, Event::Started, true, 0), T0 + 100).unwrap();
    assert_eq!(s.expire(T0 + 150, 120), 1);
    assert_eq!(s.conn_of(&id(1)), None);
    assert_eq!(s.conn_of(&id(2)), Some(2000));
}

proptest! {
    /// Against a model (a map from peer id to connection and role), through any sequence of
    /// announces, leaves and sweeps: the same members, the same counts, and an index that
    /// finds every member where it is.
    #[test]
    fn matches_a_model(steps in proptest::collection::vec((0u8..12, 0u8..5, any::<bool>(), 0u8..3), 1..300)) {
        let mut s = swarm();
        let mut model: BTreeMap<u8, (u64, bool, UnixTime)> = BTreeMap::new();
        let mut now = T0;
        for (n, op, seeding, conn) in steps {
            let conn = u64::from(n) * 1000 + u64::from(conn % 2);
            now = now + 1;
            match op {
                0..=2 => {
                    let event = [Event::Started, Event::None, Event::Stopped][op as usize];
                    let a = RtcAnnounce { peer_id: id(n), conn, event, seeding, offers: 2, client: None };
                    // Every connection stays open here: an id is held by whoever announced it.
                    let held = model.get(&n).is_some_and(|&(c, _, _)| c != conn);
                    let result = run(&mut s, a, now);
                    if held {
                        prop_assert_eq!(result, Err(RtcRefusal::PeerIdTaken));
                    } else if event == Event::Stopped {
                        prop_assert_eq!(result.unwrap().0.left, model.remove(&n).is_some());
                    } else {
                        let (_, to) = result.unwrap();
                        prop_assert!(!to.contains(&conn));
                        model.insert(n, (conn, seeding, now));
                    }
                }
                3 => {
                    let removed = s.leave(&id(n), conn);
                    prop_assert_eq!(removed, model.get(&n).is_some_and(|&(c, _, _)| c == conn));
                    if removed {
                        model.remove(&n);
                    }
                }
                _ => {
                    prop_assert_eq!(s.expire(now, 1_000), 0);
                }
            }
            prop_assert_eq!(s.len(), model.len());
            let seeders = model.values().filter(|&&(_, seeding, _)| seeding).count() as u32;
            prop_assert_eq!(s.counts().complete, seeders);
            prop_assert_eq!(s.counts().incomplete, model.len() as u32 - seeders);
            for (&n, &(conn, _, _)) in &model {
                prop_assert_eq!(s.conn_of(&id(n)), Some(conn));
            }
        }
    }
}
