//! Configuration: defaults < TOML file < `EDGETRACKER__SECTION__KEY` environment < CLI flags.
//!
//! Owns the operator-facing knobs and their documentation (`--print-config`). May not start
//! anything: it only produces a validated [`Config`].

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use edgetracker::access::ListMode;
use edgetracker::swarm::Policy;
use serde::{Deserialize, Serialize};

/// XBT Tracker's port, which users know as the tracker port.
pub const DEFAULT_PORT: u16 = 2710;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub network: NetworkSection,
    pub tracker: TrackerSection,
    pub udp: UdpSection,
    pub access: AccessSection,
    pub state: StateSection,
    pub stats: StatsSection,
    pub webtorrent: WebtorrentSection,
    pub log: LogSection,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Addresses to listen on; each gets UDP and TCP (HTTP) sockets on `port`.
    pub listen: Vec<IpAddr>,
    pub port: u16,
    pub udp: bool,
    pub http: bool,
    /// Header carrying the client address when behind a reverse proxy; the rightmost entry of
    /// its last line is used. Empty: the socket address is the client.
    pub trusted_proxy_header: String,
    /// Addresses or CIDR prefixes of the proxies whose header is believed; a request from
    /// anywhere else is its socket address, whatever header it carries.
    pub trusted_proxies: Vec<String>,
    /// UDP threads per address, each with a socket of its own on Linux (`SO_REUSEPORT`).
    pub udp_threads: usize,
    /// With several UDP threads (Linux): which datagrams the kernel gives each thread's socket.
    pub udp_steering: UdpSteering,
    /// HTTP connections open at once, over all clients (and never more than the open-file
    /// limit, raised to its hard limit at start, allows less a reserve).
    pub http_max_connections: usize,
    /// HTTP connections open at once from one client (an IPv4 address, an IPv6 /64).
    pub http_max_connections_per_address: u32,
    /// HTTP connections open at once from one network (an IPv4 /24, an IPv6 /48).
    pub http_max_connections_per_network: u32,
    /// Seconds since a connection's last request (or WebSocket message) after which it may be
    /// closed to admit a new one at a total connection cap (0: never; the new one is refused).
    pub shed_idle_after: u64,
    /// Connections the kernel queues for `accept` (and half-open ones it holds), per listener;
    /// the kernel caps it at `net.core.somaxconn`.
    pub http_listen_backlog: u32,
    /// Seconds an HTTP connection may move no byte either way before it is closed.
    pub http_idle_timeout: u64,
    /// Seconds the kernel holds a new connection that has sent nothing yet before handing it to
    /// the tracker (Linux `TCP_DEFER_ACCEPT`; 0: at once).
    pub http_defer_accept: u32,
    /// Bytes of a request's head (request line and headers) hyper buffers; at least 8192.
    pub http_max_header_bytes: usize,
    /// Threads serving HTTP (all sockets).
    pub http_threads: usize,
}

/// How the kernel spreads datagrams over the UDP threads' sockets (`[network] udp_steering`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdpSteering {
    /// Announces and scrapes by torrent (the first four bytes of the info-hash): each torrent's
    /// swarm is served by one thread and stays in that core's cache. Connects, and anything
    /// else, by client.
    Torrent,
    /// Everything by a hash of the client's address and port.
    Client,
}

/// `[tracker]`: the core's [`Policy`], key for key, and what only the native tracker does.
/// (Unknown keys are refused by [`Config::load`]: serde cannot deny them beside a flattened
/// struct.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackerSection {
    #[serde(flatten)]
    pub policy: Policy,
    /// Seconds between sweeps for expired peers.
    pub cleanup_interval: u32,
    /// Announces a minute per client address (0: no limit), after a burst of `rate_limit_burst`.
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
    /// Answer `/scrape` without `info_hash` with every torrent (gzip-compressed if accepted).
    pub full_scrape: bool,
    /// Seconds a client address must wait between full scrapes.
    pub full_scrape_interval: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpSection {
    pub connection_id_validity: u32,
    pub connection_id_leniency: u32,
}

