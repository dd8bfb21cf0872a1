//! Delivery: the plan of a send, the throttle, and the loop that sends through the relays'
//! transports (`crate::transport`).

mod observe;
pub mod pool;
pub mod queue;
pub mod recorder;
mod relays;
pub mod report;
pub mod reputation;
pub mod run;
pub mod session;
pub mod throttle;

#[cfg(test)]
mod engine_tests;
