//! A swarm object's WebTorrent members: the torrent's [`RtcSwarm`] in the object's memory,
//! mirrored into one more table of its SQLite storage so that an evicted object wakes with them:
//!
//! ```text
//! rtc(peer_id BLOB PRIMARY KEY, conn BLOB, seeding INTEGER, seen INTEGER) WITHOUT ROWID
//!   peer_id = 20 bytes: conn = the socket object holding it (8 bytes, big-endian: SQL values
//!                     pass through JavaScript numbers, exact only to 2^53),
//!                     seen = when the row was written
//!   peer_id = x'' (empty): seen = the completed count
//! ```
//!
//! A row is written when a member joins, moves to another socket or role, or when its row has
//! grown too old to outlive the member's next announce should the object be evicted: one write
//! per join and one per two steady announces with the default knobs (a 360 s timeout, 120 s
//! between announces), not one per announce; answers and scrapes write nothing. A member that leaves, or times out, is
//! deleted; an emptied swarm drops the table. The object cannot see whether another object's
//! socket is open, so a member counts as connected until its socket object says it left or it
//! times out. Owns the mirror of these members; what an announce does is
//! [`crate::swarm::rtc`]'s, the object's other table [`super::object`]'s.

use std::collections::HashMap;

use rand::rngs::SmallRng;
use worker::{SqlStorage, SqlStorageValue};

use super::object::{blob, integer, table_exists};
use super::rtc_wire::{RtcCall, RtcOp, RtcReply};
use crate::protocol::types::PeerId;
use crate::store::memory::KeyedHasher;
use crate::swarm::rtc::{ConnId, RtcAnnounce, RtcSwarm};
use crate::time::UnixTime;

/// What storage holds of one member: its socket, its role, when its row was written.
type Stored = (ConnId, bool, UnixTime);

pub struct RtcMembers {
    swarm: RtcSwarm<KeyedHasher>,
    stored: HashMap<PeerId, Stored, KeyedHasher>,
    stored_downloaded: u32,
    table: bool,
    /// When silent members are next looked for.
    next_sweep: UnixTime,
}

const UPSERT: &str = "INSERT INTO rtc (peer_id, conn, seeding, seen) VALUES (?, ?, ?, ?) \
    ON CONFLICT (peer_id) DO UPDATE SET conn = excluded.conn, seeding = excluded.seeding, \
    seen = excluded.seen";

impl RtcMembers {
    /// The members storage holds (those silent past the timeout are dropped, and deleted).
    pub fn load(
        sql: &SqlStorage,
        call: &RtcCall,
        hash_key: [u8; 16],
    ) -> worker::Result<RtcMembers> {
        let mut members = RtcMembers {
            swarm: RtcSwarm::with_hasher(KeyedHasher(hash_key)),
            stored: HashMap::with_hasher(KeyedHasher(hash_key.map(|b| b ^ 0x5c))),
            stored_downloaded: 0,
            table: false,
            next_sweep: call.now + sweep_every(call.knobs.peer_timeout),
        };
        if !table_exists(sql, "rtc")? {
            return Ok(members);
        }
        members.table = true;
        let cursor = sql.exec("SELECT peer_id, conn, seeding, seen FROM rtc", None)?;
        let mut stale = Vec::new();
        for row in cursor.raw() {
            let row = row?;
            let (Some(SqlStorageValue::Blob(key)), Some(conn), Some(seeding), Some(seen)) = (
                row.first(),
                row.get(1).and_then(conn_of),
                row.get(2).and_then(integer),
                row.get(3).and_then(integer),
            ) else {
                worker::console_error!("swarm object: skipped a malformed rtc row");
                continue;
            };
            let seen = UnixTime(u32::try_from(seen).unwrap_or(0));
            if key.is_empty() {
                members.stored_downloaded = seen.secs();
                members.swarm.restore_downloaded(seen.secs());
                continue;
            }
            let Ok(peer_id) = <[u8; 20]>::try_from(&key[..]).map(PeerId) else {
                continue;
            };
            if call.now.since(seen) > call.knobs.peer_timeout {
                stale.push(peer_id);
                continue;
            }
            let seeding = seeding != 0;
            members.swarm.restore(peer_id, conn, seeding, seen);
            members.stored.insert(peer_id, (conn, seeding, seen));
        }
        for p in stale {
            sql.exec("DELETE FROM rtc WHERE peer_id = ?", vec![blob(&p.0)])?;
        }
        Ok(members)
    }

