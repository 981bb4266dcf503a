//! The core's CPU per request at the edge: the same cases built for wasm32 (run by Node, as the
//! Worker runs them) and natively, so `native/bench/edge_cpu.sh` can put them side by side.
//!
//! A case is prepared once (a swarm of N peers in one torrent), then run for a number of
//! iterations; only the runs are timed, by the caller. Cases:
//!
//! - `announce`: a steady re-announce (compact, numwant 50) through [`Tracker::http_announce`]
//!   on the in-memory store: query parsing, access rules, the swarm and the bencoded reply,
//!   all of what a Worker's CPU does for an announce but the store's I/O;
//! - `object`: the same announce inside a swarm's Durable Object ([`MirroredSwarm::announce`]
//!   over the swarm of N, with the writes it asks of storage), but the SQL;
//! - `scrape`: a one-hash scrape through [`Tracker::http_scrape`].
//!
//! Owns these cases only; it links the core and nothing of either home.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};

use edgetracker::UnixTime;
use edgetracker::protocol::types::{Event, InfoHash};
use edgetracker::service::{Scratch, Tracker};
use edgetracker::store::memory::MemoryStore;
use edgetracker::store::mirror::{Knobs, MirroredSwarm};
use edgetracker::store::{PeerAnnounce, now_or_never};
use edgetracker::swarm::{PeerAddr, Policy};
use rand::SeedableRng;
use rand::rngs::SmallRng;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen::prelude::wasm_bindgen;

const NOW: UnixTime = UnixTime(1_750_000_000);
const HASH: [u8; 20] = [0x5a; 20];

/// The cases, by number.
pub const CASES: [&str; 3] = ["announce", "object", "scrape"];

struct Prepared {
    case: usize,
    tracker: Tracker<MemoryStore>,
    swarm: MirroredSwarm,
    /// Each peer's address and announce query.
    peers: Vec<(IpAddr, Vec<u8>)>,
    scrape: Vec<u8>,
    next: usize,
    rng: SmallRng,
    scratch: Scratch,
    out: Vec<u8>,
    writes: Vec<edgetracker::store::mirror::Write>,
}

thread_local! {
    static PREPARED: RefCell<Option<Prepared>> = const { RefCell::new(None) };
}

fn percent(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02x}")).collect()
}

fn address(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn announce_of(i: u32, event: Event) -> PeerAnnounce {
    let IpAddr::V4(ip) = address(i) else {
        unreachable!()
    };
    let mut peer = [0u8; 6];
    peer[..4].copy_from_slice(&ip.octets());
    peer[4..].copy_from_slice(&6881u16.to_be_bytes());
    PeerAnnounce {
        info_hash: InfoHash(HASH),
        peer: PeerAddr::V4(peer),
        event,
        seeding: i.is_multiple_of(4),
        want: 50,
    }
}

/// Prepares `case` (an index of [`CASES`]) with a swarm of `peers` peers.
#[cfg_attr(target_arch = "wasm32", wasm_bindgen)]
pub fn prepare(case: u32, peers: u32) {
    let policy = Policy::default();
    let tracker = Tracker::new(MemoryStore::new(policy.clone(), [3; 16]), policy.clone());
    let mut rng = SmallRng::seed_from_u64(7);
    let mut scratch = Scratch::default();
    let mut swarm = MirroredSwarm::new(Knobs::of(&policy), NOW);
    let (mut out, mut writes) = (Vec::new(), Vec::new());
    let queries: Vec<(IpAddr, Vec<u8>)> = (0..peers.max(1))
        .map(|i| {
            let q = format!(
                "info_hash={}&peer_id={}&port=6881&uploaded=0&downloaded=0&left={}&compact=1&numwant=50",
                percent(&HASH),
                percent(&[i as u8; 20]),
                if i.is_multiple_of(4) { 0 } else { 1000 },
            );
            (address(i), q.into_bytes())
        })
        .collect();
    for (i, (ip, q)) in queries.iter().enumerate() {
        let _ = now_or_never(tracker.http_announce(q, None, *ip, NOW, &mut rng, &mut scratch));
        out.clear();
        let _ = swarm.announce(
            &announce_of(i as u32, Event::Started),
            NOW,
            &mut rng,
            &mut out,
            &mut writes,
        );
        writes.clear();
    }
    let scrape = format!("info_hash={}", percent(&HASH)).into_bytes();
    PREPARED.with_borrow_mut(|p| {
        *p = Some(Prepared {
            case: case as usize,
            tracker,
            swarm,
            peers: queries,
            scrape,
            next: 0,
            rng,
            scratch,
            out,
            writes,
        });
    });
}

/// Runs `iterations` of the prepared case; returns a checksum of the replies' lengths (so the
/// work cannot be optimised away, and a broken case shows).
#[cfg_attr(target_arch = "wasm32", wasm_bindgen)]
pub fn run(iterations: u32) -> u32 {
    PREPARED.with_borrow_mut(|p| {
        let p = p.as_mut().expect("prepare() first");
        let mut sum = 0u32;
        for _ in 0..iterations {
            let i = p.next;
            p.next = (p.next + 1) % p.peers.len();
            sum = sum.wrapping_add(match p.case {
                0 => {
                    let (ip, q) = &p.peers[i];
                    let (body, _) = now_or_never(p.tracker.http_announce(
                        q,
                        None,
                        *ip,
                        NOW,
                        &mut p.rng,
                        &mut p.scratch,
                    ));
                    body.len() as u32
                }
                1 => {
                    p.out.clear();
                    p.writes.clear();
                    let a = announce_of(i as u32, Event::None);
                    let _ = p
                        .swarm
                        .announce(&a, NOW, &mut p.rng, &mut p.out, &mut p.writes);
                    p.out.len() as u32
                }
                _ => {
                    let (body, _) = now_or_never(p.tracker.http_scrape(
                        &p.scrape,
                        None,
                        address(0),
                        NOW,
                        &mut p.scratch,
                    ));
                    body.len() as u32
                }
            });
        }
        sum
    })
}
