//! Atomic upload and download, and their [`TransferOptions`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ssh2::OpenFlags;

use super::parallel::{download_segments, upload_segments, Workers};
use super::{
    file_name, join, parent, sftp_error, sftp_failure, sftp_io_error, Glob, SftpSession, Shared,
    DEFAULT_BUFFER_SIZE,
};
use crate::{Error, ErrorKind, Result};

/// What to do when the target of a transfer exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overwrite {
    /// Replace it (the default). With [`TransferOptions::atomic`], readers
    /// see the old file or the new one, never a mix.
    #[default]
    Replace,
    /// Fail with [`ErrorKind::AlreadyExists`] and leave it alone. Checked
    /// before the transfer starts and again when the file is put in place
    /// (on OpenSSH the final rename itself refuses to replace, so a file
    /// that appears meanwhile is not overwritten).
    Never,
}

type ProgressFn = dyn Fn(u64, u64) + Send + Sync;

/// How [`SftpSession::upload_with`] and [`SftpSession::download_with`]
/// move a file. `TransferOptions::default()` is what
/// [`upload`](SftpSession::upload) and [`download`](SftpSession::download)
/// use.
///
/// ```no_run
/// use etl_ssh::{Overwrite, TransferOptions};
///
/// # fn main() -> Result<(), etl_ssh::Error> {
/// # let sftp: etl_ssh::SftpSession = todo!();
/// let options = TransferOptions::new()
///     .overwrite(Overwrite::Never)
///     .preserve_mtime(true)
///     .progress(|done, total| eprintln!("{done} / {total} bytes"));
/// sftp.upload_with("out/orders.csv", "/inbox/orders.csv", &options)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TransferOptions {
    pub(crate) atomic: bool,
    pub(crate) temp_name: String,
    pub(crate) overwrite: Overwrite,
    pub(crate) preserve_mtime: bool,
    pub(crate) fsync: bool,
    pub(crate) verify_size: bool,
    pub(crate) resume: bool,
    pub(crate) sessions: usize,
    pub(crate) min_segment_size: u64,
    pub(crate) buffer_size: usize,
    pub(crate) progress: Option<Arc<ProgressFn>>,
    pub(crate) filter: Option<Glob>,
}

/// Default for [`TransferOptions::sessions`].
pub const DEFAULT_SESSIONS: usize = 4;
/// Default for [`TransferOptions::min_segment_size`]: 32 MiB.
pub const DEFAULT_MIN_SEGMENT: u64 = 32 << 20;
/// Files per extra session in a folder transfer: fewer files than this
/// are not worth another connection.
const FILES_PER_SESSION: usize = 16;

/// Default for [`TransferOptions::temp_name`].
pub const DEFAULT_TEMP_NAME: &str = ".{name}.{unique}.part";

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            atomic: true,
            temp_name: DEFAULT_TEMP_NAME.to_string(),
            overwrite: Overwrite::Replace,
            preserve_mtime: false,
            fsync: true,
            verify_size: true,
            resume: false,
            sessions: DEFAULT_SESSIONS,
            min_segment_size: DEFAULT_MIN_SEGMENT,
            buffer_size: DEFAULT_BUFFER_SIZE,
            progress: None,
            filter: None,
        }
    }
}

impl fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferOptions")
            .field("atomic", &self.atomic)
            .field("temp_name", &self.temp_name)
            .field("overwrite", &self.overwrite)
            .field("preserve_mtime", &self.preserve_mtime)
            .field("fsync", &self.fsync)
            .field("verify_size", &self.verify_size)
            .field("resume", &self.resume)
            .field("sessions", &self.sessions)
            .field("min_segment_size", &self.min_segment_size)
            .field("buffer_size", &self.buffer_size)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(u64, u64)"))
            .field("filter", &self.filter.as_ref().map(Glob::as_str))
            .finish()
    }
}