    /// Carries out `call` and mirrors what changed. Returns the reply, and whether the swarm
    /// emptied and dropped its table. No await in here: no other call interleaves.
    pub fn answer(
        &mut self,
        sql: &SqlStorage,
        call: &RtcCall,
        rng: &mut SmallRng,
    ) -> worker::Result<(RtcReply, bool)> {
        let (now, knobs) = (call.now, call.knobs);
        let mut gone = Vec::new();
        if now >= self.next_sweep {
            self.swarm
                .expire_each(now, knobs.peer_timeout, |p| gone.push(p));
            self.next_sweep = now + sweep_every(knobs.peer_timeout);
        }
        let mut reply = RtcReply::default();
        match call.op {
            RtcOp::Announce {
                event,
                seeding,
                offers,
            } => {
                let a = RtcAnnounce {
                    peer_id: call.peer_id,
                    conn: call.conn,
                    event,
                    seeding,
                    offers: usize::from(offers),
                    // Not counted per client here (the call does not carry the address).
                    client: None,
                };
                // The object cannot see other objects' sockets: a member's socket counts as
                // open until it leaves or times out.
                let open = |_: ConnId| true;
                reply.announced = Some(self.swarm.announce(
                    &a,
                    now,
                    &open,
                    knobs.max_peers as usize,
                    rng,
                    &mut reply.recipients,
                ));
            }
            RtcOp::Answer { to } => {
                reply.route = (self.swarm.conn_of(&call.peer_id) == Some(call.conn))
                    .then(|| self.swarm.conn_of(&to));
            }
            RtcOp::Counts => {}
            RtcOp::Leave => {
                self.swarm.leave(&call.peer_id, call.conn);
            }
        }
        reply.counts = self.swarm.counts();
        let cleared = self.mirror(sql, call, &gone)?;
        Ok((reply, cleared))
    }

    /// Brings storage in line with memory for the caller's peer, the swept ones and the
    /// completed count. Returns whether the table was dropped.
    fn mirror(
        &mut self,
        sql: &SqlStorage,
        call: &RtcCall,
        gone: &[PeerId],
    ) -> worker::Result<bool> {
        if self.swarm.is_empty() {
            // An emptied swarm is gone with its completed count, as natively.
            self.swarm.restore_downloaded(0);
            self.stored.clear();
            self.stored_downloaded = 0;
            if self.table {
                sql.exec("DROP TABLE rtc", None)?;
                self.table = false;
                return Ok(true);
            }
            return Ok(false);
        }
        // Only an announce or a leave changes the caller; answers and scrapes write nothing.
        let caller =
            matches!(call.op, RtcOp::Announce { .. } | RtcOp::Leave).then_some(&call.peer_id);
        let refresh_after = refresh_after(call.knobs.announce_interval, call.knobs.peer_timeout);
        for p in gone.iter().chain(caller) {
            let before = self.stored.get(p).copied();
            match self.swarm.member(p) {
                Some((conn, seeding, seen)) => {
                    let due = before.is_none_or(|(c, s, written)| {
                        c != conn || s != seeding || seen.since(written) > refresh_after
                    });
                    if due {
                        self.create_table(sql)?;
                        let values = vec![
                            blob(&p.0),
                            blob(&conn.to_be_bytes()),
                            SqlStorageValue::Integer(i64::from(seeding)),
                            SqlStorageValue::Integer(i64::from(seen.secs())),
                        ];
                        sql.exec(UPSERT, values)?;
                        self.stored.insert(*p, (conn, seeding, seen));
                    }
                }
                None if before.is_some() => {
                    self.stored.remove(p);
                    sql.exec("DELETE FROM rtc WHERE peer_id = ?", vec![blob(&p.0)])?;
                }
                None => {}
            }
        }
        let downloaded = self.swarm.counts().downloaded;
        if downloaded != self.stored_downloaded {
            self.create_table(sql)?;
            let values = vec![
                blob(&[]),
                blob(&[]),
                SqlStorageValue::Integer(0),
                SqlStorageValue::Integer(i64::from(downloaded)),
            ];
            sql.exec(UPSERT, values)?;
            self.stored_downloaded = downloaded;
        }
        Ok(false)
    }

    fn create_table(&mut self, sql: &SqlStorage) -> worker::Result<()> {
        if !self.table {
            let ddl = "CREATE TABLE IF NOT EXISTS rtc (peer_id BLOB PRIMARY KEY, \
                conn BLOB NOT NULL, seeding INTEGER NOT NULL, seen INTEGER NOT NULL) \
                WITHOUT ROWID";
            sql.exec(ddl, None)?;
            self.table = true;
        }
        Ok(())
    }

    /// Whether the table exists (so the object's storage is not empty).
    pub fn has_table(&self) -> bool {
        self.table
    }
}

/// A connection id as its row keeps it (the completed count's row keeps none).
fn conn_of(v: &SqlStorageValue) -> Option<ConnId> {
    match v {
        SqlStorageValue::Blob(b) if b.is_empty() => Some(0),
        SqlStorageValue::Blob(b) => Some(u64::from_be_bytes(b[..].try_into().ok()?)),
        _ => None,
    }
}

/// How old a member's row may get before an announce rewrites it: old enough that a row is
/// rewritten about every other announce, young enough that a member restored from it outlives
/// its next announce (an interval, and a quarter of one for a late client).
fn refresh_after(interval: u32, timeout: u32) -> u32 {
    timeout.saturating_sub(interval.saturating_add(interval / 4))
}

/// Silent members are looked for four times a timeout: one sweeps them within 1.25 timeouts.
fn sweep_every(timeout: u32) -> u32 {
    (timeout / 4).max(1)
}
