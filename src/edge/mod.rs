//! The edge home: the core as a Cloudflare Worker, swarms in Workers KV or in one Durable
//! Object per torrent.
//!
//! Owns the Worker's I/O: routing fetch events, the client address (`CF-Connecting-IP`, nothing
//! else), the clock and entropy of the isolate, the stores and their cost counters. Request
//! parsing, policy and reply bytes are [`crate::service`]'s, exactly as natively. Compiled only
//! for wasm32; nothing native may depend on it. (So, unlike the rest of the crate, this module
//! reads a clock and draws entropy: it is a home, not the core.)

mod config;
pub mod durable;
pub mod kv;
mod limit;
mod rules;
mod store;
pub mod webtorrent;

use std::cell::RefCell;
use std::net::IpAddr;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use worker::{Context, Env, Request, Response, event};

use crate::protocol::bencode::write_failure;
use crate::protocol::http::split_target;
use crate::protocol::route::{self, Endpoint, Route};
use crate::protocol::types::canonical_ip;
use crate::service::{Action, Scratch, Tracker};
use crate::stats_access;
use crate::time::UnixTime;
use config::StoreKind;
use durable::DoOps;
use kv::OpCounts;
use limit::CloudflareLimit;
use store::EdgeStore;

/// Lower-case hex, as KV keys and Durable Object names spell info hashes.
pub(crate) use crate::protocol::hex::{decode as unhex, encode as hex};

/// Per-isolate state: an RNG seeded once from the platform's CSPRNG, reusable buffers, and
/// counters for `/stats` (an isolate's lifetime; Cloudflare runs many isolates, so these describe
/// one of them — enough to see the cost per request, which is what they are for).
struct Isolate {
    rng: SmallRng,
    scratch: Scratch,
    requests: [u64; 2],
    errors: [u64; 2],
    store_errors: u64,
    rate_limited: u64,
    kv_ops: [OpCounts; 2],
    do_ops: [DoOps; 2],
}

thread_local! {
    static ISOLATE: RefCell<Option<Isolate>> = const { RefCell::new(None) };
}

fn isolate<T>(f: impl FnOnce(&mut Isolate) -> T) -> T {
    ISOLATE.with_borrow_mut(|slot| {
        let state = slot.get_or_insert_with(|| Isolate {
            rng: seeded_rng(),
            scratch: Scratch::default(),
            requests: [0; 2],
            errors: [0; 2],
            store_errors: 0,
            rate_limited: 0,
            kv_ops: [OpCounts::default(); 2],
            do_ops: [DoOps::default(); 2],
        });
        f(state)
    })
}

/// An RNG seeded from the platform's CSPRNG: the isolate's, and each Durable Object's own.
fn seeded_rng() -> SmallRng {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("crypto.getRandomValues is available in Workers");
    SmallRng::from_seed(seed)
}

fn now() -> UnixTime {
    UnixTime::from_secs(worker::Date::now().as_millis() / 1000)
}

fn bencoded(status: u16, body: Vec<u8>) -> worker::Result<Response> {
    let mut r = Response::from_bytes(body)?.with_status(status);
    r.headers_mut()
        .set("content-type", "text/plain; charset=utf-8")?;
    Ok(r)
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let (path, query) = split_target(target.as_bytes());
    if let Some(route) = route::route(path) {
        if route.endpoint == Endpoint::Announce && webtorrent::wants_upgrade(&req, &env) {
            let conn = isolate(|s| rand_core::Rng::next_u64(&mut s.rng));
            return webtorrent::upgrade(&req, &env, route.passkey, conn).await;
        }
        return tracker_request(&req, &env, route, query).await;
    }
    match path {
        b"/stats" if !stats_permitted(&req, &env, query)? => bencoded(
            403,
            write_failure("the stats are not public on this tracker"),
        ),
        b"/stats" => stats(&env),
        b"/__conformance"
            if env
                .var("CONFORMANCE_TESTS")
                .is_ok_and(|v| v.to_string() == "1") =>
        {
            conformance(&env, query).await
        }
        _ => bencoded(
            404,
            write_failure("not found: this tracker serves /announce and /scrape"),
        ),
    }
}

