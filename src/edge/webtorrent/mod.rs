//! WebTorrent at the edge: browsers' WebSocket tracker protocol on the Worker's announce URL
//! (`wss://<worker>/announce`), served by the same core as natively.
//!
//! A WebSocket needs an object to hold it, and one socket carries announces for many torrents,
//! so two kinds of Durable Object share the work, and no one object sees every message:
//!
//! - **One [`socket::SocketObject`] per connection** (named by a random 64-bit id the Worker
//!   draws at the upgrade) holds the socket with the Hibernation API, parses its frames and
//!   applies access rules and rate limits.
//! - **One swarm object per torrent** (the HTTP swarm's [`SwarmObject`], named by the info
//!   hash) holds that torrent's WebTorrent members: peer id → the id of the connection that
//!   carries it. An announce asks it for recipients (connection ids); an answer, for the
//!   offerer's connection.
//! - The socket object then posts each offer or answer to the recipient's socket object, which
//!   sends it down its socket.
//!
//! So an announce with N offers costs one swarm-object request and N deliveries; an answer,
//! one delivery (a delivered offer carries its offerer's connection, so the answer needs no
//! swarm-object request unless the socket object hibernated meanwhile). A socket object only sees its own client's messages and those addressed to it,
//! and a swarm object only its torrent's: the ceiling is one object's throughput per torrent
//! (README: "WebTorrent at the edge"). Owns the upgrade; the objects are [`socket`]'s and
//! [`SwarmObject`]'s.
//!
//! [`SwarmObject`]: crate::edge::durable::object::SwarmObject

mod attachment;
pub mod socket;
mod store;

use std::net::IpAddr;

use worker::{Env, Request, RequestInit, Response};

use super::config::{self, StoreKind};
use super::durable::rtc_wire::RtcKnobs;
use super::limit::CloudflareLimit;
use crate::access::Refusal;
use crate::protocol::bencode::write_failure;
use crate::protocol::types::canonical_ip;
use crate::ratelimit::AnnounceGate;
use crate::service::RATE_LIMITED;
use crate::swarm::Policy;
use crate::swarm::rtc::{ConnId, RtcPolicy};
use attachment::{Attachment, MAX_PASSKEY};

/// The Durable Object namespace binding of the socket objects (wrangler.toml).
pub const SOCKET_BINDING: &str = "SOCKET_OBJECTS";

/// A socket object's name.
fn object_name(conn: ConnId) -> String {
    format!("{conn:016x}")
}

/// The knobs a WebSocket message runs on.
struct Knobs {
    store: StoreKind,
    policy: Policy,
    rtc: RtcPolicy,
}

impl Knobs {
    fn read(env: &Env) -> Result<Knobs, String> {
        let store = config::store_kind(env)?;
        let policy = config::policy(env, store)?;
        let rtc = config::webtorrent(env)?.ok_or("WebTorrent is off on this tracker")?;
        Ok(Knobs { store, policy, rtc })
    }

    /// The knobs a closed socket's leaves run on: the configured ones, or the defaults when the
    /// vars no longer read (WebTorrent turned off, a typo): its peers leave regardless.
    fn for_leaving(env: &Env) -> RtcKnobs {
        Knobs::read(env).map_or_else(
            |_| {
                let rtc = RtcPolicy::default();
                RtcKnobs {
                    announce_interval: rtc.announce_interval,
                    peer_timeout: rtc.peer_timeout,
                    max_peers: Policy::default().max_peers_per_torrent,
                }
            },
            |k| k.rtc_knobs(),
        )
    }

    fn rtc_knobs(&self) -> RtcKnobs {
        RtcKnobs {
            announce_interval: self.rtc.announce_interval,
            peer_timeout: self.rtc.peer_timeout,
            max_peers: self.policy.max_peers_per_torrent,
        }
    }
}

/// Whether `req` asks to become a WebSocket, and WebTorrent is on.
pub fn wants_upgrade(req: &Request, env: &Env) -> bool {
    let upgrade = req.headers().get("Upgrade").ok().flatten();
    upgrade.is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && config::webtorrent(env).is_ok_and(|on| on.is_some())
}

/// Hands an upgrade on an announce path to a new connection's socket object, which accepts it.
pub async fn upgrade(
    req: &Request,
    env: &Env,
    passkey: Option<&[u8]>,
    conn: ConnId,
) -> worker::Result<Response> {
    let refuse = |reason: &str| super::bencoded(400, write_failure(reason));
    let client = match req
        .headers()
        .get("CF-Connecting-IP")?
        .and_then(|v| v.parse::<IpAddr>().ok())
    {
        Some(ip) => canonical_ip(ip),
        None => return refuse("no client address (CF-Connecting-IP)"),
    };
    if passkey.is_some_and(|k| k.len() > MAX_PASSKEY) {
        return refuse(Refusal::UnknownPasskey.reason());
    }
    // Each socket is an object: opening one costs a token of the announce rate limit, so that
    // nobody opens sockets faster than they could announce.
    if !CloudflareLimit::from_env(env)
        .permit(client, super::now())
        .await
    {
        return super::bencoded(429, write_failure(RATE_LIMITED));
    }
    let attachment = Attachment {
        conn,
        client,
        passkey: passkey.map(<[u8]>::to_vec),
        joined: Vec::new(),
        offer_budget: None,
    };
    let stub = env
        .durable_object(SOCKET_BINDING)?
        .id_from_name(&object_name(conn))?
        .get_stub()?;
    let url = format!(
        "https://socket.object/connect/{}",
        super::hex(&attachment.encode())
    );
    // The object answers the upgrade itself, so it needs the client's upgrade headers.
    let mut init = RequestInit::new();
    init.with_headers(req.headers().clone());
    stub.fetch_with_request(Request::new_with_init(&url, &init)?)
        .await
}
