//! Benchmark helper for `native/bench/ws_baselines.sh`: a WebTorrent load generator over plain
//! `ws://`, for any WebSocket tracker (ours or aquatic_ws), so both are driven alike.
//!
//! ```text
//! bench_ws_load HOST:PORT CONNECTIONS SECONDS [TORRENTS] [OFFERS]
//! ```
//!
//! Each connection is one browser: its own peer id, announcing again and again (waiting for each
//! reply) into torrents drawn with a skew (a few popular, most quiet), a quarter of the time as
//! a seeder, with OFFERS offers (default 10) of a 300-byte SDP each; every offer it is handed it
//! answers, as a browser does. After SECONDS it prints announce replies, offers and answers
//! received per second, and error replies. (aquatic_ws_load_test speaks only `wss://`; this
//! needs no TLS in front of either tracker.) Everything it opens is on the given address, and
//! the run is bounded by SECONDS.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Counts {
    announces: Cell<u64>,
    offers: Cell<u64>,
    answers: Cell<u64>,
    errors: Cell<u64>,
    failed_connections: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

fn bin(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn random_bin(rng: &mut impl Rng) -> String {
    let mut b = [0u8; 20];
    rng.fill_bytes(&mut b);
    bin(&b)
}

async fn browser(
    addr: String,
    deadline: Instant,
    torrents: u32,
    offers: usize,
    seed: u64,
    counts: Rc<Counts>,
) {
    let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
        bump(&counts.failed_connections);
        return;
    };
    let url = format!("ws://{addr}/announce");
    let Ok((ws, _)) = tokio_tungstenite::client_async(url, stream).await else {
        bump(&counts.failed_connections);
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let mut rng = SmallRng::seed_from_u64(seed);
    let peer_id = random_bin(&mut rng);
    let sdp = "v=0\r\n".to_string() + &"a=x".repeat(98);
    'run: while Instant::now() < deadline {
        // Skewed popularity: the cube of a uniform draw favours low torrent numbers.
        let u: f64 = rng.random();
        let t = ((u * u * u) * f64::from(torrents)) as u32;
        let mut hash = [0u8; 20];
        hash[..4].copy_from_slice(&t.to_be_bytes());
        let info_hash = bin(&hash);
        let left = if rng.random_bool(0.25) { 0 } else { 1000 };
        let offers: Vec<Value> = (0..offers)
            .map(|_| json!({"offer_id": random_bin(&mut rng), "offer": {"type": "offer", "sdp": sdp}}))
            .collect();
        let announce = json!({
            "action": "announce", "info_hash": info_hash, "peer_id": peer_id,
            "uploaded": 0, "downloaded": 0, "left": left, "numwant": offers.len(), "offers": offers,
        });
        if sink
            .send(Message::text(announce.to_string()))
            .await
            .is_err()
        {
            break;
        }
        // Read until this announce's reply, answering every offer handed over meanwhile.
        loop {
            let next = tokio::time::timeout_at(deadline.into(), stream.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = next else {
                if matches!(next, Ok(Some(Ok(_)))) {
                    continue;
                }
                break 'run;
            };
            let Ok(m) = serde_json::from_str::<Value>(text.as_str()) else {
                bump(&counts.errors);
                continue;
            };
            if m.get("failure reason").is_some() {
                bump(&counts.errors);
                break;
            }
            if m.get("offer").is_some() {
                bump(&counts.offers);
                let answer = json!({
                    "action": "announce", "info_hash": m["info_hash"], "peer_id": peer_id,
                    "to_peer_id": m["peer_id"], "offer_id": m["offer_id"],
                    "answer": {"type": "answer", "sdp": sdp},
                });
                if sink.send(Message::text(answer.to_string())).await.is_err() {
                    break 'run;
                }
            } else if m.get("answer").is_some() {
                bump(&counts.answers);
            } else if m.get("interval").is_some() {
                bump(&counts.announces);
                break;
            }
        }
    }
    let _ = sink.close().await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_ws_load HOST:PORT CONNECTIONS SECONDS [TORRENTS] [OFFERS]";
    let (Some(addr), Some(Ok(connections)), Some(Ok(secs))) = (
        args.first(),
        args.get(1).map(|s| s.parse::<u64>()),
        args.get(2).map(|s| s.parse::<u64>()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let torrents = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let offers = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let counts = Rc::new(Counts::default());
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    local.block_on(&runtime, async {
        let tasks: Vec<_> = (0..connections)
            .map(|i| {
                tokio::task::spawn_local(browser(
                    addr.clone(),
                    deadline,
                    torrents,
                    offers,
                    i,
                    counts.clone(),
                ))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let rate = |c: &Cell<u64>| c.get() as f64 / elapsed;
    println!(
        "RESULT announces_per_s={:.0} offers_per_s={:.0} answers_per_s={:.0} errors={} failed_connections={}",
        rate(&counts.announces),
        rate(&counts.offers),
        rate(&counts.answers),
        counts.errors.get(),
        counts.failed_connections.get()
    );
}
