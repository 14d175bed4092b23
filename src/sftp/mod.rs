//! [`SftpSession`]: file operations on the partner's server, atomic
//! transfers, streaming handles.
//!
//! Layout: this file holds the session and the single-file operations
//! (stat, mkdir, rename, ...) on libssh2's SFTP channel; `wire.rs` our own
//! pipelined SFTP client on a channel beside it, which carries the
//! transfers, renames and removals; `transfer.rs` the atomic upload and
//! download with their [`TransferOptions`]; `parallel.rs` the work spread
//! over several sessions; `batch.rs` the small files that move in waves;
//! `file.rs` the streaming handles; `dir.rs` listings, glob patterns and
//! recursive transfers.

mod batch;
mod dir;
mod file;
mod parallel;
mod transfer;
mod wire;

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::debug;

use crate::error::code::{CHANNEL_CLOSED, CHANNEL_EOF_SENT};
use crate::error::{ssh2_code, ssh2_kind, BoxError};
use crate::session::SessionInner;
use crate::{Error, ErrorKind, Result};
use wire::Wire;

pub use dir::Glob;
pub use file::{SftpReader, SftpWriter};
pub use transfer::{
    Overwrite, TransferOptions, DEFAULT_MIN_SEGMENT, DEFAULT_SESSIONS, DEFAULT_TEMP_NAME,
    PIPELINE_BUFFERS,
};

/// The transfer buffer: 34 × 30,000 bytes, about 1 MiB.
///
/// The streaming handles ([`SftpReader`], [`SftpWriter`]) hand libssh2
/// reads and writes of this size; libssh2 splits them into 30,000-byte
/// requests and keeps as many in flight as the buffer holds. Transfers
/// ([`upload`](SftpSession::upload) and the rest) keep
/// [`PIPELINE_BUFFERS`] of them in flight per session on their own
/// channel. `BENCHMARKS.md` has the sizes we tried.
pub const DEFAULT_BUFFER_SIZE: usize = 34 * 30_000;

/// SFTP status codes (`SSH_FX_*`, draft-ietf-secsh-filexfer-13 §9.1).
pub(crate) mod status {
    pub(crate) const NO_SUCH_FILE: u32 = 2;
    pub(crate) const PERMISSION_DENIED: u32 = 3;
    pub(crate) const FAILURE: u32 = 4;
    pub(crate) const NO_CONNECTION: u32 = 6;
    pub(crate) const CONNECTION_LOST: u32 = 7;
    pub(crate) const OP_UNSUPPORTED: u32 = 8;
    pub(crate) const NO_SUCH_PATH: u32 = 10;
    pub(crate) const FILE_ALREADY_EXISTS: u32 = 11;
    pub(crate) const WRITE_PROTECT: u32 = 12;
}

fn status_name(s: u32) -> &'static str {
    match s {
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        9 => "invalid handle",
        10 => "no such path",
        11 => "file already exists",
        12 => "write protected",
        14 => "no space on file system",
        15 => "quota exceeded",
        18 => "directory not empty",
        19 => "not a directory",
        20 => "invalid file name",
        _ => "error",
    }
}

fn status_kind(s: u32) -> ErrorKind {
    match s {
        status::NO_SUCH_FILE | status::NO_SUCH_PATH => ErrorKind::NotFound,
        status::PERMISSION_DENIED | status::WRITE_PROTECT => ErrorKind::PermissionDenied,
        status::FILE_ALREADY_EXISTS => ErrorKind::AlreadyExists,
        status::NO_CONNECTION | status::CONNECTION_LOST => ErrorKind::Disconnected,
        status::OP_UNSUPPORTED => ErrorKind::Unsupported,
        _ => ErrorKind::Other,
    }
}

/// The SFTP status of a libssh2 error, if it is one.
fn sftp_status(err: &ssh2::Error) -> Option<u32> {
    match err.code() {
        ssh2::ErrorCode::SFTP(s) => u32::try_from(s).ok(),
        ssh2::ErrorCode::Session(_) => None,
    }
}

