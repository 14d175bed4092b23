//! [`TransferOptions`], the temporary names they make, and [`Plan`]: the
//! one decision of how a file moves (alone, in segments over several
//! sessions, or in a wave with other small files).

use std::fmt;
use std::sync::Arc;

use super::outcome::Progress;
use crate::sftp::channel::MAX_OUTSTANDING;
use crate::sftp::path::{bounded_name, short_hash, unique};
use crate::sftp::Glob;

/// What to do when the target of a transfer exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overwrite {
    /// Replace it (the default). With [`TransferOptions::atomic`], readers
    /// see the old file or the new one, never a mix.
    #[default]
    Replace,
    /// Fail with [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists)
    /// and leave it alone. Checked before the transfer starts and again
    /// when the file is put in place (on OpenSSH the final rename itself
    /// refuses to replace, so a file that appears meanwhile is not
    /// overwritten).
    Never,
}

type ProgressFn = dyn Fn(u64, u64) + Send + Sync;
type OnProgressFn = dyn Fn(&Progress<'_>) + Send + Sync;

/// Whether an upload may write a file at any offset (in pieces over
/// several sessions, [`TransferOptions::sessions`]), or only from start to
/// end, as object-storage gateways require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WriteOrder {
    /// Any order where the server is OpenSSH's `sftp-server` (it offers
    /// `limits@openssh.com`, `fsync@openssh.com` and
    /// `posix-rename@openssh.com`, and writes to a file system), from
    /// start to end elsewhere. The default.
    #[default]
    Auto,
    /// From start to end only: one session per file.
    Sequential,
    /// Any order, whatever the server: for servers known to take it.
    Any,
}

/// How [`SftpSession::upload_with`](crate::SftpSession::upload_with),
/// [`download_with`](crate::SftpSession::download_with) and the folder
/// transfers move files. `TransferOptions::default()` is what
/// [`upload`](crate::SftpSession::upload) and
/// [`download`](crate::SftpSession::download) use.
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
    pub(crate) preserve_permissions: bool,
    pub(crate) fsync: bool,
    pub(crate) verify_size: bool,
    pub(crate) resume: bool,
    pub(crate) sessions: usize,
    pub(crate) min_segment_size: u64,
    pub(crate) buffer_size: usize,
    pub(crate) follow_symlinks: bool,
    pub(crate) temp_dir: Option<Vec<u8>>,
    pub(crate) strict_metadata: bool,
    pub(crate) write_order: WriteOrder,
    pub(crate) open_files: usize,
    pub(crate) continue_on_error: bool,
    pub(crate) verify_checksum: bool,
    pub(crate) progress: Option<Arc<ProgressFn>>,
    pub(crate) on_progress: Option<Arc<OnProgressFn>>,
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
/// Default for [`TransferOptions::temp_name`].
pub const DEFAULT_TEMP_NAME: &str = ".{name}.{unique}.part";
/// Default for [`TransferOptions::buffer_size`]: 34 × 30,000 bytes, about
/// 1 MiB.
pub const DEFAULT_BUFFER_SIZE: usize = 34 * 30_000;

/// Files per extra session in a folder transfer: fewer files than this
/// are not worth another connection.
const FILES_PER_SESSION: usize = 16;
/// Files per group of a wave, and the most [`TransferOptions::open_files`]
/// allows (see `wave.rs`).
pub(crate) const WAVE: usize = 32;
/// Groups per wave at most: a wave of 4 groups of 32 uploads takes 6
/// round trips instead of 12.
pub(crate) const WAVE_GROUPS: usize = 4;
/// The biggest file a wave takes: 32 requests of the 32 KiB every server
/// accepts, so that one file's requests never fill the
/// [`MAX_OUTSTANDING`] a channel allows.
const WAVE_FILE_MAX: u64 = 32 * 32 * 1024;

