//! The WebTorrent service through the tracker: messages as clients send them, what comes out.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::access::{Access, ListMode, Refusal};
use crate::protocol::ws::to_binary_string as bin;
use crate::ratelimit::RateLimit;
use crate::store::memory::MemoryStore;
use crate::store::now_or_never;
use crate::swarm::Policy;

const T0: UnixTime = UnixTime(1_750_000_000);
const HASH: [u8; 20] = [0xab; 20];
const KEY: [u8; 16] = [0x0f; 16];

struct World {
    tracker: Tracker<MemoryStore>,
    swarms: RtcSwarms,
    policy: RtcPolicy,
    rng: SmallRng,
    scratch: Scratch,
    /// Connections whose sockets have closed.
    closed: Vec<ConnId>,
    /// Full scrape offered, and how many more the home permits.
    full_scrapes: Option<std::cell::Cell<u32>>,
}

impl World {
    fn new() -> World {
        World {
            tracker: Tracker::new(
                MemoryStore::new(Policy::default(), [1; 16]),
                Policy::default(),
            ),
            swarms: RtcSwarms::new([2; 16], 1000, 1000, 1000),
            policy: RtcPolicy::default(),
            rng: SmallRng::seed_from_u64(5),
            scratch: Scratch::default(),
            closed: Vec::new(),
            full_scrapes: None,
        }
    }

    /// A world whose tracker lets each client two announces, then one a minute.
    fn rate_limited() -> World {
        let mut w = World::new();
        w.tracker = Tracker::new(
            MemoryStore::new(Policy::default(), [1; 16]),
            Policy::default(),
        )
        .with_rate_limit(RateLimit {
            per_minute: 1,
            burst: 2,
        });
        w
    }

    /// Makes the tracker private (one passkey) and returns a connection opened with a wrong one.
    fn private_with_guesser(&mut self) -> WsConnection {
        self.tracker.set_access(
            Access::open()
                .with_passkeys("the-right-passkey-0123\n")
                .unwrap(),
        );
        WsConnection::new(
            9,
            Some(b"a-wrong-guess-0123456".to_vec()),
            "10.0.0.9".parse().unwrap(),
        )
    }

    fn send(&mut self, conn: &mut WsConnection, message: &Value) -> (WsOut, WsOutcome) {
        self.send_text(conn, &message.to_string())
    }

    fn send_text(&mut self, conn: &mut WsConnection, text: &str) -> (WsOut, WsOutcome) {
        let mut out = WsOut::default();
        let permit = |_: IpAddr, _: UnixTime| match &self.full_scrapes {
            Some(left) if left.get() > 0 => {
                left.set(left.get() - 1);
                Ok(())
            }
            _ => Err("full scrape rate limited".to_string()),
        };
        let home = WsHome {
            offer_key: KEY,
            swarms: &self.swarms,
            policy: &self.policy,
            is_open: &|c| !self.closed.contains(&c),
            full_scrape: self
                .full_scrapes
                .as_ref()
                .map(|_| &permit as &dyn Fn(IpAddr, UnixTime) -> Result<(), String>),
        };
        let outcome = now_or_never(self.tracker.ws_message(
            &home,
            conn,
            text,
            T0,
            &mut self.rng,
            &mut self.scratch,
            &mut out,
        ));
        (out, outcome)
    }
}

fn conn(id: ConnId) -> WsConnection {
    WsConnection::new(id, None, format!("10.0.0.{id}").parse().unwrap())
}

fn peer(n: u8) -> String {
    bin(&[n; 20])
}

