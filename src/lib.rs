//! edgetracker core: everything a BitTorrent tracker decides, with no I/O.
//!
//! Layers, each depending only on the ones above it:
//! - [`protocol`]: bytes in, typed requests out; typed replies in, bytes out (BEP 3, 7, 15, 23,
//!   41, 48). Knows nothing of swarms.
//! - [`swarm`]: tracker policy — who is in a swarm, who gets which peers, when peers expire.
//! - [`store`]: the storage seam every home plugs a backend into, the in-memory store, and the
//!   conformance suite every backend must pass.
//! - [`access`]: who may use the tracker — info-hash allow/deny lists and private-mode passkeys;
//!   [`stats_access`]: who may see its stats.
//! - [`ratelimit`]: per-IP announce token buckets.
//! - [`xbt`]: XBT Tracker's rules for private sites (torrent_passes, refusals, traffic credit),
//!   for a home that serves a site's XBT database.
//! - [`service`]: request bytes in, reply bytes out — the order of the steps above, shared by
//!   every home so they answer alike.
//!
//! Nothing in those layers opens a socket, reads a clock or draws entropy: callers pass `now` (a
//! [`time::UnixTime`], which every layer may use) and an RNG in, so the same code runs natively and as wasm32 inside a Cloudflare
//! Worker. The one exception is `edge`, built only for wasm32: the Worker home itself, which
//! reads the Worker's clock and entropy and talks to KV and Durable Objects, and which the layers
//! above never import.

#![forbid(unsafe_code)]

pub mod access;
pub mod protocol;
pub mod ratelimit;
pub mod service;
pub mod stats_access;
pub mod store;
pub mod swarm;
pub mod time;
pub mod xbt;

#[cfg(target_arch = "wasm32")]
pub mod edge;

pub use protocol::types::{InfoHash, PeerId};
pub use time::UnixTime;
