//! `crossroom backup`: a consistent copy of a single node's data directory, taken while the
//! server serves (or not), with nothing but the binary — the database as a snapshot (SQLite's
//! `VACUUM INTO`, see [`crate::store::sqlite::snapshot_into`]), the file bytes, the mail outbox
//! and the generated secrets, all owner-only. Run again into the same directory, it replaces the
//! database and copies only file bytes it does not have yet (stored bytes are never rewritten).

use crate::config::Config;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "cluster mode keeps its state in Redis and the S3 bucket, not in the data directory: back \
         those up (README \"Running in production\", step 5)"
    )]
    ClusterMode,
    #[error("no database at {0}: is --data-dir (or data_dir in the config file) the server's?")]
    NoDatabase(PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("database snapshot: {0}")]
    Snapshot(#[from] crate::store::StoreError),
}

/// What a backup copied.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub database_bytes: u64,
    /// Files (bytes, outbox, secrets) copied by this run, and their size.
    pub files_copied: u64,
    pub bytes_copied: u64,
    /// Files already in the destination from an earlier run, left as they were.
    pub files_kept: u64,
}

/// The secrets a server generates into its data directory when none is configured.
const SECRETS: [&str; 2] = ["token.secret", "operator.key"];
/// The trees beside the database: stored file bytes (G17) and unsent invitation mail.
const TREES: [&str; 2] = ["files", "outbox"];

/// Copy `config`'s data directory into `dest` (made if missing, owner-only).
pub fn run(config: &Config, dest: &Path) -> Result<Summary, BackupError> {
    if !config.redis.is_empty() {
        return Err(BackupError::ClusterMode);
    }
    let db = config.database_path();
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db));
    }
    private_dir(dest)?;
    // The snapshot is written beside its final name and renamed over it: an interrupted backup
    // never leaves a half-written database where the last good one was.
    let partial = dest.join("crossroom.db.partial");
    remove_if_present(&partial)?;
    crate::store::sqlite::snapshot_into(&db, &partial)?;
    let target = dest.join("crossroom.db");
    std::fs::rename(&partial, &target).map_err(|e| BackupError::Io(target.clone(), e))?;
    let mut summary = Summary {
        database_bytes: size_of(&target)?,
        ..Summary::default()
    };
    for tree in TREES {
        let from = config.data_dir.join(tree);
        if from.is_dir() {
            copy_tree(&from, &dest.join(tree), &mut summary)?;
        }
    }
    for secret in SECRETS {
        let from = config.data_dir.join(secret);
        if from.is_file() {
            copy_file(&from, &dest.join(secret), true, &mut summary)?;
        }
    }
    Ok(summary)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(path.to_owned(), e)
}

fn size_of(path: &Path) -> Result<u64, BackupError> {
    Ok(std::fs::metadata(path).map_err(io(path))?.len())
}

fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BackupError::Io(path.into(), e)),
        _ => Ok(()),
    }
}

/// Make `dir` (and its parents) and leave it readable by its owner only, as the data directory.
fn private_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, summary: &mut Summary) -> Result<(), BackupError> {
    private_dir(to)?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()), summary)?;
        } else if kind.is_file() {
            copy_file(&path, &to.join(entry.file_name()), false, summary)?;
        }
    }
    Ok(())
}

/// Copy one file, owner-only, unless the destination has it already. Stored bytes are never
/// rewritten under their name, so a file already there with the same size is the same file;
/// `secret`s (a few bytes, and replaceable) are compared whole.
fn copy_file(
    from: &Path,
    to: &Path,
    secret: bool,
    summary: &mut Summary,
) -> Result<(), BackupError> {
    let same = if secret {
        std::fs::read(to).ok() == Some(std::fs::read(from).map_err(io(from))?)
    } else {
        std::fs::metadata(to).is_ok_and(|m| size_of(from).is_ok_and(|n| n == m.len()))
    };
    if same {
        summary.files_kept += 1;
        return Ok(());
    }
    // Another process may remove a file between the listing and the copy (the files sweep, a
    // purge): what is gone was not the backup's to keep.
    let copied = match std::fs::copy(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io(from))?,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(io(to))?;
    }
    summary.files_copied += 1;
    summary.bytes_copied += copied;
    Ok(())
}
