//! The recipient list: a CSV file read as a stream of validated, de-duplicated recipients.
//! A bad row is reported with its line and skipped; it never stops the others.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// RFC 5321 limits: 64 octets of local part, 254 of address.
const MAX_LOCAL: usize = 64;
const MAX_ADDRESS: usize = 254;

/// The longest value a column may hold; a longer one skips its row. Names, companies and
/// even notes fit many times over; a megabyte of text in a field is a damaged export.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Lines longer than this are cut before the CSV parser sees them, so that a runaway field
/// (a missing quote, a binary file) never takes more memory than this; their row is skipped.
const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipient {
    /// 1-based line of the row in the CSV file.
    pub line: u64,
    /// The address as it goes on the envelope: trimmed, domain in ASCII (IDNA).
    pub email: String,
    /// Every column but `email`, for the templates. Values are single-line.
    pub fields: BTreeMap<String, String>,
}

impl Recipient {
    /// The display name for the To header: `name`, else `first_name last_name`.
    pub fn display_name(&self) -> Option<String> {
        let get = |k: &str| self.fields.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        get("name")
            .map(str::to_owned)
            .or_else(|| match (get("first_name"), get("last_name")) {
                (Some(f), Some(l)) => Some(format!("{f} {l}")),
                (Some(f), None) => Some(f.to_owned()),
                (None, Some(l)) => Some(l.to_owned()),
                (None, None) => None,
            })
    }

    /// A stand-in for previews when no recipient list exists.
    pub fn sample() -> Recipient {
        let fields = [("first_name", "Sam"), ("last_name", "Reader"), ("name", "Sam Reader")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Recipient {
            line: 0,
            email: "sam.reader@example.org".into(),
            fields,
        }
    }
}

/// Why a row was skipped. The summary counts rows by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    InvalidAddress,
    Duplicate,
    /// Fewer or more fields than the header.
    WrongFieldCount,
    Unsubscribed,
    Bounced,
    /// A value with a line break or control character, which must never reach a header.
    UnsafeValue,
    /// A value over [`MAX_FIELD_BYTES`].
    TooLong,
}

impl SkipReason {
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::InvalidAddress => "invalid address",
            SkipReason::Duplicate => "duplicate",
            SkipReason::WrongFieldCount => "wrong number of fields",
            SkipReason::Unsubscribed => "unsubscribed",
            SkipReason::Bounced => "bounced",
            SkipReason::UnsafeValue => "line break in a field",
            SkipReason::TooLong => "field too long",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub line: u64,
    pub reason: SkipReason,
    pub detail: String,
}

/// One row's outcome.
pub type Row = std::result::Result<Recipient, Skipped>;

/// Streams a recipient CSV. Only the set of seen addresses (as 64-bit hashes) grows with the
/// list: about 19 MB at a million rows on a first pass, next to nothing on a later one (see
/// [`KnownList`]).
pub struct Recipients {
    path: PathBuf,
    reader: csv::Reader<Tracked>,
    lines: Arc<Mutex<Lines>>,
    headers: Vec<String>,
    email_col: usize,
    status_col: Option<usize>,
    seen: HashSet<u64>,
    /// Addresses met more than once so far.
    repeated: HashSet<u64>,
    /// On a later pass over an unchanged file: the only addresses worth remembering.
    only: Option<HashSet<u64>>,
    stamp: Option<FileStamp>,
    record: csv::StringRecord,
}

/// What a whole pass learnt about a list, so that a later pass (the send after the plan)
/// remembers only the addresses that repeat instead of every address.
#[derive(Debug, Clone, Default)]
pub struct KnownList {
    repeated: HashSet<u64>,
    stamp: Option<FileStamp>,
}

/// Size and modification time: a list edited between two passes is read as a new list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp(u64, Option<std::time::SystemTime>);

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp(meta.len(), meta.modified().ok()))
    }
}

