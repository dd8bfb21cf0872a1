//! `newsletter check`: what must be right before an issue goes out. Offline, the compose
//! warnings with a severity, plus the template variables against the recipient list; online,
//! every distinct link and image ([`links`]), with results cached ([`cache`]).

pub mod cache;
pub mod links;
pub mod result;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{Path as HbsPath, PathSeg};
use serde::Serialize;

use crate::compile::Rendered;
use crate::config::Config;
use crate::diagnostic::{Kind, Severity, Warning};
use crate::issue::Issue;
use crate::recipients::Recipients;
use crate::sections::Sections;

/// A compose warning with the severity `check` and `send` give it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    #[serde(flatten)]
    pub warning: Warning,
}

/// The offline findings, errors first, each group in file order.
pub fn offline(issue: &Issue, rendered: &Rendered, config: &Config, csv_header: Option<&[String]>) -> Vec<Finding> {
    let mut warnings = rendered.warnings.clone();
    warnings.extend(borrowed_identity(issue, config));
    if let Some(header) = csv_header {
        warnings.extend(unknown_variables(issue, rendered, header));
    }
    let mut findings: Vec<Finding> = warnings
        .into_iter()
        .map(|warning| Finding {
            severity: warning.kind.severity(),
            warning,
        })
        .collect();
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings
}

/// A project of another organisation that still sends as the OpenInfra Foundation.
fn borrowed_identity(issue: &Issue, config: &Config) -> Option<Warning> {
    let (domain, kept) = config.borrowed_identity(issue.web_url())?;
    let file = config
        .file
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_PATH.into());
    Some(Warning::new(
        Kind::BorrowedIdentity,
        &file,
        None,
        format!(
            "this project's links are at {domain}, but it still sends as the OpenInfra Foundation: {} keep OpenInfra's values; set your own in {} (`newsletter init` writes a project of your own)",
            kept.join(", "),
            file.display()
        ),
    ))
}

pub fn errors(findings: &[Finding]) -> usize {
    findings.iter().filter(|f| f.severity == Severity::Error).count()
}

/// Values every recipient has besides the CSV's columns.
const BUILT_IN: &[&str] = &["email", "unsubscribe_url", "preferences_url", "web_url"];

/// Variables the personalized templates use that the recipient list has no column for:
/// in strict mode each would make every recipient fail.
/// The recipient fields the issue's templates use (not the built-in ones).
pub fn template_fields(rendered: &Rendered) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for source in [&rendered.html, &rendered.text, &rendered.subject] {
        // A template that does not parse fails at `send` with its own error.
        if let Ok(template) = Template::compile(source) {
            collect_variables(&template, &mut used);
        }
    }
    used.retain(|v| !BUILT_IN.contains(&v.as_str()));
    used
}

fn unknown_variables(issue: &Issue, rendered: &Rendered, header: &[String]) -> Vec<Warning> {
    let used = template_fields(rendered);
    let known = |v: &str| header.iter().any(|h| h == v);
    let source = std::fs::read_to_string(&issue.path).unwrap_or_default();
    used.into_iter()
        .filter(|v| !known(v))
        .map(|v| {
            let line = source
                .lines()
                .position(|l| l.contains("{{") && l.contains(v.as_str()))
                .map(|i| i + 1);
            Warning::new(
                Kind::UnknownTemplateVariable,
                &issue.path,
                line,
                format!(
                    "{{{{{v}}}}} is not a column of the recipient list (columns: {}){}: add the column or remove the variable",
                    header.join(", "),
                    crate::suggest::did_you_mean(&v, header.iter().map(String::as_str).chain(BUILT_IN.iter().copied()))
                ),
            )
        })
        .collect()
}