fn announce(n: u8, left: u64, offers: usize) -> Value {
    json!({
        "action": "announce",
        "info_hash": bin(&HASH),
        "peer_id": peer(n),
        "left": left,
        "event": "started",
        "numwant": offers,
        "offers": (0..offers).map(|i| json!({
            "offer_id": format!("{n:02x}{i:038x}"),
            "offer": {"type": "offer", "sdp": format!("sdp of {n}/{i}")},
        })).collect::<Vec<_>>(),
    })
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn two_peers_exchange_an_offer_and_an_answer() {
    let mut w = World::new();
    let (mut a, mut b) = (conn(1), conn(2));
    let (out, _) = w.send(&mut a, &announce(1, 100, 0));
    assert_eq!(
        parsed(out.reply.as_deref().unwrap()),
        json!({"action": "announce", "interval": 120, "info_hash": bin(&HASH), "complete": 0, "incomplete": 1})
    );
    assert!(out.forwards.is_empty());
    // B joins with two offers: one goes to A (the only other peer), the other nowhere.
    let (out, outcome) = w.send(&mut b, &announce(2, 0, 2));
    assert_eq!(outcome.offers_forwarded, 1);
    assert_eq!(parsed(out.reply.as_deref().unwrap())["complete"], json!(1));
    assert_eq!(out.forwards.len(), 1);
    let (to, text) = &out.forwards[0];
    assert_eq!(*to, 1);
    let offer = parsed(text);
    // The offer id carries a tag for the connection it was handed to.
    let original = format!("02{:038x}", 0);
    let tag = offer_tag(&KEY, 1, &PeerId([2; 20]), &InfoHash(HASH), &original);
    assert_eq!(
        offer,
        json!({"action": "announce", "info_hash": bin(&HASH), "peer_id": peer(2),
               "offer_id": format!("{tag}{original}"), "offer": {"type": "offer", "sdp": "sdp of 2/0"}})
    );
    // A answers: the answer goes to B's connection, and A gets no reply.
    let answer = json!({
        "action": "announce", "info_hash": bin(&HASH), "peer_id": peer(1),
        "to_peer_id": peer(2), "offer_id": offer["offer_id"], "answer": {"type": "answer", "sdp": "a's answer"},
    });
    let (out, outcome) = w.send(&mut a, &answer);
    assert_eq!((outcome.answers_forwarded, outcome.error), (1, None));
    assert_eq!(out.reply, None);
    assert_eq!(out.forwards.len(), 1);
    assert_eq!(out.forwards[0].0, 2);
    assert_eq!(
        parsed(&out.forwards[0].1),
        json!({"action": "announce", "info_hash": bin(&HASH), "peer_id": peer(1),
               "offer_id": original, "answer": {"type": "answer", "sdp": "a's answer"}}),
        "the offerer gets its own offer id back"
    );
}

#[test]
fn only_the_connection_an_offer_was_handed_to_may_answer_it() {
    // Before: any member that knew an offer's id could answer it in the place of the peer it
    // was handed to, and the answer reached the offerer.
    let mut w = World::new();
    let (mut a, mut b, mut c) = (conn(1), conn(2), conn(3));
    w.send(&mut a, &announce(1, 100, 0));
    w.send(&mut c, &announce(3, 0, 0));
    // B's one offer goes to a leecher or a seeder: A or C.
    let (out, _) = w.send(&mut b, &announce(2, 100, 1));
    let (handed_to, text) = out.forwards[0].clone();
    let offer_id = parsed(&text)["offer_id"].clone();
    let (mut other, other_peer) = if handed_to == 1 { (c, 3) } else { (a, 1) };
    let answer = json!({
        "action": "announce", "info_hash": bin(&HASH), "peer_id": peer(other_peer),
        "to_peer_id": peer(2), "offer_id": offer_id, "answer": {"type": "answer", "sdp": "not mine"},
    });
    let (out, outcome) = w.send(&mut other, &answer);
    assert!(out.forwards.is_empty(), "not forwarded");
    assert_eq!(outcome.error.as_deref(), Some(NOT_HANDED));
    // Nor with the offerer's own id, untagged.
    let untagged = json!({
        "action": "announce", "info_hash": bin(&HASH), "peer_id": peer(other_peer),
        "to_peer_id": peer(2), "offer_id": format!("02{:038x}", 0), "answer": {"type": "answer", "sdp": "x"},
    });
    let (out, outcome) = w.send(&mut other, &untagged);
    assert!(out.forwards.is_empty());
    assert_eq!(outcome.error.as_deref(), Some(NOT_HANDED));
}

#[test]
fn offers_past_a_connections_budget_are_not_forwarded() {
    // Before: nothing paced a socket: one socket had 868,000 offers forwarded in 10 s to 20
    // reading peers.
    let mut w = World::new();
    w.policy.offers_per_minute = 60;
    w.policy.offers_burst = 5;
    let mut members: Vec<WsConnection> = (1..=20).map(conn).collect();
    for (n, m) in members.iter_mut().enumerate() {
        w.send(m, &announce(n as u8 + 1, 100, 0));
    }
    // Offers nobody receives cost nothing: alone in another swarm, four offers go nowhere.
    let mut flooder = conn(99);
    let mut alone = announce(99, 100, 4);
    alone["info_hash"] = json!(bin(&[0xcd; 20]));
    let (_, outcome) = w.send(&mut flooder, &alone);
    assert_eq!(outcome.offers_forwarded, 0);
    assert_eq!(
        flooder.offer_budget().map(|b| b.milli),
        Some(5000),
        "all refunded"
    );
    let (_, outcome) = w.send(&mut flooder, &announce(99, 100, 4));
    assert_eq!(
        (outcome.offers_forwarded, outcome.offers_over_budget),
        (4, 0)
    );
    let (out, outcome) = w.send(&mut flooder, &announce(99, 100, 4));
    assert_eq!(
        (outcome.offers_forwarded, outcome.offers_over_budget),
        (1, 3)
    );
    assert_eq!(out.forwards.len(), 1);
    assert!(out.reply.is_some(), "the announce itself is answered");
    let (_, outcome) = w.send(&mut flooder, &announce(99, 100, 4));
    assert_eq!(outcome.offers_forwarded, 0);
    assert_eq!(flooder.offer_budget().map(|b| b.milli), Some(0));
}

#[test]
fn only_a_member_may_answer_from_its_own_connection() {
    let mut w = World::new();
    let (mut a, mut b, mut stranger) = (conn(1), conn(2), conn(3));
    w.send(&mut a, &announce(1, 100, 0));
    w.send(&mut b, &announce(2, 100, 0));
    // As if an offer "x" of peer 2 had been handed to the stranger's connection (3).
    let handed = offer_tag(&KEY, 3, &PeerId([2; 20]), &InfoHash(HASH), "x") + "x";
    let answer = |from: u8| {
        json!({"action": "announce", "info_hash": bin(&HASH), "peer_id": peer(from),
               "to_peer_id": peer(2), "offer_id": handed, "answer": {"type": "answer", "sdp": "spam"}})
    };
    // Neither as a peer id it never announced, nor as a member's id from another connection.
    for from in [3, 1] {
        let (out, outcome) = w.send(&mut stranger, &answer(from));
        assert!(out.forwards.is_empty());
        assert_eq!(outcome.error.as_deref(), Some(NOT_IN_SWARM));
        assert_eq!(
            parsed(out.reply.as_deref().unwrap())["failure reason"],
            json!(NOT_IN_SWARM)
        );
    }
}

#[test]
fn scrape_counts_and_a_closed_socket_leaves() {
    let mut w = World::new();
    let (mut a, mut b) = (conn(1), conn(2));
    w.send(&mut a, &announce(1, 0, 0));
    w.send(&mut b, &announce(2, 5, 0));
    let scrape = json!({"action": "scrape", "info_hash": [bin(&HASH), bin(&[1; 20])]});
    let (out, _) = w.send(&mut a, &scrape);
    assert_eq!(
        parsed(out.reply.as_deref().unwrap()),
        json!({"action": "scrape", "files": {
            bin(&HASH): {"complete": 1, "incomplete": 1, "downloaded": 0},
            bin(&[1; 20]): {"complete": 0, "incomplete": 0, "downloaded": 0},
        }})
    );
    b.close(&w.swarms);
    assert_eq!(b.joined(), 0);
    let (out, _) = w.send(&mut a, &scrape);
    assert_eq!(
        parsed(out.reply.as_deref().unwrap())["files"][bin(&HASH)]["incomplete"],
        json!(0)
    );
    // Stopped leaves too, and the connection forgets the swarm.
    let mut stop = announce(1, 0, 0);
    stop["event"] = json!("stopped");
    w.send(&mut a, &stop);
    assert_eq!((a.joined(), w.swarms.totals()), (0, (0, 0)));
}

#[test]
fn access_rules_rate_limits_and_caps_refuse_with_a_reason() {
    let mut w = World::new();
    w.tracker.set_access(
        Access::open()
            .with_list(ListMode::Deny, &crate::protocol::hex::encode(&HASH))
            .unwrap(),
    );
    let mut a = conn(1);
    let (out, outcome) = w.send(&mut a, &announce(1, 0, 0));
    let reply = parsed(out.reply.as_deref().unwrap());
    assert!(
        reply["failure reason"]
            .as_str()
            .unwrap()
            .contains("deny list"),
        "{reply}"
    );
    assert_eq!(reply["info_hash"], json!(bin(&HASH)));
    assert!(outcome.error.is_some() && w.swarms.totals() == (0, 0));

    // Swarms per connection.
    let mut w = World::new();
    w.policy.max_torrents_per_connection = 2;
    let mut a = conn(1);
    for i in 0..3u8 {
        let mut m = announce(1, 0, 0);
        m["info_hash"] = json!(bin(&[i; 20]));
        let (out, outcome) = w.send(&mut a, &m);
        assert_eq!(outcome.full, i == 2, "{:?}", out.reply);
    }
    assert_eq!((a.joined(), w.swarms.totals()), (2, (2, 2)));

    // The announce rate limit counts answers too.
    let mut w = World::rate_limited();
    let mut a = conn(1);
    w.send(&mut a, &announce(1, 0, 0));
    w.send(&mut a, &announce(1, 0, 0));
    let (out, outcome) = w.send(&mut a, &announce(1, 0, 0));
    assert!(outcome.rate_limited);
    assert_eq!(
        parsed(out.reply.as_deref().unwrap())["failure reason"],
        json!(RATE_LIMITED)
    );
}

#[test]
fn malformed_frames_get_a_reason_and_change_nothing() {
    let mut w = World::new();
    let mut a = conn(1);
    for text in ["", "{", "{\"action\":\"announce\"}", "[]", "\"announce\""] {
        let (out, outcome) = w.send_text(&mut a, text);
        assert!(outcome.error.is_some(), "{text:?}");
        assert!(parsed(out.reply.as_deref().unwrap())["failure reason"].is_string());
    }
    let (_, outcome) = w.send(&mut a, &announce(1, 0, 11));
    assert_eq!(outcome.error.as_deref(), Some("too many offers"));
    assert_eq!(w.swarms.totals(), (0, 0));
}

#[test]
fn a_reconnecting_client_claims_its_peer_id_and_leaves_it_on_close() {
    let mut w = World::new();
    let (mut old, mut new, mut thief) = (conn(1), conn(2), conn(3));
    w.send(&mut old, &announce(1, 0, 0));
    // While the old socket is open, nobody else may announce as peer 1 or stop it.
    let (out, _) = w.send(&mut thief, &announce(1, 0, 0));
    assert_eq!(
        parsed(out.reply.as_deref().unwrap())["failure reason"],
        json!("peer_id in use by another connection")
    );
    let mut stop = announce(1, 0, 0);
    stop["event"] = json!("stopped");
    w.send(&mut thief, &stop);
    assert_eq!(w.swarms.totals(), (1, 1));
    // The old socket is gone (its close not yet processed): the client's new socket takes the id
    // over, and leaves it when it closes in turn.
    w.closed.push(1);
    let (out, _) = w.send(&mut new, &announce(1, 0, 0));
    assert_eq!(parsed(out.reply.as_deref().unwrap())["complete"], json!(1));
    assert_eq!(new.joined(), 1);
    old.close(&w.swarms);
    assert_eq!(
        w.swarms.totals(),
        (1, 1),
        "the old close leaves the new holder in place"
    );
    new.close(&w.swarms);
    assert_eq!(w.swarms.totals(), (0, 0));
}

#[test]
fn one_connection_holds_few_peers_of_one_swarm() {
    let mut w = World::new();
    let mut a = conn(1);
    for n in 1..=MAX_PEERS_PER_SWARM_PER_CONNECTION as u8 + 1 {
        let (out, outcome) = w.send(&mut a, &announce(n, 0, 0));
        let refused = n as usize > MAX_PEERS_PER_SWARM_PER_CONNECTION;
        assert_eq!(outcome.full, refused, "{:?}", out.reply);
    }
    assert_eq!(w.swarms.totals(), (1, MAX_PEERS_PER_SWARM_PER_CONNECTION));
}

#[test]
fn a_wrong_passkey_in_a_scrape_costs_a_token() {
    let mut w = World::rate_limited();
    let mut guesser = w.private_with_guesser();
    let scrape = json!({"action": "scrape", "info_hash": bin(&HASH)});
    let mut limited = 0;
    for _ in 0..5 {
        let (_, outcome) = w.send(&mut guesser, &scrape);
        assert!(outcome.error.is_some());
        limited += usize::from(outcome.rate_limited);
    }
    assert_eq!(limited, 3, "two guesses, then the limit");
}

#[test]
fn a_full_scrape_lists_every_admitted_swarm_when_the_home_offers_it() {
    let mut w = World::new();
    let mut a = conn(1);
    for i in [1u8, 2, 3] {
        let mut m = announce(1, u64::from(i % 2), 0);
        m["info_hash"] = json!(bin(&[i; 20]));
        w.send(&mut a, &m);
    }
    let full = json!({"action": "scrape"});
    // Not offered: refused, as over HTTP.
    let (out, _) = w.send(&mut a, &full);
    assert_eq!(
        parsed(out.reply.as_deref().unwrap())["failure reason"],
        json!(RequestError::FullScrapeDisabled.to_string())
    );
    // Offered: every swarm but a denied one, then the home's refusal.
    w.full_scrapes = Some(std::cell::Cell::new(1));
    w.tracker.set_access(
        Access::open()
            .with_list(ListMode::Deny, &crate::protocol::hex::encode(&[3; 20]))
            .unwrap(),
    );
    let (out, outcome) = w.send(&mut a, &full);
    assert_eq!(outcome.error, None);
    assert_eq!(
        parsed(out.reply.as_deref().unwrap()),
        json!({"action": "scrape", "files": {
            bin(&[1; 20]): {"complete": 0, "incomplete": 1, "downloaded": 0},
            bin(&[2; 20]): {"complete": 1, "incomplete": 0, "downloaded": 0},
        }})
    );
    let (out, _) = w.send(&mut a, &full);
    assert_eq!(
        parsed(out.reply.as_deref().unwrap())["failure reason"],
        json!("full scrape rate limited")
    );
    // A wrong passkey is refused before the home is asked.
    w.full_scrapes = Some(std::cell::Cell::new(1));
    let mut guesser = w.private_with_guesser();
    let (out, _) = w.send(&mut guesser, &full);
    assert_eq!(
        parsed(out.reply.as_deref().unwrap())["failure reason"],
        json!(Refusal::UnknownPasskey.reason())
    );
    assert_eq!(w.full_scrapes.as_ref().unwrap().get(), 1);
}

#[test]
fn a_connection_that_lost_track_of_a_swarm_takes_it_back_at_its_next_announce() {
    // A home that keeps connections between messages may lose an entry (the edge's socket
    // objects once did, to interleaved messages): the swarm still holds the peer for this
    // connection, so it is no new claim, but the connection must leave it when it closes.
    let mut w = World::new();
    let mut a = conn(1);
    w.send(&mut a, &announce(1, 0, 0));
    let mut forgetful = WsConnection::restore(a.id, None, a.client, Vec::new());
    w.send(&mut forgetful, &announce(1, 0, 0));
    assert_eq!(forgetful.members(), &[(InfoHash(HASH), PeerId([1; 20]))]);
    forgetful.close(&w.swarms);
    assert_eq!(w.swarms.totals(), (0, 0));
}

#[test]
fn scrapes_over_a_websocket_cost_a_token() {
    let mut w = World::rate_limited();
    let mut a = conn(1);
    let scrape = json!({"action": "scrape", "info_hash": bin(&HASH)});
    let limited: Vec<bool> = (0..4)
        .map(|_| w.send(&mut a, &scrape).1.rate_limited)
        .collect();
    assert_eq!(limited, [false, false, true, true]);
}
