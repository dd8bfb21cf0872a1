//! The programs the tests run besides ours, and the one rule for a missing one: where
//! `scripts/test` installed them (it sets `SUITE_TOOLS=required`, and CI runs it) a
//! missing tool fails the test; elsewhere the test is skipped with one line naming the package.
//!
//! A test says what it needs first: `needs!(tools::SMTP_SINK, tools::CURL);`. Helpers reach a
//! program through [`program`], which fails loudly when a test forgot to say so.
//! `SUITE_TOOLS=audit` checks that every test says what it needs: a helper reaching a tool the
//! test did not name fails it. `SUITE_HIDE_TOOLS=curl,openssl` (or `all`) makes tools look
//! missing, to see the skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Tool {
    /// The program, as the skip line names it.
    pub program: &'static str,
    /// Where it comes from: a Debian package, or what scripts/test does to get it.
    pub package: &'static str,
    /// Where to look: the first that exists is used; a bare name is looked up in PATH.
    places: &'static [&'static str],
    /// What else it needs (root, a Python module), checked after it is found.
    usable: fn(&Path) -> bool,
}

fn always(_: &Path) -> bool {
    true
}

fn as_root(_: &Path) -> bool {
    super::is_root()
}

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub const SMTP_SINK: Tool = Tool {
    program: "smtp-sink",
    package: "postfix",
    places: &["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"],
    usable: always,
};
pub const DNSMASQ: Tool = Tool {
    program: "dnsmasq",
    package: "dnsmasq-base",
    places: &["/usr/sbin/dnsmasq"],
    usable: always,
};
/// util-linux's `script`: a terminal for a program that asks when it has one.
pub const SCRIPT: Tool = Tool {
    program: "script",
    package: "bsdutils",
    places: &["script"],
    usable: always,
};
pub const CURL: Tool = Tool {
    program: "curl",
    package: "curl",
    places: &["curl"],
    usable: always,
};
pub const OPENSSL: Tool = Tool {
    program: "openssl",
    package: "openssl",
    places: &["openssl"],
    usable: always,
};
pub const CHROMIUM: Tool = Tool {
    program: "chromium",
    package: "chromium",
    places: &["chromium"],
    usable: always,
};
pub const CHROMEDRIVER: Tool = Tool {
    program: "chromedriver",
    package: "chromium-driver",
    places: &["chromedriver"],
    usable: always,
};
pub const DOVECOT: Tool = Tool {
    program: "dovecot",
    package: "dovecot-imapd",
    places: &["/usr/sbin/dovecot", "/usr/bin/dovecot"],
    usable: always,
};
pub const STRACE: Tool = Tool {
    program: "strace",
    package: "strace",
    places: &["strace"],
    usable: always,
};
pub const SQLITE3: Tool = Tool {
    program: "sqlite3",
    package: "sqlite3",
    places: &["sqlite3"],
    usable: always,
};
pub const SPAMASSASSIN: Tool = Tool {
    program: "spamassassin",
    package: "spamassassin",
    places: &["spamassassin"],
    usable: always,
};
pub const PYTHON3: Tool = Tool {
    program: "python3",
    package: "python3",
    places: &["python3"],
    usable: always,
};
pub const DKIMPY: Tool = Tool {
    program: "python3 (dkimpy, pynacl)",
    package: "pip dkimpy pynacl",
    places: &["python3"],
    usable: |_| python_has("dkim, nacl"),
};
pub const PYSPF: Tool = Tool {
    program: "python3 (pyspf, dnspython)",
    package: "pip pyspf dnspython",
    places: &["python3"],
    usable: |_| python_has("spf, dns.resolver"),
};
pub const AIOSMTPD: Tool = Tool {
    program: "python3 (aiosmtpd)",
    package: "pip aiosmtpd",
    places: &["python3"],
    usable: |_| python_has("aiosmtpd"),
};
pub const PARSEDMARC: Tool = Tool {
    program: "python3 (parsedmarc)",
    package: "pip parsedmarc",
    places: &["python3"],
    usable: |_| python_has("parsedmarc"),
};
pub const MOTO: Tool = Tool {
    program: "moto_server",
    package: "pip moto[server]",
    places: &["moto_server"],
    usable: always,
};
pub const AXE: Tool = Tool {
    program: "axe-core",
    package: "npm axe-core (into target/axe)",
    places: &["target/axe/node_modules/axe-core/axe.min.js"],
    usable: always,
};
/// A Postfix instance of our own: Debian's postfix, run as root.
pub const POSTFIX: Tool = Tool {
    program: "postfix (as root)",
    package: "postfix",
    places: &["/usr/sbin/postfix"],
    usable: as_root,
};
/// The lab's MTAs, unpacked by scripts/test (as root) because their packages conflict with
/// Postfix's.
pub const EXIM: Tool = Tool {
    program: "exim4 (as root)",
    package: "exim4-daemon-light, unpacked into target/lab-mtas",
    places: &["target/lab-mtas/root/usr/sbin/exim4"],
    usable: as_root,
};
pub const OPENSMTPD: Tool = Tool {
    program: "smtpd (as root)",
    package: "opensmtpd, unpacked into target/lab-mtas and linked at /usr/libexec/opensmtpd",
    places: &["target/lab-mtas/root/usr/sbin/smtpd"],
    usable: |_| super::is_root() && Path::new("/usr/libexec/opensmtpd").exists(),
};
pub const SENDMAIL: Tool = Tool {
    program: "sendmail (as root)",
    package: "sendmail-bin and sendmail-cf, unpacked into target/lab-mtas, and m4",
    places: &["target/lab-mtas/root/usr/libexec/sendmail/sendmail"],
    usable: |_| {
        super::is_root()
            && super::root()
                .join("target/lab-mtas/root/usr/share/sendmail/cf/m4/cf.m4")
                .exists()
            && find_in_path("m4").is_some()
    },
};

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn hidden(tool: &Tool) -> bool {
    std::env::var("SUITE_HIDE_TOOLS")
        .is_ok_and(|h| h == "all" || h.split(',').any(|p| tool.program.starts_with(p.trim())))
}

