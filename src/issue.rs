//! Load an issue: split the YAML front matter from the Markdown body, keeping line numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;

use crate::diagnostic::{Kind, Warning};

/// One newsletter issue as written: front matter and the Markdown body.
#[derive(Debug, Clone)]
pub struct Issue {
    pub path: PathBuf,
    /// The file stem, e.g. `2025-07`: names the output folder and the Message-IDs.
    pub slug: String,
    pub front: FrontMatter,
    pub body: String,
    /// 1-based line of the file on which `body` starts.
    pub body_line: usize,
    pub warnings: Vec<Warning>,
}

/// The front matter. Website fields and the newsletter's own are typed (and so strict);
/// other keys the website may add are tolerated with a warning.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontMatter {
    pub title: Option<String>,
    pub author: Option<String>,
    #[serde(default, deserialize_with = "moment")]
    pub date: Option<DateTime<FixedOffset>>,
    pub template_key: Option<String>,
    pub hide_post: Option<bool>,
    #[serde(default)]
    pub category: Vec<Category>,
    pub seo: Option<Seo>,
    /// Newsletter fields: snake_case as in the rest of the tool's configuration.
    pub subject: Option<String>,
    pub preheader: Option<String>,
    #[serde(rename = "send_at", default, deserialize_with = "moment")]
    pub send_at: Option<DateTime<FixedOffset>>,
    pub layout: Option<String>,
    /// Who the issue is for: recipient columns and the values that qualify, e.g.
    /// `segment: { country: [KE, NG] }`. Everyone when absent.
    #[serde(default)]
    pub segment: BTreeMap<String, Values>,
}

/// One value or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Values {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    pub value: Option<String>,
    pub label: Option<String>,
}

/// The website's SEO block; keys such as `twitterUsername` are only for the website.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Seo {
    pub title: Option<String>,
    pub url: Option<String>,
    pub description: Option<String>,
}

/// Past this many characters inboxes show only the start of a subject.
pub const MAX_SUBJECT_CHARS: usize = 150;

/// The keys only the newsletter reads: a key a slip away from one of them is an error.
const NEWSLETTER_KEYS: &[&str] = &["subject", "preheader", "send_at", "layout", "segment"];

const KNOWN_KEYS: &[&str] = &[
    "title",
    "author",
    "date",
    "templateKey",
    "hidePost",
    "category",
    "seo",
    "subject",
    "preheader",
    "send_at",
    "layout",
    "segment",
];

