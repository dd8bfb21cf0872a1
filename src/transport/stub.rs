//! A transport with scripted answers, for the engine's unit tests: each message's answer is
//! chosen by a function of the recipient and how many messages this relay has seen.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use lettre::address::Envelope;

use crate::transport::{Accepted, SendError, Transport};

type Script = dyn Fn(&str, usize) -> Result<(), SendError> + Send + Sync;

pub struct Stub {
    script: Box<Script>,
    seen: AtomicUsize,
    /// The recipients it accepted, in order.
    pub accepted: Mutex<Vec<String>>,
}

impl Stub {
    pub fn new(script: impl Fn(&str, usize) -> Result<(), SendError> + Send + Sync + 'static) -> Stub {
        Stub {
            script: Box::new(script),
            seen: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
        }
    }

    pub fn accepting() -> Stub {
        Stub::new(|_, _| Ok(()))
    }
}

#[async_trait]
impl Transport for Stub {
    async fn send(&self, envelope: &Envelope, _message: &[u8]) -> Result<Accepted, SendError> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        let rcpt = envelope.to().first().map(ToString::to_string).unwrap_or_default();
        (self.script)(&rcpt, n)?;
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(rcpt);
        Ok(Accepted { reply: "250 ok".into() })
    }
}

/// A shared stub as a transport: the test keeps a handle to read what it accepted.
#[async_trait]
impl Transport for std::sync::Arc<Stub> {
    async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Accepted, SendError> {
        self.as_ref().send(envelope, message).await
    }
}
