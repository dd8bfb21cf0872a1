//! Delivery: throttle, SMTP connections, and the loop that sends through them.

pub mod queue;
pub mod run;
pub mod smtp;
pub mod throttle;