/// Who may use the tracker. Files are reloaded on SIGHUP and when they change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// `off`, `allow` (only listed torrents) or `deny` (listed torrents refused).
    pub list_mode: ListMode,
    /// File of 40-digit hex info hashes, one per line (`#` comments). Empty or absent: none.
    #[serde(deserialize_with = "path_or_none", serialize_with = "path_or_empty")]
    pub list_file: Option<PathBuf>,
    /// File of passkeys, one per line. Set: a private tracker, announced to at
    /// `/<passkey>/announce` (HTTP) or with the same path in BEP 41 URL data (UDP).
    #[serde(deserialize_with = "path_or_none", serialize_with = "path_or_empty")]
    pub passkeys_file: Option<PathBuf>,
}

/// Refuses sections and keys the configuration does not have (a typo must not be ignored
/// silently). What it has is read off the serialized defaults: the structs are the only list.
fn refuse_unknown_keys(table: &toml::Table) -> Result<(), String> {
    static KNOWN: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
    let known = KNOWN
        .get_or_init(|| toml::Table::try_from(Config::default()).expect("the defaults serialize"));
    for (section, keys) in table {
        let Some(known_keys) = known.get(section).and_then(toml::Value::as_table) else {
            return Err(format!("configuration: unknown section [{section}]"));
        };
        for key in keys.as_table().into_iter().flat_map(toml::Table::keys) {
            if !known_keys.contains_key(key) {
                return Err(format!("configuration: [{section}] has no key {key:?}"));
            }
        }
    }
    Ok(())
}

/// A path setting: `""` (what `--print-config` shows for "none") or absent is `None`.
fn path_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = PathBuf::deserialize(d)?;
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

fn path_or_empty<S: serde::Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    path.clone().unwrap_or_default().serialize(s)
}

/// Who may see `/stats` and `/metrics`, and the stats page's chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsSection {
    /// Client addresses allowed to see the stats. With `token` also empty: everyone.
    pub allow: Vec<IpAddr>,
    /// A secret that also grants access: `?token=...` or `Authorization: Bearer ...`.
    pub token: String,
    /// Seconds between the chart's samples (it shows the last hour).
    pub history_interval: u32,
}

impl Default for StatsSection {
    fn default() -> Self {
        StatsSection {
            allow: Vec::new(),
            token: String::new(),
            history_interval: 60,
        }
    }
}

/// Restarts without loss: where swarms are saved, and how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// State file; empty: nothing is saved or loaded.
    #[serde(deserialize_with = "path_or_none", serialize_with = "path_or_empty")]
    pub file: Option<PathBuf>,
    /// Seconds between saves (there is always one more at shutdown).
    pub save_interval: u32,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            file: Some("edgetracker.state".into()),
            save_interval: 300,
        }
    }
}

/// WebTorrent: browsers' WebSocket tracker protocol at `ws://host:port/announce`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebtorrentSection {
    /// Accept WebSocket upgrades on the announce paths.
    pub enabled: bool,
    /// `interval` handed to WebTorrent clients (their offers expire within a minute, so it is
    /// short).
    pub announce_interval: u32,
    /// A peer silent this long leaves its swarms, socket or not.
    pub peer_timeout: u32,
    /// Most offers one announce may carry.
    pub max_offers: usize,
    /// Most swarms one connection may be in.
    pub max_torrents_per_connection: usize,
    /// Seconds a WebSocket may go without a message before it is closed.
    pub idle_timeout: u64,
    /// Messages waiting for one connection that reads slowly; more are dropped (and counted).
    pub send_queue: usize,
    /// Offers one connection may have forwarded a minute, after a burst (0: no limit).
    pub offers_per_minute: u32,
    pub offers_burst: u32,
    /// Bytes waiting in all sockets' queues together; more messages are dropped (and counted).
    pub max_queued_bytes: usize,
    /// WebSockets open at once: in all, from one client (an IPv4 address, an IPv6 /64) and
    /// from one network (an IPv4 /24, an IPv6 /48). Apart from `[network]`'s HTTP caps.
    pub max_connections: usize,
    pub max_connections_per_address: u32,
    pub max_connections_per_network: u32,
}

impl Default for WebtorrentSection {
    fn default() -> Self {
        let rtc = edgetracker::swarm::rtc::RtcPolicy::default();
        WebtorrentSection {
            enabled: true,
            announce_interval: rtc.announce_interval,
            peer_timeout: rtc.peer_timeout,
            max_offers: rtc.max_offers,
            max_torrents_per_connection: rtc.max_torrents_per_connection,
            idle_timeout: 300,
            send_queue: 64,
            offers_per_minute: rtc.offers_per_minute,
            offers_burst: rtc.offers_burst,
            max_queued_bytes: 64 << 20,
            max_connections: 16_384,
            max_connections_per_address: 64,
            max_connections_per_network: 256,
        }
    }
}