impl Issue {
    /// Reads and parses an issue file.
    pub fn load(path: &Path) -> Result<Issue> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read issue {}", path.display()))?;
        let source = String::from_utf8(bytes).map_err(|e| {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            let column = at - bytes[..at].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) + 1;
            anyhow::anyhow!(
                "{}:{line}:{column}: not UTF-8 text (byte 0x{:02X}): save the file as UTF-8",
                path.display(),
                bytes[at]
            )
        })?;
        Issue::parse(path, &source)
    }

    pub fn parse(path: &Path, source: &str) -> Result<Issue> {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        let slug = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "issue".to_owned());
        let Some((yaml, body, body_line)) = split_front_matter(source) else {
            if source.lines().next().is_some_and(|l| l.trim_end() == "---") {
                bail!(
                    "{}:1: the front matter opened here is never closed: add a line `---` after its last field",
                    path.display()
                );
            }
            bail!(
                "{}:1: no front matter: the file must start with a line `---`, the YAML fields, and another `---`",
                path.display()
            );
        };
        // The YAML keeps the newline after the opening `---`, so its line numbers are the file's.
        let front: FrontMatter = serde_norway::from_str(yaml).map_err(|e| yaml_error(path, yaml, &e))?;
        let keys: BTreeMap<String, serde::de::IgnoredAny> =
            serde_norway::from_str(yaml).map_err(|e| yaml_error(path, yaml, &e))?;
        let mut warnings = Vec::new();
        for key in keys.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            // The website's own keys are tolerated, but a slip in one of ours would silently
            // change what is sent (a misspelt send_at never sends).
            if let Some((distance, ours)) = crate::suggest::nearest(key, NEWSLETTER_KEYS.iter().copied())
                && distance <= 2
            {
                bail!(
                    "{}:{}: front matter key `{key}` is not one the newsletter knows; did you mean `{ours}`? (it would be ignored)",
                    path.display(),
                    key_line(yaml, key).unwrap_or(1)
                );
            }
            warnings.push(Warning::new(
                Kind::UnknownFrontMatterKey,
                path,
                key_line(yaml, key),
                format!("front matter key `{key}` is not used by the newsletter (kept for the website)"),
            ));
        }
        warnings.extend(placeholders(path, source));
        let mut issue = Issue {
            path: path.to_path_buf(),
            slug,
            front,
            body: body.to_owned(),
            body_line,
            warnings,
        };
        match issue.subject().map(|s| s.chars().count()) {
            None => issue.warnings.push(Warning::new(
                Kind::MissingSubject,
                path,
                Some(1),
                "no subject: add `subject:` or `title:` to the front matter".into(),
            )),
            Some(n) if n > MAX_SUBJECT_CHARS => {
                let key = if issue.front.subject.is_some() {
                    "subject"
                } else {
                    "title"
                };
                issue.warnings.push(Warning::new(
                    Kind::SubjectTooLong,
                    path,
                    key_line(yaml, key),
                    format!(
                        "the subject has {n} characters: over {MAX_SUBJECT_CHARS}, inboxes cut it off; shorten `{key}`"
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(issue)
    }

    /// `segment:` as (column, values), columns named as templates see them.
    pub fn segment(&self) -> Vec<(String, Vec<String>)> {
        self.front
            .segment
            .iter()
            .map(|(column, values)| {
                let values = match values {
                    Values::One(v) => vec![v.clone()],
                    Values::Many(v) => v.clone(),
                };
                (column.trim().to_ascii_lowercase().replace([' ', '-'], "_"), values)
            })
            .collect()
    }

    /// The subject line template: `subject`, else the website `title`.
    pub fn subject(&self) -> Option<&str> {
        non_empty(self.front.subject.as_deref()).or_else(|| non_empty(self.front.title.as_deref()))
    }

    /// The preheader: `preheader`, else the website's `seo.description`.
    pub fn preheader(&self) -> Option<&str> {
        non_empty(self.front.preheader.as_deref())
            .or_else(|| non_empty(self.front.seo.as_ref().and_then(|s| s.description.as_deref())))
    }

    /// The web version of the issue (`seo.url`), if the website has one.
    pub fn web_url(&self) -> Option<&str> {
        non_empty(self.front.seo.as_ref().and_then(|s| s.url.as_deref()))
    }

    /// Scheme and host of `seo.url`, against which site-relative links resolve.
    pub fn site_origin(&self) -> Option<String> {
        let url = self.web_url()?;
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next()?;
        (!host.is_empty()).then(|| format!("{scheme}://{host}"))
    }
}

/// Marks text still to be written; `newsletter new` writes its scaffold with it.
pub const PLACEHOLDER: &str = "TODO:";

/// `TODO:` left anywhere outside HTML comments (which never reach the email).
fn placeholders(path: &Path, source: &str) -> Vec<Warning> {
    let mut found = Vec::new();
    let mut in_comment = false;
    for (i, line) in source.lines().enumerate() {
        let mut visible = String::new();
        let mut rest = line;
        loop {
            if in_comment {
                match rest.find("-->") {
                    Some(end) => {
                        rest = &rest[end + 3..];
                        in_comment = false;
                    }
                    None => break,
                }
            } else {
                match rest.find("<!--") {
                    Some(start) => {
                        visible.push_str(&rest[..start]);
                        rest = &rest[start + 4..];
                        in_comment = true;
                    }
                    None => {
                        visible.push_str(rest);
                        break;
                    }
                }
            }
        }
        if let Some(at) = visible.find(PLACEHOLDER) {
            let text: String = visible[at..].chars().take(60).collect();
            found.push(Warning::new(
                Kind::Placeholder,
                path,
                Some(i + 1),
                format!("placeholder text left: `{}`: write it, or remove the line", text.trim()),
            ));
        }
    }
    found
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Returns (yaml, body, first line of body). The yaml slice starts with the newline that ends the
/// opening `---`, so that YAML line numbers equal the file's.
fn split_front_matter(source: &str) -> Option<(&str, &str, usize)> {
    let rest = source.strip_prefix("---")?;
    if !(rest.starts_with('\n') || rest.starts_with("\r\n")) {
        return None;
    }
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if offset > 0 && line.trim_end() == "---" {
            let yaml = &rest[..offset];
            let body = &rest[offset + line.len()..];
            let body_line = yaml.matches('\n').count() + 2;
            return Some((yaml, body, body_line));
        }
        offset += line.len();
    }
    None
}

/// A time with its zone (RFC 3339), or a plain date as Hugo and Jekyll take it: midnight UTC.
/// A time without a zone stays an error: guessing the zone would send at the wrong hour.
fn moment<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(de)? else {
        return Ok(None);
    };
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t));
    }
    match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) if text.len() == 10 => Ok(Some(day.and_time(chrono::NaiveTime::MIN).and_utc().fixed_offset())),
        _ => Err(serde::de::Error::custom(format!("`{text}` {NOT_A_MOMENT}"))),
    }
}

