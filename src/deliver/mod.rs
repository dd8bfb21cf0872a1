//! The delivery engine: messages in, through the relays' transports (`crate::transport`), each
//! outcome out to the observers. It shares messages between relays by weight within their
//! rates, connections and daily limits, retries with back-off, takes a failing relay out of
//! the rotation, and stops a run that fails too often. `crate::send` drives it.

mod observe;
mod relays;
pub mod run;
pub mod throttle;

#[cfg(test)]
mod engine_tests;
