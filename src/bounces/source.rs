//! The bounce mailbox: a maildir, an mbox file or an IMAP folder, read in batches. A message
//! is let go of (moved to cur/, marked \Seen, passed by the mbox cursor) only after the ledger
//! committed what it said, so a crash reads it again and the ledger's record of handled
//! reports makes the second reading change nothing.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One message from the mailbox.
#[derive(Debug)]
pub struct Item {
    /// The file name in a maildir, `@OFFSET` in an mbox, the UID in IMAP.
    pub id: String,
    pub raw: Vec<u8>,
    /// Where the mailbox's cursor goes once this message is handled (mbox, IMAP).
    pub cursor: Option<String>,
}

pub trait Mailbox {
    /// Names the mailbox in messages and keys its cursor in the ledger.
    fn name(&self) -> String;
    /// The next unread messages; empty when there are no more.
    fn next_batch(&mut self) -> Result<Vec<Item>>;
    /// The ledger has committed these: let them go. `is_report[i]` says whether anything was
    /// read from `items[i]`: reports are marked read, other mail (a person writing to the
    /// bounce address, which may be the From address) is left unread for a person.
    fn done(&mut self, items: &[Item], is_report: &[bool]) -> Result<()>;
}

const BATCH: usize = 200;

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

/// An mbox file, read from where the last run stopped (the cursor is a byte offset).
pub struct Mbox {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    /// The "From " line that ended the previous message: it opens the next.
    carried: Option<Vec<u8>>,
}

impl Mbox {
    pub fn open(path: &Path, cursor: Option<&str>) -> Result<Mbox> {
        let file = File::open(path).with_context(|| format!("cannot open the mbox {}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut offset = cursor.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
        let mut reader = BufReader::new(file);
        if offset > len || !starts_message(&mut reader, offset)? {
            // Shorter than where we stopped, or no message begins there: the file was rotated.
            offset = 0;
        }
        reader.seek(SeekFrom::Start(offset))?;
        Ok(Mbox {
            path: path.to_path_buf(),
            reader,
            offset,
            carried: None,
        })
    }

    fn next_message(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut message: Vec<u8> = Vec::new();
        let mut from_line = self.carried.take();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.starts_with(b"From ") {
                if from_line.is_some() {
                    self.carried = Some(line.clone());
                    self.offset += n as u64;
                    break;
                }
                from_line = Some(line.clone());
                self.offset += n as u64;
                continue;
            }
            self.offset += n as u64;
            if from_line.is_none() && message.is_empty() && line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // mboxrd quoting: ">From " and ">>From " lose one ">".
            let unquoted = match line.iter().position(|&b| b != b'>') {
                Some(i) if i > 0 && line[i..].starts_with(b"From ") => &line[1..],
                _ => &line[..],
            };
            message.extend_from_slice(unquoted);
        }
        if from_line.is_none() && message.is_empty() {
            return Ok(None);
        }
        // The carried "From " line belongs to the next message: the cursor stops before it.
        let end = self.offset - self.carried.as_ref().map_or(0, |l| l.len() as u64);
        Ok(Some((end, message)))
    }
}

fn starts_message(reader: &mut BufReader<File>, offset: u64) -> Result<bool> {
    if offset == 0 {
        return Ok(true);
    }
    reader.seek(SeekFrom::Start(offset))?;
    let mut head = [0u8; 5];
    let n = std::io::Read::read(reader, &mut head)?;
    Ok(n == 0 || &head[..n] == b"From ")
}

impl Mailbox for Mbox {
    fn name(&self) -> String {
        format!("mbox:{}", self.path.display())
    }

    fn next_batch(&mut self) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        while items.len() < BATCH {
            let begin = self.offset - self.carried.as_ref().map_or(0, |l| l.len() as u64);
            let Some((end, raw)) = self.next_message()? else { break };
            items.push(Item {
                id: format!("@{begin}"),
                raw,
                cursor: Some(end.to_string()),
            });
        }
        Ok(items)
    }

    fn done(&mut self, _: &[Item], _: &[bool]) -> Result<()> {
        // The cursor is committed with each report's events.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_messages_and_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.mbox");
        std::fs::write(
            &path,
            "From a@b Thu Jan  1 00:00:00 2026\nSubject: one\n\n>From here\nbody\n\nFrom c@d Thu Jan  1 00:00:00 2026\nSubject: two\n\nx\n",
        )
        .unwrap();
        let mut mbox = Mbox::open(&path, None).unwrap();
        let items = mbox.next_batch().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            String::from_utf8_lossy(&items[0].raw),
            "Subject: one\n\nFrom here\nbody\n\n"
        );
        assert_eq!(items[0].id, "@0");
        let second = items[1].id.trim_start_matches('@').parse::<u64>().unwrap();
        assert_eq!(items[0].cursor.as_deref(), Some(second.to_string().as_str()));
        // From the cursor only what came after.
        let mut again = Mbox::open(&path, items[0].cursor.as_deref()).unwrap();
        let rest = again.next_batch().unwrap();
        assert_eq!(rest.len(), 1);
        assert!(String::from_utf8_lossy(&rest[0].raw).contains("two"));
        let end = rest[0].cursor.clone();
        assert!(
            Mbox::open(&path, end.as_deref())
                .unwrap()
                .next_batch()
                .unwrap()
                .is_empty()
        );
        // A cursor in the middle of a message (the file was rotated) starts over.
        assert_eq!(Mbox::open(&path, Some("3")).unwrap().next_batch().unwrap().len(), 2);
    }
}
