//! `newsletter new YYYY-MM`: scaffold an issue with the usual sections.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use newsletter::config::Config;
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
    let text = scaffold(month, &author, &layout, &config);
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

fn scaffold(month: NaiveDate, author: &str, layout: &Layout, config: &Config) -> String {
    let label = month.format("%B %Y");
    let title = serde_json::to_string(&format!("{}: {label}", config.archive.title)).unwrap_or_default();
    // The foundation's website reads its own blog fields; another site gets the plain ones.
    let (website, news, events) = if config.sends_as_openinfra() {
        let slug = month.format("%B-%Y").to_string().to_lowercase();
        (
            format!(
                "templateKey: blog-post\ncategory:\n  - value: category-A7fnZYrE1\n    label: News & Announcements\nhidePost: true\nseo:\n  url: https://openinfra.dev/blog/openinfra-newsletter-{slug}\n  title: {title}\n"
            ),
            (
                "OpenInfra Foundation News".to_owned(),
                "https://openinfra.org/".to_owned(),
            ),
            (
                "Upcoming OpenInfra and Community Events".to_owned(),
                "https://openinfra.org/events/".to_owned(),
            ),
        )
    } else {
        let site = config.site_origin.as_deref().unwrap_or("https://example.org");
        (
            format!("seo:\n  # The issue's page on your website, if it has one:\n  # url: {site}/...\n"),
            (format!("News from {}", config.from.name), site.to_owned()),
            ("Upcoming Events".to_owned(), site.to_owned()),
        )
    };
    let mut s = format!(
        r#"---
title: {title}
author: {author}
date: {date}T16:00:00.000Z
{website}  description: "TODO: one sentence that inboxes show next to the subject."
# Uncomment to let `newsletter send` from cron deliver the issue at that time:
# send_at: {date}T15:00:00Z
---
<!-- The lead: a hero image with a description, then an introduction. Comments like this one
     are not part of the email. -->

TODO: write the introduction.

# {news}

* TODO: a news item with [a link]({news_link}).
"#,
        author = serde_json::to_string(author).unwrap_or_default(),
        date = month.format("%Y-%m-%d"),
        news = news.0,
        news_link = news.1,
    );
    for project in &layout.registry.projects {
        let heading = match &project.tagline {
            Some(t) => format!("{}: {t}", project.name),
            None => project.name.clone(),
        };
        let _ = write!(s, "\n# {heading}\n\n* TODO: {} news.\n", project.name);
    }
    let _ = write!(s, "\n# **{}**\n\n* TODO: date | [Event]({})\n", events.0, events.1);
    s
}