impl Recipients {
    pub fn open(path: &Path) -> Result<Recipients> {
        let stamp = FileStamp::of(path);
        let file = File::open(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "; copy recipients.example.csv to start one, or name another with `recipients:` in newsletter.yaml or --recipients"
            } else {
                ""
            };
            anyhow::anyhow!("cannot open recipient list {}: {e}{hint}", path.display())
        })?;
        let mut list = Recipients::from_reader(path, Box::new(BufReader::with_capacity(256 * 1024, file)))?;
        list.stamp = stamp;
        Ok(list)
    }

    /// Opens a list read whole before: when the file is unchanged, only its repeated addresses
    /// are remembered. The rows and their outcomes are the same as with [`Recipients::open`].
    pub fn open_known(path: &Path, known: KnownList) -> Result<Recipients> {
        let mut list = Recipients::open(path)?;
        if known.stamp.is_some() && known.stamp == list.stamp {
            list.only = Some(known.repeated);
        }
        Ok(list)
    }

    /// After a whole pass: what [`Recipients::open_known`] needs.
    pub fn into_known(self) -> KnownList {
        KnownList {
            repeated: self.repeated,
            stamp: self.stamp,
        }
    }

    pub fn from_reader(path: &Path, reader: Box<dyn Read + Send>) -> Result<Recipients> {
        let lines = Arc::new(Mutex::new(Lines::default()));
        let tracked = Tracked {
            inner: reader,
            lines: Arc::clone(&lines),
            pending: Vec::new(),
            raw: vec![0; 64 * 1024],
        };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(tracked);
        let headers: Vec<String> = reader
            .headers()
            .with_context(|| format!("{}:1: cannot read the header row", path.display()))?
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = if i == 0 { h.trim_start_matches('\u{feff}') } else { h };
                h.trim().to_ascii_lowercase().replace([' ', '-'], "_")
            })
            .collect();
        let Some(email_col) = headers.iter().position(|h| h == "email") else {
            bail!(
                "{}:1: the header row has no `email` column (found: {}); name the address column `email`",
                path.display(),
                headers.join(", ")
            );
        };
        let status_col = headers.iter().position(|h| h == "status");
        Ok(Recipients {
            path: path.to_path_buf(),
            reader,
            lines,
            headers,
            email_col,
            status_col,
            seen: HashSet::new(),
            repeated: HashSet::new(),
            only: None,
            stamp: None,
            record: csv::StringRecord::new(),
        })
    }

    /// Column names as templates see them (lower case, `_` for spaces).
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn row(&mut self, line: u64, cut: bool) -> Row {
        let skip = |reason, detail: String| Err(Skipped { line, reason, detail });
        if cut {
            return skip(
                SkipReason::TooLong,
                format!(
                    "the row is longer than {} MB: a damaged export or a missing quote?",
                    MAX_LINE_BYTES >> 20
                ),
            );
        }
        if let Some((name, value)) = self
            .headers
            .iter()
            .zip(self.record.iter())
            .find(|(_, v)| v.len() > MAX_FIELD_BYTES)
        {
            return skip(
                SkipReason::TooLong,
                format!(
                    "column `{name}` holds {} KB; a field may hold {} KB",
                    value.len() >> 10,
                    MAX_FIELD_BYTES >> 10
                ),
            );
        }
        if self.record.len() != self.headers.len() {
            return skip(
                SkipReason::WrongFieldCount,
                format!(
                    "{} fields where the header has {}",
                    self.record.len(),
                    self.headers.len()
                ),
            );
        }
        let raw = self.record.get(self.email_col).unwrap_or_default();
        let email = match normalize_address(raw) {
            Ok(e) => e,
            Err(why) => {
                return skip(SkipReason::InvalidAddress, format!("`{}`: {why}", raw.trim()));
            }
        };
        if let Some(status) = self.status_col.and_then(|c| self.record.get(c)) {
            match status.trim().to_ascii_lowercase().as_str() {
                "unsubscribed" => return skip(SkipReason::Unsubscribed, email),
                "bounced" => return skip(SkipReason::Bounced, email),
                _ => {}
            }
        }
        let mut fields = BTreeMap::new();
        for (i, (name, value)) in self.headers.iter().zip(self.record.iter()).enumerate() {
            if i == self.email_col {
                continue;
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return skip(
                    SkipReason::UnsafeValue,
                    format!("column `{name}` of {email} contains a line break or control character"),
                );
            }
            fields.insert(name.clone(), value.trim().to_owned());
        }
        let mut hasher = DefaultHasher::new();
        email.to_lowercase().hash(&mut hasher);
        let hash = hasher.finish();
        let once_in_file = self.only.as_ref().is_some_and(|only| !only.contains(&hash));
        if !once_in_file && !self.seen.insert(hash) {
            self.repeated.insert(hash);
            return skip(SkipReason::Duplicate, format!("{email} appears earlier in the file"));
        }
        Ok(Recipient { line, email, fields })
    }
}

impl Iterator for Recipients {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let start = self.record.position().map_or(0, |p| p.byte());
                let inner_breaks = self
                    .record
                    .iter()
                    .map(|f| memchr::memchr_iter(b'\n', f.as_bytes()).count())
                    .sum();
                let (line, cut) = lock(&self.lines).record(start, inner_breaks);
                Some(Ok(self.row(line, cut)))
            }
            Err(e) => {
                let start = e.position().map_or(0, |p| p.byte());
                let (line, _) = lock(&self.lines).record(start, 0);
                match e.kind() {
                    // Invalid UTF-8 spoils one row, not the file.
                    csv::ErrorKind::Utf8 { .. } => Some(Ok(Err(Skipped {
                        line,
                        reason: SkipReason::InvalidAddress,
                        detail: "the row is not valid UTF-8".into(),
                    }))),
                    _ => Some(Err(anyhow::anyhow!(
                        "{}:{line}: cannot read the CSV: {e}",
                        self.path.display()
                    ))),
                }
            }
        }
    }
}

