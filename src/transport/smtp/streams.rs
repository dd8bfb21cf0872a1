//! The streams lettre's connection runs over: implicit TLS on our own socket, and around
//! every connection one that hands lettre a greeting after our own STARTTLS and records the
//! server's EHLO reply.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Implicit TLS on our own socket (lettre's own TLS connect would not set TCP_NODELAY).
#[derive(Debug)]
pub(super) struct TlsStream(pub(super) tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// The stream lettre's session runs over. Its first bytes may be a greeting already read
/// (after our own STARTTLS, lettre starts by reading one). It keeps a copy of what the server
/// says until its EHLO reply has been read: lettre reads that reply but keeps no PIPELINING
/// from it, and a second EHLO to ask again is refused by some servers (OpenSMTPD: "503 5.5.1
/// Invalid command: Already identified").
#[derive(Debug)]
pub(super) struct Recorded {
    stream: Box<dyn AsyncTokioStream>,
    greeting: &'static [u8],
    heard: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

/// What lettre is given to read first after our own STARTTLS.
pub(super) const TLS_GREETING: &[u8] = b"220 TLS established\r\n";

/// What a [`Recorded`] stream heard; taking it stops the recording.
#[derive(Debug, Clone)]
pub(super) struct Heard(std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>);

/// Enough for any greeting and EHLO reply; past it nothing more is kept.
const HEARD_MAX: usize = 16 * 1024;

impl Recorded {
    /// `greeting`: what to read before the stream's own bytes (empty for none).
    pub(super) fn new(stream: Box<dyn AsyncTokioStream>, greeting: &'static [u8]) -> (Recorded, Heard) {
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Some(Vec::new())));
        (
            Recorded {
                stream,
                greeting,
                heard: std::sync::Arc::clone(&heard),
            },
            Heard(heard),
        )
    }
}

impl Heard {
    /// Everything heard so far, as text; recording stops.
    pub(super) fn take(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl AsyncRead for Recorded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.greeting.is_empty() {
            let n = self.greeting.len().min(buf.remaining());
            buf.put_slice(&self.greeting[..n]);
            self.greeting = &self.greeting[n..];
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Some(heard) = self
                .heard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
                .filter(|h| h.len() < HEARD_MAX)
        {
            heard.extend_from_slice(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Recorded {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }
}
