//! Rendered issue x recipient -> a complete MIME message. The HTML, text and subject
//! are parsed as templates once; per recipient only values are substituted.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use handlebars::{Context, Handlebars};
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::compile::Rendered;
use crate::config::Config;
use crate::recipients::Recipient;
use crate::unsubscribe::{self, Secret};

mod template;
use template::Template;

#[derive(Debug, Error)]
pub enum PersonalizeError {
    #[error("{template} of the issue cannot be parsed as a template: {reason}")]
    Template { template: &'static str, reason: String },
    #[error("recipient {email} (line {line}): {reason}")]
    Recipient { email: String, line: u64, reason: String },
    #[error("invalid sender in the configuration: {0}")]
    Sender(String),
}

const HTML: &str = "html";
const TEXT: &str = "text";
const SUBJECT: &str = "subject";

/// One recipient's personalized content.
#[derive(Debug, Clone)]
pub struct Parts {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub unsubscribe_url: String,
    /// The reader's unsubscribe token, which the mailto: of List-Unsubscribe carries too.
    pub unsubscribe_token: String,
}

/// Builds each recipient's message from one rendered issue.
pub struct Personalizer {
    rendered: Rendered,
    templates: Templates,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    list_id: String,
    unsubscribe_base: String,
    unsubscribe_mailto: String,
    preferences_base: String,
    secret: Secret,
    domain: String,
    date: SystemTime,
    subject_prefix: String,
    /// Tells a test send's Message-IDs from the real send's, so a reader who gets both does
    /// not have the real one dropped as a duplicate.
    message_id_kind: String,
    feedback_id: Option<String>,
    /// For the web archive: no unsubscribe link.
    archive: bool,
}

/// The HTML, text and subject as templates of per-recipient values.
struct Templates {
    /// The HTML's templates, escaping values for HTML.
    html: Handlebars<'static>,
    /// The text's and the subject's, which take values as they are.
    plain: Handlebars<'static>,
    html_template: Template,
    text_template: Template,
    subject_template: Template,
}

fn templates(rendered: &Rendered) -> Result<Templates, PersonalizeError> {
    let template_error = |template| {
        move |e: handlebars::TemplateError| PersonalizeError::Template {
            template,
            reason: e.to_string(),
        }
    };
    let mut html = Handlebars::new();
    html.set_strict_mode(true);
    html.register_escape_fn(crate::html::escape);
    let html_template = Template::register(&mut html, HTML, &rendered.html).map_err(template_error("the HTML"))?;
    let mut plain = Handlebars::new();
    plain.set_strict_mode(true);
    plain.register_escape_fn(handlebars::no_escape);
    let text_template =
        Template::register(&mut plain, TEXT, &rendered.text).map_err(template_error("the text part"))?;
    let subject_template =
        Template::register(&mut plain, SUBJECT, &rendered.subject).map_err(template_error("the subject"))?;
    Ok(Templates {
        html,
        plain,
        html_template,
        text_template,
        subject_template,
    })
}

impl Personalizer {
    pub fn new(rendered: &Rendered, config: &Config, secret: Secret) -> Result<Personalizer, PersonalizeError> {
        let address = config
            .from
            .address
            .parse()
            .map_err(|e| PersonalizeError::Sender(format!("from.address `{}`: {e}", config.from.address)))?;
        let from = Mailbox::new(Some(config.from.name.clone()), address);
        let reply_to = match &config.reply_to {
            Some(r) => Some(
                r.parse()
                    .map_err(|e| PersonalizeError::Sender(format!("reply_to `{r}`: {e}")))?,
            ),
            None => None,
        };
        Ok(Personalizer {
            rendered: rendered.clone(),
            templates: templates(rendered)?,
            domain: config
                .from
                .address
                .rsplit_once('@')
                .map_or("localhost", |(_, d)| d)
                .to_owned(),
            from,
            reply_to,
            list_id: config.list_id.clone(),
            unsubscribe_base: config.unsubscribe.url.clone(),
            unsubscribe_mailto: config.unsubscribe.mailto.clone(),
            preferences_base: config.preferences_url(),
            secret,
            date: message_date(),
            subject_prefix: String::new(),
            message_id_kind: String::new(),
            archive: false,
            feedback_id: config.feedback_id.as_ref().map(|template| {
                template
                    .replace("{issue}", &rendered.slug)
                    .replace("{list}", list_id_value(&config.list_id))
                    .replace("{sender}", config.from.address.rsplit_once('@').map_or("", |(_, d)| d))
            }),
        })
    }

