//! [`Metadata`], [`FileType`], [`Permissions`], [`DirEntry`] and
//! [`FsStats`]: what the server says about its files and file systems,
//! parsed in one place (`proto.rs`: `Reader::attrs`, `decode_statvfs`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::path::RemotePath;
use super::proto::{statvfs_flag, Attrs, StatVfs};

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
    /// server said. [`perms`](Self::perms) gives them as [`Permissions`].
    pub fn permissions(&self) -> Option<u32> {
        self.attrs.perm.map(|m| m & 0o7777)
    }

    /// The permission bits as [`Permissions`] (std's idiom:
    /// [`readonly`](Permissions::readonly), [`mode`](Permissions::mode)),
    /// when the server said.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let meta = sftp.metadata("/outbox/report.csv")?;
    /// if let Some(mut perms) = meta.perms() {
    ///     perms.set_readonly(true);
    ///     sftp.set_permissions("/outbox/report.csv", perms)?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn perms(&self) -> Option<Permissions> {
        self.attrs.perm.map(Permissions::from_mode)
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

/// The permission bits of a remote file, as [`std::fs::Permissions`] has
/// them on Unix: the `0o7777` part of a mode (`rwx` for owner, group and
/// others, and the setuid, setgid and sticky bits).
///
/// From [`Metadata::perms`]; given to
/// [`SftpSession::set_permissions`](crate::SftpSession::set_permissions),
/// which also takes a plain mode (`0o640`). `{:o}` prints the mode.
///
/// ```
/// use etl_ssh::Permissions;
///
/// let mut perms = Permissions::from_mode(0o644);
/// assert!(!perms.readonly());
/// perms.set_readonly(true);
/// assert_eq!(perms.mode(), 0o444);
/// assert_eq!(format!("{perms:o}"), "444");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions {
    mode: u32,
}

impl Permissions {
    /// The permissions of a mode; bits above `0o7777` (the file type) are
    /// dropped.
    pub fn from_mode(mode: u32) -> Permissions {
        Permissions {
            mode: mode & 0o7777,
        }
    }

    /// The mode bits, e.g. `0o644`.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Whether no one may write: none of the three write bits (`0o222`) is
    /// set (as std's on Unix; the server may still refuse or allow writes
    /// for other reasons, its owner or ACLs).
    pub fn readonly(&self) -> bool {
        self.mode & 0o222 == 0
    }

    /// Clears all three write bits (`readonly == true`) or sets all three
    /// (`false`), as std's does on Unix. Named as std's, so code written
    /// for `std::fs::Permissions` reads the same; it changes this value
    /// only: pass it to
    /// [`SftpSession::set_permissions`](crate::SftpSession::set_permissions)
    /// to change the file.
    pub fn set_readonly(&mut self, readonly: bool) {
        if readonly {
            self.mode &= !0o222;
        } else {
            self.mode |= 0o222;
        }
    }
}

impl From<u32> for Permissions {
    /// [`Permissions::from_mode`].
    fn from(mode: u32) -> Permissions {
        Permissions::from_mode(mode)
    }
}

impl fmt::Octal for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Octal::fmt(&self.mode, f)
    }
}

/// What the server says about the file system a path is on
/// ([`SftpSession::statvfs`](crate::SftpSession::statvfs), the
/// `statvfs@openssh.com` extension): POSIX `statvfs`'s fields, as `df`
/// shows them.
///
/// Block counts are in units of [`fragment_size`](Self::fragment_size)
/// (POSIX's `f_frsize`); the `*_bytes` methods multiply them out (with
/// [`block_size`](Self::block_size) where a server reports no fragment
/// size), saturating at `u64::MAX`. "Available" is what an unprivileged
/// user may use; "free" includes what is reserved for root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FsStats {
    raw: StatVfs,
}

impl From<StatVfs> for FsStats {
    fn from(raw: StatVfs) -> Self {
        FsStats { raw }
    }
}

impl FsStats {
    /// The file system's preferred block size (`f_bsize`).
    pub fn block_size(&self) -> u64 {
        self.raw.bsize
    }

