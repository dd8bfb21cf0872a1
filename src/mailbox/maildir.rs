//! A maildir, read in name order; handled messages move to cur/, reports with the S flag.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BATCH, Item, Mailbox};

/// A maildir: new/ is read in name order; handled messages move to cur/, reports with the S
/// flag.
pub struct Maildir {
    dir: PathBuf,
    pending: Vec<PathBuf>,
    listed: bool,
}

impl Maildir {
    pub fn open(dir: &Path) -> Result<Maildir> {
        let new = dir.join("new");
        if !new.is_dir() {
            anyhow::bail!(
                "{} is not a maildir (it has no new/ folder): give the folder that holds new/ and cur/",
                dir.display()
            );
        }
        Ok(Maildir {
            dir: dir.to_path_buf(),
            pending: Vec::new(),
            listed: false,
        })
    }
}

impl Maildir {
    /// Every message of the maildir at `dir`, new/ and cur/, in name order: for reading it
    /// whole without taking anything from it.
    pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
        Maildir::open(dir)?;
        let mut files = Vec::new();
        for folder in ["new", "cur"] {
            let at = dir.join(folder);
            let Ok(entries) = std::fs::read_dir(&at) else { continue };
            files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()));
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(files)
    }
}

impl Mailbox for Maildir {
    fn name(&self) -> String {
        format!("maildir:{}", self.dir.display())
    }

    fn next_batch(&mut self) -> Result<Vec<Item>> {
        if !self.listed {
            let new = self.dir.join("new");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
                .with_context(|| format!("cannot read {}", new.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            // Reversed: popping from the end gives name order.
            files.sort_by(|a, b| b.cmp(a));
            self.pending = files;
            self.listed = true;
        }
        let mut items = Vec::new();
        while items.len() < BATCH {
            let Some(path) = self.pending.pop() else { break };
            let raw = match std::fs::read(&path) {
                Ok(raw) => raw,
                // Another reader (a second cron run, a mail client) took it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            let id = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            items.push(Item { id, raw, cursor: None });
        }
        Ok(items)
    }

    fn done(&mut self, items: &[Item], is_report: &[bool]) -> Result<()> {
        let cur = self.dir.join("cur");
        std::fs::create_dir_all(&cur).with_context(|| format!("cannot create {}", cur.display()))?;
        for (item, &seen) in items.iter().zip(is_report) {
            let from = self.dir.join("new").join(&item.id);
            // Maildir's info suffix: ":2," then the flags in ASCII order; S is seen.
            let (base, flags) = item.id.split_once(":2,").unwrap_or((&item.id, ""));
            let mut flags: Vec<char> = flags.chars().collect();
            if seen && !flags.contains(&'S') {
                flags.push('S');
                flags.sort_unstable();
            }
            let to = cur.join(format!("{base}:2,{}", flags.into_iter().collect::<String>()));
            match std::fs::rename(&from, &to) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?,
            }
        }
        Ok(())
    }
}
