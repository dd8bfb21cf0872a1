//! The whole test suite as one binary (as mdBook does): one link of the library and its
//! dependencies instead of one per file, one `support` module shared by all. Each module is
//! one feature; `tests/README.md` says what each proves and against what.

#[macro_use]
mod support;

mod a11y;
mod annual;
mod backup;
mod bounces;
mod browser;
mod check;
mod cli;
mod clicks;
mod compose;
mod connect;
mod cron;
mod deliver;
mod dkim;
mod dmarc;
mod dmarc_mailboxes;
mod doctor;
mod events;
mod hostile_html;
mod init;
mod lab;
mod lists;
mod mailboxes;
mod mailchimp;
mod pool;
mod postfix_relay;
mod preview_server;
mod readers;
mod recipes;
mod reputation;
mod resume;
mod retention;
mod return_path;
mod rotation;
mod security;
mod ses;
mod signup;
mod spam;
mod status;
mod tls;
mod web;
