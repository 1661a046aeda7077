//! agora's pure domain: the types and decisions every edge shares.
//!
//! Nothing in this crate performs I/O, reads a clock, or draws randomness: callers pass `now` and
//! generated values in, so every rule here is a plain function that unit tests can table-drive.

pub mod account;
pub mod client;
pub mod credential;
pub mod email;
pub mod federation;
pub mod profile;
pub mod scope;
pub mod toolkit;
pub mod user;

/// Seconds since the Unix epoch. Every timestamp agora stores or compares uses this unit.
pub type UnixTime = i64;