    /// For the web archive: every message's HTML without an unsubscribe link.
    pub fn for_archive(mut self) -> Self {
        self.archive = true;
        self.feedback_id = None;
        self
    }

    /// The issue this personalizes.
    pub fn rendered(&self) -> &Rendered {
        &self.rendered
    }

    /// The same settings over another edition of the issue (one choice of projects).
    pub fn edition(&self, rendered: &Rendered) -> Result<Personalizer, PersonalizeError> {
        Ok(Personalizer {
            rendered: rendered.clone(),
            templates: templates(rendered)?,
            from: self.from.clone(),
            reply_to: self.reply_to.clone(),
            list_id: self.list_id.clone(),
            unsubscribe_base: self.unsubscribe_base.clone(),
            unsubscribe_mailto: self.unsubscribe_mailto.clone(),
            preferences_base: self.preferences_base.clone(),
            secret: self.secret.clone(),
            domain: self.domain.clone(),
            date: self.date,
            subject_prefix: self.subject_prefix.clone(),
            message_id_kind: self.message_id_kind.clone(),
            feedback_id: self.feedback_id.clone(),
            archive: self.archive,
        })
    }

    /// A test send: `[TEST] ` before every subject, Message-IDs of its own, and no
    /// Feedback-ID (a test is not a campaign).
    pub fn for_test_send(mut self) -> Self {
        self.subject_prefix = "[TEST] ".to_owned();
        // Each test send its own: a corrected re-test with the same Message-ID may be dropped
        // as a duplicate (Gmail does), and the staff would look at the old one.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        self.message_id_kind = format!("test {now} {}", std::process::id());
        self.feedback_id = None;
        self
    }

    /// Pins the Date header (otherwise `SOURCE_DATE_EPOCH`, else now).
    pub fn with_date(mut self, date: SystemTime) -> Self {
        self.date = date;
        self
    }

    /// The same for every send of this issue to this address, so a resent message is
    /// recognisably the same message.
    pub fn message_id(&self, email: &str) -> String {
        let digest = Sha256::digest(format!(
            "{}\0{}\0{}{}",
            self.list_id,
            self.rendered.slug,
            email.to_lowercase(),
            self.message_id_kind
        ));
        let kind = if self.message_id_kind.is_empty() { "" } else { ".test" };
        format!("<{}{kind}.{}@{}>", self.rendered.slug, hex(&digest[..12]), self.domain)
    }

    pub fn unsubscribe_url(&self, email: &str) -> String {
        unsubscribe::url(&self.unsubscribe_base, &self.secret, email, &self.rendered.slug)
    }

    fn unsubscribe_token(&self, email: &str) -> String {
        self.secret.token(email, &self.rendered.slug)
    }

    /// The recipient's subject, text and HTML.
    pub fn parts(&self, r: &Recipient) -> Result<Parts, PersonalizeError> {
        let fail = |reason: String| PersonalizeError::Recipient {
            email: r.email.clone(),
            line: r.line,
            reason,
        };
        let mut data: BTreeMap<&str, &str> = r.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (unsubscribe_url, preferences_url, unsubscribe_token) = if self.archive {
            (String::new(), String::new(), String::new())
        } else {
            let token = self.unsubscribe_token(&r.email);
            (
                unsubscribe::url_with(&self.unsubscribe_base, &token),
                unsubscribe::url_with(&self.preferences_base, &token),
                token,
            )
        };
        data.insert("email", &r.email);
        data.insert("unsubscribe_url", &unsubscribe_url);
        data.insert("preferences_url", &preferences_url);
        if let Some(web) = &self.rendered.web_url {
            data.insert("web_url", web);
        }
        let context = Context::wraps(&data).map_err(|e| fail(e.to_string()))?;
        let render = |hbs: &Handlebars<'_>, template: &Template| {
            template
                .render(hbs, &context)
                .map_err(|e| fail(missing_field_reason(&e)))
        };
        let t = &self.templates;
        let html = render(&t.html, &t.html_template)?;
        let text = render(&t.plain, &t.text_template)?;
        let subject = format!(
            "{}{}",
            self.subject_prefix,
            header_value(&render(&t.plain, &t.subject_template)?, MAX_SUBJECT)
        );
        Ok(Parts {
            html: title_as_subject(html, &subject),
            subject,
            text,
            unsubscribe_url,
            unsubscribe_token,
        })
    }

