//! `SwarmObject`: the Durable Object class holding one torrent's swarm (one object per info hash,
//! named by its hex), SQLite-backed.
//!
//! The swarm is a [`MirroredSwarm`] in the object's memory; storage is a table it mirrors into,
//! written only when the mirror says so, and read only when the object wakes (the torrent's
//! WebTorrent members, if any, have a table of their own: `rtc_object.rs`):
//!
//! ```text
//! swarm(key BLOB PRIMARY KEY, seeding INTEGER, value INTEGER) WITHOUT ROWID
//!   key = a peer's compact address (6 or 18 bytes): seeding 0 (leeching) | 1 (seeding) | 2
//!         (leeching, was seeding: its next completed is not counted), value = when the row was
//!         written
//!   key = x'' (empty):                              value = the completed count
//! ```
//!
//! Peers and the completed count share one table, and it is `WITHOUT ROWID`, because of what
//! SQLite storage bills (measured in Miniflare): creating a table writes 2 rows, and a rowid
//! table's primary-key index doubles every insert. So a torrent's first peer costs 3 rows
//! written, every later change 1.
//!
//! No alarms or timers: expiry is lazy, so an idle object holds nothing open and may hibernate
//! (be evicted) at once. An emptied swarm drops its table, and once neither table is left the
//! object deletes all its storage. The table is created at
//! the first write, so scraping an unknown torrent stores nothing. Owns this object's I/O (SQL,
//! its RNG); the swarm's rules are the mirror's and the core's.

use std::cell::{Cell, RefCell};

use rand::rngs::SmallRng;
use worker::{DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue, State};

use super::rtc_object::RtcMembers;
use super::rtc_wire::RtcCall;
use super::wire::{Call, Op, Reply, RowCounts, full_code};
use crate::store::Full;
use crate::store::mirror::{MirroredSwarm, Row, Write};
use crate::swarm::PeerAddr;
use crate::time::UnixTime;

/// The `seeding` column's values.
const LEECHING: i64 = 0;
const SEEDING: i64 = 1;
const DEMOTED: i64 = 2;

#[worker::durable_object]
pub struct SwarmObject {
    state: State,
    swarm: RefCell<Option<MirroredSwarm>>,
    rng: RefCell<SmallRng>,
    /// The table exists (created at the first write, gone after a clear).
    table: Cell<bool>,
    /// The torrent's WebTorrent members, loaded at the first WebTorrent call.
    rtc: RefCell<Option<RtcMembers>>,
}

impl DurableObject for SwarmObject {
    fn new(state: State, _env: Env) -> Self {
        SwarmObject {
            state,
            swarm: RefCell::new(None),
            rng: RefCell::new(crate::edge::seeded_rng()),
            table: Cell::new(false),
            rtc: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if let Some(rtc) = req.path().strip_prefix("/rtc/") {
            return self.rtc_fetch(rtc).await;
        }
        let call = req
            .path()
            .strip_prefix('/')
            .and_then(super::super::unhex)
            .and_then(|bytes| Call::decode(&bytes));
        let Some(call) = call else {
            return Response::error("not a swarm call", 400);
        };
        match self.answer(&call) {
            Ok(Answer::Full(full)) => {
                Ok(Response::from_bytes(vec![full_code(full)])?.with_status(409))
            }
            Ok(Answer::Reply(reply, cleared)) => {
                if cleared && !self.rtc_table() {
                    // The table is already gone (dropped in `answer`, before any await, so no
                    // other call can see it half-cleared). deleteAll then removes the object's
                    // storage altogether, so nothing is billed for it; if that fails, an empty
                    // database is all that is left.
                    if let Err(e) = self.state.storage().delete_all().await {
                        worker::console_error!("swarm object: deleteAll: {e}");
                    }
                }
                Response::from_bytes(reply.encode())
            }
            Err(e) => {
                // Memory may now be ahead of storage: start again from storage next time, and
                // ask storage again whether the table exists.
                self.swarm.replace(None);
                self.table.set(false);
                worker::console_error!("swarm object: {e}");
                Err(e)
            }
        }
    }
}

/// What a call comes to: a reply (and whether it cleared storage), or a refused peer.
enum Answer {
    Reply(Reply, bool),
    Full(Full),
}

impl SwarmObject {
    /// Whether the WebTorrent members' table may exist (asked of storage if not loaded yet), so
    /// that clearing one table never deletes the other's storage.
    fn rtc_table(&self) -> bool {
        match &*self.rtc.borrow() {
            Some(members) => members.has_table(),
            None => {
                let sql = self.state.storage().sql();
                table_exists(&sql, "rtc").unwrap_or(true)
            }
        }
    }

