//! HTTP: `/announce`, `/scrape`, `/stats` and `/metrics` on hyper, on a small tokio runtime; a
//! whole request on a connection that closes after it is answered at accept ([`at_accept`]).
//!
//! Tracker requests are answered synchronously inside the service function (the memory store
//! never waits), with a per-thread RNG and scratch space. Owns HTTP framing, routing, the client
//! address (socket or trusted proxy header) and status codes; tracker semantics are the core's.

use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use edgetracker::UnixTime;
use edgetracker::protocol::bencode::write_failure;
use edgetracker::protocol::http::query_pairs;
use edgetracker::protocol::http::split_target;
use edgetracker::protocol::route::{self, Endpoint, Route};
use edgetracker::protocol::types::{Family, canonical_ip};
use edgetracker::ratelimit::AnnounceGate;
use edgetracker::service::{Outcome, RATE_LIMITED, Scratch};
use edgetracker::stats_access;
use edgetracker::store::now_or_never;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::sync::watch;

use crate::connections::{Activity, Admitted, Watched};
use crate::{Shared, thread_rng, unix_now};
use crate::{page, stats, ws};
use at_accept::AtAccept;

pub mod at_accept;

/// Binds a TCP listener; `[::]` is IPv6-only so `0.0.0.0` can be bound beside it.
/// `defer_secs`: `[network] http_defer_accept` (see `defer_accept`); `backlog`:
/// `[network] http_listen_backlog`.
pub fn bind(addr: SocketAddr, defer_secs: u32, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    defer_accept(&socket, defer_secs)?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Has the kernel hold a new connection until its client sends something, for up to
/// `secs` seconds (`[network] http_defer_accept`). HTTP clients speak first, so a connection
/// then reaches `accept` with its request, and one that closes after its request is answered
/// at once ([`at_accept`]) instead of waiting in the reactor for its first bytes; a silent
/// connection meanwhile costs no descriptor. Linux only (nginx's `deferred`); elsewhere a no-op.
#[cfg(target_os = "linux")]
fn defer_accept(socket: &Socket, secs: u32) -> io::Result<()> {
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    crate::sockopt::set(socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, &secs)
}

#[cfg(not(target_os = "linux"))]
fn defer_accept(_: &Socket, _: u32) -> io::Result<()> {
    Ok(())
}

/// The HTTP side: its runtime and the signal to stop accepting.
pub struct HttpServer {
    runtime: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
}

impl HttpServer {
    pub fn start(
        listeners: Vec<std::net::TcpListener>,
        shared: Arc<Shared>,
    ) -> io::Result<HttpServer> {
        let threads = shared.config.network.http_threads;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("http")
            .enable_all()
            .build()?;
        let (stop, stopped) = watch::channel(false);
        for listener in listeners {
            let listener = {
                let _guard = runtime.enter();
                Arc::new(watch_listener(listener)?)
            };
            // A loop per HTTP thread: a request answered at accept is served by the loop that
            // accepted it, and one loop would put them all on one thread at a time.
            for _ in 0..threads {
                runtime.spawn(accept_loop(
                    listener.clone(),
                    shared.clone(),
                    stopped.clone(),
                ));
            }
        }
        Ok(HttpServer { runtime, stop })
    }

    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        // Requests in flight finish quickly (nothing here waits on I/O but the client).
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// The listener in tokio's reactor, for readiness only (see [`accept`]).
#[allow(
    unsafe_code,
    reason = "tokio's AsyncFd registration is an unsafe fn (I/O safety is the caller's)"
)]
fn watch_listener(listener: std::net::TcpListener) -> io::Result<AsyncFd<std::net::TcpListener>> {
    // SAFETY: the `TcpListener` owns its descriptor, which stays open and the same until the
    // AsyncFd, its owner from here on, drops it.
    unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }.map_err(Into::into)
}

/// Accepts without tokio's registration, so that a request answered at accept
/// ([`at_accept`]) never costs an epoll registration and its removal.
fn accept(listener: &std::net::TcpListener) -> io::Result<(Socket, SocketAddr)> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let (socket, addr) =
        SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let (socket, addr) = {
        let (socket, addr) = SockRef::from(listener).accept()?;
        socket.set_nonblocking(true)?;
        (socket, addr)
    };
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("a TCP peer without an IP address"))?;
    Ok((socket, addr))
}

/// The socket as tokio's, for what is not answered at accept.
fn registered(socket: Socket) -> io::Result<tokio::net::TcpStream> {
    tokio::net::TcpStream::from_std(socket.into())
}

