//! [`Metadata`], [`FileType`] and [`DirEntry`]: what the server says about
//! its files, parsed in one place (`proto::Reader::attrs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::path::RemotePath;
use super::proto::Attrs;

/// What kind of file a remote path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only from [`SftpSession::symlink_metadata`] and
    /// [`SftpSession::read_dir`], which do not follow links).
    ///
    /// [`SftpSession::symlink_metadata`]: crate::SftpSession::symlink_metadata
    /// [`SftpSession::read_dir`]: crate::SftpSession::read_dir
    Symlink,
    /// Anything else (device, socket, pipe), or the server did not say.
    Other,
}

/// Metadata of a remote file, as the server reports it.
///
/// SFTP v3 lets a server leave any field out; OpenSSH always sends all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    attrs: Attrs,
}

impl From<Attrs> for Metadata {
    fn from(attrs: Attrs) -> Self {
        Metadata { attrs }
    }
}

fn to_time(secs: Option<u32>) -> Option<SystemTime> {
    secs.and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(u64::from(s))))
}

impl Metadata {
    /// The size in bytes, when the server said.
    pub fn size(&self) -> Option<u64> {
        self.attrs.size
    }

    /// The size in bytes, 0 when the server did not say (see
    /// [`size`](Self::size) to tell the two apart).
    pub fn len(&self) -> u64 {
        self.attrs.size.unwrap_or(0)
    }

    /// Whether the size is 0 (or unknown).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What kind of file this is.
    pub fn file_type(&self) -> FileType {
        match self.attrs.perm.map(|m| m & 0o170_000) {
            Some(0o100_000) => FileType::File,
            Some(0o040_000) => FileType::Dir,
            Some(0o120_000) => FileType::Symlink,
            _ => FileType::Other,
        }
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::File
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Dir
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }

    /// Permission bits (`0o7777` part of the mode, e.g. `0o644`), when the
    /// server said.
    pub fn permissions(&self) -> Option<u32> {
        self.attrs.perm.map(|m| m & 0o7777)
    }

    /// Last modification time (whole seconds), when the server said.
    pub fn modified(&self) -> Option<SystemTime> {
        to_time(self.attrs.mtime)
    }

    /// Last access time (whole seconds), when the server said.
    pub fn accessed(&self) -> Option<SystemTime> {
        to_time(self.attrs.atime)
    }

    /// Numeric owner id, when the server said.
    pub fn uid(&self) -> Option<u32> {
        self.attrs.uid
    }

    /// Numeric group id, when the server said.
    pub fn gid(&self) -> Option<u32> {
        self.attrs.gid
    }

    /// The modification time in whole seconds, as the protocol carries it.
    pub(crate) fn mtime_secs(&self) -> Option<u32> {
        self.attrs.mtime
    }
}

/// One entry of a remote directory listing ([`SftpSession::read_dir`]).
///
/// Its name is exactly what the server sent, checked to be one path
/// component (entries whose names are not are skipped with a warning).
///
/// [`SftpSession::read_dir`]: crate::SftpSession::read_dir
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    name: String,
    name_bytes: Vec<u8>,
    path: RemotePath,
    metadata: Metadata,
}

impl DirEntry {
    /// An entry named `name` (checked by the caller) in `dir`.
    pub(crate) fn new(dir: &[u8], name: &[u8], attrs: Attrs) -> DirEntry {
        DirEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            name_bytes: name.to_vec(),
            path: RemotePath::new(super::path::join(dir, name)),
            metadata: Metadata::from(attrs),
        }
    }

    /// The file name. A name that is not valid UTF-8 is shown with
    /// U+FFFD replacement characters; [`name_bytes`](Self::name_bytes) has
    /// the exact bytes and [`path`](Self::path) reaches the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file name exactly as the server sent it.
    pub fn name_bytes(&self) -> &[u8] {
        &self.name_bytes
    }

    /// The folder as given to `read_dir`, `/`, and the exact name: usable
    /// with every [`SftpSession`](crate::SftpSession) operation.
    pub fn path(&self) -> &RemotePath {
        &self.path
    }

    /// The entry's metadata, not following symlinks.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Shortcut for `metadata().file_type()`.
    pub fn file_type(&self) -> FileType {
        self.metadata.file_type()
    }

    /// Shortcut for `metadata().len()`.
    pub fn len(&self) -> u64 {
        self.metadata.len()
    }

    /// Shortcut for `metadata().is_empty()`.
    pub fn is_empty(&self) -> bool {
        self.metadata.is_empty()
    }

    /// Shortcut for `metadata().modified()`.
    pub fn modified(&self) -> Option<SystemTime> {
        self.metadata.modified()
    }

    /// Shortcut for `metadata().permissions()`.
    pub fn permissions(&self) -> Option<u32> {
        self.metadata.permissions()
    }
}