    /// The fundamental block size (`f_frsize`), the unit of the block
    /// counts.
    pub fn fragment_size(&self) -> u64 {
        self.raw.frsize
    }

    /// Size of the file system in fragments (`f_blocks`).
    pub fn blocks(&self) -> u64 {
        self.raw.blocks
    }

    /// Free fragments, those reserved for root included (`f_bfree`).
    pub fn free_blocks(&self) -> u64 {
        self.raw.bfree
    }

    /// Fragments an unprivileged user may use (`f_bavail`).
    pub fn available_blocks(&self) -> u64 {
        self.raw.bavail
    }

    /// Number of inodes, files and folders the file system can hold
    /// (`f_files`).
    pub fn files(&self) -> u64 {
        self.raw.files
    }

    /// Free inodes (`f_ffree`).
    pub fn free_files(&self) -> u64 {
        self.raw.ffree
    }

    /// Inodes an unprivileged user may use (`f_favail`).
    pub fn available_files(&self) -> u64 {
        self.raw.favail
    }

    /// The file system id (`f_fsid`).
    pub fn fsid(&self) -> u64 {
        self.raw.fsid
    }

    /// The mount flags as sent (`f_flag`: bit 1 read-only, bit 2 nosuid).
    pub fn flags(&self) -> u64 {
        self.raw.flag
    }

    /// Whether the file system is mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.raw.flag & statvfs_flag::RDONLY != 0
    }

    /// Whether the file system ignores setuid and setgid bits.
    pub fn is_nosuid(&self) -> bool {
        self.raw.flag & statvfs_flag::NOSUID != 0
    }

    /// The longest file name allowed (`f_namemax`).
    pub fn name_max(&self) -> u64 {
        self.raw.namemax
    }

    /// Bytes in `count` fragments.
    fn bytes(&self, count: u64) -> u64 {
        let unit = match self.raw.frsize {
            0 => self.raw.bsize,
            n => n,
        };
        count.saturating_mul(unit)
    }

    /// The size of the file system in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes(self.raw.blocks)
    }

    /// Free bytes, those reserved for root included.
    pub fn free_bytes(&self) -> u64 {
        self.bytes(self.raw.bfree)
    }

    /// Bytes an unprivileged user (the account we log in as, usually) may
    /// still write: what `df` shows as "Avail".
    pub fn available_bytes(&self) -> u64 {
        self.bytes(self.raw.bavail)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_follow_std_on_unix() {
        let mut p = Permissions::from_mode(0o100_755);
        assert_eq!(p.mode(), 0o755, "the file type bits are dropped");
        assert!(!p.readonly());
        p.set_readonly(true);
        assert_eq!(p.mode(), 0o555);
        assert!(p.readonly());
        p.set_readonly(false);
        assert_eq!(p.mode(), 0o777);
        assert!(Permissions::from(0o4440).readonly());
        assert_eq!(format!("{:o}", Permissions::from(0o4440)), "4440");
        let meta = Metadata::from(Attrs::perm(0o100_640));
        assert_eq!(meta.perms(), Some(Permissions::from_mode(0o640)));
        assert_eq!(Metadata::from(Attrs::default()).perms(), None);
    }

    #[test]
    fn fs_stats_count_bytes_in_fragments() {
        let raw = StatVfs {
            bsize: 65536,
            frsize: 4096,
            blocks: 1000,
            bfree: 300,
            bavail: 200,
            flag: statvfs_flag::RDONLY,
            ..StatVfs::default()
        };
        let s = FsStats::from(raw);
        assert_eq!(s.total_bytes(), 4_096_000);
        assert_eq!(s.free_bytes(), 300 * 4096);
        assert_eq!(s.available_bytes(), 200 * 4096);
        assert!(s.is_read_only() && !s.is_nosuid());
        let no_fragments = FsStats::from(StatVfs { frsize: 0, ..raw });
        assert_eq!(no_fragments.available_bytes(), 200 * 65536);
        let huge = FsStats::from(StatVfs {
            bavail: u64::MAX,
            ..raw
        });
        assert_eq!(huge.available_bytes(), u64::MAX);
    }
}