async fn accept_loop(
    listener: Arc<AsyncFd<std::net::TcpListener>>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            ready = listener.readable() => match ready {
                Ok(mut guard) => match guard.try_io(|l| accept(l.get_ref())) {
                    Ok(accepted) => accepted,
                    Err(_would_block) => continue,
                },
                Err(e) => Err(e),
            },
            _ = stopped.changed() => return,
        };
        // Waiting for the listener's readiness spends none of the task's budget, and while
        // connections keep arriving it never waits at all: without this, the loop would keep
        // its thread from every other connection for as long as a flood lasts.
        tokio::task::consume_budget().await;
        let (socket, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Behind a reverse proxy every client arrives from the proxy: its connections count
        // toward the total only.
        let from_proxy = !shared.config.network.trusted_proxy_header.is_empty()
            && is_trusted_proxy(&shared, remote);
        let admitted = match shared.connections.admit(remote.ip(), !from_proxy) {
            Ok(admitted) => admitted,
            Err(refused) => {
                refuse_connection(socket, refused.reason());
                continue;
            }
        };
        match at_accept::answer(&socket, remote, &shared) {
            // Dropping the socket closes it, and the admission with it.
            AtAccept::Answered => shared.connections.counted_answered_at_accept(),
            AtAccept::Gone => {}
            AtAccept::Unsent(rest) => {
                shared.connections.counted_answered_at_accept();
                let Ok(mut stream) = registered(socket) else {
                    continue;
                };
                let limit = Duration::from_secs(shared.config.network.http_idle_timeout);
                tokio::spawn(async move {
                    // Shed like any holder: out of the caps at once, so its socket must go too.
                    tokio::select! {
                        _ = tokio::time::timeout(limit, stream.write_all(&rest)) => {}
                        () = admitted.shed() => {}
                    }
                });
            }
            AtAccept::ToHyper(read) => {
                let Ok(stream) = registered(socket) else {
                    continue;
                };
                tokio::spawn(serve(stream, read, remote, admitted, shared.clone()));
            }
        }
    }
}

