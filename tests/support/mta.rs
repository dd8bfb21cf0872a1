//! The other MTAs foundations relay through, run from Debian's packages unpacked (not
//! installed: they conflict with Postfix, which smtp-sink needs) into `target/lab-mtas/root`
//! by scripts/test: Exim and OpenSMTPD, each a throwaway instance with its own configuration,
//! spool and log in a temporary folder, listening on a free loopback port, routing each lab
//! domain to its own server and delivering the reports it writes into a maildir.
//! Like Postfix, they need root.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::{free_port, is_root, root, wait_listening};

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
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/bounces")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exim 4 from `exim4-daemon-light` (its `libidn12` unpacked beside it).
    pub fn exim_available() -> bool {
        is_root() && unpacked().join("usr/sbin/exim4").exists()
    }

    pub fn exim(routes: &[(String, String, u16)]) -> Mta {
        assert!(
            Mta::exim_available(),
            "Exim needs root and scripts/test's unpacked exim4"
        );
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
        let mta = Mta {
            port,
            log: d.join("log/mainlog"),
            dir,
            child: Some(child),
            stop: None,
        };
        wait_listening(port);
        mta
    }
}

impl Mta {
    /// OpenSMTPD from `opensmtpd`. Its queue, control socket, chroot and delivery helpers are
    /// compiled in (/var/spool/smtpd, /var/run/smtpd.sock, /var/lib/opensmtpd/empty,
    /// /usr/libexec/opensmtpd, which scripts/test links to the unpacked package): one instance
    /// at a time.
    pub fn opensmtpd_available() -> bool {
        is_root() && unpacked().join("usr/sbin/smtpd").exists() && PathBuf::from("/usr/libexec/opensmtpd").exists()
    }

    pub fn opensmtpd(routes: &[(String, String, u16)]) -> Mta {
        assert!(
            Mta::opensmtpd_available(),
            "OpenSMTPD needs root and scripts/test's unpacked opensmtpd"
        );
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
        let mta = Mta {
            port,
            log,
            dir,
            child: Some(child),
            stop: None,
        };
        wait_listening(port);
        mta
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
