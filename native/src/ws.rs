//! WebTorrent over WebSocket: the upgrade on the announce paths, one task per socket, and the
//! hub that carries forwarded offers and answers from one socket's task to another's.
//!
//! A socket's task reads text frames, hands each to the core ([`Tracker::ws_message`]), sends the
//! reply, and pushes forwarded messages into the receivers' queues (bounded: a peer that does
//! not read loses new messages, counted, rather than growing the tracker's memory). Frames are
//! capped at [`MAX_MESSAGE`]. A socket is closed when it sends no message for `idle_timeout`,
//! nothing at all (not even a pong to the pings sent every 30 s) for 75 s, or when a write to it
//! stalls for 10 s; a closed socket's peers leave every swarm they joined. Owns sockets, queues
//! and counters; what a message means is the core's.
//!
//! [`Tracker::ws_message`]: edgetracker::service::Tracker::ws_message

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use edgetracker::UnixTime;
use edgetracker::protocol::ws::{MAX_MESSAGE, WsAction, write_failure};
use edgetracker::service::Scratch;
use edgetracker::service::ws::{WsConnection, WsHome, WsOut, WsOutcome};
use edgetracker::store::now_or_never;
use edgetracker::store::rtc::RtcSwarms;
use edgetracker::swarm::rtc::{ConnId, RtcPolicy};
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::config::WebtorrentSection;
use crate::connections::Admitted;
use crate::{Shared, thread_rng, unix_now};

const QUEUE_SHARDS: usize = 16;

/// Each open socket's queue of messages from other sockets, by connection.
type Queues = HashMap<ConnId, (mpsc::Sender<String>, Arc<AtomicUsize>)>;

/// The WebTorrent swarms, every open socket's queue, and the counters.
pub struct Hub {
    pub swarms: RtcSwarms,
    pub policy: RtcPolicy,
    /// Keys the tags of forwarded offer ids (see `offer_tag`).
    offer_key: [u8; 16],
    /// Bytes waiting in all sockets' queues, and the most they may hold
    /// (`[webtorrent] max_queued_bytes`): each socket's own bound times the sockets open would
    /// otherwise be the worst case (4 GiB at the defaults).
    queued_total: AtomicUsize,
    max_queued_bytes: usize,
    queues: Box<[Mutex<Queues>]>,
    next_id: AtomicU64,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    open: AtomicU64,
    opened: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
    rate_limited: AtomicU64,
    refused_at_cap: AtomicU64,
    offers_forwarded: AtomicU64,
    offers_over_budget: AtomicU64,
    answers_forwarded: AtomicU64,
    dropped: AtomicU64,
    closed_idle: AtomicU64,
}

impl Hub {
    pub fn new(
        config: &WebtorrentSection,
        hash_key: [u8; 16],
        max_torrents: usize,
        max_peers_per_torrent: usize,
        max_peers_per_address: usize,
    ) -> Hub {
        let mut offer_key = hash_key;
        offer_key.iter_mut().for_each(|b| *b ^= 0xa5);
        Hub {
            swarms: RtcSwarms::new(
                hash_key,
                max_torrents,
                max_peers_per_torrent,
                max_peers_per_address,
            ),
            offer_key,
            queued_total: AtomicUsize::new(0),
            max_queued_bytes: config.max_queued_bytes,
            policy: config.policy(),
            queues: (0..QUEUE_SHARDS).map(|_| Mutex::default()).collect(),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
        }
    }