/// One connection through hyper, `read` being what [`at_accept`] read of it already.
async fn serve(
    stream: tokio::net::TcpStream,
    read: Vec<u8>,
    remote: SocketAddr,
    admitted: Admitted,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let network = &shared.config.network;
    let idle_limit = Duration::from_secs(network.http_idle_timeout);
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(stream, activity.clone(), read));
    let service_shared = shared.clone();
    // A WebSocket upgrade hands the connection to a task of its own (admitted among the
    // WebSockets); its handle lands here, so the connection's task lasts as long as the socket.
    let websocket = Arc::new(std::sync::Mutex::new(None));
    let upgraded = websocket.clone();
    let progress = admitted.progress();
    let service = hyper::service::service_fn(move |mut req| {
        progress.progressed();
        let response = handle(&mut req, remote, &service_shared, &upgraded);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(network.http_max_header_bytes)
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::select! {
        served = conn => if let Err(e) = served {
            tracing::debug!(%remote, "http connection: {e}");
        },
        () = activity.stalled(idle_limit) => {
            shared.connections.counted_idle_close();
            tracing::debug!(%remote, "http connection closed: nothing moved for {idle_limit:?}");
        }
        () = admitted.shed() => {
            tracing::debug!(%remote, "http connection closed to make room for another");
        }
    }
    // An upgraded connection is the WebSocket's now, under the WebSockets' caps.
    drop(admitted);
    let socket = websocket.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(socket) = socket {
        let _ = socket.await;
    }
}

/// Refused connections being closed gracefully at once; past this, they are dropped outright.
pub const LINGERING_MAX: usize = 256;
/// The same, as set at start within the open-file limit ([`set_lingering_limit`]).
static LINGERING_LIMIT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(LINGERING_MAX);

/// How many refused connections may linger at once (at most [`LINGERING_MAX`]): a share of the
/// open-file limit, so that they, the connections and the reserve fit in it together.
pub fn set_lingering_limit(n: usize) {
    LINGERING_LIMIT.store(n.min(LINGERING_MAX), std::sync::atomic::Ordering::Relaxed);
}
/// How long a refused connection is given to deliver its request before it is closed.
const LINGER: Duration = Duration::from_secs(2);
static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Tells a client over a connection cap why, as far as the socket takes it at once (never
/// waiting: the point is to spend nothing on it), and closes.
///
/// Closing a socket whose peer's request is still arriving makes the kernel answer that request
/// with a reset, and a client that sees the reset may throw away the 503 it had not read yet.
/// So the answer is followed by a half-close, and the request is read and dropped for up to
/// [`LINGER`] before the socket closes: for [`LINGERING_MAX`] connections at a time (fewer under a
/// low open-file limit), so that a
/// flood of refused connections cannot hold descriptors (beyond that, they are dropped at once).
fn refuse_connection(socket: Socket, reason: &str) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    let body = write_failure(reason);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: {BENCODE}\r\nContent-Length: {}\r\nRetry-After: 60\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let answer = [head.as_bytes(), &body].concat();
    // Written before the socket is in the reactor, which knows nothing of its readiness yet.
    if !(&socket).write(&answer).is_ok_and(|n| n == answer.len()) {
        return;
    }
    if LINGERING.fetch_add(1, Ordering::Relaxed) >= LINGERING_LIMIT.load(Ordering::Relaxed) {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let Ok(stream) = registered(socket) else {
        LINGERING.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    tokio::spawn(async move {
        let drain = async {
            socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Write)?;
            let mut sink = [0u8; 1024];
            let mut read = 0;
            // Until the client closes its side, or it has sent more than a request's worth.
            while read < 64 * 1024 {
                stream.readable().await?;
                match stream.try_read(&mut sink) {
                    Ok(0) => break,
                    Ok(n) => read += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            io::Result::Ok(())
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
        drop(stream);
        LINGERING.fetch_sub(1, Ordering::Relaxed);
    });
}

thread_local! {
    static LOCAL: RefCell<(SmallRng, Scratch)> = RefCell::new((thread_rng(), Scratch::default()));
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const BENCODE: &str = "text/plain; charset=utf-8";

fn failure(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    response(status, BENCODE, write_failure(reason))
}

/// What the handlers read of a request's headers, whether hyper or the at-accept parser
/// ([`at_accept`]) read them.
pub(crate) trait Headers {
    /// The value of the last `name` header, if any (names compare ASCII case-insensitively).
    fn last(&self, name: &str) -> Option<&[u8]>;
}

impl Headers for hyper::HeaderMap {
    fn last(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name)
            .iter()
            .next_back()
            .map(HeaderValue::as_bytes)
    }
}

/// The client's address: the socket's, or, for a request from a trusted proxy, the rightmost
/// entry of the last line of the proxy header. The last line, because a proxy may append a line
/// of its own after whatever the client sent (HAProxy does); the rightmost entry of it, because
/// that is the hop the proxy saw.
fn client_ip(
    headers: &impl Headers,
    remote: SocketAddr,
    shared: &Shared,
) -> Result<IpAddr, String> {
    let header = &shared.config.network.trusted_proxy_header;
    let socket = canonical_ip(remote.ip());
    if header.is_empty() {
        return Ok(socket);
    }
    if !is_trusted_proxy(shared, remote) {
        if headers.last(header).is_some()
            && !UNTRUSTED_HEADER_SEEN.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                %remote,
                "{header} from an address not in trusted_proxies: ignored, the socket address is the client (logged once)"
            );
        }
        return Ok(socket);
    }
    let value = headers
        .last(header)
        .ok_or_else(|| format!("missing {header} header from the proxy"))?;
    let last = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .unwrap_or_default();
    last.parse::<IpAddr>()
        .or_else(|_| last.parse::<SocketAddr>().map(|s| s.ip()))
        .map(canonical_ip)
        .map_err(|_| format!("unparseable {header} header from the proxy"))
}

/// Whether `remote` is one of `[network] trusted_proxies`.
fn is_trusted_proxy(shared: &Shared, remote: SocketAddr) -> bool {
    let socket = canonical_ip(remote.ip());
    shared
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&socket) || net.contains(&remote.ip()))
}

/// A proxy header from elsewhere than a trusted proxy is worth one warning: a misconfigured
/// `trusted_proxies` makes every client look like the proxy.
static UNTRUSTED_HEADER_SEEN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn handle(
    req: &mut Request<Incoming>,
    remote: SocketAddr,
    shared: &Arc<Shared>,
    websocket: &std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return failure(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
    }
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let (path, query) = split_target(target.as_bytes());
    if let Some(route) = route::route(path) {
        if route.endpoint == Endpoint::Announce
            && shared.config.webtorrent.enabled
            && ws::is_upgrade(req)
        {
            let client = match client_ip(req.headers(), remote, shared) {
                Ok(ip) => ip,
                Err(reason) => return failure(StatusCode::BAD_REQUEST, &reason),
            };
            let passkey = route.passkey.map(<[u8]>::to_vec);
            return ws::upgrade(req, client, passkey, shared, websocket)
                .unwrap_or_else(|(status, reason)| failure(status, reason));
        }
        return tracker_request(req, remote, shared, route, query);
    }
    match path {
        b"/stats" | b"/metrics" => {
            if !stats_permitted(req, remote, shared, query) {
                return failure(
                    StatusCode::FORBIDDEN,
                    "the stats are not public on this tracker",
                );
            }
            let param = |key: &[u8], value: &[u8]| query_pairs(query).any(|p| p == (key, value));
            let wants_html = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
            let format = if path == b"/metrics" || param(b"format", b"prometheus") {
                StatsFormat::Prometheus
            } else if param(b"format", b"json") {
                StatsFormat::Json
            } else if param(b"format", b"html") || wants_html {
                StatsFormat::Html
            } else {
                StatsFormat::Json
            };
            // The page's links to the other forms keep the token the viewer came with; only the
            // configured token, never whatever a request carries, is written into the page.
            let token = &shared.config.stats.token;
            let came_with_token = !token.is_empty()
                && stats_access::query_token(query)
                    .is_some_and(|t| stats_access::same_secret(t, token.as_bytes()));
            stats_response(shared, format, came_with_token.then_some(token.as_str()))
        }
        _ => failure(
            StatusCode::NOT_FOUND,
            "not found: this tracker serves /announce and /scrape",
        ),
    }
}

/// `/announce` and `/scrape`, with or without a passkey in front.
fn tracker_request(
    req: &Request<Incoming>,
    remote: SocketAddr,
    shared: &Shared,
    route: Route<'_>,
    query: &[u8],
) -> Response<Full<Bytes>> {
    match tracker_answer(req.headers(), remote, shared, route, query) {
        Answer::Bencoded(body) => response(StatusCode::OK, BENCODE, body),
        Answer::FullScrape { ip, now, full } => full_scrape(req, shared, full, route, ip, now),
    }
}

/// What a tracker request gets, before any HTTP framing.
pub(crate) enum Answer<'a> {
    /// A bencoded body, sent with status 200 (failures too, as BitTorrent clients expect).
    Bencoded(Vec<u8>),
    /// A scrape without `info_hash`, when enabled: its own headers and compression, so only the
    /// hyper path serves it.
    FullScrape {
        ip: IpAddr,
        now: UnixTime,
        full: &'a crate::full_scrape::FullScrape,
    },
}