fn lock(lines: &Mutex<Lines>) -> std::sync::MutexGuard<'_, Lines> {
    lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The list's bytes on their way to the CSV parser, with their lines counted: the parser's
/// own line numbers are one short on CRLF files and point at the first of any blank lines
/// before a row. Lines over [`MAX_LINE_BYTES`] are cut here.
struct Tracked {
    inner: Box<dyn Read + Send>,
    lines: Arc<Mutex<Lines>>,
    /// Bytes ready for the parser.
    pending: Vec<u8>,
    /// Bytes read, before filtering.
    raw: Vec<u8>,
}

#[derive(Default)]
struct Lines {
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
    fn record(&mut self, start: u64, inner_breaks: usize) -> (u64, bool) {
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

/// Trims an address, checks it, and converts an internationalized domain to ASCII.
pub fn normalize_address(raw: &str) -> std::result::Result<String, &'static str> {
    let addr = raw.trim();
    if addr.is_empty() {
        return Err("empty");
    }
    if addr.len() > MAX_ADDRESS {
        return Err("longer than 254 characters");
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err("no @");
    };
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err("the part before @ must have 1 to 64 characters");
    }
    let ascii_domain = idna::domain_to_ascii(domain).map_err(|_| "the domain is not a valid name")?;
    if ascii_domain.ends_with('.') {
        return Err("the domain ends with a dot");
    }
    if !ascii_domain.contains('.') || ascii_domain.starts_with('.') {
        return Err("the domain needs a dot, like example.org");
    }
    let normalized = format!("{local}@{ascii_domain}");
    normalized
        .parse::<lettre::Address>()
        .map_err(|_| "not a valid email address")?;
    if normalized.len() > MAX_ADDRESS {
        return Err("longer than 254 characters");
    }
    Ok(normalized)
}

/// Finds one address in a list, for `preview --as`.
pub fn find(path: &Path, email: &str) -> Result<Recipient> {
    let wanted = normalize_address(email).map_err(|why| anyhow::anyhow!("`{email}` is not a valid address: {why}"))?;
    for row in Recipients::open(path)? {
        match row? {
            Ok(r) if r.email.eq_ignore_ascii_case(&wanted) => return Ok(r),
            Err(s)
                if matches!(s.reason, SkipReason::Unsubscribed | SkipReason::Bounced)
                    && s.detail.eq_ignore_ascii_case(&wanted) =>
            {
                bail!(
                    "{email} is on line {} of {}, marked {}: the issue is not sent to this address; preview --as another one",
                    s.line,
                    path.display(),
                    s.reason.label()
                );
            }
            _ => {}
        }
    }
    bail!(
        "{email} is not in {}; add a row for it or pick an address from the list",
        path.display()
    )
}

