//! Socket options that neither std nor socket2 sets (`TCP_DEFER_ACCEPT`, the reuseport group's
//! BPF program): one `setsockopt` for them all, so the unsafe call and its error handling are
//! written once. Linux only. Owns the call; which option to set, and why, is the caller's.

#![allow(
    unsafe_code,
    reason = "setsockopt(2) for options neither std nor socket2 wraps"
)]

use std::io;
use std::os::fd::AsRawFd;

/// Sets option `name` at `level` on `socket` to `value`, a plain C value the kernel copies.
pub fn set<T>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` points at `len` readable bytes that outlive the call; the kernel only
    // reads them (and copies what it keeps, such as a BPF program's instructions).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
