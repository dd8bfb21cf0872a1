//! Warnings found while composing an issue, each tied to a file and line where possible.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// What kind of problem a warning reports. The code is stable: scripts read it from
/// `--format json`, and `check` decides severity by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    UnknownFrontMatterKey,
    MissingSubject,
    MissingPreheader,
    UnparsedMarkdown,
    EmptyLinkText,
    ImageWithoutAlt,
    InsecureLink,
    UnresolvedLink,
    UnsafeHtmlDropped,
    HtmlTooLarge,
    MjmlWarning,
    PlaceholderSecret,
    SubjectTooLong,
    InvalidMailto,
    UnknownTemplateVariable,
    /// `TODO:` text left in the issue (the scaffold of `newsletter new` is made of it).
    Placeholder,
    /// The project's links are at another organisation's domain, but it still sends as the
    /// OpenInfra Foundation (the defaults' From, List-Id, postal address...).
    BorrowedIdentity,
    /// Editions leave sections out, and there is no web page to link them to.
    UnlinkedElsewhere,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::UnknownFrontMatterKey => "unknown-front-matter-key",
            Kind::MissingSubject => "missing-subject",
            Kind::MissingPreheader => "missing-preheader",
            Kind::UnparsedMarkdown => "unparsed-markdown",
            Kind::EmptyLinkText => "empty-link-text",
            Kind::ImageWithoutAlt => "image-without-alt",
            Kind::InsecureLink => "insecure-link",
            Kind::UnresolvedLink => "unresolved-link",
            Kind::UnsafeHtmlDropped => "unsafe-html-dropped",
            Kind::HtmlTooLarge => "html-too-large",
            Kind::MjmlWarning => "mjml-warning",
            Kind::PlaceholderSecret => "placeholder-secret",
            Kind::SubjectTooLong => "subject-too-long",
            Kind::InvalidMailto => "invalid-mailto",
            Kind::UnknownTemplateVariable => "unknown-template-variable",
            Kind::Placeholder => "placeholder",
            Kind::BorrowedIdentity => "borrowed-identity",
            Kind::UnlinkedElsewhere => "unlinked-elsewhere",
        }
    }

    /// Errors make the email wrong for every reader (a link that cannot work, a clipped
    /// footer, a subject-less message, Markdown shown raw); `send` refuses them unless
    /// `--force`. Warnings are worth fixing but the email still works.
    pub fn severity(self) -> Severity {
        match self {
            Kind::MissingSubject
            | Kind::UnparsedMarkdown
            | Kind::UnresolvedLink
            | Kind::HtmlTooLarge
            | Kind::InvalidMailto
            | Kind::UnknownTemplateVariable
            | Kind::Placeholder => Severity::Error,
            Kind::UnknownFrontMatterKey
            | Kind::MissingPreheader
            | Kind::EmptyLinkText
            | Kind::ImageWithoutAlt
            | Kind::InsecureLink
            | Kind::UnsafeHtmlDropped
            | Kind::MjmlWarning
            | Kind::PlaceholderSecret
            | Kind::SubjectTooLong
            | Kind::BorrowedIdentity
            | Kind::UnlinkedElsewhere => Severity::Warning,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Warning {
    pub kind: Kind,
    /// Empty when the warning is not about a file.
    pub file: PathBuf,
    /// 1-based line in `file`, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

impl Warning {
    pub fn new(kind: Kind, file: impl Into<PathBuf>, line: Option<usize>, message: String) -> Self {
        Warning {
            kind,
            file: file.into(),
            line,
            message,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.as_os_str().is_empty(), self.line) {
            (true, _) => write!(f, "{} [{}]", self.message, self.kind.code()),
            (false, Some(line)) => write!(
                f,
                "{}:{}: {} [{}]",
                self.file.display(),
                line,
                self.message,
                self.kind.code()
            ),
            (false, None) => write!(f, "{}: {} [{}]", self.file.display(), self.message, self.kind.code()),
        }
    }
}

/// Maps byte offsets of a text to 1-based line numbers, shifted by the line the text starts on.
pub struct LineIndex {
    starts: Vec<usize>,
    first_line: usize,
}

impl LineIndex {
    pub fn new(text: &str, first_line: usize) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts, first_line }
    }

    pub fn line(&self, offset: usize) -> usize {
        let idx = self.starts.partition_point(|&s| s <= offset);
        self.first_line + idx.saturating_sub(1)
    }
}
