//! XBT Tracker's rules for private sites, without I/O: which user a torrent_pass names (a pass of
//! their own, or one derived per torrent), whether XBT would let an announce through and what it
//! would say if not, what traffic an announce credits to its user, and the ledger of changes
//! waiting to be written back (one row per user and torrent per write, nothing lost or twice).
//!
//! These are the rules a site's database was written for, so they are kept as XBT keeps them
//! (its refusal texts, its order of checks, its credit rule). The tables they are read from and
//! written to belong to a home (the native tracker's XBT mode); nothing here reads a clock, a
//! socket or a database: users come in as values, `now` as an argument.

pub mod credit;
pub mod ledger;
pub mod pass;
pub mod refusal;
pub mod settings;