/// `/announce` and `/scrape`, whichever parser read the request: the client's address, the
/// core's answer, and the request counted in the stats.
fn tracker_answer<'a>(
    headers: &impl Headers,
    remote: SocketAddr,
    shared: &'a Shared,
    route: Route<'_>,
    query: &[u8],
) -> Answer<'a> {
    let ip = match client_ip(headers, remote, shared) {
        Ok(ip) => ip,
        Err(reason) => {
            let body = write_failure(&reason);
            let outcome = Outcome {
                error: Some(reason),
                ..Outcome::default()
            };
            shared
                .stats
                .record(stats::Protocol::Http, Family::of(remote.ip()), &outcome);
            return Answer::Bencoded(body);
        }
    };
    let now = unix_now();
    let tracker = &shared.tracker;
    if route.endpoint == Endpoint::Scrape
        && let Some(full) = &shared.full_scrape
        && !query_pairs(query).any(|(key, _)| key == b"info_hash")
    {
        return Answer::FullScrape { ip, now, full };
    }
    let (body, outcome) = LOCAL.with_borrow_mut(|(rng, scratch)| match route.endpoint {
        Endpoint::Announce => {
            now_or_never(tracker.http_announce(query, route.passkey, ip, now, rng, scratch))
        }
        Endpoint::Scrape => {
            now_or_never(tracker.http_scrape(query, route.passkey, ip, now, scratch))
        }
    });
    shared
        .stats
        .record(stats::Protocol::Http, Family::of(ip), &outcome);
    if let Some(reason) = &outcome.error {
        tracing::debug!(%remote, reason, "http request refused");
    }
    Answer::Bencoded(body)
}

