//! `SocketObject`: the Durable Object class holding one browser's WebSocket (one object per
//! connection, named by its id), with the WebSocket Hibernation API, so a socket that is quiet
//! between announces costs no duration.
//!
//! The object hands each text frame to the core ([`Tracker::ws_message`]) with the torrent's
//! swarm objects as the [`RtcStore`](crate::store::rtc::RtcStore), sends the reply down its
//! socket, and hands each forwarded offer or answer to the recipient's socket object
//! (`POST /deliver`), which sends it down its own. When the socket closes, the peers it announced
//! leave their swarms. What it must remember across hibernation rides in the socket's attachment
//! (`attachment.rs`). Owns this object's I/O; the rules are the core's.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use worker::{
    DurableObject, Env, Method, Request, RequestInit, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::attachment::Attachment;
use super::store::DurableRtcStore;
use super::{Knobs, SOCKET_BINDING};
use crate::edge::limit::CloudflareLimit;
use crate::edge::store::{DO_BINDING, EdgeStore};
use crate::edge::{kv, now, rules};
use crate::protocol::types::{InfoHash, PeerId};
use crate::protocol::ws::{self as wsp, WsAction};
use crate::service::ws::{WsConnection, WsHome, WsOut};
use crate::service::{Scratch, Tracker};
use crate::swarm::rtc::ConnId;

#[worker::durable_object]
pub struct SocketObject {
    state: State,
    env: Env,
    rng: RefCell<SmallRng>,
    offerers: RefCell<Offerers>,
    /// The socket's events not yet handled, and whether one is being handled. The runtime
    /// starts a handler per event, and they interleave at every await; the connection's state
    /// (its attachment) is read and written around awaits, so they take turns instead.
    queue: RefCell<VecDeque<Event>>,
    busy: Cell<bool>,
}

/// The header a delivered offer carries: the torrent, the offering peer and its connection, in
/// hex, so that the answer can go straight back.
const OFFER_FROM: &str = "x-offer-from";

/// Where the offers this socket was handed came from, by torrent and offering peer: an answer
/// to one goes straight to the offerer's socket object, without asking the swarm object (which
/// would otherwise see one request per answer as well as one per announce). Memory only and
/// bounded: after hibernation, or for an offer long past, the swarm object is asked.
#[derive(Default)]
struct Offerers {
    conns: HashMap<(InfoHash, PeerId), ConnId>,
    order: VecDeque<(InfoHash, PeerId)>,
}

impl Offerers {
    /// Offers remembered; browsers' offers expire within a minute, and a socket is handed at
    /// most a few per announce of each of its swarms' peers.
    const MAX: usize = 256;

    fn remember(&mut self, key: (InfoHash, PeerId), conn: ConnId) {
        if self.conns.insert(key, conn).is_none() {
            self.order.push_back(key);
            if self.order.len() > Self::MAX
                && let Some(old) = self.order.pop_front()
            {
                self.conns.remove(&old);
            }
        }
    }
}

/// `x-offer-from`'s value: info hash, peer id, connection.
fn offer_from(hash: &InfoHash, peer: &PeerId, conn: ConnId) -> String {
    let mut v = crate::edge::hex(&hash.0);
    v.push_str(&crate::edge::hex(&peer.0));
    v.push_str(&format!("{conn:016x}"));
    v
}

fn parse_offer_from(v: &str) -> Option<((InfoHash, PeerId), ConnId)> {
    let bytes = crate::edge::unhex(v)?;
    let (hash, rest) = bytes.split_first_chunk::<20>()?;
    let (peer, conn) = rest.split_first_chunk::<20>()?;
    let conn = u64::from_be_bytes(conn.try_into().ok()?);
    Some(((InfoHash(*hash), PeerId(*peer)), conn))
}

