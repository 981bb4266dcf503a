//! The Worker's knobs: `[vars]` of wrangler.toml turned into [`Policy`] and the choice of swarm
//! store. (The access vars are [`super::rules`]'s.)

use worker::Env;

use crate::swarm::Policy;
use crate::swarm::rtc::RtcPolicy;

/// The Worker's vars as text, by name: `env.var` in the Worker, a table in tests.
pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

impl Vars for Env {
    fn get(&self, name: &str) -> Option<String> {
        self.var(name).ok().map(|v| v.to_string())
    }
}

/// Reads a numeric var, falling back to `default` when unset; a malformed value is an error
/// naming the var, so a typo in wrangler.toml is seen at the first request, not guessed around.
fn var(vars: &impl Vars, name: &str, default: u32) -> Result<u32, String> {
    match vars.get(name) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("var {name} must be a whole number")),
        None => Ok(default),
    }
}

/// Where swarms live: `SWARM_STORE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Workers KV, one key per peer (`kv`, and the default when the var is unset, which is what
    /// a wrangler.toml from before the var existed means).
    Kv,
    /// One SQLite-backed Durable Object per info hash (`durable-object`).
    DurableObject,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Kv => "kv",
            StoreKind::DurableObject => "durable-object",
        }
    }
}

pub fn store_kind(vars: &impl Vars) -> Result<StoreKind, String> {
    match vars.get("SWARM_STORE") {
        None => Ok(StoreKind::Kv),
        Some(v) => match v.trim() {
            "" | "kv" => Ok(StoreKind::Kv),
            "durable-object" => Ok(StoreKind::DurableObject),
            other => Err(format!(
                "var SWARM_STORE must be \"kv\" or \"durable-object\", not {other:?}"
            )),
        },
    }
}

/// The most hashes one scrape may ask for, so that the largest scrape stays within what one
/// Worker invocation may do: on KV a hash costs up to 9 operations (two families of up to 4 list
/// pages, and the completed count), and an invocation may do 1,000 (a few go to access lists); on
/// Durable Objects a hash is one subrequest, and the free plan allows 50 an invocation.
pub fn max_scrape_hashes(store: StoreKind) -> u32 {
    match store {
        StoreKind::Kv => 100,
        StoreKind::DurableObject => 50,
    }
}

/// The most peers of a swarm the store sees: on KV, the pages one announce lists; a Durable
/// Object holds its whole swarm.
fn max_view(store: StoreKind) -> u32 {
    match store {
        StoreKind::Kv => super::kv::MAX_VIEW,
        StoreKind::DurableObject => Policy::default().max_peers_per_torrent,
    }
}

/// The edge's policy. Defaults differ from the native ones where the stores' cost models ask for
/// it: a longer peer timeout (fewer refresh writes) and a smaller scrape cap (each hash costs KV
/// lists, or a Durable Object request). On KV, whose lists show new peers up to a minute late, a
/// client starting alone in its swarm is asked back after `SPARSE_SWARM_INTERVAL` (120) seconds.
pub fn policy(vars: &impl Vars, store: StoreKind) -> Result<Policy, String> {
    let d = Policy::default();
    let announce_interval = var(vars, "ANNOUNCE_INTERVAL", d.announce_interval)?;
    let sparse_default = match store {
        StoreKind::Kv => announce_interval.min(120),
        StoreKind::DurableObject => 0,
    };
    let p = Policy {
        announce_interval,
        min_interval: var(vars, "MIN_INTERVAL", d.min_interval)?,
        peer_timeout: var(vars, "PEER_TIMEOUT", 3 * d.announce_interval)?.max(super::kv::MIN_TTL),
        numwant_default: var(vars, "NUMWANT_DEFAULT", d.numwant_default)?,
        numwant_max: var(vars, "NUMWANT_MAX", 100)?,
        scrape_max_hashes: var(vars, "SCRAPE_MAX_HASHES", 16)?,
        // Behind Cloudflare the client address is CF-Connecting-IP; nothing else is trusted.
        accept_claimed_ip: false,
        sparse_swarm_interval: var(vars, "SPARSE_SWARM_INTERVAL", sparse_default)?,
        completed_retention: var(vars, "COMPLETED_RETENTION", d.completed_retention)?,
        max_peers_per_torrent: var(vars, "MAX_PEERS_PER_TORRENT", max_view(store))?,
        max_peers_per_address: var(vars, "MAX_PEERS_PER_ADDRESS", d.max_peers_per_address)?,
        // Store-wide caps are the native memory's: the edge's stores bill, not fill, by size.
        max_torrents: d.max_torrents,
        new_torrents_per_minute: d.new_torrents_per_minute,
        new_torrents_burst: d.new_torrents_burst,
        max_peers: d.max_peers,
    };
    p.validate()?;
    if p.max_peers_per_torrent > max_view(store) {
        return Err(format!(
            "var MAX_PEERS_PER_TORRENT must be at most {} with SWARM_STORE = {:?} (the peers one announce reads)",
            max_view(store),
            store.name()
        ));
    }
    let most = max_scrape_hashes(store);
    if p.scrape_max_hashes > most {
        return Err(format!(
            "var SCRAPE_MAX_HASHES must be at most {most} with SWARM_STORE = {:?}",
            store.name()
        ));
    }
    Ok(p)
}

