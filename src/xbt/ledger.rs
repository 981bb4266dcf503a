//! What waits to be written to a site's database: the traffic announces credited and the rows
//! they changed, gathered in memory between writes.
//!
//! Announces never wait on the database. Each one records its changes here; a writer takes
//! everything as one [`Batch`] every `write_db_interval`, writes it in one transaction, and on a
//! failure puts it back ([`Ledger::put_back`]), where it merges with what came meanwhile, so
//! nothing is lost and nothing is written twice. A user's row per torrent is written once per
//! batch however often its peers announced. The ledger holds at most `max_rows` rows: past
//! that, an announce that would add a row is not recorded, and counted.

use std::collections::HashMap;

use super::credit::Traffic;
use crate::time::UnixTime;

/// A user's row for one torrent (`xbt_peers`, or `xbt_files_users` on classic sites): what the
/// batch adds to it or sets in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserTorrent {
    /// Added to `uploaded` and `downloaded`.
    pub traffic: Traffic,
    /// Added to `completed`.
    pub completed: u32,
    /// Set: `active` (false after `stopped`), `left`, `mtime`, as of the last announce.
    pub active: bool,
    pub left: u64,
    pub mtime: UnixTime,
}

/// Everything taken from the ledger for one write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Numbers the batches a ledger hands out: a writer that records the last one it committed
    /// (in the same transaction) knows whether a batch whose commit's outcome it never learned
    /// was applied.
    pub id: u64,
    /// Added to each user's `uploaded` and `downloaded`, by uid.
    pub users: HashMap<u32, Traffic>,
    /// By (uid, torrent id).
    pub user_torrents: HashMap<(u32, u32), UserTorrent>,
    /// Added to each torrent's `completed`, by torrent id.
    pub completed: HashMap<u32, u32>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.user_torrents.is_empty() && self.completed.is_empty()
    }

    /// Rows the batch would write.
    pub fn rows(&self) -> usize {
        self.users.len() + self.user_torrents.len() + self.completed.len()
    }
}

/// One announce's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub uid: u32,
    pub tid: u32,
    /// What the announce credited ([`super::credit::credit`]).
    pub credit: Traffic,
    pub completed: bool,
    pub stopped: bool,
    pub left: u64,
    pub now: UnixTime,
}

/// The changes waiting for the next write.
#[derive(Debug)]
pub struct Ledger {
    pending: Batch,
    next_id: u64,
    max_rows: usize,
    refused: u64,
}

impl Ledger {
    /// A ledger holding at most `max_rows` rows; batches are numbered from `first_id`.
    pub fn new(max_rows: usize, first_id: u64) -> Self {
        Ledger {
            pending: Batch::default(),
            next_id: first_id,
            max_rows,
            refused: 0,
        }
    }

    /// Records one announce's changes; false (and counted) when they would need a row past
    /// `max_rows`.
    pub fn record(&mut self, c: &Change) -> bool {
        let p = &mut self.pending;
        let new_rows = usize::from(!p.user_torrents.contains_key(&(c.uid, c.tid)))
            + usize::from(c.credit != Traffic::default() && !p.users.contains_key(&c.uid))
            + usize::from(c.completed && !p.completed.contains_key(&c.tid));
        if p.rows() + new_rows > self.max_rows {
            self.refused += 1;
            return false;
        }
        let row = p.user_torrents.entry((c.uid, c.tid)).or_default();
        add(&mut row.traffic, c.credit);
        row.completed += u32::from(c.completed);
        row.active = !c.stopped;
        row.left = c.left;
        row.mtime = c.now;
        if c.credit != Traffic::default() {
            add(p.users.entry(c.uid).or_default(), c.credit);
        }
        if c.completed {
            *p.completed.entry(c.tid).or_default() += 1;
        }
        true
    }

    /// Everything recorded since the last batch, numbered; the ledger starts empty again.
    pub fn take(&mut self) -> Batch {
        let mut batch = std::mem::take(&mut self.pending);
        batch.id = self.next_id;
        self.next_id += 1;
        batch
    }