/// Maps a libssh2 error from an SFTP call on `path`.
pub(crate) fn sftp_error(operation: &'static str, path: &str, err: ssh2::Error) -> Error {
    let status = sftp_status(&err);
    let (kind, reason) = match status {
        Some(s) => (status_kind(s), status_name(s).to_string()),
        None => {
            let kind = match ssh2_code(&err) {
                CHANNEL_CLOSED | CHANNEL_EOF_SENT => ErrorKind::Disconnected,
                _ => ssh2_kind(&err),
            };
            let reason = match kind {
                ErrorKind::Timeout => format!("timed out ({})", err.message()),
                ErrorKind::Disconnected => format!("connection lost ({})", err.message()),
                _ => err.message().to_string(),
            };
            (kind, reason)
        }
    };
    Error::Sftp {
        kind,
        operation,
        path: path.to_string(),
        status,
        reason,
        source: Some(Box::new(err) as BoxError),
    }
}

/// An error of our own making on `path` (no libssh2 error behind it).
pub(crate) fn sftp_failure(
    kind: ErrorKind,
    operation: &'static str,
    path: &str,
    reason: impl Into<String>,
) -> Error {
    Error::Sftp {
        kind,
        operation,
        path: path.to_string(),
        status: None,
        reason: reason.into(),
        source: None,
    }
}

/// Like [`sftp_error`] for the `io::Error` that `ssh2::File`'s `Read` and
/// `Write` return. ssh2 keeps only the message in those, so the session's
/// last error code is read from `ssh`: call this right after the failing
/// call, still holding the operation lock. Pass `None` where the session is
/// not at hand (an `io::Error` of our own).
pub(crate) fn sftp_io_error(
    operation: &'static str,
    path: &str,
    err: std::io::Error,
    ssh: Option<&ssh2::Session>,
) -> Error {
    // Our own Error, converted to io::Error by a handle: unwrap it.
    if err
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<Error>().is_some())
    {
        if let Some(inner) = err.into_inner() {
            if let Ok(e) = inner.downcast::<Error>() {
                return *e;
            }
        }
        return sftp_failure(ErrorKind::Other, operation, path, "i/o error");
    }
    let kind = match err.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => ErrorKind::Disconnected,
        _ => ErrorKind::Other,
    };
    if kind == ErrorKind::Other {
        if let Some(last) = ssh.and_then(ssh2::Error::last_session_error) {
            // An SFTP status error shows as LIBSSH2_ERROR_SFTP_PROTOCOL
            // (-31) here; its status is lost in the io::Error, keep "Other".
            if ssh2_code(&last) != -31 {
                return sftp_error(operation, path, last);
            }
        }
    }
    Error::Sftp {
        kind,
        operation,
        path: path.to_string(),
        status: None,
        reason: err.to_string(),
        source: Some(Box::new(err) as BoxError),
    }
}

/// What a [`SftpSession`] and its handles share: the SFTP channels and
/// the connection under them.
pub(crate) struct Shared {
    /// libssh2's SFTP channel (listings, metadata, folders, the streaming
    /// handles), opened on first use; taken by `Drop`.
    sftp: OnceLock<ssh2::Sftp>,
    /// Our own pipelined SFTP channels (`wire.rs`) for transfers, renames
    /// and removals: one per operation running at a time (at most
    /// [`MAX_WIRES`]), kept for reuse.
    wires: Mutex<Wires>,
    /// Signalled when a wire is handed back.
    wire_free: Condvar,
    /// Set once the server answered `fsync@openssh.com` with "unsupported"
    /// on libssh2's channel.
    no_fsync: AtomicBool,
    pub(crate) inner: Arc<SessionInner>,
}

/// How many of our SFTP channels one session opens at most: concurrent
/// operations beyond that wait for one. OpenSSH allows 10 channels per
/// connection (`MaxSessions`), shared with libssh2's SFTP channel and exec.
const MAX_WIRES: usize = 4;

/// The wires of a session.
struct Wires {
    /// Open and not in use.
    idle: Vec<Wire>,
    /// Open, in use or idle.
    open: usize,
}