/// The first valid recipient, for previews.
pub fn first(path: &Path) -> Result<Option<Recipient>> {
    for row in Recipients::open(path)? {
        if let Ok(r) = row? {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(list: &mut Recipients) -> Vec<(u64, bool)> {
        list.by_ref()
            .map(|r| r.unwrap())
            .map(|r| r.map_or_else(|s| (s.line, false), |r| (r.line, true)))
            .collect()
    }

    #[test]
    fn a_second_pass_remembers_only_the_repeated_addresses() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let csv = "email\na@x.org\nb@x.org\nA@x.org\nc@x.org\na@x.org\n";
        std::fs::write(file.path(), csv).unwrap();
        let mut first = Recipients::open(file.path()).unwrap();
        let expected = outcomes(&mut first);
        assert_eq!(expected, [(2, true), (3, true), (4, false), (5, true), (6, false)]);
        let known = first.into_known();

        let mut second = Recipients::open_known(file.path(), known.clone()).unwrap();
        assert_eq!(outcomes(&mut second), expected);
        assert_eq!(second.seen.len(), 1, "only a@x.org was remembered");

        // Edited in between: read as a new list, every address remembered.
        std::fs::write(file.path(), format!("{csv}b@x.org\n")).unwrap();
        let mut edited = Recipients::open_known(file.path(), known).unwrap();
        assert_eq!(outcomes(&mut edited).last(), Some(&(7, false)));
        assert_eq!(edited.seen.len(), 3);
    }

    fn rows(csv: &str) -> Vec<Row> {
        Recipients::from_reader(
            Path::new("r.csv"),
            Box::new(std::io::Cursor::new(csv.as_bytes().to_vec())),
        )
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    }

    #[test]
    fn bom_and_header_names_are_normalized() {
        let r = rows("\u{feff}Email,First Name\nalice@example.org,Alice\n");
        assert_eq!(r[0].as_ref().unwrap().fields["first_name"], "Alice");
    }

    #[test]
    fn duplicates_are_case_insensitive_after_trimming_first_wins() {
        let r = rows("email,name\nAlice@Example.org,A\n  alice@example.ORG ,B\n");
        assert_eq!(r[0].as_ref().unwrap().fields["name"], "A");
        let skipped = r[1].as_ref().unwrap_err();
        assert_eq!((skipped.line, skipped.reason), (3, SkipReason::Duplicate));
    }

    #[test]
    fn invalid_short_and_long_rows_are_skipped_with_their_line() {
        let long = format!("{}@example.org", "a".repeat(65));
        let r = rows(&format!(
            "email,name\nnot-an-address,X\nbob@example.org\n{long},Y\ncarol@example.org,C,extra\ndave@localhost,D\n"
        ));
        let reasons: Vec<(u64, SkipReason)> = r
            .iter()
            .map(|r| r.as_ref().map_err(|s| (s.line, s.reason)).unwrap_err())
            .collect();
        assert_eq!(
            reasons,
            vec![
                (2, SkipReason::InvalidAddress),
                (3, SkipReason::WrongFieldCount),
                (4, SkipReason::InvalidAddress),
                (5, SkipReason::WrongFieldCount),
                (6, SkipReason::InvalidAddress),
            ]
        );
    }

    #[test]
    fn status_column_skips_unsubscribed_and_bounced() {
        let r = rows("email,status\na@example.org,active\nb@example.org,Unsubscribed\nc@example.org,bounced\n");
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().reason, SkipReason::Unsubscribed);
        assert_eq!(r[2].as_ref().unwrap_err().reason, SkipReason::Bounced);
    }

    #[test]
    fn line_breaks_in_fields_never_pass() {
        let r = rows("email,name\na@example.org,\"Eve\r\nBcc: victim@example.org\"\n");
        assert_eq!(r[0].as_ref().unwrap_err().reason, SkipReason::UnsafeValue);
    }

    #[test]
    fn lines_are_counted_as_an_editor_counts_them() {
        let lines = |csv: &str| -> Vec<u64> {
            rows(csv)
                .iter()
                .map(|r| r.as_ref().map_or_else(|s| s.line, |r| r.line))
                .collect()
        };
        assert_eq!(
            lines("email\r\na@x.org\r\nb@x.org\r\n\r\n\r\nfoo@\r\nc@x.org\r\n"),
            [2, 3, 6, 7]
        );
        assert_eq!(lines("email\na@x.org\n\n\nfoo@\n"), [2, 5]);
        assert_eq!(lines("email,note\na@x.org,\"two\nlines\"\nb@x.org,x\n"), [2, 4]);
        let r = rows("email\r\na@x.org\r\n\r\nfoo@\r\n");
        assert_eq!(r[1].as_ref().unwrap_err().line, 4);
    }

    #[test]
    fn overlong_fields_skip_their_row_only() {
        let big = "x".repeat(MAX_FIELD_BYTES + 1);
        let huge = "y".repeat(MAX_LINE_BYTES + 10);
        let r = rows(&format!(
            "email,name\na@x.org,{big}\nb@x.org,\"{huge}\nc@x.org,Carol\nd@x.org,{huge}\ne@x.org,Eve\n"
        ));
        let got: Vec<(u64, Option<SkipReason>)> = r
            .iter()
            .map(|r| r.as_ref().map_or_else(|s| (s.line, Some(s.reason)), |r| (r.line, None)))
            .collect();
        assert_eq!(
            got,
            [
                (2, Some(SkipReason::TooLong)),
                (3, Some(SkipReason::TooLong)),
                (4, None),
                (5, Some(SkipReason::TooLong)),
                (6, None)
            ]
        );
        assert!(
            r[0].as_ref()
                .unwrap_err()
                .detail
                .contains("column `name` holds 64 KB; a field may hold 64 KB")
        );
    }

    #[test]
    fn idn_domains_become_ascii() {
        assert_eq!(
            normalize_address(" jörg@bücher.example ").unwrap(),
            "jörg@xn--bcher-kva.example"
        );
        assert_eq!(normalize_address("a@bücher.de").unwrap(), "a@xn--bcher-kva.de");
    }

    #[test]
    fn missing_email_column_is_an_error() {
        let err = Recipients::from_reader(
            Path::new("r.csv"),
            Box::new(std::io::Cursor::new(b"mail,name\n".to_vec())),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("r.csv:1: the header row has no `email` column"),
            "{err}"
        );
    }
}
