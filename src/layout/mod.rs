//! The layout folder: Handlebars templates that emit MJML and plain text, and the project
//! registry. Sections -> MJML and text, once per issue.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};

use crate::diagnostic::Warning;
use crate::markdown::{Block, Content};

mod lint;

/// The layout shipped inside the binary, so `newsletter` works outside a checkout. A folder
/// `layouts/inside-openinfra/` in the project overrides it.
pub const DEFAULT_LAYOUT: &str = "inside-openinfra";

/// The layout's CSS for the HTML made from Markdown; optional in a layout folder.
const INLINE_CSS: &str = "inline.css";

const BUNDLED: &[(&str, &str)] = &[
    (
        "email.mjml.hbs",
        include_str!("../../layouts/inside-openinfra/email.mjml.hbs"),
    ),
    (
        "email.txt.hbs",
        include_str!("../../layouts/inside-openinfra/email.txt.hbs"),
    ),
    (INLINE_CSS, include_str!("../../layouts/inside-openinfra/inline.css")),
    (
        "projects.yaml",
        include_str!("../../layouts/inside-openinfra/projects.yaml"),
    ),
    (
        "partials/header.mjml.hbs",
        include_str!("../../layouts/inside-openinfra/partials/header.mjml.hbs"),
    ),
    (
        "partials/lead.mjml.hbs",
        include_str!("../../layouts/inside-openinfra/partials/lead.mjml.hbs"),
    ),
    (
        "partials/project.mjml.hbs",
        include_str!("../../layouts/inside-openinfra/partials/project.mjml.hbs"),
    ),
    (
        "partials/section.mjml.hbs",
        include_str!("../../layouts/inside-openinfra/partials/section.mjml.hbs"),
    ),
    (
        "partials/blocks.mjml.hbs",
        include_str!("../../layouts/inside-openinfra/partials/blocks.mjml.hbs"),
    ),
    (
        "partials/footer.mjml.hbs",
        include_str!("../../layouts/inside-openinfra/partials/footer.mjml.hbs"),
    ),
    (
        "unsubscribe.html.hbs",
        include_str!("../../layouts/inside-openinfra/unsubscribe.html.hbs"),
    ),
    (
        "archive.html.hbs",
        include_str!("../../layouts/inside-openinfra/archive.html.hbs"),
    ),
    (
        "subscribe.html.hbs",
        include_str!("../../layouts/inside-openinfra/subscribe.html.hbs"),
    ),
    (
        CONFIRM_MJML,
        include_str!("../../layouts/inside-openinfra/confirm.mjml.hbs"),
    ),
    (
        CONFIRM_TEXT,
        include_str!("../../layouts/inside-openinfra/confirm.txt.hbs"),
    ),
];

/// The pages of `newsletter serve`; a layout without them (made before they existed) gets the
/// built-in ones.
const PAGES: &[&str] = &["unsubscribe.html.hbs", "archive.html.hbs", "subscribe.html.hbs"];

/// The confirmation email of a sign-up; like the pages, built-in unless the layout has its own.
const CONFIRM_MJML: &str = "confirm.mjml.hbs";
const CONFIRM_TEXT: &str = "confirm.txt.hbs";

