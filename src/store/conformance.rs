//! The conformance suite every [`PeerStore`] must pass, whatever it keeps swarms in.
//!
//! Each case gets a fresh store from the caller's factory and checks what a client would see:
//! which peers come back, which counts. Run it natively for the memory store and under wasm for
//! the edge's KV store. Time is passed explicitly, so expiry is tested without waiting.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rand_core::Rng;

use super::{AnnounceError, Full, PeerAnnounce, PeerStore};
use crate::protocol::types::{Event, InfoHash, SwarmCounts};
use crate::swarm::{PeerAddr, Policy};
use crate::time::UnixTime;

/// The policy the suite's stores must be built with (its timeouts are what the cases assume).
/// A timeout of 3 × interval, as the edge ships, so stores that skip rewriting fresh entries
/// (KV, Durable Objects: for `180 − 60 − 60` s) are tested with writes skipped.
pub fn policy() -> Policy {
    Policy {
        announce_interval: 60,
        min_interval: 30,
        peer_timeout: 180,
        max_peers_per_address: 4,
        ..Policy::default()
    }
}

const T0: UnixTime = UnixTime(1_750_000_000);
const HASH: InfoHash = InfoHash([0x11; 20]);

fn peer(ip: &str, port: u16) -> PeerAddr {
    PeerAddr::new(ip.parse::<IpAddr>().expect("test address"), port)
}

fn announce(peer: PeerAddr, event: Event, seeding: bool) -> PeerAnnounce {
    PeerAnnounce {
        info_hash: HASH,
        peer,
        event,
        seeding,
        want: 50,
    }
}

struct Reply {
    counts: SwarmCounts,
    peers: BTreeSet<Vec<u8>>,
}

async fn call<S: PeerStore>(
    store: &S,
    a: PeerAnnounce,
    now: UnixTime,
    rng: &mut impl Rng,
) -> Reply {
    let mut buf = Vec::new();
    let counts = store
        .announce(&a, now, rng, &mut buf)
        .await
        .expect("announce");
    let len = a.peer.as_bytes().len();
    assert_eq!(
        buf.len() % len,
        0,
        "peers come in whole compact entries of the requester's family"
    );
    let peers: BTreeSet<Vec<u8>> = buf.chunks(len).map(<[u8]>::to_vec).collect();
    assert_eq!(peers.len() * len, buf.len(), "no peer is returned twice");
    assert!(
        !peers.contains(a.peer.as_bytes()),
        "a peer never gets itself"
    );
    Reply { counts, peers }
}

fn set(peers: &[PeerAddr]) -> BTreeSet<Vec<u8>> {
    peers.iter().map(|p| p.as_bytes().to_vec()).collect()
}

async fn scrape<S: PeerStore>(store: &S, hashes: &[InfoHash], now: UnixTime) -> Vec<SwarmCounts> {
    let mut out = Vec::new();
    store.scrape(hashes, now, &mut out).await.expect("scrape");
    out
}

fn counts(complete: u32, incomplete: u32, downloaded: u32) -> SwarmCounts {
    SwarmCounts {
        complete,
        incomplete,
        downloaded,
    }
}

/// Runs every case; panics with the case's name on the first failure.
pub async fn run_all<S: PeerStore>(make: impl Fn() -> S, rng: &mut impl Rng) {
    two_peers_find_each_other(&make(), rng).await;
    seeders_get_only_leechers(&make(), rng).await;
    stopped_removes(&make(), rng).await;
    completed_counts_once(&make(), rng).await;
    families_are_apart(&make(), rng).await;
    want_limits_and_selection_is_random(&make(), rng).await;
    re_announce_does_not_duplicate(&make(), rng).await;
    expired_peers_are_gone(&make(), rng).await;
    scrape_reports_each_hash_in_order(&make(), rng).await;
    one_address_cannot_crowd_a_swarm(&make(), rng).await;
}

