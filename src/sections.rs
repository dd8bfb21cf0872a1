//! Split an issue's Markdown into the lead and its `#` sections, and recognise project sections.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
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

/// Splits the body at level-1 headings. Everything is parsed as one document, so reference
/// links defined anywhere resolve in every section.
pub fn split(issue: &Issue, registry: &Registry, origin: Option<&str>, warnings: &mut Vec<Warning>) -> Sections {
    let lines = LineIndex::new(&issue.body, issue.body_line);
    let src = Source {
        file: &issue.path,
        lines: &lines,
        origin,
    };
    let events: Vec<Spanned<'_>> = Parser::new_ext(&issue.body, markdown::markdown_options())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use std::path::Path;

    fn split_md(body: &str) -> Sections {
        let issue = Issue::parse(Path::new("t.md"), &format!("---\ntitle: T\n---\n{body}")).unwrap();
        let layout = Layout::load(None, Path::new("no-such-dir")).unwrap();
        let mut warnings = Vec::new();
        split(&issue, &layout.registry, Some("https://openinfra.dev"), &mut warnings)
    }

    #[test]
    fn headings_open_sections_and_projects_take_their_tagline() {
        let s = split_md(
            "Lead text\n\n# OpenStack: Open source software for clouds\n\n* news\n\n# **Community Events**\n\n* event\n",
        );
        assert!(s.lead.as_ref().unwrap().text.contains("Lead text"));
        assert_eq!(s.sections.len(), 2);
        let os = &s.sections[0];
        assert_eq!(
            (os.title.as_str(), os.tagline.as_deref(), os.line),
            ("OpenStack", Some("Open source software for clouds"), 6)
        );
        assert_eq!(os.project.as_ref().unwrap().color, "#da1a32");
        let ev = &s.sections[1];
        assert_eq!((ev.title.as_str(), ev.project.is_none()), ("Community Events", true));
    }

    #[test]
    fn aliases_match_any_case_and_default_tagline_applies() {
        let s = split_md("# KATA\n\ntext\n\n# zuul ci: Gating\n");
        assert_eq!(s.sections[0].title, "Kata Containers");
        assert_eq!(
            s.sections[0].tagline.as_deref(),
            Some("The speed of containers, the security of VMs")
        );
        assert_eq!(s.sections[1].title, "Zuul");
        assert_eq!(s.sections[1].tagline.as_deref(), Some("Gating"));
    }

    #[test]
    fn a_colon_heading_that_names_no_project_is_a_plain_section() {
        let s = split_md("# OpenInfra Summit Schedule: For the Community\n");
        assert_eq!(s.sections[0].title, "OpenInfra Summit Schedule: For the Community");
        assert!(s.sections[0].project.is_none() && s.lead.is_none());
    }

    #[test]
    fn reference_links_resolve_across_sections() {
        let s = split_md("# A\n\nSee [the site][site].\n\n# B\n\n[site]: https://openinfra.dev/\n");
        assert_eq!(s.sections[0].content.links[0].url, "https://openinfra.dev/");
    }

    #[test]
    fn second_level_headings_stay_inside_the_section() {
        let s = split_md("# A\n\n## Sub\n\ntext\n");
        assert_eq!(s.sections.len(), 1);
        assert!(
            matches!(&s.sections[0].content.blocks[0], crate::markdown::Block::Html { html } if html.starts_with("<h2>Sub</h2>"))
        );
    }
}
