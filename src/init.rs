//! `newsletter init`: a project of one's own. The defaults are the OpenInfra Foundation's;
//! this writes the configuration, the project registry and the folders with the name, sender,
//! postal address, site and projects of whoever runs it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::config::{Config, DEFAULT_PATH};

/// Who sends the newsletter, and what it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The newsletter's name: "Kata Containers News".
    pub newsletter: String,
    /// Who sends it, as From shows it: "Kata Containers community".
    pub sender: String,
    pub from: String,
    /// The postal address every issue's footer must carry (CAN-SPAM, CASL).
    pub postal: String,
    /// The website, `https://katacontainers.io`: `serve`'s pages sit under `/newsletter/`.
    pub site: String,
    /// The projects whose news sections get a colour band and that readers may choose.
    pub projects: Vec<String>,
}

/// What `init` asks for, in order, with the `--flag` that gives it.
pub const QUESTIONS: &[(&str, &str)] = &[
    ("name", "The newsletter's name (e.g. Kata Containers News)"),
    (
        "sender",
        "Who sends it, as the From line shows (e.g. Kata Containers community)",
    ),
    ("from", "The From address (e.g. news@katacontainers.io)"),
    (
        "postal-address",
        "The postal address for the footer (required by anti-spam laws)",
    ),
    ("site", "The website (e.g. https://katacontainers.io)"),
    (
        "projects",
        "Projects with sections of their own, comma-separated (empty for none)",
    ),
];

/// The registry's file in the project: a folder named like the built-in layout overrides it
/// file by file, so the rest of the layout stays the bundled one.
const REGISTRY: &str = "layouts/inside-openinfra/projects.yaml";

/// Colours of the projects' bands, in turn: dark enough for white text (WCAG AA).
const PALETTE: &[&str] = &["#1a4e8a", "#b8451e", "#0b6e5f", "#6b3fa0", "#8a5a00", "#a3174a"];

impl Identity {
    /// Checks what was given; the message names the flag and what to write.
    pub fn validate(&self) -> Result<()> {
        for (flag, value) in [
            ("name", &self.newsletter),
            ("sender", &self.sender),
            ("from", &self.from),
            ("postal-address", &self.postal),
            ("site", &self.site),
        ] {
            if value.trim().is_empty() {
                bail!("--{flag} is empty: {}", question(flag));
            }
            if value.chars().any(char::is_control) {
                bail!("--{flag} holds a control character (a line break?): write it on one line");
            }
        }
        crate::recipients::normalize_address(&self.from)
            .map_err(|why| anyhow::anyhow!("--from `{}`: {why}", self.from))?;
        let host = crate::config::identity::url_host(&self.site);
        if !self.site.starts_with("https://") && !host.as_deref().is_some_and(crate::config::identity::is_local_host) {
            bail!(
                "--site `{}`: write the website as https://HOST (plain http only for a local trial on localhost or a .test host)",
                self.site
            );
        }
        if host.is_none() {
            bail!("--site `{}` has no host: write it as https://HOST", self.site);
        }
        Ok(())
    }

    fn site(&self) -> &str {
        self.site.trim_end_matches('/')
    }

    /// `newsletter.yaml`: only what is theirs; every other key keeps its documented default.
    fn config(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let domain = crate::address::domain(&self.from);
        let site = self.site();
        format!(
            r#"# The configuration of {name}, written by `newsletter init`. Keys not written here
# keep their defaults (newsletter.example.yaml in newsletter's source lists them all); any
# key can also be set from the environment: smtp.host -> NEWSLETTER_SMTP_HOST. Secrets
# (passwords, keys) never go here: they come from NEWSLETTER_* variables or *_FILE files.
# `newsletter doctor` checks all of it, the relay and the DNS records included.

from:
  name: {sender}
  address: {from}
# The List-Id header: the name, and an id that stays the same for every issue.
list_id: {list_id}
# Printed in every footer (CAN-SPAM and CASL require a postal address).
address: {postal}
# Site-relative links in issues (/img/x.png) resolve against it.
site_origin: {site_q}
recipients: recipients.csv
test_recipients: []

unsubscribe:
  # `newsletter serve` answers here, behind your HTTPS proxy (nginx, Caddy): the one-click
  # unsubscribe; sign-up, confirmation and preferences sit beside it.
  url: {unsubscribe}
  # Mail asking to leave; deliver it to the mailbox `newsletter bounces` reads.
  mailto: {mailto}

archive:
  # The issues on the web, served by `newsletter serve`; "View in browser" points here.
  url: {archive}
  title: {name}

subscribe:
  forms:
    # The consent wording of serve's sign-up form, stored with every confirmation.
    newsletter: {consent}

# The relay that sends: its host and login (the password in NEWSLETTER_SMTP_PASSWORD).
smtp:
  host: null
  port: 587
  username: null
"#,
            name = q(&self.newsletter),
            sender = q(&self.sender),
            from = q(&self.from),
            list_id = q(&format!("{} <newsletter.{domain}>", self.newsletter)),
            postal = q(&self.postal),
            site_q = q(site),
            unsubscribe = q(&format!("{site}/newsletter/unsubscribe")),
            mailto = q(&format!("newsletter-unsubscribe@{domain}")),
            archive = q(&format!("{site}/newsletter/archive")),
            consent = q(&format!(
                "Yes, send me {}, the monthly newsletter of {}, by email. I can unsubscribe at any time with the link in every issue.",
                self.newsletter, self.sender
            )),
        )
    }

