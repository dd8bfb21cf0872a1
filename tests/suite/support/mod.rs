//! Real SMTP servers for the delivery tests: Postfix's smtp-sink, and a small scriptable
//! server for faults.

pub mod aggregate;
pub mod dns;
pub mod dovecot;
pub mod http;
pub mod lab;
pub mod mta;
pub mod postfix;
pub mod script;
pub mod serve;
pub mod smtpd;
#[macro_use]
pub mod tools;
pub mod webdriver;

use std::collections::{HashMap, HashSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The unsubscribe secret of every test run: as long as `openssl rand -base64 32` makes.
pub const SECRET: &str = "q3J0mXr8VbYc1pLw9sT2nZa5KfHd7GuE4oRiQy6eNjA=";

use tempfile::TempDir;

pub use script::{Options, Reply, ScriptServer, Stage};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A copy of the checkout's layouts folder under `dir`, to change in a test; returns its path.
pub fn copy_layouts(dir: &Path) -> PathBuf {
    let layouts = dir.join("layouts");
    copy_tree(&root().join("layouts"), &layouts);
    layouts
}

/// A copy of the project as a clone has it (the issues, the layouts, the example list) in
/// `dir`/project: what the checkout itself holds besides (a `newsletter.yaml`, a
/// `recipients.csv` or a `state/` left by the README's trial) never reaches a test.
pub fn project_copy(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    if !project.exists() {
        copy_tree(&root().join("newsletters"), &project.join("newsletters"));
        copy_tree(&root().join("layouts"), &project.join("layouts"));
        std::fs::copy(
            root().join("recipients.example.csv"),
            project.join("recipients.example.csv"),
        )
        .unwrap();
    }
    project
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16) {
    wait_listening_or(port, String::new);
}

/// Waits for a server on `port`; if none comes, fails with `log()`, the server's own words
/// (a lab MTA that refuses to start says why in its log, not on the port).
pub fn wait_listening_or(port: u16, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port}; the server's log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Postfix's smtp-sink on a free loopback port, dumping each message into a folder.
pub struct Sink {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl Sink {
    pub fn start() -> Sink {
        Sink::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Sink {
        Sink::start_with(port, &[])
    }

    /// With smtp-sink's fault options, e.g. `-f MAIL` (5xx to every MAIL FROM).
    pub fn start_with(port: u16, faults: &[&str]) -> Sink {
        let dir = TempDir::new().unwrap();
        // smtp-sink drops to `nobody` when run as root, which must be able to write the dumps.
        Command::new("chmod").arg("777").arg(dir.path()).status().unwrap();
        let mut cmd = Command::new(tools::program(&tools::SMTP_SINK));
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .args(faults)
            .arg("-d")
            .arg(format!("{}/%M.", dir.path().display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .spawn()
            .unwrap();
        wait_listening(port);
        Sink { port, child, dir }
    }

    /// Every message received, as (envelope recipients, message text).
    pub fn messages(&self) -> Vec<(Vec<String>, String)> {
        let mut out = Vec::new();
        let dumps: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        // A dump smtp-sink still holds open is a message still arriving: it counts once complete.
        let writing = self.dumps_being_written();
        for path in dumps {
            if path.file_name().is_some_and(|name| writing.contains(name)) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let rcpts = text
                .lines()
                .filter_map(|l| l.strip_prefix("X-Rcpt-Args: "))
                .map(|a| {
                    a.trim()
                        .trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .collect();
            out.push((rcpts, text));
        }
        out
    }

    /// The names of the files smtp-sink has open (it keeps a dump open until the message's
    /// final dot); none once it has stopped.
    fn dumps_being_written(&self) -> HashSet<std::ffi::OsString> {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|fds| {
                fds.filter_map(|fd| {
                    std::fs::read_link(fd.ok()?.path())
                        .ok()?
                        .file_name()
                        .map(ToOwned::to_owned)
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// How many dumps exist (cheaper than reading them).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path()).unwrap().count()
    }

    /// How many messages each envelope recipient received.
    pub fn received(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (rcpts, _) in self.messages() {
            for r in rcpts {
                *counts.entry(r).or_default() += 1;
            }
        }
        counts
    }
}

impl Sink {
    /// Kills the server at once (SIGKILL), as a crashed relay: its dumps stay readable.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every complete message's envelope recipients (a dump cut short by a kill has no
    /// final MIME boundary and is not counted).
    pub fn delivered(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter(|(_, text)| text.trim_end().ends_with("--"))
            .flat_map(|(rcpts, _)| rcpts)
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A project folder for one test: a config pointing at `port`, a recipient list, and an
/// out folder; the issues and layouts are the checkout's.
pub struct Project {
    pub dir: TempDir,
}

/// An issue file for cron tests: the small issue with the given `send_at` (or none).
pub fn scheduled_issue(send_at: Option<&str>) -> String {
    let small = std::fs::read_to_string(root().join("tests/fixtures/small.md")).unwrap();
    match send_at {
        Some(t) => small.replacen("---\n", &format!("---\nsend_at: {t}\n"), 1),
        None => small,
    }
}

impl Project {
    pub fn new(port: u16, csv: &str, extra_config: &str) -> Project {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("recipients.csv"), csv).unwrap();
        let config = format!(
            "from: {{ name: OpenInfra Foundation, address: newsletter@openinfra.dev }}\n\
             recipients: {recipients}\n\
             newsletters: {newsletters}\n\
             layouts: {layouts}\n\
             out: {out}\n\
             ledger: {ledger}\n\
             smtp: {{ host: 127.0.0.1, port: {port}, security: none, timeout: 5s }}\n\
             {extra_config}",
            recipients = dir.path().join("recipients.csv").display(),
            newsletters = root().join("tests/fixtures").display(),
            layouts = root().join("layouts").display(),
            out = dir.path().join("out").display(),
            ledger = dir.path().join("state/newsletter.db").display(),
        );
        std::fs::write(dir.path().join("newsletter.yaml"), config).unwrap();
        Project { dir }
    }

    /// Gives the project its own newsletters folder holding `issues` (name, text).
    pub fn with_issues(self, issues: &[(&str, String)]) -> Project {
        let dir = self.dir.path().join("newsletters");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in issues {
            std::fs::write(dir.join(format!("{name}.md")), text).unwrap();
        }
        let config = self.dir.path().join("newsletter.yaml");
        let text = std::fs::read_to_string(&config).unwrap();
        let fixtures = format!("newsletters: {}", root().join("tests/fixtures").display());
        std::fs::write(
            &config,
            text.replace(&fixtures, &format!("newsletters: {}", dir.display())),
        )
        .unwrap();
        self
    }

    /// Replaces the `smtp:` settings (a YAML flow mapping such as `{ host: localhost, ... }`).
    pub fn with_smtp(self, smtp: &str) -> Project {
        let config = self.dir.path().join("newsletter.yaml");
        let text = std::fs::read_to_string(&config).unwrap();
        let text: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("smtp: ") {
                    format!("smtp: {smtp}")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&config, text.join("\n") + "\n").unwrap();
        self
    }

    pub fn write_csv(&self, csv: &str) {
        std::fs::write(self.dir.path().join("recipients.csv"), csv).unwrap();
    }

    /// Writes the ledger as the first release left it (tests/fixtures/ledger-release-0.sql);
    /// returns its path.
    pub fn write_release_0_ledger(&self) -> PathBuf {
        let db = self.dir.path().join("state/newsletter.db");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let sql = std::fs::read_to_string(root().join("tests/fixtures/ledger-release-0.sql")).unwrap();
        rusqlite::Connection::open(&db).unwrap().execute_batch(&sql).unwrap();
        db
    }

    /// `status ISSUE --format json` as a value.
    pub fn status(&self, issue: &str) -> serde_json::Value {
        let r = run(self.command().args(["status", issue, "--format", "json"]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    }

    /// Asserts that `issue` is partial (readers left) and that cron's next run resumes it.
    pub fn assert_cron_resumes(&self, issue: &str) -> serde_json::Value {
        let status = self.status(issue);
        assert_eq!(status["state"], "partial", "{status}");
        let next = status["next"].as_str().unwrap_or_default();
        assert!(next.contains("cron's next `newsletter send` resumes it"), "{status}");
        status
    }

    /// `email`'s unsubscribe token for `issue`, as `newsletter unsubscribe-url` gives it.
    pub fn unsubscribe_token(&self, email: &str, issue: &str) -> String {
        let r = run(self.command().args(["unsubscribe-url", email, "--issue", issue]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().split("token=").nth(1).unwrap().to_owned()
    }

    /// The binary with this project's configuration, as a plain process (for kill tests).
    pub fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("newsletter"));
        cmd.current_dir(self.dir.path())
            .env("NEWSLETTER_UNSUBSCRIBE_SECRET", SECRET)
            .env("SOURCE_DATE_EPOCH", "1751400000")
            .arg("--config")
            .arg(self.dir.path().join("newsletter.yaml"));
        cmd
    }

    pub fn command(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_command())
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut assert_cmd::Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `done` until it holds, for at most a minute (tests never sleep a fixed time).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `user0@example.org` ... with a first_name column.
pub fn csv(n: usize) -> String {
    let mut s = String::from("email,first_name\n");
    for i in 0..n {
        s.push_str(&format!("user{i}@example.org,User{i}\n"));
    }
    s
}

/// Decodes a quoted-printable body (soft line breaks and =XX escapes), to read it as a
/// mail client shows it.
pub fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header's value in a message as smtp-sink dumped it.
pub fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .map(str::trim)
}

/// An abuse report (ARF) about `rcpt`, whose returned message had `returned_id`.
pub fn arf(id: &str, rcpt: &str, returned_id: &str) -> String {
    format!(
        "From: feedback@fbl.example.net\nTo: fbl@openinfra.dev\nSubject: complaint\nMessage-ID: <{id}@fbl.example.net>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n\n--F\nContent-Type: text/plain\n\nA reader marked this as spam.\n\n--F\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\nOriginal-Rcpt-To: {rcpt}\n\n--F\nContent-Type: message/rfc822\n\nMessage-ID: {returned_id}\nTo: {rcpt}\nSubject: Small issue\n\nHello\n--F--\n"
    )
}

/// A maildir at `dir` holding `messages` (file name, text) in new/.
pub fn maildir(dir: &Path, messages: &[(&str, String)]) {
    std::fs::create_dir_all(dir.join("new")).unwrap();
    std::fs::create_dir_all(dir.join("cur")).unwrap();
    for (name, text) in messages {
        std::fs::write(dir.join("new").join(name), text).unwrap();
    }
}

/// Appends `text` to the mbox at `path` with Python's `mailbox` module: an mbox written by
/// someone else's code, "From " lines and quoting included.
pub fn python_mbox_add(path: &Path, text: &str) {
    use std::io::Write;
    let script = "import mailbox, sys\nbox = mailbox.mbox(sys.argv[1])\nbox.add(sys.stdin.read())\nbox.flush()\n";
    let mut child = std::process::Command::new(tools::program(&tools::PYTHON3))
        .args(["-c", script])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// The mailto: of List-Unsubscribe in the message `rcpt` received, as a mail client uses it:
/// the address and the subject, decoded. With `issue`, only that issue's message counts.
pub fn mailto_in_message(sink: &Sink, rcpt: &str, issue: Option<&str>) -> (String, String) {
    let (_, text) = sink
        .messages()
        .into_iter()
        .find(|(r, text)| {
            r[0] == rcpt
                && issue.is_none_or(|i| header(text, "Message-ID").is_some_and(|id| id.starts_with(&format!("<{i}."))))
        })
        .unwrap_or_else(|| panic!("no message to {rcpt}"));
    let unfolded = text.replace("\r\n ", " ").replace("\n ", " ");
    let value = header(&unfolded, "List-Unsubscribe").unwrap();
    let mailto = value.split("<mailto:").nth(1).unwrap().split('>').next().unwrap();
    let (address, query) = mailto.split_once('?').unwrap();
    let subject = query.strip_prefix("subject=").unwrap().replace("%20", " ");
    (address.to_owned(), subject)
}

/// The message as the server received it: without the lines smtp-sink puts before it (its
/// X-* lines and a folded Received: header), with CRLF line ends.
pub fn as_received(dump: &str) -> String {
    let mut lines = dump.lines().peekable();
    while let Some(line) = lines.peek() {
        let preamble = line.starts_with("X-")
            || line.starts_with("Received:")
            || (line.starts_with([' ', '\t']) && !line.trim().is_empty());
        if !preamble {
            break;
        }
        lines.next();
    }
    let mut out = lines.collect::<Vec<_>>().join("\r\n");
    out.push_str("\r\n");
    out
}

/// dkimpy's verdict on every signature of `files` (messages as received), with the DNS
/// records `newsletter dkim --format json` printed: its report, one line per signature.
pub fn dkimpy(dir: &Path, records: &serde_json::Value, files: &[PathBuf]) -> (bool, String) {
    let records_file = dir.join("records.json");
    std::fs::write(&records_file, records.to_string()).unwrap();
    let out = Command::new(tools::program(&tools::DKIMPY))
        .arg(root().join("tests/suite/support/dkim_verify.py"))
        .arg(&records_file)
        .args(files)
        .output()
        .expect("python3 with dkimpy: run scripts/test, which installs it");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), report + &String::from_utf8_lossy(&out.stderr))
}
