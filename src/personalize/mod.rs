//! Rendered issue x recipient -> a complete MIME message. The HTML, text and subject
//! are parsed as templates once; per recipient only values are substituted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use handlebars::{Context, Handlebars};
use lettre::Address;
use lettre::message::Mailbox;
use lettre::message::header::{self, HeaderName, HeaderValue, Headers};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::clicks::{Clicks, Stamp};
use crate::compile::Rendered;
use crate::config::Config;
use crate::dkim::BodyHash;
use crate::recipients::Recipient;
use crate::unsubscribe::{self, Secret};

mod splice;
mod template;
use splice::{Splice, Which};
use template::Template;

#[derive(Debug, Error)]
pub enum PersonalizeError {
    #[error("{template} of the issue cannot be parsed as a template: {reason}")]
    Template { template: &'static str, reason: String },
    #[error("{}: {reason}", recipient_place(email, *line))]
    Recipient { email: String, line: u64, reason: String },
    #[error("invalid sender in the configuration: {0}")]
    Sender(String),
}

/// `recipient a@x.org (line 12)`; a test send's recipients have no line.
fn recipient_place(email: &str, line: u64) -> String {
    match line {
        0 => format!("test recipient {email}"),
        n => format!("recipient {email} (line {n})"),
    }
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

/// One recipient's message as it goes out.
pub struct Mime {
    /// Headers and body, CRLF line ends, formatted for SMTP.
    pub bytes: Vec<u8>,
    pub message_id: String,
    pub to: Address,
    /// DKIM's relaxed body hash, when asked for: made from the splice's pieces.
    pub body_hash: Option<BodyHash>,
}

/// Builds each recipient's message from one rendered issue.
pub struct Personalizer {
    rendered: Rendered,
    templates: Templates,
    splice: Splice,
    /// The header fields that are the same in every message, formatted once.
    fixed: FixedHeaders,
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
    /// Counted links marked as a test send's or a preview's: they work, and count nothing.
    test_links: bool,
    /// Links pointing at `serve`, which counts them (`analytics`); none for the archive.
    clicks: Option<Arc<Clicks>>,
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

/// `html`: the rendered HTML, or it with its links pointing at `serve`.
fn templates(rendered: &Rendered, html_source: &str) -> Result<Templates, PersonalizeError> {
    let template_error = |template| {
        move |e: handlebars::TemplateError| PersonalizeError::Template {
            template,
            reason: e.to_string(),
        }
    };
    let mut html = Handlebars::new();
    html.set_strict_mode(true);
    html.register_escape_fn(crate::html::escape);
    let html_template = Template::register(&mut html, HTML, html_source, true).map_err(template_error("the HTML"))?;
    let mut plain = Handlebars::new();
    plain.set_strict_mode(true);
    plain.register_escape_fn(handlebars::no_escape);
    plain.register_helper(crate::markdown::WRAP_HELPER, Box::new(template::WrapFilled));
    let text_template =
        Template::register(&mut plain, TEXT, &rendered.text, false).map_err(template_error("the text part"))?;
    let subject_template =
        Template::register(&mut plain, SUBJECT, &rendered.subject, false).map_err(template_error("the subject"))?;
    Ok(Templates {
        html,
        plain,
        html_template,
        text_template,
        subject_template,
    })
}

impl Templates {
    /// The body's splice, its boundary derived from the issue: quoted-printable never holds
    /// `=_`, so no part can contain it.
    fn splice(&self, rendered: &Rendered, html: &str) -> Splice {
        let boundary = format!(
            "=_{}",
            &hex(&Sha256::digest(format!("{}\0{}", rendered.slug, html)))[..24]
        );
        fn static_parts(t: &Template) -> Vec<Option<&str>> {
            (0..t.len()).map(|i| t.static_part(i)).collect()
        }
        Splice::new(&splice::Layout {
            boundary: &boundary,
            text: static_parts(&self.text_template),
            html: static_parts(&self.html_template),
        })
    }
}

/// A recipient's values, ready for the templates.
struct Values {
    context: Context,
    subject: String,
    /// The subject as the HTML's title shows it.
    title: String,
    unsubscribe_url: String,
    unsubscribe_token: String,
}

/// Header fields in the order they go out, split where the recipient's fields come.
#[derive(Default)]
struct FixedHeaders {
    /// From.
    from: String,
    /// Date.
    date: String,
    /// List-Id.
    list_id: String,
    /// List-Unsubscribe-Post, Reply-To, Feedback-ID, MIME-Version and the multipart's
    /// Content-Type.
    rest: String,
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
        let templates = templates(rendered, &rendered.html)?;
        let mut personalizer = Personalizer {
            rendered: rendered.clone(),
            splice: templates.splice(rendered, &rendered.html),
            templates,
            fixed: FixedHeaders::default(),
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
            date: crate::clock::message_date(),
            subject_prefix: String::new(),
            message_id_kind: String::new(),
            archive: false,
            test_links: false,
            clicks: None,
            feedback_id: config.feedback_id.as_ref().map(|template| {
                template
                    .replace("{issue}", &rendered.slug)
                    .replace("{list}", list_id_value(&config.list_id))
                    .replace("{sender}", config.from.address.rsplit_once('@').map_or("", |(_, d)| d))
            }),
        };
        personalizer.fix_headers();
        Ok(personalizer)
    }

    /// Formats the header fields every message shares, after any setting changed.
    fn fix_headers(&mut self) {
        let format = |fill: &dyn Fn(&mut Headers)| {
            let mut headers = Headers::new();
            fill(&mut headers);
            headers.to_string()
        };
        self.fixed = FixedHeaders {
            from: format(&|h| h.set(header::From::from(lettre::message::Mailboxes::from(self.from.clone())))),
            date: format(&|h| h.set(header::Date::new(self.date))),
            list_id: format(&|h| h.insert_raw(raw_header("List-Id", self.list_id.clone()))),
            rest: format(&|h| {
                h.insert_raw(raw_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into()));
                if let Some(reply_to) = &self.reply_to {
                    h.set(header::ReplyTo::from(lettre::message::Mailboxes::from(
                        reply_to.clone(),
                    )));
                }
                if let Some(feedback_id) = &self.feedback_id {
                    h.insert_raw(raw_header("Feedback-ID", feedback_id.clone()));
                }
                h.set(header::MIME_VERSION_1_0);
                h.insert_raw(raw_header(
                    "Content-Type",
                    format!("multipart/alternative; boundary=\"{}\"", self.splice.boundary()),
                ));
            }),
        };
    }

    /// For the web archive: every message's HTML without an unsubscribe link.
    pub fn for_archive(mut self) -> Self {
        self.archive = true;
        self.feedback_id = None;
        self.fix_headers();
        self
    }

    /// The issue this personalizes.
    pub fn rendered(&self) -> &Rendered {
        &self.rendered
    }

    /// Points the HTML's links at `serve` (and adds the image, with `analytics.opens`),
    /// stamped with the minute of the Date header, marked as a test's for a test send. Once
    /// per issue and edition: every message of a run has the same links.
    pub fn with_clicks(mut self, clicks: Arc<Clicks>) -> Result<Self, PersonalizeError> {
        let html = clicks.rewrite(&self.rendered.html, Stamp::at(self.date, self.test_links));
        self.templates = templates(&self.rendered, &html)?;
        self.splice = self.templates.splice(&self.rendered, &html);
        self.clicks = Some(clicks);
        self.fix_headers();
        Ok(self)
    }

    /// The same settings over another edition of the issue (one choice of projects).
    pub fn edition(&self, rendered: &Rendered) -> Result<Personalizer, PersonalizeError> {
        self.edition_at(rendered, self.date)
    }

    /// The same personalizer made again when the minute has turned since it was made, with
    /// counted links: their stamp says when a message was made (the Date header too), which a
    /// long run's later messages would otherwise give as its start. `None` while the minute
    /// is the same, without counted links, or with the date pinned.
    pub fn renewed(&self) -> Option<Result<Personalizer, PersonalizeError>> {
        self.clicks.as_ref()?;
        let now = crate::clock::message_date();
        (Stamp::at(now, false).minute != Stamp::at(self.date, false).minute)
            .then(|| self.edition_at(&self.rendered, now))
    }

    fn edition_at(&self, rendered: &Rendered, date: SystemTime) -> Result<Personalizer, PersonalizeError> {
        let stamp = Stamp::at(date, self.test_links);
        let html = match &self.clicks {
            Some(clicks) => clicks.rewrite(&rendered.html, stamp),
            None => rendered.html.clone(),
        };
        let templates = templates(rendered, &html)?;
        let mut edition = Personalizer {
            rendered: rendered.clone(),
            splice: templates.splice(rendered, &html),
            templates,
            fixed: FixedHeaders::default(),
            from: self.from.clone(),
            reply_to: self.reply_to.clone(),
            list_id: self.list_id.clone(),
            unsubscribe_base: self.unsubscribe_base.clone(),
            unsubscribe_mailto: self.unsubscribe_mailto.clone(),
            preferences_base: self.preferences_base.clone(),
            secret: self.secret.clone(),
            domain: self.domain.clone(),
            date,
            subject_prefix: self.subject_prefix.clone(),
            message_id_kind: self.message_id_kind.clone(),
            feedback_id: self.feedback_id.clone(),
            archive: self.archive,
            test_links: self.test_links,
            clicks: self.clicks.clone(),
        };
        edition.fix_headers();
        Ok(edition)
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
        self.test_links = true;
        self.fix_headers();
        self
    }

    /// A preview: counted links are marked as a test's (they work, with `serve`, and count
    /// nothing). Before [`Personalizer::with_clicks`].
    pub fn for_preview(mut self) -> Self {
        self.test_links = true;
        self
    }

    /// Pins the Date header (otherwise `SOURCE_DATE_EPOCH`, else now).
    pub fn with_date(mut self, date: SystemTime) -> Self {
        self.date = date;
        self.fix_headers();
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

    fn recipient_error(r: &Recipient) -> impl Fn(String) -> PersonalizeError + '_ {
        |reason| PersonalizeError::Recipient {
            email: r.email.clone(),
            line: r.line,
            reason,
        }
    }

    /// The recipient's values and subject.
    fn values(&self, r: &Recipient) -> Result<Values, PersonalizeError> {
        let fail = Self::recipient_error(r);
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
        let t = &self.templates;
        let subject = t
            .subject_template
            .render(&t.plain, &context, "")
            .map_err(|e| fail(missing_field_reason(&e)))?;
        let subject = format!("{}{}", self.subject_prefix, header_value(&subject, MAX_SUBJECT));
        Ok(Values {
            context,
            // What receivers compare with the Subject (SpamAssassin's HTML_TITLE_SUBJ_DIFF).
            title: crate::html::escape(&subject),
            subject,
            unsubscribe_url,
            unsubscribe_token,
        })
    }

    /// Part `index` of the text or the HTML for one recipient.
    fn fill(&self, values: &Values, which: Which, index: usize) -> Result<String, handlebars::RenderError> {
        let t = &self.templates;
        let (hbs, template) = match which {
            Which::Text => (&t.plain, &t.text_template),
            Which::Html => (&t.html, &t.html_template),
        };
        Ok(template
            .render_part(index, hbs, &values.context, &values.title)?
            .into_owned())
    }

    /// The recipient's subject, text and HTML.
    pub fn parts(&self, r: &Recipient) -> Result<Parts, PersonalizeError> {
        let fail = Self::recipient_error(r);
        let values = self.values(r)?;
        let t = &self.templates;
        let render = |hbs: &Handlebars<'_>, template: &Template| {
            template
                .render(hbs, &values.context, &values.title)
                .map_err(|e| fail(missing_field_reason(&e)))
        };
        Ok(Parts {
            html: render(&t.html, &t.html_template)?,
            text: render(&t.plain, &t.text_template)?,
            subject: values.subject,
            unsubscribe_url: values.unsubscribe_url,
            unsubscribe_token: values.unsubscribe_token,
        })
    }

