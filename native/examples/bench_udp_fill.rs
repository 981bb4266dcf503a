//! Benchmark helper for `native/bench/baselines.sh`, for any BEP 15 tracker (ours or a
//! baseline), so the memory figure is measured the same way for each.
//!
//! ```text
//! bench_udp_fill hashes N                        # the load tester's first N info hashes, hex
//! bench_udp_fill fill HOST:PORT PEERS TORRENTS   # PEERS peers over TORRENTS torrents, then exit
//! ```
//!
//! `hashes`: aquatic_udp_load_test 0.9 draws its torrents from a fixed seed; Debian's
//! opentracker serves only whitelisted info hashes, so its whitelist must be exactly that list.
//! The load tester uses rand 0.8's `SmallRng` (xoshiro256++ on 64-bit targets) seeded by
//! `seed_from_u64(0xc3aa8be617b3acce)` — rand_core 0.6's default, which fills the seed from
//! PCG32 — and takes each hash as 20 `gen::<u8>()`, the high half of `next_u64` truncated to a
//! byte. Written out here rather than pulling a second, older `rand` into the workspace.
//!
//! `fill`: announces (BEP 15, from 127.0.0.1) so that the tracker holds PEERS peers, PEERS /
//! TORRENTS in each of the first TORRENTS of those torrents, each peer with its own peer id and,
//! within a torrent, its own port. Requests are pipelined (a bounded window in flight) and the
//! whole run is bounded in time. Prints how many announces were answered.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const SEED: u64 = 0xc3aa_8be6_17b3_acce;
/// Announces in flight at once: enough to keep a tracker busy, few enough for socket buffers.
const WINDOW: u64 = 256;
/// The whole fill gives up after this long.
const MAX_RUN: Duration = Duration::from_secs(600);

/// rand_core 0.6's `seed_from_u64`: PCG32 output fills a 32-byte seed, read as four
/// little-endian u64 by xoshiro256++.
fn seed_from_u64(mut state: u64) -> [u64; 4] {
    const MUL: u64 = 6_364_136_223_846_793_005;
    const INC: u64 = 11_634_580_027_462_260_723;
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(4) {
        state = state.wrapping_mul(MUL).wrapping_add(INC);
        let xorshifted = (((state >> 18) ^ state) >> 27) as u32;
        let rot = (state >> 59) as u32;
        chunk.copy_from_slice(&xorshifted.rotate_right(rot).to_le_bytes());
    }
    std::array::from_fn(|i| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap()))
}

struct Xoshiro256PlusPlus([u64; 4]);

impl Xoshiro256PlusPlus {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

fn load_test_hashes(n: usize) -> impl Iterator<Item = [u8; 20]> {
    let mut rng = Xoshiro256PlusPlus(seed_from_u64(SEED));
    (0..n).map(move |_| std::array::from_fn(|_| (rng.next_u64() >> 32) as u8))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn connect(sock: &UdpSocket) -> Result<[u8; 8], String> {
    let mut req = [0u8; 16];
    req[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    req[12..].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    let mut buf = [0u8; 64];
    for _ in 0..20 {
        sock.send(&req).map_err(|e| format!("send: {e}"))?;
        if let Ok(n) = sock.recv(&mut buf)
            && n >= 16
            && buf[..4] == [0, 0, 0, 0]
            && buf[4..8] == req[12..16]
        {
            return Ok(buf[8..16].try_into().unwrap());
        }
    }
    Err("no answer to connect".into())
}

/// The announce for peer `k` (0..peers): torrent `k % torrents`, port 10000 + `k / torrents`.
fn announce(cid: [u8; 8], k: u64, torrents: u64, hashes: &[[u8; 20]]) -> [u8; 98] {
    let mut p = [0u8; 98];
    p[..8].copy_from_slice(&cid);
    p[8..12].copy_from_slice(&1u32.to_be_bytes());
    p[12..16].copy_from_slice(&(k as u32).to_be_bytes());
    p[16..36].copy_from_slice(&hashes[(k % torrents) as usize]);
    p[36..40].copy_from_slice(b"-FL0");
    p[40..56].copy_from_slice(format!("{k:016x}").as_bytes());
    // left: 1 (a leecher), event: started, ip: 0 (the source), numwant: 0.
    p[64..72].copy_from_slice(&1u64.to_be_bytes());
    p[80..84].copy_from_slice(&2u32.to_be_bytes());
    p[88..92].copy_from_slice(&(k as u32).to_be_bytes());
    p[92..96].copy_from_slice(&0u32.to_be_bytes());
    p[96..98].copy_from_slice(&(10_000 + (k / torrents) as u16).to_be_bytes());
    p
}

fn fill(addr: SocketAddr, peers: u64, torrents: u64) -> Result<(), String> {
    let hashes: Vec<[u8; 20]> = load_test_hashes(torrents as usize).collect();
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    sock.connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut cid = connect(&sock)?;
    let mut cid_at = Instant::now();
    let mut resent = 0u64;
    let mut buf = [0u8; 2048];
    // A window at a time: send its announces, collect answers by transaction id, send again
    // whatever a full buffer lost.
    let mut first = 0;
    while first < peers {
        if start.elapsed() > MAX_RUN {
            return Err(format!(
                "gave up after {MAX_RUN:?} at announce {first} of {peers}"
            ));
        }
        if cid_at.elapsed() > Duration::from_secs(30) {
            cid = connect(&sock)?;
            cid_at = Instant::now();
        }
        let end = (first + WINDOW).min(peers);
        let mut waiting: Vec<u64> = (first..end).collect();
        for &k in &waiting {
            sock.send(&announce(cid, k, torrents, &hashes))
                .map_err(|e| format!("send: {e}"))?;
        }
        while !waiting.is_empty() {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 20 && buf[..4] == 1u32.to_be_bytes() => {
                    let k = u64::from(u32::from_be_bytes(buf[4..8].try_into().unwrap()));
                    waiting.retain(|&w| w != k);
                }
                Ok(n) if n >= 8 && buf[..4] == 3u32.to_be_bytes() => {
                    return Err(format!(
                        "the tracker refused: {}",
                        String::from_utf8_lossy(&buf[8..n])
                    ));
                }
                Ok(_) => {}
                Err(_) if start.elapsed() > MAX_RUN => break,
                Err(_) => {
                    resent += waiting.len() as u64;
                    for &k in &waiting {
                        sock.send(&announce(cid, k, torrents, &hashes))
                            .map_err(|e| format!("send: {e}"))?;
                    }
                }
            }
        }
        first = end;
    }
    println!(
        "filled: {peers} peers over {torrents} torrents in {:.1} s ({resent} announces sent again)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["hashes", n] => n
            .parse()
            .map_err(|_| "N must be a number".to_string())
            .map(|n| {
                for h in load_test_hashes(n) {
                    println!("{}", hex(&h));
                }
            }),
        ["fill", addr, peers, torrents] => match (addr.parse(), peers.parse(), torrents.parse()) {
            (Ok(addr), Ok(peers), Ok(torrents)) if torrents > 0 => fill(addr, peers, torrents),
            _ => Err("usage: bench_udp_fill fill HOST:PORT PEERS TORRENTS".into()),
        },
        _ => Err("usage: bench_udp_fill hashes N | fill HOST:PORT PEERS TORRENTS".into()),
    };
    if let Err(e) = result {
        eprintln!("bench_udp_fill: {e}");
        std::process::exit(1);
    }
}
