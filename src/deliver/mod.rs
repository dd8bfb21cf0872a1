//! Delivery: throttle, SMTP connections, and the loop that sends through them.

pub mod oauth;
pub mod queue;
pub mod reply;
pub mod run;
pub mod smtp;
pub mod throttle;
pub mod tls;