    /// The complete message for `r`: its header fields, then the splice with the
    /// recipient's parts encoded into it; with `body_hash`, DKIM's hash of the body.
    pub fn mime(&self, r: &Recipient, body_hash: bool) -> Result<Mime, PersonalizeError> {
        let fail = Self::recipient_error(r);
        let values = self.values(r)?;
        let to_address: Address = r.email.parse().map_err(|e| fail(format!("invalid address: {e}")))?;
        let to = Mailbox::new(r.display_name().map(|n| header_value(&n, MAX_NAME)), to_address.clone());
        let message_id = self.message_id(&r.email);
        let own = |fill: &dyn Fn(&mut Headers)| {
            let mut headers = Headers::new();
            fill(&mut headers);
            headers.to_string()
        };
        let to_subject = own(&|h| {
            h.set(header::To::from(lettre::message::Mailboxes::from(to.clone())));
            h.set(header::Subject::from(values.subject.clone()));
        });
        let id = own(&|h| h.set(header::MessageId::from(message_id.clone())));
        let unsubscribe = own(&|h| {
            h.insert_raw(raw_header(
                "List-Unsubscribe",
                format!(
                    "<{}>, <mailto:{}?subject=unsubscribe%20{}>",
                    values.unsubscribe_url, self.unsubscribe_mailto, values.unsubscribe_token
                ),
            ))
        });
        let f = &self.fixed;
        let head = [&f.from, &to_subject, &f.date, &id, &f.list_id, &unsubscribe, &f.rest];
        let mut bytes = Vec::with_capacity(head.iter().map(|h| h.len()).sum::<usize>() + 2 + self.splice.len() + 1024);
        for h in head {
            bytes.extend_from_slice(h.as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let body_hash = self
            .splice
            .write(&mut bytes, body_hash, |which, index| self.fill(&values, which, index))
            .map_err(|e| fail(missing_field_reason(&e)))?;
        Ok(Mime {
            bytes,
            message_id,
            to: to_address,
            body_hash,
        })
    }
}

/// `newsletter.openinfra.dev` of `Inside Open Infrastructure <newsletter.openinfra.dev>`.
pub fn list_id_value(list_id: &str) -> &str {
    list_id
        .rsplit_once('<')
        .map_or(list_id, |(_, id)| id.trim_end_matches('>'))
        .trim()
}

fn raw_header(name: &'static str, value: String) -> HeaderValue {
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

/// Says which field is missing in words a writer acts on.
fn missing_field_reason(e: &handlebars::RenderError) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(field)) => format!(
            "the issue uses {{{{{field}}}}} but this recipient has no `{field}` field: add the column to the CSV or remove it from the issue"
        ),
        other => other.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