const NOT_A_MOMENT: &str = "is not a date or a time with its zone";

/// The format `date` and `send_at` take.
pub const DATE_FORMAT: &str = "RFC 3339 with a time zone, e.g. 2025-08-01T15:00:00Z or 2025-08-01T09:00:00-06:00 (a plain 2025-08-01 is midnight UTC)";

fn yaml_error(path: &Path, yaml: &str, err: &serde_norway::Error) -> anyhow::Error {
    let Some(loc) = err.location() else {
        return anyhow::anyhow!("{}: invalid front matter: {err}", path.display());
    };
    // A date the parser took as text but ours refused is reported where the mapping starts:
    // point at its own key instead.
    let message = err.to_string();
    if message.contains(NOT_A_MOMENT)
        && let Some(line) = ["send_at", "date"]
            .iter()
            .filter_map(|k| key_line(yaml, k))
            .find(|&line| {
                let value = message.split('`').nth(1).unwrap_or_default();
                yaml.lines().nth(line - 1).is_some_and(|l| l.contains(value))
            })
    {
        return anyhow::anyhow!(
            "{}:{line}:1: invalid front matter: {}; write the time as {DATE_FORMAT}",
            path.display(),
            strip_location(&message)
        );
    }
    let text = yaml.lines().nth(loc.line() - 1).unwrap_or_default();
    // What to do, where the parser's words do not say it.
    let hint = if ["date", "send_at"]
        .iter()
        .any(|k| key_line(yaml, k) == Some(loc.line()))
    {
        format!("; write the time as {DATE_FORMAT}")
    } else if let Some(hint) = crate::suggest::yaml_hint(&err.to_string(), text) {
        format!("; {hint}")
    } else {
        "; fix the YAML between the `---` lines".to_owned()
    };
    anyhow::anyhow!(
        "{}:{}:{}: invalid front matter: {}{hint}",
        path.display(),
        loc.line(),
        loc.column(),
        strip_location(&err.to_string())
    )
}

