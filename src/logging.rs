//! Log lines that stay lines: text from outside (an SNS topic, a header, a reply) may hold a
//! line break that would otherwise write a forged line into the service's log.

use std::io::{self, Write};

/// A writer for the log that escapes control characters in each record it is given (one
/// `write` a record, as tracing's formatter writes), keeping the record's final line break
/// and, for a terminal's colours, ESC when `keep_escape` says so.
pub struct Escaping<W> {
    inner: W,
    keep_escape: bool,
}

impl<W: Write> Escaping<W> {
    pub fn new(inner: W, keep_escape: bool) -> Escaping<W> {
        Escaping { inner, keep_escape }
    }
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        let body = record.strip_suffix(b"\n").unwrap_or(record);
        let mut out = Vec::with_capacity(record.len() + 8);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.push(b),
                0x1b if self.keep_escape => out.push(b),
                b if b < 0x20 || b == 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => out.push(b),
            }
        }
        if body.len() < record.len() {
            out.push(b'\n');
        }
        self.inner.write_all(&out)?;
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stays_one_line() {
        let mut out = Vec::new();
        let mut w = Escaping::new(&mut out, false);
        w.write_all(b"WARN topic arn:x\nINFO forged line\r\x1b[31m\n").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "WARN topic arn:x\\nINFO forged line\\r\\x1b[31m\n"
        );
    }
}