async fn tracker_request(
    req: &Request,
    env: &Env,
    route: Route<'_>,
    query: &[u8],
) -> worker::Result<Response> {
    let configured =
        config::store_kind(env).and_then(|kind| Ok((kind, config::policy(env, kind)?)));
    let (kind, policy) = match configured {
        Ok(configured) => configured,
        Err(e) => return bencoded(200, write_failure(&format!("tracker misconfigured: {e}"))),
    };
    let announce = route.endpoint == Endpoint::Announce;
    let ip = match req
        .headers()
        .get("CF-Connecting-IP")?
        .and_then(|v| v.parse::<IpAddr>().ok())
    {
        Some(ip) => canonical_ip(ip),
        None => return bencoded(200, write_failure("no client address (CF-Connecting-IP)")),
    };
    let store = match EdgeStore::open(env, kind, &policy, String::new()) {
        Ok(store) => store,
        Err(e) => {
            worker::console_error!("{e}");
            return bencoded(
                200,
                crate::protocol::bencode::write_failure_retry(
                    crate::service::STORE_UNAVAILABLE,
                    crate::service::STORE_RETRY_IN_MINUTES,
                ),
            );
        }
    };
    let now = now();
    // Access lists may live in KV whichever store holds the swarms.
    let kv = env.kv(kv::BINDING).ok();
    let rules = match rules::current(env, kv.as_ref(), now).await {
        Ok(rules) => rules,
        Err(reason) => return bencoded(200, write_failure(&reason)),
    };
    // HTTP only: no connection ids, which are a UDP matter.
    let tracker = Tracker::new(store, policy).with_gate(CloudflareLimit::from_env(env));
    tracker.set_access(rules.access);
    // No RefCell borrow may be held across a suspension point, and an isolate serves requests
    // concurrently: each request gets its own RNG seeded from the isolate's (a clone would hand
    // concurrent requests the same peer selections), and takes the buffers, put back after.
    let (mut rng, mut scratch) = isolate(|s| {
        (
            SmallRng::from_rng(&mut s.rng),
            std::mem::take(&mut s.scratch),
        )
    });
    let (body, outcome) = if announce {
        tracker
            .http_announce(query, route.passkey, ip, now, &mut rng, &mut scratch)
            .await
    } else {
        tracker
            .http_scrape(query, route.passkey, ip, now, &mut scratch)
            .await
    };
    let mut kv_ops = tracker.store.kv_ops();
    kv_ops.get += rules.kv_reads;
    let do_ops = tracker.store.do_ops();
    let kind_index = usize::from(!announce);
    isolate(|s| {
        s.scratch = scratch;
        s.requests[kind_index] += 1;
        s.errors[kind_index] += u64::from(outcome.error.is_some());
        s.store_errors += u64::from(outcome.store_error.is_some());
        s.rate_limited += u64::from(outcome.rate_limited);
        let total = &mut s.kv_ops[kind_index];
        total.list += kv_ops.list;
        total.get += kv_ops.get;
        total.put += kv_ops.put;
        total.delete += kv_ops.delete;
        if let Some(d) = do_ops {
            s.do_ops[kind_index].add(d);
        }
    });
    if let Some(e) = &outcome.store_error {
        worker::console_error!("{e} (served without store data)");
    }
    debug_assert!(matches!(
        outcome.action,
        Some(Action::Announce | Action::Scrape) | None
    ));
    let mut response = bencoded(200, body)?;
    // The cost of this very request, for operators and for the budget tests.
    let headers = response.headers_mut();
    headers.set(
        "x-kv-ops",
        &format!(
            "list={} get={} put={} delete={}",
            kv_ops.list, kv_ops.get, kv_ops.put, kv_ops.delete
        ),
    )?;
    if let Some(d) = do_ops {
        headers.set(
            "x-do-ops",
            &format!(
                "requests={} rows_read={} rows_written={}",
                d.requests, d.rows_read, d.rows_written
            ),
        )?;
    }
    if outcome.store_error.is_some() {
        headers.set("x-store-error", "1")?;
    }
    Ok(response)
}