/// A scrape without `info_hash`, when enabled: the whole tracker, to a client allowed one now.
fn full_scrape(
    req: &Request<Incoming>,
    shared: &Shared,
    full: &crate::full_scrape::FullScrape,
    route: Route<'_>,
    ip: IpAddr,
    now: UnixTime,
) -> Response<Full<Bytes>> {
    let gzip = req
        .headers()
        .get(hyper::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let access = shared.tracker.access();
    let served = match access.check_passkey(route.passkey) {
        // Building walks every torrent and compresses the lot (0.35 s and 70 MB for a million
        // torrents, measured), and a concurrent request waits on the cache lock: off the worker
        // thread, so other connections keep being served.
        Ok(()) => tokio::task::block_in_place(|| {
            full.serve(&shared.tracker.store, &access, ip, now, gzip)
        }),
        // A wrong passkey costs a token here too, as for any scrape: no free guessing.
        Err(edgetracker::access::Refusal::UnknownPasskey)
            if !now_or_never(shared.tracker.limiter().permit(ip, now)) =>
        {
            Err(RATE_LIMITED.to_string())
        }
        Err(refusal) => Err(refusal.reason().to_string()),
    };
    let outcome = Outcome {
        action: Some(edgetracker::service::Action::Scrape),
        rate_limited: served.as_ref().err().is_some_and(|e| e == RATE_LIMITED),
        error: served.as_ref().err().cloned(),
        ..Outcome::default()
    };
    shared
        .stats
        .record(stats::Protocol::Http, Family::of(ip), &outcome);
    match served {
        Ok(body) => {
            let mut r = response(StatusCode::OK, BENCODE, body);
            let headers = r.headers_mut();
            // Caches between us and clients must not hand the gzip form to others.
            headers.insert(
                hyper::header::VARY,
                HeaderValue::from_static("Accept-Encoding"),
            );
            if gzip {
                headers.insert(
                    hyper::header::CONTENT_ENCODING,
                    HeaderValue::from_static("gzip"),
                );
            }
            r
        }
        Err(reason) => failure(StatusCode::OK, &reason),
    }
}

/// Whether an `Accept-Encoding` value accepts gzip: named with a q-value above zero, or, when
/// not named, covered by `*` with one.
fn accepts_gzip(header: &str) -> bool {
    let mut wildcard = false;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") {
            return q > 0.0;
        }
        wildcard |= coding == "*" && q > 0.0;
    }
    wildcard
}

enum StatsFormat {
    Json,
    Prometheus,
    Html,
}

/// `[stats] allow` and `token`, decided by the core as on the edge.
fn stats_permitted(
    req: &Request<Incoming>,
    remote: SocketAddr,
    shared: &Shared,
    query: &[u8],
) -> bool {
    let cfg = &shared.config.stats;
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    stats_access::stats_permitted(
        &cfg.allow,
        &cfg.token,
        client_ip(req.headers(), remote, shared).ok(),
        query,
        bearer,
    )
}

fn stats_response(
    shared: &Shared,
    format: StatsFormat,
    token: Option<&str>,
) -> Response<Full<Bytes>> {
    let totals = shared.tracker.store.totals();
    let uptime = shared.uptime();
    match format {
        StatsFormat::Prometheus => response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.stats.prometheus(&totals, uptime)
                + &shared.udp_threads.prometheus()
                + &stats::connections_prometheus("http", &shared.connections.counts())
                + &stats::connections_prometheus("websocket", &shared.ws_connections.counts())
                + &shared.ws.prometheus()
                + &format!(
                    "# HELP edgetracker_quiet_torrents_dropped_total Torrents without peers dropped to make room for new ones at max_torrents.\n# TYPE edgetracker_quiet_torrents_dropped_total counter\nedgetracker_quiet_torrents_dropped_total {}\n",
                    shared.tracker.store.quiet_evicted()
                ),
        ),
        StatsFormat::Json => {
            let mut json = shared.stats.json(&totals, uptime);
            json["udp_threads"] = shared.udp_threads.json();
            json["http_connections"] = serde_json::json!(shared.connections.counts());
            json["websocket_connections"] = serde_json::json!(shared.ws_connections.counts());
            json["quiet_torrents_dropped"] =
                serde_json::json!(shared.tracker.store.quiet_evicted());
            json["webtorrent"] = shared.ws.json();
            let body = serde_json::to_vec_pretty(&json).unwrap_or_default();
            response(StatusCode::OK, "application/json", body)
        }
        StatsFormat::Html => {
            let rows = shared.stats.rows();
            let page = page::html(
                &totals,
                uptime,
                &rows,
                shared.stats.rate_limited(),
                &shared.history.samples(),
                token,
            );
            response(StatusCode::OK, "text/html; charset=utf-8", page)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_is_accepted_only_with_a_positive_q() {
        for yes in ["gzip", "deflate, gzip", "GZIP;q=0.5", "br;q=1, *;q=0.1"] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in [
            "",
            "deflate",
            "gzip;q=0",
            "gzip; q=0.0, br",
            "x-gzipped",
            "gzip;q=0, *",
        ] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }
}