/// The size from which an upload on one session writes on a second
/// channel beside the first on a long link: that channel starts writing
/// about four round trips later (channel, subsystem, version, OPEN), when
/// the first, at 2 MiB per round trip under OpenSSH's window, has moved
/// 8 MiB.
const WRITE_BESIDE_FROM: u64 = 16 << 20;
const _: () = assert!(WAVE_FILE_MAX / (32 * 1024) + 4 <= MAX_OUTSTANDING as u64);

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            atomic: true,
            temp_name: DEFAULT_TEMP_NAME.to_string(),
            overwrite: Overwrite::Replace,
            preserve_mtime: false,
            preserve_permissions: true,
            fsync: true,
            verify_size: true,
            resume: false,
            sessions: DEFAULT_SESSIONS,
            min_segment_size: DEFAULT_MIN_SEGMENT,
            buffer_size: DEFAULT_BUFFER_SIZE,
            follow_symlinks: false,
            temp_dir: None,
            strict_metadata: false,
            write_order: WriteOrder::Auto,
            open_files: WAVE,
            continue_on_error: false,
            verify_checksum: false,
            progress: None,
            on_progress: None,
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
            .field("preserve_permissions", &self.preserve_permissions)
            .field("fsync", &self.fsync)
            .field("verify_size", &self.verify_size)
            .field("resume", &self.resume)
            .field("sessions", &self.sessions)
            .field("min_segment_size", &self.min_segment_size)
            .field("buffer_size", &self.buffer_size)
            .field("follow_symlinks", &self.follow_symlinks)
            .field(
                "temp_dir",
                &self.temp_dir.as_deref().map(String::from_utf8_lossy),
            )
            .field("strict_metadata", &self.strict_metadata)
            .field("write_order", &self.write_order)
            .field("open_files", &self.open_files)
            .field("continue_on_error", &self.continue_on_error)
            .field("verify_checksum", &self.verify_checksum)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(u64, u64)"))
            .field(
                "on_progress",
                &self.on_progress.as_ref().map(|_| "Fn(&Progress)"),
            )
            .field("filter", &self.filter.as_ref().map(Glob::as_str))
            .finish()
    }
}

/// How one file moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// On one session, alone.
    Single,
    /// Cut in pieces that this many sessions move at once.
    Segments(usize),
    /// With other small files of a folder, in one wave.
    Wave,
}

impl TransferOptions {
    /// The defaults: atomic, replace, fsync, verify size, keep permissions,
    /// no mtime.
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
    /// without `{unique}` gets `.{unique}` appended. A temporary name that
    /// would pass 255 bytes keeps the start of `{name}` and a hash of the
    /// whole name instead, so that any name the server takes can be
    /// transferred atomically.
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

    /// Give the target the source's permission bits (`mode & 0o777`, never
    /// setuid, setgid or sticky), as OpenSSH's `sftp` does: an upload's
    /// file is created with the local file's mode (less the server's
    /// umask), a download's local file gets the remote mode less our
    /// umask. Defaults to `true`. With `false`, uploads are created with
    /// `0o644` and downloads with `0o666`, both less the umask.
    ///
    /// A download's temporary file is `0o600` while it is written either
    /// way; an upload's is created with its final mode, so a `0o600` file
    /// is never readable by others on the server.
    pub fn preserve_permissions(mut self, on: bool) -> Self {
        self.preserve_permissions = on;
        self
    }

    /// Flush the file to the disk before it is renamed into place: on the
    /// server with `fsync@openssh.com` when it offers it (skipped silently
    /// otherwise), locally with `fsync`. Defaults to `true`. A download
    /// of 64 MiB or more is also flushed behind the writes, every 32 MiB,
    /// so that the last flush has little left to write.
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
    /// source to the same target finds it, checks that its last buffer
    /// before the resume point holds the source's bytes (and starts over
    /// when it does not), and carries on from its size, less one buffer
    /// that is sent again in case the last write was torn; a changed
    /// source gets a new name and starts over. A download is resumed only
    /// when the server reports the remote file's mtime (else a changed
    /// file could not be told apart), and its local temporary file is
    /// opened without following symlinks, must be ours with one link, and
    /// is locked while in use, so two runs never share it. The result is
    /// byte-identical to an uninterrupted transfer, and the size check
    /// still runs. Pair it with [`RetryPolicy`](crate::RetryPolicy) for
    /// transfers across unreliable links.
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
    /// An upload on such a link also writes on more SFTP channels of each
    /// session, where the server allows them: two when its OPEN takes
    /// 15 ms or more, three from 30 ms (OpenSSH's sshd gives each channel a
    /// 2 MiB window). So does an atomic upload of 16 MiB or more on one
    /// session (another channel is not another connection).
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