    /// One WebTorrent call (hex in the path): see [`super::rtc_wire`].
    async fn rtc_fetch(&self, hex: &str) -> worker::Result<Response> {
        let Some(call) = super::super::unhex(hex).and_then(|b| RtcCall::decode(&b)) else {
            return Response::error("not a WebTorrent swarm call", 400);
        };
        let sql = self.state.storage().sql();
        let answered = {
            let mut slot = self.rtc.borrow_mut();
            let loaded = match slot.as_mut() {
                Some(members) => Ok(members),
                None => {
                    let mut key = [0u8; 16];
                    rand_core::Rng::fill_bytes(&mut *self.rng.borrow_mut(), &mut key);
                    RtcMembers::load(&sql, &call, key).map(|m| slot.insert(m))
                }
            };
            loaded.and_then(|members| members.answer(&sql, &call, &mut self.rng.borrow_mut()))
        };
        match answered {
            Ok((reply, cleared)) => {
                // The other table gone as well: remove the object's storage altogether.
                if cleared
                    && !self.table.get()
                    && !table_exists(&sql, "swarm").unwrap_or(true)
                    && let Err(e) = self.state.storage().delete_all().await
                {
                    worker::console_error!("swarm object: deleteAll: {e}");
                }
                Response::from_bytes(reply.encode(&call.op))
            }
            Err(e) => {
                // Memory may be ahead of storage: load again next time.
                self.rtc.replace(None);
                worker::console_error!("swarm object (WebTorrent): {e}");
                Err(e)
            }
        }
    }

    /// Runs one call against the swarm (loading it first if needed) and carries out its writes.
    /// Returns the reply and whether it cleared storage. No await in here, so no other call can
    /// interleave with it, and the swarm is never borrowed across a suspension.
    fn answer(&self, call: &Call) -> worker::Result<Answer> {
        let sql = self.state.storage().sql();
        let mut rows = RowCounts::default();
        let mut writes = Vec::new();
        let mut reply = Reply::default();
        {
            let mut slot = self.swarm.borrow_mut();
            if slot.as_ref().is_none_or(|s| s.must_reload(call.now)) {
                *slot = Some(self.load(&sql, call, &mut writes, &mut rows)?);
            }
            let swarm = slot.as_mut().expect("loaded above");
            swarm.set_knobs(call.knobs);
            reply.counts = match &call.op {
                Op::Announce(a) => {
                    let mut rng = self.rng.borrow_mut();
                    match swarm.announce(a, call.now, &mut *rng, &mut reply.peers, &mut writes) {
                        Ok(counts) => counts,
                        Err(full) => {
                            // Refused: nothing changed but a due sweep, whose deletions stand.
                            self.apply(&sql, &writes, &mut rows)?;
                            return Ok(Answer::Full(full));
                        }
                    }
                }
                Op::Scrape(_) => swarm.counts(call.now, &mut writes),
            };
        }
        let cleared = self.apply(&sql, &writes, &mut rows)?;
        reply.rows = rows;
        Ok(Answer::Reply(reply, cleared))
    }

    fn load(
        &self,
        sql: &SqlStorage,
        call: &Call,
        writes: &mut Vec<Write>,
        rows: &mut RowCounts,
    ) -> worker::Result<MirroredSwarm> {
        // Leechers, then seeders, each by address: the order the swarm keeps, so loading appends.
        let exists = sql.exec(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'swarm'",
            None,
        )?;
        let found = exists.raw().next().transpose()?;
        count(rows, &exists);
        if found.as_deref().and_then(<[_]>::first).and_then(integer) != Some(1) {
            self.table.set(false);
            return Ok(MirroredSwarm::new(call.knobs, call.now));
        }
        self.table.set(true);
        let cursor = sql.exec(
            "SELECT key, seeding, value FROM swarm ORDER BY seeding, key",
            None,
        )?;
        let (mut peers, mut downloaded) = (Vec::new(), 0);
        for row in cursor.raw() {
            let row = row?;
            let (Some(SqlStorageValue::Blob(key)), Some(seeding), Some(value)) = (
                row.first(),
                row.get(1).and_then(integer),
                row.get(2).and_then(integer),
            ) else {
                // Only this class writes the table, so this is a bug: skip the row (it is
                // overwritten or dropped as the swarm moves on) rather than fail every request.
                // (Not formatted with Debug: float formatting alone adds ~30 KB to the bundle.)
                worker::console_error!("swarm object: skipped a malformed row");
                continue;
            };
            let value = u32::try_from(value).unwrap_or(0);
            match key.len() {
                0 => downloaded = value,
                6 | 18 => peers.push(Row {
                    peer: peer_of(key),
                    seeding: seeding == SEEDING,
                    written: UnixTime(value),
                    demoted: seeding == DEMOTED,
                }),
                len => worker::console_error!("swarm object: skipped a key of {len} bytes"),
            }
        }
        count(rows, &cursor);
        Ok(MirroredSwarm::load(
            call.knobs, peers, downloaded, call.now, writes,
        ))
    }

