//! Delivery: throttle, SMTP connections, and the loop that sends through them.

pub mod aws;
pub mod connect;
pub mod oauth;
pub mod pool;
pub mod queue;
pub mod recorder;
pub mod reply;
pub mod report;
pub mod reputation;
pub mod run;
pub mod ses;
pub mod session;
pub mod smtp;
mod streams;
pub mod throttle;
pub mod tls;
