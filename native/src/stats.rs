//! Request counters and the `/stats` renderings (JSON, Prometheus text).
//!
//! Counters are relaxed atomics bumped once per request, in stripes: each thread bumps its own
//! stripe's, so threads on different cores do not hand the counters' cache lines back and forth
//! on every request, and a read adds the stripes up. Swarm totals come from the store's own
//! per-shard counts. Owns naming and formats of the metrics; may not touch swarms or sockets.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use edgetracker::protocol::types::Family;
use edgetracker::service::{Action, Outcome};
use edgetracker::store::{Full, Totals};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Http,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Http => "http",
        }
    }
}

const PROTOCOLS: [Protocol; 2] = [Protocol::Udp, Protocol::Http];
const FAMILIES: [Family; 2] = [Family::V4, Family::V6];
/// Counted kinds: the three actions, then requests that were not recognisable at all.
const KINDS: [&str; 4] = ["connect", "announce", "scrape", "invalid"];

#[derive(Default)]
struct Cell {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// Stripes of request counters, handed to threads in turn as they first count: more than the
/// threads a small tracker runs, so that they rarely share one; past 16 counting threads some
/// do (a shared stripe is still correct, only slower).
const STRIPES: usize = 16;

/// A value on cache lines of its own, so that a thread writing it moves no line another thread
/// writes (x86 prefetches lines in pairs, hence 128).
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One stripe: per protocol, family and kind.
type Stripe = Padded<[[[Cell; 4]; 2]; 2]>;

thread_local! {
    /// This thread's stripe, handed out in turn as threads first count.
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

/// Per protocol, family and kind: requests seen and requests refused.
#[derive(Default)]
pub struct Stats {
    stripes: [Stripe; STRIPES],
    store_errors: AtomicU64,
    rate_limited: AtomicU64,
    udp_restarts: AtomicU64,
    /// Announces refused at a cap, by [`Full::ALL`]'s order.
    full: [AtomicU64; Full::ALL.len()],
}

fn kind_index(action: Option<Action>) -> usize {
    match action {
        Some(Action::Connect) => 0,
        Some(Action::Announce) => 1,
        Some(Action::Scrape) => 2,
        None => 3,
    }
}

fn index(protocol: Protocol, family: Family) -> (usize, usize) {
    let p = PROTOCOLS
        .iter()
        .position(|&x| x == protocol)
        .expect("known protocol");
    let f = FAMILIES
        .iter()
        .position(|&x| x == family)
        .expect("known family");
    (p, f)
}

impl Stats {
    pub fn record(&self, protocol: Protocol, family: Family, outcome: &Outcome) {
        let (p, f) = index(protocol, family);
        let stripe = &self.stripes[STRIPE.with(|s| *s)];
        let cell = &stripe.0[p][f][kind_index(outcome.action)];
        cell.requests.fetch_add(1, Ordering::Relaxed);
        if outcome.error.is_some() {
            cell.errors.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.store_error.is_some() {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.rate_limited {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(full) = outcome.full {
            let i = Full::ALL
                .iter()
                .position(|&f| f == full)
                .expect("every cap");
            self.full[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn load(&self, protocol: Protocol, family: Family, kind: usize) -> (u64, u64) {
        let (p, f) = index(protocol, family);
        self.stripes.iter().fold((0, 0), |(n, e), stripe| {
            let c = &stripe.0[p][f][kind];
            (
                n + c.requests.load(Ordering::Relaxed),
                e + c.errors.load(Ordering::Relaxed),
            )
        })
    }

    /// Every counter as (protocol, family, action, requests, errors), for the HTML page.
    pub fn rows(&self) -> Vec<(&'static str, &'static str, &'static str, u64, u64)> {
        let mut rows = Vec::new();
        for p in PROTOCOLS {
            for f in FAMILIES {
                for (k, name) in KINDS.iter().enumerate() {
                    let (n, e) = self.load(p, f, k);
                    rows.push((p.as_str(), f.as_str(), *name, n, e));
                }
            }
        }
        rows
    }

    pub fn count_udp_restart(&self) {
        self.udp_restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// The JSON form of `/stats`.
    pub fn json(&self, totals: &Totals, uptime: u64) -> serde_json::Value {
        let mut requests = serde_json::Map::new();
        for p in PROTOCOLS {
            let mut per_family = serde_json::Map::new();
            for f in FAMILIES {
                let mut kinds = serde_json::Map::new();
                for (k, name) in KINDS.iter().enumerate() {
                    let (n, e) = self.load(p, f, k);
                    kinds.insert((*name).into(), json!({ "requests": n, "errors": e }));
                }
                per_family.insert(f.as_str().into(), kinds.into());
            }
            requests.insert(p.as_str().into(), per_family.into());
        }
        json!({
            "uptime_seconds": uptime,
            "torrents": totals.torrents,
            "peers": totals.peers(),
            "seeders": totals.seeders(),
            "leechers": totals.leechers(),
            "ipv4": { "seeders": totals.seeders_v4, "leechers": totals.leechers_v4 },
            "ipv6": { "seeders": totals.seeders_v6, "leechers": totals.leechers_v6 },
            "requests": requests,
            "store_errors": self.store_errors.load(Ordering::Relaxed),
            "rate_limited": self.rate_limited.load(Ordering::Relaxed),
            "udp_restarts": self.udp_restarts.load(Ordering::Relaxed),
            "refused_at_cap": Full::ALL
                .iter()
                .zip(&self.full)
                .map(|(f, n)| (f.name().to_string(), json!(n.load(Ordering::Relaxed))))
                .collect::<serde_json::Map<_, _>>(),
        })
    }

    /// The Prometheus text exposition form (`/metrics`, `/stats?format=prometheus`).
    pub fn prometheus(&self, totals: &Totals, uptime: u64) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            "edgetracker_requests_total",
            "counter",
            "Requests received, by protocol, address family and action.",
        );
        family(
            "edgetracker_errors_total",
            "counter",
            "Requests refused with an error, by protocol, address family and action.",
        );
        family("edgetracker_torrents", "gauge", "Torrents tracked.");
        family(
            "edgetracker_peers",
            "gauge",
            "Peers in swarms, by address family and role.",
        );
        family(
            "edgetracker_store_errors_total",
            "counter",
            "Requests served without store data after a store failure.",
        );
        family(
            "edgetracker_rate_limited_total",
            "counter",
            "Announces refused by the per-address rate limit.",
        );
        family(
            "edgetracker_uptime_seconds",
            "gauge",
            "Seconds since start.",
        );
        for p in PROTOCOLS {
            for f in FAMILIES {
                for (k, name) in KINDS.iter().enumerate() {
                    let (n, e) = self.load(p, f, k);
                    let labels = format!(
                        "protocol=\"{}\",family=\"{}\",action=\"{name}\"",
                        p.as_str(),
                        f.as_str()
                    );
                    let _ = writeln!(out, "edgetracker_requests_total{{{labels}}} {n}");
                    let _ = writeln!(out, "edgetracker_errors_total{{{labels}}} {e}");
                }
            }
        }
        let _ = writeln!(out, "edgetracker_torrents {}", totals.torrents);
        for (fam, s, l) in [
            ("ipv4", totals.seeders_v4, totals.leechers_v4),
            ("ipv6", totals.seeders_v6, totals.leechers_v6),
        ] {
            let _ = writeln!(
                out,
                "edgetracker_peers{{family=\"{fam}\",role=\"seeder\"}} {s}"
            );
            let _ = writeln!(
                out,
                "edgetracker_peers{{family=\"{fam}\",role=\"leecher\"}} {l}"
            );
        }
        let _ = writeln!(
            out,
            "edgetracker_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "edgetracker_store_errors_total {}",
            self.store_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP edgetracker_udp_restarts_total UDP serving threads restarted after a panic.\n# TYPE edgetracker_udp_restarts_total counter\nedgetracker_udp_restarts_total {}",
            self.udp_restarts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP edgetracker_refused_at_cap_total Announces refused at a cap on torrents or peers.\n# TYPE edgetracker_refused_at_cap_total counter"
        );
        for (f, n) in Full::ALL.iter().zip(&self.full) {
            let _ = writeln!(
                out,
                "edgetracker_refused_at_cap_total{{cap=\"{}\"}} {}",
                f.name(),
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "edgetracker_uptime_seconds {uptime}");
        out
    }
}

/// Datagrams each UDP thread received: how evenly the kernel spreads them (by client, or by
/// torrent with `udp_steering = "torrent"`). Each thread adds to its own counter once a batch.
pub struct UdpThreads {
    /// Each thread's address and its index among that address's threads.
    threads: Vec<(SocketAddr, usize)>,
    received: Box<[Padded<AtomicU64>]>,
    /// Whether the kernel steers announces and scrapes by torrent (it may refuse the program).
    by_torrent: bool,
}

impl UdpThreads {
    pub fn new(threads: Vec<(SocketAddr, usize)>, by_torrent: bool) -> Self {
        let received = threads.iter().map(|_| Padded::default()).collect();
        UdpThreads {
            threads,
            received,
            by_torrent,
        }
    }

    fn steering(&self) -> &'static str {
        if self.by_torrent { "torrent" } else { "client" }
    }

    /// Counts `datagrams` received by thread `slot` (its place in the list given to `new`).
    pub fn received(&self, slot: usize, datagrams: usize) {
        if let Some(c) = self.received.get(slot) {
            c.0.fetch_add(datagrams as u64, Ordering::Relaxed);
        }
    }

    fn each(&self) -> impl Iterator<Item = (SocketAddr, usize, u64)> + '_ {
        self.threads
            .iter()
            .zip(&self.received)
            .map(|(&(addr, i), c)| (addr, i, c.0.load(Ordering::Relaxed)))
    }

    /// `/stats`' `udp_threads`: `{"steering": "torrent" | "client", "threads": [{"address",
    /// "thread", "datagrams"}]}`.
    pub fn json(&self) -> serde_json::Value {
        let threads: Vec<_> = self
            .each()
            .map(|(addr, thread, n)| {
                json!({ "address": addr.to_string(), "thread": thread, "datagrams": n })
            })
            .collect();
        json!({ "steering": self.steering(), "threads": threads })
    }

    pub fn prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP edgetracker_udp_datagrams_total Datagrams received, by UDP thread.\n# TYPE edgetracker_udp_datagrams_total counter\n",
        );
        for (addr, thread, n) in self.each() {
            let _ = writeln!(
                out,
                "edgetracker_udp_datagrams_total{{address=\"{addr}\",thread=\"{thread}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP edgetracker_udp_steered_by_torrent 1 if the kernel gives each torrent's announces to one UDP thread.\n# TYPE edgetracker_udp_steered_by_torrent gauge\nedgetracker_udp_steered_by_torrent {}",
            u8::from(self.by_torrent)
        );
        out
    }
}

/// A connection pool's counters in Prometheus text form: `kind` is `http` or `websocket`.
pub fn connections_prometheus(kind: &str, c: &crate::connections::Counts) -> String {
    let mut out = String::new();
    let name = format!("edgetracker_{kind}_connections");
    let _ = writeln!(
        out,
        "# HELP {name} Open {kind} connections.\n# TYPE {name} gauge\n{name} {}",
        c.open
    );
    let _ = writeln!(
        out,
        "# HELP {name}_refused_total {kind} connections refused at a cap.\n# TYPE {name}_refused_total counter"
    );
    for (cap, n) in [
        ("total", c.refused_total_cap),
        ("per_address", c.refused_per_address_cap),
        ("per_network", c.refused_per_network_cap),
    ] {
        let _ = writeln!(out, "{name}_refused_total{{cap=\"{cap}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP {name}_shed_total Idle {kind} connections closed to admit another at the cap.\n# TYPE {name}_shed_total counter\n{name}_shed_total {}",
        c.shed_idle
    );
    if kind == "http" {
        let _ = writeln!(
            out,
            "# HELP {name}_idle_closed_total HTTP connections closed for moving nothing.\n# TYPE {name}_idle_closed_total counter\n{name}_idle_closed_total {}",
            c.closed_idle
        );
        let _ = writeln!(
            out,
            "# HELP edgetracker_http_answered_at_accept_total HTTP requests answered at accept (whole, on a connection that closes after them).\n# TYPE edgetracker_http_answered_at_accept_total counter\nedgetracker_http_answered_at_accept_total {}",
            c.answered_at_accept
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up_across_stripes() {
        let stats = Stats::default();
        let ok = Outcome {
            action: Some(Action::Connect),
            ..Outcome::default()
        };
        // More threads than stripes, so some share one.
        std::thread::scope(|s| {
            for _ in 0..STRIPES + 4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        stats.record(Protocol::Udp, Family::V4, &ok);
                    }
                });
            }
        });
        let want = (STRIPES as u64 + 4) * 1000;
        assert_eq!(stats.load(Protocol::Udp, Family::V4, 0), (want, 0));
        let rows = stats.rows();
        assert!(rows.contains(&("udp", "ipv4", "connect", want, 0)));
    }

    #[test]
    fn counts_land_in_their_cells_in_both_forms() {
        let stats = Stats::default();
        let ok = Outcome {
            action: Some(Action::Announce),
            ..Outcome::default()
        };
        let bad = Outcome {
            error: Some("packet too short".into()),
            ..Outcome::default()
        };
        stats.record(Protocol::Udp, Family::V6, &ok);
        stats.record(Protocol::Udp, Family::V6, &ok);
        stats.record(Protocol::Http, Family::V4, &bad);
        let totals = Totals {
            torrents: 3,
            seeders_v4: 1,
            leechers_v4: 2,
            seeders_v6: 4,
            leechers_v6: 0,
        };
        let j = stats.json(&totals, 5);
        assert_eq!(j["requests"]["udp"]["ipv6"]["announce"]["requests"], 2);
        assert_eq!(j["requests"]["http"]["ipv4"]["invalid"]["errors"], 1);
        assert_eq!(
            (
                j["torrents"].as_u64(),
                j["peers"].as_u64(),
                j["seeders"].as_u64()
            ),
            (Some(3), Some(7), Some(5))
        );
        let p = stats.prometheus(&totals, 5);
        assert!(p.contains("edgetracker_requests_total{protocol=\"udp\",family=\"ipv6\",action=\"announce\"} 2\n"), "{p}");
        assert!(p.contains(
            "edgetracker_errors_total{protocol=\"http\",family=\"ipv4\",action=\"invalid\"} 1\n"
        ));
        assert!(p.contains("edgetracker_peers{family=\"ipv6\",role=\"seeder\"} 4\n"));
    }
}