impl DurableObject for SocketObject {
    fn new(state: State, env: Env) -> Self {
        SocketObject {
            state,
            env,
            rng: RefCell::new(crate::edge::seeded_rng()),
            offerers: RefCell::default(),
            queue: RefCell::default(),
            busy: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        if path == "/deliver" {
            if let Some((key, conn)) = req
                .headers()
                .get(OFFER_FROM)?
                .and_then(|v| parse_offer_from(&v))
            {
                self.offerers.borrow_mut().remember(key, conn);
            }
            let text = req.text().await?;
            for ws in self.state.get_websockets() {
                // A socket closing meanwhile is no error: the message had nowhere to go.
                let _ = ws.send_with_str(&text);
            }
            return Response::empty();
        }
        let Some(attachment) = path
            .strip_prefix("/connect/")
            .and_then(crate::edge::unhex)
            .and_then(|b| Attachment::decode(&b))
        else {
            return Response::error("not a socket call", 400);
        };
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        keep(&pair.server, &attachment)?;
        Response::from_websocket(pair.client)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        match message {
            WebSocketIncomingMessage::String(text) => self.handle(&ws, Event::Text(text)).await,
            WebSocketIncomingMessage::Binary(_) => ws.send_with_str(wsp::write_failure(
                Some(WsAction::Announce),
                None,
                wsp::BINARY_REFUSED,
            )),
        }
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        self.handle(&ws, Event::Closed).await
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.handle(&ws, Event::Closed).await
    }
}

/// What happened on the socket, in the order it happened.
enum Event {
    Text(String),
    Closed,
}

/// Events waiting while one is handled; a client sending faster is told to wait for replies.
const MAX_QUEUED: usize = 32;
const TOO_FAST: &str = "too many messages at once: wait for the replies";

/// Keeps `attachment` with the socket, across hibernation.
fn keep(ws: &WebSocket, attachment: &Attachment) -> worker::Result<()> {
    use worker::worker_sys::ext::WebSocketExt;
    let bytes = worker::js_sys::Uint8Array::from(&attachment.encode()[..]);
    ws.as_ref()
        .serialize_attachment(bytes.into())
        .map_err(worker::Error::from)
}

fn load(ws: &WebSocket) -> Option<Attachment> {
    use worker::wasm_bindgen::JsCast;
    use worker::worker_sys::ext::WebSocketExt;
    let value = ws.as_ref().deserialize_attachment().ok()?;
    let bytes = value.dyn_into::<worker::js_sys::Uint8Array>().ok()?;
    Attachment::decode(&bytes.to_vec())
}

impl SocketObject {
    /// Handles `event` after those before it: queued if another is being handled (whose
    /// handler then takes it), else handled here with any that arrive meanwhile.
    async fn handle(&self, ws: &WebSocket, event: Event) -> worker::Result<()> {
        {
            let mut queue = self.queue.borrow_mut();
            if matches!(event, Event::Text(_)) && queue.len() >= MAX_QUEUED {
                return ws.send_with_str(wsp::write_failure(None, None, TOO_FAST));
            }
            queue.push_back(event);
        }
        if self.busy.replace(true) {
            return Ok(());
        }
        loop {
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some(Event::Text(text)) => {
                    if let Err(e) = self.message(ws, &text).await {
                        worker::console_error!("webtorrent: {e}");
                    }
                }
                Some(Event::Closed) => {
                    self.leave_all(ws).await;
                    // Completes the closing handshake (an error means it is complete already).
                    let _ = ws.close(Some(1000), Some("closed"));
                }
                None => break,
            }
        }
        self.busy.set(false);
        Ok(())
    }

