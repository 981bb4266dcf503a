//! Connections: who may open one, who makes room when none is left, and how long one may sit
//! without progress.
//!
//! A [`Connections`] pool caps the connections open at once: in total, per client (an IPv4
//! address or an IPv6 /64, as the rate limit counts them) and per network (an IPv4 /24, an IPv6
//! /48). HTTP connections and WebSockets are two pools, so browsers can never take the slots that
//! announces need. At the total cap the pool sheds the idlest holder it finds (the connection
//! whose last request, or WebSocket message, is oldest: a silent connection's is its accept) to
//! admit a new client; only when every holder it looks at is busy is the client refused. A
//! refused connection is answered with a bencoded `failure reason` and closed. Every HTTP
//! connection also carries a watchdog: one that moves no byte either way for
//! `http_idle_timeout` is closed, whatever hyper is waiting for (a client that pipelines requests
//! and never reads its answers holds hyper in a write that never ends). Refusals, sheddings and
//! closures are counted for `/stats`. Owns admission and the watchdog; HTTP itself is hyper's.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use edgetracker::ratelimit::{client_group, client_key};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Why a connection was not admitted; also its counter's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
    PerNetwork,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "tracker busy: too many connections, retry later",
            Refused::PerAddress => "too many connections from your address, retry later",
            Refused::PerNetwork => "too many connections from your network, retry later",
        }
    }
}

/// A pool's caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub total: usize,
    /// Per client: an IPv4 address, an IPv6 /64.
    pub per_address: u32,
    /// Per network: an IPv4 /24, an IPv6 /48.
    pub per_network: u32,
    /// At the total cap, a holder whose last request is at least this old is shed to admit a
    /// new connection (`None`: never; the new connection is refused).
    pub shed_after: Option<Duration>,
}

/// Holders looked at to find one to shed: the idlest of a random 16 is, with 16 of 16,384 open,
/// idler than 94 % of them would be in expectation (1 − 1/17), at the cost of 16 reads instead
/// of an ordered index that every request would have to update.
const SHED_SAMPLE: usize = 16;

/// The open connections of one kind and their caps.
pub struct Connections {
    caps: Caps,
    /// Times are milliseconds after this.
    epoch: Instant,
    pool: Mutex<Pool>,
    refused_total: AtomicU64,
    refused_per_address: AtomicU64,
    refused_per_network: AtomicU64,
    shed: AtomicU64,
    idle_closed: AtomicU64,
    answered_at_accept: AtomicU64,
}

#[derive(Default)]
struct Pool {
    open: usize,
    /// Open connections per client and per network (entries removed at zero, so these hold
    /// open clients only).
    per_address: HashMap<IpAddr, u32>,
    per_network: HashMap<IpAddr, u32>,
    /// One slot per open connection (and free slots, listed in `free`): a dense array, so that
    /// at the cap, when every slot is taken, a random index is a random holder.
    holders: Vec<Option<Holder>>,
    free: Vec<usize>,
    next_generation: u64,
    /// xorshift state for sampling; what an attacker could learn of it buys nothing a random
    /// choice would not give it.
    rng: u64,
}

struct Holder {
    generation: u64,
    /// Its client and network, when it counts under them (a trusted proxy's do not).
    keys: Option<(IpAddr, IpAddr)>,
    last_request: Arc<AtomicU64>,
    shed: Arc<Notify>,
}

impl Pool {
    fn release(&mut self, slot: usize) -> Option<Holder> {
        let holder = self.holders.get_mut(slot)?.take()?;
        self.free.push(slot);
        self.open -= 1;
        if let Some((address, network)) = holder.keys {
            for (map, key) in [
                (&mut self.per_address, address),
                (&mut self.per_network, network),
            ] {
                if let Some(n) = map.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&key);
                    }
                }
            }
        }
        Some(holder)
    }

    fn random(&mut self, below: usize) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x % below as u64) as usize
    }
}

/// Counters for `/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub open: u64,
    pub refused_total_cap: u64,
    pub refused_per_address_cap: u64,
    pub refused_per_network_cap: u64,
    /// Idle holders closed to admit a new connection at the total cap.
    pub shed_idle: u64,
    pub closed_idle: u64,
    /// Requests answered by the accept loop itself (a whole request on a connection that
    /// closes after it), without hyper.
    pub answered_at_accept: u64,
}

