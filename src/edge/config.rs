//! The Worker's knobs: `[vars]` of wrangler.toml turned into [`Policy`]. (The access vars are
//! [`super::rules`]'s.)

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

/// The edge's policy. Defaults differ from the native ones where KV's cost model asks for it:
/// a longer peer timeout (fewer refresh writes) and a smaller scrape cap (each hash costs lists).
pub fn policy(env: &Env) -> Result<Policy, String> {
    let d = Policy::default();
    let p = Policy {
        announce_interval: var(env, "ANNOUNCE_INTERVAL", d.announce_interval)?,
        min_interval: var(env, "MIN_INTERVAL", d.min_interval)?,
        peer_timeout: var(env, "PEER_TIMEOUT", 3 * d.announce_interval)?.max(super::kv::MIN_TTL),
        numwant_default: var(env, "NUMWANT_DEFAULT", d.numwant_default)?,
        numwant_max: var(env, "NUMWANT_MAX", 100)?,
        scrape_max_hashes: var(env, "SCRAPE_MAX_HASHES", 16)?,
        // Behind Cloudflare the client address is CF-Connecting-IP; nothing else is trusted.
        accept_claimed_ip: false,
    };
    p.validate()?;
    Ok(p)
}
