//! WebTorrent messages in, messages out: what a home does with a WebSocket text frame.
//!
//! The home hands over the frame, the [`WsConnection`] it arrived on (its id, passkey and
//! client address, and the swarms it joined), `now` and an RNG; it gets back the reply for the
//! sender and the messages to forward to other connections ([`WsOut`]), and delivers them. The
//! same access rules, rate limit and caps apply as to HTTP and UDP announces. Owns the order of
//! the steps; may not touch sockets, clocks or entropy.

use std::net::IpAddr;

use rand_core::Rng;

use super::{RATE_LIMITED, Scratch, Tracker};
use crate::protocol::http::RequestError;
use crate::protocol::types::{Event, InfoHash, PeerId};
use crate::protocol::ws::{self, Announce, ClientMessage, ScrapeCounts, WsAction, WsError};
use crate::ratelimit::{AnnounceGate, client_key};
use crate::store::rtc::{RtcStore, RtcSwarms};
use crate::store::{PeerStore, StoreError};
use crate::swarm::rtc::{ConnId, RtcAnnounce, RtcCounts, RtcPolicy, RtcRefusal};
use crate::time::UnixTime;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;

/// One WebSocket, as the core needs to know it.
#[derive(Debug)]
pub struct WsConnection {
    pub id: ConnId,
    /// The passkey of the URL the socket was opened on (`/<passkey>/announce`).
    pub passkey: Option<Vec<u8>>,
    pub client: IpAddr,
    /// The swarms this connection is in, as which peer: left when it closes.
    joined: Vec<(InfoHash, PeerId)>,
    /// What is left of its budget of offers ([`RtcPolicy::offers_per_minute`]); `None`: whole.
    offer_budget: Option<OfferBudget>,
}

/// A connection's budget of forwarded offers: a token bucket, in thousandths of an offer (so a
/// slow rate refills smoothly on a clock of whole seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferBudget {
    pub milli: u64,
    /// When it was last spent from.
    pub last: UnixTime,
}

impl WsConnection {
    pub fn new(id: ConnId, passkey: Option<Vec<u8>>, client: IpAddr) -> Self {
        Self::restore(id, passkey, client, Vec::new())
    }

    /// A connection as a home kept it between messages (the edge's socket objects forget
    /// everything but what they stored when they hibernate).
    pub fn restore(
        id: ConnId,
        passkey: Option<Vec<u8>>,
        client: IpAddr,
        joined: Vec<(InfoHash, PeerId)>,
    ) -> Self {
        WsConnection {
            id,
            passkey,
            client,
            joined,
            offer_budget: None,
        }
    }

    /// The budget of offers as a home keeps it between messages (`None`: untouched).
    pub fn offer_budget(&self) -> Option<OfferBudget> {
        self.offer_budget
    }

    /// [`WsConnection::restore`]'s budget of offers.
    pub fn with_offer_budget(mut self, budget: Option<OfferBudget>) -> Self {
        self.offer_budget = budget;
        self
    }

    /// Gives back `n` offers taken but not forwarded (a refused announce, a swarm with fewer
    /// peers than offers).
    fn refund_offers(&mut self, policy: &RtcPolicy, n: usize) {
        if let Some(budget) = &mut self.offer_budget {
            let capacity = u64::from(policy.offers_burst.max(1)) * 1000;
            budget.milli = (budget.milli + n as u64 * 1000).min(capacity);
        }
    }

    /// Takes up to `want` offers from the budget at `now`; returns how many it had.
    fn spend_offers(&mut self, policy: &RtcPolicy, want: usize, now: UnixTime) -> usize {
        if policy.offers_per_minute == 0 || want == 0 {
            return want;
        }
        let capacity = u64::from(policy.offers_burst.max(1)) * 1000;
        let budget = self.offer_budget.get_or_insert(OfferBudget {
            milli: capacity,
            last: now,
        });
        let refill =
            u64::from(now.since(budget.last)) * u64::from(policy.offers_per_minute) * 1000 / 60;
        budget.milli = (budget.milli + refill).min(capacity);
        budget.last = budget.last.max(now);
        let granted = (budget.milli / 1000).min(want as u64);
        budget.milli -= granted * 1000;
        granted as usize
    }

