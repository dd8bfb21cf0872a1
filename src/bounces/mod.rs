//! The return path: reports in the bounce mailbox (delivery status notifications, feedback-loop
//! complaints, replies to the unsubscribe address) read, classified and acted on.
//!
//! [`report`] reads one message ([`fields`] for the machine-readable parts, [`text`] for
//! prose, [`ses`] for Amazon SES's JSON), [`classify`] says what a failure means; [`source`]
//! and [`imap`] read the mailbox, [`act`] does what a report asks, [`pass`] reads the mailbox once and acts, [`guard`] holds back a
//! mass suppression, [`verp`] makes and reads the envelope senders that name the recipient.

pub mod act;
pub mod classify;
pub mod fields;
pub mod finding;
pub mod guard;
pub mod pass;
pub mod report;
pub mod ses;
pub mod sns;
pub mod text;
pub mod verp;

pub use classify::{Class, Reason};
pub use finding::Finding;
pub use report::{Report, read};