impl TransferOptions {
    /// The defaults: atomic, replace, fsync, verify size, no mtime.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write to a temporary name beside the target and rename it into place
    /// when complete (the default, `true`), so nobody ever sees a partial
    /// file at the target name. `false` writes straight to the target:
    /// for partner servers that forbid renames; a failed transfer then
    /// leaves a partial file there.
    pub fn atomic(mut self, on: bool) -> Self {
        self.atomic = on;
        self
    }

    /// The temporary name, in the target's folder: `{name}` is replaced by
    /// the target's file name and `{unique}` by a string unique to this
    /// process and transfer. Defaults to `.{name}.{unique}.part` (a hidden
    /// name that a partner's `*.csv` pattern does not match). A pattern
    /// without `{unique}` gets `.{unique}` appended.
    pub fn temp_name(mut self, pattern: impl Into<String>) -> Self {
        self.temp_name = pattern.into();
        self
    }

    /// What to do when the target exists. Defaults to [`Overwrite::Replace`].
    pub fn overwrite(mut self, policy: Overwrite) -> Self {
        self.overwrite = policy;
        self
    }

    /// Give the target the source's modification time (whole seconds).
    /// Defaults to `false`: the target gets the time it was written.
    pub fn preserve_mtime(mut self, on: bool) -> Self {
        self.preserve_mtime = on;
        self
    }

    /// Flush the file to the disk before it is renamed into place: on the
    /// server with `fsync@openssh.com` when it offers it (skipped silently
    /// otherwise), locally with `fsync`. Defaults to `true`.
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Check that the written file's size equals the bytes sent before it
    /// is put in place. Defaults to `true`.
    pub fn verify_size(mut self, on: bool) -> Self {
        self.verify_size = on;
        self
    }

    /// Let a failed atomic transfer be resumed by the next attempt, instead
    /// of starting over. Defaults to `false`.
    ///
    /// With `true`, the temporary file's `{unique}` part is derived from
    /// the target and the source's size and modification time, and a
    /// failed transfer leaves its (hidden, never at the target name)
    /// temporary file behind. The next transfer of the same, unchanged
    /// source to the same target finds it and carries on from its size,
    /// less one buffer that is sent again in case the last write was torn;
    /// a changed source gets a new name and starts over. A download resumes
    /// when the remote file's size and mtime are unchanged; an upload
    /// resumes from the remote temporary file's size. The result is
    /// byte-identical to an uninterrupted transfer, and the size check still
    /// runs. Pair it with [`RetryPolicy`](crate::RetryPolicy) for transfers
    /// across unreliable links.
    pub fn resume(mut self, on: bool) -> Self {
        self.resume = on;
        self
    }