    /// The swarms this connection is in, and as which peer.
    pub fn members(&self) -> &[(InfoHash, PeerId)] {
        &self.joined
    }

    /// The socket closed: its peers leave every swarm they joined through it.
    pub fn close(&mut self, swarms: &RtcSwarms) {
        for (hash, peer_id) in self.joined.drain(..) {
            swarms.leave(&hash, &peer_id, self.id);
        }
    }

    /// Swarms this connection is in.
    pub fn joined(&self) -> usize {
        self.joined.len()
    }
}

/// What the home lends the core for one message: the swarms, the knobs, and which connections
/// are open (a peer id held by a closed connection may be claimed by a reconnecting client).
pub struct WsHome<'a, R> {
    /// Keys the tags that forwarded offer ids carry ([`offer_tag`]): the same in every place
    /// that serves the connections of one swarm, and secret.
    pub offer_key: [u8; 16],
    pub swarms: &'a R,
    pub policy: &'a RtcPolicy,
    pub is_open: &'a dyn Fn(ConnId) -> bool,
    /// Full scrape (a scrape naming no torrent), where the home offers it: whether this client
    /// may have one now, or why not (the home keeps how often each client may).
    pub full_scrape: Option<&'a dyn Fn(IpAddr, UnixTime) -> Result<(), String>>,
}

/// Peer ids one connection may hold in one swarm: a page running a few clients shares one socket
/// per tracker, but one socket may not fill a swarm with peers of its own.
pub const MAX_PEERS_PER_SWARM_PER_CONNECTION: usize = 4;

/// What to send: the reply to the sender, and messages for other connections.
#[derive(Debug, Default)]
pub struct WsOut {
    pub reply: Option<String>,
    pub forwards: Vec<(ConnId, String)>,
}

impl WsOut {
    pub fn clear(&mut self) {
        self.reply = None;
        self.forwards.clear();
    }
}

/// How a message went, for stats and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsOutcome {
    pub action: Option<WsAction>,
    /// Why the message was refused (the reply says so).
    pub error: Option<String>,
    pub rate_limited: bool,
    /// Refused at a cap (torrents, peers in a swarm, swarms per connection).
    pub full: bool,
    pub offers_forwarded: usize,
    /// Offers not forwarded: past the connection's budget.
    pub offers_over_budget: usize,
    pub answers_forwarded: usize,
    /// Whose offers the forwards are (the torrent and the offering peer), when they are offers:
    /// a home may tell the recipients where to send the answers.
    pub offers_from: Option<(InfoHash, PeerId)>,
    /// The swarms could not be reached (the client was told to try again).
    pub store_error: Option<StoreError>,
}

fn refused(out: &mut WsOut, err: &WsError) -> WsOutcome {
    out.reply = Some(ws::write_error(err));
    WsOutcome {
        action: match err {
            WsError::Invalid { action, .. } => Some(*action),
            _ => None,
        },
        error: Some(err.reason()),
        ..WsOutcome::default()
    }
}

fn failure(out: &mut WsOut, action: WsAction, hash: Option<&InfoHash>, reason: &str) -> WsOutcome {
    out.reply = Some(ws::write_failure(Some(action), hash, reason));
    WsOutcome {
        action: Some(action),
        error: Some(reason.to_string()),
        ..WsOutcome::default()
    }
}

const TOO_MANY_TORRENTS: &str = "too many torrents on one connection";
const NOT_IN_SWARM: &str = "answer from a peer that is not in the swarm";
const NOT_HANDED: &str = "answer to an offer this connection was not handed";

/// Characters of the tag in front of a forwarded offer id.
pub const OFFER_TAG_LEN: usize = 16;

