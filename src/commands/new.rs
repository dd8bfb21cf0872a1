//! `newsletter new YYYY-MM`: scaffold an issue with the usual sections.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use newsletter::issue::{self, Issue};
use newsletter::layout::Layout;

use crate::Outcome;
use crate::cli::NewArgs;

pub fn run(config_path: Option<&Path>, quiet: bool, args: NewArgs) -> Result<Outcome> {
    let config = super::load_config(config_path)?;
    let month = NaiveDate::parse_from_str(&format!("{}-01", args.month), "%Y-%m-%d")
        .ok()
        .filter(|_| args.month.len() == 7)
        .with_context(|| format!("`{}` is not a month: write it as YYYY-MM, e.g. 2025-08", args.month))?;
    let path = config.newsletters.join(format!("{}.md", args.month));
    if path.exists() {
        bail!("{} already exists: edit it, or remove it to start over", path.display());
    }
    let layout = Layout::load(None, &config.layouts)?;
    // Carry the author over from the latest issue, as the next one is usually by the same person.
    let author = issue::list(&config.newsletters)
        .last()
        .and_then(|(_, p)| Issue::load(p).ok())
        .and_then(|i| i.front.author)
        .unwrap_or_default();
    let text = scaffold(month, &author, &layout);
    std::fs::create_dir_all(&config.newsletters)
        .with_context(|| format!("cannot create {}", config.newsletters.display()))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if !quiet {
        println!(
            "Created {}; preview it with `newsletter preview {}`",
            path.display(),
            args.month
        );
    }
    Ok(Outcome::Success)
}

fn scaffold(month: NaiveDate, author: &str, layout: &Layout) -> String {
    let label = month.format("%B %Y");
    let slug = month.format("%B-%Y").to_string().to_lowercase();
    let mut s = format!(
        r#"---
templateKey: blog-post
title: "Inside Open Infrastructure: {label}"
author: {author}
date: {date}T16:00:00.000Z
category:
  - value: category-A7fnZYrE1
    label: News & Announcements
hidePost: true
seo:
  url: https://openinfra.dev/blog/openinfra-newsletter-{slug}
  title: "Inside Open Infrastructure: {label}"
  description: One sentence that inboxes show next to the subject.
# Uncomment to let `newsletter send` from cron deliver the issue at that time:
# send_at: {date}T15:00:00Z
---
<!-- The lead: a hero image with a description, then an introduction. Comments like this one
     are not part of the email. -->

Write the introduction here.

# OpenInfra Foundation News

* A news item with [a link](https://openinfra.org/).
"#,
        author = if author.is_empty() {
            "\"\"".to_owned()
        } else {
            author.to_owned()
        },
        date = month.format("%Y-%m-%d"),
    );
    for project in &layout.registry.projects {
        let heading = match &project.tagline {
            Some(t) => format!("{}: {t}", project.name),
            None => project.name.clone(),
        };
        let _ = write!(s, "\n# {heading}\n\n* {} news.\n", project.name);
    }
    s.push_str("\n# **Upcoming OpenInfra and Community Events**\n\n* Date | [Event](https://openinfra.org/events/)\n");
    s
}
