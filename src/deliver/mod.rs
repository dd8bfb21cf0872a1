//! Delivery: throttle, SMTP connections, and the loop that sends through them.

pub mod connect;
pub mod oauth;
pub mod queue;
pub mod recorder;
pub mod reply;
pub mod report;
pub mod reputation;
pub mod run;
pub mod session;
pub mod smtp;
mod streams;
pub mod throttle;
pub mod tls;
