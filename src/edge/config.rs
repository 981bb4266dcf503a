//! The Worker's knobs: `[vars]` of wrangler.toml turned into [`Policy`] and the choice of swarm
//! store. (The access vars are [`super::rules`]'s.)

use worker::Env;

use crate::swarm::Policy;

/// Reads a numeric var, falling back to `default` when unset; a malformed value is an error
/// naming the var, so a typo in wrangler.toml is seen at the first request, not guessed around.
fn var(env: &Env, name: &str, default: u32) -> Result<u32, String> {
    match env.var(name) {
        Ok(v) => v
            .to_string()
            .trim()
            .parse()
            .map_err(|_| format!("var {name} must be a whole number")),
        Err(_) => Ok(default),
    }
}

/// Where swarms live: `SWARM_STORE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Workers KV, one key per peer (`kv`, and the default when the var is unset, which is what
    /// a wrangler.toml from before the var existed means).
    Kv,
    /// One SQLite-backed Durable Object per info hash (`durable-object`).
    DurableObject,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Kv => "kv",
            StoreKind::DurableObject => "durable-object",
        }
    }
}

pub fn store_kind(env: &Env) -> Result<StoreKind, String> {
    match env.var("SWARM_STORE").map(|v| v.to_string()) {
        Err(_) => Ok(StoreKind::Kv),
        Ok(v) => match v.trim() {
            "" | "kv" => Ok(StoreKind::Kv),
            "durable-object" => Ok(StoreKind::DurableObject),
            other => Err(format!(
                "var SWARM_STORE must be \"kv\" or \"durable-object\", not {other:?}"
            )),
        },
    }
}

/// The most hashes one scrape may ask for, so that the largest scrape stays within what one
/// Worker invocation may do: on KV a hash costs up to 9 operations (two families of up to 4 list
/// pages, and the completed count), and an invocation may do 1,000 (a few go to access lists); on
/// Durable Objects a hash is one subrequest, and the free plan allows 50 an invocation.
pub fn max_scrape_hashes(store: StoreKind) -> u32 {
    match store {
        StoreKind::Kv => 100,
        StoreKind::DurableObject => 50,
    }
}

/// The most peers of a swarm the store sees: on KV, the pages one announce lists; a Durable
/// Object holds its whole swarm.
fn max_view(store: StoreKind) -> u32 {
    match store {
        StoreKind::Kv => super::kv::MAX_VIEW,
        StoreKind::DurableObject => Policy::default().max_peers_per_torrent,
    }
}

/// The edge's policy. Defaults differ from the native ones where the stores' cost models ask for
/// it: a longer peer timeout (fewer refresh writes) and a smaller scrape cap (each hash costs KV
/// lists, or a Durable Object request). On KV, whose lists show new peers up to a minute late, a
/// client starting alone in its swarm is asked back after `SPARSE_SWARM_INTERVAL` (120) seconds.
pub fn policy(env: &Env, store: StoreKind) -> Result<Policy, String> {
    let d = Policy::default();
    let announce_interval = var(env, "ANNOUNCE_INTERVAL", d.announce_interval)?;
    let sparse_default = match store {
        StoreKind::Kv => announce_interval.min(120),
        StoreKind::DurableObject => 0,
    };
    let p = Policy {
        announce_interval,
        min_interval: var(env, "MIN_INTERVAL", d.min_interval)?,
        peer_timeout: var(env, "PEER_TIMEOUT", 3 * d.announce_interval)?.max(super::kv::MIN_TTL),
        numwant_default: var(env, "NUMWANT_DEFAULT", d.numwant_default)?,
        numwant_max: var(env, "NUMWANT_MAX", 100)?,
        scrape_max_hashes: var(env, "SCRAPE_MAX_HASHES", 16)?,
        // Behind Cloudflare the client address is CF-Connecting-IP; nothing else is trusted.
        accept_claimed_ip: false,
        sparse_swarm_interval: var(env, "SPARSE_SWARM_INTERVAL", sparse_default)?,
        completed_retention: var(env, "COMPLETED_RETENTION", d.completed_retention)?,
        max_peers_per_torrent: var(env, "MAX_PEERS_PER_TORRENT", max_view(store))?,
        max_peers_per_address: var(env, "MAX_PEERS_PER_ADDRESS", d.max_peers_per_address)?,
        // Store-wide caps are the native memory's: the edge's stores bill, not fill, by size.
        max_torrents: d.max_torrents,
        max_peers: d.max_peers,
    };
    p.validate()?;
    if p.max_peers_per_torrent > max_view(store) {
        return Err(format!(
            "var MAX_PEERS_PER_TORRENT must be at most {} with SWARM_STORE = {:?} (the peers one announce reads)",
            max_view(store),
            store.name()
        ));
    }
    let most = max_scrape_hashes(store);
    if p.scrape_max_hashes > most {
        return Err(format!(
            "var SCRAPE_MAX_HASHES must be at most {most} with SWARM_STORE = {:?}",
            store.name()
        ));
    }
    Ok(p)
}