/// The tag an offer id carries to the connection `to` it is handed to: a keyed hash of that
/// connection, the offering peer, the torrent and the offer id, in hex. An answer names the
/// offer by the tagged id, so the tag shows which connection the offer went to, and only that
/// connection's answer is forwarded: a member that learned another peer's offer id cannot
/// answer it in that peer's place. Stateless, so the edge's socket objects, which share no
/// memory, check it as well.
pub fn offer_tag(
    key: &[u8; 16],
    to: ConnId,
    from: &PeerId,
    hash: &InfoHash,
    offer_id: &str,
) -> String {
    let mut h = SipHasher13::new_with_key(key);
    h.write_u64(to);
    h.write(&from.0);
    h.write(&hash.0);
    h.write(offer_id.as_bytes());
    format!("{:016x}", h.finish())
}
const TOO_MANY_PEERS: &str = "too many peers of one torrent on one connection";
use super::STORE_UNAVAILABLE;

fn store_failed(
    out: &mut WsOut,
    action: WsAction,
    hash: Option<&InfoHash>,
    e: StoreError,
) -> WsOutcome {
    let mut outcome = failure(out, action, hash, STORE_UNAVAILABLE);
    outcome.store_error = Some(e);
    outcome
}

impl<S: PeerStore, L: AnnounceGate> Tracker<S, L> {
    /// Handles one text frame from `conn`: fills `out` (cleared first) with what to send.
    #[allow(clippy::too_many_arguments)]
    pub async fn ws_message<R: RtcStore>(
        &self,
        home: &WsHome<'_, R>,
        conn: &mut WsConnection,
        text: &str,
        now: UnixTime,
        rng: &mut impl Rng,
        scratch: &mut Scratch,
        out: &mut WsOut,
    ) -> WsOutcome {
        out.clear();
        let swarms = home.swarms;
        let message = match ws::parse(text, home.policy.max_offers) {
            Ok(message) => message,
            Err(err) => return refused(out, &err),
        };
        match message {
            ClientMessage::Announce(a) => {
                // Answers cost a token too: each one is a message pushed to another peer.
                if !self.limiter.permit(conn.client, now).await {
                    let mut outcome =
                        failure(out, WsAction::Announce, Some(&a.info_hash), RATE_LIMITED);
                    outcome.rate_limited = true;
                    return outcome;
                }
                if let Err(refusal) =
                    self.admit(&mut scratch.access, conn.passkey.as_deref(), &[a.info_hash])
                {
                    return failure(
                        out,
                        WsAction::Announce,
                        Some(&a.info_hash),
                        refusal.reason(),
                    );
                }
                if a.answer.is_some() {
                    forward_answer(swarms, &home.offer_key, conn, &a, out).await
                } else {
                    announce(home, conn, &a, now, rng, out).await
                }
            }
            ClientMessage::Scrape(s) => {
                let action = WsAction::Scrape;
                // Scrapes cost a token here, unlike over HTTP, where each is a request of its
                // own: a frame is cheap to send, and at the edge every torrent it names is an
                // object's request.
                if !self.limiter.permit(conn.client, now).await {
                    let mut outcome = failure(out, action, None, RATE_LIMITED);
                    outcome.rate_limited = true;
                    return outcome;
                }
                // The same reasons as an HTTP scrape's.
                let max = self.policy.scrape_max_hashes as usize;
                if s.info_hashes.is_empty()
                    && let Some(permit) = home.full_scrape
                {
                    return self
                        .ws_full_scrape(home.swarms, conn, permit, now, scratch, out)
                        .await;
                }
                let refused = if s.info_hashes.is_empty() {
                    Some(RequestError::FullScrapeDisabled)
                } else if s.info_hashes.len() > max {
                    Some(RequestError::TooManyHashes { max })
                } else {
                    None
                };
                if let Some(e) = refused {
                    return failure(out, action, None, &e.to_string());
                }
                if let Err(refusal) =
                    self.admit(&mut scratch.access, conn.passkey.as_deref(), &s.info_hashes)
                {
                    return failure(out, action, None, refusal.reason());
                }
                let mut counts = Vec::with_capacity(s.info_hashes.len());
                if let Err(e) = swarms.counts(&s.info_hashes, &mut counts).await {
                    return store_failed(out, action, None, e);
                }
                let files: Vec<(InfoHash, ScrapeCounts)> = s
                    .info_hashes
                    .iter()
                    .zip(counts)
                    .map(|(h, c)| (*h, scrape_counts(c)))
                    .collect();
                out.reply = Some(ws::write_scrape_reply(&files));
                WsOutcome {
                    action: Some(action),
                    ..WsOutcome::default()
                }
            }
        }
    }
}

