//! What a transfer reports: [`Delivery`] for one file, [`DirReport`] for
//! a folder, and the per-file [`Progress`] events.
//!
//! Every transfer ends in one of three outcomes the caller can act on:
//! delivered (a [`Delivery`], with how it was checked and what was not
//! done, such as a modification time the server refused); not delivered
//! and nothing left behind (an error); or not delivered and something left
//! behind (an error whose message names each leftover and why it could not
//! be removed).

use std::fmt;
use std::path::{Path, PathBuf};

pub use super::checksum::Checksum;
use crate::sftp::path::RemotePath;
use crate::Error;

/// How a transferred file was checked before it was put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verified {
    /// The file's size on the other side equals the bytes sent.
    Size,
    /// The server would not tell the file's size (it refuses `stat`): every
    /// byte sent was acknowledged by the server, which is the check.
    Acknowledged,
    /// Not checked: [`TransferOptions::verify_size`](super::TransferOptions::verify_size)
    /// is off.
    NotChecked,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verified::Size => "size checked",
            Verified::Acknowledged => "every byte acknowledged (the server refuses stat)",
            Verified::NotChecked => "not checked",
        })
    }
}

/// A file that was delivered: where, how many bytes, how it was checked,
/// and what the server refused that did not stop the delivery (a
/// modification time or mode it would not set).
///
/// Returned by [`SftpSession::deliver`](crate::SftpSession::deliver) and
/// [`SftpSession::fetch`](crate::SftpSession::fetch), and kept for each file
/// of a [`DirReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub(crate) target: String,
    pub(crate) bytes: u64,
    pub(crate) verified: Verified,
    pub(crate) checksum: Checksum,
    pub(crate) warnings: Vec<String>,
}

impl Delivery {
    /// The target, as a path for display: the remote path of an upload,
    /// the local path of a download.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The bytes transferred.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How the file was checked before it was put in place.
    pub fn verified(&self) -> Verified {
        self.verified
    }

    /// The SHA-256 check ([`TransferOptions::verify_checksum`](super::TransferOptions::verify_checksum)):
    /// not asked for, matched, or not verifiable on this server (and why).
    pub fn checksum(&self) -> &Checksum {
        &self.checksum
    }

    /// What the server refused that did not stop the delivery, in words
    /// (each also logged at `warn`): a modification time or permissions it
    /// would not set. Empty when everything was done.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// One file of a folder transfer: where it came from and went, and how it
/// ended.
#[derive(Debug)]
pub struct FileReport {
    pub(crate) local: PathBuf,
    pub(crate) remote: RemotePath,
    pub(crate) result: std::result::Result<Delivery, Error>,
}

impl FileReport {
    /// The local path.
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// The remote path.
    pub fn remote(&self) -> &RemotePath {
        &self.remote
    }

    /// How it ended: the delivery, or why it was not delivered (the error
    /// names any leftover).
    pub fn result(&self) -> std::result::Result<&Delivery, &Error> {
        self.result.as_ref()
    }

    /// Whether the file was delivered.
    pub fn is_delivered(&self) -> bool {
        self.result.is_ok()
    }

    /// The bytes transferred (0 for a file that failed).
    pub fn bytes(&self) -> u64 {
        self.result.as_ref().map_or(0, Delivery::bytes)
    }
}

/// What a folder transfer did, file by file: made by
/// [`SftpSession::upload_dir_report`](crate::SftpSession::upload_dir_report)
/// and [`SftpSession::download_dir_report`](crate::SftpSession::download_dir_report).
///
/// With [`TransferOptions::continue_on_error`](super::TransferOptions::continue_on_error)
/// every file has its entry; without it, the transfer stops at the first
/// failure and the files not tried are not listed.
///
/// ```no_run
/// # fn main() -> Result<(), etl_ssh::Error> {
/// # let sftp: etl_ssh::SftpSession = todo!();
/// use etl_ssh::TransferOptions;
///
/// let options = TransferOptions::new().continue_on_error(true);
/// let report = sftp.upload_dir_report("out/2026-11-30", "/inbox", &options)?;
/// for file in report.failed() {
///     eprintln!("not delivered: {}: {}", file.local().display(), file.result().unwrap_err());
/// }
/// println!("{} files, {} bytes delivered", report.delivered().count(), report.bytes());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct DirReport {
    pub(crate) files: Vec<FileReport>,
}

impl DirReport {
    /// Every file tried, in the order they finished.
    pub fn files(&self) -> &[FileReport] {
        &self.files
    }

    /// The files delivered.
    pub fn delivered(&self) -> impl Iterator<Item = &FileReport> {
        self.files.iter().filter(|f| f.is_delivered())
    }

    /// The files that failed.
    pub fn failed(&self) -> impl Iterator<Item = &FileReport> {
        self.files.iter().filter(|f| !f.is_delivered())
    }

    /// Whether every file tried was delivered.
    pub fn is_complete(&self) -> bool {
        self.files.iter().all(FileReport::is_delivered)
    }

    /// The bytes delivered.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(FileReport::bytes).sum()
    }

    /// The report as a result: the bytes when every file was delivered,
    /// else the first failure's error.
    pub(crate) fn into_result(self) -> crate::Result<u64> {
        let bytes = self.bytes();
        match self.files.into_iter().find_map(|f| f.result.err()) {
            Some(e) => Err(e),
            None => Ok(bytes),
        }
    }
}

/// One progress event of a transfer: which file, how far it is, and how
/// far the whole job is. Given to [`TransferOptions::on_progress`](super::TransferOptions::on_progress);
/// a folder transfer's sessions report from several threads, and the job
/// totals add up over all of them.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub(crate) file: &'a str,
    pub(crate) file_done: u64,
    pub(crate) file_total: u64,
    pub(crate) job_done: u64,
    pub(crate) job_total: u64,
}

impl Progress<'_> {
    /// The file: its remote path for an upload, its local path for a
    /// download.
    pub fn file(&self) -> &str {
        self.file
    }

    /// Bytes of this file done.
    pub fn file_done(&self) -> u64 {
        self.file_done
    }

    /// Bytes of this file in all.
    pub fn file_total(&self) -> u64 {
        self.file_total
    }

    /// Bytes of the whole job done (all files, all sessions).
    pub fn job_done(&self) -> u64 {
        self.job_done
    }

    /// Bytes of the whole job in all.
    pub fn job_total(&self) -> u64 {
        self.job_total
    }
}
