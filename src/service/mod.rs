//! Requests in, replies out: the glue every home runs, generic over the store.
//!
//! A home (native sockets, the Worker's fetch handler) hands over the request bytes, the client
//! address it trusts, `now` and an RNG, and sends back the bytes it gets. Parsing, policy, store
//! calls and reply writing happen here once, so both homes answer the same request with the same
//! bytes. Owns the order of those steps and error mapping; may not touch sockets, clocks, entropy
//! or any particular store.

pub mod ws;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rand_core::Rng;

use crate::access::{Access, Refusal};
use crate::protocol::bencode::{self, AnnounceReply};
use crate::protocol::connection_id::ConnectionIds;
use crate::protocol::http::{self, RequestError};
use crate::protocol::route;
use crate::protocol::types::{AnnounceRequest, Event, Family, InfoHash, SwarmCounts};
use crate::protocol::udp::{self, Request};
use crate::ratelimit::{AnnounceGate, Limiter, RateLimit};
use crate::store::{AnnounceError, Full, PeerAnnounce, PeerStore, StoreError};
use crate::swarm::Policy;
use crate::time::UnixTime;

/// What a request was, for per-kind counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Connect,
    Announce,
    Scrape,
}

/// How a request went, for stats and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The request's kind, when it was recognisable at all.
    pub action: Option<Action>,
    /// Why the request was refused (a reply saying so was sent, unless `replied` is false).
    pub error: Option<String>,
    /// The store failed; the reply was served without its data.
    pub store_error: Option<StoreError>,
    /// Refused because the client's address exceeded the announce rate limit.
    pub rate_limited: bool,
    /// Refused because a cap on torrents or peers was reached.
    pub full: Option<Full>,
}

impl Outcome {
    fn ok(action: Action) -> Self {
        Outcome {
            action: Some(action),
            ..Outcome::default()
        }
    }
    fn refused(action: Option<Action>, reason: impl Into<String>) -> Self {
        Outcome {
            action,
            error: Some(reason.into()),
            ..Outcome::default()
        }
    }
}

/// Reusable buffers, one set per serving thread, so steady-state requests allocate nothing.
#[derive(Default)]
pub struct Scratch {
    /// The access rules this thread last used, and their generation (see [`Tracker::admit`]).
    access: Option<(u64, Arc<Access>)>,
    peers: Vec<u8>,
    hashes: Vec<InfoHash>,
    counts: Vec<SwarmCounts>,
    url_data: Vec<u8>,
}

/// The tracker: policy, access rules, a store, the announce rate limit (the in-process
/// [`Limiter`] unless a home plugs in another [`AnnounceGate`]), and for homes that serve UDP the
/// connection-id keys.
pub struct Tracker<S, L = Limiter> {
    pub store: S,
    pub policy: Policy,
    /// BEP 15 connection-id keys ([`Tracker::with_udp`]); a home without UDP has none.
    connection_ids: Option<ConnectionIds>,
    /// Swapped whole when the operator's lists are reloaded; read briefly per request.
    access: RwLock<Arc<Access>>,
    /// Set after every change of `access`, from a counter shared by all trackers, so a thread's
    /// cached rules never pass for another tracker's (the Worker builds a tracker per request
    /// and keeps one scratch per isolate). Requests read only this, a line that every core
    /// can hold at once, and take the lock when it moved: a read lock per request made two
    /// threads' cores fight over the lock's counter (each thread ran at 0.4–0.65 of one alone).
    access_generation: AtomicU64,
    /// Per-client announce limit (off unless configured).
    limiter: L,
}

impl<S: PeerStore> Tracker<S> {
    /// A public HTTP tracker serving every torrent without a rate limit; see
    /// [`Tracker::with_udp`], [`Tracker::set_access`] and [`Tracker::with_rate_limit`].
    pub fn new(store: S, policy: Policy) -> Self {
        Tracker {
            store,
            policy,
            connection_ids: None,
            access: RwLock::new(Arc::new(Access::open())),
            access_generation: AtomicU64::new(next_generation()),
            limiter: Limiter::new(RateLimit::default()),
        }
    }

    /// Limits announces per client with in-process token buckets (`per_minute == 0`: no limit).
    pub fn with_rate_limit(self, limit: RateLimit) -> Self {
        self.with_gate(Limiter::new(limit))
    }
}