pub async fn two_peers_find_each_other<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let (a, b) = (peer("10.0.0.1", 6881), peer("10.0.0.2", 6882));
    let first = call(store, announce(a, Event::Started, false), T0, rng).await;
    assert!(
        first.peers.is_empty(),
        "two_peers_find_each_other: the first peer is alone"
    );
    assert_eq!(
        first.counts,
        counts(0, 1, 0),
        "two_peers_find_each_other: first counts"
    );
    let second = call(store, announce(b, Event::Started, true), T0 + 1, rng).await;
    assert_eq!(
        second.peers,
        set(&[a]),
        "two_peers_find_each_other: b gets a"
    );
    assert_eq!(
        second.counts,
        counts(1, 1, 0),
        "two_peers_find_each_other: counts"
    );
    let again = call(store, announce(a, Event::None, false), T0 + 2, rng).await;
    assert_eq!(
        again.peers,
        set(&[b]),
        "two_peers_find_each_other: a gets b"
    );
}

pub async fn seeders_get_only_leechers<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let seeders = [
        peer("10.0.1.1", 1),
        peer("10.0.1.2", 1),
        peer("10.0.1.3", 1),
    ];
    let leechers = [peer("10.0.2.1", 1), peer("10.0.2.2", 1)];
    for &s in &seeders {
        call(store, announce(s, Event::Started, true), T0, rng).await;
    }
    for &l in &leechers {
        call(store, announce(l, Event::Started, false), T0, rng).await;
    }
    let r = call(store, announce(seeders[0], Event::None, true), T0 + 1, rng).await;
    assert_eq!(
        r.peers,
        set(&leechers),
        "seeders_get_only_leechers: a seeder gets leechers only"
    );
    assert_eq!(
        r.counts,
        counts(3, 2, 0),
        "seeders_get_only_leechers: counts"
    );
    let r = call(
        store,
        announce(leechers[0], Event::None, false),
        T0 + 1,
        rng,
    )
    .await;
    let mut expected = set(&seeders);
    expected.insert(leechers[1].as_bytes().to_vec());
    assert_eq!(
        r.peers, expected,
        "seeders_get_only_leechers: a leecher gets seeders and leechers"
    );
}

pub async fn stopped_removes<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let (a, b) = (peer("10.0.0.1", 6881), peer("10.0.0.2", 6881));
    call(store, announce(a, Event::Started, false), T0, rng).await;
    call(store, announce(b, Event::Started, false), T0, rng).await;
    let r = call(store, announce(a, Event::Stopped, false), T0 + 1, rng).await;
    assert!(
        r.peers.is_empty(),
        "stopped_removes: a stopping peer gets no peers"
    );
    let r = call(store, announce(b, Event::None, false), T0 + 2, rng).await;
    assert!(
        r.peers.is_empty(),
        "stopped_removes: the stopped peer is gone"
    );
    assert_eq!(r.counts, counts(0, 1, 0), "stopped_removes: counts");
    assert_eq!(
        scrape(store, &[HASH], T0 + 2).await,
        vec![counts(0, 1, 0)],
        "stopped_removes: scrape"
    );
    // Stopping a peer of an unknown torrent must not create the torrent.
    let ghost = InfoHash([0x99; 20]);
    let mut stop = announce(a, Event::Stopped, false);
    stop.info_hash = ghost;
    call(store, stop, T0 + 3, rng).await;
    assert_eq!(
        scrape(store, &[ghost], T0 + 3).await,
        vec![counts(0, 0, 0)],
        "stopped_removes: ghost torrent"
    );
}