    /// A batch whose write failed comes back, merged with what was recorded since: traffic and
    /// counts add up, and a row's state (active, left, time) is the newer one's. It may pass
    /// `max_rows`: what was already taken is never dropped.
    pub fn put_back(&mut self, batch: Batch) {
        let p = &mut self.pending;
        for (uid, t) in batch.users {
            add(p.users.entry(uid).or_default(), t);
        }
        for (key, old) in batch.user_torrents {
            let row = p.user_torrents.entry(key).or_insert(UserTorrent {
                traffic: Traffic::default(),
                completed: 0,
                ..old
            });
            add(&mut row.traffic, old.traffic);
            row.completed += old.completed;
        }
        for (tid, n) in batch.completed {
            *p.completed.entry(tid).or_default() += n;
        }
    }

    /// Rows waiting.
    pub fn rows(&self) -> usize {
        self.pending.rows()
    }

    /// Announces not recorded: the ledger was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

fn add(into: &mut Traffic, t: Traffic) {
    into.uploaded = into.uploaded.saturating_add(t.uploaded);
    into.downloaded = into.downloaded.saturating_add(t.downloaded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn change(uid: u32, tid: u32, up: u64, now: u32) -> Change {
        Change {
            uid,
            tid,
            credit: Traffic {
                uploaded: up,
                downloaded: 2 * up,
            },
            completed: false,
            stopped: false,
            left: 10,
            now: UnixTime(now),
        }
    }

    #[test]
    fn one_row_per_user_and_torrent_per_batch() {
        let mut l = Ledger::new(100, 1);
        for i in 0..10 {
            assert!(l.record(&change(7, 3, 5, 100 + i)));
        }
        l.record(&Change {
            completed: true,
            stopped: true,
            left: 0,
            ..change(7, 3, 0, 200)
        });
        let b = l.take();
        assert_eq!((b.id, b.rows()), (1, 3), "user, user-torrent, torrent");
        assert_eq!(
            b.users[&7],
            Traffic {
                uploaded: 50,
                downloaded: 100
            }
        );
        let row = b.user_torrents[&(7, 3)];
        assert_eq!(
            (row.completed, row.active, row.left, row.mtime),
            (1, false, 0, UnixTime(200))
        );
        assert_eq!(b.completed[&3], 1);
        assert!(l.take().is_empty());
        assert_eq!(l.take().id, 3, "numbered");
    }

    #[test]
    fn a_full_ledger_refuses_new_rows_and_counts_them() {
        let mut l = Ledger::new(2, 1);
        assert!(l.record(&change(1, 1, 5, 1)), "user and user-torrent rows");
        assert!(l.record(&change(1, 1, 5, 2)), "the same rows");
        assert!(!l.record(&change(2, 1, 5, 3)), "two more rows");
        assert_eq!((l.refused(), l.rows()), (1, 2));
    }

    #[test]
    fn a_failed_batch_comes_back_merged_with_the_newer_state() {
        let mut l = Ledger::new(100, 1);
        l.record(&change(1, 1, 5, 1));
        let failed = l.take();
        l.record(&Change {
            stopped: true,
            ..change(1, 1, 3, 9)
        });
        l.put_back(failed);
        let b = l.take();
        assert_eq!(
            b.users[&1],
            Traffic {
                uploaded: 8,
                downloaded: 16
            }
        );
        let row = b.user_torrents[&(1, 1)];
        assert_eq!(
            (row.active, row.mtime),
            (false, UnixTime(9)),
            "the newer state"
        );
        assert_eq!(row.traffic.uploaded, 8);
    }

    proptest! {
        /// However writes fail and batches come back, what is finally written adds up to what
        /// was recorded: nothing lost, nothing twice.
        #[test]
        fn nothing_lost_nothing_twice(ops in proptest::collection::vec((0u32..4, 0u32..3, 0u64..1000, 0u8..3), 1..60)) {
            let mut l = Ledger::new(usize::MAX, 1);
            let (mut recorded, mut written) = (0u64, 0u64);
            for (uid, tid, up, op) in ops {
                match op {
                    0 => {
                        l.record(&change(uid, tid, up, 1));
                        recorded += up;
                    }
                    1 => written += l.take().users.values().map(|t| t.uploaded).sum::<u64>(),
                    _ => {
                        let failed = l.take();
                        l.put_back(failed);
                    }
                }
            }
            written += l.take().users.values().map(|t| t.uploaded).sum::<u64>();
            prop_assert_eq!(recorded, written);
        }
    }
}
