//! `newsletter preview ISSUE`: the issue as the email it will become.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use newsletter::compile::{GMAIL_CLIP_BYTES, Rendered};
use newsletter::config::Config;
use newsletter::diagnostic::{Severity, Warning};
use newsletter::issue;
use newsletter::preview::{self, Personalized};
use newsletter::recipients::Recipient;
use serde::Serialize;

use crate::Exit;
use crate::cli::{Format, PreviewArgs};

#[derive(Serialize)]
struct Summary<'a> {
    issue: &'a Path,
    subject: &'a str,
    preheader: Option<&'a str>,
    from: String,
    to: String,
    recipient_source: String,
    html_bytes: usize,
    sections: &'a [newsletter::compile::SectionSummary],
    files: Files,
    warnings: &'a [Warning],
}

#[derive(Serialize)]
struct Files {
    html: PathBuf,
    text: PathBuf,
    eml: PathBuf,
    /// The layout's output before mrml, to debug a layout or feed another MJML compiler.
    mjml: PathBuf,
}

pub fn run(config_path: Option<&Path>, quiet: bool, args: PreviewArgs) -> Result<Exit> {
    let config = super::load_config(config_path, quiet)?;
    let path = issue::find(&args.issue, &config.newsletters)?;
    let (recipient, source) = preview::recipient(&config, args.recipients.clone(), args.as_recipient.as_deref())?;
    let recipient = match &args.projects {
        Some(projects) => preview::choosing(&config, &path, recipient, projects)?,
        None => recipient,
    };
    if args.serve {
        return serve(config, path, recipient, args.port, args.open);
    }
    let Personalized { rendered, parts, eml } = preview::build(&config, &path, &recipient)?;

    let dir = config.out.join(&rendered.slug);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = Files {
        html: dir.join("email.html"),
        text: dir.join("email.txt"),
        eml: dir.join("email.eml"),
        mjml: dir.join("email.mjml"),
    };
    write(&files.html, parts.html.as_bytes())?;
    write(&files.text, parts.text.as_bytes())?;
    write(&files.eml, &eml)?;
    write(&files.mjml, rendered.mjml.as_bytes())?;

    let summary = Summary {
        issue: &path,
        subject: &parts.subject,
        preheader: rendered.preheader.as_deref(),
        from: format!("{} <{}>", config.from.name, config.from.address),
        to: match recipient.display_name() {
            Some(name) => format!("{name} <{}>", recipient.email),
            None => recipient.email.clone(),
        },
        recipient_source: source,
        html_bytes: parts.html.len(),
        sections: &rendered.sections,
        files,
        warnings: &rendered.warnings,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        Format::Text => print_text(&summary, &rendered, &parts.text, quiet)?,
    }
    if args.open {
        let html = std::fs::canonicalize(&summary.files.html)?;
        open_in_browser(&html.to_string_lossy())?;
    }
    Ok(Exit::Success)
}

/// `--serve`: renders on every change to the issue or the layouts until stopped.
fn serve(config: Config, path: PathBuf, recipient: Recipient, port: Option<u16>, open: bool) -> Result<Exit> {
    let port = port.unwrap_or(config.preview.port);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}: is another preview running? pass --port"))?;
    let address = listener.local_addr()?;
    println!(
        "Serving {} at http://{address}/ ; it reloads when the issue or {} changes. Ctrl-C to stop.",
        path.display(),
        config.layouts.display()
    );
    std::io::stdout().flush()?;
    if open {
        open_in_browser(&format!("http://{address}/"))?;
    }
    let watch = vec![path.clone(), config.layouts.clone()];
    preview::server::serve(
        listener,
        watch,
        move || Ok(preview::build(&config, &path, &recipient)?.page()),
        |line| eprintln!("{line}"),
    )
    .with_context(|| format!("the preview server on {address} stopped"))?;
    Ok(Exit::Success)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn print_text(s: &Summary<'_>, rendered: &Rendered, text: &str, quiet: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if !quiet {
        writeln!(out, "Subject:   {}", s.subject)?;
        writeln!(out, "Preheader: {}", s.preheader.unwrap_or("(none)"))?;
        writeln!(out, "From:      {}", s.from)?;
        writeln!(out, "To:        {} ({})", s.to, s.recipient_source)?;
        let kb = |b: usize| b as f64 / 1024.0;
        writeln!(
            out,
            "HTML:      {:.1} KB of {:.0} KB before Gmail clips",
            kb(s.html_bytes),
            kb(GMAIL_CLIP_BYTES)
        )?;
        writeln!(out, "Sections:")?;
        for sec in &rendered.sections {
            let name = match (&sec.project, &sec.tagline) {
                (Some(_), Some(t)) => format!("{} [project] {t}", sec.title),
                (Some(_), None) => format!("{} [project]", sec.title),
                _ => sec.title.clone(),
            };
            let name: String = if name.chars().count() > 58 {
                name.chars().take(57).chain(['…']).collect()
            } else {
                name
            };
            writeln!(
                out,
                "  {name:<58} {:>3} items {:>3} links{}",
                sec.items,
                sec.links,
                if sec.images > 0 {
                    format!(" {:>2} images", sec.images)
                } else {
                    String::new()
                }
            )?;
        }
        writeln!(
            out,
            "Wrote:     {}, {}, {}, {}",
            s.files.html.display(),
            s.files.text.display(),
            s.files.eml.display(),
            s.files.mjml.display()
        )?;
        writeln!(out, "\n{:-^72}\n{text}{:-^72}", " text part ", "")?;
    }
    out.flush()?;
    let mut err = std::io::stderr().lock();
    // -q: errors only.
    let shown: Vec<_> = s
        .warnings
        .iter()
        .filter(|w| !quiet || w.kind.severity() == Severity::Error)
        .collect();
    for w in &shown {
        writeln!(err, "{}: {w}", w.kind.severity().label())?;
    }
    if !shown.is_empty() && !quiet {
        let errors = shown.iter().filter(|w| w.kind.severity() == Severity::Error).count();
        let mut tally = Vec::new();
        if errors > 0 {
            tally.push(newsletter::human::count(errors, "error"));
        }
        if shown.len() > errors {
            tally.push(newsletter::human::count(shown.len() - errors, "warning"));
        }
        writeln!(err, "{}", tally.join(", "))?;
    }
    Ok(())
}

/// Opens a file path or a URL with `$BROWSER`, as the convention has it: a command with its
/// arguments, `%s` standing for the target (else it comes last), several commands separated
/// by `:` tried in turn. Without it, the desktop's opener.
fn open_in_browser(target: &str) -> Result<()> {
    let default = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let commands: Vec<&str> = browser.as_deref().map_or(vec![default], |b| b.split(':').collect());
    let mut last = String::new();
    for command in commands {
        let mut words: Vec<String> = command.split_whitespace().map(|w| w.replace("%s", target)).collect();
        if !command.contains("%s") {
            words.push(target.to_owned());
        }
        let Some((program, args)) = words.split_first() else {
            continue;
        };
        match std::process::Command::new(program).args(args).status() {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => last = format!("`{}` failed ({status})", words.join(" ")),
            Err(e) => last = format!("cannot start `{program}`: {e}"),
        }
    }
    bail!("{last}; set $BROWSER to your browser (arguments allowed, %s for the file)")
}