impl Shared {
    /// libssh2's SFTP channel, opened on first use. Callers hold
    /// `inner.lock()`.
    pub(crate) fn sftp(&self) -> Result<&ssh2::Sftp> {
        if let Some(sftp) = self.sftp.get() {
            return Ok(sftp);
        }
        let sftp = self
            .inner
            .ssh
            .sftp()
            .map_err(|e| start_error(&self.inner, e))?;
        Ok(self.sftp.get_or_init(|| sftp))
    }

    /// Runs `f` on a wire of its own: an idle one, a new channel, or, when
    /// [`MAX_WIRES`] are busy (or the server refuses another channel while
    /// some are open), the next one handed back. The caller does not hold
    /// the lock. Wires whose channel failed are closed.
    pub(crate) fn with_wire<T>(&self, f: impl FnOnce(&mut Wire) -> Result<T>) -> Result<T> {
        let mut wire = self.take_wire()?;
        let result = f(&mut wire);
        let mut pool = self.wires.lock().unwrap_or_else(|e| e.into_inner());
        if wire.is_broken() {
            pool.open -= 1;
            drop(pool);
            let _g = self.inner.lock();
            self.inner.cleanup(|| wire.shutdown());
        } else {
            pool.idle.push(wire);
        }
        self.wire_free.notify_one();
        result
    }

    fn take_wire(&self) -> Result<Wire> {
        let mut pool = self.wires.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(wire) = pool.idle.pop() {
                return Ok(wire);
            }
            if pool.open < MAX_WIRES {
                pool.open += 1;
                drop(pool);
                let opened = Wire::open(&self.inner);
                pool = self.wires.lock().unwrap_or_else(|e| e.into_inner());
                match opened {
                    Ok(wire) => return Ok(wire),
                    Err(e) => {
                        pool.open -= 1;
                        if pool.open == 0 {
                            return Err(e);
                        }
                        debug!("another SFTP channel refused ({e}); waiting for one in use");
                    }
                }
            }
            pool = self.wire_free.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// `fsync@openssh.com` on a file open on libssh2's channel; `Ok(false)`
    /// when the server does not offer it. The caller holds `inner.lock()`.
    pub(crate) fn fsync(&self, file: &mut ssh2::File, path: &str) -> Result<bool> {
        if self.no_fsync.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match file.fsync() {
            Ok(()) => Ok(true),
            Err(e) if sftp_status(&e) == Some(status::OP_UNSUPPORTED) => {
                debug!("{} does not offer fsync@openssh.com", self.inner.target());
                self.no_fsync.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(sftp_error("fsync", path, e)),
        }
    }

    /// `stat` of `path`.
    fn stat(&self, path: &str) -> Result<Metadata> {
        self.with_wire(|w| w.stat(path))
    }

    /// Whether `path` exists (following symlinks).
    fn exists(&self, path: &str) -> Result<bool> {
        self.with_wire(|w| w.exists(path))
    }
}

/// The error for an SFTP subsystem that would not start.
fn start_error(inner: &SessionInner, e: ssh2::Error) -> Error {
    let mut err = sftp_error("start", "", e);
    if let Error::Sftp { path, reason, .. } = &mut err {
        *path = inner.target();
        reason.push_str(" (does the server enable the sftp subsystem?)");
    }
    err
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _g = self.inner.lock();
        let wires =
            std::mem::take(&mut self.wires.get_mut().unwrap_or_else(|e| e.into_inner()).idle);
        let sftp = self.sftp.take();
        let inner = &self.inner;
        inner.cleanup(|| {
            for wire in wires {
                wire.shutdown();
            }
            // ssh2 closes the SFTP channel when it is dropped: do it here,
            // under the lock, so the session is in blocking mode.
            drop(sftp);
        });
    }
}

/// An SFTP channel on a [`Session`](crate::Session): file operations on
/// the partner's server.
///
/// Opened with [`Session::sftp`](crate::Session::sftp). Remote paths are
/// plain strings, as the server understands them (absolute, or relative to
/// the login folder). Every operation is bounded by the session's
/// [`timeout`](crate::SessionBuilder::timeout).
///
/// The `SftpSession`, and every [`SftpReader`] and [`SftpWriter`] opened on
/// it, keep the connection open; it closes when the last of them and the
/// [`Session`](crate::Session) are dropped.
///
/// `SftpSession` is `Send` and `Sync`. libssh2 serialises calls on one
/// session, so operations from several threads take turns; for parallel
/// transfers, open several sessions.
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
pub struct SftpSession {
    shared: Arc<Shared>,
}

impl fmt::Debug for SftpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpSession")
            .field("target", &self.shared.inner.target())
            .finish_non_exhaustive()
    }
}

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
    Symlink,
    /// Anything else (device, socket, pipe), or the server did not say.
    Other,
}

