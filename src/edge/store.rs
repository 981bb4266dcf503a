//! The swarm store a Worker runs on, as `SWARM_STORE` chooses: Workers KV or Durable Objects,
//! behind the one [`PeerStore`] seam, and what each request cost in the store's own units.
//! Owns the choice and the delegation only.

use rand_core::Rng;
use worker::Env;

use super::config::StoreKind;
use super::durable::{DoOps, DurableObjectStore};
use super::kv::{self, KvPeerStore, OpCounts};
use crate::protocol::types::{InfoHash, SwarmCounts};
use crate::store::{AnnounceError, PeerAnnounce, PeerStore, StoreError};
use crate::swarm::Policy;
use crate::time::UnixTime;

/// The Durable Object namespace binding of wrangler.toml.
pub const DO_BINDING: &str = "SWARM_OBJECTS";

pub enum EdgeStore {
    Kv(KvPeerStore),
    DurableObject(DurableObjectStore),
}

impl EdgeStore {
    /// The store of `kind` over its binding; `namespace` prefixes its keys or object names.
    /// `Err` says which binding is missing.
    pub fn open(
        env: &Env,
        kind: StoreKind,
        policy: &Policy,
        namespace: String,
    ) -> Result<EdgeStore, String> {
        match kind {
            StoreKind::Kv => {
                let kv = env
                    .kv(kv::BINDING)
                    .map_err(|e| format!("KV binding {}: {e}", kv::BINDING))?;
                let order_key = super::derived_key(env, "kv swarm order")
                    .map_err(|e| format!("Durable Object binding {DO_BINDING}: {e}"))?;
                Ok(EdgeStore::Kv(KvPeerStore::new(
                    kv,
                    policy.clone(),
                    namespace,
                    order_key,
                )))
            }
            StoreKind::DurableObject => {
                let objects = env
                    .durable_object(DO_BINDING)
                    .map_err(|e| format!("Durable Object binding {DO_BINDING}: {e}"))?;
                Ok(EdgeStore::DurableObject(DurableObjectStore::new(
                    objects, policy, namespace,
                )))
            }
        }
    }

    /// KV operations so far (none for the Durable Object store).
    pub fn kv_ops(&self) -> OpCounts {
        match self {
            EdgeStore::Kv(s) => s.ops(),
            EdgeStore::DurableObject(_) => OpCounts::default(),
        }
    }

    /// Durable Object requests and rows so far (`None` for the KV store).
    pub fn do_ops(&self) -> Option<DoOps> {
        match self {
            EdgeStore::Kv(_) => None,
            EdgeStore::DurableObject(s) => Some(s.ops()),
        }
    }
}

impl PeerStore for EdgeStore {
    async fn announce(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> Result<SwarmCounts, AnnounceError> {
        match self {
            EdgeStore::Kv(s) => s.announce(a, now, rng, peers).await,
            EdgeStore::DurableObject(s) => s.announce(a, now, rng, peers).await,
        }
    }

    async fn scrape(
        &self,
        hashes: &[InfoHash],
        now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> Result<(), StoreError> {
        match self {
            EdgeStore::Kv(s) => s.scrape(hashes, now, out).await,
            EdgeStore::DurableObject(s) => s.scrape(hashes, now, out).await,
        }
    }

    async fn expire(&self, now: UnixTime) -> Result<(), StoreError> {
        match self {
            EdgeStore::Kv(s) => s.expire(now).await,
            EdgeStore::DurableObject(s) => s.expire(now).await,
        }
    }
}