impl<S: PeerStore, L: AnnounceGate> Tracker<S, L> {
    /// Serves BEP 15 too, issuing and checking connection ids with `ids`.
    pub fn with_udp(self, ids: ConnectionIds) -> Self {
        Tracker {
            connection_ids: Some(ids),
            ..self
        }
    }

    /// The connection-id keys, if this tracker serves UDP.
    pub fn connection_ids(&self) -> Option<&ConnectionIds> {
        self.connection_ids.as_ref()
    }

    /// Limits announces per client with `gate` instead.
    pub fn with_gate<G: AnnounceGate>(self, gate: G) -> Tracker<S, G> {
        Tracker {
            store: self.store,
            policy: self.policy,
            connection_ids: self.connection_ids,
            access: self.access,
            access_generation: self.access_generation,
            limiter: gate,
        }
    }

    /// The announce rate limiter (for housekeeping: [`Limiter::prune`]).
    pub fn limiter(&self) -> &L {
        &self.limiter
    }

    /// Replaces the access rules (info-hash list, passkeys) for every request from now on.
    pub fn set_access(&self, access: impl Into<Arc<Access>>) {
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = access.into();
        self.access_generation
            .store(next_generation(), Ordering::Release);
    }

    /// The access rules in force.
    pub fn access(&self) -> Arc<Access> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks a request's passkey and torrents against the access rules, as `cache` (a thread's
    /// copy) holds them, fetched anew when they have changed since.
    fn admit(
        &self,
        cache: &mut Option<(u64, Arc<Access>)>,
        passkey: Option<&[u8]>,
        hashes: &[InfoHash],
    ) -> Result<(), Refusal> {
        let generation = self.access_generation.load(Ordering::Acquire);
        let access = match cache {
            Some((seen, access)) if *seen == generation => access,
            _ => &cache.insert((generation, self.access())).1,
        };
        access.check_passkey(passkey)?;
        hashes.iter().try_for_each(|h| access.check_torrent(h))
    }

