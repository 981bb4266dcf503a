//! Background chores on their own thread: sweeping expired peers (with the rate limiter's and
//! full scrape's bookkeeping), sampling the stats page's chart, saving the state file, and
//! reloading the access files on SIGHUP or when they change.
//!
//! Owns when each chore runs (`Every`); what a chore does is the store's, the state file's and
//! the access files' business. Never serves a request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::access_files::{self, AccessFiles};
use crate::{Shared, page, state, unix_now};

/// How often the access files are checked for changes.
const ACCESS_CHECK: Duration = Duration::from_secs(2);
/// How long the thread sleeps between looks at its chores (and at the stop flag).
const TICK: Duration = Duration::from_millis(100);

/// A chore's period, and when it last ran.
struct Every {
    period: Duration,
    last: Option<Instant>,
}

impl Every {
    /// First due one period from now.
    fn from_now(period: Duration) -> Every {
        Every {
            period,
            last: Some(Instant::now()),
        }
    }

    /// First due at once.
    fn starting_now(period: Duration) -> Every {
        Every { period, last: None }
    }

    /// Whether the chore is due at `now`; if so, it counts as run.
    fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.period);
        if due {
            self.last = Some(now);
        }
        due
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// Runs the chores until `stop` is set.
pub fn run(shared: &Shared, stop: &AtomicBool, mut files: AccessFiles, hangup: &AtomicBool) {
    let config = &shared.config;
    let mut sweep = Every::from_now(secs(config.tracker.cleanup_interval));
    let mut sample = Every::starting_now(secs(config.stats.history_interval));
    let mut save = Every::from_now(secs(config.state.save_interval));
    let mut check_access = Every::from_now(ACCESS_CHECK);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let signalled = hangup.swap(false, Ordering::Relaxed);
        if signalled || (check_access.due(now) && files.changed()) {
            reload_access(
                shared,
                &mut files,
                if signalled { "SIGHUP" } else { "file changed" },
            );
        }
        if sweep.due(now) {
            expire(shared);
        }
        if sample.due(now) {
            record_sample(shared);
        }
        if save.due(now) {
            save_state(shared);
        }
    }
}

fn reload_access(shared: &Shared, files: &mut AccessFiles, why: &str) {
    match files.load() {
        Ok(access) => {
            tracing::info!(
                "access reloaded ({why}): {}",
                access_files::describe(&access)
            );
            shared.tracker.set_access(access);
        }
        Err(e) => tracing::error!("access reload failed, keeping the rules in force: {e}"),
    }
}

fn expire(shared: &Shared) {
    let began = Instant::now();
    shared.tracker.store.expire_now(unix_now());
    shared.tracker.limiter().prune(unix_now());
    shared
        .ws
        .swarms
        .expire(unix_now(), shared.ws.policy.peer_timeout);
    if let Some(full) = &shared.full_scrape {
        full.prune(unix_now());
    }
    let t = shared.tracker.store.totals();
    tracing::debug!(
        took_ms = began.elapsed().as_millis() as u64,
        torrents = t.torrents,
        peers = t.peers(),
        "expired stale peers"
    );
}

fn record_sample(shared: &Shared) {
    let t = shared.tracker.store.totals();
    shared.history.record(page::Sample {
        at: shared.uptime(),
        torrents: t.torrents,
        peers: t.peers(),
    });
}

/// Saves the state file, if one is configured; a failure is logged (the next save retries).
pub fn save_state(shared: &Shared) {
    let Some(path) = &shared.config.state.file else {
        return;
    };
    let began = Instant::now();
    match state::save(&shared.tracker.store, path, unix_now()) {
        Ok(s) => tracing::info!(
            took_ms = began.elapsed().as_millis() as u64,
            "saved {} torrents and {} peers to {}",
            s.torrents,
            s.peers,
            path.display()
        ),
        Err(e) => tracing::error!("cannot save state to {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chore_is_due_once_per_period() {
        let t0 = Instant::now();
        let period = Duration::from_secs(60);
        let mut sweep = Every::from_now(period);
        assert!(!sweep.due(t0));
        assert!(sweep.due(t0 + period + Duration::from_millis(1)));
        assert!(
            !sweep.due(t0 + period + Duration::from_secs(30)),
            "counted as run"
        );
        assert!(sweep.due(t0 + 2 * period + Duration::from_secs(1)));

        let mut sample = Every::starting_now(period);
        assert!(sample.due(t0), "due at once");
        assert!(!sample.due(t0 + Duration::from_secs(1)));
    }
}
