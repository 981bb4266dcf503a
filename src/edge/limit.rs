//! The edge's announce rate limit: Cloudflare's Rate Limiting API behind the core's
//! [`AnnounceGate`].
//!
//! An in-process token bucket would limit nothing here (requests are spread over many isolates),
//! so the Worker asks the `ANNOUNCE_LIMITER` binding of wrangler.toml (`[[ratelimits]]`), keyed
//! like the native limiter by [`client_key`] (IPv4 address, IPv6 /64). Without the binding
//! announces are not limited. Owns the binding call only; when to ask is the service's.

use std::net::IpAddr;

use worker::{Env, RateLimiter};

use crate::ratelimit::{AnnounceGate, client_key};
use crate::time::UnixTime;

/// The binding name in wrangler.toml's `[[ratelimits]]`.
pub const BINDING: &str = "ANNOUNCE_LIMITER";

/// The binding, if the Worker has one.
pub struct CloudflareLimit(Option<RateLimiter>);

impl CloudflareLimit {
    pub fn from_env(env: &Env) -> Self {
        CloudflareLimit(env.rate_limiter(BINDING).ok())
    }
}

impl AnnounceGate for CloudflareLimit {
    async fn permit(&self, ip: IpAddr, _now: UnixTime) -> bool {
        let Some(limiter) = &self.0 else {
            return true;
        };
        match limiter.limit(client_key(ip).to_string()).await {
            Ok(outcome) => outcome.success,
            Err(e) => {
                // Fail open: the limit protects the tracker, and its outage must not stop it.
                worker::console_error!("rate limiter {BINDING}: {e}; announce let through");
                true
            }
        }
    }
}
