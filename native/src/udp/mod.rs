//! UDP (BEP 15): sockets and the receive → answer → send loop.
//!
//! Each thread owns its buffers, RNG and scratch space, so the loop allocates nothing per packet;
//! the only shared state it touches is one store shard per announce and a few relaxed counters.
//! Owns sockets and packet I/O; the meaning of packets belongs to the core.

#[cfg(target_os = "linux")]
mod batch;
#[cfg(target_os = "linux")]
mod steer;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edgetracker::UnixTime;
use edgetracker::protocol::types::Family;
#[cfg(not(target_os = "linux"))]
use edgetracker::protocol::udp::MAX_REQUEST_LEN;
use edgetracker::service::Scratch;
use edgetracker::store::now_or_never;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};

use crate::stats;
use crate::{Shared, thread_rng, unix_now};

/// Kernel receive buffer asked for: bursts of announces must queue, not drop (the kernel caps it
/// at net.core.rmem_max).
const RECV_BUFFER: usize = 8 << 20;

/// Binds the sockets of `threads` UDP threads on `addr`; `[::]` is IPv6-only so `0.0.0.0` can
/// be bound beside it on the same port.
///
/// On Linux each thread gets a socket of its own, all bound with `SO_REUSEPORT`, in thread order:
/// the kernel spreads datagrams over them by the client's address and port (or by torrent, once
/// [`steer_by_torrent`] has attached its program), and no two threads take one socket's
/// receive-queue lock (which, shared, becomes the ceiling as threads are added). Spread by
/// client, one client's datagrams always meet the same thread, so a few clients (a load tester,
/// a proxy) may load threads unevenly. Elsewhere, where `SO_REUSEPORT` does not spread
/// datagrams, the threads share one socket.
pub fn bind(addr: SocketAddr, threads: usize) -> io::Result<Vec<UdpSocket>> {
    let own_sockets = cfg!(target_os = "linux") && threads > 1;
    let addr = if own_sockets {
        // A socket with SO_REUSEPORT would join another process's sockets on the port (of the
        // same user) instead of failing, and a port of 0 could be chosen among theirs: a plain
        // bind first finds the port taken, or picks a free one.
        bind_one(addr, false)?.local_addr()?
    } else {
        addr
    };
    let first = bind_one(addr, own_sockets)?;
    // A port of 0 is chosen at the first bind; the others join that one.
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    while sockets.len() < threads {
        let socket = if own_sockets {
            bind_one(addr, true)?
        } else {
            sockets[0].try_clone()?
        };
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Has the kernel give each torrent's announces and scrapes to one of `sockets` (as [`bind`]
/// made them for an address's threads, in order), the socket of the torrent's
/// [`torrent_group`](edgetracker::store::memory::torrent_group).
#[cfg(target_os = "linux")]
pub fn steer_by_torrent(sockets: &[UdpSocket]) -> io::Result<()> {
    steer::by_torrent(&sockets[0], sockets.len())
}

/// Elsewhere the threads share one socket: nothing to steer.
#[cfg(not(target_os = "linux"))]
pub fn steer_by_torrent(_sockets: &[UdpSocket]) -> io::Result<()> {
    Ok(())
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(target_os = "linux")]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = reuse_port;
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&addr.into())?;
    // Wake up now and then to notice shutdown.
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket.into())
}

/// Serves `socket` until `stop` is set. A panic while serving (none is known to be reachable)
/// is logged, counted as `udp_restarts` on `/stats`, and serving starts again with fresh buffers:
/// a thread that ended silently would leave its socket unread.
///
/// `slot` is the thread's place in [`Shared::udp_threads`], where it counts its datagrams.
pub fn serve(socket: UdpSocket, slot: usize, shared: &Shared, stop: &AtomicBool) {
    supervise(
        || serve_until_stopped(&socket, slot, shared, stop),
        || shared.stats.count_udp_restart(),
    );
}

/// Runs `serve` until it returns; after each panic, calls `restarted` and runs it again.
pub fn supervise(mut serve: impl FnMut(), mut restarted: impl FnMut()) {
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut serve)) {
            Ok(()) => return,
            Err(_) => {
                // The panic hook has already printed where and why.
                tracing::error!("UDP serving thread panicked; serving again");
                restarted();
                // A panic that recurs at once must not become a busy loop of errors.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn serve_until_stopped(socket: &UdpSocket, slot: usize, shared: &Shared, stop: &AtomicBool) {
    let mut rng = thread_rng();
    let mut scratch = Scratch::default();
    let mut batch = batch::Batch::new();
    while !stop.load(Ordering::Relaxed) {
        match batch.receive(socket) {
            Ok(n) => shared.udp_threads.received(slot, n),
            Err(e) if is_idle(&e) => continue,
            Err(e) => {
                tracing::debug!("udp recv: {e}");
                continue;
            }
        }
        let now = unix_now();
        batch.answer_each(|packet, from, reply| {
            answer(shared, packet, from, now, &mut rng, &mut scratch, reply)
        });
        batch.send_replies(socket);
    }
}

/// One datagram per system call where recvmmsg is not available.
#[cfg(not(target_os = "linux"))]
fn serve_until_stopped(socket: &UdpSocket, slot: usize, shared: &Shared, stop: &AtomicBool) {
    let mut rng = thread_rng();
    let mut scratch = Scratch::default();
    let mut buf = vec![0u8; MAX_REQUEST_LEN + 1];
    let mut reply = Vec::with_capacity(1500);
    while !stop.load(Ordering::Relaxed) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if is_idle(&e) => continue,
            Err(e) => {
                tracing::debug!("udp recv: {e}");
                continue;
            }
        };
        shared.udp_threads.received(slot, 1);
        answer(
            shared,
            &buf[..len],
            from,
            unix_now(),
            &mut rng,
            &mut scratch,
            &mut reply,
        );
        if !reply.is_empty()
            && let Err(e) = socket.send_to(&reply, from)
        {
            tracing::debug!(%from, "udp send: {e}");
        }
    }
}

fn is_idle(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Answers one datagram into `reply` (left empty for no reply) and counts it.
fn answer(
    shared: &Shared,
    packet: &[u8],
    from: SocketAddr,
    now: UnixTime,
    rng: &mut SmallRng,
    scratch: &mut Scratch,
    reply: &mut Vec<u8>,
) {
    let ip = from.ip();
    let outcome = now_or_never(shared.tracker.udp(packet, ip, now, rng, scratch, reply));
    shared
        .stats
        .record(stats::Protocol::Udp, Family::of(ip), &outcome);
    if let Some(reason) = &outcome.error {
        tracing::debug!(%from, reason, "udp request refused");
    }
    if let Some(e) = &outcome.store_error {
        tracing::warn!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::supervise;

    #[test]
    fn a_panicking_serve_loop_is_counted_and_started_again() {
        let (mut runs, mut restarts) = (0, 0);
        supervise(
            || {
                runs += 1;
                if runs < 3 {
                    panic!("boom {runs}");
                }
            },
            || restarts += 1,
        );
        assert_eq!((runs, restarts), (3, 2));
    }
}
