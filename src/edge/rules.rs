//! The edge's access rules (info-hash list, passkeys): from vars for short lists, or from values
//! in Workers KV for long ones, parsed by the core ([`crate::access`]) and kept per isolate.
//!
//! Vars: `ACCESS_LIST_MODE` (off, allow, deny); the list as `ACCESS_LIST` (inline: hex hashes
//! separated by spaces, commas or newlines) or `ACCESS_LIST_KV` (the key, in the SWARMS
//! namespace, of a value holding it); the passkeys likewise as `PASSKEYS` or `PASSKEYS_KV`;
//! `ACCESS_REFRESH`: seconds an isolate keeps KV lists before reading them again (default 60).
//! A var holds at most 5 KB, a KV value 25 MiB; KV values use the native files' format (one entry
//! a line, `#` comments), so an operator uploads the same file to either home.
//!
//! Failures close, never open: a KV read or parse failure, or a key that does not exist (yet),
//! keeps the rules the isolate already has, and an isolate with none refuses requests until it
//! can read them. Owns
//! where the rules come from and when they are reread; what they decide is the core's.

use std::cell::RefCell;
use std::sync::Arc;

use worker::Env;
use worker::kv::KvStore;

use crate::access::{Access, ListMode};
use crate::time::UnixTime;

/// Where one list comes from.
enum Source {
    Unset,
    Inline(String),
    Kv(String),
}

struct Sources {
    mode: ListMode,
    list: Source,
    passkeys: Source,
    refresh: u32,
}

fn text_var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

/// One list's source from its inline var and its KV-key var; both set is a mistake to report.
fn source(env: &Env, inline: &str, kv: &str) -> Result<Source, String> {
    match (text_var(env, inline), text_var(env, kv)) {
        (Some(_), Some(_)) => Err(format!("set {inline} or {kv}, not both")),
        (Some(text), None) => Ok(Source::Inline(text.replace([',', ' ', '\t'], "\n"))),
        (None, Some(key)) => Ok(Source::Kv(key.trim().to_string())),
        (None, None) => Ok(Source::Unset),
    }
}

fn sources(env: &Env) -> Result<Sources, String> {
    let refresh = match text_var(env, "ACCESS_REFRESH") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| "var ACCESS_REFRESH must be a whole number".to_string())?,
        None => 60,
    };
    let mode: ListMode = text_var(env, "ACCESS_LIST_MODE")
        .unwrap_or_default()
        .parse()?;
    let list = source(env, "ACCESS_LIST", "ACCESS_LIST_KV")?;
    if mode != ListMode::Off && matches!(list, Source::Unset) {
        return Err("ACCESS_LIST_MODE needs ACCESS_LIST or ACCESS_LIST_KV".to_string());
    }
    Ok(Sources {
        mode,
        list,
        passkeys: source(env, "PASSKEYS", "PASSKEYS_KV")?,
        refresh,
    })
}

impl Sources {
    fn reads_kv(&self) -> bool {
        matches!(self.list, Source::Kv(_)) || matches!(self.passkeys, Source::Kv(_))
    }
}

/// The rules an isolate holds, and when they were read.
struct Held {
    read_at: UnixTime,
    access: Arc<Access>,
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// The rules for a request, and how many KV reads fetching them cost.
pub struct Current {
    pub access: Arc<Access>,
    pub kv_reads: u32,
}

/// Why rules could not be loaded; each tells the client something different.
enum LoadError {
    /// KV failed (an outage or a rate limit): try again later.
    Unreadable(String),
    /// A list has a bad line: the operator must fix it.
    Invalid(String),
}

impl LoadError {
    fn for_log(&self) -> &str {
        match self {
            LoadError::Unreadable(e) | LoadError::Invalid(e) => e,
        }
    }

    fn for_client(&self) -> String {
        match self {
            LoadError::Unreadable(_) => "access rules unavailable, try again later".to_string(),
            LoadError::Invalid(e) => format!("tracker misconfigured: {e}"),
        }
    }
}

/// Reads one list's text; `None` when unset.
async fn text(
    kv: Option<&KvStore>,
    source: &Source,
    reads: &mut u32,
) -> Result<Option<String>, LoadError> {
    match source {
        Source::Unset => Ok(None),
        Source::Inline(text) => Ok(Some(text.clone())),
        Source::Kv(key) => {
            let Some(kv) = kv else {
                return Err(LoadError::Invalid(format!(
                    "{key:?} is a KV key, but the Worker has no KV binding {}",
                    super::kv::BINDING
                )));
            };
            *reads += 1;
            match kv.get(key).text().await {
                Ok(Some(text)) => Ok(Some(text)),
                // Not an empty list: for a deny list that would serve every denied torrent while
                // a new key propagates (or after a typo in the var). Create an empty value on
                // purpose for an empty list.
                Ok(None) => Err(LoadError::Unreadable(format!(
                    "KV key {key:?} does not exist"
                ))),
                Err(e) => Err(LoadError::Unreadable(format!(
                    "reading KV key {key:?}: {e}"
                ))),
            }
        }
    }
}

async fn load(kv: Option<&KvStore>, s: &Sources, reads: &mut u32) -> Result<Access, LoadError> {
    let list = text(kv, &s.list, reads).await?.unwrap_or_default();
    let mut access = Access::open()
        .with_list(s.mode, &list)
        .map_err(|e| LoadError::Invalid(format!("access list {e}")))?;
    if let Some(keys) = text(kv, &s.passkeys, reads).await? {
        access = access
            .with_passkeys(&keys)
            .map_err(|e| LoadError::Invalid(format!("passkeys {e}")))?;
    }
    Ok(access)
}

/// The access rules in force at `now`: the isolate's own while they are fresh (rules from vars
/// stay fresh for the isolate's life), else read again. `Err` is the reason to give the client.
pub async fn current(env: &Env, kv: Option<&KvStore>, now: UnixTime) -> Result<Current, String> {
    let sources = sources(env).map_err(|e| format!("tracker misconfigured: {e}"))?;
    let held = HELD.with_borrow(|h| {
        h.as_ref().map(|h| {
            let fresh = !sources.reads_kv() || now.since(h.read_at) < sources.refresh;
            (fresh, h.access.clone())
        })
    });
    if let Some((true, access)) = held {
        return Ok(Current {
            access,
            kv_reads: 0,
        });
    }
    let mut kv_reads = 0;
    let access = match load(kv, &sources, &mut kv_reads).await {
        Ok(access) => Arc::new(access),
        Err(e) => {
            worker::console_error!("access rules not (re)loaded: {}", e.for_log());
            let Some((_, stale)) = held else {
                return Err(e.for_client());
            };
            // Keep the rules in force, and retry only after another refresh period.
            stale
        }
    };
    HELD.with_borrow_mut(|h| {
        *h = Some(Held {
            read_at: now,
            access: access.clone(),
        })
    });
    Ok(Current { access, kv_reads })
}
