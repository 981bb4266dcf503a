//! [`RtcStore`] at the edge: each torrent's WebTorrent members live in that torrent's swarm
//! object (the same object as its HTTP swarm, named by the info hash), reached with one call
//! per announce, scrape hash or leave, and per answer whose route the socket object does not
//! know already (layouts in [`crate::edge::durable::rtc_wire`]). Owns the calls; the members'
//! rules are the object's and the core's.

use std::future::Future;

use rand_core::Rng;
use worker::ObjectNamespace;

use crate::edge::durable::rtc_wire::{RtcCall, RtcKnobs, RtcOp, RtcReply};
use crate::protocol::types::{InfoHash, PeerId};
use crate::store::StoreError;
use crate::store::rtc::{RtcResult, RtcStore};
use crate::swarm::rtc::{ConnId, RtcAnnounce, RtcCounts};
use crate::time::UnixTime;

/// A route for an answer known without asking the swarm object: given the torrent, the
/// answering peer, its connection and the offerer, the offerer's connection.
pub type AnswerShortcut<'a> = &'a dyn Fn(&InfoHash, &PeerId, ConnId, &PeerId) -> Option<ConnId>;

pub struct DurableRtcStore<'a> {
    objects: ObjectNamespace,
    knobs: RtcKnobs,
    now: UnixTime,
    shortcut: Option<AnswerShortcut<'a>>,
}

fn do_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("durable object: {e}"))
}

impl<'a> DurableRtcStore<'a> {
    /// Calls carry `now`, the instant the socket's message arrived.
    pub fn new(objects: ObjectNamespace, knobs: RtcKnobs, now: UnixTime) -> Self {
        DurableRtcStore {
            objects,
            knobs,
            now,
            shortcut: None,
        }
    }

    /// Answers whose route `shortcut` knows skip the swarm object.
    pub fn with_shortcut(mut self, shortcut: AnswerShortcut<'a>) -> Self {
        self.shortcut = Some(shortcut);
        self
    }

    async fn call(
        &self,
        hash: &InfoHash,
        peer_id: PeerId,
        conn: ConnId,
        op: RtcOp,
    ) -> Result<RtcReply, StoreError> {
        let call = RtcCall {
            now: self.now,
            knobs: self.knobs,
            peer_id,
            conn,
            op,
        };
        let stub = self
            .objects
            .id_from_name(&crate::edge::hex(&hash.0))
            .and_then(|id| id.get_stub())
            .map_err(do_error)?;
        let url = format!(
            "https://swarm.object/rtc/{}",
            crate::edge::hex(&call.encode())
        );
        let mut response = stub.fetch_with_str(&url).await.map_err(do_error)?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(do_error)?;
        if status != 200 {
            return Err(do_error(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
        RtcReply::decode(&bytes, &op).ok_or_else(|| do_error("malformed reply"))
    }

    /// `conn` closed: `peer_id` leaves torrent `hash`'s swarm (if `conn` still holds it).
    pub async fn leave(
        &self,
        hash: &InfoHash,
        peer_id: PeerId,
        conn: ConnId,
    ) -> Result<(), StoreError> {
        self.call(hash, peer_id, conn, RtcOp::Leave).await.map(drop)
    }
}

impl RtcStore for DurableRtcStore<'_> {
    /// The object draws recipients with its own RNG, and keeps a member's socket as open until
    /// it leaves or times out: `is_open` and `rng` are not used here.
    fn announce(
        &self,
        hash: &InfoHash,
        a: &RtcAnnounce,
        _now: UnixTime,
        _is_open: &dyn Fn(ConnId) -> bool,
        _rng: &mut impl Rng,
        recipients: &mut Vec<ConnId>,
    ) -> impl Future<Output = Result<RtcResult, StoreError>> {
        let op = RtcOp::Announce {
            event: a.event,
            seeding: a.seeding,
            // At most 100 (RtcPolicy::validate).
            offers: a.offers.min(usize::from(u8::MAX)) as u8,
        };
        async move {
            let reply = self.call(hash, a.peer_id, a.conn, op).await?;
            let announced = reply.announced.ok_or_else(|| do_error("no outcome"))?;
            recipients.extend_from_slice(&reply.recipients);
            Ok(announced.map(|done| (done, reply.counts)))
        }
    }

    fn answer_route(
        &self,
        hash: &InfoHash,
        from: &PeerId,
        conn: ConnId,
        to: &PeerId,
    ) -> impl Future<Output = Result<Option<Option<ConnId>>, StoreError>> {
        let op = RtcOp::Answer { to: *to };
        let known = self.shortcut.and_then(|known| known(hash, from, conn, to));
        async move {
            match known {
                Some(offerer) => Ok(Some(Some(offerer))),
                None => Ok(self.call(hash, *from, conn, op).await?.route),
            }
        }
    }

    async fn counts(
        &self,
        hashes: &[InfoHash],
        out: &mut Vec<RtcCounts>,
    ) -> Result<(), StoreError> {
        // Every hash's object at once.
        let calls = hashes
            .iter()
            .map(|h| self.call(h, PeerId([0; 20]), 0, RtcOp::Counts));
        for reply in futures_util::future::join_all(calls).await {
            out.push(reply?.counts);
        }
        Ok(())
    }

    /// No object knows every torrent: the edge offers no full scrape (its home never asks).
    async fn all_counts(&self, _out: &mut Vec<(InfoHash, RtcCounts)>) -> Result<(), StoreError> {
        Err(StoreError("no full scrape at the edge".into()))
    }
}
