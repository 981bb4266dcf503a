//! Steering by torrent: a classic BPF program, attached to a group of `SO_REUSEPORT` sockets,
//! with which the kernel picks each announce's and scrape's socket by its info-hash.
//!
//! The threads' sockets are bound one after another, so socket `i` of the group is thread `i`'s,
//! and the program answers `i` = [`torrent_group`] of the datagram's (first) info-hash. Every
//! datagram of a torrent then meets the same thread, and a store built
//! [`MemoryStore::with_groups`] keeps that thread's torrents in shards of their own (shared only
//! with thread `i` of the other address, IPv4 or IPv6, whose peers join the same swarms): the
//! swarm-per-core ownership of aquatic's swarm workers, without passing requests between
//! threads. Connects, and anything that is not a whole enough announce or scrape, get an
//! index past the group's end, which tells the kernel to spread them by the client's address and
//! port as it would without a program.
//!
//! Owns the program and attaching it; may not touch the datagrams' meaning beyond these offsets
//! (BEP 15: action at byte 8, info-hash at byte 16 of announces and scrapes).
//!
//! [`torrent_group`]: edgetracker::store::memory::torrent_group
//! [`MemoryStore::with_groups`]: edgetracker::store::memory::MemoryStore::with_groups

use std::io;
use std::net::UdpSocket;

use libc::sock_filter;

/// BEP 15 offsets: the action word, and the first info-hash of an announce or a scrape.
const ACTION_AT: u32 = 8;
const INFO_HASH_AT: u32 = 16;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
/// Not a socket of the group: the kernel falls back to its hash of the client's address.
const BY_CLIENT: u32 = u32::MAX;

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The program for a group of `sockets`. cBPF loads words big-endian, as
/// [`edgetracker::store::memory::torrent_group`] reads them, and a load past the datagram's end
/// ends the program with 0, which the length check ahead of the loads rules out.
fn program(sockets: u32) -> [sock_filter; 9] {
    use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LEN};
    use libc::{BPF_MOD, BPF_RET, BPF_W};
    [
        // 0: A = the datagram's length (the UDP payload's: the kernel has pulled the header).
        stmt(BPF_LD | BPF_W | BPF_LEN, 0),
        // 1: shorter than an action and one info-hash: by client.
        jump(BPF_JMP | BPF_JGE | BPF_K, INFO_HASH_AT + 20, 0, 6),
        // 2: A = the action.
        stmt(BPF_LD | BPF_W | BPF_ABS, ACTION_AT),
        // 3, 4: an announce or a scrape goes on to 5, anything else by client.
        jump(BPF_JMP | BPF_JEQ | BPF_K, ANNOUNCE, 1, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, SCRAPE, 0, 3),
        // 5, 6, 7: the socket of the info-hash's first word's group.
        stmt(BPF_LD | BPF_W | BPF_ABS, INFO_HASH_AT),
        stmt(BPF_ALU | BPF_MOD | BPF_K, sockets),
        stmt(BPF_RET | BPF_A, 0),
        // 8:
        stmt(BPF_RET | BPF_K, BY_CLIENT),
    ]
}

/// Attaches the steering program to the `SO_REUSEPORT` group `socket` belongs to, whose
/// `sockets` members are the UDP threads' sockets in the order they were bound.
pub fn by_torrent(socket: &UdpSocket, sockets: usize) -> io::Result<()> {
    let sockets = u32::try_from(sockets).map_err(io::Error::other)?;
    let mut code = program(sockets.max(1));
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // Linux 4.5 and later. The kernel copies the program out of `code`, which outlives the call.
    crate::sockopt::set(
        socket,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        &prog,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetracker::InfoHash;
    use edgetracker::store::memory::torrent_group;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// Runs `program` on `packet` as the kernel's classic BPF does, for the instructions it uses.
    fn run(program: &[sock_filter], packet: &[u8]) -> u32 {
        use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LEN};
        use libc::{BPF_MOD, BPF_RET, BPF_W};
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            match u32::from(i.code) {
                c if c == BPF_LD | BPF_W | BPF_LEN => a = packet.len() as u32,
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    let at = i.k as usize;
                    // A load past the end ends the program with 0.
                    let Some(word) = packet.get(at..at + 4) else {
                        return 0;
                    };
                    a = u32::from_be_bytes(word.try_into().unwrap());
                }
                c if c == BPF_JMP | BPF_JGE | BPF_K || c == BPF_JMP | BPF_JEQ | BPF_K => {
                    let taken = if c & 0xf0 == BPF_JGE {
                        a >= i.k
                    } else {
                        a == i.k
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                c if c == BPF_ALU | BPF_MOD | BPF_K => a %= i.k,
                c if c == BPF_RET | BPF_A => return a,
                c if c == BPF_RET | BPF_K => return i.k,
                c => panic!("instruction {c:#x} not interpreted"),
            }
        }
    }

    #[test]
    fn announces_and_scrapes_go_by_info_hash_and_the_rest_by_client() {
        let mut rng = SmallRng::seed_from_u64(15);
        for sockets in [1u32, 2, 3, 7, 64] {
            let program = program(sockets);
            for len in 0..=120 {
                for action in 0..4u32 {
                    let mut packet: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    if len >= 12 {
                        packet[8..12].copy_from_slice(&action.to_be_bytes());
                    }
                    let steered = len >= 36 && (action == ANNOUNCE || action == SCRAPE);
                    let expected = if steered {
                        let hash = InfoHash(packet[16..36].try_into().unwrap());
                        torrent_group(&hash, sockets as usize) as u32
                    } else {
                        BY_CLIENT
                    };
                    assert_eq!(
                        run(&program, &packet),
                        expected,
                        "{sockets} sockets, {len} bytes, action {action}"
                    );
                }
            }
        }
    }
}
