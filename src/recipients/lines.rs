//! Counting the list's lines as an editor does, and cutting runaway lines, on the bytes'
//! way to the CSV parser.

use std::io::Read;
use std::sync::{Arc, Mutex};

/// Lines longer than this are cut before the CSV parser sees them, so that a runaway field
/// (a missing quote, a binary file) never takes more memory than this; their row is skipped.
pub(super) const MAX_LINE_BYTES: usize = 1024 * 1024;

pub(super) fn lock(lines: &Mutex<Lines>) -> std::sync::MutexGuard<'_, Lines> {
    lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The list's bytes on their way to the CSV parser, with their lines counted: the parser's
/// own line numbers are one short on CRLF files and point at the first of any blank lines
/// before a row. Lines over [`MAX_LINE_BYTES`] are cut here.
pub(super) struct Tracked {
    inner: Box<dyn Read + Send>,
    lines: Arc<Mutex<Lines>>,
    /// Bytes ready for the parser.
    pending: Vec<u8>,
    /// Bytes read, before filtering.
    raw: Vec<u8>,
}

#[derive(Default)]
pub(super) struct Lines {
    /// The bytes given to the parser that it may not have consumed yet, from offset `base`.
    window: std::collections::VecDeque<u8>,
    base: u64,
    /// Line breaks before `base`.
    breaks_before_base: u64,
    /// Length of the line being passed, and whether its double quotes are unbalanced so far.
    line_len: usize,
    open_quote: bool,
    /// Cutting the rest of an overlong line.
    cutting: bool,
    /// 1-based lines that were cut (few: each is a damaged row).
    cut: Vec<u64>,
    /// Line breaks passed in all.
    breaks: u64,
}

impl Lines {
    /// Filters `input` (lines cut), appending what the parser gets to `out`.
    fn pass(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let (line, after) = rest.split_at(end);
            rest = after;
            let ends = line.ends_with(b"\n");
            let body = if ends { &line[..line.len() - 1] } else { line };
            if !self.cutting {
                let room = MAX_LINE_BYTES.saturating_sub(self.line_len);
                let kept = &body[..body.len().min(room)];
                out.extend_from_slice(kept);
                self.line_len += kept.len();
                self.open_quote ^= memchr::memchr_iter(b'"', kept).count() % 2 == 1;
                if kept.len() < body.len() {
                    self.cutting = true;
                    self.cut.push(self.breaks + 1);
                }
            }
            if ends {
                // A cut line with an open quote is closed, so that it does not swallow the rows after it.
                if self.cutting && self.open_quote {
                    out.push(b'"');
                }
                out.push(b'\n');
                self.breaks += 1;
                self.line_len = 0;
                if self.cutting {
                    self.open_quote = false;
                }
                self.cutting = false;
            }
        }
    }

    /// The 1-based line of the record the parser found at `start` (the end of the record
    /// before it), and whether any of its lines was cut. Forgets the bytes before `start`.
    pub(super) fn record(&mut self, start: u64, inner_breaks: usize) -> (u64, bool) {
        let consumed = usize::try_from(start.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.window.len());
        self.breaks_before_base += self.window.drain(..consumed).filter(|b| *b == b'\n').count() as u64;
        self.base += consumed as u64;
        // Blank lines (and the \n of a CRLF) before the record belong to no row.
        let blank_breaks = self
            .window
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .filter(|b| **b == b'\n')
            .count() as u64;
        let line = self.breaks_before_base + blank_breaks + 1;
        let last = line + inner_breaks as u64;
        let cut = self.cut.iter().any(|l| (line..=last).contains(l));
        (line, cut)
    }
}

impl Tracked {
    pub(super) fn new(inner: Box<dyn Read + Send>, lines: Arc<Mutex<Lines>>) -> Tracked {
        Tracked {
            inner,
            lines,
            pending: Vec::new(),
            raw: vec![0; 64 * 1024],
        }
    }
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            let n = self.inner.read(&mut self.raw)?;
            if n == 0 {
                return Ok(0);
            }
            lock(&self.lines).pass(&self.raw[..n], &mut self.pending);
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        lock(&self.lines).window.extend(&buf[..n]);
        Ok(n)
    }
}
