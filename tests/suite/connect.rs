//! A relay that cannot be used stops the send before any message, with one line that says
//! why: refused, not SMTP, silent, a refused login, TLS problems.

use crate::support;
use support::{Options, Project, Reply, ScriptServer, Stage, csv, run};

#[test]
fn a_refused_connection_stops_before_anything_is_sent() {
    let port = support::free_port();
    let project = Project::new(port, &csv(3), "");
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(&format!(
            "error: cannot connect to 127.0.0.1:{port}: Connection refused"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("check smtp.host and smtp.port"), "{}", r.stderr);
}

#[test]
fn a_port_that_is_not_smtp_is_named_as_such() {
    // A web server on the port smtp.port names: it answers in HTTP and hangs up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        }
    });
    let project = Project::new(port, &csv(3), "");
    let started = std::time::Instant::now();
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("no SMTP greeting from 127.0.0.1:{port}"))
            && r.stderr.contains("is this the SMTP port? check smtp.port"),
        "{}",
        r.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "without waiting for a timeout"
    );
}

#[test]
fn a_port_that_never_greets_is_named_within_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, keeps the connection open, says nothing.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().flatten().collect();
        drop(held);
    });
    let project = Project::new(port, &csv(3), "").with_smtp(&format!(
        "{{ host: 127.0.0.1, port: {port}, security: none, timeout: 1s }}"
    ));
    let r = run(project.command().args(["send", "small", "--yes"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "no SMTP greeting from 127.0.0.1:{port} in 1 s: is this the SMTP port?"
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn a_refused_login_stops_before_anything_is_sent() {
    let server = ScriptServer::start_with(
        Options {
            starttls: false,
            auth: true,
            ..Options::default()
        },
        |stage, _, _| match stage {
            Stage::Auth => Reply::Code(535, "5.7.8 Authentication credentials invalid"),
            _ => Reply::Ok,
        },
    );
    let project = Project::new(server.port, &csv(3), "");
    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env("NEWSLETTER_SMTP_USERNAME", "newsletter")
        .env("NEWSLETTER_SMTP_PASSWORD", "wrong"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("refused the login of `newsletter`"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("wrong") && !r.stdout.contains("wrong"),
        "the password is never printed"
    );
    assert_eq!(server.accepted().len(), 0);
}

#[test]
fn tls_problems_stop_before_anything_is_sent() {
    let server = ScriptServer::start_with(
        Options {
            starttls: false,
            ..Options::default()
        },
        |_, _, _| Reply::Ok,
    );
    let project = Project::new(server.port, &csv(2), "");
    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env("NEWSLETTER_SMTP_SECURITY", "starttls"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does not offer STARTTLS"), "{}", r.stderr);
    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env("NEWSLETTER_SMTP_SECURITY", "tls")
        .env("NEWSLETTER_SMTP_TIMEOUT", "2s"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains(&format!("127.0.0.1:{}", server.port)), "{}", r.stderr);
    assert_eq!(server.accepted().len(), 0);

    let r = run(project
        .command()
        .args(["send", "small", "--yes"])
        .env("NEWSLETTER_SMTP_HOST", "smtp.example.org")
        .env("NEWSLETTER_SMTP_SECURITY", "none"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("smtp.security is `none` but smtp.example.org is not a loopback address"),
        "{}",
        r.stderr
    );
}