    /// At most this many sessions (connections) work on one transfer.
    /// Defaults to 4; 1 keeps everything on the caller's session.
    ///
    /// A file of at least twice
    /// [`min_segment_size`](Self::min_segment_size) is cut into segments
    /// that several sessions move at once, each writing at its offset into
    /// the one temporary file, which is checked and renamed into place only
    /// when every segment is done: atomicity is kept. A folder transfer
    /// spreads its files over the sessions, one more per 16 files. The extra
    /// sessions are new connections with the same settings
    /// ([`Session::connect_another`](crate::Session::connect_another)); if
    /// the server refuses some (a connection limit), the work goes to the
    /// ones that opened, and a warning says so. In-place and
    /// [`resume`](Self::resume) transfers of one file use one session.
    ///
    /// On a link with a long round trip, more sessions carry more bytes in
    /// flight (see BENCHMARKS.md); on loopback they mostly share the CPU.
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self
    }

    /// The smallest segment of a segment-parallel transfer; files under
    /// twice this size use one session. Defaults to 32 MiB.
    pub fn min_segment_size(mut self, bytes: u64) -> Self {
        self.min_segment_size = bytes.max(1);
        self
    }

    /// How many sessions a file of `total` bytes gets.
    pub(crate) fn sessions_for_file(&self, total: u64) -> usize {
        if !self.atomic || self.resume {
            return 1;
        }
        let segments = usize::try_from(total / self.min_segment_size).unwrap_or(usize::MAX);
        self.sessions.min(segments).max(1)
    }

    /// How many sessions a folder of `files` files gets.
    pub(crate) fn sessions_for_files(&self, files: usize) -> usize {
        self.sessions.min(files.div_ceil(FILES_PER_SESSION)).max(1)
    }

    /// Bytes per read and write handed to libssh2; rounded up to a multiple
    /// of 30,000 (libssh2's request size). Defaults to
    /// [`DEFAULT_BUFFER_SIZE`](crate::DEFAULT_BUFFER_SIZE), about 1 MiB.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes.max(1).div_ceil(30_000) * 30_000;
        self
    }

    /// Called with `(bytes done, total bytes)` after each buffer, and once
    /// at the start with `(0, total)`. Fits a progress bar, e.g.
    /// indicatif's: `.progress(move |done, _| bar.set_position(done))`.
    pub fn progress(mut self, callback: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// For [`upload_dir`](SftpSession::upload_dir) and
    /// [`download_dir`](SftpSession::download_dir): transfer only files
    /// whose names match (folders are always walked). Defaults to none:
    /// every file.
    pub fn filter(mut self, glob: Glob) -> Self {
        self.filter = Some(glob);
        self
    }

    pub(crate) fn report(&self, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(done, total);
        }
    }

    /// The temporary file name for `name`. With [`resume`](Self::resume),
    /// `source_id` (the source's identity: path, size, mtime) makes the
    /// `{unique}` part the same on every attempt.
    pub(crate) fn temp_for(&self, name: &str, source_id: &str) -> String {
        let mut pattern = self.temp_name.clone();
        if !pattern.contains("{unique}") {
            pattern.push_str(".{unique}");
        }
        let unique = if self.resume {
            resumable_id(name, source_id)
        } else {
            unique()
        };
        pattern.replace("{name}", name).replace("{unique}", &unique)
    }

    /// Where to carry on with a temporary file of `found` bytes for a
    /// source of `total`: one buffer back, in case the last write was torn;
    /// `None` to start over.
    fn resume_from(&self, found: u64, total: u64) -> Option<u64> {
        if !self.resume || found == 0 || found > total {
            return None;
        }
        Some(found.saturating_sub(self.buffer_size as u64))
    }
}

/// A stable `{unique}` for a resumable transfer: the same target and
/// unchanged source give the same name on every attempt.
fn resumable_id(name: &str, source_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(source_id.as_bytes())
        .finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("resume-{hex}")
}

/// A string unique to this process and call: pid, time and a counter.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:08x}-{n}", std::process::id())
}