/// serde_norway appends " at line X column Y"; we print the location in front instead.
fn strip_location(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

fn key_line(yaml: &str, key: &str) -> Option<usize> {
    yaml.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// Finds an issue by name (`2025-07`) in the newsletters folder, or by path.
pub fn find(arg: &str, dir: &Path) -> Result<PathBuf> {
    let as_path = Path::new(arg);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let named = dir.join(format!("{arg}.md"));
    if named.is_file() {
        return Ok(named);
    }
    let available = list(dir);
    if available.is_empty() {
        bail!(
            "no issue `{arg}`: {} has no issues; create one with `newsletter new YYYY-MM`",
            dir.display()
        );
    }
    let names: Vec<String> = available.iter().map(|(name, _)| name.clone()).collect();
    bail!("no issue `{arg}` in {}; available: {}", dir.display(), names.join(", "))
}

/// The issues in a folder as (name, path), sorted by name.
pub fn list(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), p)))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Issue> {
        Issue::parse(Path::new("newsletters/t.md"), src)
    }

    #[test]
    fn website_fields_and_defaults() {
        let issue = parse(
            "---\ntemplateKey: blog-post\ntitle: \"Inside: July\"\ndate: 2025-07-01T16:45:19.457Z\nhidePost: true\nseo:\n  url: https://openinfra.dev/blog/x\n  description: The best news\n  twitterUsername: \"@x\"\n---\nBody\n",
        )
        .unwrap();
        assert_eq!(issue.subject(), Some("Inside: July"));
        assert_eq!(issue.preheader(), Some("The best news"));
        assert_eq!(issue.site_origin().as_deref(), Some("https://openinfra.dev"));
        assert_eq!(issue.body, "Body\n");
        assert_eq!(issue.body_line, 11);
        assert!(issue.warnings.is_empty(), "{:?}", issue.warnings);
    }

    #[test]
    fn newsletter_fields_override() {
        let issue = parse("---\ntitle: T\nsubject: S {{first_name}}\npreheader: P\nsend_at: 2025-07-02T09:00:00+02:00\nlayout: mine\n---\n").unwrap();
        assert_eq!(issue.subject(), Some("S {{first_name}}"));
        assert_eq!(issue.preheader(), Some("P"));
        assert_eq!(issue.front.send_at.unwrap().to_rfc3339(), "2025-07-02T09:00:00+02:00");
        assert_eq!(issue.front.layout.as_deref(), Some("mine"));
    }

    #[test]
    fn unknown_key_is_a_warning_with_its_line() {
        let issue = parse("---\ntitle: T\nbanner: x\n---\n").unwrap();
        assert_eq!(issue.warnings.len(), 1);
        assert_eq!(issue.warnings[0].kind, Kind::UnknownFrontMatterKey);
        assert_eq!(issue.warnings[0].line, Some(3));
    }

    #[test]
    fn a_slip_in_a_newsletter_key_is_an_error_naming_the_key() {
        for (slip, ours) in [
            ("sendat", "send_at"),
            ("send-at", "send_at"),
            ("sendAt", "send_at"),
            ("subjet", "subject"),
            ("pre_header", "preheader"),
            ("segments", "segment"),
            // Written from the pattern, not from a report: case, a dropped letter, a swap.
            ("Send_At", "send_at"),
            ("preheadr", "preheader"),
            ("lyaout", "layout"),
        ] {
            let err = parse(&format!("---\ntitle: T\n{slip}: 2099-01-01T09:00:00Z\n---\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("newsletters/t.md:3: front matter key `{slip}`"))
                    && err.contains(&format!("did you mean `{ours}`?")),
                "{err}"
            );
        }
        // The website's own keys, and keys far from ours, stay warnings.
        assert!(parse("---\ntitle: T\nbanner: x\nauthors: y\n---\n").is_ok());
    }

    #[test]
    fn yaml_error_names_file_line_and_column() {
        let err = parse("---\ntitle: T\nseo: [unclosed\n---\n").unwrap_err().to_string();
        assert!(err.starts_with("newsletters/t.md:3:"), "{err}");
    }

    #[test]
    fn bad_send_at_is_an_error_with_its_line() {
        let err = parse("---\ntitle: T\nsend_at: next tuesday\n---\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("newsletters/t.md:3:"), "{err}");
        assert!(err.contains("invalid front matter"), "{err}");
        assert!(
            err.ends_with(
                "write the time as RFC 3339 with a time zone, e.g. 2025-08-01T15:00:00Z or 2025-08-01T09:00:00-06:00 (a plain 2025-08-01 is midnight UTC)"
            ),
            "{err}"
        );
        // A time without a zone is as ambiguous as no time: it must say which.
        let err = parse("---\ntitle: T\nsend_at: 2026-11-25 09:00\n---\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("newsletters/t.md:3:") && err.contains("RFC 3339 with a time zone"),
            "{err}"
        );
        let err = parse("---\ntitle: T\ndate: 1st of July\n---\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("RFC 3339 with a time zone"), "{err}");
    }

    #[test]
    fn a_plain_date_is_midnight_utc_as_the_website_takes_it() {
        let issue = parse("---\ntitle: T\ndate: 2025-12-01\nsend_at: 2025-12-02\n---\n").unwrap();
        assert_eq!(issue.front.date.unwrap().to_rfc3339(), "2025-12-01T00:00:00+00:00");
        assert_eq!(issue.front.send_at.unwrap().to_rfc3339(), "2025-12-02T00:00:00+00:00");
    }

    #[test]
    fn an_unclosed_front_matter_a_tab_and_non_utf8_say_what_to_do() {
        let err = parse("---\ntitle: T\n\nBody\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "newsletters/t.md:1: the front matter opened here is never closed: add a line `---` after its last field"
        );
        let err = parse("---\nseo:\n\turl: x\n---\n").unwrap_err().to_string();
        assert!(
            err.starts_with("newsletters/t.md:3:") && err.ends_with("replace the tab with spaces"),
            "{err}"
        );
        let err = parse("---\ntitle: OpenStack: the news\n---\n").unwrap_err().to_string();
        assert!(
            err.starts_with("newsletters/t.md:2:")
                && err.ends_with("a value that holds `: ` must be quoted: title: \"OpenStack: the news\""),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("latin1.md");
        std::fs::write(&file, b"---\ntitle: Caf\xe9\n---\n").unwrap();
        let err = Issue::load(&file).unwrap_err().to_string();
        assert!(
            err.ends_with("latin1.md:2:11: not UTF-8 text (byte 0xE9): save the file as UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn missing_front_matter_is_an_error() {
        let err = parse("# Hello\n").unwrap_err().to_string();
        assert!(err.contains("no front matter"), "{err}");
    }

    #[test]
    fn placeholders_outside_comments_are_found_with_their_line() {
        let issue = parse("---\ntitle: T\nseo:\n  description: \"TODO: one sentence\"\n---\n<!-- TODO: in a note -->\nTODO: write the lead.\n").unwrap();
        let lines: Vec<_> = issue
            .warnings
            .iter()
            .filter(|w| w.kind == Kind::Placeholder)
            .map(|w| w.line)
            .collect();
        assert_eq!(lines, [Some(4), Some(7)]);
    }

    #[test]
    fn missing_subject_is_a_warning() {
        let issue = parse("---\nauthor: A\n---\n").unwrap();
        assert!(issue.warnings.iter().any(|w| w.kind == Kind::MissingSubject));
    }
}