    /// Runs one announce against the store. A store failure still yields a well-formed reply
    /// (no peers, zero counts): clients retry at the interval, which beats an error page.
    async fn announce(
        &self,
        req: &AnnounceRequest,
        client: IpAddr,
        transport_max: usize,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> Result<(Family, SwarmCounts, Option<StoreError>), Full> {
        let peer = self.policy.peer_addr(client, req);
        let want = if req.event == Event::Stopped {
            0
        } else {
            self.policy.peers_wanted(req.numwant, transport_max)
        };
        let a = PeerAnnounce {
            info_hash: req.info_hash,
            peer,
            event: req.event,
            seeding: req.left == 0,
            want,
        };
        peers.clear();
        match self.store.announce(&a, now, rng, peers).await {
            Ok(counts) => Ok((peer.family(), counts, None)),
            Err(AnnounceError::Full(full)) => Err(full),
            Err(AnnounceError::Store(e)) => {
                peers.clear();
                Ok((peer.family(), SwarmCounts::default(), Some(e)))
            }
        }
    }

    /// Answers an HTTP announce given its raw query string. Always a bencoded body (HTTP 200).
    pub async fn http_announce(
        &self,
        query: &[u8],
        passkey: Option<&[u8]>,
        client: IpAddr,
        now: UnixTime,
        rng: &mut impl Rng,
        scratch: &mut Scratch,
    ) -> (Vec<u8>, Outcome) {
        let req = match http::parse_announce(query) {
            Ok(req) => req,
            Err(e) => return refuse_http(Some(Action::Announce), &e.to_string()),
        };
        // The limit first: refused announces (a wrong passkey, a refused torrent) cost a token
        // too, or guessing passkeys would be free.
        if !self.limiter.permit(client, now).await {
            return refuse_http_rate_limited(Action::Announce);
        }
        if let Err(refusal) = self.admit(&mut scratch.access, passkey, &[req.info_hash]) {
            return refuse_http(Some(Action::Announce), refusal.reason());
        }
        let announced = self
            .announce(&req, client, usize::MAX, now, rng, &mut scratch.peers)
            .await;
        let (family, counts, store_error) = match announced {
            Ok(announced) => announced,
            Err(full) => {
                let (body, outcome) = refuse_http(Some(Action::Announce), full.reason());
                return (
                    body,
                    Outcome {
                        full: Some(full),
                        ..outcome
                    },
                );
            }
        };
        if store_error.is_some() {
            // Not the client's fault, and not a swarm: no peers, and when to try again.
            return (
                bencode::write_failure_retry(STORE_UNAVAILABLE, STORE_RETRY_IN_MINUTES),
                Outcome {
                    store_error,
                    ..Outcome::ok(Action::Announce)
                },
            );
        }
        let (interval, min_interval) = self.policy.intervals(req.event, swarm_size(&counts));
        let body = bencode::write_announce(&AnnounceReply {
            interval,
            min_interval,
            counts,
            family,
            peers: &scratch.peers,
            compact: req.compact,
        });
        (
            body,
            Outcome {
                store_error,
                ..Outcome::ok(Action::Announce)
            },
        )
    }

    /// Answers an HTTP scrape from `client` given its raw query string.
    pub async fn http_scrape(
        &self,
        query: &[u8],
        passkey: Option<&[u8]>,
        client: IpAddr,
        now: UnixTime,
        scratch: &mut Scratch,
    ) -> (Vec<u8>, Outcome) {
        if let Err(e) = http::parse_scrape(
            query,
            self.policy.scrape_max_hashes as usize,
            &mut scratch.hashes,
        ) {
            return refuse_http(Some(Action::Scrape), &e.to_string());
        }
        if scratch.hashes.is_empty() {
            let reason = RequestError::FullScrapeDisabled.to_string();
            return refuse_http(Some(Action::Scrape), &reason);
        }
        // A scrape naming any refused torrent is refused whole, saying why. Scrapes are not
        // rate limited, but a wrong passkey costs a token, as for announces: no free guessing.
        if let Err(refusal) = self.admit(&mut scratch.access, passkey, &scratch.hashes) {
            if refusal == Refusal::UnknownPasskey && !self.limiter.permit(client, now).await {
                return refuse_http_rate_limited(Action::Scrape);
            }
            return refuse_http(Some(Action::Scrape), refusal.reason());
        }
        let store_error = self.scrape(now, scratch).await;
        let body = bencode::write_scrape(scratch.hashes.iter().zip(scratch.counts.iter().copied()));
        (
            body,
            Outcome {
                store_error,
                ..Outcome::ok(Action::Scrape)
            },
        )
    }

    /// Fills `scratch.counts` for `scratch.hashes`: what the store gave when it gave one entry
    /// per hash (a store that failed for some hashes gives zeros for those), zeros otherwise.
    async fn scrape(&self, now: UnixTime, scratch: &mut Scratch) -> Option<StoreError> {
        scratch.counts.clear();
        let result = self
            .store
            .scrape(&scratch.hashes, now, &mut scratch.counts)
            .await;
        if scratch.counts.len() != scratch.hashes.len() {
            scratch.counts.clear();
            scratch
                .counts
                .resize(scratch.hashes.len(), SwarmCounts::default());
        }
        result.err()
    }

    /// Answers one BEP 15 datagram from `client`, appending the reply to `out` (left empty when
    /// the packet deserves no reply). Replies to packets without a valid connection id are never
    /// larger than the packet, so the tracker cannot be used to amplify spoofed traffic. A
    /// tracker without connection-id keys (an HTTP-only home) takes no connection.
    pub async fn udp(
        &self,
        packet: &[u8],
        client: IpAddr,
        now: UnixTime,
        rng: &mut impl Rng,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Outcome {
        out.clear();
        let request = match udp::parse_request(packet) {
            Ok(request) => request,
            Err(e) => {
                if let Some(tid) = e.transaction_id {
                    udp::write_error(out, tid, e.reason, packet.len());
                }
                return Outcome::refused(None, e.reason);
            }
        };
        let (action, connection_id, transaction_id) = match &request {
            Request::Connect { transaction_id } => (Action::Connect, None, *transaction_id),
            Request::Announce {
                connection_id,
                transaction_id,
                ..
            } => (Action::Announce, Some(*connection_id), *transaction_id),
            Request::Scrape {
                connection_id,
                transaction_id,
                ..
            } => (Action::Scrape, Some(*connection_id), *transaction_id),
        };
        let Some(ids) = &self.connection_ids else {
            udp::write_error(out, transaction_id, NO_UDP, packet.len());
            return Outcome::refused(Some(action), NO_UDP);
        };
        if let Some(id) = connection_id
            && !ids.is_valid(id, now, client)
        {
            udp::write_error(out, transaction_id, INVALID_CONNECTION_ID, packet.len());
            return Outcome::refused(Some(action), INVALID_CONNECTION_ID);
        }
        // From here on the client's address is proven by its connection id.
        match request {
            Request::Connect { transaction_id } => {
                udp::write_connect(out, transaction_id, ids.issue(now, client));
                Outcome::ok(Action::Connect)
            }
            Request::Announce {
                transaction_id,
                announce,
                options,
                ..
            } => {
                // BEP 41: the tracker URL's path (and with it a passkey) comes in fragments.
                scratch.url_data.clear();
                options
                    .url_data()
                    .for_each(|part| scratch.url_data.extend_from_slice(part));
                self.udp_announce(&announce, transaction_id, client, now, rng, scratch, out)
                    .await
            }
            Request::Scrape {
                transaction_id,
                info_hashes,
                ..
            } => {
                scratch.hashes.clear();
                scratch
                    .hashes
                    .extend(info_hashes.iter().map(|h| InfoHash(*h)));
                self.udp_scrape(transaction_id, now, scratch, out).await
            }
        }
    }

    /// A BEP 15 announce from a proven client, its URL data in `scratch.url_data`.
    #[allow(clippy::too_many_arguments)]
    async fn udp_announce(
        &self,
        announce: &AnnounceRequest,
        transaction_id: u32,
        client: IpAddr,
        now: UnixTime,
        rng: &mut impl Rng,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let refuse = |out: &mut Vec<u8>, reason: &str| {
            udp::write_error(out, transaction_id, reason, PROVEN_CLIENT);
            Outcome::refused(Some(Action::Announce), reason)
        };
        let passkey = route::udp_passkey(&scratch.url_data);
        // The limit first, as over HTTP: refused announces cost a token too.
        if !self.limiter.permit(client, now).await {
            return Outcome {
                rate_limited: true,
                ..refuse(out, RATE_LIMITED)
            };
        }
        if let Err(refusal) = self.admit(&mut scratch.access, passkey, &[announce.info_hash]) {
            return refuse(out, refusal.reason());
        }
        let max = udp::max_peers_per_reply(Family::of(client));
        let announced = self
            .announce(announce, client, max, now, rng, &mut scratch.peers)
            .await;
        let (_, counts, store_error) = match announced {
            Ok(announced) => announced,
            Err(full) => {
                return Outcome {
                    full: Some(full),
                    ..refuse(out, full.reason())
                };
            }
        };
        if store_error.is_some() {
            udp::write_error(out, transaction_id, STORE_UNAVAILABLE, PROVEN_CLIENT);
            return Outcome {
                store_error,
                ..Outcome::ok(Action::Announce)
            };
        }
        let size = swarm_size(&counts);
        let interval = self.policy.intervals(announce.event, size).0;
        udp::write_announce(out, transaction_id, interval, counts, &scratch.peers);
        Outcome {
            store_error,
            ..Outcome::ok(Action::Announce)
        }
    }

    /// A BEP 15 scrape from a proven client of the hashes in `scratch.hashes`.
    async fn udp_scrape(
        &self,
        transaction_id: u32,
        now: UnixTime,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let refuse = |out: &mut Vec<u8>, reason: &str| {
            udp::write_error(out, transaction_id, reason, PROVEN_CLIENT);
            Outcome::refused(Some(Action::Scrape), reason)
        };
        if scratch.hashes.len() > self.policy.scrape_max_hashes as usize {
            return refuse(out, "too many info hashes in one scrape");
        }
        // BEP 41 gives scrapes no URL data: a private tracker has no passkey to check.
        if let Err(refusal) = self.admit(&mut scratch.access, None, &scratch.hashes) {
            return refuse(out, refusal.reason());
        }
        let store_error = self.scrape(now, scratch).await;
        udp::write_scrape(out, transaction_id, scratch.counts.iter().copied());
        Outcome {
            store_error,
            ..Outcome::ok(Action::Scrape)
        }
    }
}

/// Generations of access rules, unique across every tracker in the process.
fn next_generation() -> u64 {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

const INVALID_CONNECTION_ID: &str = "invalid or expired connection id";
const NO_UDP: &str = "this tracker does not serve UDP";
/// Longest error reply to a packet with a valid connection id. The id is a MAC of the client's
/// address, so the packet's source is proven and a reply longer than the request amplifies
/// nothing: the client gets the whole reason (a one-hash scrape is only 36 bytes).
const PROVEN_CLIENT: usize = 8 + 256;
/// What a client is told when the store failed (a Durable Object that threw, was overloaded or
/// whose storage failed; KV refusing an operation): no swarm to answer from.
pub const STORE_UNAVAILABLE: &str = "tracker storage unavailable, retry later";
/// Minutes a client is asked to wait after [`STORE_UNAVAILABLE`] (BEP 31 `retry in`): soon for
/// its user, far enough that an overloaded object is not asked again at once by every client.
pub const STORE_RETRY_IN_MINUTES: u32 = 5;

/// What a client over the announce rate limit is told.
pub const RATE_LIMITED: &str = "rate limited: too many announces from your address, retry later";

/// The swarm's size as far as intervals go.
fn swarm_size(c: &SwarmCounts) -> u64 {
    u64::from(c.complete) + u64::from(c.incomplete)
}

fn refuse_http_rate_limited(action: Action) -> (Vec<u8>, Outcome) {
    let (body, outcome) = refuse_http(Some(action), RATE_LIMITED);
    (
        body,
        Outcome {
            rate_limited: true,
            ..outcome
        },
    )
}

fn refuse_http(action: Option<Action>, reason: &str) -> (Vec<u8>, Outcome) {
    (
        bencode::write_failure(reason),
        Outcome::refused(action, reason),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::announce_query;
    use crate::protocol::types::PeerId;
    use crate::store::now_or_never;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A store whose backend is down, as KV is when rate-limited or failing.
    struct Broken;

    impl PeerStore for Broken {
        fn announce(
            &self,
            _: &PeerAnnounce,
            _: UnixTime,
            _: &mut impl Rng,
            peers: &mut Vec<u8>,
        ) -> impl Future<Output = Result<SwarmCounts, AnnounceError>> {
            peers.extend_from_slice(&[1, 2, 3]); // half-written output must not leak into the reply
            std::future::ready(Err(StoreError("backend down".into()).into()))
        }
        fn scrape(
            &self,
            _: &[InfoHash],
            _: UnixTime,
            out: &mut Vec<SwarmCounts>,
        ) -> impl Future<Output = Result<(), StoreError>> {
            out.push(SwarmCounts {
                complete: 9,
                incomplete: 9,
                downloaded: 9,
            });
            std::future::ready(Err(StoreError("backend down".into())))
        }
        fn expire(&self, _: UnixTime) -> impl Future<Output = Result<(), StoreError>> {
            std::future::ready(Ok(()))
        }
    }

    fn tracker() -> Tracker<Broken> {
        Tracker::new(Broken, Policy::default()).with_udp(ConnectionIds::new([1; 16], 120, 0))
    }

    /// The query of a seeder's first announce.
    fn starting_seeder() -> String {
        announce_query(&AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: Event::Started,
            numwant: None,
            compact: true,
            no_peer_id: false,
            key: None,
            claimed_ip: None,
        })
    }

    #[test]
    fn a_failing_store_gets_the_client_a_failure_with_a_retry_hint() {
        let mut rng = SmallRng::seed_from_u64(1);
        let (body, outcome) = now_or_never(tracker().http_announce(
            starting_seeder().as_bytes(),
            None,
            "10.0.0.1".parse().unwrap(),
            UnixTime(1),
            &mut rng,
            &mut Scratch::default(),
        ));
        // Before: a well-formed announce without peers, and the full interval: the client
        // waited 30 minutes without a word.
        assert_eq!(
            body,
            b"d14:failure reason40:tracker storage unavailable, retry later8:retry ini5ee"
        );
        assert_eq!(outcome.store_error, Some(StoreError("backend down".into())));
        assert_eq!(
            outcome.error, None,
            "not the client's fault: counted as a store error"
        );
    }

    #[test]
    fn a_failing_store_still_gets_a_scrape_of_zeros() {
        // Broken wrote one entry for two hashes: not an answer, so zeros for both.
        let (body, outcome) = now_or_never(tracker().http_scrape(
            b"info_hash=AAAAAAAAAAAAAAAAAAAA&info_hash=BBBBBBBBBBBBBBBBBBBB",
            None,
            "10.0.0.1".parse().unwrap(),
            UnixTime(1),
            &mut Scratch::default(),
        ));
        assert_eq!(
            body,
            b"d5:filesd20:AAAAAAAAAAAAAAAAAAAAd8:completei0e10:downloadedi0e10:incompletei0ee20:BBBBBBBBBBBBBBBBBBBBd8:completei0e10:downloadedi0e10:incompletei0eeee"
        );
        assert!(outcome.store_error.is_some());
    }

    #[test]
    fn a_store_failing_for_some_hashes_serves_the_others() {
        // Broken answered the one hash asked (as a store whose other objects failed would).
        let (body, outcome) = now_or_never(tracker().http_scrape(
            b"info_hash=AAAAAAAAAAAAAAAAAAAA",
            None,
            "10.0.0.1".parse().unwrap(),
            UnixTime(1),
            &mut Scratch::default(),
        ));
        assert_eq!(
            body,
            b"d5:filesd20:AAAAAAAAAAAAAAAAAAAAd8:completei9e10:downloadedi9e10:incompletei9eeee"
        );
        assert!(outcome.store_error.is_some(), "and the failure is counted");
    }

    #[test]
    fn a_failing_store_asks_clients_back_in_its_own_time_not_the_sparse_interval() {
        let t = Tracker::new(
            Broken,
            Policy {
                sparse_swarm_interval: 120,
                ..Policy::default()
            },
        );
        let mut rng = SmallRng::seed_from_u64(1);
        let (body, _) = now_or_never(t.http_announce(
            starting_seeder().as_bytes(),
            None,
            "10.0.0.1".parse().unwrap(),
            UnixTime(1),
            &mut rng,
            &mut Scratch::default(),
        ));
        let body = String::from_utf8_lossy(&body);
        assert!(body.ends_with("8:retry ini5ee"), "{body}");
        assert!(!body.contains("interval"), "{body}");
    }

    #[test]
    fn a_tracker_without_udp_takes_no_connection_and_amplifies_nothing() {
        let t = Tracker::new(Broken, Policy::default());
        let (mut rng, mut scratch, mut out) =
            (SmallRng::seed_from_u64(1), Scratch::default(), vec![]);
        let packet = udp::connect_request(7);
        let outcome = now_or_never(t.udp(
            &packet,
            "10.0.0.1".parse().unwrap(),
            UnixTime(1),
            &mut rng,
            &mut scratch,
            &mut out,
        ));
        assert_eq!(outcome.error.as_deref(), Some(NO_UDP));
        assert_eq!(
            &out[..8],
            &[0, 0, 0, 3, 0, 0, 0, 7],
            "an error for transaction 7"
        );
        assert!(out.len() <= packet.len());
        assert!(t.connection_ids().is_none());
    }

    #[test]
    fn a_scratch_never_carries_one_trackers_rules_to_another() {
        // The Worker builds a tracker per request and keeps one scratch per isolate: rules cached
        // from an open tracker once let a private one's announces through.
        let mut scratch = Scratch::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let client = "10.0.0.1".parse().unwrap();
        let announce = |t: &Tracker<Broken>, scratch: &mut Scratch, rng: &mut SmallRng| {
            let query = starting_seeder();
            now_or_never(t.http_announce(query.as_bytes(), None, client, UnixTime(1), rng, scratch))
                .1
        };
        let open = tracker();
        open.set_access(Access::open());
        assert_eq!(announce(&open, &mut scratch, &mut rng).error, None);
        let private = tracker();
        private.set_access(Access::open().with_passkeys("alice0123456789ab").unwrap());
        let refused = announce(&private, &mut scratch, &mut rng).error;
        assert!(
            refused.as_deref().is_some_and(|e| e.contains("passkey")),
            "{refused:?}"
        );
    }
}
