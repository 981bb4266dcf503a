//! The Worker's knobs: `[vars]` of wrangler.toml turned into [`Policy`].

use worker::Env;

use crate::access::{Access, ListMode};
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

fn text_var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

/// The access rules from vars: `ACCESS_LIST_MODE` (off, allow, deny), `ACCESS_LIST` (hex info
/// hashes separated by spaces, commas or newlines) and `PASSKEYS` (likewise; set: private mode).
/// Vars hold up to 5 KB each, about 120 hashes; larger lists belong in KV (not yet supported).
pub fn access(env: &Env) -> Result<Access, String> {
    let one_per_line = |s: String| s.replace([',', ' ', '\t'], "\n");
    let mode: ListMode = text_var(env, "ACCESS_LIST_MODE")
        .unwrap_or_default()
        .parse()?;
    let list = text_var(env, "ACCESS_LIST")
        .map(one_per_line)
        .unwrap_or_default();
    let mut access = Access::open()
        .with_list(mode, &list)
        .map_err(|e| format!("ACCESS_LIST {e}"))?;
    if let Some(keys) = text_var(env, "PASSKEYS").filter(|k| !k.trim().is_empty()) {
        access = access
            .with_passkeys(&one_per_line(keys))
            .map_err(|e| format!("PASSKEYS {e}"))?;
    }
    Ok(access)
}