fn scrape_counts(c: RtcCounts) -> ScrapeCounts {
    ScrapeCounts {
        complete: c.complete,
        incomplete: c.incomplete,
        downloaded: c.downloaded,
    }
}

impl<S: PeerStore, L: AnnounceGate> Tracker<S, L> {
    /// A scrape naming no torrent, where the home offers full scrape: every WebTorrent swarm the
    /// access rules admit, once the passkey is right and the home permits this client one.
    async fn ws_full_scrape(
        &self,
        swarms: &impl RtcStore,
        conn: &WsConnection,
        permit: &dyn Fn(IpAddr, UnixTime) -> Result<(), String>,
        now: UnixTime,
        scratch: &mut Scratch,
        out: &mut WsOut,
    ) -> WsOutcome {
        let action = WsAction::Scrape;
        if let Err(refusal) = self.admit(&mut scratch.access, conn.passkey.as_deref(), &[]) {
            return failure(out, action, None, refusal.reason());
        }
        if let Err(reason) = permit(conn.client, now) {
            return failure(out, action, None, &reason);
        }
        let mut all = Vec::new();
        if let Err(e) = swarms.all_counts(&mut all).await {
            return store_failed(out, action, None, e);
        }
        // A torrent denied (or dropped from the allow list) after it had swarms is not listed.
        let access = self.access();
        let files: Vec<(InfoHash, ScrapeCounts)> = all
            .into_iter()
            .filter(|(h, _)| access.check_torrent(h).is_ok())
            .map(|(h, c)| (h, scrape_counts(c)))
            .collect();
        out.reply = Some(ws::write_scrape_reply(&files));
        WsOutcome {
            action: Some(action),
            ..WsOutcome::default()
        }
    }
}

async fn forward_answer(
    swarms: &impl RtcStore,
    offer_key: &[u8; 16],
    conn: &WsConnection,
    a: &Announce,
    out: &mut WsOut,
) -> WsOutcome {
    let answer = a.answer.as_ref().expect("an answer");
    let action = WsAction::Announce;
    // The offer id as the offerer sent it, if the tag says the offer was handed to this
    // connection.
    let handed = answer
        .offer_id
        .split_at_checked(OFFER_TAG_LEN)
        .filter(|(tag, offer_id)| {
            let expected = offer_tag(
                offer_key,
                conn.id,
                &answer.to_peer_id,
                &a.info_hash,
                offer_id,
            );
            !offer_id.is_empty()
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    tag.as_bytes(),
                    expected.as_bytes(),
                ))
        });
    let Some((_, offer_id)) = handed else {
        return failure(out, action, Some(&a.info_hash), NOT_HANDED);
    };
    // Only a member may answer, from its own connection: nobody else can push messages at a
    // peer by naming it.
    let route = swarms
        .answer_route(&a.info_hash, &a.peer_id, conn.id, &answer.to_peer_id)
        .await;
    let to = match route {
        Ok(Some(to)) => to,
        Ok(None) => return failure(out, action, Some(&a.info_hash), NOT_IN_SWARM),
        Err(e) => return store_failed(out, action, Some(&a.info_hash), e),
    };
    let mut outcome = WsOutcome {
        action: Some(action),
        ..WsOutcome::default()
    };
    // An offerer that has left is no error: the answer had nowhere to go.
    if let Some(to) = to {
        out.forwards.push((
            to,
            ws::write_answer(&a.info_hash, &a.peer_id, offer_id, &answer.answer),
        ));
        outcome.answers_forwarded = 1;
    }
    outcome
}