/// Metadata of a remote file, as the server reports it.
///
/// SFTP v3 lets a server leave any field out; OpenSSH always sends all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    size: Option<u64>,
    mode: Option<u32>,
    mtime: Option<u64>,
    atime: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl From<ssh2::FileStat> for Metadata {
    fn from(s: ssh2::FileStat) -> Self {
        Metadata {
            size: s.size,
            mode: s.perm,
            mtime: s.mtime,
            atime: s.atime,
            uid: s.uid,
            gid: s.gid,
        }
    }
}

fn to_time(secs: Option<u64>) -> Option<SystemTime> {
    secs.and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
}

impl Metadata {
    /// The size in bytes (0 when the server did not say).
    pub fn len(&self) -> u64 {
        self.size.unwrap_or(0)
    }

    /// Whether the size is 0 (or unknown).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What kind of file this is.
    pub fn file_type(&self) -> FileType {
        match self.mode.map(|m| m & 0o170_000) {
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
        self.mode.map(|m| m & 0o7777)
    }

    /// Last modification time (whole seconds), when the server said.
    pub fn modified(&self) -> Option<SystemTime> {
        to_time(self.mtime)
    }

    /// Last access time (whole seconds), when the server said.
    pub fn accessed(&self) -> Option<SystemTime> {
        to_time(self.atime)
    }

    /// Numeric owner id, when the server said.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// Numeric group id, when the server said.
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }
}

/// One entry of a remote directory listing ([`SftpSession::read_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    name: String,
    name_bytes: Vec<u8>,
    path: String,
    metadata: Metadata,
}

impl DirEntry {
    /// The file name. A name that is not valid UTF-8 is shown with
    /// U+FFFD replacement characters; [`name_bytes`](Self::name_bytes) has
    /// the exact bytes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file name exactly as the server sent it.
    pub fn name_bytes(&self) -> &[u8] {
        &self.name_bytes
    }

    /// The directory as given to `read_dir`, `/`, and the name (lossy for
    /// names that are not UTF-8, see [`name`](Self::name)).
    pub fn path(&self) -> &str {
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

/// `dir` + `/` + `name`, without doubling a trailing slash.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent folder of a remote path (`"."` for a bare name).
pub(crate) fn parent(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => "/",
        Some(i) => &trimmed[..i],
        None => ".",
    }
}

/// The last component of a remote path.
pub(crate) fn file_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

impl SftpSession {
    /// Opens the SFTP subsystem on `inner`. Used by `Session::sftp`.
    pub(crate) fn start(inner: Arc<SessionInner>) -> Result<SftpSession> {
        // The wire is opened now, so that a server without the subsystem
        // fails here; libssh2's channel opens on first use.
        let wire = Wire::open(&inner)?;
        Ok(SftpSession {
            shared: Arc::new(Shared {
                sftp: OnceLock::new(),
                wires: Mutex::new(Wires {
                    idle: vec![wire],
                    open: 1,
                }),
                wire_free: Condvar::new(),
                no_fsync: AtomicBool::new(false),
                inner,
            }),
        })
    }