    async fn message(&self, ws: &WebSocket, text: &str) -> worker::Result<()> {
        let Some(attachment) = load(ws) else {
            // Nothing to serve it with: let the client reconnect.
            let _ = ws.close(Some(1011), Some("connection state lost"));
            return Ok(());
        };
        let now = now();
        let knobs = match Knobs::read(&self.env) {
            Ok(knobs) => knobs,
            Err(reason) => {
                let reason = format!("tracker misconfigured: {reason}");
                return ws.send_with_str(wsp::write_failure(None, None, &reason));
            }
        };
        let kv = self.env.kv(kv::BINDING).ok();
        let rules = match rules::current(&self.env, kv.as_ref(), now).await {
            Ok(rules) => rules,
            Err(reason) => return ws.send_with_str(wsp::write_failure(None, None, &reason)),
        };
        // The tracker's HTTP store is never called for WebSocket messages; the tracker needs
        // one to hold its policy, limiter and access rules.
        let http_store = EdgeStore::open(&self.env, knobs.store, &knobs.policy, String::new())
            .map_err(worker::Error::RustError)?;
        let tracker = Tracker::new(http_store, knobs.policy.clone())
            .with_gate(CloudflareLimit::from_env(&self.env));
        tracker.set_access(rules.access);
        let joined = attachment.joined.clone();
        // Only a member, on this socket, answers; to an offer this socket was handed.
        let shortcut = |hash: &InfoHash, from: &PeerId, _conn: ConnId, to: &PeerId| {
            if !joined.contains(&(*hash, *from)) {
                return None;
            }
            self.offerers.borrow().conns.get(&(*hash, *to)).copied()
        };
        let swarms =
            DurableRtcStore::new(self.env.durable_object(DO_BINDING)?, knobs.rtc_knobs(), now)
                .with_shortcut(&shortcut);
        let mut conn = WsConnection::restore(
            attachment.conn,
            attachment.passkey.clone(),
            attachment.client,
            attachment.joined.clone(),
        )
        .with_offer_budget(attachment.offer_budget);
        let home = WsHome {
            offer_key: crate::edge::derived_key(&self.env, "webtorrent offer tags")?,
            swarms: &swarms,
            policy: &knobs.rtc,
            is_open: &|_| true,
            // No object knows every torrent.
            full_scrape: None,
        };
        let mut out = WsOut::default();
        let mut rng = SmallRng::from_rng(&mut *self.rng.borrow_mut());
        let outcome = tracker
            .ws_message(
                &home,
                &mut conn,
                text,
                now,
                &mut rng,
                &mut Scratch::default(),
                &mut out,
            )
            .await;
        if let Some(e) = &outcome.store_error {
            worker::console_error!("webtorrent: {e}");
        }
        if conn.members() != joined || conn.offer_budget() != attachment.offer_budget {
            let updated = Attachment {
                joined: conn.members().to_vec(),
                offer_budget: conn.offer_budget(),
                ..attachment
            };
            keep(ws, &updated)?;
        }
        if let Some(reply) = out.reply.take() {
            ws.send_with_str(reply)?;
        }
        let from = outcome
            .offers_from
            .map(|(h, p)| offer_from(&h, &p, conn.id));
        self.deliver(ws, conn.id, std::mem::take(&mut out.forwards), from)
            .await;
        Ok(())
    }

    /// Hands each message to its socket's object, all at once (offers marked with `offer_from`);
    /// a message for this very connection (another peer id on the same socket) goes straight
    /// down the socket.
    async fn deliver(
        &self,
        ws: &WebSocket,
        own: ConnId,
        forwards: Vec<(ConnId, String)>,
        offer_from: Option<String>,
    ) {
        let Ok(objects) = self.env.durable_object(SOCKET_BINDING) else {
            return;
        };
        let sends = forwards.into_iter().filter_map(|(to, text)| {
            if to == own {
                let _ = ws.send_with_str(&text);
                return None;
            }
            let stub = objects
                .id_from_name(&super::object_name(to))
                .and_then(|id| id.get_stub())
                .ok()?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_body(Some(worker::wasm_bindgen::JsValue::from_str(&text)));
            if let Some(from) = &offer_from {
                let headers = worker::Headers::new();
                headers.set(OFFER_FROM, from).ok()?;
                init.with_headers(headers);
            }
            let req = Request::new_with_init("https://socket.object/deliver", &init).ok()?;
            Some(async move { stub.fetch_with_request(req).await })
        });
        for sent in futures_util::future::join_all(sends).await {
            if let Err(e) = sent {
                worker::console_error!("webtorrent: a delivery failed: {e}");
            }
        }
    }

    /// The socket closed: its peers leave every swarm they joined through it.
    async fn leave_all(&self, ws: &WebSocket) {
        let (Some(attachment), Ok(objects)) = (load(ws), self.env.durable_object(DO_BINDING))
        else {
            return;
        };
        let swarms = DurableRtcStore::new(objects, Knobs::for_leaving(&self.env), now());
        let leaves = attachment
            .joined
            .iter()
            .map(|(hash, peer)| swarms.leave(hash, *peer, attachment.conn));
        for left in futures_util::future::join_all(leaves).await {
            if let Err(e) = left {
                // The member times out instead.
                worker::console_error!("webtorrent: a leave failed: {e}");
            }
        }
        // Not again, should the error handler follow the close handler.
        let emptied = Attachment {
            joined: Vec::new(),
            ..attachment
        };
        let _ = keep(ws, &emptied);
    }
}