impl Connections {
    pub fn new(caps: Caps) -> Self {
        let epoch = Instant::now();
        Connections {
            caps,
            epoch,
            pool: Mutex::new(Pool {
                // Any odd seed will do: a random one, from the hasher std seeds for HashMaps.
                rng: std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8) | 1,
                ..Pool::default()
            }),
            refused_total: AtomicU64::new(0),
            refused_per_address: AtomicU64::new(0),
            refused_per_network: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            answered_at_accept: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, or says which cap it would pass (and counts that). At the
    /// total cap the idlest of a sample of holders is shed (told to close, and out of the caps
    /// at once) to make room. A connection from a trusted proxy (`per_address` false) counts
    /// toward the total only.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, per_address: bool) -> Result<Admitted, Refused> {
        let keys = per_address.then(|| (client_key(ip), client_group(ip)));
        let now = self.now_ms();
        let mut pool = self.lock();
        if let Some((address, network)) = keys {
            if pool.per_address.get(&address).copied().unwrap_or(0) >= self.caps.per_address {
                self.refused_per_address.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerAddress);
            }
            if pool.per_network.get(&network).copied().unwrap_or(0) >= self.caps.per_network {
                self.refused_per_network.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerNetwork);
            }
        }
        if pool.open >= self.caps.total {
            match self.idlest(&mut pool, now) {
                Some(slot) => {
                    let shed = pool.release(slot).expect("a holder");
                    shed.shed.notify_one();
                    self.shed.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.refused_total.fetch_add(1, Ordering::Relaxed);
                    return Err(Refused::Total);
                }
            }
        }
        if let Some((address, network)) = keys {
            *pool.per_address.entry(address).or_insert(0) += 1;
            *pool.per_network.entry(network).or_insert(0) += 1;
        }
        pool.open += 1;
        let generation = pool.next_generation;
        pool.next_generation += 1;
        let last_request = Arc::new(AtomicU64::new(now));
        let shed = Arc::new(Notify::new());
        let holder = Holder {
            generation,
            keys,
            last_request: last_request.clone(),
            shed: shed.clone(),
        };
        let slot = match pool.free.pop() {
            Some(slot) => {
                pool.holders[slot] = Some(holder);
                slot
            }
            None => {
                pool.holders.push(Some(holder));
                pool.holders.len() - 1
            }
        };
        Ok(Admitted {
            connections: self.clone(),
            slot,
            generation,
            last_request,
            shed,
        })
    }

    /// The slot of the idlest of a random sample of holders, if it has been idle at least
    /// [`Caps::shed_after`].
    fn idlest(&self, pool: &mut Pool, now: u64) -> Option<usize> {
        let len = pool.holders.len();
        let min_idle = self.caps.shed_after?.as_millis() as u64;
        if len == 0 {
            return None;
        }
        let mut best: Option<(u64, usize)> = None;
        // Every holder when there are few; else a random sample.
        let mut sample = [0; SHED_SAMPLE];
        let n = len.min(SHED_SAMPLE);
        for (i, slot) in sample[..n].iter_mut().enumerate() {
            *slot = if len <= SHED_SAMPLE {
                i
            } else {
                pool.random(len)
            };
        }
        for &slot in &sample[..n] {
            let Some(holder) = &pool.holders[slot] else {
                continue;
            };
            let idle = now.saturating_sub(holder.last_request.load(Ordering::Relaxed));
            if idle >= min_idle && best.is_none_or(|(most, _)| idle > most) {
                best = Some((idle, slot));
            }
        }
        best.map(|(_, slot)| slot)
    }

    pub fn counted_idle_close(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counted_answered_at_accept(&self) {
        self.answered_at_accept.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> Counts {
        let open = self.lock().open as u64;
        Counts {
            open,
            refused_total_cap: self.refused_total.load(Ordering::Relaxed),
            refused_per_address_cap: self.refused_per_address.load(Ordering::Relaxed),
            refused_per_network_cap: self.refused_per_network.load(Ordering::Relaxed),
            shed_idle: self.shed.load(Ordering::Relaxed),
            closed_idle: self.idle_closed.load(Ordering::Relaxed),
            answered_at_accept: self.answered_at_accept.load(Ordering::Relaxed),
        }
    }
}

/// An admitted connection; leaving the caps when dropped (or when shed, whichever is first).
pub struct Admitted {
    connections: Arc<Connections>,
    slot: usize,
    generation: u64,
    last_request: Arc<AtomicU64>,
    shed: Arc<Notify>,
}

impl Admitted {
    /// Records a request (or a WebSocket message): the connection is busy, not idle.
    pub fn progressed(&self) {
        self.last_request
            .store(self.connections.now_ms(), Ordering::Relaxed);
    }

    /// A handle that records requests as [`Admitted::progressed`] does, for a service function.
    pub fn progress(&self) -> Progress {
        Progress {
            connections: self.connections.clone(),
            last_request: self.last_request.clone(),
        }
    }

    /// Completes when the pool sheds this connection to admit another: close it then.
    pub async fn shed(&self) {
        self.shed.notified().await
    }
}

/// See [`Admitted::progress`].
#[derive(Clone)]
pub struct Progress {
    connections: Arc<Connections>,
    last_request: Arc<AtomicU64>,
}

impl Progress {
    pub fn progressed(&self) {
        self.last_request
            .store(self.connections.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut pool = self.connections.lock();
        // A shed connection left the caps already, and its slot may be someone else's now.
        if pool.holders[self.slot]
            .as_ref()
            .is_some_and(|h| h.generation == self.generation)
        {
            pool.release(self.slot);
        }
    }
}

/// When a connection last moved a byte, shared between its I/O and its watchdog.
#[derive(Clone)]
pub struct Activity {
    since: Instant,
    /// Milliseconds after `since`.
    last: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            since: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long since the last byte moved.
    pub fn idle(&self) -> Duration {
        let now = self.since.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// Completes once the connection has moved nothing for `limit` (checked a few times per
    /// `limit`, so a closed connection is found at most a quarter of `limit` late).
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let idle = self.idle();
            if idle >= limit {
                return;
            }
            tokio::time::sleep((limit - idle).max(limit / 4)).await;
        }
    }
}

/// A stream that records each byte it moves in an [`Activity`], and hands out first the bytes
/// already read from it before it was watched (what the accept loop read of a request it left
/// to hyper).
pub struct Watched<S> {
    inner: S,
    activity: Activity,
    read_before: Vec<u8>,
    /// How much of `read_before` has been handed out.
    replayed: usize,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Activity, read_before: Vec<u8>) -> Self {
        Watched {
            inner,
            activity,
            read_before,
            replayed: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.read_before.len() {
            let n = buf.remaining().min(this.read_before.len() - this.replayed);
            buf.put_slice(&this.read_before[this.replayed..this.replayed + n]);
            this.replayed += n;
            if this.replayed == this.read_before.len() {
                this.read_before = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit, so the connection cap, not the
/// process's default 1,024 descriptors, decides how many clients are served. Returns the soft
/// limit now in force.
#[allow(
    unsafe_code,
    reason = "getrlimit and setrlimit, which std does not wrap"
)]
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHED_AFTER: Duration = Duration::from_millis(300);

    fn caps(total: usize, per_address: u32, per_network: u32) -> Caps {
        Caps {
            total,
            per_address,
            per_network,
            shed_after: Some(SHED_AFTER),
        }
    }

    #[test]
    fn caps_count_clients_and_networks_and_release_on_drop() {
        let c = Arc::new(Connections::new(caps(4, 2, 3)));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let (a1, a2) = (c.admit(a, true).unwrap(), c.admit(a, true).unwrap());
        assert_eq!(c.admit(a, true).err(), Some(Refused::PerAddress));
        let b1 = c.admit("10.0.0.2".parse().unwrap(), true).unwrap();
        assert_eq!(
            c.admit("10.0.0.3".parse().unwrap(), true).err(),
            Some(Refused::PerNetwork),
            "three from 10.0.0.0/24"
        );
        // Another address of the same IPv6 /64 is the same client; of the same /48, the same
        // network.
        let v6 = c.admit("2001:db8::1".parse().unwrap(), true).unwrap();
        assert_eq!(
            c.admit("2001:db8::2".parse().unwrap(), true).err(),
            Some(Refused::Total),
            "four open, none idle long enough yet"
        );
        drop(a1);
        let again = c.admit(a, true).unwrap();
        drop((a2, b1, again, v6));
        // A trusted proxy's connections count toward the total only.
        let proxied: Vec<_> = (0..4).map(|_| c.admit(a, false).unwrap()).collect();
        assert_eq!(c.admit(a, false).err(), Some(Refused::Total));
        drop(proxied);
        let counts = c.counts();
        assert_eq!(
            (
                counts.open,
                counts.refused_per_address_cap,
                counts.refused_per_network_cap,
                counts.refused_total_cap
            ),
            (0, 1, 1, 2)
        );
        let pool = c.lock();
        assert!(pool.per_address.is_empty() && pool.per_network.is_empty());
    }

    #[tokio::test]
    async fn at_the_cap_the_idlest_holder_makes_room() {
        let c = Arc::new(Connections::new(caps(3, 10, 10)));
        let ip = |i: u8| IpAddr::from([10, 0, i, 1]);
        let silent = c.admit(ip(1), true).unwrap();
        let busy: Vec<_> = (2..4).map(|i| c.admit(ip(i), true).unwrap()).collect();
        std::thread::sleep(SHED_AFTER + Duration::from_millis(100));
        busy.iter().for_each(Admitted::progressed);
        let newcomer = c.admit(ip(9), true).expect("room made");
        // The silent one was told, and is out of the caps already.
        tokio::time::timeout(Duration::from_secs(1), silent.shed())
            .await
            .expect("the silent holder is shed");
        assert_eq!(c.counts().open, 3);
        assert_eq!(c.counts().shed_idle, 1);
        drop(silent);
        assert_eq!(
            c.counts().open,
            3,
            "a shed holder's drop releases nothing twice"
        );
        // Everyone busy: refused.
        newcomer.progressed();
        assert_eq!(c.admit(ip(10), true).err(), Some(Refused::Total));
        drop((busy, newcomer));
        assert_eq!(c.counts().open, 0);
        // Shedding off: the cap refuses, however idle the holders.
        let never = Arc::new(Connections::new(Caps {
            shed_after: None,
            ..caps(1, 10, 10)
        }));
        let _held = never.admit(ip(1), true).unwrap();
        std::thread::sleep(SHED_AFTER + Duration::from_millis(100));
        assert_eq!(never.admit(ip(2), true).err(), Some(Refused::Total));
    }
}
