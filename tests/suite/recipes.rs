//! The README's recipes run as written: the crontab line in cron's environment, and the local
//! trial.

use crate::support;
use crate::support::tools;
use support::{Project, Sink, csv, scheduled_issue};

/// The README's crontab line, run as cron runs it: `sh -c`, an empty environment, a short PATH.
#[test]
fn the_readme_crontab_line_works_in_cron_s_environment() {
    needs!(tools::SMTP_SINK);
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("*/5 * * * * "))
        .expect("a crontab line in the README");
    let command = line.splitn(6, ' ').nth(5).unwrap();
    let sink = Sink::start();
    let project = Project::new(sink.port, &csv(3), "throttle: { rate: off }\n")
        .with_issues(&[("2025-06", scheduled_issue(Some("2025-06-01T09:00:00Z")))]);
    std::fs::write(
        project.dir.path().join("secrets.env"),
        format!("NEWSLETTER_UNSUBSCRIBE_SECRET={}\n", support::SECRET),
    )
    .unwrap();
    let command = command
        .replace("/srv/newsletter", &project.dir.path().display().to_string())
        .replace(
            "/usr/local/bin/newsletter",
            &assert_cmd::cargo::cargo_bin("newsletter").display().to_string(),
        );
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&command)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SHELL", "/bin/sh")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sink.count(), 3);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("2025-06: Sent 3 of 3"));
}

/// The README's "Try it on this machine", run as written: both of its shell blocks in one
/// shell, in a scratch copy of the clone, with free ports and a scratch sink folder.
#[test]
fn the_readme_local_recipe_works_as_written() {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let section = readme
        .split("## Try it on this machine")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the section in the README");
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "{section}");
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("sink");
    let copy = |from: &str| {
        let to = dir.path().join(from);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(support::root().join(from), to).unwrap();
    };
    copy("recipients.example.csv");
    copy("newsletters/2025-07.md");
    let (smtp, http) = (support::free_port(), support::free_port());
    let script = format!("set -e\n{}{}", blocks[0], blocks[1])
        .replace("/tmp/newsletter-sink", &sink.display().to_string())
        .replace("2525", &smtp.to_string())
        .replace("8026", &http.to_string());
    let bin = assert_cmd::cargo::cargo_bin("newsletter");
    // Output to files and a process group of its own: the sink and the server the recipe
    // leaves running are stopped with the group once the shell is done.
    use std::os::unix::process::CommandExt;
    let (out_file, err_file) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut shell = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/bin", bin.parent().unwrap().display()),
        )
        .env("HOME", dir.path())
        // The recipe's serve listens on the default port, here a free one.
        .env("NEWSLETTER_SERVE_LISTEN", format!("127.0.0.1:{http}"))
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let status = shell.wait().unwrap();
    let _ = std::process::Command::new("kill")
        .arg("--")
        .arg(format!("-{}", shell.id()))
        .status();
    let stdout = std::fs::read_to_string(&out_file).unwrap();
    let stderr = std::fs::read_to_string(&err_file).unwrap();
    assert!(status.success(), "{script}\n{stdout}\n{stderr}");
    assert_eq!(
        std::fs::read_dir(&sink).unwrap().count(),
        3,
        "the test and two readers: {stdout}"
    );
    assert!(stdout.contains("2025-07: Sent 2 of 2"), "{stdout}");
    assert!(stdout.contains("alice@example.org\t"), "unsubscribed: {stdout}");
}
