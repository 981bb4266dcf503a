//! The native twin: edgetracker's core served over UDP (BEP 15) and HTTP on one port.
//!
//! This crate is I/O only — sockets, threads, clock, entropy, signals, configuration — around
//! [`edgetracker::service::Tracker`] with the in-memory store. It must not know about the edge.
//! [`start`] brings a tracker up and hands back a [`Running`] handle, which is what both `main`
//! and the integration tests use.

pub mod access_files;
pub mod config;
pub mod connections;
pub mod full_scrape;
pub mod housekeeping;
pub mod http;
pub mod page;
#[cfg(target_os = "linux")]
mod sockopt;
pub mod state;
pub mod stats;
pub mod udp;
pub mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgetracker::UnixTime;
use edgetracker::protocol::connection_id::ConnectionIds;
use edgetracker::ratelimit::RateLimit;
use edgetracker::service::Tracker;
use edgetracker::store::memory::MemoryStore;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::access_files::AccessFiles;
use crate::config::{Config, UdpSteering};
use crate::stats::Stats;

/// Descriptors kept from HTTP connections: listening sockets, the state and access files, the
/// runtime's own.
const FD_RESERVE: u64 = 128;

/// The caps of the HTTP and WebSocket pools, and how many refused connections may linger: the
/// configured caps, within what the open-file limit leaves after [`FD_RESERVE`] and an eighth
/// of the rest (at most [`http::LINGERING_MAX`]) for refused connections being closed. When the
/// two configured totals do not fit, each gets its share.
fn connection_caps(
    config: &Config,
    open_files: u64,
) -> (connections::Caps, connections::Caps, usize) {
    let usable = open_files.saturating_sub(FD_RESERVE) as usize;
    let lingering = (usable / 8).min(http::LINGERING_MAX);
    let budget = (usable - lingering).max(32);
    let (net, ws) = (&config.network, &config.webtorrent);
    let (mut http_total, mut ws_total) = (net.http_max_connections, ws.max_connections);
    if !ws.enabled {
        ws_total = 0;
    }
    if http_total + ws_total > budget {
        let ws_share =
            (budget as u128 * ws_total as u128 / (http_total + ws_total) as u128) as usize;
        ws_total = ws_share.min(ws_total);
        http_total = (budget - ws_total).min(http_total).max(16);
    }
    let shed_after = (net.shed_idle_after > 0).then(|| Duration::from_secs(net.shed_idle_after));
    (
        connections::Caps {
            total: http_total,
            per_address: net.http_max_connections_per_address,
            per_network: net.http_max_connections_per_network,
            shed_after,
        },
        connections::Caps {
            total: ws_total.max(1),
            per_address: ws.max_connections_per_address,
            per_network: ws.max_connections_per_network,
            shed_after,
        },
        lingering,
    )
}

/// The time, as the core wants `now`: the wall clock read once, then advanced by the
/// monotonic clock, so a wall clock stepped back (or forward) while the tracker runs cannot make
/// fresh peers look 18 hours old or connection ids look expired.
pub fn unix_now() -> UnixTime {
    static ANCHOR: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
    let (at, wall) = ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (Instant::now(), wall)
    });
    UnixTime::from_secs(wall + at.elapsed().as_secs())
}

/// Bytes from the OS's CSPRNG (keys, RNG seeds).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random number generator is unavailable");
    b
}

/// A fast per-thread RNG for peer selection, seeded from the OS.
pub fn thread_rng() -> SmallRng {
    SmallRng::from_seed(random_bytes())
}

/// What every serving thread shares.
pub struct Shared {
    pub tracker: Tracker<MemoryStore>,
    pub stats: Stats,
    /// Datagrams per UDP thread.
    pub udp_threads: stats::UdpThreads,
    /// Samples for the stats page's chart.
    pub history: page::History,
    /// Present when full scrapes are enabled.
    pub full_scrape: Option<full_scrape::FullScrape>,
    pub started: Instant,
    /// `[network] trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Open HTTP connections and their caps.
    pub connections: Arc<connections::Connections>,
    /// Open WebSockets and their caps (a socket leaves `connections` when it opens).
    pub ws_connections: Arc<connections::Connections>,
    /// WebTorrent: swarms of browsers and their sockets' queues.
    pub ws: ws::Hub,
    pub config: Config,
}