    /// Metadata of `path`, following symlinks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when nothing is there,
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`]; every error names `path`.
    pub fn metadata(&self, path: impl AsRef<str>) -> Result<Metadata> {
        self.shared.stat(path.as_ref())
    }

    /// Metadata of `path` itself, not following a symlink.
    ///
    /// # Errors
    ///
    /// As for [`metadata`](Self::metadata).
    pub fn symlink_metadata(&self, path: impl AsRef<str>) -> Result<Metadata> {
        let path = path.as_ref();
        let _g = self.shared.inner.lock();
        self.shared
            .sftp()?
            .lstat(Path::new(path))
            .map(Metadata::from)
            .map_err(|e| sftp_error("lstat", path, e))
    }

    /// Whether `path` exists (following symlinks: a dangling link does not).
    ///
    /// # Errors
    ///
    /// Anything but "not found": [`ErrorKind::PermissionDenied`] when the
    /// server will not tell, [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn exists(&self, path: impl AsRef<str>) -> Result<bool> {
        self.shared.exists(path.as_ref())
    }

    /// Lists the directory `path`, without `.` and `..`, in the server's
    /// order. Symlinks are reported as [`FileType::Symlink`], not followed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`]; every error
    /// names `path`.
    pub fn read_dir(&self, path: impl AsRef<str>) -> Result<Vec<DirEntry>> {
        let path = path.as_ref();
        let listing = {
            let _g = self.shared.inner.lock();
            self.shared
                .sftp()?
                .readdir(Path::new(path))
                .map_err(|e| sftp_error("read_dir", path, e))?
        };
        Ok(listing
            .into_iter()
            .map(|(p, stat)| {
                let name_bytes = name_bytes(&p);
                let name = String::from_utf8_lossy(&name_bytes).into_owned();
                DirEntry {
                    path: join(path, &name),
                    name,
                    name_bytes,
                    metadata: Metadata::from(stat),
                }
            })
            .collect())
    }

    /// Creates the directory `path` (mode `0o755`, less the server's umask).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyExists`] when something is there already,
    /// [`ErrorKind::NotFound`] when the parent is missing,
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn create_dir(&self, path: impl AsRef<str>) -> Result<()> {
        let path = path.as_ref();
        let result = {
            let _g = self.shared.inner.lock();
            self.shared.sftp()?.mkdir(Path::new(path), 0o755)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = sftp_error("create_dir", path, e);
                // SFTP v3 has no "already exists": OpenSSH says FAILURE.
                // A FAILURE with something there means just that.
                if err.kind() == ErrorKind::Other && self.shared.exists(path).unwrap_or(false) {
                    return Err(sftp_failure(
                        ErrorKind::AlreadyExists,
                        "create_dir",
                        path,
                        "already exists",
                    ));
                }
                if err.kind() == ErrorKind::Other
                    && !self.shared.exists(parent(path)).unwrap_or(true)
                {
                    return Err(sftp_failure(
                        ErrorKind::NotFound,
                        "create_dir",
                        path,
                        format!("the parent folder {} does not exist", parent(path)),
                    ));
                }
                Err(err)
            }
        }
    }

    /// Creates `path` and any missing parents. Succeeds when `path` is an
    /// existing directory already.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyExists`] when `path` or a parent exists as
    /// something other than a directory, [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn create_dir_all(&self, path: impl AsRef<str>) -> Result<()> {
        let path = path.as_ref();
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() || trimmed == "." {
            return Ok(());
        }
        match self.shared.stat(trimmed) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(sftp_failure(
                    ErrorKind::AlreadyExists,
                    "create_dir_all",
                    trimmed,
                    "exists and is not a directory",
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let up = parent(trimmed);
        if up != trimmed {
            self.create_dir_all(up)?;
        }
        match self.create_dir(trimmed) {
            Ok(()) => Ok(()),
            // Someone else made it meanwhile.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match self.shared.stat(trimmed) {
                Ok(m) if m.is_dir() => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Removes the file (or symlink) `path`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`]; a directory is
    /// refused (OpenSSH reports it as a failure, [`ErrorKind::Other`]).
    pub fn remove_file(&self, path: impl AsRef<str>) -> Result<()> {
        let path = path.as_ref();
        let _g = self.shared.inner.lock();
        self.shared
            .sftp()?
            .unlink(Path::new(path))
            .map_err(|e| sftp_error("remove_file", path, e))
    }

    /// Removes the empty directory `path`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`]; a directory that
    /// is not empty is refused ([`ErrorKind::Other`] on OpenSSH).
    pub fn remove_dir(&self, path: impl AsRef<str>) -> Result<()> {
        let path = path.as_ref();
        let _g = self.shared.inner.lock();
        self.shared
            .sftp()?
            .rmdir(Path::new(path))
            .map_err(|e| sftp_error("remove_dir", path, e))
    }

    /// Removes the directory `path` and everything in it. Symlinks inside
    /// are removed, never followed.
    ///
    /// # Errors
    ///
    /// As for [`remove_file`](Self::remove_file) and
    /// [`remove_dir`](Self::remove_dir), naming the path that failed;
    /// [`ErrorKind::InvalidInput`] when `path` is not a directory.
    pub fn remove_dir_all(&self, path: impl AsRef<str>) -> Result<()> {
        let path = path.as_ref();
        let meta = self.symlink_metadata(path)?;
        if !meta.is_dir() {
            return Err(sftp_failure(
                ErrorKind::InvalidInput,
                "remove_dir_all",
                path,
                "not a directory",
            ));
        }
        self.remove_tree(path)
    }

    fn remove_tree(&self, path: &str) -> Result<()> {
        for entry in self.read_dir(path)? {
            let child = join(path, &entry.name);
            if entry.file_type() == FileType::Dir {
                self.remove_tree(&child)?;
            } else {
                self.remove_file(&child)?;
            }
        }
        self.remove_dir(path)
    }

    /// Renames `from` to `to`, replacing `to` if it is a file, like
    /// [`std::fs::rename`].
    ///
    /// Uses `posix-rename@openssh.com` where the server offers it (OpenSSH
    /// does): the replacement is atomic. Otherwise a plain SFTP rename is
    /// tried, and when the server refuses it because `to` exists (SFTP v3
    /// servers do), `to` is removed first and the rename retried: **not
    /// atomic**, `to` is briefly absent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] when `from` (or `to`'s folder) is missing,
    /// [`ErrorKind::PermissionDenied`], [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
    pub fn rename(&self, from: impl AsRef<str>, to: impl AsRef<str>) -> Result<()> {
        self.shared
            .with_wire(|w| w.rename_replace(from.as_ref(), to.as_ref()))
    }

    /// Sets the permission bits of `path` (e.g. `0o640`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], [`ErrorKind::PermissionDenied`],
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn set_permissions(&self, path: impl AsRef<str>, mode: u32) -> Result<()> {
        let path = path.as_ref();
        let stat = ssh2::FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: Some(mode & 0o7777),
            atime: None,
            mtime: None,
        };
        let _g = self.shared.inner.lock();
        self.shared
            .sftp()?
            .setstat(Path::new(path), stat)
            .map_err(|e| sftp_error("set_permissions", path, e))
    }
}