    /// The transfer buffer; rounded up to a multiple of 30,000 bytes.
    /// Defaults to [`DEFAULT_BUFFER_SIZE`], about 1 MiB. A transfer keeps
    /// up to [`PIPELINE_BUFFERS`] of these in flight on each session
    /// (requests sent and not yet answered): bigger buffers help on links
    /// with a long round trip. A resumed transfer starts one buffer before
    /// where the last attempt stopped.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes.max(1).div_ceil(30_000) * 30_000;
        self
    }

    /// For [`upload_dir`](crate::SftpSession::upload_dir): follow local
    /// symbolic links to files and folders (a link that leads back into a
    /// folder being walked is an error, never a loop). Defaults to
    /// `false`: links are skipped, as OpenSSH's `put -r` does. Remote
    /// links are never followed by [`download_dir`](crate::SftpSession::download_dir).
    pub fn follow_symlinks(mut self, on: bool) -> Self {
        self.follow_symlinks = on;
        self
    }

    /// Called with `(bytes done, total bytes)` of the file being moved
    /// after each buffer, and once at the start with `(0, total)`. Fits a
    /// progress bar, e.g. indicatif's:
    /// `.progress(move |done, _| bar.set_position(done))`. For folder
    /// transfers, whose files move on several sessions at once,
    /// [`on_progress`](Self::on_progress) says which file and how far the
    /// whole job is.
    pub fn progress(mut self, callback: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// Called with a [`Progress`] event (the file, its bytes done and in
    /// all, the whole job's bytes done and in all) whenever bytes of a
    /// file are done; from several threads at once in a folder transfer.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let options = etl_ssh::TransferOptions::new().on_progress(|p| {
    ///     eprintln!("{}: {}/{} ({}/{} of the job)", p.file(), p.file_done(),
    ///         p.file_total(), p.job_done(), p.job_total());
    /// });
    /// sftp.upload_dir("out", "/inbox", &options)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_progress(mut self, callback: impl Fn(&Progress<'_>) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(callback));
        self
    }

    /// Write an atomic upload's temporary file in this remote folder and
    /// rename it from there into the target's folder (on the same file
    /// system), instead of beside the target: for inboxes where a watcher
    /// takes every file that appears, as partners who ask for "upload to
    /// `tmp/`, then move to `inbox/`" run. Defaults to none: beside the
    /// target.
    pub fn temp_dir(mut self, remote_dir: impl AsRef<[u8]>) -> Self {
        self.temp_dir = Some(remote_dir.as_ref().to_vec());
        self
    }

    /// Fail a transfer when the server refuses to set the modification
    /// time ([`preserve_mtime`](Self::preserve_mtime)) or the permission
    /// bits. Defaults to `false`: the refusal is logged at `warn` and
    /// listed in [`Delivery::warnings`](crate::Delivery::warnings), and the file is delivered, as
    /// OpenSSH's `put -p` does.
    pub fn strict_metadata(mut self, on: bool) -> Self {
        self.strict_metadata = on;
        self
    }

    /// Whether uploads may write a file out of order (in pieces over
    /// several sessions). Defaults to [`WriteOrder::Auto`]: only on
    /// OpenSSH's `sftp-server`.
    pub fn write_order(mut self, order: WriteOrder) -> Self {
        self.write_order = order;
        self
    }

    /// At most this many files open at once per session in a folder
    /// transfer. Defaults to 32 (small files move in groups of 32); 1 for
    /// servers that allow one open file per session.
    pub fn open_files(mut self, files: usize) -> Self {
        self.open_files = files.clamp(1, WAVE);
        self
    }

    /// Check each file's SHA-256 on both sides before it is put in place
    /// (an upload's temporary file before the rename, a download's local
    /// temporary file against the remote file). SFTP has no hash request
    /// that OpenSSH's server answers, so the server's hash comes from a
    /// command on the same session (`sha256sum`, else `shasum -a 256`):
    /// where the account may not run commands, the file is delivered on
    /// its size check and [`Delivery::checksum`](crate::Delivery::checksum)
    /// says it could not be verified, and why. A difference fails the
    /// transfer and nothing is put in place (an upload in place is at the
    /// target already; the error says so). Defaults to `false`: both sides
    /// read every file once more and the server starts a command per file;
    /// on loopback an upload and a download of 64 MiB took 2.4 times as
    /// long with it (BENCHMARKS.md).
    pub fn verify_checksum(mut self, on: bool) -> Self {
        self.verify_checksum = on;
        self
    }

    /// For folder transfers: go on after a file fails, and report every
    /// file ([`SftpSession::upload_dir_report`](crate::SftpSession::upload_dir_report)).
    /// Defaults to `false`: the first failure stops the transfer.
    pub fn continue_on_error(mut self, on: bool) -> Self {
        self.continue_on_error = on;
        self
    }

    /// For [`upload_dir`](crate::SftpSession::upload_dir) and
    /// [`download_dir`](crate::SftpSession::download_dir): transfer only
    /// files whose names match (folders are always walked). Defaults to
    /// none: every file.
    pub fn filter(mut self, glob: Glob) -> Self {
        self.filter = Some(glob);
        self
    }

    /// The bytes a transfer keeps in flight on one session.
    pub(crate) fn in_flight(&self) -> u64 {
        self.buffer_size as u64 * PIPELINE_BUFFERS as u64
    }

    /// How a file of `size` bytes moves; `in_folder` for the files of a
    /// folder transfer (which never cut one file over sessions);
    /// `any_order`: whether the file may be written out of order (always
    /// for a download, see [`WriteOrder`] for an upload).
    pub(crate) fn plan(&self, size: u64, in_folder: bool, any_order: bool) -> Plan {
        if in_folder {
            let small = size <= (self.buffer_size as u64).min(WAVE_FILE_MAX);
            return if small
                && self.atomic
                && !self.resume
                && self.open_files > 1
                && self.overwrite == Overwrite::Replace
            {
                Plan::Wave
            } else {
                Plan::Single
            };
        }
        if !self.atomic || self.resume || !any_order {
            return Plan::Single;
        }
        let segments = usize::try_from(size / self.min_segment_size).unwrap_or(usize::MAX);
        match self.sessions.min(segments) {
            0 | 1 => Plan::Single,
            n => Plan::Segments(n),
        }
    }

    /// Removes the temporary files these options make (the `temp_name`
    /// pattern with a `{unique}` part of this crate's, and files a rename
    /// moved aside) from the local folder `dir` when they are regular files
    /// of ours last modified more than `older_than` ago: what downloads
    /// left when they could not clean up. Returns what it removed. See
    /// [`SftpSession::remove_stale_temps`](crate::SftpSession::remove_stale_temps)
    /// for the server's side.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// use std::time::Duration;
    /// let options = etl_ssh::TransferOptions::new();
    /// for path in options.remove_stale_local_temps("in", Duration::from_secs(24 * 3600))? {
    ///     eprintln!("removed {}", path.display());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) when the folder cannot be
    /// listed or a file removed.
    pub fn remove_stale_local_temps(
        &self,
        dir: impl AsRef<std::path::Path>,
        older_than: std::time::Duration,
    ) -> crate::Result<Vec<std::path::PathBuf>> {
        super::stale::remove_local(dir.as_ref(), older_than, self)
    }

    /// Whether an upload of `size` bytes on one session may write pieces
    /// on more channels of it at once where the link is long
    /// ([`segments::channels_for`](super::segments::channels_for)): an
    /// atomic upload, not resumed, to a server that takes writes in any
    /// order, of a file large enough for the extra channel's start to pay.
    pub(crate) fn may_write_beside(&self, size: u64, any_order: bool) -> bool {
        self.atomic && !self.resume && any_order && size >= WRITE_BESIDE_FROM
    }

    /// Whether an upload to a server with `ext` may write out of order.
    pub(crate) fn any_order(&self, ext: &crate::sftp::channel::Extensions) -> bool {
        match self.write_order {
            WriteOrder::Any => true,
            WriteOrder::Sequential => false,
            WriteOrder::Auto => ext.limits && ext.fsync && ext.posix_rename,
        }
    }

    /// How many sessions a folder of `files` files gets.
    pub(crate) fn sessions_for_files(&self, files: usize) -> usize {
        self.sessions.min(files.div_ceil(FILES_PER_SESSION)).max(1)
    }

    /// The temporary file name for `name`. With [`resume`](Self::resume),
    /// `source_id` (the source's identity: path, size, mtime) makes the
    /// `{unique}` part the same on every attempt.
    pub(crate) fn temp_for(&self, name: &[u8], source_id: &[u8]) -> Vec<u8> {
        let pattern = self.pattern();
        let unique = if self.resume {
            resumable_id(name, source_id)
        } else {
            unique()
        };
        bounded_name(name, &pattern.replace("{unique}", &unique))
    }

    /// The `temp_name` pattern as used: with `{unique}` appended when it
    /// has none.
    fn pattern(&self) -> String {
        let mut pattern = self.temp_name.clone();
        if !pattern.contains("{unique}") {
            pattern.push_str(".{unique}");
        }
        pattern
    }

    /// Whether `name` is one this crate made with these options: a
    /// temporary file (this `temp_name` pattern and a `{unique}` part of
    /// ours), or a replaced file moved aside by a rename
    /// (`.{name}.{unique}.old`).
    pub(crate) fn is_our_temp(&self, name: &[u8]) -> bool {
        crate::sftp::path::matches_temp_pattern(name, &self.pattern())
            || crate::sftp::path::matches_temp_pattern(name, crate::sftp::path::ASIDE_NAME)
    }

    /// Where to carry on with a temporary file of `found` bytes for a
    /// source of `total`: one buffer back, in case the last write was
    /// torn; `None` to start over.
    pub(crate) fn resume_from(&self, found: u64, total: u64) -> Option<u64> {
        if !self.resume || found == 0 || found > total {
            return None;
        }
        Some(found.saturating_sub(self.buffer_size as u64))
    }

    /// The bytes before a resume point that must match the source: one
    /// buffer.
    pub(crate) fn overlap(&self, from: u64) -> std::ops::Range<u64> {
        from.saturating_sub(self.buffer_size as u64)..from
    }
}