pub async fn completed_counts_once<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let (a, b) = (peer("10.0.0.1", 6881), peer("10.0.0.2", 6881));
    call(store, announce(a, Event::Started, false), T0, rng).await;
    call(store, announce(b, Event::Started, false), T0, rng).await;
    let r = call(store, announce(a, Event::Completed, true), T0 + 1, rng).await;
    assert_eq!(
        r.counts,
        counts(1, 1, 1),
        "completed_counts_once: a completed"
    );
    // A repeated completed from a peer already seeding is not another download.
    let r = call(store, announce(a, Event::Completed, true), T0 + 2, rng).await;
    assert_eq!(
        r.counts,
        counts(1, 1, 1),
        "completed_counts_once: repeat ignored"
    );
    call(store, announce(b, Event::Completed, true), T0 + 3, rng).await;
    assert_eq!(
        scrape(store, &[HASH], T0 + 3).await,
        vec![counts(2, 0, 2)],
        "completed_counts_once: scrape"
    );
    // A seeder that goes back to leeching and says completed again is not another download.
    call(store, announce(a, Event::None, false), T0 + 3, rng).await;
    let r = call(store, announce(a, Event::Completed, true), T0 + 3, rng).await;
    assert_eq!(
        r.counts.downloaded, 2,
        "completed_counts_once: a cycle through leeching"
    );
    // Completed downloads are history: they outlive the peers.
    call(store, announce(a, Event::Stopped, true), T0 + 4, rng).await;
    call(store, announce(b, Event::Stopped, true), T0 + 4, rng).await;
    assert_eq!(
        scrape(store, &[HASH], T0 + 4).await,
        vec![counts(0, 0, 2)],
        "completed_counts_once: after stop"
    );
}

pub async fn families_are_apart<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let v4 = [peer("10.0.0.1", 1), peer("10.0.0.2", 1)];
    let v6 = [peer("2001:db8::1", 1), peer("2001:db8::2", 1)];
    for &p in v4.iter().chain(&v6) {
        call(store, announce(p, Event::Started, true), T0, rng).await;
    }
    let leech4 = call(
        store,
        announce(peer("10.0.0.3", 1), Event::Started, false),
        T0,
        rng,
    )
    .await;
    assert_eq!(
        leech4.peers,
        set(&v4),
        "families_are_apart: IPv4 gets IPv4 peers only"
    );
    assert_eq!(
        leech4.counts,
        counts(2, 1, 0),
        "families_are_apart: IPv4 swarm counts"
    );
    let leech6 = call(
        store,
        announce(peer("2001:db8::3", 1), Event::Started, false),
        T0,
        rng,
    )
    .await;
    assert_eq!(
        leech6.peers,
        set(&v6),
        "families_are_apart: IPv6 gets IPv6 peers only"
    );
    assert_eq!(
        leech6.counts,
        counts(2, 1, 0),
        "families_are_apart: IPv6 swarm counts"
    );
    assert_eq!(
        scrape(store, &[HASH], T0).await,
        vec![counts(4, 2, 0)],
        "families_are_apart: scrape sums both"
    );
}

pub async fn want_limits_and_selection_is_random<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let swarm: Vec<PeerAddr> = (0..60u16)
        .map(|i| peer(&format!("10.1.{}.{}", i / 200, i % 200 + 1), 7000 + i))
        .collect();
    for &p in &swarm {
        call(store, announce(p, Event::Started, true), T0, rng).await;
    }
    let me = peer("10.9.9.9", 1);
    let mut seen = BTreeSet::new();
    for round in 0..20 {
        let mut a = announce(me, Event::None, false);
        a.want = 10;
        let r = call(store, a, T0 + round, rng).await;
        assert_eq!(
            r.peers.len(),
            10,
            "want_limits_and_selection_is_random: want honoured"
        );
        assert!(
            r.peers.is_subset(&set(&swarm)),
            "want_limits_and_selection_is_random: only swarm members"
        );
        seen.extend(r.peers);
    }
    assert!(
        seen.len() > 40,
        "want_limits_and_selection_is_random: 20 draws of 10 reached only {} of 60 peers",
        seen.len()
    );
}

