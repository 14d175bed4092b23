//! [`SftpSession`]: file operations on the partner's server, atomic
//! transfers, streaming handles; every public method is here, each a call
//! into the files below.
//!
//! One SFTP engine, this crate's own SFTP version 3 client, carries every
//! operation; libssh2 provides the SSH channels it runs on, not its SFTP
//! layer. In layers:
//! - `proto.rs`: packets encoded and decoded, no I/O;
//! - `channel.rs`: one SFTP channel: request ids, pipelining, which reply
//!   is whose, over any byte stream (an SSH channel, or a pipe to
//!   OpenSSH's `sftp-server` in the tests);
//! - `pool.rs`: the session's channels (the first opened with the session,
//!   more while all are busy, up to four; fewer when the server refuses);
//! - `fs.rs`: stat, listings, folders, removal, renames that never lose a
//!   file, links, file system statistics, server-side copies;
//!   `handle.rs`: the streaming handles (one open file that reads ahead
//!   and writes behind), opened as `open_options.rs` says;
//! - `transfer/`: uploads and downloads, alone, in pieces over several
//!   sessions, in waves of small files, and folder trees;
//! - `path.rs`, `metadata.rs`, `glob.rs`, `open_options.rs`: the public
//!   value types.
//!
//! Routing: every operation borrows a free channel of the pool for as
//! long as it runs; a streaming handle or a listing iterator returns to
//! the channel it was opened on. Names that come from the server are
//! checked in one place (`path::check_name`) before anything uses them.

mod channel;
mod fs;
mod glob;
mod handle;
mod metadata;
mod open_options;
mod path;
mod pool;
pub(crate) mod proto;
mod transfer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::conn::Dialer;
use crate::{ErrorKind, Result};
use pool::Pool;
use proto::{kind, Attrs};

pub use fs::ReadDir;
pub use glob::Glob;
pub use handle::{SftpFile, SftpReader, SftpWriter};
pub use metadata::{DirEntry, FileType, FsStats, Metadata, Permissions};
pub use open_options::OpenOptions;
pub use path::RemotePath;
pub use transfer::{
    Checksum, Delivery, DirReport, FileReport, Overwrite, Progress, TransferOptions, Verified,
    WriteOrder, DEFAULT_BUFFER_SIZE, DEFAULT_MIN_SEGMENT, DEFAULT_SESSIONS, DEFAULT_TEMP_NAME,
    PIPELINE_BUFFERS,
};

#[cfg(feature = "fuzzing")]
pub(crate) use proto::{decode_reply, decode_version};

/// What an [`SftpSession`], its clones and its handles share: the
/// channels, and the session they run on (kept open while any of them
/// lives).
pub(crate) struct Shared {
    pub(crate) pool: Arc<Pool>,
    /// The session's connections: the current one, and more like it.
    pub(crate) dialer: Arc<dyn Dialer>,
}

/// SFTP on a [`Session`](crate::Session): file operations on the partner's
/// server.
///
/// Opened with [`Session::sftp`](crate::Session::sftp). Remote paths are
/// byte strings, as SFTP carries them: pass a `&str`, a `String`, bytes
/// or a [`RemotePath`] (absolute, or relative to the login folder); they
/// are sent exactly as given. Every operation is bounded by the session's
/// [`timeout`](crate::SessionBuilder::timeout), and every error names the
/// server and the path.
///
/// The `SftpSession`, its clones, and every [`SftpFile`], [`SftpReader`],
/// [`SftpWriter`] and [`ReadDir`] opened on it keep the connection open; it closes when
/// the last of them and the [`Session`](crate::Session) are dropped.
///
/// `SftpSession` is `Send`, `Sync` and cheap to clone (clones share the
/// channels). Operations from several threads each borrow a channel of
/// their own (up to four are opened, fewer when the server refuses more);
/// libssh2 serialises the traffic of one connection, so for parallel
/// transfers [`TransferOptions::sessions`] opens more connections.
///
/// ```no_run
/// # fn main() -> Result<(), etl_ssh::Error> {
/// # let session: etl_ssh::Session = todo!();
/// let sftp = session.sftp()?;
/// sftp.create_dir_all("/inbox/2026/11")?;
/// let bytes = sftp.upload("out/orders.csv", "/inbox/2026/11/orders.csv")?;
/// for entry in sftp.read_dir("/outbox")? {
///     println!("{} {} bytes", entry.name(), entry.len());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SftpSession {
    shared: Arc<Shared>,
}

