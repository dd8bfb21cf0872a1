//! The whole test suite as one binary (as mdBook does): one link of the library and its
//! dependencies instead of one per file, one `support` module shared by all. Each module is
//! one feature; `tests/README.md` says what each proves and against what.

#[macro_use]
mod support;

mod a11y;
mod bounces;
mod browser;
mod check;
mod cli;
mod compose;
mod deliver;
mod dkim;
mod events;
mod lab;
mod pool;
mod postfix_relay;
mod preview_server;
mod readers;
mod reputation;
mod resume;
mod security;
mod ses;
mod signup;
mod spam;
mod tls;
mod web;
