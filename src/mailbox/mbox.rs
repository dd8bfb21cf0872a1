//! An mbox file, read from where the last run stopped (the cursor is a byte offset).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BATCH, Item, Mailbox};

pub struct Mbox {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    /// The "From " line that ended the previous message: it opens the next.
    carried: Option<Vec<u8>>,
}

impl Mbox {
    /// The mailbox's name (and its cursor's key): `mbox:PATH`.
    pub fn name_of(path: &Path) -> String {
        format!("mbox:{}", path.display())
    }

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
        Mbox::name_of(&self.path)
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
