//! Tracker policy: what an announce does to a swarm and which peers it gets back.
//!
//! Owns the swarm data structure used in memory ([`torrent`], [`peer_list`], [`chunks`]), peer
//! selection ([`select`]) and the knobs that govern both ([`policy`]). Depends on [`crate::protocol`] types only; knows no
//! wire format, store, clock or socket.

pub mod chunks;
pub mod peer;
pub mod peer_list;
pub mod policy;
pub mod rtc;
pub mod select;
pub mod torrent;

pub use peer::{PeerAddr, PeerStatus};
pub use policy::Policy;
