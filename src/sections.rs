//! Split an issue's Markdown into the lead and its `#` sections, and recognise project sections.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::Serialize;

use crate::diagnostic::{LineIndex, Warning};
use crate::issue::Issue;
use crate::layout::{Project, Registry};
use crate::markdown::{self, Content, Source, Spanned};

#[derive(Debug, Clone, Serialize)]
pub struct Sections {
    /// Content before the first heading: hero image, introduction.
    pub lead: Option<Content>,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// The heading without Markdown markers; for a project, its display name.
    pub title: String,
    pub tagline: Option<String>,
    /// Set when the heading names a project of the layout's registry.
    pub project: Option<Project>,
    /// 1-based line of the heading in the issue file.
    pub line: usize,
    pub content: Content,
}

pub fn markdown_options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// Splits the body at level-1 headings. Everything is parsed as one document, so reference
/// links defined anywhere resolve in every section.
pub fn split(
    issue: &Issue,
    registry: &Registry,
    origin: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Sections {
    let lines = LineIndex::new(&issue.body, issue.body_line);
    let src = Source {
        file: &issue.path,
        lines: &lines,
        origin,
    };
    let events: Vec<Spanned<'_>> = Parser::new_ext(&issue.body, markdown_options())
        .into_offset_iter()
        .collect();

    let mut lead = None;
    let mut sections = Vec::new();
    let mut chunk_start = 0;
    let mut heading: Option<(String, usize)> = None;
    let mut i = 0;
    while i <= events.len() {
        let at_h1 = matches!(
            events.get(i),
            Some((
                Event::Start(Tag::Heading {
                    level: HeadingLevel::H1,
                    ..
                }),
                _
            ))
        );
        if at_h1 || i == events.len() {
            let content = markdown::convert(&events[chunk_start..i], &src, warnings);
            match heading.take() {
                Some((title, line)) => sections.push(section(title, line, registry, content)),
                None if !content.blocks.is_empty() => lead = Some(content),
                None => {}
            }
            if i == events.len() {
                break;
            }
            let end = events[i..]
                .iter()
                .position(|(ev, _)| matches!(ev, Event::End(TagEnd::Heading(HeadingLevel::H1))))
                .map_or(events.len(), |p| i + p);
            let title: String = events[i..end]
                .iter()
                .filter_map(|(ev, _)| match ev {
                    Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                    Event::SoftBreak => Some(" "),
                    _ => None,
                })
                .collect();
            heading = Some((
                title.split_whitespace().collect::<Vec<_>>().join(" "),
                lines.line(events[i].1.start),
            ));
            chunk_start = (end + 1).min(events.len());
            i = chunk_start;
            continue;
        }
        i += 1;
    }
    Sections { lead, sections }
}

/// `OpenStack: Open source software for ...` is the OpenStack section with that tagline;
/// a heading that names no project is a plain section titled by the whole heading.
fn section(title: String, line: usize, registry: &Registry, content: Content) -> Section {
    let (name, tagline) = match title.split_once(':') {
        Some((name, tagline)) => (name.trim(), Some(tagline.trim())),
        None => (title.as_str(), None),
    };
    match registry.find(name) {
        Some(project) => Section {
            title: project.name.clone(),
            tagline: tagline
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .or_else(|| project.tagline.clone()),
            project: Some(project.clone()),
            line,
            content,
        },
        None => Section {
            title,
            tagline: None,
            project: None,
            line,
            content,
        },
    }
}
