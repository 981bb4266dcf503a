//! The Workers KV store: one key per peer, expired by KV itself.
//!
//! Layout (all ASCII, so KV's byte-order listing groups each swarm):
//!
//! ```text
//! q4:<info hash hex>:<order>   a peer of the IPv4 swarm; q6: for IPv6. <order>: 16 hex digits of
//!     a keyed hash of the compact peer. Value ""; metadata {"s": 0|1 seeding, "t": unix time of
//!     the write, "a": compact peer hex, "c": 1 for a seeder gone back to leeching (absent: 0)};
//!     expirationTtl = peer timeout
//! d:<info hash hex>            completed count (decimal), no expiry
//! ```
//!
//! A swarm is read through its first pages in key order, so the order is a keyed hash: a list
//! page is a uniform sample of the swarm that nobody can place its peers in front of (ordered by
//! address, 250 addresses whose keys sorted first filled the view, locked newcomers out and
//! were the only peers handed out). The key comes from the home (the Worker derives it from its
//! Durable Object namespace: the same in every isolate, never sent to a client). Entries of the
//! earlier layout (`p4:`/`p6:`, ordered by address) are no longer read and expire by their TTL.
//!
//! Why: a read-modify-write array per swarm loses updates between peers and hits KV's one write
//! per second per key on any popular torrent; a key per peer has neither problem, and one prefix
//! `list` returns exactly one swarm of one family, metadata included, so an announce reads its
//! whole swarm in one operation. An entry is rewritten only if it would not outlive the client's
//! next announce (or the peer's role changed), so steady-state announces cost a list, a read of
//! the completed count and, usually, no write. Counts are kept apart from this module's policy:
//! peer selection is the core's. The completed count is a read-modify-write: two completions of
//! one torrent within KV's propagation delay can count once (documented; counts are advisory).

use std::cell::Cell;
use std::future::Future;

use rand_core::Rng;
use serde::{Deserialize, Serialize};
use worker::kv::KvStore;

use super::{hex, unhex};
use crate::protocol::types::{Event, InfoHash, SwarmCounts};
use crate::store::{AnnounceError, Full, PeerAnnounce, PeerStore, StoreError};
use crate::swarm::{PeerAddr, Policy, select};
use crate::time::UnixTime;

/// The KV binding of wrangler.toml.
pub const BINDING: &str = "SWARMS";

/// KV refuses expirationTtl below 60 s.
pub const MIN_TTL: u32 = 60;
/// Keys per list page (KV's maximum).
const PAGE: u64 = 1000;
/// Pages read per swarm: bounds one announce to a few operations (far below the 1000-operation
/// cap per invocation) and a swarm view to 4000 peers per family, plenty to pick 100 from.
const MAX_PAGES: usize = 4;
/// The most peers of one family an announce sees, and so the most `MAX_PEERS_PER_TORRENT` can
/// count on KV.
pub const MAX_VIEW: u32 = (MAX_PAGES as u64 * PAGE) as u32;

/// KV operations performed, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    pub list: u32,
    pub get: u32,
    pub put: u32,
    pub delete: u32,
}

impl OpCounts {
    pub fn total(&self) -> u32 {
        self.list + self.get + self.put + self.delete
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    /// 1 if seeding.
    s: u8,
    /// When it was written.
    t: UnixTime,
    /// The compact peer, hex (the key holds only its keyed hash).
    #[serde(default)]
    a: String,
    /// 1: a seeder that announced something left again; its next `completed` is not counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    c: u8,
}

fn is_zero(c: &u8) -> bool {
    *c == 0
}

/// One listed peer.
struct Listed {
    addr: Vec<u8>,
    seeding: bool,
    written: UnixTime,
    demoted: bool,
}

pub struct KvPeerStore {
    kv: KvStore,
    policy: Policy,
    /// Prepended to every key: lets tests give each store its own namespace in one KV.
    namespace: String,
    /// Keys the order of a swarm's keys (see the module doc).
    order_key: [u8; 16],
    ops: Cell<OpCounts>,
}

fn kv_error(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("workers kv: {e}"))
}

impl KvPeerStore {
    /// `order_key` orders each swarm's keys: secret, and the same wherever the store is opened.
    pub fn new(kv: KvStore, policy: Policy, namespace: String, order_key: [u8; 16]) -> Self {
        KvPeerStore {
            kv,
            policy,
            namespace,
            order_key,
            ops: Cell::new(OpCounts::default()),
        }
    }

    /// A peer's key in the swarm whose keys start with `prefix`.
    fn peer_key(&self, prefix: &str, peer: &[u8]) -> String {
        use std::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_key(&self.order_key);
        h.write(peer);
        format!("{prefix}{:016x}", h.finish())
    }

    /// Operations performed through this store so far.
    pub fn ops(&self) -> OpCounts {
        self.ops.get()
    }

    fn count(&self, f: impl FnOnce(&mut OpCounts)) {
        let mut ops = self.ops.get();
        f(&mut ops);
        self.ops.set(ops);
    }

