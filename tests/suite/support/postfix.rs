//! Postfix itself (Debian's `postfix`, the whole MTA, not smtp-sink) as the relay a newsletter
//! goes through: a throwaway instance with its own configuration and queue in a temporary
//! folder, listening on a free loopback port, relaying everything to `relay_port` (a test's
//! scripted server standing for the readers' mail servers) and delivering the reports it
//! writes itself, real DSNs, into maildirs: mail to `bounces(+anything)@lists.example.org`
//! into `bounces/`, mail to `newsletter@openinfra.dev` into `newsletter/`.
//!
//! `maximal_queue_lifetime = 0` tries each message once: a 4xx is returned at once as if it
//! had expired in the queue (the report's Action failed, its Status the 4.x.x).
//!
//! Postfix's master runs as root and hands its work to the package's `postfix` user, so these
//! tests need root (as scripts/test in CI has).

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use super::{free_port, tools, wait_listening_or};

pub struct Postfix {
    pub port: u16,
    dir: TempDir,
}

impl Postfix {
    pub fn start(relay_port: u16) -> Postfix {
        Postfix::start_with(relay_port, "")
    }

    /// With `settings` (main.cf lines) after the defaults, which they override.
    pub fn start_with(relay_port: u16, settings: &str) -> Postfix {
        Postfix::start_with_files(relay_port, settings, &[])
    }

    /// Routes each domain to its own server (`smtp:[ip]:port`) through a transport map;
    /// other mail goes to `relay_port`.
    pub fn start_routed(relay_port: u16, routes: &[(String, String, u16)]) -> Postfix {
        let map: String = routes
            .iter()
            .map(|(domain, ip, port)| format!("{domain} smtp:[{ip}]:{port}\n"))
            .collect();
        Postfix::start_with_files(
            relay_port,
            "transport_maps = texthash:{etc}/transport\n",
            &[("transport", map)],
        )
    }

    /// With `files` written into its etc/ folder (`{etc}` in `settings` names it).
    fn start_with_files(relay_port: u16, settings: &str, files: &[(&str, String)]) -> Postfix {
        tools::program(&tools::POSTFIX);
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        for sub in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // Postfix checks that what its daemons read is not writable by others.
        Command::new("chmod").arg("755").arg(d).status().unwrap();
        Command::new("chown")
            .arg("postfix")
            .arg(d.join("data"))
            .status()
            .unwrap();
        // The log exists before Postfix does, and is its mail owner's: written by root while
        // postlogd is down (`postfix stop`), it would be root's, and `postsuper`, run as the
        // mail owner at the next start, could not open it.
        std::fs::write(d.join("maillog"), "").unwrap();
        Command::new("chown")
            .arg("postfix")
            .arg(d.join("maillog"))
            .status()
            .unwrap();
        // The virtual delivery agent writes as `nobody`.
        Command::new("chmod").arg("1777").arg(d.join("mail")).status().unwrap();
        let port = free_port();
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             maillog_file = {d}/maillog\n\
             maillog_file_prefixes = {d}\n\
             myhostname = relay.example.org\n\
             mydomain = example.org\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             relayhost = [127.0.0.1]:{relay_port}\n\
             smtp_dns_support_level = disabled\n\
             smtp_tls_security_level = none\n\
             smtpd_tls_security_level = none\n\
             alias_maps =\n\
             alias_database =\n\
             biff = no\n\
             virtual_mailbox_domains = lists.example.org, openinfra.dev\n\
             virtual_mailbox_base = {d}/mail\n\
             virtual_mailbox_maps = regexp:{d}/etc/mailboxes\n\
             virtual_uid_maps = static:65534\n\
             virtual_gid_maps = static:65534\n\
             maximal_queue_lifetime = 0\n\
             {settings}",
            d = d.display(),
            settings = settings.replace("{etc}", &d.join("etc").display().to_string()),
        );
        for (name, text) in files {
            std::fs::write(d.join("etc").join(name), text).unwrap();
        }
        std::fs::write(d.join("etc/main.cf"), main).unwrap();
        std::fs::write(
            d.join("etc/mailboxes"),
            "/^bounces(\\+.*)?@lists\\.example\\.org$/ bounces/\n/^newsletter@openinfra\\.dev$/ newsletter/\n",
        )
        .unwrap();
        // Debian's master.cf without chroot (the queue is not under /var/spool/postfix).
        let master = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             virtual unix - n n - - virtual\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        );
        std::fs::write(d.join("etc/master.cf"), master).unwrap();
        let out = Command::new(tools::program(&tools::POSTFIX))
            .arg("-c")
            .arg(d.join("etc"))
            .arg("start")
            .output()
            .unwrap();
        let postfix = Postfix { port, dir };
        assert!(
            out.status.success(),
            "postfix start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            postfix.log()
        );
        wait_listening_or(port, || postfix.log());
        postfix
    }

    /// The maildir Postfix delivers mail for `mailbox` (`bounces` or `newsletter`) into.
    pub fn maildir(&self, mailbox: &str) -> PathBuf {
        self.dir.path().join("mail").join(mailbox)
    }

    /// The messages waiting in `mailbox`'s new/.
    pub fn waiting(&self, mailbox: &str) -> usize {
        std::fs::read_dir(self.maildir(mailbox).join("new")).map_or(0, |d| d.count())
    }

    /// Its configuration folder: `MAIL_CONFIG` for its `sendmail`.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// `postfix stop` or `postfix start`, as an operator would.
    pub fn control(&self, what: &str) {
        let out = Command::new(tools::program(&tools::POSTFIX))
            .arg("-c")
            .arg(self.config_dir())
            .arg(what)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postfix {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(tools::program(&tools::POSTFIX))
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg("stop")
            .output();
    }
}
