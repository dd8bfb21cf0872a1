//! Files only this user may read: the ledger (every reader's address and history), its key,
//! and the dry run's messages (working unsubscribe tokens inside). Created 0700 (folders) and
//! 0600 (files) whatever the umask; elsewhere than Unix, as the system makes them.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Creates `dir` and any missing parents; the folders made here are the user's alone.
pub fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `bytes` to `path`, replacing it, readable by this user only.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = options()
        .truncate(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `bytes` to a new file at `path` (an existing one is an error) and syncs it.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = options()
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Creates `path` empty if it does not exist, so that SQLite opens a private file (its WAL
/// and shared-memory files take the database's permissions).
pub fn touch(path: &Path) -> Result<()> {
    match options().create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}
