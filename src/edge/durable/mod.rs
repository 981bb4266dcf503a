//! The Durable Object store: one SQLite-backed object per info hash holds that torrent's swarm.
//!
//! The Worker side ([`DurableObjectStore`]) turns each store call into a call to the torrent's
//! object (named by the info hash in hex, so every location reaches the same one) and counts what
//! the calls cost: requests, and the rows the objects read and wrote. A scrape of N hashes asks N
//! objects at once. The object side is [`object::SwarmObject`]; the bytes between them,
//! [`wire`]. Strongly consistent where KV is not: one object answers one call at a time, so a
//! stopped peer leaves at once, completed counts are exact, and the second peer of a new torrent
//! finds the first.

pub mod object;
mod rtc_object;
pub mod rtc_wire;
pub mod wire;

use std::cell::Cell;
use std::future::Future;

use rand_core::Rng;
use worker::ObjectNamespace;

use crate::protocol::types::{InfoHash, SwarmCounts};
use crate::store::mirror::Knobs;
use crate::store::{AnnounceError, PeerAnnounce, PeerStore, StoreError};
use crate::swarm::Policy;
use crate::time::UnixTime;
use wire::{Call, Op, Reply};

/// What this store's calls cost, as Durable Objects are billed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DoOps {
    /// Calls to objects (each a billed Durable Object request).
    pub requests: u32,
    pub rows_read: u32,
    pub rows_written: u32,
}

impl DoOps {
    pub fn add(&mut self, o: DoOps) {
        self.requests += o.requests;
        self.rows_read += o.rows_read;
        self.rows_written += o.rows_written;
    }
}

pub struct DurableObjectStore {
    objects: ObjectNamespace,
    knobs: Knobs,
    /// Prepended to every object name: lets tests give each store its own objects.
    namespace: String,
    ops: Cell<DoOps>,
}

fn do_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("durable object: {e}"))
}

impl DurableObjectStore {
    pub fn new(objects: ObjectNamespace, policy: &Policy, namespace: String) -> Self {
        DurableObjectStore {
            objects,
            knobs: Knobs::of(policy),
            namespace,
            ops: Cell::new(DoOps::default()),
        }
    }

    /// What the calls so far cost.
    pub fn ops(&self) -> DoOps {
        self.ops.get()
    }

    /// One call to the object of `hash`. A thrown or overloaded object, or a reply that is not
    /// one, is a [`StoreError`]: the client still gets a well-formed answer from the service.
    async fn call(
        &self,
        hash: &InfoHash,
        call: Call,
        peer_len: usize,
    ) -> Result<Reply, AnnounceError> {
        let name = format!("{}{}", self.namespace, super::hex(&hash.0));
        let stub = self
            .objects
            .id_from_name(&name)
            .and_then(|id| id.get_stub())
            .map_err(do_error)?;
        // The call rides in the URL's path as hex: a plain GET, which costs the bundle ~18 KB
        // less than building a Request with a body (RequestInit's conversions).
        let url = format!("https://swarm.object/{}", super::hex(&call.encode()));
        let mut ops = self.ops.get();
        ops.requests += 1;
        self.ops.set(ops);
        let mut response = stub.fetch_with_str(&url).await.map_err(do_error)?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(do_error)?;
        if let (409, [code]) = (status, &bytes[..])
            && let Some(full) = wire::full_from_code(*code)
        {
            return Err(AnnounceError::Full(full));
        }
        if status != 200 {
            return Err(do_error(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
            .into());
        }
        let reply = Reply::decode(&bytes, peer_len).ok_or_else(|| do_error("malformed reply"))?;
        let mut ops = self.ops.get();
        ops.rows_read += reply.rows.read;
        ops.rows_written += reply.rows.written;
        self.ops.set(ops);
        Ok(reply)
    }

    async fn announce_inner(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        peers: &mut Vec<u8>,
    ) -> Result<SwarmCounts, AnnounceError> {
        let call = Call {
            now,
            knobs: self.knobs,
            op: Op::Announce(*a),
        };
        let peer_len = a.peer.as_bytes().len();
        let reply = self.call(&a.info_hash, call, peer_len).await?;
        // The object picked at most `want` peers; never trust a count the client would choke on.
        let max = a.want.saturating_mul(peer_len);
        peers.extend_from_slice(&reply.peers[..reply.peers.len().min(max)]);
        Ok(reply.counts)
    }

    async fn scrape_inner(
        &self,
        hashes: &[InfoHash],
        now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> Result<(), StoreError> {
        let calls = hashes.iter().map(|h| {
            let call = Call {
                now,
                knobs: self.knobs,
                op: Op::Scrape(*h),
            };
            self.call(h, call, 6)
        });
        // Every hash's object at once: a scrape waits for the slowest, not for the sum. An
        // object that fails costs its own hash a zero, not the others their counts.
        let mut failed = None;
        for reply in futures_util::future::join_all(calls).await {
            match reply {
                Ok(reply) => out.push(reply.counts),
                Err(e) => {
                    out.push(SwarmCounts::default());
                    failed.get_or_insert(match e {
                        AnnounceError::Store(e) => e,
                        AnnounceError::Full(f) => do_error(format!("a scrape refused: {f:?}")),
                    });
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

impl PeerStore for DurableObjectStore {
    /// The object draws the peers with its own RNG, so `rng` is not used here.
    fn announce(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        _rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> impl Future<Output = Result<SwarmCounts, AnnounceError>> {
        self.announce_inner(a, now, peers)
    }

    fn scrape(
        &self,
        hashes: &[InfoHash],
        now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        self.scrape_inner(hashes, now, out)
    }

    /// Objects expire their peers lazily, when next asked: nothing to do, nothing kept awake.
    fn expire(&self, _now: UnixTime) -> impl Future<Output = Result<(), StoreError>> {
        std::future::ready(Ok(()))
    }
}
