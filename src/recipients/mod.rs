//! The recipient list: a CSV file read as a stream of validated, de-duplicated recipients.
//! A bad row is reported with its line and skipped; it never stops the others.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

mod lines;

pub use crate::address::normalize_address;
use lines::{Lines, MAX_LINE_BYTES, Tracked, lock};
use serde::Serialize;

/// Stands in for the recipient list where one is only looked at (previews, checks, test
/// sends) while the real one does not exist yet.
pub const EXAMPLE_LIST: &str = "recipients.example.csv";

/// The list previews, checks and test sends read: the one named, else the configured one,
/// else [`EXAMPLE_LIST`] (the second value says so), else none. Sending needs the real one.
pub fn list_to_look_at(configured: &Path, named: Option<&Path>) -> Option<(PathBuf, bool)> {
    match named {
        Some(p) => Some((p.to_owned(), false)),
        None if configured.is_file() => Some((configured.to_owned(), false)),
        None => Path::new(EXAMPLE_LIST)
            .is_file()
            .then(|| (PathBuf::from(EXAMPLE_LIST), true)),
    }
}

/// The longest value a column may hold; a longer one skips its row. Names, companies and
/// even notes fit many times over; a megabyte of text in a field is a damaged export.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

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
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let start = reader
            .fill_buf()
            .with_context(|| format!("cannot read recipient list {}", path.display()))?;
        // A file saved by Excel as "CSV" in Europe or on Windows: not UTF-8, or `;` between
        // fields. The first would skip every row with an accent, the second find no column.
        if let Err(e) = std::str::from_utf8(start)
            && e.error_len().is_some()
        {
            bail!(
                "{}: the file is not UTF-8 (byte {} is not; it looks like Latin-1 or Windows-1252, as Excel saves \"CSV\"): save it as \"CSV UTF-8\", or convert it: iconv -f windows-1252 -t utf-8 {} > list-utf8.csv",
                path.display(),
                e.valid_up_to(),
                path.display()
            );
        }
        let delimiter = delimiter(start);
        let mut list = Recipients::from_reader_with(path, Box::new(reader), delimiter)?;
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
        Recipients::from_reader_with(path, reader, b',')
    }

    fn from_reader_with(path: &Path, reader: Box<dyn Read + Send>, delimiter: u8) -> Result<Recipients> {
        let lines = Arc::new(Mutex::new(Lines::default()));
        let tracked = Tracked::new(reader, Arc::clone(&lines));
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(tracked);
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
            if headers.iter().any(|h| h == "email_address") && headers.iter().any(|h| h == "optin_time") {
                bail!(
                    "{}:1: this is a Mailchimp audience export (`Email Address`, OPTIN_TIME): import it with `newsletter subscribers import --from mailchimp {} --consent TEXT` (its unsubscribed and cleaned exports with `newsletter suppress import --from mailchimp`)",
                    path.display(),
                    path.display()
                );
            }
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

    /// Whether the pass so far met `email` (on a first pass over the file: any row).
    pub fn has_seen(&self, email: &str) -> bool {
        self.seen.contains(&address_hash(email))
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
                // listmonk's export says `blocklisted` for a reader who left every list.
                "unsubscribed" | "blocklisted" => return skip(SkipReason::Unsubscribed, email),
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
        let hash = address_hash(&email);
        let once_in_file = self.only.as_ref().is_some_and(|only| !only.contains(&hash));
        if !once_in_file && !self.seen.insert(hash) {
            self.repeated.insert(hash);
            return skip(SkipReason::Duplicate, format!("{email} appears earlier in the file"));
        }
        Ok(Recipient { line, email, fields })
    }
}

fn address_hash(email: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    crate::address::key(email).hash(&mut hasher);
    hasher.finish()
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

/// The header row's separator: `;` (Excel's "CSV" where the decimal mark is a comma) or a tab
/// when the header has those and no comma outside quotes; a comma otherwise.
fn delimiter(start: &[u8]) -> u8 {
    let header = start.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut quoted = false;
    let mut count = |sep: u8| {
        header
            .iter()
            .filter(|b| {
                if **b == b'"' {
                    quoted = !quoted;
                }
                !quoted && **b == sep
            })
            .count()
    };
    let (commas, semicolons, tabs) = (count(b','), count(b';'), count(b'\t'));
    match (commas, semicolons, tabs) {
        (0, s, t) if s > 0 && s >= t => b';',
        (0, _, t) if t > 0 => b'\t',
        _ => b',',
    }
}

/// Finds one address in a list, for `preview --as`.
pub fn find(path: &Path, email: &str) -> Result<Recipient> {
    let wanted =
        crate::address::canonical(email).map_err(|why| anyhow::anyhow!("`{email}` is not a valid address: {why}"))?;
    for row in Recipients::open(path)? {
        match row? {
            Ok(r) if crate::address::key(&r.email) == wanted => return Ok(r),
            Err(s)
                if matches!(s.reason, SkipReason::Unsubscribed | SkipReason::Bounced)
                    && crate::address::key(&s.detail) == wanted =>
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
mod tests;