impl fmt::Debug for SftpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpSession")
            .field("target", &self.shared.pool.target())
            .finish_non_exhaustive()
    }
}

impl SftpSession {
    /// Opens the SFTP subsystem on a session's connection. Used by
    /// `Session::sftp`.
    pub(crate) fn start(dialer: Arc<dyn Dialer>) -> Result<SftpSession> {
        let pool = Pool::start(Arc::clone(&dialer))?;
        Ok(SftpSession {
            shared: Arc::new(Shared { pool, dialer }),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut channel::SftpChannel) -> Result<T>) -> Result<T> {
        f(&mut *self.shared.pool.any()?)
    }

    /// Metadata of `path`, following symlinks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when nothing is there,
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`]; every error names `path`.
    pub fn metadata(&self, path: impl AsRef<[u8]>) -> Result<Metadata> {
        self.with(|ch| fs::stat(ch, path.as_ref(), true))
    }

    /// Metadata of `path` itself, not following a symlink.
    ///
    /// # Errors
    ///
    /// As for [`metadata`](Self::metadata).
    pub fn symlink_metadata(&self, path: impl AsRef<[u8]>) -> Result<Metadata> {
        self.with(|ch| fs::stat(ch, path.as_ref(), false))
    }

    /// Whether `path` exists (following symlinks: a dangling link does not).
    ///
    /// # Errors
    ///
    /// Anything but "not found": [`ErrorKind::PermissionDenied`] when the
    /// server will not tell, [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn exists(&self, path: impl AsRef<[u8]>) -> Result<bool> {
        self.with(|ch| fs::exists(ch, path.as_ref()))
    }

    /// Lists the directory `path`, without `.` and `..`, in the server's
    /// order. Symlinks are reported as [`FileType::Symlink`], not followed.
    /// An entry whose name is not one path component (empty, or with `/`,
    /// `\` or NUL: a broken or hostile server) is skipped with a warning in
    /// the log, never joined onto a path.
    ///
    /// At most a million entries are held; [`read_dir_iter`](Self::read_dir_iter)
    /// holds one batch at a time.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`];
    /// [`ErrorKind::LimitExceeded`] past a million entries. Every error
    /// names `path`; a listing is never cut short silently.
    pub fn read_dir(&self, path: impl AsRef<[u8]>) -> Result<Vec<DirEntry>> {
        self.with(|ch| fs::read_dir(ch, path.as_ref()))
    }