impl WebtorrentSection {
    pub fn policy(&self) -> edgetracker::swarm::rtc::RtcPolicy {
        edgetracker::swarm::rtc::RtcPolicy {
            announce_interval: self.announce_interval,
            peer_timeout: self.peer_timeout,
            max_offers: self.max_offers,
            max_torrents_per_connection: self.max_torrents_per_connection,
            offers_per_minute: self.offers_per_minute,
            offers_burst: self.offers_burst,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A `tracing` filter: `info`, `debug`, `edgetracker_native=debug,warn`, ...
    pub level: String,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])],
            port: DEFAULT_PORT,
            udp: true,
            http: true,
            trusted_proxy_header: String::new(),
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
            udp_threads: 1,
            udp_steering: UdpSteering::Torrent,
            http_threads: 1,
            http_max_connections: 16_384,
            http_max_connections_per_address: 64,
            http_max_connections_per_network: 256,
            shed_idle_after: 1,
            http_listen_backlog: 4096,
            http_idle_timeout: 30,
            http_defer_accept: 5,
            http_max_header_bytes: 8192,
        }
    }
}

impl Default for TrackerSection {
    fn default() -> Self {
        TrackerSection {
            policy: Policy::default(),
            cleanup_interval: 60,
            rate_limit_per_minute: 1800,
            rate_limit_burst: 3600,
            full_scrape: false,
            full_scrape_interval: 600,
        }
    }
}

impl Default for UdpSection {
    fn default() -> Self {
        UdpSection {
            connection_id_validity: 120,
            connection_id_leniency: 0,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
        }
    }
}

/// The commented default configuration printed by `--print-config`.
pub const DEFAULT_TOML: &str = r#"# edgetracker configuration. Every key is optional; shown are the defaults.
# Precedence: defaults < this file (--config) < environment < command-line flags.
# Any key can be set from the environment as EDGETRACKER__<SECTION>__<KEY>, e.g.
# EDGETRACKER__TRACKER__ANNOUNCE_INTERVAL=900 or EDGETRACKER__NETWORK__LISTEN='["127.0.0.1"]'.

[network]
# Addresses to listen on; each gets a UDP (BEP 15) and a TCP (HTTP) socket on `port`.
# "0.0.0.0" and "::" together serve IPv4 and IPv6 (the IPv6 socket is IPv6-only).
listen = ["0.0.0.0", "::"]
# udp://host:2710/announce and http://host:2710/announce, as XBT Tracker did.
port = 2710
udp = true
http = true
# Behind a reverse proxy, the header that carries the client address, e.g. "X-Forwarded-For".
# The rightmost entry of its last line (the one your proxy added) is used. Empty: the socket
# address is the client.
trusted_proxy_header = ""
# The proxies that header is believed from (addresses or CIDR prefixes, e.g. "10.0.0.0/8");
# requests from anywhere else are their socket address, whatever header they carry.
trusted_proxies = ["127.0.0.1", "::1"]
# UDP threads per address (on Linux each reads a socket of its own, all bound with SO_REUSEPORT),
# and threads serving HTTP.
udp_threads = 1
# With several UDP threads on Linux, how the kernel spreads datagrams over their sockets:
# "torrent" gives each torrent's announces and scrapes to one thread (by the info-hash's first
# four bytes; connects by client), so a swarm's memory stays with its thread (and the
# same-numbered thread of the other address);
# "client" spreads everything by a hash of the client's address and port.
udp_steering = "torrent"
http_threads = 1
# HTTP connections open at once: in all (never more than the open-file limit, raised to its hard
# limit at start, allows), from one client (an IPv4 address or an IPv6 /64) and from one network
# (an IPv4 /24 or an IPv6 /48). At the first cap the idlest connection (the one whose last
# request is oldest, a silent one first) is closed to make room, unless every one looked at made
# a request within the last second; over a cap, a connection gets a failure reason and is
# closed. All of it is counted on /stats. An open connection holds about 15 KB at most (its
# buffers and task): 16,384 of them about 250 MB. WebSockets have caps of their own
# ([webtorrent]).
http_max_connections = 16384
http_max_connections_per_address = 64
http_max_connections_per_network = 256
# Seconds since a connection's last request (or a WebSocket's last message) after which it may be
# closed to make room at http_max_connections or [webtorrent] max_connections. 0: never; new
# connections are refused at the cap instead.
shed_idle_after = 1
# Seconds an HTTP connection may move no byte either way (a client that stops reading its
# answers included) before it is closed.
http_idle_timeout = 30
# Seconds the kernel keeps a new connection to itself until its client sends something (Linux's
# TCP_DEFER_ACCEPT; elsewhere ignored). A request then usually arrives whole with the connection
# and is answered at once; a connection that stays silent costs no descriptor and counts toward
# no cap until then, only a place in the kernel's queue of half-open connections
# (http_listen_backlog; the kernel rounds the wait up to its SYN-ACK retries, 5 s to about 7). 0 hands over every
# connection at once.
http_defer_accept = 5
# Connections the kernel queues for the tracker to accept, and half-open ones it holds for
# http_defer_accept, per listener (Linux caps it at net.core.somaxconn, 4096 by default). Past
# it the kernel answers with SYN cookies, and a connection made with one is handed over at once,
# silent or not: it then takes a descriptor and a place under the caps above, and is the first
# to be closed when they are full.
http_listen_backlog = 4096
# Bytes of request line and headers buffered per connection (at least 8192; an announce needs
# under 1 KB). Longer heads get 431.
http_max_header_bytes = 8192

