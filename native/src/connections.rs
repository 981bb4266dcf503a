//! HTTP connections: who may open one, and how long one may sit without progress.
//!
//! Caps the connections open at once, in total and per client (an IPv4 address or an IPv6 /64,
//! as the rate limit counts them); a connection over a cap is answered with a bencoded `failure
//! reason` and closed. Every connection carries a watchdog: one that moves no byte either way
//! for `http_idle_timeout` is closed, whatever hyper is waiting for (a client that pipelines
//! requests and never reads its answers holds hyper in a write that never ends). Refusals and
//! closures are counted for `/stats`. Owns admission and the watchdog; HTTP itself is hyper's.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use edgetracker::ratelimit::client_key;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a connection was not admitted; also its counter's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "tracker busy: too many connections, retry later",
            Refused::PerAddress => "too many connections from your address, retry later",
        }
    }
}

/// The open connections and their caps.
pub struct Connections {
    max_total: usize,
    max_per_address: u32,
    /// Open connections per client key (entries removed at zero, so this holds open clients
    /// only, at most `max_total` of them).
    open: Mutex<(usize, HashMap<IpAddr, u32>)>,
    refused_total: AtomicU64,
    refused_per_address: AtomicU64,
    idle_closed: AtomicU64,
    answered_at_accept: AtomicU64,
}

/// Counters for `/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub open: u64,
    pub refused_total_cap: u64,
    pub refused_per_address_cap: u64,
    pub closed_idle: u64,
    /// Requests answered by the accept loop itself (a whole request on a connection that
    /// closes after it), without hyper.
    pub answered_at_accept: u64,
}

impl Connections {
    pub fn new(max_total: usize, max_per_address: u32) -> Self {
        Connections {
            max_total,
            max_per_address,
            open: Mutex::new((0, HashMap::new())),
            refused_total: AtomicU64::new(0),
            refused_per_address: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            answered_at_accept: AtomicU64::new(0),
        }
    }

    /// Admits a connection from `ip`, or says which cap it would pass (and counts that). A
    /// connection from a trusted proxy (`per_address` false) counts toward the total only.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, per_address: bool) -> Result<Admitted, Refused> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *open;
        if *total >= self.max_total {
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Total);
        }
        if per_address {
            let mine = per.entry(key).or_insert(0);
            if *mine >= self.max_per_address {
                self.refused_per_address.fetch_add(1, Ordering::Relaxed);
                return Err(Refused::PerAddress);
            }
            *mine += 1;
        }
        *total += 1;
        Ok(Admitted {
            connections: self.clone(),
            key: per_address.then_some(key),
        })
    }

    pub fn counted_idle_close(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counted_answered_at_accept(&self) {
        self.answered_at_accept.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> Counts {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner()).0 as u64;
        Counts {
            open,
            refused_total_cap: self.refused_total.load(Ordering::Relaxed),
            refused_per_address_cap: self.refused_per_address.load(Ordering::Relaxed),
            closed_idle: self.idle_closed.load(Ordering::Relaxed),
            answered_at_accept: self.answered_at_accept.load(Ordering::Relaxed),
        }
    }
}

/// An admitted connection; leaving the caps when dropped.
pub struct Admitted {
    connections: Arc<Connections>,
    /// The client key it counts under, if it counts per address.
    key: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *open;
        *total -= 1;
        if let Some(key) = &self.key
            && let Some(n) = per.get_mut(key)
        {
            *n -= 1;
            if *n == 0 {
                per.remove(key);
            }
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

    #[test]
    fn caps_count_clients_and_release_on_drop() {
        let c = Arc::new(Connections::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let (a1, a2) = (c.admit(a, true).unwrap(), c.admit(a, true).unwrap());
        assert_eq!(c.admit(a, true).err(), Some(Refused::PerAddress));
        // Another address of the same IPv6 /64 is the same client.
        let b1 = c.admit("2001:db8::1".parse().unwrap(), true).unwrap();
        assert_eq!(
            c.admit("10.0.0.2".parse().unwrap(), true).err(),
            Some(Refused::Total)
        );
        drop(a1);
        let again = c.admit(a, true).unwrap();
        assert_eq!(
            c.admit("2001:db8::ffff".parse().unwrap(), true).err(),
            Some(Refused::Total)
        );
        drop((a2, b1, again));
        // A trusted proxy's connections count toward the total only.
        let proxied: Vec<_> = (0..3).map(|_| c.admit(a, false).unwrap()).collect();
        assert_eq!(c.admit(a, false).err(), Some(Refused::Total));
        drop(proxied);
        let counts = c.counts();
        assert_eq!(
            (
                counts.open,
                counts.refused_per_address_cap,
                counts.refused_total_cap
            ),
            (0, 1, 3)
        );
        assert!(c.open.lock().unwrap().1.is_empty(), "no entry left behind");
    }
}
