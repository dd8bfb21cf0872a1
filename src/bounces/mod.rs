//! The return path: reports in the bounce mailbox (delivery status notifications, feedback-loop
//! complaints, replies to the unsubscribe address) read, classified and acted on.
//!
//! [`report`] reads one message ([`fields`] for the machine-readable parts, [`text`] for
//! prose), [`classify`] says what a failure means.

pub mod act;
pub mod classify;
pub mod fields;
pub mod imap;
pub mod report;
pub mod source;
pub mod text;
pub mod verp;

pub use classify::{Class, Reason};
pub use report::{Finding, Report, read};