[tracker]
# Seconds between a client's announces (`interval`), and the least it may wait (`min interval`).
announce_interval = 1800
min_interval = 900
# A peer that has not announced for this many seconds is dropped (at most 43200).
peer_timeout = 2700
# Seconds between sweeps for expired peers.
cleanup_interval = 60
# Peers returned when the client does not say, and at most whatever it says.
# (UDP replies are also capped to one unfragmented datagram: 242 IPv4 or 79 IPv6 peers.)
numwant_default = 50
numwant_max = 200
# Most info hashes in one scrape.
scrape_max_hashes = 64
# Trust the address a client claims (ip=, BEP 15's IP field). Off: it lets anyone point a
# swarm at a third party (BEP 7, 2020 revision).
accept_claimed_ip = false
# Per-client announce limit (token bucket; a client is an IPv4 address or an IPv6 /64): this
# many a minute after a burst of rate_limit_burst. 0 turns it off. Refused announces get "rate
# limited: ..." and are counted as rate_limited on /stats. The default lets one address announce
# 54,000 torrents every 30 minutes (a NAT of some thousands of users) and bounds what one
# address can keep in the swarms to some 81,000 peers (README: "Holding up under abuse").
rate_limit_per_minute = 1800
rate_limit_burst = 3600
# /scrape without info_hash answers for every torrent: expensive, so off by default. When on it
# is built at most every 30 s, sent gzip-compressed to clients that accept gzip, and each client
# may fetch it once per full_scrape_interval seconds.
full_scrape = false
full_scrape_interval = 600
# Seconds a torrent's completed count (scrape's "downloaded") is kept after its last peer left:
# 30 days (counted in whole days). Torrents without peers or a count are forgotten at once. 0:
# counts go with the last peer.
completed_retention = 2592000
# Caps on what clients can make the tracker hold. A new torrent or peer beyond one is refused
# with a failure reason saying which, and counted on /stats. With these defaults memory stays
# under about 2.3 GB, WebTorrent included (README: "Holding up under abuse").
# At max_torrents, torrents kept without peers (for their completed count) make room for a new
# one, oldest first; a torrent with peers is never pushed out.
max_torrents = 5000000
# New torrents one client (an IPv4 address or an IPv6 /64) may create: this many a minute after a
# burst of new_torrents_burst; its network (an IPv4 /24 or an IPv6 /48) four times as many. Over
# it: "too many new torrents from your address, retry later". 0 turns it off. Announces to known
# torrents are not limited by it.
new_torrents_per_minute = 100
new_torrents_burst = 1000
max_peers = 20000000
max_peers_per_torrent = 1000000
# Peers in one torrent from one client (an IPv4 address, an IPv6 /64): one address announcing
# thousands of ports would otherwise fill the peer lists handed to everyone else.
max_peers_per_address = 16

[udp]
# Seconds a BEP 15 connection id stays valid, plus extra leniency for clients (uTorrent) that
# reuse ids minutes later.
connection_id_validity = 120
connection_id_leniency = 0

