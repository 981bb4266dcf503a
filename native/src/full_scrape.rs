//! Full scrape: `/scrape` without `info_hash` answers for every torrent. Off by default.
//!
//! It is the most expensive request a tracker serves, so the answer is built at most once per
//! [`CACHE_FOR`] and shared, sent gzip-compressed to clients that accept it (scrape replies
//! compress about threefold: info hashes do not, the keys around them do), and each client (an
//! IPv4 address or an IPv6 /64, as for the announce limit) may fetch it once per
//! `full_scrape_interval` seconds (a WebSocket full scrape counts against the same interval).
//! Native only: on the edge it would mean listing all of KV, or asking every object.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgetracker::InfoHash;
use edgetracker::UnixTime;
use edgetracker::access::Access;
use edgetracker::protocol::bencode::write_scrape_sorted;
use edgetracker::protocol::types::SwarmCounts;
use edgetracker::ratelimit::client_key;
use edgetracker::store::memory::MemoryStore;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::body::Bytes;

/// How long one built answer is served to everyone.
pub const CACHE_FOR: Duration = Duration::from_secs(30);

struct Built {
    at: Instant,
    /// The access rules it was filtered by: a reload rebuilds it.
    access: Arc<Access>,
    plain: Bytes,
    gzip: Bytes,
}

pub struct FullScrape {
    interval: u32,
    last_by_client: Mutex<HashMap<IpAddr, UnixTime>>,
    cache: Mutex<Option<Built>>,
}

impl FullScrape {
    pub fn new(interval: u32) -> Self {
        FullScrape {
            interval,
            last_by_client: Mutex::new(HashMap::new()),
            cache: Mutex::new(None),
        }
    }

    /// The full scrape for `ip` at `now`, gzip-compressed if `gzip`; or why not.
    pub fn serve(
        &self,
        store: &MemoryStore,
        access: &Arc<Access>,
        ip: IpAddr,
        now: UnixTime,
        gzip: bool,
    ) -> Result<Bytes, String> {
        self.permit(ip, now)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .as_ref()
            .is_none_or(|b| b.at.elapsed() >= CACHE_FOR || !Arc::ptr_eq(&b.access, access))
        {
            *cache = Some(build(store, access));
        }
        let built = cache.as_ref().expect("just built");
        Ok(if gzip {
            built.gzip.clone()
        } else {
            built.plain.clone()
        })
    }

    /// Whether `ip` may have a full scrape at `now` (one per `full_scrape_interval` per client,
    /// over HTTP and WebSocket together), counting it if so.
    pub fn permit(&self, ip: IpAddr, now: UnixTime) -> Result<(), String> {
        let client = client_key(ip);
        let mut last = self
            .last_by_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(&at) = last.get(&client)
            && now.since(at) < self.interval
        {
            return Err(format!(
                "full scrape rate limited: once every {} s per address",
                self.interval
            ));
        }
        last.insert(client, now);
        Ok(())
    }

    /// Forgets addresses whose interval has passed.
    pub fn prune(&self, now: UnixTime) {
        let interval = self.interval;
        self.last_by_client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, at| now.since(*at) < interval);
    }
}

/// Every torrent the access rules admit: one that was denied (or dropped from the allow list)
/// after it had swarms stays in the store, and must not be listed.
fn build(store: &MemoryStore, access: &Arc<Access>) -> Built {
    let mut entries: Vec<(InfoHash, SwarmCounts)> = Vec::new();
    store.for_each_torrent(|hash, t| {
        if access.check_torrent(hash).is_ok() {
            entries.push((*hash, t.counts()));
        }
    });
    entries.sort_unstable_by_key(|e| e.0);
    let mut plain = Vec::with_capacity(16 + entries.len() * 80);
    write_scrape_sorted(&entries, &mut plain);
    let mut gz = GzEncoder::new(Vec::with_capacity(plain.len() / 2), Compression::fast());
    // Compressing into memory cannot fail.
    let _ = gz.write_all(&plain);
    let gzip = gz.finish().unwrap_or_default();
    Built {
        at: Instant::now(),
        access: access.clone(),
        plain: plain.into(),
        gzip: gzip.into(),
    }
}