    fn queues(&self, id: ConnId) -> std::sync::MutexGuard<'_, Queues> {
        self.queues[id as usize % QUEUE_SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `text` for connection `to`; dropped (and counted) if its queue is full (in
    /// messages or in bytes), all queues together hold `max_queued_bytes`, or it has closed.
    fn deliver(&self, to: ConnId, text: String) {
        let len = text.len();
        let queued = match self.queues(to).get(&to) {
            Some((queue, bytes))
                if bytes.load(Ordering::Relaxed) + len <= QUEUE_BYTES
                    && self.queued_total.load(Ordering::Relaxed) + len <= self.max_queued_bytes =>
            {
                // Counted before it is queued, so the reader's subtraction never comes first.
                bytes.fetch_add(len, Ordering::Relaxed);
                self.queued_total.fetch_add(len, Ordering::Relaxed);
                let sent = queue.try_send(text).is_ok();
                if !sent {
                    bytes.fetch_sub(len, Ordering::Relaxed);
                    self.queued_total.fetch_sub(len, Ordering::Relaxed);
                }
                sent
            }
            _ => false,
        };
        if !queued {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count(&self, outcome: &WsOutcome) {
        let c = &self.counters;
        c.messages.fetch_add(1, Ordering::Relaxed);
        if outcome.error.is_some() {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.rate_limited {
            c.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.full {
            c.refused_at_cap.fetch_add(1, Ordering::Relaxed);
        }
        c.offers_forwarded
            .fetch_add(outcome.offers_forwarded as u64, Ordering::Relaxed);
        c.offers_over_budget
            .fetch_add(outcome.offers_over_budget as u64, Ordering::Relaxed);
        c.answers_forwarded
            .fetch_add(outcome.answers_forwarded as u64, Ordering::Relaxed);
    }

    /// Counters and swarm totals for `/stats`.
    pub fn json(&self) -> serde_json::Value {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (torrents, peers) = self.swarms.totals();
        serde_json::json!({
            "connections": load(&c.open),
            "connections_opened": load(&c.opened),
            "connections_closed_idle": load(&c.closed_idle),
            "messages": load(&c.messages),
            "errors": load(&c.errors),
            "rate_limited": load(&c.rate_limited),
            "refused_at_cap": load(&c.refused_at_cap),
            "offers_forwarded": load(&c.offers_forwarded),
            "offers_over_budget": load(&c.offers_over_budget),
            "answers_forwarded": load(&c.answers_forwarded),
            "messages_dropped": load(&c.dropped),
            "queued_bytes": self.queued_total.load(Ordering::Relaxed),
            "torrents": torrents,
            "peers": peers,
        })
    }

    /// The same in Prometheus text form.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let json = self.json();
        for (key, kind, help) in [
            ("connections", "gauge", "Open WebSocket connections."),
            (
                "connections_opened",
                "counter",
                "WebSocket connections opened.",
            ),
            (
                "connections_closed_idle",
                "counter",
                "WebSocket connections closed for silence.",
            ),
            ("messages", "counter", "WebTorrent messages received."),
            (
                "errors",
                "counter",
                "WebTorrent messages refused with an error.",
            ),
            (
                "rate_limited",
                "counter",
                "WebTorrent messages refused by the rate limit.",
            ),
            (
                "refused_at_cap",
                "counter",
                "WebTorrent announces refused at a cap.",
            ),
            (
                "offers_forwarded",
                "counter",
                "WebRTC offers forwarded to peers.",
            ),
            (
                "offers_over_budget",
                "counter",
                "WebRTC offers not forwarded: past their connection's budget.",
            ),
            (
                "answers_forwarded",
                "counter",
                "WebRTC answers forwarded to peers.",
            ),
            (
                "messages_dropped",
                "counter",
                "Messages for a peer dropped: its queue (or all queues together) was full, or it had gone.",
            ),
            (
                "queued_bytes",
                "gauge",
                "Bytes waiting in all WebSockets' queues for slow readers.",
            ),
            ("torrents", "gauge", "Torrents with WebTorrent peers."),
            ("peers", "gauge", "WebTorrent peers in swarms."),
        ] {
            let name = format!("edgetracker_webtorrent_{key}");
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name
            };
            out += &format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                json[key]
            );
        }
        out
    }
}

/// Whether `req` asks to become a WebSocket.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    let has = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

/// Answers an upgrade request with 101 and serves the socket in a task of its own, whose handle
/// goes to `task` (the connection's). The socket is admitted among the WebSockets (see
/// [`crate::connections`]) before the 101: an upgrade request it cannot take is an error with
/// its status, naming what is missing or which cap is full.
pub fn upgrade(
    req: &mut Request<Incoming>,
    client: IpAddr,
    passkey: Option<Vec<u8>>,
    shared: &Arc<Shared>,
    task: &Mutex<Option<tokio::task::JoinHandle<()>>>,
) -> Result<Response<http_body_util::Full<hyper::body::Bytes>>, (StatusCode, &'static str)> {
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13");
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).filter(|_| version_ok) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
        ));
    };
    let admitted = shared
        .ws_connections
        .admit(client, true)
        .map_err(|refused| (StatusCode::SERVICE_UNAVAILABLE, refused.reason()))?;
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    let shared = shared.clone();
    let handle = tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded), client, passkey, admitted, shared).await,
            Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
        }
    });
    *task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    let mut r = Response::new(http_body_util::Full::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = r.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a header value"),
    );
    Ok(r)
}

thread_local! {
    static LOCAL: RefCell<(SmallRng, Scratch)> = RefCell::new((thread_rng(), Scratch::default()));
}

/// How often a socket is pinged: often enough that proxies in front (nginx closes idle
/// connections after 60 s, Cloudflare after about 100) keep it open between announces.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A socket that sends nothing at all, not even a pong, for this long is dead (half-open).
const DEAD_AFTER: Duration = Duration::from_secs(75);
/// A write that takes longer (a client that stopped reading) closes the socket.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Queued messages written (and flushed) together at most.
const BATCH: usize = 32;
/// tungstenite's read and write buffer sizes per socket.
const SOCKET_BUFFER: usize = 4096;
/// Bytes waiting in one socket's queue at most, whatever the message count.
const QUEUE_BYTES: usize = 256 * 1024;