[access]
# Info-hash list: "off", "allow" (only the listed torrents are served) or "deny" (they are refused).
list_mode = "off"
# File of 40-digit hex info hashes, one per line, # for comments. Reloaded on SIGHUP and when it
# changes; a reload that fails keeps the rules in force (and logs why).
list_file = ""
# File of passkeys (letters, digits, - and _), one per line. Set, the tracker is private: clients
# announce to http://host:2710/<passkey>/announce, or over UDP with that path as BEP 41 URL data
# (udp://host:2710/<passkey>/announce). Reloaded like list_file.
passkeys_file = ""

[state]
# Swarms and completed counts are saved here every save_interval seconds and at shutdown
# (written to <file>.tmp, then renamed), and loaded at start with expired peers dropped. A torn or
# corrupt file is reported, kept as <file>.corrupt, and the tracker starts empty. A relative path
# is relative to the working directory; "" turns saving off.
file = "edgetracker.state"
save_interval = 300

[stats]
# /stats (HTML for browsers, JSON otherwise, ?format=json|prometheus|html) and /metrics are public
# unless these are set: then only the listed client addresses, or whoever presents the token
# (?token=... or "Authorization: Bearer ..."), may see them; others get 403.
allow = []
token = ""
# Seconds between samples of the page's chart of torrents and peers over the last hour.
history_interval = 60

[webtorrent]
# Browsers (WebTorrent) announce over a WebSocket on the HTTP port: ws://host:2710/announce, or
# ws://host:2710/<passkey>/announce on a private tracker (wss:// behind a TLS-terminating proxy).
# The tracker forwards their WebRTC offers and answers; the same access rules and rate limit
# apply.
enabled = true
# interval handed to browsers: their offers expire within a minute, so it is short.
announce_interval = 120
# A browser silent this long leaves its swarms.
peer_timeout = 360
# Offers one announce may carry (each goes to a different peer) and swarms one socket may join.
max_offers = 10
max_torrents_per_connection = 64
# Seconds a WebSocket may stay silent before it is closed.
idle_timeout = 300
# Messages waiting for one slow reader; past this, new ones for it are dropped (and counted).
send_queue = 64
# Offers one socket may have forwarded a minute, after a burst of offers_burst (enough for a
# browser in max_torrents_per_connection swarms, announcing each with max_offers offers). Each
# offer asks a browser to build a WebRTC answer; past the budget an announce still counts, but
# its offers are not forwarded (counted as offers_over_budget). 0 turns it off.
offers_per_minute = 600
offers_burst = 640
# Bytes waiting for slow readers in all sockets' queues together (each socket's own is at most
# send_queue messages and 256 KiB); past it, new messages for anyone are dropped (and counted).
max_queued_bytes = 67108864
# WebSockets open at once: in all, from one client (an IPv4 address or an IPv6 /64) and from one
# network (an IPv4 /24 or an IPv6 /48). A WebSocket leaves [network]'s HTTP caps when it opens,
# so browsers never take the connections announces need. At the first cap the socket silent
# longest (pongs do not count) is closed to make room, unless every one looked at sent a
# message within the last second. An open socket holds about 10 KB (its buffers and task, and
# its queue while a reader is slow): 16,384 of them about 160 MB.
max_connections = 16384
max_connections_per_address = 64
max_connections_per_network = 256

[log]
# A tracing filter: "warn", "info", "debug", "edgetracker_native=debug". Nothing per request is
# logged at info. RUST_LOG, when set, wins.
level = "info"
"#;