    /// `projects.yaml` with the projects named, in the order given.
    fn registry(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut text = String::from(
            "# The projects whose news sections get a colour band, their name and tagline. A `# Heading`\n\
             # whose text before the first `:` matches a name or alias (any case) is that project's\n\
             # section; readers choose projects by id on the preference page. Keys: id, name, aliases,\n\
             # tagline, color, logo (https:// URL, at most 120x40 px), url.\n\n\
             # Accent for sections that are not projects.\naccent: \"#1a4e8a\"\n\n",
        );
        if self.projects.is_empty() {
            text.push_str("projects: []\n");
        } else {
            text.push_str("projects:\n");
        }
        for (i, name) in self.projects.iter().enumerate() {
            text.push_str(&format!(
                "  - id: {}\n    name: {}\n    color: \"{}\"\n",
                slug(name),
                q(name),
                PALETTE[i % PALETTE.len()]
            ));
        }
        text
    }

    /// The files of a new project: path relative to its folder, and text.
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        vec![
            (DEFAULT_PATH.into(), self.config()),
            (REGISTRY.into(), self.registry()),
            ("recipients.csv".into(), "email,first_name,projects\n".into()),
            (
                ".gitignore".into(),
                "# What newsletter makes as it runs, the secrets, and the readers' addresses.\n/out/\n/state/\nsecrets.env\nrecipients.csv\n".into(),
            ),
            ("newsletters/.gitkeep".into(), String::new()),
        ]
    }
}

/// The question of a flag of [`QUESTIONS`].
pub fn question(flag: &str) -> &'static str {
    QUESTIONS.iter().find(|(f, _)| *f == flag).map_or("", |(_, q)| q)
}

/// A project id from its name: `Kata Containers` -> `kata-containers`.
fn slug(name: &str) -> String {
    let mut id = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') && !id.is_empty() {
            id.push('-');
        }
    }
    id.trim_end_matches('-').to_owned()
}

/// Writes a new project into `dir` (made when missing), refusing to touch one that has a
/// configuration already, and loads what it wrote as every command will. Returns the files.
pub fn write(dir: &Path, identity: &Identity) -> Result<Vec<PathBuf>> {
    identity.validate()?;
    let mut ids: Vec<String> = identity.projects.iter().map(|p| slug(p)).collect();
    if let Some(empty) = identity.projects.iter().zip(&ids).find(|(_, id)| id.is_empty()) {
        bail!("--projects: `{}` has no letters or digits to make an id of", empty.0);
    }
    ids.sort();
    if let Some(twice) = ids.windows(2).find(|w| w[0] == w[1]) {
        bail!("--projects names `{}` twice: each project once", twice[0]);
    }
    let files = identity.files();
    let taken: Vec<String> = files
        .iter()
        .map(|(p, _)| dir.join(p))
        .filter(|p| p.exists() && !p.ends_with(".gitkeep"))
        .map(|p| p.display().to_string())
        .collect();
    if !taken.is_empty() {
        bail!(
            "{} already exist{}: `newsletter init` starts a project and changes none; pick an empty folder (`newsletter init DIR`)",
            taken.join(", "),
            if taken.len() == 1 { "s" } else { "" }
        );
    }
    let written = crate::layout::write_files(dir, files)?;
    let config = dir.join(DEFAULT_PATH);
    Config::load(Some(&config), std::iter::empty()).context("the configuration init wrote does not load (a bug)")?;
    crate::layout::Layout::load(None, &dir.join("layouts")).context("the layout init wrote does not load (a bug)")?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kata() -> Identity {
        Identity {
            newsletter: "Kata \"Monthly\"".into(),
            sender: "Kata Containers community".into(),
            from: "news@katacontainers.io".into(),
            postal: "1 Main St, Austin, TX 78701, USA".into(),
            site: "https://katacontainers.io/".into(),
            projects: vec!["Kata Containers".into(), "Confidential  Containers!".into()],
        }
    }

    #[test]
    fn a_project_of_ones_own_loads_with_its_own_identity() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &kata()).unwrap();
        let config = Config::load(Some(&dir.path().join(DEFAULT_PATH)), std::iter::empty()).unwrap();
        assert_eq!(config.from.address, "news@katacontainers.io");
        assert_eq!(config.list_id, "Kata \"Monthly\" <newsletter.katacontainers.io>");
        assert_eq!(
            config.unsubscribe.url,
            "https://katacontainers.io/newsletter/unsubscribe"
        );
        assert_eq!(config.borrowed_identity(None), None);
        let layout = crate::layout::Layout::load(None, &dir.path().join("layouts")).unwrap();
        let ids: Vec<&str> = layout.registry.projects.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["kata-containers", "confidential-containers"]);

        let again = write(dir.path(), &kata()).unwrap_err().to_string();
        assert!(
            again.contains("newsletter.yaml") && again.contains("already exist"),
            "{again}"
        );
    }

    #[test]
    fn what_cannot_work_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                Identity {
                    site: "http://katacontainers.io".into(),
                    ..kata()
                },
                "--site",
            ),
            (
                Identity {
                    from: "news at kata".into(),
                    ..kata()
                },
                "--from",
            ),
            (
                Identity {
                    postal: " ".into(),
                    ..kata()
                },
                "--postal-address is empty",
            ),
            (
                Identity {
                    sender: "a\nb".into(),
                    ..kata()
                },
                "control character",
            ),
            (
                Identity {
                    projects: vec!["Zuul".into(), "zuul".into()],
                    ..kata()
                },
                "twice",
            ),
        ];
        for (identity, expected) in cases {
            let err = write(dir.path(), &identity).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let local = Identity {
            site: "http://127.0.0.1:8026".into(),
            ..kata()
        };
        assert!(local.validate().is_ok());
    }
}