/// The last component of a path from ssh2's listing, as raw bytes.
fn name_bytes(p: &Path) -> Vec<u8> {
    let name = p.file_name().unwrap_or(p.as_os_str());
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        name.as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        name.to_string_lossy().into_owned().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    #[test]
    fn paths_split_and_join() {
        assert_eq!(parent("/inbox/a.csv"), "/inbox");
        assert_eq!(parent("/a.csv"), "/");
        assert_eq!(parent("a.csv"), ".");
        assert_eq!(parent("in/a.csv/"), "in");
        assert_eq!(file_name("/inbox/a.csv"), "a.csv");
        assert_eq!(file_name("a.csv"), "a.csv");
        assert_eq!(join("/inbox/", "a"), "/inbox/a");
        assert_eq!(join("/inbox", "a"), "/inbox/a");
        assert_eq!(join(".", "a"), "a");
    }

    #[test]
    fn status_maps_to_kind() {
        assert_eq!(status_kind(2), ErrorKind::NotFound);
        assert_eq!(status_kind(3), ErrorKind::PermissionDenied);
        assert_eq!(status_kind(11), ErrorKind::AlreadyExists);
        assert_eq!(status_kind(7), ErrorKind::Disconnected);
        assert_eq!(status_kind(4), ErrorKind::Other);
        let err = sftp_error(
            "stat",
            "/x",
            ssh2::Error::new(ssh2::ErrorCode::Session(code::TIMEOUT), "t"),
        );
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(err.to_string().contains("/x"), "{err}");
    }
}