/// Writes each (path under `dir`, text), making the folders on the way; returns the paths.
pub fn write_files<P: AsRef<Path>, T: AsRef<[u8]>>(
    dir: &Path,
    files: impl IntoIterator<Item = (P, T)>,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The projects a layout knows, from its `projects.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Accent colour of sections that are not projects (buttons, rules).
    pub accent: String,
    pub projects: Vec<Project>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub id: String,
    pub name: String,
    /// Other spellings a heading may use; matched case-insensitively, like the name.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Used when the heading has no `: tagline`.
    pub tagline: Option<String>,
    pub color: String,
    pub logo: Option<String>,
    pub url: Option<String>,
}

impl Registry {
    pub fn find(&self, heading_name: &str) -> Option<&Project> {
        let wanted = heading_name.trim();
        self.projects.iter().find(|p| {
            std::iter::once(&p.name)
                .chain(&p.aliases)
                .any(|n| n.trim().eq_ignore_ascii_case(wanted))
        })
    }
}

/// A loaded layout, its templates parsed once.
pub struct Layout {
    pub name: String,
    /// Where the templates came from, for error messages: a folder, or `(bundled)`.
    pub origin: PathBuf,
    pub registry: Registry,
    /// `inline.css`: the look of the HTML made from Markdown.
    inline_css: Option<String>,
    mjml: Handlebars<'static>,
    text: Handlebars<'static>,
    /// The web pages' templates (name, source), for `serve`.
    pages: Vec<(String, String)>,
    /// What the MJML check found that does not stop the layout (unknown attributes).
    pub warnings: Vec<Warning>,
}

/// Marks where each template's output starts and ends in the rendered MJML, so that an mrml
/// error can name the template. Private-use characters never occur in real content.
const OPEN: char = '\u{E000}';
const NAME_END: char = '\u{E001}';
const CLOSE: char = '\u{E002}';

/// A rendered MJML document with the template that produced each byte range.
pub struct Mjml {
    pub source: String,
    spans: Vec<(usize, usize, String)>,
}

impl Mjml {
    /// The innermost template whose output contains `offset`.
    pub fn template_at(&self, offset: usize) -> Option<&str> {
        self.spans
            .iter()
            .filter(|(s, e, _)| *s <= offset && offset <= *e)
            .min_by_key(|(s, e, _)| e - s)
            .map(|(_, _, n)| n.as_str())
    }
}

impl Layout {
    /// Loads a layout by name (a folder under `layouts_dir`) or by path. A folder named like
    /// the built-in layout overrides it file by file: each file it holds replaces the bundled
    /// one, the rest come from the binary. A folder of another name is a whole layout.
    pub fn load(name: Option<&str>, layouts_dir: &Path) -> Result<Layout> {
        let name = name.unwrap_or(DEFAULT_LAYOUT);
        let as_path = Path::new(name);
        let dir = if as_path.components().count() > 1 || as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            layouts_dir.join(name)
        };
        let bundled_origin = Path::new("(bundled layout inside-openinfra)");
        let overrides_builtin = dir.file_name().is_some_and(|n| n == DEFAULT_LAYOUT);
        if !dir.is_dir() {
            if name == DEFAULT_LAYOUT {
                let files = BUNDLED
                    .iter()
                    .map(|(f, t)| (f.to_string(), bundled_origin.join(f), t.to_string()))
                    .collect();
                return Layout::from_files(name, bundled_origin, files);
            }
            bail!(
                "layout `{name}` not found: no folder {}; `newsletter layout export {}` starts one from the built-in layout, or remove `layout:` from the front matter",
                dir.display(),
                dir.display()
            );
        }
        let mut files = Vec::new();
        let mut missing = Vec::new();
        for (file, bundled) in BUNDLED {
            let path = dir.join(file);
            if path.is_file() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("layout {}: cannot read {}", dir.display(), path.display()))?;
                files.push((file.to_string(), path, text));
            } else if overrides_builtin || PAGES.contains(file) || [CONFIRM_MJML, CONFIRM_TEXT].contains(file) {
                files.push((file.to_string(), bundled_origin.join(file), bundled.to_string()));
            } else if *file != INLINE_CSS {
                // A layout copied before inline.css existed styles its HTML with MJML's
                // `mj-style inline`: it loads without one.
                missing.push(*file);
            }
        }
        if !missing.is_empty() {
            bail!(
                "layout {} lacks {}: a new layout needs every file; `newsletter layout export {}` writes the built-in ones to start from",
                dir.display(),
                missing.join(", "),
                dir.display()
            );
        }
        Layout::from_files(name, &dir, files)
    }

    /// Writes the built-in layout's files into `dir`, for editing; existing files are kept
    /// unless `overwrite`. Returns the files written.
    pub fn export(dir: &Path, overwrite: bool) -> Result<Vec<PathBuf>> {
        let existing: Vec<String> = BUNDLED
            .iter()
            .map(|(f, _)| dir.join(f))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() && !overwrite {
            bail!(
                "{} already exist{}: edit {}, or pass --force to replace {} with the built-in version",
                existing.join(", "),
                if existing.len() == 1 { "s" } else { "" },
                if existing.len() == 1 { "it" } else { "them" },
                if existing.len() == 1 { "it" } else { "them" }
            );
        }
        write_files(dir, BUNDLED.iter().copied())
    }

    /// `files`: (name in the layout, where it came from, its text).
    fn from_files(name: &str, origin: &Path, files: Vec<(String, PathBuf, String)>) -> Result<Layout> {
        let mut mjml = Handlebars::new();
        mjml.set_strict_mode(true);
        mjml.register_escape_fn(crate::html::escape);
        // Partials must not indent the lines of the HTML they include (it would shift <pre>).
        mjml.set_prevent_indent(true);
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        let mut registry = None;
        let mut inline_css = None;
        let mut warnings = Vec::new();
        let mut pages = Vec::new();
        for (file, path, source) in files {
            if PAGES.contains(&file.as_str()) {
                pages.push((file, source));
                continue;
            }
            if file.ends_with(".mjml.hbs") {
                warnings.extend(lint::mjml_template(&path, &source)?);
            }
            if file == INLINE_CSS {
                inline_css = Some(source);
            } else if file == "projects.yaml" {
                let parsed: Registry = serde_norway::from_str(&source)
                    .map_err(|e| anyhow::anyhow!("{}: {}; fix the project registry", location(&path, &e), e))?;
                registry = Some(parsed);
            } else if let Some(partial) = file.strip_prefix("partials/") {
                let stem = partial.trim_end_matches(".mjml.hbs");
                mjml.register_partial(stem, mark(&path, &source))
                    .map_err(|e| template_error(&path, &e))?;
            } else {
                let target = if file.ends_with(".txt.hbs") {
                    &mut text
                } else {
                    &mut mjml
                };
                let source = if file.ends_with(".mjml.hbs") {
                    mark(&path, &source)
                } else {
                    source
                };
                target
                    .register_template_string(&file, source)
                    .map_err(|e| template_error(&path, &e))?;
            }
        }
        Ok(Layout {
            name: name.to_owned(),
            origin: origin.to_path_buf(),
            registry: registry.context("the layout has no projects.yaml")?,
            inline_css,
            mjml,
            text,
            pages,
            warnings,
        })
    }

    /// The content with `inline.css` written into the style attributes of its HTML, for the
    /// email clients that ignore `<style>`. Done on the Markdown's HTML alone rather than by
    /// MJML's `mj-style inline` over the whole document: a third of the work.
    pub fn style(&self, content: &Content) -> Result<Content> {
        let mut styled = content.clone();
        let Some(css) = &self.inline_css else {
            return Ok(styled);
        };
        let inliner = css_inline::CSSInliner::options().load_remote_stylesheets(false).build();
        for block in &mut styled.blocks {
            if let Block::Html { html } = block {
                *html = inliner
                    .inline_fragment(html, css)
                    .map_err(|e| anyhow::anyhow!("{}: {e}; fix the CSS", self.origin.join(INLINE_CSS).display()))?;
            }
        }
        Ok(styled)
    }

    /// The web pages' templates: (file name, source).
    pub fn pages(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pages.iter().map(|(n, s)| (n.as_str(), s.as_str()))
    }

    /// Renders the MJML document, recording which template produced which part.
    pub fn render_mjml<T: Serialize>(&self, data: &T) -> Result<Mjml> {
        let marked = self
            .mjml
            .render("email.mjml.hbs", data)
            .map_err(|e| render_error(&self.origin, e))?;
        Ok(unmark(&marked))
    }

    /// The confirmation email of a sign-up: its MJML and its text.
    pub fn render_confirmation<T: Serialize>(&self, data: &T) -> Result<(Mjml, String)> {
        let marked = self
            .mjml
            .render(CONFIRM_MJML, data)
            .map_err(|e| render_error(&self.origin, e))?;
        let text = self
            .text
            .render(CONFIRM_TEXT, data)
            .map_err(|e| render_error(&self.origin, e))?;
        Ok((unmark(&marked), text))
    }

    pub fn render_text<T: Serialize>(&self, data: &T) -> Result<String> {
        self.text
            .render("email.txt.hbs", data)
            .map_err(|e| render_error(&self.origin, e))
    }
}

fn location(path: &Path, err: &serde_norway::Error) -> String {
    match err.location() {
        Some(l) => format!("{}:{}:{}", path.display(), l.line(), l.column()),
        None => path.display().to_string(),
    }
}

/// A template that does not parse, on one line (Handlebars' own message spans several, with a
/// picture of the source).
fn template_error(path: &Path, e: &handlebars::TemplateError) -> anyhow::Error {
    let at = e
        .pos()
        .map(|(line, column)| format!(":{line}:{column}"))
        .unwrap_or_default();
    anyhow::anyhow!("{}{at}: {}; fix the template", path.display(), e.reason())
}

fn render_error(origin: &Path, e: handlebars::RenderError) -> anyhow::Error {
    let template = match e.template_name.as_deref() {
        // Partials are registered by their stem.
        Some(name) if !name.ends_with(".hbs") => format!("partials/{name}.mjml.hbs"),
        Some(name) => name.to_owned(),
        None => "email.mjml.hbs".to_owned(),
    };
    let line = e.line_no.map(|l| format!(":{l}")).unwrap_or_default();
    let reason = match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(var)) => {
            format!("unknown variable `{var}`; the variables are listed at the top of email.mjml.hbs")
        }
        other => other.to_string(),
    };
    anyhow::anyhow!("{}{line}: {reason}", origin.join(template).display())
}

fn mark(path: &Path, source: &str) -> String {
    format!("{OPEN}{}{NAME_END}{source}{CLOSE}", path.display())
}

fn unmark(marked: &str) -> Mjml {
    let mut source = String::with_capacity(marked.len());
    let mut spans = Vec::new();
    let mut open: Vec<(usize, String)> = Vec::new();
    let mut chars = marked.char_indices();
    while let Some((_, ch)) = chars.next() {
        match ch {
            OPEN => {
                let name: String = chars.by_ref().map(|(_, c)| c).take_while(|c| *c != NAME_END).collect();
                open.push((source.len(), name));
            }
            CLOSE => {
                if let Some((start, name)) = open.pop() {
                    spans.push((start, source.len(), name));
                }
            }
            _ => source.push(ch),
        }
    }
    Mjml { source, spans }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_layout_loads_and_matches_aliases() {
        let layout = Layout::load(None, Path::new("does-not-exist")).unwrap();
        assert_eq!(layout.registry.find("openstack").unwrap().name, "OpenStack");
        assert_eq!(layout.registry.find("KATA CONTAINERS").unwrap().id, "kata-containers");
        assert_eq!(layout.registry.find("Kata").unwrap().id, "kata-containers");
        assert!(layout.registry.find("OpenInfra Foundation News").is_none());
    }

    #[test]
    fn a_layout_folder_without_inline_css_leaves_the_html_unstyled_and_other_files_are_required() {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in BUNDLED.iter().filter(|(f, _)| *f != INLINE_CSS && !PAGES.contains(f)) {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let content = Content {
            blocks: vec![Block::Html {
                html: "<p>Hi</p>".into(),
            }],
            ..Content::default()
        };
        let plain = Layout::load(Some(dir.path().to_str().unwrap()), Path::new("layouts")).unwrap();
        assert_eq!(plain.style(&content).unwrap().blocks, content.blocks);
        let bundled = Layout::load(None, Path::new("does-not-exist")).unwrap();
        assert_eq!(
            bundled.style(&content).unwrap().blocks,
            vec![Block::Html {
                html: r#"<p style="margin: 0 0 16px 0;">Hi</p>"#.into()
            }]
        );

        std::fs::remove_file(dir.path().join("projects.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("partials/footer.mjml.hbs")).unwrap();
        let err = Layout::load(Some(dir.path().to_str().unwrap()), Path::new("layouts"))
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("lacks projects.yaml, partials/footer.mjml.hbs: a new layout needs every file"),
            "{err:#}"
        );
    }

    #[test]
    fn a_folder_named_like_the_built_in_layout_overrides_it_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join(DEFAULT_LAYOUT).join("partials/footer.mjml.hbs");
        std::fs::create_dir_all(own.parent().unwrap()).unwrap();
        let footer = BUNDLED
            .iter()
            .find(|(f, _)| *f == "partials/footer.mjml.hbs")
            .unwrap()
            .1;
        std::fs::write(
            &own,
            footer.replace("</mj-text>", "Printed on recycled electrons.</mj-text>"),
        )
        .unwrap();
        let layout = Layout::load(None, dir.path()).unwrap();
        assert_eq!(layout.origin, dir.path().join(DEFAULT_LAYOUT));
        assert_eq!(layout.registry.projects.len(), 5, "projects.yaml from the binary");

        let written = Layout::export(&dir.path().join("copy"), false).unwrap();
        assert_eq!(written.len(), BUNDLED.len());
        let err = Layout::export(&dir.path().join("copy"), false).unwrap_err().to_string();
        assert!(err.contains("already exist: edit them, or pass --force"), "{err}");
        assert!(Layout::export(&dir.path().join("copy"), true).is_ok());
    }

    #[test]
    fn unknown_layout_is_an_error() {
        let err = Layout::load(Some("fancy"), Path::new("layouts"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("layout `fancy` not found"), "{err}");
    }

    #[test]
    fn spans_name_the_innermost_template() {
        let m = unmark("\u{E000}doc\u{E001}<a>\u{E000}part\u{E001}<b/>\u{E002}</a>\u{E002}");
        assert_eq!(m.source, "<a><b/></a>");
        assert_eq!(m.template_at(4), Some("part"));
        assert_eq!(m.template_at(9), Some("doc"));
    }
}