async fn announce<R: RtcStore>(
    home: &WsHome<'_, R>,
    conn: &mut WsConnection,
    a: &Announce,
    now: UnixTime,
    rng: &mut impl Rng,
    out: &mut WsOut,
) -> WsOutcome {
    let (swarms, policy) = (home.swarms, home.policy);
    let action = WsAction::Announce;
    let member = (a.info_hash, a.peer_id);
    let already = conn.joined.contains(&member);
    let in_swarm = conn
        .joined
        .iter()
        .filter(|(h, _)| *h == a.info_hash)
        .count();
    if !already && a.event != Event::Stopped && in_swarm >= MAX_PEERS_PER_SWARM_PER_CONNECTION {
        let mut outcome = failure(out, action, Some(&a.info_hash), TOO_MANY_PEERS);
        outcome.full = true;
        return outcome;
    }
    if !already
        && a.event != Event::Stopped
        && conn.joined.len() >= policy.max_torrents_per_connection
    {
        let mut outcome = failure(out, action, Some(&a.info_hash), TOO_MANY_TORRENTS);
        outcome.full = true;
        return outcome;
    }
    let wanted = a
        .offers
        .len()
        .min(a.numwant.map_or(usize::MAX, |n| n as usize));
    // Offers past the connection's budget are not forwarded; the announce itself counts.
    let offers = conn.spend_offers(policy, wanted, now);
    let announce = RtcAnnounce {
        peer_id: a.peer_id,
        conn: conn.id,
        event: a.event,
        seeding: a.seeding(),
        offers,
        client: Some(client_key(conn.client)),
    };
    let mut recipients = Vec::with_capacity(offers);
    let announced = swarms
        .announce(
            &a.info_hash,
            &announce,
            now,
            home.is_open,
            rng,
            &mut recipients,
        )
        .await;
    // Only what reaches a peer is spent.
    conn.refund_offers(policy, offers - recipients.len().min(offers));
    let (done, counts) = match announced {
        Ok(Ok(done)) => done,
        Err(e) => return store_failed(out, action, Some(&a.info_hash), e),
        Ok(Err(refusal)) => {
            let mut outcome = failure(out, action, Some(&a.info_hash), refusal.reason());
            outcome.full = refusal != RtcRefusal::PeerIdTaken;
            return outcome;
        }
    };
    // Joined (or taken over, or held already but forgotten by a home that lost track of it):
    // the connection leaves it when it closes.
    if !already && a.event != Event::Stopped {
        conn.joined.push(member);
    }
    if done.left || a.event == Event::Stopped {
        conn.joined.retain(|m| *m != member);
    }
    for (to, offer) in recipients.iter().zip(&a.offers) {
        let tagged = offer_tag(
            &home.offer_key,
            *to,
            &a.peer_id,
            &a.info_hash,
            &offer.offer_id,
        ) + &offer.offer_id;
        out.forwards.push((
            *to,
            ws::write_offer(&a.info_hash, &a.peer_id, &tagged, &offer.offer),
        ));
    }
    out.reply = Some(ws::write_announce_reply(
        &a.info_hash,
        policy.announce_interval,
        counts.complete,
        counts.incomplete,
    ));
    WsOutcome {
        action: Some(action),
        offers_forwarded: recipients.len(),
        offers_over_budget: wanted - offers,
        offers_from: (!recipients.is_empty()).then_some(member),
        ..WsOutcome::default()
    }
}

#[cfg(test)]
mod tests;