    /// Lists the directory `path` as an iterator that reads the listing as
    /// it goes (one server reply, about a hundred entries, in memory at a
    /// time): for folders of any size. Names are checked as by
    /// [`read_dir`](Self::read_dir).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let mut bytes = 0;
    /// for entry in sftp.read_dir_iter("/outbox")? {
    ///     bytes += entry?.len();
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`read_dir`](Self::read_dir), when opening the folder; the
    /// iterator yields a later failure as its last item.
    pub fn read_dir_iter(&self, path: impl AsRef<[u8]>) -> Result<ReadDir> {
        ReadDir::open(Arc::clone(&self.shared.pool), path.as_ref())
    }

    /// Lists the entries of one folder whose names match a pattern:
    /// `sftp.glob("/outbox/*.csv")`. Wildcards are allowed in the last
    /// component only (see [`Glob`]); the folder part is taken literally.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a malformed pattern; otherwise as for
    /// [`read_dir`](Self::read_dir) on the folder.
    pub fn glob(&self, pattern: impl AsRef<str>) -> Result<Vec<DirEntry>> {
        let pattern = pattern.as_ref().as_bytes();
        let (dir, name) = match pattern.contains(&b'/') {
            true => (path::parent(pattern), path::file_name(pattern)),
            false => (b".".to_vec(), pattern),
        };
        let glob = Glob::new(String::from_utf8_lossy(name))?;
        let mut entries = self.read_dir(dir)?;
        entries.retain(|e| glob.matches(e.name()));
        Ok(entries)
    }

    /// Creates the directory `path` (mode `0o755`, less the server's umask).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyExists`] when something is there already,
    /// [`ErrorKind::NotFound`] when the parent is missing,
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn create_dir(&self, path: impl AsRef<[u8]>) -> Result<()> {
        self.create_dir_with_mode(path, 0o755)
    }

    /// Creates the directory `path` with the permission bits `mode` (e.g.
    /// `0o750`), as std's `DirBuilder::mode` on Unix. The server applies
    /// its umask (OpenSSH's `sftp-server` the process umask, or its `-u`
    /// option), so the result may have fewer bits: check with
    /// [`metadata`](Self::metadata), or [`set_permissions`](Self::set_permissions)
    /// afterwards for exact bits.
    ///
    /// # Errors
    ///
    /// As for [`create_dir`](Self::create_dir).
    pub fn create_dir_with_mode(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        self.with(|ch| fs::mkdir(ch, path.as_ref(), mode & 0o7777))
    }

    /// Creates `path` and any missing parents. Succeeds when `path` is an
    /// existing directory already.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyExists`] when `path` or a parent exists as
    /// something other than a directory, [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn create_dir_all(&self, path: impl AsRef<[u8]>) -> Result<()> {
        self.with(|ch| fs::mkdir_all(ch, path.as_ref(), 0o755))
    }

    /// Removes the file (or symlink) `path`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`]; a directory is
    /// refused (OpenSSH reports it as a failure, [`ErrorKind::Other`]).
    pub fn remove_file(&self, path: impl AsRef<[u8]>) -> Result<()> {
        self.with(|ch| fs::simple(ch, kind::REMOVE, "remove_file", path.as_ref()))
    }

    /// Removes the empty directory `path`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`]; a directory that
    /// is not empty is refused ([`ErrorKind::Other`] on OpenSSH).
    pub fn remove_dir(&self, path: impl AsRef<[u8]>) -> Result<()> {
        self.with(|ch| fs::simple(ch, kind::RMDIR, "remove_dir", path.as_ref()))
    }

    /// Removes the directory `path` and everything in it. Symlinks inside
    /// are removed, never followed; names are checked as by
    /// [`read_dir`](Self::read_dir); at most 64 levels deep.
    ///
    /// # Errors
    ///
    /// As for [`remove_file`](Self::remove_file) and
    /// [`remove_dir`](Self::remove_dir), naming the path that failed;
    /// [`ErrorKind::InvalidInput`] when `path` is not a directory;
    /// [`ErrorKind::LimitExceeded`] for a deeper tree.
    pub fn remove_dir_all(&self, path: impl AsRef<[u8]>) -> Result<()> {
        self.with(|ch| fs::remove_tree(ch, path.as_ref()))
    }

    /// Renames `from` to `to`, replacing `to` if it is a file, like
    /// [`std::fs::rename`].
    ///
    /// Uses `posix-rename@openssh.com` where the server offers it (OpenSSH
    /// does): the replacement is atomic. Otherwise the plain SFTP rename is
    /// tried, and when the server refuses it (SFTP v3 servers refuse to
    /// replace), `from` must exist (else nothing is touched), `to` is
    /// renamed aside to a unique name, `from` renamed to `to`, and the
    /// aside copy removed; a failure on the way puts the old file back.
    /// Not atomic then (`to` is briefly absent), but neither file is ever
    /// lost.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when `from` (or `to`'s folder) is missing,
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`]; each says what state the server is left in.
    pub fn rename(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        self.with(|ch| fs::rename_replace(ch, from.as_ref(), to.as_ref()))
    }

    /// Sets the permission bits of `path`: a mode (`0o640`) or
    /// [`Permissions`] (from [`Metadata::perms`], say).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn set_permissions(
        &self,
        path: impl AsRef<[u8]>,
        perms: impl Into<Permissions>,
    ) -> Result<()> {
        let attrs = Attrs::perm(perms.into().mode());
        self.with(|ch| fs::set_attrs(ch, "set_permissions", path.as_ref(), &attrs))
    }

    /// The server's absolute, canonical form of `path` (`REALPATH`):
    /// `sftp.canonicalize(".")` is the login folder.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] (OpenSSH resolves only existing paths),
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn canonicalize(&self, path: impl AsRef<[u8]>) -> Result<RemotePath> {
        self.with(|ch| fs::realpath(ch, path.as_ref()).map(RemotePath::new))
    }

    /// Where the symbolic link `path` points.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::Other`] when `path` is not a
    /// link, [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn read_link(&self, path: impl AsRef<[u8]>) -> Result<RemotePath> {
        self.with(|ch| fs::readlink(ch, path.as_ref()).map(RemotePath::new))
    }

    /// Makes `link` a symbolic link to `target`, as `ln -s target link`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Other`] when `link`
    /// exists, [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn symlink(&self, target: impl AsRef<[u8]>, link: impl AsRef<[u8]>) -> Result<()> {
        self.with(|ch| fs::symlink(ch, target.as_ref(), link.as_ref()))
    }

    /// Makes `link` a hard link to `target`, where the server offers
    /// `hardlink@openssh.com` (see [`supports_hard_link`](Self::supports_hard_link)).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`] without the extension;
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Other`] when `link`
    /// exists, [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn hard_link(&self, target: impl AsRef<[u8]>, link: impl AsRef<[u8]>) -> Result<()> {
        self.with(|ch| fs::hard_link(ch, target.as_ref(), link.as_ref()))
    }

    /// Sets the access and modification times of `path` (whole seconds, as
    /// SFTP v3 carries them).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn set_times(
        &self,
        path: impl AsRef<[u8]>,
        accessed: std::time::SystemTime,
        modified: std::time::SystemTime,
    ) -> Result<()> {
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        };
        let attrs = Attrs::times(secs(accessed), secs(modified));
        self.with(|ch| fs::set_attrs(ch, "set_times", path.as_ref(), &attrs))
    }

    /// Truncates or extends `path` to `len` bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn set_len(&self, path: impl AsRef<[u8]>, len: u64) -> Result<()> {
        let attrs = Attrs {
            size: Some(len),
            ..Attrs::default()
        };
        self.with(|ch| fs::set_attrs(ch, "set_len", path.as_ref(), &attrs))
    }

    /// The whole of a small remote file (a manifest, a `.done` marker): at
    /// most `max` bytes.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open); [`ErrorKind::LimitExceeded`] when the
    /// file holds more than `max` bytes.
    pub fn read(&self, path: impl AsRef<[u8]>, max: u64) -> Result<Vec<u8>> {
        use std::io::Read as _;
        let path = path.as_ref();
        let mut out = Vec::new();
        let reader = self.open(path)?;
        reader
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(crate::Error::from)?;
        if out.len() as u64 > max {
            return Err(channel::sftp_error(
                ErrorKind::LimitExceeded,
                "read",
                self.shared.pool.target(),
                path,
                format!("the file holds more than {max} bytes; stream it with SftpSession::open"),
            ));
        }
        Ok(out)
    }

    /// The whole of a small remote text file as a `String`: at most `max`
    /// bytes, as [`read`](Self::read).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let manifest = sftp.read_to_string("/outbox/manifest.txt", 1 << 20)?;
    /// for name in manifest.lines() {
    ///     println!("{name}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read); [`ErrorKind::Other`] when the file is
    /// not valid UTF-8 (the error says at which byte; `read` gives the
    /// bytes).
    pub fn read_to_string(&self, path: impl AsRef<[u8]>, max: u64) -> Result<String> {
        let path = path.as_ref();
        String::from_utf8(self.read(path, max)?).map_err(|e| {
            channel::sftp_error(
                ErrorKind::Other,
                "read_to_string",
                self.shared.pool.target(),
                path,
                format!(
                    "not valid UTF-8 text (at byte {}); SftpSession::read returns the bytes",
                    e.utf8_error().valid_up_to()
                ),
            )
        })
    }

    /// Writes `data` as the whole of `path` (created or truncated), and
    /// reports whether all of it arrived. Not atomic: for files a partner
    /// picks up, write a local file and [`upload`](Self::upload) it.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`SftpWriter::close`].
    pub fn write(&self, path: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Result<()> {
        use std::io::Write as _;
        let mut writer = self.create(path)?;
        writer
            .write_all(data.as_ref())
            .map_err(crate::Error::from)?;
        writer.close()
    }

    /// Whether the server offers `posix-rename@openssh.com` (atomic
    /// replacing renames).
    pub fn supports_posix_rename(&self) -> bool {
        self.extensions().posix_rename
    }

    /// Whether the server offers `fsync@openssh.com`.
    pub fn supports_fsync(&self) -> bool {
        self.extensions().fsync
    }

    /// Whether the server offers `hardlink@openssh.com`
    /// ([`hard_link`](Self::hard_link)).
    pub fn supports_hard_link(&self) -> bool {
        self.extensions().hardlink
    }

    /// Whether the server offers `statvfs@openssh.com`
    /// ([`statvfs`](Self::statvfs); OpenSSH does).
    pub fn supports_statvfs(&self) -> bool {
        self.extensions().statvfs
    }

    /// Whether the server offers `copy-data` ([`copy`](Self::copy);
    /// OpenSSH does from version 9.0).
    pub fn supports_copy(&self) -> bool {
        self.extensions().copy_data
    }

    /// Whether the server offers `limits@openssh.com`: it says how large
    /// its read and write requests may be, and transfers use that size
    /// (else 32 KiB, which every server takes).
    pub fn supports_limits(&self) -> bool {
        self.extensions().limits
    }

    /// Statistics of the file system `path` is on (free and available
    /// space, inodes, read-only), as `df` shows them, with the
    /// `statvfs@openssh.com` extension (see
    /// [`supports_statvfs`](Self::supports_statvfs)).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let room = sftp.statvfs("/inbox")?.available_bytes();
    /// let need = std::fs::metadata("out/orders.csv").map_or(0, |m| m.len());
    /// if room < need {
    ///     eprintln!("the partner's inbox is full: {room} bytes left");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`] naming `statvfs@openssh.com` when the
    /// server does not offer it; [`ErrorKind::NotFound`],
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn statvfs(&self, path: impl AsRef<[u8]>) -> Result<FsStats> {
        self.with(|ch| fs::statvfs(ch, path.as_ref()).map(FsStats::from))
    }

    /// Copies the file `from` to `to` on the server, without the data
    /// crossing the network (the `copy-data` extension, OpenSSH 9.0 and
    /// later; see [`supports_copy`](Self::supports_copy)), as
    /// [`std::fs::copy`]: `to` is replaced if it is a file, created with
    /// `from`'s permission bits (less the server's umask) if missing.
    /// Returns the bytes copied.
    ///
    /// Not atomic: `to` is written in place, and a copy that fails part
    /// way leaves it partly written. For a file a partner picks up, copy to
    /// a temporary name and [`rename`](Self::rename) it. `to` is cut to
    /// length after the data is copied, not before, so a `to` that is
    /// `from` under another name (a hard link) keeps its data.
    ///
    /// Without the extension this fails rather than moving the data through
    /// this machine: [`download`](Self::download) and
    /// [`upload`](Self::upload) do that.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`] naming `copy-data` when the server does
    /// not offer it; [`ErrorKind::InvalidInput`] when `from` is not a
    /// regular file or `from` and `to` are the same path;
    /// [`ErrorKind::NotFound`] (naming which), [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn copy(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<u64> {
        self.with(|ch| fs::copy(ch, from.as_ref(), to.as_ref()))
    }

    fn extensions(&self) -> channel::Extensions {
        self.shared
            .pool
            .any()
            .map(|ch| ch.extensions().clone())
            .unwrap_or_default()
    }

    /// Removes the temporary files `options` make (see
    /// [`TransferOptions::temp_name`]) from the remote folder `dir`, when
    /// they are regular files last modified more than `older_than` ago:
    /// what failed uploads left on the server when it refused to remove
    /// them or the connection was cut (a resumable upload's temporary
    /// file, too, once it is that old). Only names this crate makes are
    /// touched. Returns what it removed.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// use std::time::Duration;
    /// let options = etl_ssh::TransferOptions::new();
    /// let removed = sftp.remove_stale_temps("/inbox", Duration::from_secs(24 * 3600), &options)?;
    /// println!("{} stale temporary files removed", removed.len());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`read_dir`](Self::read_dir) and
    /// [`remove_file`](Self::remove_file) (the first removal refused stops
    /// it).
    pub fn remove_stale_temps(
        &self,
        dir: impl AsRef<[u8]>,
        older_than: std::time::Duration,
        options: &TransferOptions,
    ) -> Result<Vec<RemotePath>> {
        self.with(|ch| transfer::stale::remove_remote(ch, dir.as_ref(), older_than, options))
    }

    /// Opens `path` for reading, with read-ahead (see [`SftpReader`]):
    /// `std::io::copy` out of it is fast.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let mut reader = sftp.open("/outbox/big.csv")?;
    /// let mut out = std::fs::File::create("big.csv")?;
    /// std::io::copy(&mut reader, &mut out)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn open(&self, path: impl AsRef<[u8]>) -> Result<SftpReader> {
        let options = OpenOptions::new().read(true);
        self.open_as(path.as_ref(), &options, "open")
            .map(SftpReader::new)
    }

    /// Opens `path` as `options` say ([`OpenOptions`], std's idiom): to
    /// read, write, append, create, create only if new, truncate, with a
    /// creation mode. The [`SftpFile`] reads and writes as `options`
    /// allow: [`Read`](std::io::Read), [`BufRead`](std::io::BufRead),
    /// [`Write`](std::io::Write) and [`Seek`](std::io::Seek), with
    /// read-ahead and write-behind.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// use std::io::{Read, Seek, SeekFrom, Write};
    /// use etl_ssh::OpenOptions;
    ///
    /// // A counter file, read and rewritten through one handle.
    /// let options = OpenOptions::new().read(true).write(true).create(true);
    /// let mut file = sftp.open_with("/state/counter", &options)?;
    /// let mut text = String::new();
    /// file.read_to_string(&mut text)?;
    /// let n: u64 = text.trim().parse().unwrap_or(0);
    /// file.seek(SeekFrom::Start(0))?;
    /// writeln!(file, "{}", n + 1)?;
    /// file.close()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] naming the option for a combination std
    /// refuses too (nothing to open for; `truncate` without `write`;
    /// `create` or `create_new` without `write` or `append`; `append` with
    /// `truncate`), before anything is sent; [`ErrorKind::AlreadyExists`]
    /// with `create_new`; [`ErrorKind::NotFound`] (the file, or with
    /// `create` its folder), [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn open_with(&self, path: impl AsRef<[u8]>, options: &OpenOptions) -> Result<SftpFile> {
        self.open_as(path.as_ref(), options, "open")
    }

    fn open_as(&self, path: &[u8], options: &OpenOptions, op: &'static str) -> Result<SftpFile> {
        SftpFile::open(&self.shared, path, options, op)
    }

    /// Creates `path` (or truncates it) for writing, mode `0o644` less the
    /// server's umask, with write-behind (see [`SftpWriter`]). Not atomic:
    /// readers may see a partial file; use [`upload`](Self::upload) for
    /// files a partner picks up. [`open_with`](Self::open_with) with
    /// `OpenOptions::new().write(true).create(true).truncate(true)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when the folder is missing,
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn create(&self, path: impl AsRef<[u8]>) -> Result<SftpWriter> {
        let options = OpenOptions::new().write(true).create(true).truncate(true);
        self.open_as(path.as_ref(), &options, "create")
            .map(SftpWriter::new)
    }

    /// Opens `path` for writing at its end, creating it if missing:
    /// [`open_with`](Self::open_with) with
    /// `OpenOptions::new().append(true).create(true)`.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create).
    pub fn append(&self, path: impl AsRef<[u8]>) -> Result<SftpWriter> {
        let options = OpenOptions::new().append(true).create(true);
        self.open_as(path.as_ref(), &options, "append")
            .map(SftpWriter::new)
    }

    /// Uploads the local file `local` to `remote`, atomically, with the
    /// default [`TransferOptions`]; returns the number of bytes sent.
    ///
    /// The data goes to a temporary name beside `remote`
    /// (`.{name}.{unique}.part`, created with the local file's permission
    /// bits), is flushed with `fsync@openssh.com` where the server offers
    /// it, its size is checked, and then it is renamed over `remote` with
    /// `posix-rename@openssh.com`: a reader of `remote` sees the old file
    /// or the complete new one, never part of one. On any failure the
    /// temporary file is removed and the old `remote` is untouched; when
    /// the temporary file cannot be removed, the error names it.
    ///
    /// Without `posix-rename@openssh.com` (non-OpenSSH servers): see
    /// [`rename`](Self::rename): never a lost file, but `remote` may be
    /// briefly absent.
    ///
    /// The remote folder must exist: use
    /// [`create_dir_all`](Self::create_dir_all) first.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotFound`] when `local` or the remote folder is
    ///   missing (the error names which);
    /// - [`ErrorKind::PermissionDenied`] when the server refuses to create
    ///   or rename the file;
    /// - [`ErrorKind::Disconnected`] or [`ErrorKind::Timeout`] when the
    ///   connection breaks or stalls;
    /// - [`ErrorKind::Changed`] when the local file shrank meanwhile;
    /// - [`ErrorKind::Other`] when the size check fails;
    /// - [`ErrorKind::Io`] for a local read error.
    pub fn upload(&self, local: impl AsRef<Path>, remote: impl AsRef<[u8]>) -> Result<u64> {
        self.upload_with(local, remote, &TransferOptions::default())
    }

    /// [`upload`](Self::upload) with options (atomic or in place, overwrite
    /// policy, progress, ...).
    ///
    /// # Errors
    ///
    /// As for [`upload`](Self::upload), and [`ErrorKind::AlreadyExists`]
    /// with [`Overwrite::Never`] when `remote` exists.
    pub fn upload_with(
        &self,
        local: impl AsRef<Path>,
        remote: impl AsRef<[u8]>,
        options: &TransferOptions,
    ) -> Result<u64> {
        self.deliver(local, remote, options).map(|d| d.bytes())
    }

    /// [`upload_with`](Self::upload_with), reporting what was delivered:
    /// the bytes, how the file was checked (its size, or the bytes the
    /// server acknowledged when it refuses `stat`), and what the server
    /// refused that did not stop the delivery (a modification time it
    /// would not set, unless [`TransferOptions::strict_metadata`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let options = etl_ssh::TransferOptions::new().preserve_mtime(true);
    /// let delivery = sftp.deliver("out/orders.csv", "/inbox/orders.csv", &options)?;
    /// println!("{} bytes, {}", delivery.bytes(), delivery.verified());
    /// for warning in delivery.warnings() {
    ///     eprintln!("delivered, but: {warning}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`upload`](Self::upload). An error says whether anything was
    /// left on the server (each leftover named, and why it could not be
    /// removed), names the target (the temporary file as detail), and the
    /// option that fits the server where one does: a server that refuses
    /// renames ([`TransferOptions::atomic`]`(false)`), one that takes every
    /// file at close under the name it has then
    /// ([`TransferOptions::temp_dir`], or `atomic(false)`; this error is
    /// not transient, so a retry never delivers the data twice).
    pub fn deliver(
        &self,
        local: impl AsRef<Path>,
        remote: impl AsRef<[u8]>,
        options: &TransferOptions,
    ) -> Result<Delivery> {
        transfer::upload::upload_file(&self.shared, local.as_ref(), remote.as_ref(), options, None)
    }

    /// Downloads `remote` to the local file `local`, atomically, with the
    /// default [`TransferOptions`]; returns the number of bytes received.
    ///
    /// The data goes to a temporary file in `local`'s folder (created
    /// exclusively, mode `0o600`, never through a symlink), is flushed to
    /// the disk (`fsync`), its size is checked against the remote size,
    /// it gets the remote file's permission bits (less the umask), and it
    /// is renamed over `local`. A failed download leaves nothing at
    /// `local`'s name but the previous file, if there was one.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotFound`] when `remote` or `local`'s folder is
    ///   missing;
    /// - [`ErrorKind::PermissionDenied`] on either side;
    /// - [`ErrorKind::Disconnected`] or [`ErrorKind::Timeout`] when the
    ///   connection breaks or stalls;
    /// - [`ErrorKind::Changed`] when the remote file grew or shrank
    ///   meanwhile (a retry downloads the new version);
    /// - [`ErrorKind::Other`] when the size check fails;
    /// - [`ErrorKind::Io`] for a local write error.
    pub fn download(&self, remote: impl AsRef<[u8]>, local: impl AsRef<Path>) -> Result<u64> {
        self.download_with(remote, local, &TransferOptions::default())
    }

    /// [`download`](Self::download) with options.
    ///
    /// # Errors
    ///
    /// As for [`download`](Self::download), and
    /// [`ErrorKind::AlreadyExists`] with [`Overwrite::Never`] when `local`
    /// exists.
    pub fn download_with(
        &self,
        remote: impl AsRef<[u8]>,
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<u64> {
        self.fetch(remote, local, options).map(|d| d.bytes())
    }

    /// [`download_with`](Self::download_with), reporting what was
    /// delivered (see [`Delivery`]).
    ///
    /// # Errors
    ///
    /// As for [`download`](Self::download).
    pub fn fetch(
        &self,
        remote: impl AsRef<[u8]>,
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<Delivery> {
        transfer::download::download_file(
            &self.shared,
            remote.as_ref(),
            local.as_ref(),
            options,
            None,
        )
    }

    /// Uploads the local folder `local` to `remote`, recursively: folders
    /// (empty ones too) are created, each file is uploaded with `options`
    /// (atomic by default), names byte for byte. With
    /// [`TransferOptions::filter`], only files whose names match are sent;
    /// folders are always walked. Symbolic links are skipped unless
    /// [`TransferOptions::follow_symlinks`]; other special files always
    /// are. At most 64 levels deep. Returns the total bytes sent. The
    /// progress callback reports per file.
    ///
    /// # Errors
    ///
    /// Stops at the first failure, naming the file: those of
    /// [`upload`](Self::upload) and [`create_dir_all`](Self::create_dir_all),
    /// [`ErrorKind::Io`] for a local folder that cannot be read or a
    /// symbolic link that loops, [`ErrorKind::LimitExceeded`] for a tree
    /// deeper than 64 levels or of more than a million entries.
    pub fn upload_dir(
        &self,
        local: impl AsRef<Path>,
        remote: impl AsRef<[u8]>,
        options: &TransferOptions,
    ) -> Result<u64> {
        self.upload_dir_report(local, remote, options)?
            .into_result()
    }

    /// [`upload_dir`](Self::upload_dir), reporting every file: where it
    /// went, its bytes, and whether it was delivered (see [`DirReport`]).
    /// With [`TransferOptions::continue_on_error`] a failed file does not
    /// stop the others.
    ///
    /// # Errors
    ///
    /// Only what stops the whole transfer before any file moves (the
    /// remote folder cannot be created, the local one read); each file's
    /// failure is in the report.
    pub fn upload_dir_report(
        &self,
        local: impl AsRef<Path>,
        remote: impl AsRef<[u8]>,
        options: &TransferOptions,
    ) -> Result<DirReport> {
        transfer::tree::upload_dir(&self.shared, local.as_ref(), remote.as_ref(), options)
    }

    /// Downloads the remote folder `remote` into the local folder `local`,
    /// recursively: folders (empty ones too) are created, each file is
    /// downloaded with `options` (atomic by default), names byte for byte.
    /// With [`TransferOptions::filter`], only files whose names match are
    /// fetched; folders are always walked. Remote symlinks and special
    /// files are skipped. Every local path is `local` plus names the
    /// server sent that are one path component each (see
    /// [`read_dir`](Self::read_dir)): nothing is written outside `local`.
    /// At most 64 levels deep. Returns the total bytes received.
    ///
    /// # Errors
    ///
    /// Stops at the first failure, naming the file: those of
    /// [`download`](Self::download) and [`read_dir`](Self::read_dir),
    /// [`ErrorKind::Io`] for a local folder that cannot be created (or is
    /// there as something else, a symlink say), [`ErrorKind::LimitExceeded`]
    /// for a tree deeper than 64 levels or of more than a million entries.
    pub fn download_dir(
        &self,
        remote: impl AsRef<[u8]>,
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<u64> {
        self.download_dir_report(remote, local, options)?
            .into_result()
    }

    /// [`download_dir`](Self::download_dir), reporting every file (see
    /// [`upload_dir_report`](Self::upload_dir_report)).
    ///
    /// # Errors
    ///
    /// Only what stops the whole transfer before any file moves; each
    /// file's failure is in the report.
    pub fn download_dir_report(
        &self,
        remote: impl AsRef<[u8]>,
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<DirReport> {
        transfer::tree::download_dir(&self.shared, remote.as_ref(), local.as_ref(), options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<SftpSession>();
        send_sync::<SftpFile>();
        send_sync::<SftpReader>();
        send_sync::<SftpWriter>();
        send_sync::<ReadDir>();
        send_sync::<RemotePath>();
    }
}
