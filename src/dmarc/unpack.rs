//! From what arrives (an email with an attachment or the XML inline, or a bare `.xml`, `.xml.gz`
//! or `.zip` file) to report XML. What the bytes are is read from the bytes themselves: real
//! reporters send gzip labelled as zip, XML as octet-stream, files with the wrong extension.
//! Every decompression stops at [`LIMIT`], so a zip bomb ends in a message.

use std::io::{Cursor, Read};

use mail_parser::{MessageParser, PartType};

/// The most a report may unpack to: a 100,000-row report, indented as Google's are, is about
/// 60 MB.
pub const LIMIT: u64 = 100 * 1024 * 1024;

/// Why nothing could be read from a file or message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unreadable {
    #[error("it holds no DMARC aggregate report (no XML, gzip or zip with a <feedback> report in it)")]
    NoReport,
    #[error("it unpacks to more than {} MB: not read (a report that large is more likely a zip bomb)", LIMIT / 1024 / 1024)]
    TooLarge,
    #[error("its gzip data is broken ({0})")]
    Gzip(String),
    #[error("its zip archive is broken ({0})")]
    Zip(String),
    #[error("its XML is no aggregate report: {0}")]
    NotAReport(&'static str),
}

/// What the bytes are.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Gzip,
    Zip,
    Xml,
    Other,
}

fn kind_of(bytes: &[u8]) -> Kind {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Kind::Gzip;
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Kind::Zip;
    }
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = text.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(text.len());
    if text[start..].starts_with(b"<") {
        Kind::Xml
    } else {
        Kind::Other
    }
}

/// The report documents in a file or a message, each as XML. None found is
/// [`Unreadable::NoReport`]; the first failure to unpack is returned when nothing could be read.
pub fn documents(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Unreadable> {
    let mut found = Found::default();
    match kind_of(bytes) {
        Kind::Other => found.message(bytes, 0),
        _ => found.blob(bytes),
    }
    found.finish()
}

/// Whether a message's subject is that of an aggregate report (RFC 7489 7.2.1.1: "Report
/// Domain: ... Submitter: ... Report-ID: ..."), so that a report that cannot be read is named
/// as one rather than taken for other mail.
pub fn has_report_subject(raw: &[u8]) -> bool {
    MessageParser::new()
        .parse_headers(raw)
        .and_then(|m| m.subject().map(|s| s.to_ascii_lowercase()))
        .is_some_and(|s| s.contains("report domain:") && s.contains("report-id"))
}

#[derive(Default)]
struct Found {
    documents: Vec<Vec<u8>>,
    failure: Option<Unreadable>,
}

impl Found {
    fn finish(self) -> Result<Vec<Vec<u8>>, Unreadable> {
        if !self.documents.is_empty() {
            return Ok(self.documents);
        }
        Err(self.failure.unwrap_or(Unreadable::NoReport))
    }

    fn fail(&mut self, why: Unreadable) {
        self.failure.get_or_insert(why);
    }

    /// A file or an attachment: gzip, zip or XML by its first bytes.
    fn blob(&mut self, bytes: &[u8]) {
        match kind_of(bytes) {
            Kind::Gzip => match capped(flate2::read::GzDecoder::new(bytes), LIMIT, Unreadable::Gzip) {
                // One gzip member: bytes after it (padding some reporters add) are not read.
                Ok(xml) => self.xml(xml),
                Err(why) => self.fail(why),
            },
            Kind::Zip => self.zip(bytes),
            Kind::Xml => self.xml(bytes.to_vec()),
            Kind::Other => {}
        }
    }

    fn xml(&mut self, xml: Vec<u8>) {
        // Only a report: an HTML body or another XML attachment is not one.
        if memchr::memmem::find(&xml, b"report_metadata").is_some() {
            self.documents.push(xml);
        } else if kind_of(&xml) == Kind::Xml {
            self.fail(Unreadable::NotAReport("it has no report_metadata"));
        }
    }

    fn zip(&mut self, bytes: &[u8]) {
        let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
            Ok(archive) => archive,
            Err(e) => return self.fail(Unreadable::Zip(e.to_string())),
        };
        let mut budget = LIMIT;
        for i in 0..archive.len() {
            let entry = match archive.by_index(i) {
                Ok(entry) if entry.is_dir() => continue,
                Ok(entry) => entry,
                Err(e) => {
                    self.fail(Unreadable::Zip(e.to_string()));
                    continue;
                }
            };
            match capped(entry, budget, Unreadable::Zip) {
                Ok(xml) => {
                    budget -= xml.len() as u64;
                    self.xml(xml);
                }
                Err(why) => return self.fail(why),
            }
        }
    }

    /// An email: every part, whatever its declared type, nested messages included.
    fn message(&mut self, raw: &[u8], depth: usize) {
        let Some(message) = MessageParser::new().parse(raw) else {
            return;
        };
        for part in &message.parts {
            match &part.body {
                PartType::Text(text) | PartType::Html(text) => {
                    if kind_of(text.as_bytes()) == Kind::Xml
                        && memchr::memmem::find(text.as_bytes(), b"report_metadata").is_some()
                    {
                        self.documents.push(text.as_bytes().to_vec());
                    }
                }
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => self.blob(bytes),
                PartType::Message(inner) if depth < 3 => self.message(inner.raw_message(), depth + 1),
                PartType::Message(_) | PartType::Multipart(_) => {}
            }
        }
    }
}

/// Reads `from` to its end, or fails once it gives more than `limit` bytes; `broken` says
/// what a read error means (the codecs say in their error's text what is wrong).
fn capped(from: impl Read, limit: u64, broken: fn(String) -> Unreadable) -> Result<Vec<u8>, Unreadable> {
    let mut out = Vec::new();
    from.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| broken(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(Unreadable::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const XML: &str = "<feedback><report_metadata><org_name>x</org_name></report_metadata></feedback>";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn kinds_are_read_from_the_bytes_not_the_name() {
        assert_eq!(documents(XML.as_bytes()).unwrap(), vec![XML.as_bytes().to_vec()]);
        let mut padded = gzip(XML.as_bytes());
        padded.extend_from_slice(b"\0\0\0\0trailing");
        assert_eq!(documents(&padded).unwrap(), vec![XML.as_bytes().to_vec()]);
        assert_eq!(documents(b"hello"), Err(Unreadable::NoReport));
        assert_eq!(
            documents(b"<html><body>hi</body></html>"),
            Err(Unreadable::NotAReport("it has no report_metadata"))
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..=LIMIT / (1 << 20) {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 200_000);
        assert_eq!(documents(&bomb), Err(Unreadable::TooLarge));
        assert!(matches!(documents(b"\x1f\x8b\x08\0garbage"), Err(Unreadable::Gzip(_))));
        assert!(matches!(documents(b"PK\x03\x04garbage"), Err(Unreadable::Zip(_))));
    }
}
