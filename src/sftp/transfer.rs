//! Atomic upload and download, and their [`TransferOptions`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::parallel::{download_segments, upload_segments, Workers};
use super::wire::{flags, Handle, Wire};
use super::{
    file_name, join, parent, sftp_failure, Glob, SftpSession, Shared, DEFAULT_BUFFER_SIZE,
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
/// How many [`TransferOptions::buffer_size`] buffers of requests a transfer
/// keeps in flight on each session: about 8 MB by default. An upload holds
/// none of it in memory (the data is read from the local file as each
/// request goes out); a download may find that much queued in memory when
/// the local disk is slower than the link.
pub const PIPELINE_BUFFERS: usize = 8;
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
    /// [`min_segment_size`](Self::min_segment_size) is moved by several
    /// sessions at once (one per `min_segment_size`, up to this many): each
    /// takes the next [`buffer_size`](Self::buffer_size) piece of the file
    /// whenever it has room in flight and writes it at its offset into the
    /// one temporary file, which is checked and renamed into place only
    /// when every piece is done: atomicity is kept. A folder transfer
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

    /// The share of a file that makes another session worth connecting:
    /// a file gets one session per this many bytes (up to
    /// [`sessions`](Self::sessions)), so files under twice this size use
    /// one. Defaults to 32 MiB.
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

    /// The transfer buffer; rounded up to a multiple of 30,000 bytes.
    /// Defaults to [`DEFAULT_BUFFER_SIZE`](crate::DEFAULT_BUFFER_SIZE),
    /// about 1 MiB. A transfer keeps up to
    /// [`PIPELINE_BUFFERS`] of these in flight on each session (requests
    /// sent and not yet answered): bigger buffers help on links with a long
    /// round trip. A resumed transfer starts one buffer before where the
    /// last attempt stopped.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes.max(1).div_ceil(30_000) * 30_000;
        self
    }

    /// The bytes a transfer keeps in flight on one session.
    pub(crate) fn in_flight(&self) -> u64 {
        self.buffer_size as u64 * PIPELINE_BUFFERS as u64
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

/// The local file an upload reads, and its metadata; a folder is refused.
pub(super) fn open_source(local: &Path) -> Result<(File, fs::Metadata)> {
    let source = File::open(local)
        .map_err(|e| local_error(format!("cannot open {} for upload", local.display()), e))?;
    let meta = source
        .metadata()
        .map_err(|e| local_error(format!("cannot stat {}", local.display()), e))?;
    if meta.is_dir() {
        return Err(local_error(
            format!("cannot upload {}", local.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
        ));
    }
    Ok((source, meta))
}

/// The mtime an upload gives the remote file (whole seconds, as SFTP v3
/// carries them): the local file's with
/// [`TransferOptions::preserve_mtime`], else none.
pub(super) fn upload_mtime(meta: &fs::Metadata, options: &TransferOptions) -> Option<u32> {
    if !options.preserve_mtime {
        return None;
    }
    let secs = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(u32::try_from(secs).unwrap_or(u32::MAX))
}

/// The size check of an upload: `size` is what the server has after
/// `sent` bytes went out.
pub(super) fn check_size(remote: &str, sent: u64, size: u64) -> Result<()> {
    if size == sent {
        return Ok(());
    }
    Err(sftp_failure(
        ErrorKind::Other,
        "upload",
        remote,
        format!("size check failed: sent {sent} bytes, the server has {size}"),
    ))
}

fn local_error(context: String, e: std::io::Error) -> Error {
    Error::io(context, e)
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
    let (source, local_meta) = open_source(local)?;
    let total = local_meta.len();
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
    let job = Upload {
        source: &source,
        remote,
        write_path: &write_path,
        total,
        mtime: upload_mtime(&local_meta, options),
        options,
    };
    let sessions = options.sessions_for_file(total);
    if sessions <= 1 {
        return shared.with_wire(|w| job.on_one_session(w));
    }
    // Segments: create the temporary file, let every session write its
    // parts into it, then check and rename it.
    shared.with_wire(|w| {
        let handle = job.open(w, None)?;
        let id = w.send_close(&handle);
        w.status_of(id, "close", &write_path)
            .inspect_err(|_| w.remove_quietly(&write_path))
    })?;
    let workers = Workers::open(shared, sessions);
    let result =
        upload_segments(shared, &workers, local, &write_path, total, options).and_then(|sent| {
            shared
                .with_wire(|w| {
                    // The segments' handles are closed: stat and set the
                    // mtime by name.
                    let size = if options.verify_size {
                        Some(w.stat(&write_path)?.len())
                    } else {
                        None
                    };
                    if let Some(secs) = job.mtime {
                        let id = w.send_set_times(&write_path, secs);
                        w.status_of(id, "set mtime", &write_path)?;
                    }
                    job.put_in_place(w, sent, size)
                })
                .map(|()| sent)
        });
    if result.is_err() {
        let _ = shared.with_wire(|w| {
            w.remove_quietly(&write_path);
            Ok(())
        });
    }
    result
}

/// One file's upload: what it writes where.
struct Upload<'a> {
    source: &'a File,
    remote: &'a str,
    /// The temporary name (atomic) or the target itself (in place).
    write_path: &'a str,
    total: u64,
    /// The mtime to give the file ([`upload_mtime`]).
    mtime: Option<u32>,
    options: &'a TransferOptions,
}

impl Upload<'_> {
    /// The whole upload on one session (`w`'s).
    fn on_one_session(&self, w: &mut Wire) -> Result<u64> {
        let (remote, write_path, options) = (self.remote, self.write_path, self.options);
        // A temporary file left by an earlier attempt of the same upload.
        let resume_from = if options.atomic && options.resume {
            match w.stat(write_path) {
                Ok(meta) => {
                    let from = options.resume_from(meta.len(), self.total);
                    if from.is_none() {
                        w.remove_quietly(write_path);
                    }
                    from
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let handle = self.open(w, resume_from)?;
        let start = resume_from.unwrap_or(0);
        if start > 0 {
            log::info!(
                "resuming the upload of {remote} at byte {start} of {}",
                self.total
            );
        }
        let mut done = start;
        options.report(done, self.total);
        let sent = w.write_from(
            &handle,
            write_path,
            self.source,
            start..self.total,
            options.in_flight(),
            &mut |n| {
                done += n;
                options.report(done, self.total);
            },
        );
        let result = match sent {
            Ok(()) => w
                .finish_write(
                    &handle,
                    write_path,
                    options.fsync,
                    self.mtime,
                    options.verify_size,
                )
                .and_then(|size| self.put_in_place(w, self.total, size)),
            Err(e) => {
                w.close_quietly(&handle, write_path);
                Err(e)
            }
        };
        // A resumable upload cut by the network keeps its temporary file
        // for the next attempt; any other failure removes it.
        if let Err(e) = &result {
            if options.atomic && !(options.resume && e.is_transient()) && !w.is_broken() {
                w.remove_quietly(write_path);
            }
        }
        result.map(|()| self.total)
    }

    /// Opens the file to write: the temporary file, new (or the one left
    /// by an earlier attempt when resuming), or the target in place.
    fn open(&self, w: &mut Wire, resume_from: Option<u64>) -> Result<Handle> {
        let (remote, write_path, options) = (self.remote, self.write_path, self.options);
        if options.overwrite == Overwrite::Never && w.exists(remote)? {
            return Err(sftp_failure(
                ErrorKind::AlreadyExists,
                "upload",
                remote,
                "the target exists (Overwrite::Never)",
            ));
        }
        let pflags = if resume_from.is_some() {
            flags::WRITE
        } else if options.atomic || options.overwrite == Overwrite::Never {
            flags::WRITE | flags::CREATE | flags::EXCLUSIVE
        } else {
            flags::WRITE | flags::CREATE | flags::TRUNCATE
        };
        let id = w.send_open(write_path, pflags, 0o644);
        w.handle_of(id, "upload", write_path).map_err(|err| {
            if err.kind() == ErrorKind::NotFound {
                return sftp_failure(
                    ErrorKind::NotFound,
                    "upload",
                    remote,
                    format!("the remote folder {} does not exist", parent(remote)),
                );
            }
            if err.kind() == ErrorKind::Other
                && options.overwrite == Overwrite::Never
                && !options.atomic
                && !w.is_broken()
                && w.exists(remote).unwrap_or(false)
            {
                return sftp_failure(
                    ErrorKind::AlreadyExists,
                    "upload",
                    remote,
                    "the target exists (Overwrite::Never)",
                );
            }
            err
        })
    }

    /// The size check (`size`: what the server has, `None` when
    /// [`TransferOptions::verify_size`] is off) and the rename into place.
    fn put_in_place(&self, w: &mut Wire, sent: u64, size: Option<u64>) -> Result<()> {
        let (remote, written, options) = (self.remote, self.write_path, self.options);
        if let Some(size) = size {
            check_size(remote, sent, size)?;
        }
        if options.atomic {
            match options.overwrite {
                Overwrite::Replace => w.rename_replace(written, remote)?,
                Overwrite::Never => w.rename_no_replace(written, remote)?,
            }
        }
        Ok(())
    }
}

/// Flushes a local folder (best effort): makes renames in it durable.
pub(super) fn sync_folder(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes a local temporary file when dropped, unless disarmed.
pub(super) struct LocalTemp {
    pub(super) path: Option<PathBuf>,
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
    let (target, remote_meta, done) = shared.with_wire(|w| {
        // STAT and OPEN do not depend on each other: one round trip.
        let stat_id = w.send_stat(remote);
        let open_id = w.send_open(remote, flags::READ, 0);
        let stat = w.attrs_of(stat_id, "download", remote);
        let handle = w.handle_of(open_id, "download", remote)?;
        let remote_meta = match stat {
            Ok(m) if m.is_dir() => Err(sftp_failure(
                ErrorKind::InvalidInput,
                "download",
                remote,
                "is a directory",
            )),
            other => other,
        };
        let opened = remote_meta.and_then(|meta| {
            let target = LocalTarget::create(remote, local, &meta, options, guard)?;
            Ok((target, meta))
        });
        let (target, meta) = match opened {
            Ok(t) => t,
            Err(e) => {
                w.close_quietly(&handle, remote);
                return Err(e);
            }
        };
        let total = meta.len();
        if options.sessions_for_file(total) > 1 {
            w.close_quietly(&handle, remote);
            return Ok((target, meta, None));
        }
        let start = target.start;
        if start > 0 {
            log::info!("resuming the download of {remote} at byte {start} of {total}");
        }
        let mut done = start;
        options.report(done, total);
        let read = w.read_into(
            &handle,
            remote,
            &target.out,
            start..total,
            true,
            options.in_flight(),
            &mut |n| {
                done += n;
                options.report(done, total);
            },
        );
        w.close_quietly(&handle, remote);
        read.map(|()| (target, meta, Some(done)))
    })?;
    let total = remote_meta.len();
    let done = match done {
        Some(done) => done,
        None => {
            // Segments: every session writes its parts into the file.
            target
                .out
                .set_len(total)
                .map_err(|e| local_error(format!("cannot size {}", target.path.display()), e))?;
            let workers = Workers::open(shared, options.sessions_for_file(total));
            download_segments(shared, &workers, remote, &target.out, total, options)?
        }
    };
    finish_download(
        remote,
        local,
        target,
        done,
        &remote_meta,
        options,
        guard,
        true,
    )
}

/// The local file a download writes: a temporary file beside the target
/// (atomic), or the target itself.
pub(super) struct LocalTarget {
    pub(super) out: File,
    path: PathBuf,
    pub(super) dir: PathBuf,
    /// Where the download starts (a resumed one after 0).
    start: u64,
}

impl LocalTarget {
    pub(super) fn create(
        remote: &str,
        local: &Path,
        remote_meta: &super::Metadata,
        options: &TransferOptions,
        guard: &mut LocalTemp,
    ) -> Result<LocalTarget> {
        let total = remote_meta.len();
        let local_name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".to_string());
        let dir = match local.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !options.atomic {
            let mut oo = OpenOptions::new();
            oo.write(true);
            if options.overwrite == Overwrite::Never {
                oo.create_new(true);
            } else {
                oo.create(true).truncate(true);
            }
            let out = oo
                .open(local)
                .map_err(|e| local_error(format!("cannot create {}", local.display()), e))?;
            return Ok(LocalTarget {
                out,
                path: local.to_path_buf(),
                dir,
                start: 0,
            });
        }
        let source_id = format!("{remote}\0{total}\0{:?}", remote_meta.modified());
        let temp = dir.join(options.temp_for(&local_name, &source_id));
        // A temporary file left by an earlier attempt of the same download:
        // its name says the remote file's size and mtime are unchanged.
        let found = if options.resume {
            fs::metadata(&temp).map(|m| m.len()).ok()
        } else {
            None
        };
        let mut start = 0;
        let opened = match found.and_then(|len| options.resume_from(len, total)) {
            Some(from) => OpenOptions::new().write(true).open(&temp).and_then(|f| {
                f.set_len(from)?;
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
        let out =
            opened.map_err(|e| local_error(format!("cannot create {}", temp.display()), e))?;
        guard.path = Some(temp.clone());
        Ok(LocalTarget {
            out,
            path: temp,
            dir,
            start,
        })
    }
}

/// Flush, mtime, size check, and the rename into place of a download.
/// With `sync_dir`, the folder is flushed too (the rename made durable);
/// a caller that puts several files in one folder may do that once.
#[allow(clippy::too_many_arguments)] // the state of one download, in pieces
pub(super) fn finish_download(
    remote: &str,
    local: &Path,
    target: LocalTarget,
    done: u64,
    remote_meta: &super::Metadata,
    options: &TransferOptions,
    guard: &mut LocalTemp,
    sync_dir: bool,
) -> Result<u64> {
    let LocalTarget {
        out,
        path: out_path,
        dir: local_dir,
        ..
    } = target;
    let out_path = out_path.as_path();
    let total = remote_meta.len();
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

        if options.fsync && sync_dir {
            sync_folder(&local_dir);
        }
    }
    Ok(done)
}
