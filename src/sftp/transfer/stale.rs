//! Finding and removing the temporary files transfers leave behind when
//! they cannot remove them (a cut connection, a server that refused the
//! removal, a resumable transfer never retried): on the server and
//! locally. Only names this crate makes are touched.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use log::info;

use super::options::TransferOptions;
use crate::sftp::channel::SftpChannel;
use crate::sftp::fs::{read_dir, simple};
use crate::sftp::path::{shown, RemotePath};
use crate::sftp::proto::kind;
use crate::{Error, Result};

/// The oldest modification time a file may have to count as stale.
fn cutoff(older_than: Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Removes the regular files in the remote folder `dir` whose names this
/// crate makes with `options` and that were last modified more than
/// `older_than` ago; returns what it removed.
pub(crate) fn remove_remote(
    ch: &mut SftpChannel,
    dir: &[u8],
    older_than: Duration,
    options: &TransferOptions,
) -> Result<Vec<RemotePath>> {
    let cutoff = cutoff(older_than);
    let mut removed = Vec::new();
    for entry in read_dir(ch, dir)? {
        let old = entry.modified().is_some_and(|t| t < cutoff);
        if entry.metadata().is_file() && old && options.is_our_temp(entry.name_bytes()) {
            simple(
                ch,
                kind::REMOVE,
                "remove_stale_temps",
                entry.path().as_bytes(),
            )?;
            info!(
                "{}: removed the stale temporary file {}",
                ch.target(),
                shown(entry.path().as_bytes())
            );
            removed.push(entry.path().clone());
        }
    }
    Ok(removed)
}

/// The same in the local folder `dir`, for regular files of ours (never
/// through a symlink).
pub(crate) fn remove_local(
    dir: &Path,
    older_than: Duration,
    options: &TransferOptions,
) -> Result<Vec<PathBuf>> {
    let cutoff = cutoff(older_than);
    let uid = rustix::process::geteuid().as_raw();
    let list = |e| Error::io(format!("cannot list {}", dir.display()), e);
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir).map_err(list)? {
        let entry = entry.map_err(list)?;
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let old = meta.modified().is_ok_and(|t| t < cutoff);
        if meta.is_file()
            && meta.uid() == uid
            && old
            && options.is_our_temp(entry.file_name().as_bytes())
        {
            let path = entry.path();
            fs::remove_file(&path)
                .map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
            info!("removed the stale temporary file {}", path.display());
            removed.push(path);
        }
    }
    Ok(removed)
}