    pub fn message(&self, r: &Recipient) -> Result<Message, PersonalizeError> {
        self.message_with(r, &self.parts(r)?)
    }

    /// The complete message for `r` around parts already personalized for it (`preview`
    /// writes the parts too, and must not render them twice).
    pub fn message_with(&self, r: &Recipient, parts: &Parts) -> Result<Message, PersonalizeError> {
        let fail = |reason: String| PersonalizeError::Recipient {
            email: r.email.clone(),
            line: r.line,
            reason,
        };
        let Parts {
            subject,
            text,
            html,
            unsubscribe_url,
            unsubscribe_token,
        } = parts;
        let to_address = r.email.parse().map_err(|e| fail(format!("invalid address: {e}")))?;
        let to = Mailbox::new(r.display_name().map(|n| header_value(&n, MAX_NAME)), to_address);
        let message_id = self.message_id(&r.email);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject.as_str())
            .date(self.date)
            .message_id(Some(message_id.clone()))
            .raw_header(header("List-Id", self.list_id.clone()))
            .raw_header(header(
                "List-Unsubscribe",
                format!(
                    "<{unsubscribe_url}>, <mailto:{}?subject=unsubscribe%20{unsubscribe_token}>",
                    self.unsubscribe_mailto
                ),
            ))
            .raw_header(header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into()));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(feedback_id) = &self.feedback_id {
            builder = builder.raw_header(header("Feedback-ID", feedback_id.clone()));
        }
        // Text first, HTML last: clients show the last alternative they understand.
        let boundary = format!("=_{}", &hex(&Sha256::digest(message_id.as_bytes()))[..24]);
        let body = MultiPart::alternative()
            .boundary(boundary)
            .singlepart(part(ContentType::TEXT_PLAIN, text))
            .singlepart(part(ContentType::TEXT_HTML, html));
        builder.multipart(body).map_err(|e| fail(e.to_string()))
    }
}

fn part(content_type: ContentType, body: &str) -> SinglePart {
    SinglePart::builder()
        .header(content_type)
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(Body::dangerous_pre_encoded(
            quoted_printable(body),
            ContentTransferEncoding::QuotedPrintable,
        ))
}