impl Shared {
    pub fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// A running tracker. Dropping it without [`Running::shutdown`] leaves its threads running.
pub struct Running {
    pub shared: Arc<Shared>,
    udp_addrs: Vec<SocketAddr>,
    http_addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    /// Set by SIGINT/SIGTERM.
    terminate: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    http: Option<http::HttpServer>,
}

impl Running {
    /// Where UDP is served (one entry per listen address; the real port when 0 was asked).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Where HTTP is served.
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    /// Blocks until SIGINT or SIGTERM (handlers are installed by [`start`], before anything
    /// is served, so an early signal is never lost). A second signal exits at once.
    pub fn wait_for_signal(&self) {
        while !self.terminate.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!("signal received: shutting down");
    }

    /// Stops accepting, lets serving threads finish their current request, joins them, and
    /// saves the state file one last time.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(http) = self.http.take() {
            http.shutdown();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        housekeeping::save_state(&self.shared);
    }
}

/// Binds every socket on one port. With port 0 the first TCP socket picks the port and the
/// others follow it, so UDP and HTTP share one port as users expect (retried if it is taken).
fn bind_all(config: &Config) -> io::Result<(Vec<UdpSockets>, Vec<std::net::TcpListener>)> {
    let net = &config.network;
    let attempts = if net.port == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        match bind_on_port(net, net.port) {
            Ok(bound) => return Ok(bound),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one attempt"))
}

/// One address's UDP sockets, one per UDP thread (see [`udp::bind`]).
type UdpSockets = Vec<std::net::UdpSocket>;

fn bind_on_port(
    net: &config::NetworkSection,
    mut port: u16,
) -> io::Result<(Vec<UdpSockets>, Vec<std::net::TcpListener>)> {
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    for &ip in &net.listen {
        if net.http {
            let l = http::bind(
                SocketAddr::new(ip, port),
                net.http_defer_accept,
                net.http_listen_backlog,
            )?;
            port = l.local_addr()?.port();
            tcp_listeners.push(l);
        }
        if net.udp {
            let sockets = udp::bind(SocketAddr::new(ip, port), net.udp_threads)?;
            port = sockets[0].local_addr()?.port();
            udp_sockets.push(sockets);
        }
    }
    Ok((udp_sockets, tcp_listeners))
}

/// Whether the UDP threads are to be steered by torrent: asked for, and several of them, each
/// with a socket of its own (Linux only).
fn steers_by_torrent(config: &Config) -> bool {
    config.network.udp_steering == UdpSteering::Torrent
        && cfg!(target_os = "linux")
        && config.network.udp
        && config.network.udp_threads > 1
}

/// Starts serving `config`: loads the access files and binds every socket first (so errors
/// surface before anything runs), then starts UDP threads, the HTTP runtime and housekeeping.
pub fn start(config: Config) -> io::Result<Running> {
    config.validate().map_err(invalid_input)?;
    let mut access_files = AccessFiles::new(&config.access);
    let access = access_files.load().map_err(invalid_input)?;
    tracing::info!("access: {}", access_files::describe(&access));
    let (udp_sockets, tcp_listeners) = bind_all(&config)?;

    let policy = config.policy();
    let ids = ConnectionIds::new(
        random_bytes(),
        config.udp.connection_id_validity,
        config.udp.connection_id_leniency,
    );
    // Steered UDP threads each own a group of shards (see `udp::steer`); without steering the
    // groups cost nothing, every thread using all of them.
    let store = if steers_by_torrent(&config) {
        MemoryStore::with_groups(policy.clone(), random_bytes(), config.network.udp_threads)
    } else {
        MemoryStore::new(policy.clone(), random_bytes())
    };
    let state_file = config.state.file.clone();
    if let Some(path) = &state_file {
        match state::load(&store, path, unix_now()).map_err(io::Error::other)? {
            state::Loaded::Missing => tracing::info!("no state file at {} yet", path.display()),
            state::Loaded::Loaded(s) => {
                tracing::info!(
                    "restored {} torrents and {} live peers from {}",
                    s.torrents,
                    s.peers,
                    path.display()
                );
                if s.refused_torrents + s.refused_peers > 0 {
                    tracing::warn!(
                        "the caps kept {} torrents and {} peers of {} out (max_torrents, \
                         max_peers, max_peers_per_torrent, max_peers_per_address)",
                        s.refused_torrents,
                        s.refused_peers,
                        path.display()
                    )
                }
            }
            state::Loaded::Skipped { reason } => {
                tracing::error!("state file skipped, starting empty: {reason}")
            }
        }
    }
    let tracker = Tracker::new(store, policy)
        .with_udp(ids)
        .with_rate_limit(RateLimit {
            per_minute: config.tracker.rate_limit_per_minute,
            burst: config.tracker.rate_limit_burst,
        });
    tracker.set_access(access);
    // The connection cap, not the process's default 1,024 descriptors, decides how many HTTP
    // clients are served; descriptors for sockets, files and the runtime stay in reserve.
    let open_files = connections::raise_open_file_limit()?;
    let (http_caps, ws_caps, lingering) = connection_caps(&config, open_files);
    http::set_lingering_limit(lingering);
    tracing::info!(
        "at most {} HTTP connections and {} WebSockets (open-file limit {open_files})",
        http_caps.total,
        ws_caps.total
    );
    let samples_per_hour = (3600 / config.stats.history_interval) as usize + 1;
    let steered = steers_by_torrent(&config)
        && match udp_sockets
            .iter()
            .try_for_each(|s| udp::steer_by_torrent(s))
        {
            Ok(()) => true,
            Err(e) => {
                // Only slower: any thread can serve any torrent.
                tracing::warn!("UDP threads spread by client: steering by torrent refused ({e})");
                false
            }
        };
    let udp_thread_list = udp_sockets
        .iter()
        .flat_map(|sockets| sockets.iter().enumerate())
        .map(|(i, s)| Ok((s.local_addr()?, i)))
        .collect::<io::Result<Vec<_>>>()?;
    let shared = Arc::new(Shared {
        tracker,
        stats: Stats::default(),
        udp_threads: stats::UdpThreads::new(udp_thread_list, steered),
        history: page::History::new(samples_per_hour),
        full_scrape: config
            .tracker
            .full_scrape
            .then(|| full_scrape::FullScrape::new(config.tracker.full_scrape_interval)),
        started: Instant::now(),
        ws: ws::Hub::new(
            &config.webtorrent,
            random_bytes(),
            config.tracker.policy.max_torrents as usize,
            config.tracker.policy.max_peers_per_torrent as usize,
            config.tracker.policy.max_peers_per_address as usize,
        ),
        trusted_proxies: config.trusted_proxies().map_err(io::Error::other)?,
        connections: Arc::new(connections::Connections::new(http_caps)),
        ws_connections: Arc::new(connections::Connections::new(ws_caps)),
        config,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let terminate = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // The second signal of a kind, with the first not yet handled, ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, terminate.clone())?;
        signal_hook::flag::register(signal, terminate.clone())?;
    }
    // SIGHUP asks for a reload (and no longer ends the process, its default action), from before
    // anything is served, so an early one cannot kill the tracker without its shutdown save.
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())?;

    let udp_addrs = udp_sockets
        .iter()
        .map(|s| s[0].local_addr())
        .collect::<io::Result<Vec<_>>>()?;
    let http_addrs = tcp_listeners
        .iter()
        .map(|s| s.local_addr())
        .collect::<io::Result<Vec<_>>>()?;

    let mut threads = Vec::new();
    let mut slot = 0;
    for sockets in udp_sockets {
        for (i, socket) in sockets.into_iter().enumerate() {
            let (shared, stop) = (shared.clone(), stop.clone());
            let name = format!("udp-{}-{i}", socket.local_addr()?);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || udp::serve(socket, slot, &shared, &stop))?,
            );
            slot += 1;
        }
    }
    let http = if tcp_listeners.is_empty() {
        None
    } else {
        Some(http::HttpServer::start(tcp_listeners, shared.clone())?)
    };
    {
        let (shared, stop, hangup) = (shared.clone(), stop.clone(), hangup.clone());
        threads.push(
            std::thread::Builder::new()
                .name("housekeeping".into())
                .spawn(move || housekeeping::run(&shared, &stop, access_files, &hangup))?,
        );
    }
    for a in &udp_addrs {
        tracing::info!("serving udp://{a}/announce");
    }
    for a in &http_addrs {
        tracing::info!("serving http://{a}/announce (and /scrape, /stats)");
    }
    Ok(Running {
        shared,
        udp_addrs,
        http_addrs,
        stop,
        terminate,
        threads,
        http,
    })
}

fn invalid_input(e: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}