    fn swarm_prefix(&self, hash: &InfoHash, v6: bool) -> String {
        format!(
            "{}q{}:{}:",
            self.namespace,
            if v6 { 6 } else { 4 },
            hex(&hash.0)
        )
    }

    fn downloaded_key(&self, hash: &InfoHash) -> String {
        format!("{}d:{}", self.namespace, hex(&hash.0))
    }

    /// Lists one swarm (bounded pages), dropping entries older than the peer timeout at `now`
    /// (KV expires them on its own clock too; this keeps answers exact in between).
    /// Also says whether the list was read to its end (false: more pages than `MAX_PAGES`).
    async fn list_swarm(
        &self,
        prefix: &str,
        now: UnixTime,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        let mut out = Vec::new();
        let mut complete = false;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut list = self.kv.list().prefix(prefix.to_string()).limit(PAGE);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            self.count(|o| o.list += 1);
            let page = list.execute().await.map_err(kv_error)?;
            for key in page.keys {
                let Some(meta) = key
                    .metadata
                    .and_then(|m| serde_json::from_value::<Meta>(m).ok())
                else {
                    continue;
                };
                let Some(addr) = unhex(&meta.a) else {
                    continue;
                };
                if now.since(meta.t) > self.policy.peer_timeout {
                    continue;
                }
                out.push(Listed {
                    addr,
                    seeding: meta.s == 1,
                    written: meta.t,
                    demoted: meta.c == 1,
                });
            }
            if page.list_complete {
                complete = true;
                break;
            }
            match page.cursor {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => {
                    complete = true;
                    break;
                }
            }
        }
        // Listed in the keys' (hashed) order; handed to selection in address order, as every
        // store does, so that one request and RNG pick the same peers whatever the store.
        out.sort_unstable_by(|a, b| a.addr.cmp(&b.addr));
        Ok((out, complete))
    }

    /// A peer's own entry, read by its key (for a peer beyond the pages a swarm's list read).
    async fn own_entry(&self, key: &str, now: UnixTime) -> Result<Option<Listed>, StoreError> {
        self.count(|o| o.get += 1);
        let (_, meta) = self
            .kv
            .get(key)
            .text_with_metadata::<Meta>()
            .await
            .map_err(kv_error)?;
        Ok(meta
            .filter(|m| now.since(m.t) <= self.policy.peer_timeout)
            .map(|m| Listed {
                addr: Vec::new(),
                seeding: m.s == 1,
                written: m.t,
                demoted: m.c == 1,
            }))
    }

    async fn downloaded(&self, hash: &InfoHash) -> Result<u32, StoreError> {
        self.count(|o| o.get += 1);
        let text = self
            .kv
            .get(&self.downloaded_key(hash))
            .text()
            .await
            .map_err(kv_error)?;
        Ok(text.and_then(|t| t.trim().parse().ok()).unwrap_or(0))
    }

    /// Whether a listed entry must be rewritten: it changed role, or it would expire before the
    /// client's next announce (plus a minute of slack for late clients and KV's propagation).
    fn needs_write(
        &self,
        listed: Option<&Listed>,
        seeding: bool,
        demoted: bool,
        now: UnixTime,
    ) -> bool {
        let Some(l) = listed else { return true };
        let p = &self.policy;
        let refresh_after = p
            .peer_timeout
            .saturating_sub(p.announce_interval)
            .saturating_sub(60);
        l.seeding != seeding || l.demoted != demoted || now.since(l.written) >= refresh_after
    }

    async fn announce_inner(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> Result<SwarmCounts, AnnounceError> {
        let v6 = matches!(a.peer, PeerAddr::V6(_));
        let prefix = self.swarm_prefix(&a.info_hash, v6);
        let me = a.peer.as_bytes();
        let my_key = self.peer_key(&prefix, me);
        let (mut swarm, complete) = self.list_swarm(&prefix, now).await?;
        let mut downloaded = self.downloaded(&a.info_hash).await?;
        let mine = swarm.iter().position(|l| l.addr == me);
        // A peer beyond the pages read is looked up by its own key (one read, in big swarms
        // only), so it is neither rewritten at every announce nor counted completed twice.
        let beyond_view = match mine {
            None if !complete && a.event != Event::Stopped => self.own_entry(&my_key, now).await?,
            _ => None,
        };
        let listed_me = mine.map(|i| &swarm[i]).or(beyond_view.as_ref());
        let was_seeder = listed_me.is_some_and(|l| l.seeding);
        let was_demoted = listed_me.is_some_and(|l| l.demoted);
        // A completion counts once per peer: a seeder going back to leeching is marked, and
        // its next `completed` is not another download.
        let counts_completion = a.event == Event::Completed && !was_seeder && !was_demoted;
        let demoted = !a.seeding && (was_seeder || was_demoted);
        if mine.is_none() && beyond_view.is_none() && a.event != Event::Stopped {
            // A new peer, within the caps as far as the swarm's view shows them.
            let prefix_len = if v6 { 8 } else { 4 };
            let same_address = swarm
                .iter()
                .filter(|l| l.addr.get(..prefix_len) == Some(&me[..prefix_len]))
                .count();
            // Counted only over a swarm read whole: a full view is a sample, and a newcomer is
            // never turned away for what it cannot show.
            if complete && swarm.len() >= self.policy.max_peers_per_torrent as usize {
                return Err(Full::PeersInTorrent.into());
            }
            if same_address >= self.policy.max_peers_per_address as usize {
                return Err(Full::PeersFromAddress.into());
            }
        }

        if a.event == Event::Stopped {
            if let Some(i) = mine {
                swarm.swap_remove(i);
            }
            // Delete whether or not the list showed the peer: lists lag writes by up to a
            // minute, and a peer that started and stopped within that lag would otherwise stay
            // a ghost until its TTL.
            self.count(|o| o.delete += 1);
            self.kv.delete(&my_key).await.map_err(kv_error)?;
        } else {
            let listed = mine.map(|i| &swarm[i]).or(beyond_view.as_ref());
            if self.needs_write(listed, a.seeding, demoted, now) {
                self.count(|o| o.put += 1);
                let written = self.kv.put(&my_key, "").and_then(|p| {
                    p.expiration_ttl(u64::from(self.policy.peer_timeout.max(MIN_TTL)))
                        .metadata(Meta {
                            s: u8::from(a.seeding),
                            t: now,
                            a: hex(me),
                            c: u8::from(demoted),
                        })
                });
                match written {
                    Ok(put) => {
                        if let Err(e) = put.execute().await {
                            // A rate-limited or failed write costs this peer its freshness, not
                            // the client its answer: it is written again at its next announce.
                            worker::console_warn!("kv put {my_key}: {e}");
                        }
                    }
                    Err(e) => worker::console_warn!("kv put {my_key}: {e}"),
                }
            }
            match mine {
                Some(i) => {
                    swarm[i].seeding = a.seeding;
                    swarm[i].written = now;
                }
                None => swarm.push(Listed {
                    addr: me.to_vec(),
                    seeding: a.seeding,
                    written: now,
                    demoted,
                }),
            }
            if counts_completion {
                downloaded = downloaded.saturating_add(1);
                self.count(|o| o.put += 1);
                let key = self.downloaded_key(&a.info_hash);
                // Kept COMPLETED_RETENTION after the last completion (with the peers' timeout
                // when 0): KV expires it, so counts cannot pile up forever.
                let ttl = match self.policy.completed_retention {
                    0 => self.policy.peer_timeout,
                    r => r,
                }
                .max(MIN_TTL);
                match self
                    .kv
                    .put(&key, downloaded.to_string())
                    .map(|p| p.expiration_ttl(u64::from(ttl)))
                {
                    Ok(put) => {
                        if let Err(e) = put.execute().await {
                            worker::console_warn!("kv put {key}: {e}");
                        }
                    }
                    Err(e) => worker::console_warn!("kv put {key}: {e}"),
                }
            }
        }

        // The layout selection expects: leechers first, then seeders.
        swarm.sort_by_key(|l| l.seeding);
        let leechers = swarm.iter().filter(|l| !l.seeding).count();
        let complete = (swarm.len() - leechers) as u32;
        if a.event != Event::Stopped {
            let me_at = swarm.iter().position(|l| l.addr == me);
            select::for_requester(leechers, swarm.len(), me_at, a.seeding, a.want, rng, |i| {
                peers.extend_from_slice(&swarm[i].addr)
            });
        }
        Ok(SwarmCounts {
            complete,
            incomplete: leechers as u32,
            downloaded,
        })
    }

    async fn scrape_inner(
        &self,
        hashes: &[InfoHash],
        now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> Result<(), StoreError> {
        for hash in hashes {
            let mut c = SwarmCounts {
                downloaded: self.downloaded(hash).await?,
                ..SwarmCounts::default()
            };
            for v6 in [false, true] {
                for l in self.list_swarm(&self.swarm_prefix(hash, v6), now).await?.0 {
                    if l.seeding {
                        c.complete += 1
                    } else {
                        c.incomplete += 1
                    }
                }
            }
            out.push(c);
        }
        Ok(())
    }
}

impl PeerStore for KvPeerStore {
    fn announce(
        &self,
        a: &PeerAnnounce,
        now: UnixTime,
        rng: &mut impl Rng,
        peers: &mut Vec<u8>,
    ) -> impl Future<Output = Result<SwarmCounts, AnnounceError>> {
        self.announce_inner(a, now, rng, peers)
    }

    fn scrape(
        &self,
        hashes: &[InfoHash],
        now: UnixTime,
        out: &mut Vec<SwarmCounts>,
    ) -> impl Future<Output = Result<(), StoreError>> {
        self.scrape_inner(hashes, now, out)
    }

    /// KV expires peers itself (expirationTtl); listing also skips entries past the timeout.
    fn expire(&self, _now: UnixTime) -> impl Future<Output = Result<(), StoreError>> {
        std::future::ready(Ok(()))
    }
}