/// A socket's place in the hub; dropping it (however the task ends) takes the socket's peers out
/// of their swarms and its queue out of the hub.
struct Registered<'a> {
    hub: &'a Hub,
    conn: WsConnection,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // Out of the hub under its queues' lock, so nothing is queued for it after this: what is
        // still waiting is dropped with the channel, and leaves the total (on every way out of
        // the task, an unwinding one included).
        if let Some((_, bytes)) = self.hub.queues(self.conn.id).remove(&self.conn.id) {
            self.hub
                .queued_total
                .fetch_sub(bytes.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
        self.hub.counters.open.fetch_sub(1, Ordering::Relaxed);
        self.conn.close(&self.hub.swarms);
    }
}

async fn serve<S>(
    io: S,
    client: IpAddr,
    passkey: Option<Vec<u8>>,
    admitted: Admitted,
    shared: Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let hub = &shared.ws;
    let settings = &shared.config.webtorrent;
    // tungstenite's default buffers are 128 KiB each way per socket; a browser's messages are a
    // few KiB (an offer's SDP), so small buffers keep an idle socket cheap. Longer messages
    // still arrive whole: the read buffer grows to the frame cap when one does.
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER);
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (mut sink, mut stream) = socket.split();
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (queue, mut queued) = mpsc::channel::<String>(settings.send_queue);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    hub.queues(id).insert(id, (queue, queued_bytes.clone()));
    hub.counters.open.fetch_add(1, Ordering::Relaxed);
    hub.counters.opened.fetch_add(1, Ordering::Relaxed);
    let mut socket = Registered {
        hub,
        conn: WsConnection::new(id, passkey, client),
    };
    let idle = Duration::from_secs(settings.idle_timeout);
    // Only messages move the idle deadline: pings and pongs keep a socket alive, not a peer.
    let mut idle_deadline = Instant::now() + idle;
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut out = WsOut::default();
    let is_open = |c: ConnId| hub.queues(c).contains_key(&c);
    let mut batch = Vec::new();
    loop {
        let send = tokio::select! {
            incoming = stream.next() => {
                heard = Instant::now();
                let message = match incoming {
                    None => break,
                    Some(Err(e)) => {
                        // Oversized frames, protocol violations, resets: the socket is done.
                        tracing::debug!(%client, "websocket: {e}");
                        break;
                    }
                    Some(Ok(message)) => message,
                };
                match message {
                    Message::Text(text) => {
                        idle_deadline = Instant::now() + idle;
                        admitted.progressed();
                        let full_scrape = shared
                            .full_scrape
                            .as_ref()
                            .map(|full| move |ip, now| full.permit(ip, now));
                        let home = WsHome {
                            offer_key: hub.offer_key,
                            swarms: &hub.swarms,
                            policy: &hub.policy,
                            is_open: &is_open,
                            full_scrape: full_scrape.as_ref().map(|permit| {
                                permit as &dyn Fn(IpAddr, UnixTime) -> Result<(), String>
                            }),
                        };
                        let outcome = LOCAL.with_borrow_mut(|(rng, scratch)| {
                            now_or_never(shared.tracker.ws_message(
                                &home,
                                &mut socket.conn,
                                text.as_str(),
                                unix_now(),
                                rng,
                                scratch,
                                &mut out,
                            ))
                        });
                        hub.count(&outcome);
                        for (to, text) in out.forwards.drain(..) {
                            hub.deliver(to, text);
                        }
                        out.reply.take().map(Message::text)
                    }
                    Message::Binary(_) => Some(Message::text(write_failure(
                        Some(WsAction::Announce),
                        None,
                        edgetracker::protocol::ws::BINARY_REFUSED,
                    ))),
                    Message::Close(_) => break,
                    // Pings are answered by the socket itself at the next flush.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
                }
            }
            () = tokio::time::sleep_until(idle_deadline) => {
                hub.counters.closed_idle.fetch_add(1, Ordering::Relaxed);
                break;
            }
            // Shed at the WebSockets' cap to admit another: silent longest of those looked at.
            () = admitted.shed() => break,
            _ = ping.tick() => {
                if heard.elapsed() > DEAD_AFTER {
                    hub.counters.closed_idle.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Message::Ping(Default::default()))
            }
            Some(text) = queued.recv() => {
                queued_bytes.fetch_sub(text.len(), Ordering::Relaxed);
                hub.queued_total.fetch_sub(text.len(), Ordering::Relaxed);
                // Whatever else is already waiting goes out in the same write.
                for _ in 1..BATCH {
                    let Ok(more) = queued.try_recv() else { break };
                    queued_bytes.fetch_sub(more.len(), Ordering::Relaxed);
                    hub.queued_total.fetch_sub(more.len(), Ordering::Relaxed);
                    batch.push(Message::text(more));
                }
                Some(Message::text(text))
            }
        };
        let write = async {
            if let Some(message) = send {
                sink.feed(message).await?;
            }
            for message in batch.drain(..) {
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        if !matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(()))) {
            break;
        }
    }
    drop(socket);
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}
