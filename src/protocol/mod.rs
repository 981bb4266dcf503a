//! The wire: parsing requests and writing replies, for HTTP (BEP 3/7/23/48), UDP (BEP 15/41) and
//! WebTorrent's WebSocket messages.
//!
//! Owns byte layouts and their validation. May not know about swarms, stores, clocks or sockets:
//! everything time- or address-dependent is passed in by the caller.

pub mod bencode;
pub mod connection_id;
pub mod hex;
pub mod http;
pub mod percent;
pub mod route;
pub mod types;
pub mod udp;
pub mod ws;