/// The most swarms one WebSocket may be in at the edge: a socket's swarms ride in its
/// hibernation attachment, which holds 2,048 bytes (40 bytes a swarm, and the connection).
pub const MAX_TORRENTS_PER_CONNECTION: usize = 40;

/// The edge's WebTorrent knobs, or `None` when `WEBTORRENT = "off"` (on when unset). The
/// defaults are the native tracker's, but for the swarms a socket may join (32, at most
/// [`MAX_TORRENTS_PER_CONNECTION`]).
pub fn webtorrent(vars: &impl Vars) -> Result<Option<RtcPolicy>, String> {
    match vars.get("WEBTORRENT").as_deref().map(str::trim) {
        None | Some("" | "on") => {}
        Some("off") => return Ok(None),
        Some(other) => {
            return Err(format!(
                "var WEBTORRENT must be \"on\" or \"off\", not {other:?}"
            ));
        }
    }
    let d = RtcPolicy::default();
    let p = RtcPolicy {
        announce_interval: var(vars, "WEBTORRENT_INTERVAL", d.announce_interval)?,
        peer_timeout: var(vars, "WEBTORRENT_PEER_TIMEOUT", d.peer_timeout)?,
        max_offers: var(vars, "WEBTORRENT_MAX_OFFERS", d.max_offers as u32)? as usize,
        max_torrents_per_connection: var(vars, "WEBTORRENT_MAX_TORRENTS_PER_CONNECTION", 32)?
            as usize,
        offers_per_minute: var(vars, "WEBTORRENT_OFFERS_PER_MINUTE", d.offers_per_minute)?,
        offers_burst: var(vars, "WEBTORRENT_OFFERS_BURST", d.offers_burst)?,
    };
    p.validate()
        .map_err(|e| format!("WEBTORRENT_* vars: {e}"))?;
    if p.max_torrents_per_connection > MAX_TORRENTS_PER_CONNECTION {
        return Err(format!(
            "var WEBTORRENT_MAX_TORRENTS_PER_CONNECTION must be at most {MAX_TORRENTS_PER_CONNECTION} (a socket's swarms ride in its 2 KB hibernation attachment)"
        ));
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    //! The defaults above are written down twice for operators: in wrangler.toml's `[vars]`
    //! (set, or commented out with their default) and in the README. These tests hold both to
    //! the code, so a changed default cannot leave either behind.
    use std::collections::HashMap;

    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    impl Vars for HashMap<String, String> {
        fn get(&self, name: &str) -> Option<String> {
            HashMap::get(self, name).cloned()
        }
    }

    /// Each numeric policy var, the store whose default its documentation states, and its value.
    fn knob(name: &str, kv: &Policy, durable: &Policy) -> Option<u32> {
        Some(match name {
            "ANNOUNCE_INTERVAL" => durable.announce_interval,
            "MIN_INTERVAL" => durable.min_interval,
            "PEER_TIMEOUT" => durable.peer_timeout,
            "NUMWANT_DEFAULT" => durable.numwant_default,
            "NUMWANT_MAX" => durable.numwant_max,
            "SCRAPE_MAX_HASHES" => durable.scrape_max_hashes,
            // Off on Durable Objects; the documented figure is KV's.
            "SPARSE_SWARM_INTERVAL" => kv.sparse_swarm_interval,
            // KV's cap is its view; the documented figure is the Durable Objects'.
            "MAX_PEERS_PER_TORRENT" => durable.max_peers_per_torrent,
            "MAX_PEERS_PER_ADDRESS" => durable.max_peers_per_address,
            "COMPLETED_RETENTION" => durable.completed_retention,
            "WEBTORRENT_INTERVAL" => rtc().announce_interval,
            "WEBTORRENT_PEER_TIMEOUT" => rtc().peer_timeout,
            "WEBTORRENT_MAX_OFFERS" => rtc().max_offers as u32,
            "WEBTORRENT_MAX_TORRENTS_PER_CONNECTION" => rtc().max_torrents_per_connection as u32,
            "WEBTORRENT_OFFERS_PER_MINUTE" => rtc().offers_per_minute,
            "WEBTORRENT_OFFERS_BURST" => rtc().offers_burst,
            _ => return None,
        })
    }

    fn rtc() -> RtcPolicy {
        webtorrent(&HashMap::new()).unwrap().expect("on by default")
    }

    fn defaults() -> (Policy, Policy) {
        let none = HashMap::new();
        (
            policy(&none, StoreKind::Kv).unwrap(),
            policy(&none, StoreKind::DurableObject).unwrap(),
        )
    }

    /// `NAME = "value"` lines of wrangler.toml's `[vars]`, set or commented out.
    fn wrangler_vars() -> Vec<(String, String, bool)> {
        let text = include_str!("../../wrangler.toml");
        let vars = &text[text.find("[vars]").expect("a [vars] section")..];
        let vars = &vars[..vars[1..].find("\n[").map_or(vars.len(), |i| i + 1)];
        vars.lines()
            .filter_map(|line| {
                let (set, line) = match line.strip_prefix('#') {
                    Some(rest) => (false, rest.trim_start()),
                    None => (true, line),
                };
                let (name, rest) = line.split_once(" = \"")?;
                let value = rest.split('"').next()?;
                name.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
                    .then(|| (name.to_string(), value.to_string(), set))
            })
            .collect()
    }

    #[test]
    fn wrangler_toml_states_the_code_defaults() {
        let (kv, durable) = defaults();
        let vars = wrangler_vars();
        let mut checked = 0;
        for (name, value, _) in &vars {
            if let Some(default) = knob(name, &kv, &durable) {
                assert_eq!(value, &default.to_string(), "wrangler.toml's {name}");
                checked += 1;
            }
        }
        assert_eq!(
            checked, 16,
            "every policy var is in wrangler.toml: {vars:?}"
        );
        // What the file sets changes nothing: it only writes the defaults down.
        let set: HashMap<String, String> = vars
            .into_iter()
            .filter(|(_, _, set)| *set)
            .map(|(name, value, _)| (name, value))
            .collect();
        let kind = store_kind(&set).unwrap();
        assert_eq!(kind, StoreKind::DurableObject);
        assert_eq!(policy(&set, kind).unwrap(), durable);
    }

    #[test]
    fn the_readme_states_the_code_defaults() {
        let (kv, durable) = defaults();
        let text = include_str!("../../README.md");
        let knobs = &text[text
            .find("Knobs are `[vars]` in `wrangler.toml`")
            .expect("the knobs")..];
        let knobs = &knobs[..knobs.find("\n\n").unwrap()];
        let mut checked = 0;
        for piece in knobs.split('`').collect::<Vec<_>>().windows(2) {
            let Some(default) = knob(piece[0], &kv, &durable) else {
                continue;
            };
            let digits: String = piece[1]
                .trim_start_matches([' ', '\n', '('])
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                assert_eq!(digits, default.to_string(), "the README's {}", piece[0]);
                checked += 1;
            }
        }
        assert!(
            checked >= 8,
            "the README states the defaults ({checked} found)"
        );
    }

    #[test]
    fn webtorrent_is_on_unless_off_and_its_knobs_are_checked() {
        let with = |name: &str, value: &str| {
            webtorrent(&HashMap::from([(name.to_string(), value.to_string())]))
        };
        assert_eq!(with("WEBTORRENT", "off"), Ok(None));
        assert_eq!(with("WEBTORRENT", "on"), Ok(Some(rtc())));
        assert!(
            with("WEBTORRENT", "yes")
                .unwrap_err()
                .contains("WEBTORRENT")
        );
        let most = MAX_TORRENTS_PER_CONNECTION.to_string();
        assert!(with("WEBTORRENT_MAX_TORRENTS_PER_CONNECTION", &most).is_ok());
        let over = (MAX_TORRENTS_PER_CONNECTION + 1).to_string();
        let err = with("WEBTORRENT_MAX_TORRENTS_PER_CONNECTION", &over).unwrap_err();
        assert!(err.contains("attachment"), "{err}");
        assert!(with("WEBTORRENT_MAX_OFFERS", "0").is_err());
        assert!(
            with("WEBTORRENT_INTERVAL", "400").is_err(),
            "longer than the timeout"
        );
    }

    #[test]
    fn a_malformed_var_is_named() {
        let vars = HashMap::from([("NUMWANT_MAX".to_string(), "lots".to_string())]);
        let err = policy(&vars, StoreKind::Kv).unwrap_err();
        assert!(err.contains("NUMWANT_MAX"), "{err}");
    }
}