/// edgetracker: a BitTorrent tracker serving UDP (BEP 15) and HTTP on one port (2710).
#[derive(Parser, Debug, Default)]
#[command(name = "edgetracker", version, about)]
pub struct Cli {
    /// TOML configuration file (see --print-config).
    #[arg(long, short, env = "EDGETRACKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Port for both UDP and HTTP [default: 2710].
    #[arg(long, short, env = "EDGETRACKER_PORT")]
    pub port: Option<u16>,
    /// Address to listen on; repeat for several [default: 0.0.0.0 and ::].
    #[arg(
        long = "listen",
        short = 'l',
        value_name = "ADDR",
        env = "EDGETRACKER_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<IpAddr>,
    /// Log filter (e.g. warn, info, debug) [default: info].
    #[arg(long, env = "EDGETRACKER_LOG")]
    pub log_level: Option<String>,
    /// Print the commented default configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl Config {
    /// Builds the configuration from an optional file, the environment and the flags.
    pub fn load(
        cli: &Cli,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let mut table: toml::Table = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                text.parse()
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("EDGETRACKER__") else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                return Err(format!("{name}: expected EDGETRACKER__SECTION__KEY"));
            };
            let section = table
                .entry(section.to_ascii_lowercase())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| format!("{name}: not a section"))?;
            section.insert(key.to_ascii_lowercase(), parse_env_value(&value));
        }
        let mut config = Config::from_table(table)?;
        if let Some(port) = cli.port {
            config.network.port = port;
        }
        if !cli.listen.is_empty() {
            config.network.listen = cli.listen.clone();
        }
        if let Some(level) = &cli.log_level {
            config.log.level = level.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// A configuration file's text, checked as `load` checks it (unknown keys refused,
    /// then validated), without the environment or the flags.
    pub fn parse(text: &str) -> Result<Config, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("configuration: {e}"))?;
        let config = Config::from_table(table)?;
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table) -> Result<Config, String> {
        refuse_unknown_keys(&table)?;
        toml::Value::Table(table)
            .try_into()
            .map_err(|e| format!("configuration: {e}"))
    }

    pub fn policy(&self) -> Policy {
        Policy {
            // The memory store is consistent: the second peer of a torrent finds the first.
            sparse_swarm_interval: 0,
            ..self.tracker.policy.clone()
        }
    }

    /// `[network] trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.network
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("[network] trusted_proxies: {p:?} is not an address or CIDR prefix")
                    })
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.policy()
            .validate()
            .map_err(|e| format!("[tracker] {e}"))?;
        if self.network.listen.is_empty() {
            return Err("[network] listen must name at least one address".into());
        }
        if !self.network.udp && !self.network.http {
            return Err("[network] enable udp, http or both".into());
        }
        if self.network.udp_threads == 0 || self.network.http_threads == 0 {
            return Err("[network] udp_threads and http_threads must be at least 1".into());
        }
        let ws = &self.webtorrent;
        for (cap, name) in [
            (
                self.network.http_max_connections,
                "[network] http_max_connections",
            ),
            (
                self.network.http_max_connections_per_address as usize,
                "[network] http_max_connections_per_address",
            ),
            (
                self.network.http_max_connections_per_network as usize,
                "[network] http_max_connections_per_network",
            ),
            (
                self.network.http_listen_backlog as usize,
                "[network] http_listen_backlog",
            ),
            (ws.max_connections, "[webtorrent] max_connections"),
            (
                ws.max_connections_per_address as usize,
                "[webtorrent] max_connections_per_address",
            ),
            (
                ws.max_connections_per_network as usize,
                "[webtorrent] max_connections_per_network",
            ),
        ] {
            if cap == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.network.http_idle_timeout == 0 {
            return Err("[network] http_idle_timeout must be positive".into());
        }
        if self.network.http_max_header_bytes < 8192 {
            return Err("[network] http_max_header_bytes must be at least 8192".into());
        }
        if self.tracker.cleanup_interval == 0
            || self.tracker.cleanup_interval > self.tracker.policy.peer_timeout
        {
            return Err("[tracker] cleanup_interval must be between 1 and peer_timeout".into());
        }
        // Peers keep a 16-bit last-seen stamp that wraps every 65,536 s: a sweep must see every
        // peer before its stamp could wrap back into the timeout, with slack for a slow sweep.
        if self.tracker.policy.peer_timeout + self.tracker.cleanup_interval > STAMP_SPAN {
            return Err(format!(
                "[tracker] peer_timeout + cleanup_interval must be at most {STAMP_SPAN} s (last-seen stamps wrap every 18 h)"
            ));
        }
        let ws = &self.webtorrent;
        ws.policy()
            .validate()
            .map_err(|e| format!("[webtorrent] {e}"))?;
        if u64::from(ws.announce_interval) >= ws.idle_timeout {
            return Err(
                "[webtorrent] idle_timeout must be longer than announce_interval (a browser's socket is silent between announces)".into(),
            );
        }
        if ws.max_queued_bytes < edgetracker::protocol::ws::MAX_MESSAGE {
            return Err(format!(
                "[webtorrent] max_queued_bytes must be at least {} (one message)",
                edgetracker::protocol::ws::MAX_MESSAGE
            ));
        }
        if ws.send_queue == 0 {
            return Err("[webtorrent] send_queue must be at least 1".into());
        }
        let proxies = self.trusted_proxies()?;
        if !self.network.trusted_proxy_header.is_empty() && proxies.is_empty() {
            return Err(
                "[network] trusted_proxy_header needs trusted_proxies: the addresses of your proxies"
                    .into(),
            );
        }
        if self.access.list_mode != ListMode::Off && self.access.list_file.is_none() {
            return Err(format!(
                "[access] list_mode = \"{}\" needs a list_file",
                self.access.list_mode.as_str()
            ));
        }
        if self.stats.history_interval == 0 || self.stats.history_interval > 3600 {
            return Err("[stats] history_interval must be between 1 and 3600".into());
        }
        if self.state.save_interval == 0 {
            return Err("[state] save_interval must be positive".into());
        }
        if self.udp.connection_id_validity == 0 {
            return Err("[udp] connection_id_validity must be positive".into());
        }
        Ok(())
    }
}

