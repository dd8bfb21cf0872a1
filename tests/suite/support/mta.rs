//! The other MTAs foundations relay through, run from Debian's packages unpacked (not
//! installed: they conflict with Postfix, which smtp-sink needs) into `target/lab-mtas/root`
//! by scripts/test: Exim, OpenSMTPD and Sendmail, each a throwaway instance with its own configuration,
//! spool and log in a temporary folder, listening on a free loopback port, routing each lab
//! domain to its own server and delivering the reports it writes into a maildir.
//! Like Postfix, they need root.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::{free_port, root, tools, wait_listening_or};

/// Where scripts/test unpacks the packages.
fn unpacked() -> PathBuf {
    root().join("target/lab-mtas/root")
}

/// A running MTA: the port it takes mail on, and the maildir its reports land in.
pub struct Mta {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    log: PathBuf,
    stop: Option<Command>,
}

impl Mta {
    /// The MTA once it takes mail on `port`.
    fn listening(port: u16, dir: TempDir, log: PathBuf, child: Option<Child>, stop: Option<Command>) -> Mta {
        let mta = Mta {
            port,
            dir,
            child,
            log,
            stop,
        };
        wait_listening_or(port, || mta.log());
        mta
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/bounces")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exim 4 from `exim4-daemon-light` (its `libidn12` unpacked beside it).
    pub fn exim(routes: &[(String, String, u16)]) -> Mta {
        tools::program(&tools::EXIM);
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        for sub in ["spool", "log", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        Command::new("chmod").arg("755").arg(d).status().unwrap();
        for sub in ["spool", "log", "mail"] {
            Command::new("chown")
                .arg("-R")
                .arg("Debian-exim:Debian-exim")
                .arg(d.join(sub))
                .status()
                .unwrap();
        }
        let port = free_port();
        let lab_port = routes.first().map_or(25, |r| r.2);
        let table: String = routes
            .iter()
            .map(|(domain, ip, _)| format!("{domain}: {ip}\n"))
            .collect();
        std::fs::write(d.join("routes"), table).unwrap();
        let config = format!(
            "exim_path = {exim}\n\
             keep_environment = LD_LIBRARY_PATH\n\
             primary_hostname = relay.example.org\n\
             qualify_domain = example.org\n\
             spool_directory = {d}/spool\n\
             log_file_path = {d}/log/%slog\n\
             pid_file_path = {d}/exim.pid\n\
             daemon_smtp_ports = {port}\n\
             local_interfaces = 127.0.0.1\n\
             exim_user = Debian-exim\n\
             exim_group = Debian-exim\n\
             never_users =\n\
             host_lookup =\n\
             rfc1413_hosts =\n\
             tls_advertise_hosts =\n\
             delay_warning = 0s\n\
             acl_smtp_rcpt = accept_local\n\
             begin acl\n\
             accept_local:\n  accept hosts = 127.0.0.1\n\
             begin routers\n\
             reports:\n  driver = accept\n  domains = lists.example.org : openinfra.dev\n  transport = maildir\n\
             lab:\n  driver = manualroute\n  domains = *.lab.example\n  route_data = ${{lookup{{$domain}}lsearch{{{d}/routes}}}}\n  self = send\n  transport = remote\n\
             begin transports\n\
             remote:\n  driver = smtp\n  port = {lab_port}\n  allow_localhost\n  hosts_avoid_tls = *\n\
             maildir:\n  driver = appendfile\n  directory = {d}/mail/bounces\n  maildir_format\n  create_directory\n  delivery_date_add\n  envelope_to_add\n  return_path_add\n  user = Debian-exim\n  mode = 0644\n\
             begin retry\n\
             * * F,2s,1s\n",
            d = d.display(),
            exim = unpacked().join("usr/sbin/exim4").display(),
        );
        std::fs::write(d.join("exim.conf"), config).unwrap();
        let lib = unpacked().join("usr/lib/x86_64-linux-gnu");
        let child = Command::new(unpacked().join("usr/sbin/exim4"))
            .env("LD_LIBRARY_PATH", &lib)
            .arg("-C")
            .arg(d.join("exim.conf"))
            .args(["-bdf", "-q1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let log = d.join("log/mainlog");
        Mta::listening(port, dir, log, Some(child), None)
    }
}

impl Mta {
    /// OpenSMTPD from `opensmtpd`. Its queue, control socket, chroot and delivery helpers are
    /// compiled in (/var/spool/smtpd, /var/run/smtpd.sock, /var/lib/opensmtpd/empty,
    /// /usr/libexec/opensmtpd, which scripts/test links to the unpacked package): one instance
    /// at a time.
    pub fn opensmtpd(routes: &[(String, String, u16)]) -> Mta {
        tools::program(&tools::OPENSMTPD);
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("mail")).unwrap();
        Command::new("chmod").arg("755").arg(d).status().unwrap();
        Command::new("chmod").arg("1777").arg(d.join("mail")).status().unwrap();
        let port = free_port();
        // Each lab domain relayed to its own server; a temporary failure expires at once.
        let mut config = format!(
            "table vusers {{ \"@\" = \"nobody\" }}\n\
             listen on 127.0.0.1 port {port}\n\
             action \"reports\" maildir \"{d}/mail/bounces\" virtual <vusers>\n\
             match from any for domain \"lists.example.org\" action \"reports\"\n\
             match from any for domain \"openinfra.dev\" action \"reports\"\n",
            d = d.display(),
        );
        for (i, (domain, ip, lab_port)) in routes.iter().enumerate() {
            config.push_str(&format!(
                "action \"r{i}\" relay host smtp://{ip}:{lab_port} ttl 2s\n\
                 match from any for domain \"{domain}\" action \"r{i}\"\n"
            ));
        }
        std::fs::write(d.join("smtpd.conf"), config).unwrap();
        let log = d.join("smtpd.log");
        let child = Command::new(unpacked().join("usr/sbin/smtpd"))
            .args(["-d", "-f"])
            .arg(d.join("smtpd.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Mta::listening(port, dir, log, Some(child), None)
    }
}

impl Mta {
    /// Sendmail 8.17 from `sendmail-bin`, its configuration made with m4 from `sendmail-cf`.
    /// Reports go by SMTP to 127.0.4.1 on the lab's port, where [`super::lab::catch_reports`]
    /// writes them into this MTA's maildir.
    pub fn sendmail(routes: &[(String, String, u16)]) -> Mta {
        tools::program(&tools::SENDMAIL);
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("queue")).unwrap();
        Command::new("chmod").arg("755").arg(d).status().unwrap();
        Command::new("chmod").arg("700").arg(d.join("queue")).status().unwrap();
        let port = free_port();
        let lab_port = routes.first().map_or(25, |r| r.2);
        let mut table: String = routes
            .iter()
            .map(|(domain, ip, _)| format!("{domain} esmtp:[{ip}]\n"))
            .collect();
        table.push_str("lists.example.org esmtp:[127.0.4.1]\nopeninfra.dev esmtp:[127.0.4.1]\n");
        std::fs::write(d.join("mailertable"), table).unwrap();
        std::fs::write(d.join("access"), "Connect:127.0.0.1 RELAY\n").unwrap();
        std::fs::write(d.join("service.switch"), "hosts files\naliases files\n").unwrap();
        std::fs::write(d.join("hosts"), "127.0.0.1 localhost relay.example.org\n").unwrap();
        let mc = format!(
            "divert(0)dnl\n\
             include(`{cf}/m4/cf.m4')dnl\n\
             OSTYPE(`linux')dnl\n\
             define(`confDOMAIN_NAME', `relay.example.org')dnl\n\
             define(`confDONT_PROBE_INTERFACES', `True')dnl\n\
             define(`QUEUE_DIR', `{d}/queue')dnl\n\
             define(`STATUS_FILE', `{d}/statistics')dnl\n\
             define(`confPID_FILE', `{d}/sendmail.pid')dnl\n\
             define(`confHOST_STATUS_DIRECTORY', `')dnl\n\
             define(`confSERVICE_SWITCH_FILE', `{d}/service.switch')dnl\n\
             define(`confHOSTS_FILE', `{d}/hosts')dnl\n\
             define(`ALIAS_FILE', `')dnl\n\
             define(`confTO_QUEUERETURN', `1s')dnl\n\
             define(`confTO_QUEUEWARN', `1d')dnl\n\
             define(`ESMTP_MAILER_ARGS', `TCP $h {lab_port}')dnl\n\
             define(`confDEF_USER_ID', `nobody:nogroup')dnl\n\
             define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl\n\
             FEATURE(`nocanonify')dnl\n\
             FEATURE(`accept_unresolvable_domains')dnl\n\
             FEATURE(`mailertable', `hash {d}/mailertable')dnl\n\
             FEATURE(`access_db', `hash -T<TMPF> {d}/access')dnl\n\
             DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl\n\
             MAILER(`local')dnl\n\
             MAILER(`smtp')dnl\n",
            cf = unpacked().join("usr/share/sendmail/cf").display(),
            d = d.display(),
        );
        let m4 = Command::new("m4")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut m4 = m4.expect("m4 (scripts/test installs it)");
        std::io::Write::write_all(&mut m4.stdin.take().unwrap(), mc.as_bytes()).unwrap();
        let cf = m4.wait_with_output().unwrap();
        assert!(cf.status.success(), "m4 made no sendmail.cf");
        std::fs::write(d.join("sendmail.cf"), cf.stdout).unwrap();
        let bin = unpacked().join("usr/libexec/sendmail");
        for map in ["mailertable", "access"] {
            let made = Command::new(bin.join("makemap"))
                .arg("-C")
                .arg(d.join("sendmail.cf"))
                .args(["hash", &d.join(map).display().to_string()])
                .stdin(std::fs::File::open(d.join(map)).unwrap())
                .status()
                .unwrap();
            assert!(made.success(), "makemap {map}");
        }
        // The daemon forks away; its pid file names it for the end. Sendmail sleeps a minute
        // when the machine's name has no domain: it runs with a qualified one of its own.
        let started = Command::new("unshare")
            .args(["--uts", "sh", "-c", "hostname relay.example.org && exec \"$0\" \"$@\""])
            .arg(bin.join("sendmail"))
            .arg("-C")
            .arg(d.join("sendmail.cf"))
            .args(["-bd", "-q1s"])
            .status()
            .unwrap();
        assert!(started.success(), "sendmail -bd");
        let mut stop = Command::new("sh");
        stop.arg("-c")
            .arg(format!("kill $(head -n 1 {}/sendmail.pid)", d.display()));
        let log = d.join("log.txt");
        std::fs::write(&log, "(Sendmail logs to syslog only)\n").unwrap();
        Mta::listening(port, dir, log, None, Some(stop))
    }
}

impl Drop for Mta {
    fn drop(&mut self) {
        if let Some(mut stop) = self.stop.take() {
            let _ = stop.output();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