fn mtime_secs(meta: &fs::Metadata) -> Option<u64> {
    meta.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn local_error(context: String, e: std::io::Error) -> Error {
    Error::io(context, e)
}

/// Closes a remote file under the lock, reporting errors.
fn close_remote(shared: &Shared, mut file: ssh2::File, path: &str) -> Result<()> {
    let _g = shared.inner.lock();
    let result = file.close().map_err(|e| sftp_error("close", path, e));
    drop(file);
    result
}

/// Drops a remote file handle under the lock (best effort close).
fn drop_remote(shared: &Shared, file: ssh2::File) {
    let _g = shared.inner.lock();
    shared.inner.cleanup(|| drop(file));
}

impl SftpSession {
    /// Uploads the local file `local` to `remote`, atomically, with the
    /// default [`TransferOptions`]; returns the number of bytes sent.
    ///
    /// The data goes to a temporary name beside `remote`
    /// (`.{name}.{unique}.part`), is flushed with `fsync@openssh.com` where
    /// the server offers it, its size is checked, and then it is renamed
    /// over `remote` with `posix-rename@openssh.com`: a reader of `remote`
    /// sees the old file or the complete new one, never part of one. On any
    /// failure the temporary file is removed (best effort) and the old
    /// `remote` is untouched.
    ///
    /// Without `posix-rename@openssh.com` (non-OpenSSH servers): a plain
    /// rename when `remote` does not exist; otherwise `remote` is removed
    /// and then renamed to, which is **not atomic** (`remote` is briefly
    /// absent).
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
    /// - [`ErrorKind::Other`] when the size check fails;
    /// - [`ErrorKind::Io`] for a local read error.
    pub fn upload(&self, local: impl AsRef<Path>, remote: impl AsRef<str>) -> Result<u64> {
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
        remote: impl AsRef<str>,
        options: &TransferOptions,
    ) -> Result<u64> {
        upload_file(&self.shared, local.as_ref(), remote.as_ref(), options)
    }

    /// Downloads `remote` to the local file `local`, atomically, with the
    /// default [`TransferOptions`]; returns the number of bytes received.
    ///
    /// The data goes to a temporary file in `local`'s folder, is flushed to
    /// the disk (`fsync`), its size is checked against the remote size, and
    /// it is renamed over `local`. A failed download leaves nothing at
    /// `local`'s name but the previous file, if there was one.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotFound`] when `remote` or `local`'s folder is
    ///   missing;
    /// - [`ErrorKind::PermissionDenied`] on either side;
    /// - [`ErrorKind::Disconnected`] or [`ErrorKind::Timeout`] when the
    ///   connection breaks or stalls;
    /// - [`ErrorKind::Other`] when the size check fails;
    /// - [`ErrorKind::Io`] for a local write error.
    pub fn download(&self, remote: impl AsRef<str>, local: impl AsRef<Path>) -> Result<u64> {
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
        remote: impl AsRef<str>,
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<u64> {
        download_file(&self.shared, remote.as_ref(), local.as_ref(), options)
    }
}

pub(crate) fn upload_file(
    shared: &Shared,
    local: &Path,
    remote: &str,
    options: &TransferOptions,
) -> Result<u64> {
    let mut source = File::open(local)
        .map_err(|e| local_error(format!("cannot open {} for upload", local.display()), e))?;
    let local_meta = source
        .metadata()
        .map_err(|e| local_error(format!("cannot stat {}", local.display()), e))?;
    if local_meta.is_dir() {
        return Err(local_error(
            format!("cannot upload {}", local.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
        ));
    }
    let total = local_meta.len();

    if options.overwrite == Overwrite::Never && shared.exists(remote)? {
        return Err(sftp_failure(
            ErrorKind::AlreadyExists,
            "upload",
            remote,
            "the target exists (Overwrite::Never)",
        ));
    }

    let source_id = format!(
        "{}\0{total}\0{:?}",
        local.display(),
        local_meta.modified().ok()
    );
    let write_path = if options.atomic {
        join(
            parent(remote),
            &options.temp_for(file_name(remote), &source_id),
        )
    } else {
        remote.to_string()
    };
    // A temporary file left by an earlier attempt of the same upload.
    let resume_from = if options.atomic && options.resume {
        match shared.stat(&write_path) {
            Ok(meta) => {
                let from = options.resume_from(meta.len(), total);
                if from.is_none() {
                    shared.remove_quietly(&write_path);
                }
                from
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let flags = if resume_from.is_some() {
        OpenFlags::WRITE
    } else if options.atomic || options.overwrite == Overwrite::Never {
        OpenFlags::WRITE | OpenFlags::EXCLUSIVE
    } else {
        OpenFlags::WRITE | OpenFlags::TRUNCATE
    };
    let opened = {
        let _g = shared.inner.lock();
        shared
            .sftp()
            .open_mode(Path::new(&write_path), flags, 0o644, ssh2::OpenType::File)
    };
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            let err = sftp_error("upload", &write_path, e);
            if err.kind() == ErrorKind::NotFound {
                return Err(sftp_failure(
                    ErrorKind::NotFound,
                    "upload",
                    remote,
                    format!("the remote folder {} does not exist", parent(remote)),
                ));
            }
            if err.kind() == ErrorKind::Other
                && options.overwrite == Overwrite::Never
                && !options.atomic
                && shared.exists(remote).unwrap_or(false)
            {
                return Err(sftp_failure(
                    ErrorKind::AlreadyExists,
                    "upload",
                    remote,
                    "the target exists (Overwrite::Never)",
                ));
            }
            return Err(err);
        }
    };

    let sessions = options.sessions_for_file(total);
    if sessions > 1 {
        // The temporary file exists now (created above); the workers write
        // their segments into it.
        close_remote(shared, file, &write_path)?;
        let workers = Workers::open(shared, sessions);
        let result = upload_segments(shared, &workers, local, &write_path, total, options)
            .and_then(|sent| {
                finish_upload(shared, &write_path, remote, sent, &local_meta, options)?;
                Ok(sent)
            });
        if result.is_err() {
            shared.remove_quietly(&write_path);
        }
        return result;
    }
    let start = match resume_from {
        Some(from) => {
            let positioned = {
                let _g = shared.inner.lock();
                file.seek(SeekFrom::Start(from)).map(drop)
            }
            .and_then(|()| source.seek(SeekFrom::Start(from)).map(drop));
            if let Err(e) = positioned {
                drop_remote(shared, file);
                return Err(local_error(format!("cannot resume {remote}"), e));
            }
            log::info!("resuming the upload of {remote} at byte {from} of {total}");
            from
        }
        None => 0,
    };
    let result = send(
        shared,
        file,
        &mut source,
        &write_path,
        start,
        total,
        options,
    )
    .and_then(|sent| {
        finish_upload(shared, &write_path, remote, sent, &local_meta, options)?;
        Ok(sent)
    });
    // A resumable upload cut by the network keeps its temporary file for
    // the next attempt; any other failure removes it.
    if let Err(e) = &result {
        if options.atomic && !(options.resume && e.is_transient()) {
            shared.remove_quietly(&write_path);
        }
    }
    result
}

/// Copies `source` into the open remote `file`; closes it. Returns bytes sent.
fn send(
    shared: &Shared,
    mut file: ssh2::File,
    source: &mut File,
    path: &str,
    start: u64,
    total: u64,
    options: &TransferOptions,
) -> Result<u64> {
    let mut buf = vec![0u8; options.buffer_size];
    let mut done = start;
    options.report(done, total);
    loop {
        let n = match read_full(source, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                drop_remote(shared, file);
                return Err(local_error("cannot read the local file".to_string(), e));
            }
        };
        if n == 0 {
            break;
        }
        let written = {
            let _g = shared.inner.lock();
            shared.inner.keepalive_tick();
            file.write_all(&buf[..n])
                .map_err(|e| sftp_io_error("upload", path, e, Some(&shared.inner.ssh)))
        };
        if let Err(e) = written {
            drop_remote(shared, file);
            return Err(e);
        }
        done += n as u64;
        options.report(done, total.max(done));
    }
    if options.fsync {
        let synced = {
            let _g = shared.inner.lock();
            shared.fsync(&mut file, path)
        };
        if let Err(e) = synced {
            drop_remote(shared, file);
            return Err(e);
        }
    }
    close_remote(shared, file, path)?;
    Ok(done)
}

/// Size check, mtime, and the rename into place.
fn finish_upload(
    shared: &Shared,
    written: &str,
    remote: &str,
    sent: u64,
    local_meta: &fs::Metadata,
    options: &TransferOptions,
) -> Result<()> {
    if options.verify_size {
        let size = shared.stat(written)?.len();
        if size != sent {
            return Err(sftp_failure(
                ErrorKind::Other,
                "upload",
                remote,
                format!("size check failed: sent {sent} bytes, the server has {size}"),
            ));
        }
    }
    if options.preserve_mtime {
        if let Some(mtime) = mtime_secs(local_meta) {
            let stat = ssh2::FileStat {
                size: None,
                uid: None,
                gid: None,
                perm: None,
                atime: Some(mtime),
                mtime: Some(mtime),
            };
            let _g = shared.inner.lock();
            shared
                .sftp()
                .setstat(Path::new(written), stat)
                .map_err(|e| sftp_error("set mtime", written, e))?;
        }
    }
    if options.atomic {
        match options.overwrite {
            Overwrite::Replace => shared.rename_replace(written, remote)?,
            Overwrite::Never => shared.rename_no_replace(written, remote)?,
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the end of the file.
pub(crate) fn read_full(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Removes a local temporary file when dropped, unless disarmed.
struct LocalTemp {
    path: Option<PathBuf>,
}

impl Drop for LocalTemp {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            if let Err(e) = fs::remove_file(&p) {
                log::debug!("cannot remove temporary file {}: {e}", p.display());
            }
        }
    }
}

pub(crate) fn download_file(
    shared: &Shared,
    remote: &str,
    local: &Path,
    options: &TransferOptions,
) -> Result<u64> {
    let mut guard = LocalTemp { path: None };
    let result = download_into(shared, remote, local, options, &mut guard);
    if let Err(e) = &result {
        // A resumable download cut by the network keeps its temporary file
        // for the next attempt; any other failure removes it.
        if options.resume && e.is_transient() {
            guard.path = None;
        }
    }
    drop(guard);
    result
}

/// The download itself; `guard` holds the temporary file while it is not
/// in place.
fn download_into(
    shared: &Shared,
    remote: &str,
    local: &Path,
    options: &TransferOptions,
    guard: &mut LocalTemp,
) -> Result<u64> {
    if options.overwrite == Overwrite::Never && local.exists() {
        return Err(local_error(
            format!("cannot download to {}", local.display()),
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the target exists (Overwrite::Never)",
            ),
        ));
    }
    let opened = {
        let _g = shared.inner.lock();
        shared.sftp().open(Path::new(remote)).and_then(|mut f| {
            let stat = f.stat();
            match stat {
                Ok(s) => Ok((f, s)),
                Err(e) => {
                    drop(f);
                    Err(e)
                }
            }
        })
    };
    let (mut file, stat) = opened.map_err(|e| sftp_error("download", remote, e))?;
    let remote_meta = super::Metadata::from(stat);
    if remote_meta.is_dir() {
        drop_remote(shared, file);
        return Err(sftp_failure(
            ErrorKind::InvalidInput,
            "download",
            remote,
            "is a directory",
        ));
    }
    let total = remote_meta.len();

    let local_name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".to_string());
    let local_dir = match local.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let source_id = format!("{remote}\0{total}\0{:?}", remote_meta.modified());
    let mut start = 0;
    let (mut out, out_path) = if options.atomic {
        let temp = local_dir.join(options.temp_for(&local_name, &source_id));
        // A temporary file left by an earlier attempt of the same download:
        // its name says the remote file's size and mtime are unchanged.
        let found = if options.resume {
            fs::metadata(&temp).map(|m| m.len()).ok()
        } else {
            None
        };
        let opened = match found.and_then(|len| options.resume_from(len, total)) {
            Some(from) => OpenOptions::new()
                .write(true)
                .open(&temp)
                .and_then(|mut f| {
                    f.set_len(from)?;
                    f.seek(SeekFrom::Start(from))?;
                    start = from;
                    Ok(f)
                }),
            // A stale temporary of a resumable download is replaced.
            None if options.resume => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp),
            None => OpenOptions::new().write(true).create_new(true).open(&temp),
        };
        match opened {
            Ok(f) => {
                guard.path = Some(temp.clone());
                (f, temp)
            }
            Err(e) => {
                drop_remote(shared, file);
                return Err(local_error(format!("cannot create {}", temp.display()), e));
            }
        }
    } else {
        let mut oo = OpenOptions::new();
        oo.write(true);
        if options.overwrite == Overwrite::Never {
            oo.create_new(true);
        } else {
            oo.create(true).truncate(true);
        }
        match oo.open(local) {
            Ok(f) => (f, local.to_path_buf()),
            Err(e) => {
                drop_remote(shared, file);
                return Err(local_error(format!("cannot create {}", local.display()), e));
            }
        }
    };

    let sessions = options.sessions_for_file(total);
    let mut done = start;
    if sessions > 1 {
        drop_remote(shared, file);
        out.set_len(total)
            .map_err(|e| local_error(format!("cannot size {}", out_path.display()), e))?;
        let workers = Workers::open(shared, sessions);
        done = download_segments(shared, &workers, remote, &out, total, options)?;
        return finish_download(
            remote,
            local,
            &local_dir,
            out,
            &out_path,
            done,
            total,
            &remote_meta,
            options,
            guard,
        );
    }
    if start > 0 {
        let positioned = {
            let _g = shared.inner.lock();
            file.seek(SeekFrom::Start(start))
        };
        if let Err(e) = positioned {
            drop_remote(shared, file);
            return Err(local_error(format!("cannot resume {remote}"), e));
        }
        log::info!("resuming the download of {remote} at byte {start} of {total}");
    }
    let mut buf = vec![0u8; options.buffer_size];
    options.report(done, total);
    loop {
        let n = {
            let _g = shared.inner.lock();
            shared.inner.keepalive_tick();
            read_full(&mut file, &mut buf)
                .map_err(|e| sftp_io_error("download", remote, e, Some(&shared.inner.ssh)))
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                drop_remote(shared, file);
                return Err(e);
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = out.write_all(&buf[..n]) {
            drop_remote(shared, file);
            return Err(local_error(
                format!("cannot write {}", out_path.display()),
                e,
            ));
        }
        done += n as u64;
        options.report(done, total.max(done));
    }
    close_remote(shared, file, remote)?;
    finish_download(
        remote,
        local,
        &local_dir,
        out,
        &out_path,
        done,
        total,
        &remote_meta,
        options,
        guard,
    )
}

/// Flush, mtime, size check, and the rename into place of a download.
#[allow(clippy::too_many_arguments)] // the state of one download, in pieces
fn finish_download(
    remote: &str,
    local: &Path,
    local_dir: &Path,
    out: File,
    out_path: &Path,
    done: u64,
    total: u64,
    remote_meta: &super::Metadata,
    options: &TransferOptions,
    guard: &mut LocalTemp,
) -> Result<u64> {
    if options.fsync {
        out.sync_all()
            .map_err(|e| local_error(format!("cannot fsync {}", out_path.display()), e))?;
    }
    if options.preserve_mtime {
        if let Some(mtime) = remote_meta.modified() {
            out.set_modified(mtime).map_err(|e| {
                local_error(format!("cannot set mtime of {}", out_path.display()), e)
            })?;
        }
    }
    drop(out);
    if options.verify_size && done != total {
        return Err(sftp_failure(
            ErrorKind::Other,
            "download",
            remote,
            format!("size check failed: the server said {total} bytes, received {done}"),
        ));
    }
    if options.atomic {
        if options.overwrite == Overwrite::Never {
            // hard_link fails if `local` appeared meanwhile: no clobbering.
            fs::hard_link(out_path, local).map_err(|e| {
                local_error(
                    format!("cannot put the download in place at {}", local.display()),
                    e,
                )
            })?;
        } else {
            fs::rename(out_path, local).map_err(|e| {
                local_error(
                    format!(
                        "cannot rename {} to {}",
                        out_path.display(),
                        local.display()
                    ),
                    e,
                )
            })?;
            guard.path = None;
        }

        if options.fsync {
            // Make the rename durable: fsync the folder (best effort).
            if let Ok(d) = File::open(local_dir) {
                let _ = d.sync_all();
            }
        }
    }
    Ok(done)
}