impl Tool {
    /// Where the tool is, when it is there and usable.
    pub fn find(&self) -> Option<PathBuf> {
        if hidden(self) {
            return None;
        }
        let found = self.places.iter().find_map(|place| {
            if place.starts_with('/') {
                Some(PathBuf::from(place)).filter(|p| p.exists())
            } else if place.contains('/') {
                Some(super::root().join(place)).filter(|p| p.exists())
            } else {
                find_in_path(place)
            }
        })?;
        (self.usable)(&found).then_some(found)
    }

    fn described(&self) -> String {
        format!("{} ({})", self.program, self.package)
    }
}

/// Whether scripts/test installed everything, so that a missing tool is a failure.
fn required() -> bool {
    std::env::var("SUITE_TOOLS").is_ok_and(|v| v == "required")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

fn audit() -> bool {
    std::env::var("SUITE_TOOLS").is_ok_and(|v| v == "audit")
}

thread_local! {
    /// The tools the running test named (audit only).
    static NAMED: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// True when every tool is there; otherwise fails (where they must be) or says on one line
/// that the test is skipped and why.
pub fn available(tools: &[&'static Tool]) -> bool {
    if audit() {
        NAMED.with(|n| n.borrow_mut().extend(tools.iter().map(|t| t.program)));
    }
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| t.find().is_none())
        .map(|t| t.described())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let line = format!("missing {}: scripts/test installs it", missing.join(", "));
    assert!(!required(), "{line}");
    // Past the test harness's capture, so the skip shows in a plain `cargo test` too.
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "skipped {test}: {line}");
    false
}

/// The tool's path, for a helper about to run it. A test that did not say `needs!` for it
/// fails here with the package to install.
pub fn program(tool: &Tool) -> PathBuf {
    // A thread the test started has no name and its own (empty) list: only the test's own
    // thread is audited.
    let named =
        !audit() || std::thread::current().name().is_none() || NAMED.with(|n| n.borrow().contains(&tool.program));
    assert!(named, "the test should say needs!({})", tool.program);
    tool.find().unwrap_or_else(|| {
        panic!(
            "missing {}: scripts/test installs it (and the test should say needs!({}))",
            tool.described(),
            tool.program
        )
    })
}

/// Returns from the test, skipped, unless every tool named is there (see the module's rule).
macro_rules! needs {
    ($($tool:expr),+ $(,)?) => {
        if !$crate::support::tools::available(&[$(&$tool),+]) {
            return;
        }
    };
}