/// A stable `{unique}` for a resumable transfer: the same target and
/// unchanged source give the same name on every attempt.
fn resumable_id(name: &[u8], source_id: &[u8]) -> String {
    format!("resume-{}", short_hash(&[name, b"\0", source_id].concat()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::path::NAME_MAX;

    #[test]
    fn temp_names_stay_within_name_max() {
        let o = TransferOptions::new();
        let short = o.temp_for(b"orders.csv", b"");
        assert!(short.starts_with(b".orders.csv.") && short.ends_with(b".part"));
        for len in [200, 225, 240, 255] {
            let name = vec![b'n'; len];
            let temp = o.temp_for(&name, b"");
            assert!(temp.len() <= NAME_MAX, "{len}: {}", temp.len());
            assert!(temp.starts_with(b".nnnn"));
            // Two long names that differ only at the end get different temps.
            let mut other = name.clone();
            *other.last_mut().expect("non-empty") = b'm';
            let a = bounded_name(&name, ".{name}.x.part");
            let b = bounded_name(&other, ".{name}.x.part");
            if a.len() == NAME_MAX {
                assert_ne!(a, b);
            }
        }
        // UTF-8 names are cut at a character boundary.
        let name = "é".repeat(127);
        let temp = bounded_name(name.as_bytes(), ".{name}.0123456789abcdef.part");
        assert!(std::str::from_utf8(&temp).is_ok());
        assert!(temp.len() <= NAME_MAX);
    }

    #[test]
    fn resumable_names_repeat_and_plain_ones_do_not() {
        let o = TransferOptions::new().resume(true);
        assert_eq!(o.temp_for(b"a", b"id"), o.temp_for(b"a", b"id"));
        assert_ne!(o.temp_for(b"a", b"id"), o.temp_for(b"a", b"id2"));
        let p = TransferOptions::new();
        assert_ne!(p.temp_for(b"a", b""), p.temp_for(b"a", b""));
    }

    #[test]
    fn the_plan_follows_size_and_options() {
        let o = TransferOptions::new();
        assert_eq!(o.plan(1 << 20, false, true), Plan::Single);
        assert_eq!(o.plan(64 << 20, false, true), Plan::Segments(2));
        assert_eq!(o.plan(1 << 30, false, true), Plan::Segments(4));
        assert_eq!(o.plan(1 << 30, false, false), Plan::Single);
        assert_eq!(
            o.clone().resume(true).plan(1 << 30, false, true),
            Plan::Single
        );
        assert_eq!(
            o.clone().atomic(false).plan(1 << 30, false, true),
            Plan::Single
        );
        assert_eq!(o.plan(4096, true, true), Plan::Wave);
        assert_eq!(o.clone().open_files(1).plan(4096, true, true), Plan::Single);
        assert_eq!(o.plan(4 << 20, true, true), Plan::Single);
        assert_eq!(
            o.clone().overwrite(Overwrite::Never).plan(4096, true, true),
            Plan::Single
        );
    }
}