/// Quoted-printable (RFC 2045) with CRLF line ends and lines of at most 76 characters. Ours
/// rather than lettre's: encoding the ~60 KB HTML per recipient was over half of the cost of
/// personalizing a message, and Markdown-made HTML is almost all plain ASCII, which this
/// copies through.
fn quoted_printable(text: &str) -> Vec<u8> {
    // Characters per line before the soft break `=`, which makes 76.
    const ROOM: usize = 75;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let literal = |b: u8| matches!(b, b'!'..=b'<' | b'>'..=b'~' | b' ' | b'\t');
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    let mut column = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            column = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        if column >= ROOM {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        // Copy the longest run of plain characters that fits on the line. A dot opening a
        // line is encoded, so that the message never needs SMTP dot-stuffing.
        let mut end = i;
        if !(column == 0 && b == b'.') {
            let limit = bytes.len().min(i + ROOM - column);
            end = i + plain_prefix(&bytes[i..limit]);
            while end < limit && literal(bytes[end]) {
                end += 1;
            }
        }
        // Space or tab ending a line would be stripped in transit: encode it.
        if end > i && matches!(bytes[end - 1], b' ' | b'\t') && matches!(bytes.get(end), None | Some(b'\r' | b'\n')) {
            end -= 1;
        }
        if end > i {
            out.extend_from_slice(&bytes[i..end]);
            column += end - i;
            i = end;
            continue;
        }
        if column + 3 > ROOM {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        column += 3;
        i += 1;
    }
    out
}

/// How many bytes at the start of `s` are printable ASCII other than `=`, eight at a time
/// (the encoder's hot loop: nearly all of an HTML part is such bytes). Exact about whether a
/// word holds another byte, not about which: the caller finishes byte by byte.
fn plain_prefix(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    while let Some(chunk) = s.get(n..n + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(0x20 * ONES) & !w & HIGH; // a byte below 0x20
        let high = (w.wrapping_add(ONES) | w) & HIGH; // a byte of 0x7F or more
        let eq = w ^ (u64::from(b'=') * ONES);
        let equals = eq.wrapping_sub(ONES) & !eq & HIGH; // a `=`
        if control | high | equals != 0 {
            break;
        }
        n += 8;
    }
    n
}

/// `newsletter.openinfra.dev` of `Inside Open Infrastructure <newsletter.openinfra.dev>`.
pub fn list_id_value(list_id: &str) -> &str {
    list_id
        .rsplit_once('<')
        .map_or(list_id, |(_, id)| id.trim_end_matches('>'))
        .trim()
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

/// Characters of a recipient's name and of a personalized subject that reach the headers.
/// A header line may not pass 998 octets (RFC 5322 2.1.1), and a word without spaces cannot
/// be folded; a value cut to this length keeps every line far below it.
const MAX_NAME: usize = 128;
const MAX_SUBJECT: usize = 250;

/// A value fit for a header: line breaks folded into spaces (they must never reach a header),
/// and cut with an ellipsis past `max` characters.
fn header_value(s: &str, max: usize) -> String {
    let line = s
        .split(['\r', '\n'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() <= max {
        return line;
    }
    line.chars().take(max - 1).chain(['…']).collect()
}

/// The HTML's `<title>` as the Subject header goes out (cut, or with the test prefix):
/// receivers compare the two (SpamAssassin's HTML_TITLE_SUBJ_DIFF). Copied only when they
/// differ, which a usual subject does not.
fn title_as_subject(html: String, subject: &str) -> String {
    let Some(start) = html.find("<title>").map(|i| i + "<title>".len()) else {
        return html;
    };
    let Some(length) = html[start..].find("</title>") else {
        return html;
    };
    let title = handlebars::html_escape(subject);
    if html[start..start + length] == title {
        return html;
    }
    let mut out = String::with_capacity(html.len() + title.len());
    out.push_str(&html[..start]);
    out.push_str(&title);
    out.push_str(&html[start + length..]);
    out
}

/// Says which field is missing in words a writer acts on.
fn missing_field_reason(e: &handlebars::RenderError) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(field)) => format!(
            "the issue uses {{{{{field}}}}} but this recipient has no `{field}` field: add the column to the CSV or remove it from the issue"
        ),
        other => other.to_string(),
    }
}

/// `SOURCE_DATE_EPOCH` pins the Date header (reproducible output in tests); otherwise now.
pub fn message_date() -> SystemTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or_else(SystemTime::now, |secs| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::{MAX_NAME, header_value, quoted_printable};

    #[test]
    fn the_title_is_the_subject_as_sent() {
        let html = "<html><head><title>Long &amp; longer</title></head><body>x</body></html>".to_owned();
        let same = super::title_as_subject(html.clone(), "Long & longer");
        assert_eq!(same, html);
        let cut = super::title_as_subject(html, "[TEST] Long & lo…");
        assert_eq!(
            cut,
            "<html><head><title>[TEST] Long &amp; lo…</title></head><body>x</body></html>"
        );
    }

    #[test]
    fn header_values_are_one_line_and_cut() {
        assert_eq!(header_value("Eve\r\nBcc: x@y", 50), "Eve Bcc: x@y");
        let long = "b".repeat(1200);
        let cut = header_value(&long, MAX_NAME);
        assert_eq!(cut.chars().count(), MAX_NAME);
        assert!(cut.ends_with('…'));
    }

    fn decode(encoded: &[u8]) -> String {
        let bytes = ::quoted_printable::decode(encoded, ::quoted_printable::ParseMode::Strict).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_lines_short() {
        let long_url = format!("<a href=\"https://example.org/?a=1&b={}\">x</a>", "y".repeat(200));
        // Every character up to U+00FF at every offset against the 8-byte words of the scan.
        let every_char: String = (0..3)
            .flat_map(|shift| std::iter::repeat_n('x', shift).chain((1u8..=255).map(char::from)))
            .collect();
        for text in [
            "plain ascii\nsecond line\n",
            "We’d like — café, naïve, 日本語\r\nand = signs == here",
            "trailing space \nand tab\t\n",
            ".leading dot\n..two\n.\n",
            long_url.as_str(),
            "",
            &every_char,
            &format!("{}\n.{}", "a".repeat(74), "b ".repeat(90)),
        ] {
            let encoded = quoted_printable(text);
            assert_eq!(
                decode(&encoded),
                text.replace("\r\n", "\n").replace('\n', "\r\n"),
                "{text:?}"
            );
            let encoded = String::from_utf8(encoded).unwrap();
            assert!(encoded.split("\r\n").all(|l| l.len() <= 76), "{encoded}");
            assert!(
                !encoded.split("\r\n").any(|l| l.ends_with(' ') || l.ends_with('\t')),
                "{encoded}"
            );
        }
    }
}