pub async fn re_announce_does_not_duplicate<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let a = peer("10.0.0.1", 1);
    for i in 0..3 {
        call(store, announce(a, Event::None, false), T0 + i, rng).await;
    }
    // Same address, other port: another peer (peers are keyed by address and port).
    call(
        store,
        announce(peer("10.0.0.1", 2), Event::None, false),
        T0 + 3,
        rng,
    )
    .await;
    // A leecher that starts seeding without saying `completed` moves, it does not double.
    call(store, announce(a, Event::None, true), T0 + 4, rng).await;
    assert_eq!(
        scrape(store, &[HASH], T0 + 4).await,
        vec![counts(1, 1, 0)],
        "re_announce_does_not_duplicate"
    );
}

pub async fn expired_peers_are_gone<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let timeout = policy().peer_timeout;
    let (old, fresh) = (peer("10.0.0.1", 1), peer("10.0.0.2", 1));
    call(store, announce(old, Event::Started, true), T0, rng).await;
    call(
        store,
        announce(fresh, Event::Started, true),
        T0 + timeout / 2,
        rng,
    )
    .await;
    let now = T0 + timeout + 1;
    store.expire(now).await.expect("expire");
    let r = call(
        store,
        announce(peer("10.0.0.3", 1), Event::Started, false),
        now,
        rng,
    )
    .await;
    assert_eq!(
        r.peers,
        set(&[fresh]),
        "expired_peers_are_gone: only the fresh peer is served"
    );
    assert_eq!(r.counts, counts(1, 1, 0), "expired_peers_are_gone: counts");
}

pub async fn scrape_reports_each_hash_in_order<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let other = InfoHash([0x22; 20]);
    let unknown = InfoHash([0x33; 20]);
    call(
        store,
        announce(peer("10.0.0.1", 1), Event::Started, true),
        T0,
        rng,
    )
    .await;
    let mut a = announce(peer("10.0.0.2", 1), Event::Started, false);
    a.info_hash = other;
    call(store, a, T0, rng).await;
    let got = scrape(store, &[unknown, other, HASH], T0).await;
    assert_eq!(
        got,
        vec![counts(0, 0, 0), counts(0, 1, 0), counts(1, 0, 0)],
        "scrape_reports_each_hash_in_order"
    );
}

pub async fn one_address_cannot_crowd_a_swarm<S: PeerStore>(store: &S, rng: &mut impl Rng) {
    let cap = policy().max_peers_per_address as u16;
    let refused = |r: Result<SwarmCounts, AnnounceError>| {
        r == Err(AnnounceError::Full(Full::PeersFromAddress))
    };
    for (ip, other, t) in [
        ("10.0.0.1", "10.0.0.1", T0),
        ("2001:db8::1", "2001:db8::ffff", T0 + 10),
    ] {
        for port in 1..=cap {
            call(
                store,
                announce(peer(ip, port), Event::Started, false),
                t,
                rng,
            )
            .await;
        }
        // One more port, from the same address (or the same IPv6 /64): refused, nothing changes.
        let mut buf = Vec::new();
        let extra = announce(peer(other, 1000), Event::Started, false);
        assert!(
            refused(store.announce(&extra, t + 1, rng, &mut buf).await),
            "one_address_cannot_crowd_a_swarm: {ip}: peer {} refused",
            cap + 1
        );
        // Known peers still announce, others still join.
        call(store, announce(peer(ip, 1), Event::None, false), t + 2, rng).await;
        let newcomer = if ip.contains(':') {
            "2001:db8:1::1"
        } else {
            "10.0.0.2"
        };
        let r = call(
            store,
            announce(peer(newcomer, 1), Event::Started, false),
            t + 3,
            rng,
        )
        .await;
        assert_eq!(
            r.peers.len(),
            usize::from(cap),
            "one_address_cannot_crowd_a_swarm: {ip}: the capped address's peers only"
        );
        // A port that leaves makes room for another.
        call(
            store,
            announce(peer(ip, 2), Event::Stopped, false),
            t + 4,
            rng,
        )
        .await;
        call(
            store,
            announce(peer(other, 1000), Event::Started, false),
            t + 5,
            rng,
        )
        .await;
    }
}