fn collect_variables(template: &Template, out: &mut BTreeSet<String>) {
    for element in &template.elements {
        match element {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => helper_variables(h, out),
            TemplateElement::HelperBlock(h) => {
                helper_variables(h, out);
                // Inside `each` and `with` names refer to the inner value, not to the recipient.
                let scoped = matches!(&h.name, Parameter::Name(n) if n == "each" || n == "with");
                if !scoped {
                    for inner in [&h.template, &h.inverse].into_iter().flatten() {
                        collect_variables(inner, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn helper_variables(h: &HelperTemplate, out: &mut BTreeSet<String>) {
    let params = std::iter::once(&h.name).chain(&h.params).chain(h.hash.values());
    for p in params {
        match p {
            Parameter::Path(HbsPath::Relative((segs, _))) => {
                if let Some(PathSeg::Named(name)) = segs.first()
                    && name != "this"
                {
                    out.insert(name.clone());
                }
            }
            Parameter::Subexpression(sub) => {
                if let TemplateElement::Expression(inner) = sub.element.as_ref() {
                    helper_variables(inner, out);
                }
            }
            _ => {}
        }
    }
}

/// Where a link or image appears.
#[derive(Debug, Clone, Serialize)]
pub struct Use {
    pub section: String,
    pub text: String,
    pub line: usize,
}

/// A distinct URL to check online, with every place it is used.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub url: String,
    /// Used as an image somewhere: the answer must be an image.
    pub image: bool,
    pub uses: Vec<Use>,
}

/// The http(s) links and images of an issue, each URL once. Other schemes are checked offline
/// (`mailto:` syntax) or cannot be checked (`tel:`).
pub fn targets(sections: &Sections) -> Vec<Target> {
    let mut by_url: BTreeMap<&str, Target> = BTreeMap::new();
    let mut order = Vec::new();
    let contents = sections
        .lead
        .iter()
        .map(|c| ("Introduction", c))
        .chain(sections.sections.iter().map(|s| (s.title.as_str(), &s.content)));
    for (section, content) in contents {
        let all = content
            .links
            .iter()
            .map(|l| (l, false))
            .chain(content.images.iter().map(|l| (l, true)));
        for (link, image) in all {
            if !is_web(&link.url) {
                continue;
            }
            let target = by_url.entry(&link.url).or_insert_with(|| {
                order.push(link.url.as_str());
                Target {
                    url: link.url.clone(),
                    image: false,
                    uses: Vec::new(),
                }
            });
            target.image |= image;
            target.uses.push(Use {
                section: section.to_owned(),
                text: link.text.clone(),
                line: link.line,
            });
        }
    }
    order.into_iter().filter_map(|u| by_url.remove(u)).collect()
}

fn is_web(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// The columns of the recipient list, when there is one to compare the issue's variables with.
pub fn csv_header(config: &Config, explicit: Option<&Path>) -> Result<Option<Vec<String>>> {
    let Some((list, _)) = crate::recipients::list_to_look_at(&config.recipients, explicit) else {
        return Ok(None);
    };
    Ok(Some(Recipients::open(&list)?.headers().to_vec()))
}

/// Every link and image of `targets` asked online (results younger than `check.cache_for`
/// reused, unless `refresh`), in the order of `targets`.
pub fn online(config: &Config, targets: &[Target], refresh: bool) -> Result<Vec<links::LinkResult>> {
    let cache = cache::Cache::open(&config.ledger, config.check.cache_for)?;
    let checker = std::sync::Arc::new(links::Checker::new(&config.check)?);
    Ok(crate::runtime()?.block_on(checker.check_all(targets, Some(&cache), refresh)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(source: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        collect_variables(&Template::compile(source).unwrap(), &mut out);
        out.into_iter().collect()
    }

    #[test]
    fn variables_of_expressions_helpers_and_blocks() {
        assert_eq!(
            vars("Hi {{first_name}}, {{#if nickname}}{{nickname}}{{else}}{{ org }}{{/if}} {{{raw}}}"),
            ["first_name", "nickname", "org", "raw"]
        );
        assert_eq!(vars("{{#each items}}{{name}}{{/each}}"), ["items"]);
        assert_eq!(vars("{{! a comment {{x}} }} {{@index}} {{this}}"), Vec::<String>::new());
    }
}
