//! UDP (BEP 15): sockets and the receive → answer → send loop.
//!
//! Each thread owns its buffers, RNG and scratch space, so the loop allocates nothing per packet;
//! the only shared state it touches is one store shard per announce and a few relaxed counters.
//! Owns sockets and packet I/O; the meaning of packets belongs to the core.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edgetracker::protocol::types::Family;
use edgetracker::protocol::udp::MAX_REQUEST_LEN;
use edgetracker::service::Scratch;
use edgetracker::store::now_or_never;
use socket2::{Domain, Protocol, Socket, Type};

use crate::stats;
use crate::{Shared, thread_rng, unix_now};

/// Kernel receive buffer asked for: bursts of announces must queue, not drop (the kernel caps it
/// at net.core.rmem_max).
const RECV_BUFFER: usize = 8 << 20;

/// Binds a UDP socket; `[::]` is IPv6-only so `0.0.0.0` can be bound beside it on the same port.
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&addr.into())?;
    // Wake up now and then to notice shutdown.
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket.into())
}

/// Serves `socket` until `stop` is set.
pub fn serve(socket: UdpSocket, shared: &Shared, stop: &AtomicBool) {
    let mut rng = thread_rng();
    let mut scratch = Scratch::default();
    // One byte more than the largest request we serve tells oversized packets apart.
    let mut buf = vec![0u8; MAX_REQUEST_LEN + 1];
    let mut reply = Vec::with_capacity(1500);
    while !stop.load(Ordering::Relaxed) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux (ECONNREFUSED); not fatal.
                tracing::debug!("udp recv: {e}");
                continue;
            }
        };
        let ip = from.ip();
        let outcome = now_or_never(shared.tracker.udp(
            &buf[..len],
            ip,
            unix_now(),
            &mut rng,
            &mut scratch,
            &mut reply,
        ));
        shared
            .stats
            .record(stats::Protocol::Udp, Family::of(ip), &outcome);
        if let Some(reason) = &outcome.error {
            tracing::debug!(%from, reason, "udp request refused");
        }
        if let Some(e) = &outcome.store_error {
            tracing::warn!("{e}");
        }
        if !reply.is_empty()
            && let Err(e) = socket.send_to(&reply, from)
        {
            tracing::debug!(%from, "udp send: {e}");
        }
    }
}
