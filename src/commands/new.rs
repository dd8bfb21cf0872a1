//! `newsletter new YYYY-MM`: scaffold an issue with the usual sections.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use newsletter::layout::Layout;

use crate::Exit;
use crate::cli::NewArgs;

pub fn run(config_path: Option<&Path>, quiet: bool, args: NewArgs) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let month = NaiveDate::parse_from_str(&format!("{}-01", args.month), "%Y-%m-%d")
        .ok()
        .filter(|_| args.month.len() == 7)
        .with_context(|| format!("`{}` is not a month: write it as YYYY-MM, e.g. 2025-08", args.month))?;
    let path = config.newsletters.join(format!("{}.md", args.month));
    if path.exists() {
        bail!("{} already exists: edit it, or remove it to start over", path.display());
    }
    let layout = Layout::load(None, &config.layouts)?;
    // Whoever writes it: --author, else the name git knows this person by.
    let author = args.author.clone().or_else(git_user_name).unwrap_or_default();
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
    Ok(Exit::Success)
}

fn git_user_name() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "user.name"])
        .output()
        .ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !name.is_empty()).then_some(name)
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
  description: "TODO: one sentence that inboxes show next to the subject."
# Uncomment to let `newsletter send` from cron deliver the issue at that time:
# send_at: {date}T15:00:00Z
---
<!-- The lead: a hero image with a description, then an introduction. Comments like this one
     are not part of the email. -->

TODO: write the introduction.

# OpenInfra Foundation News

* TODO: a news item with [a link](https://openinfra.org/).
"#,
        author = serde_json::to_string(author).unwrap_or_default(),
        date = month.format("%Y-%m-%d"),
    );
    for project in &layout.registry.projects {
        let heading = match &project.tagline {
            Some(t) => format!("{}: {t}", project.name),
            None => project.name.clone(),
        };
        let _ = write!(s, "\n# {heading}\n\n* TODO: {} news.\n", project.name);
    }
    s.push_str(
        "\n# **Upcoming OpenInfra and Community Events**\n\n* TODO: date | [Event](https://openinfra.org/events/)\n",
    );
    s
}
