//! One server per data directory: an exclusive lock on `DATA_DIR/lock`, taken before the store
//! opens and held for the life of the process (the kernel lets it go when the process ends,
//! however it ends). A second `crossroom serve` on the same directory refuses to start and says
//! which process holds it — two processes writing one database would move rooms to new epochs
//! under each other and interleave their commits.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data directory {dir} is in use by another crossroom{} — stop it first, or give this \
         one another --data-dir",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held { dir: PathBuf, holder: Option<u32> },
    #[error("cannot lock the data directory ({0}): {1}")]
    Io(PathBuf, std::io::Error),
}

/// The held lock; dropping it (or ending the process) lets it go.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Take the lock of `dir` (which exists), or say who holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let path = dir.join("lock");
        let io = |e| LockError::Io(path.clone(), e);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder wrote its pid when it took the lock; without it, say less.
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let held = DataDirLock::acquire(dir.path()).expect("first");
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(held);
        DataDirLock::acquire(dir.path()).expect("free again once dropped");
    }
}
