//! The issue's links, numbered once, each with the section and project it appears in, and the
//! HTML part with its links pointing at `serve`.

use std::collections::HashMap;

use serde::Serialize;

use crate::compile::Rendered;
use crate::html::escape;
use crate::ledger::StoredLink;
use crate::sections::Sections;

/// The section name of the layout's own links (the header, the footer, "View in browser").
pub const LAYOUT: &str = "(layout)";
/// The section name of the text before the first heading.
pub const LEAD: &str = "(lead)";

/// One link of an issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// 1-based, in the order the links first appear in the whole issue.
    pub n: u32,
    /// As written in the issue.
    pub url: String,
    pub section: String,
    pub project: Option<String>,
}

/// Every counted link of an issue.
#[derive(Debug, Clone, Default)]
pub struct LinkTable {
    pub links: Vec<Link>,
    by_url: HashMap<String, u32>,
}

/// Whether a link is counted: http(s) only (not `mailto:`, `tel:` or `#anchors`), and never a
/// per-reader link (unsubscribe, preferences), which the HTML holds as a placeholder.
fn counted(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")) && !url.contains("{{")
}

impl LinkTable {
    /// The links of the issue: each section's in order, the "Also in this issue" links a
    /// partial edition shows, then the layout's (found in the whole issue's HTML).
    pub fn new(sections: &Sections, whole: &Rendered) -> LinkTable {
        let mut table = LinkTable::default();
        if let Some(lead) = &sections.lead {
            for l in &lead.links {
                table.add(&l.url, LEAD, None);
            }
        }
        for s in &sections.sections {
            let project = s.project.as_ref().map(|p| p.id.as_str());
            for l in &s.content.links {
                table.add(&l.url, &s.title, project);
            }
        }
        if let Some(web) = &whole.web_url {
            for s in &sections.sections {
                if let Some(p) = &s.project {
                    table.add(&format!("{web}#{}", p.id), &s.title, Some(&p.id));
                }
            }
        }
        for url in hrefs(&whole.html) {
            table.add(&url, LAYOUT, None);
        }
        table
    }

    /// The table as the ledger stores it.
    pub fn stored(&self) -> Vec<StoredLink> {
        self.links
            .iter()
            .map(|l| StoredLink {
                n: l.n,
                url: l.url.clone(),
                section: l.section.clone(),
                project: l.project.clone(),
            })
            .collect()
    }

    /// A table as the ledger stored it.
    pub fn from_stored(stored: Vec<StoredLink>) -> LinkTable {
        let links: Vec<Link> = stored
            .into_iter()
            .map(|s| Link {
                n: s.n,
                url: s.url,
                section: s.section,
                project: s.project,
            })
            .collect();
        let by_url = links.iter().map(|l| (l.url.clone(), l.n)).collect();
        LinkTable { links, by_url }
    }

    fn add(&mut self, url: &str, section: &str, project: Option<&str>) {
        if !counted(url) || self.by_url.contains_key(url) {
            return;
        }
        let n = self.links.iter().map(|l| l.n).max().unwrap_or(0) + 1;
        self.by_url.insert(url.to_owned(), n);
        self.links.push(Link {
            n,
            url: url.to_owned(),
            section: section.to_owned(),
            project: project.map(str::to_owned),
        });
    }

    /// The links as stored at the issue's first send, then those of `fresh` (the issue as its
    /// file is now) that were not, numbered after them: what a send stores, without storing.
    pub fn merged(stored: Vec<StoredLink>, fresh: &LinkTable) -> LinkTable {
        let mut table = LinkTable::from_stored(stored);
        for link in &fresh.links {
            table.add(&link.url, &link.section, link.project.as_deref());
        }
        table
    }

    pub fn number(&self, url: &str) -> Option<u32> {
        self.by_url.get(url).copied()
    }

    pub fn get(&self, n: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.n == n)
    }

    /// `html` with every counted link pointing at `target(n)`; other links as they were.
    pub fn rewrite(&self, html: &str, target: impl Fn(u32) -> String) -> String {
        let mut out = String::with_capacity(html.len() + html.len() / 8);
        let mut rest = html;
        while let Some(at) = rest.find("href=\"") {
            let start = at + "href=\"".len();
            let Some(len) = rest[start..].find('"') else {
                break;
            };
            out.push_str(&rest[..start]);
            let value = &rest[start..start + len];
            match self.number(&unescape(value)) {
                Some(n) => out.push_str(&escape(&target(n))),
                None => out.push_str(value),
            }
            rest = &rest[start + len..];
        }
        out.push_str(rest);
        out
    }
}

/// The http(s) targets of the `href` attributes of `html`, unescaped, in order.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split_once('"').map(|(v, _)| unescape(v)))
        .filter(|u| counted(u))
        .collect()
}

/// The entities mrml and our escaping write in attributes.
fn unescape(value: &str) -> String {
    if !value.contains('&') {
        return value.to_owned();
    }
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_links_outside_placeholders_are_rewritten() {
        let mut table = LinkTable::default();
        table.add("https://openstack.org/?a=1&b=2", "OpenStack", Some("openstack"));
        table.add("mailto:x@y.org", "OpenStack", None);
        table.add("https://x.org/{{unsubscribe_url}}", LAYOUT, None);
        table.add("#top", LAYOUT, None);
        assert_eq!(table.links.len(), 1);
        let html = r##"<a href="https://openstack.org/?a=1&amp;b=2">x</a> <a href="mailto:x@y.org">m</a> <a href="{{unsubscribe_url}}">u</a> <a href="#top">t</a>"##;
        let out = table.rewrite(html, |n| format!("https://s.org/r/2025-07/{n}/1/abc"));
        assert_eq!(
            out,
            r##"<a href="https://s.org/r/2025-07/1/1/abc">x</a> <a href="mailto:x@y.org">m</a> <a href="{{unsubscribe_url}}">u</a> <a href="#top">t</a>"##
        );
    }
}