    /// Carries out the mirror's writes; returns whether they cleared storage.
    fn apply(
        &self,
        sql: &SqlStorage,
        writes: &[Write],
        rows: &mut RowCounts,
    ) -> worker::Result<bool> {
        const UPSERT: &str = "INSERT INTO swarm (key, seeding, value) VALUES (?, ?, ?) \
            ON CONFLICT (key) DO UPDATE SET seeding = excluded.seeding, value = excluded.value";
        for w in writes {
            let cursor = match *w {
                Write::Clear => {
                    if !self.table.get() {
                        return Ok(false);
                    }
                    count(rows, &sql.exec("DROP TABLE swarm", None)?);
                    self.table.set(false);
                    return Ok(true);
                }
                Write::Peer(r) => {
                    self.create_table(sql, rows)?;
                    let seeding = SqlStorageValue::Integer(match (r.seeding, r.demoted) {
                        (true, _) => SEEDING,
                        (false, true) => DEMOTED,
                        (false, false) => LEECHING,
                    });
                    let written = SqlStorageValue::Integer(i64::from(r.written.secs()));
                    sql.exec(UPSERT, vec![blob(r.peer.as_bytes()), seeding, written])?
                }
                Write::Forget(p) => {
                    if !self.table.get() {
                        continue;
                    }
                    sql.exec("DELETE FROM swarm WHERE key = ?", vec![blob(p.as_bytes())])?
                }
                Write::Downloaded(n) => {
                    self.create_table(sql, rows)?;
                    let n = SqlStorageValue::Integer(i64::from(n));
                    sql.exec(UPSERT, vec![blob(&[]), SqlStorageValue::Integer(0), n])?
                }
            };
            count(rows, &cursor);
        }
        Ok(false)
    }

    fn create_table(&self, sql: &SqlStorage, rows: &mut RowCounts) -> worker::Result<()> {
        if self.table.get() {
            return Ok(());
        }
        let ddl = "CREATE TABLE IF NOT EXISTS swarm \
            (key BLOB PRIMARY KEY, seeding INTEGER NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID";
        count(rows, &sql.exec(ddl, None)?);
        self.table.set(true);
        Ok(())
    }
}

/// Adds a finished cursor's row counts (what SQLite billing counts) to `rows`.
fn count(rows: &mut RowCounts, cursor: &worker::SqlCursor) {
    rows.read = rows.read.saturating_add(cursor.rows_read() as u32);
    rows.written = rows.written.saturating_add(cursor.rows_written() as u32);
}

/// Whether table `name` exists.
pub(super) fn table_exists(sql: &SqlStorage, name: &str) -> worker::Result<bool> {
    let cursor = sql.exec(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        vec![SqlStorageValue::String(name.to_string())],
    )?;
    let found = cursor.raw().next().transpose()?;
    Ok(found.as_deref().and_then(<[_]>::first).and_then(integer) == Some(1))
}

pub(super) fn integer(v: &SqlStorageValue) -> Option<i64> {
    match v {
        SqlStorageValue::Integer(n) => Some(*n),
        SqlStorageValue::Boolean(b) => Some(i64::from(*b)),
        _ => None,
    }
}

pub(super) fn blob(bytes: &[u8]) -> SqlStorageValue {
    SqlStorageValue::Blob(bytes.to_vec())
}

/// A 6- or 18-byte key as the peer it names.
fn peer_of(key: &[u8]) -> PeerAddr {
    match <[u8; 6]>::try_from(key) {
        Ok(v4) => PeerAddr::V4(v4),
        Err(_) => PeerAddr::V6(<[u8; 18]>::try_from(key).unwrap_or([0; 18])),
    }
}