/// `STATS_ALLOW` (client addresses separated by spaces or commas) and `STATS_TOKEN`, decided by
/// the core as natively.
fn stats_permitted(req: &Request, env: &Env, query: &[u8]) -> worker::Result<bool> {
    let var = |name: &str| env.var(name).map(|v| v.to_string()).unwrap_or_default();
    let allow: Vec<IpAddr> = var("STATS_ALLOW")
        .split([' ', ',', '\n', '\t'])
        .filter_map(|a| a.parse().ok())
        .collect();
    let client = req
        .headers()
        .get("CF-Connecting-IP")?
        .and_then(|v| v.parse::<IpAddr>().ok());
    let authorization = req.headers().get("Authorization")?;
    let bearer = authorization
        .as_deref()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes);
    Ok(stats_access::stats_permitted(
        &allow,
        var("STATS_TOKEN").trim(),
        client,
        query,
        bearer,
    ))
}

fn stats(env: &Env) -> worker::Result<Response> {
    let store = config::store_kind(env).map_or("misconfigured", StoreKind::name);
    let body = isolate(|s| {
        let kind = |k: usize| {
            let per = |n: u32| {
                if s.requests[k] == 0 {
                    0.0
                } else {
                    f64::from(n) / s.requests[k] as f64
                }
            };
            serde_json::json!({
                "requests": s.requests[k],
                "errors": s.errors[k],
                "kv_ops": s.kv_ops[k],
                "kv_ops_per_request": per(s.kv_ops[k].total()),
                "do_ops": s.do_ops[k],
                "do_requests_per_request": per(s.do_ops[k].requests),
                "do_rows_written_per_request": per(s.do_ops[k].rows_written),
            })
        };
        serde_json::json!({
            "scope": "this isolate since it started",
            "store": store,
            "announce": kind(0),
            "scrape": kind(1),
            "store_errors": s.store_errors,
            "rate_limited": s.rate_limited,
        })
    });
    let mut r = Response::from_json(&body)?;
    r.headers_mut().set("content-type", "application/json")?;
    Ok(r)
}

/// A secret key for `purpose`, the same in every isolate and object of this Worker and never
/// sent to a client: the id Cloudflare gives the swarm objects' namespace for the name `purpose`
/// (a keyed hash under the namespace's own secret, computed locally, no request), hashed down to
/// 16 bytes.
pub(crate) fn derived_key(env: &Env, purpose: &str) -> worker::Result<[u8; 16]> {
    use siphasher::sip128::{Hasher128, SipHasher13};
    let id = env
        .durable_object(store::DO_BINDING)?
        .id_from_name(purpose)?
        .to_string();
    let mut h = SipHasher13::new();
    std::hash::Hasher::write(&mut h, id.as_bytes());
    Ok(h.finish128().as_bytes())
}

/// Runs the store conformance suite against the real binding of `?store=kv` (the default) or
/// `?store=durable-object` (tests only: enabled by the CONFORMANCE_TESTS var, which only the
/// Miniflare tests set). Each case gets its own keys or objects, so the cases share one
/// namespace without seeing each other.
async fn conformance(env: &Env, query: &[u8]) -> worker::Result<Response> {
    let kind = if query == b"store=durable-object" {
        StoreKind::DurableObject
    } else {
        StoreKind::Kv
    };
    let policy = crate::store::conformance::policy();
    let case = std::cell::Cell::new(0u32);
    let make = || {
        case.set(case.get() + 1);
        EdgeStore::open(env, kind, &policy, format!("conformance-{}/", case.get()))
            .expect("the store's binding")
    };
    let mut rng = isolate(|s| SmallRng::from_rng(&mut s.rng));
    crate::store::conformance::run_all(make, &mut rng).await;
    Response::ok(format!(
        "ok: {} cases passed against {}",
        case.get(),
        match kind {
            StoreKind::Kv => "Workers KV",
            StoreKind::DurableObject => "Durable Objects",
        }
    ))
}
