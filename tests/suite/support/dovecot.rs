//! Dovecot, Debian's `dovecot-imapd`, as a real IMAP server: a throwaway configuration in a
//! temporary folder, IMAP over TLS on a free loopback port with a certificate from the test
//! CA, and one user whose mail is a maildir the test writes into.

use std::path::PathBuf;
use std::process::{Child, Command};

use tempfile::TempDir;

use super::smtpd::Pki;
use super::tools;
use super::{free_port, is_root, wait_listening};

pub struct Dovecot {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

pub const USER: &str = "bounces@openinfra.dev";
pub const PASSWORD: &str = "imap-test-password";

impl Dovecot {
    pub fn start(pki: &Pki) -> Dovecot {
        let dovecot = tools::program(&tools::DOVECOT);
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        let (cert, key) = pki.issue("imap", &["localhost", "127.0.0.1"], 30);
        std::fs::write(d.join("users"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        let port = free_port();
        let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        // As root the package's unprivileged users run the processes and own the mail (Dovecot
        // refuses uid 0); otherwise this user does everything.
        let (internal, login, uid, gid) = if is_root() {
            (
                "dovecot".to_owned(),
                "dovenull".to_owned(),
                id(&["-u", "dovecot"]),
                id(&["-g", "dovecot"]),
            )
        } else {
            (me.trim().to_owned(), me.trim().to_owned(), id(&["-u"]), id(&["-g"]))
        };
        let home = d.join("home");
        std::fs::create_dir_all(home.join("Maildir/new")).unwrap();
        std::fs::create_dir_all(home.join("Maildir/cur")).unwrap();
        std::fs::create_dir_all(home.join("Maildir/tmp")).unwrap();
        Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(&home)
            .status()
            .unwrap();
        let config = format!(
            "base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             default_internal_user = {internal}\n\
             default_login_user = {login}\n\
             default_internal_group = {internal}\n\
             ssl = required\n\
             ssl_cert = <{cert}\n\
             ssl_key = <{key}\n\
             auth_mechanisms = plain login\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={home}\n}}\n\
             mail_location = maildir:~/Maildir\n\
             first_valid_uid = {uid}\n\
             first_valid_gid = {gid}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n  inet_listener imaps {{\n    port = {port}\n    ssl = yes\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n\
             service imap-login {{\n  chroot =\n}}\n",
            d = d.display(),
            cert = cert.display(),
            key = key.display(),
            home = home.display(),
        );
        std::fs::write(d.join("dovecot.conf"), config).unwrap();
        Command::new("chmod").args(["755"]).arg(d).status().unwrap();
        let child = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .spawn()
            .unwrap();
        wait_listening(port);
        Dovecot { port, child, dir }
    }

    /// Writes a message into the user's maildir (new/), readable by the server's user.
    pub fn deliver(&self, name: &str, text: &str) {
        let path = self.maildir().join("new").join(name);
        std::fs::write(&path, text).unwrap();
        Command::new("chmod").arg("666").arg(&path).status().unwrap();
    }

    /// What an administrator's rebuild or a restored folder does: Dovecot forgets its UIDs
    /// and gives the folder a new UIDVALIDITY (from its dovecot-uidvalidity counter) and
    /// every message a new UID.
    pub fn reset_uids(&self) {
        for entry in std::fs::read_dir(self.maildir()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
                std::fs::remove_file(self.maildir().join(name)).unwrap();
            }
        }
    }

    /// The user's maildir, where the test delivers reports.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("home/Maildir")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

fn id(args: &[&str]) -> String {
    String::from_utf8(Command::new("id").args(args).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned()
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