/// Longest `peer_timeout + cleanup_interval`: the 16-bit stamps' span less twice the ages
/// expiry takes for stamps from the future (a clock stepped back), leaving as much again for a
/// late sweep.
const STAMP_SPAN: u32 = 65_536 - 2 * edgetracker::swarm::peer_list::FUTURE_SLACK as u32;

/// An environment value as TOML (numbers, booleans, arrays), or else as a plain string.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn printed_default_is_the_default() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
        parsed.validate().unwrap();
    }

    /// `section.key` for every key line of a TOML text, in order.
    fn keys_in_order(text: &str) -> Vec<String> {
        let mut section = String::new();
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((key, _)) = line.split_once('=')
                && !line.starts_with('#')
            {
                keys.push(format!("{section}.{}", key.trim()));
            }
        }
        keys
    }

    /// The structs are the one list of knobs: `--print-config` and the README's configuration
    /// block name every key they have, and no other, with its default value.
    #[test]
    fn printed_and_documented_configurations_match_the_structs() {
        let known = toml::Table::try_from(Config::default()).unwrap();
        let mut from_structs: Vec<String> = known
            .iter()
            .flat_map(|(section, keys)| {
                let keys = keys.as_table().unwrap();
                keys.keys().map(move |k| format!("{section}.{k}"))
            })
            .collect();
        from_structs.sort();

        let printed = keys_in_order(DEFAULT_TOML);
        let mut sorted = printed.clone();
        sorted.sort();
        assert_eq!(sorted, from_structs, "--print-config and the structs");

        let readme = include_str!("../../README.md");
        let block = readme
            .split("### Configuration file")
            .nth(1)
            .and_then(|s| s.split("```toml\n").nth(1))
            .and_then(|s| s.split("```").next())
            .expect("the README's configuration block");
        assert_eq!(
            keys_in_order(block),
            printed,
            "the README's block and --print-config"
        );
        let documented: Config = toml::from_str(block).unwrap();
        assert_eq!(
            documented,
            Config::default(),
            "the README's values are the defaults"
        );
    }

    #[test]
    fn unknown_keys_are_refused_in_every_section() {
        let dir = std::env::temp_dir().join(format!("edgetracker-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        for (text, want) in [
            (
                "[tracker]\nannounce_intervall = 60\n",
                "[tracker] has no key \"announce_intervall\"",
            ),
            ("[tracker]\nsparse_swarm_interval = 60\n", "has no key"),
            ("[network]\nprot = 1\n", "[network] has no key \"prot\""),
            ("[trackers]\n", "unknown section [trackers]"),
        ] {
            std::fs::write(&path, text).unwrap();
            let cli = Cli {
                config: Some(path.clone()),
                ..Cli::default()
            };
            let err = Config::load(&cli, no_env()).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let env = vec![("EDGETRACKER__TRACKER__PEER_TIMEOUTT".into(), "60".into())];
        let err = Config::load(&Cli::default(), env).unwrap_err();
        assert!(err.contains("has no key \"peer_timeoutt\""), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn defaults_listen_on_both_families_on_2710() {
        let c = Config::load(&Cli::default(), no_env()).unwrap();
        assert_eq!(c.network.port, 2710);
        assert_eq!(
            c.network.listen,
            vec!["0.0.0.0".parse::<IpAddr>().unwrap(), "::".parse().unwrap()]
        );
    }

    #[test]
    fn file_env_and_flags_layer_in_order() {
        let dir = std::env::temp_dir().join(format!("edgetracker-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[network]\nport = 7000\n[tracker]\nannounce_interval = 600\nmin_interval = 300\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path.clone()),
            ..Cli::default()
        };
        let env = vec![
            (
                "EDGETRACKER__TRACKER__ANNOUNCE_INTERVAL".to_string(),
                "900".to_string(),
            ),
            (
                "EDGETRACKER__NETWORK__LISTEN".to_string(),
                r#"["127.0.0.1"]"#.to_string(),
            ),
            ("EDGETRACKER__LOG__LEVEL".to_string(), "debug".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load(&cli, env.clone()).unwrap();
        assert_eq!(
            (
                c.network.port,
                c.tracker.policy.announce_interval,
                c.tracker.policy.min_interval
            ),
            (7000, 900, 300)
        );
        assert_eq!(
            c.network.listen,
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.log.level, "debug");
        let cli = Cli {
            config: Some(path),
            port: Some(6969),
            listen: vec!["::1".parse().unwrap()],
            ..Cli::default()
        };
        let c = Config::load(&cli, env).unwrap();
        assert_eq!(c.network.port, 6969);
        assert_eq!(c.network.listen, vec!["::1".parse::<IpAddr>().unwrap()]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn mistakes_are_reported_by_name() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let err = Config::load(
            &Cli::default(),
            env("EDGETRACKER__TRACKER__ANNOUNCE_INTERVALL", "5"),
        )
        .unwrap_err();
        assert!(err.contains("announce_intervall"), "{err}");
        let err = Config::load(
            &Cli::default(),
            env("EDGETRACKER__TRACKER__PEER_TIMEOUT", "10"),
        )
        .unwrap_err();
        assert!(err.contains("peer_timeout"), "{err}");
        let err =
            Config::load(&Cli::default(), env("EDGETRACKER__NETWORK__PORT", "\"x\"")).unwrap_err();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn cli_flags_parse() {
        let cli = Cli::try_parse_from([
            "edgetracker",
            "--port",
            "6969",
            "--listen",
            "127.0.0.1",
            "--listen",
            "::1",
        ])
        .unwrap();
        assert_eq!(cli.port, Some(6969));
        assert_eq!(cli.listen.len(), 2);
    }

    #[test]
    fn settings_where_expiry_cannot_see_the_stamps_wrap_are_refused() {
        let mut c = Config::default();
        c.tracker.policy.announce_interval = 1800;
        c.tracker.policy.peer_timeout = 43_200;
        c.tracker.cleanup_interval = 32_768;
        let err = c.validate().unwrap_err();
        assert!(err.contains("peer_timeout + cleanup_interval"), "{err}");
        c.tracker.cleanup_interval = 3600;
        c.validate().unwrap();
    }

    #[test]
    fn a_proxy_header_without_proxies_to_believe_is_refused() {
        let mut c = Config::default();
        c.network.trusted_proxy_header = "X-Forwarded-For".into();
        c.validate().unwrap();
        c.network.trusted_proxies.clear();
        assert!(c.validate().unwrap_err().contains("needs trusted_proxies"));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_prefixes() {
        let mut c = Config::default();
        c.network.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into(), "192.0.2.7".into()];
        assert_eq!(c.trusted_proxies().unwrap().len(), 3);
        c.network.trusted_proxies.push("proxy.example".into());
        assert!(
            c.validate()
                .unwrap_err()
                .contains("\"proxy.example\" is not an address")
        );
    }

    #[test]
    fn access_settings_are_typed_and_read_as_before() {
        let c: Config = toml::from_str(
            "[access]\nlist_mode = \"Deny\"\nlist_file = \"/etc/deny.txt\"\npasskeys_file = \"\"\n",
        )
        .unwrap();
        assert_eq!(c.access.list_mode, ListMode::Deny);
        assert_eq!(c.access.list_file, Some(PathBuf::from("/etc/deny.txt")));
        assert_eq!(c.access.passkeys_file, None, "an empty path is none");
        c.validate().unwrap();

        let err = toml::from_str::<Config>("[access]\nlist_mode = \"maybe\"\n").unwrap_err();
        assert!(
            err.to_string().contains("expected off, allow or deny"),
            "{err}"
        );
        let c: Config = toml::from_str("[access]\nlist_mode = \"allow\"\n").unwrap();
        assert!(c.validate().unwrap_err().contains("needs a list_file"));
    }
}
