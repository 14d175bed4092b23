//! One file up: to a temporary name (beside the target, or in
//! [`TransferOptions::temp_dir`]) or in place, pipelined, flushed, checked,
//! renamed into place; or cut in pieces over several sessions
//! (`segments.rs`), which start connecting as soon as the temporary file
//! is created, and on a long link over two or three channels of a session
//! (from 16 MiB on one session too). Every session and channel reads the
//! local file opened first. Every upload ends in a [`Delivery`] or in an
//! error that names the target, what is left on the server, and the
//! option that fits the partner's inbox.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Instant, UNIX_EPOCH};

use log::{info, warn};

use super::checksum::{self, Checksum};
use super::lanes::Extras;
use super::options::{Overwrite, Plan, TransferOptions};
use super::outcome::{Delivery, Verified};
use super::pipeline::{self, Finished, Sink};
use super::progress::{FileProgress, Job};
use super::segments::{channels_for, upload_segments, write_all_beside, Created, Writing};
use crate::conn::Dialer;
use crate::error::add_note;
use crate::sftp::channel::SftpChannel;
use crate::sftp::fs::{self as rfs, rename_no_replace, rename_replace};
use crate::sftp::path::{file_name, join, parent, shown};
use crate::sftp::pool::Lease;
use crate::sftp::proto::{open as flags, Attrs};
use crate::sftp::Shared;
use crate::{Error, ErrorKind, Result};
use std::sync::Arc;

/// The local file an upload reads, and its metadata; a folder is refused.
pub(crate) fn open_source(local: &Path) -> Result<(File, fs::Metadata)> {
    let source = File::open(local)
        .map_err(|e| Error::io(format!("cannot open {} for upload", local.display()), e))?;
    let meta = source
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", local.display()), e))?;
    if meta.is_dir() {
        return Err(Error::io(
            format!("cannot upload {}", local.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory"),
        ));
    }
    Ok((source, meta))
}

/// The permission bits an upload of a file with `meta` gets, and the
/// mode it is created with: the same, with the owner's read and write
/// added when the final mode lacks them (a pipelined upload may open the
/// file again), set back in the finishing requests.
pub(crate) fn upload_modes(meta: &fs::Metadata, options: &TransferOptions) -> (u32, u32) {
    let mode = if options.preserve_permissions {
        meta.mode() & 0o777
    } else {
        0o644
    };
    (mode, mode | 0o600)
}

/// The attributes set on the written file before it is closed: the mtime
/// with [`TransferOptions::preserve_mtime`], and the permission bits when
/// the file had to be created with more than its final mode.
pub(crate) fn finish_attrs(meta: &fs::Metadata, options: &TransferOptions) -> Option<Attrs> {
    let (mode, created) = upload_modes(meta, options);
    let mut attrs = Attrs::default();
    if mode != created {
        attrs.perm = Some(mode);
    }
    if options.preserve_mtime {
        let secs = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let secs = u32::try_from(secs).unwrap_or(u32::MAX);
        attrs.atime = Some(secs);
        attrs.mtime = Some(secs);
    }
    (attrs != Attrs::default()).then_some(attrs)
}

/// The error of a failed upload after its temporary file `temp` was
/// removed (or could not be: then the error says it is left).
pub(crate) fn after_cleanup(ch: &mut SftpChannel, err: Error, temp: &[u8]) -> Error {
    match ch.remove_ours(temp) {
        Ok(()) => err,
        Err(why) => add_note(
            err,
            format!(
                "; the temporary file {} is left on the server ({why})",
                shown(temp)
            ),
        ),
    }
}

/// The temporary name of an upload to `remote`: in `temp_dir`, or beside
/// the target.
fn temp_path(remote: &[u8], options: &TransferOptions, source_id: &[u8]) -> Vec<u8> {
    let dir = match &options.temp_dir {
        Some(dir) => dir.clone(),
        None => parent(remote),
    };
    join(&dir, &options.temp_for(file_name(remote), source_id))
}

/// Uploads `local` to `remote` as `options` say, as one file of `job`
/// (or of a job of its own).
pub(crate) fn upload_file(
    shared: &Shared,
    local: &Path,
    remote: &[u8],
    options: &TransferOptions,
    job: Option<&Job<'_>>,
) -> Result<Delivery> {
    let (source, meta) = open_source(local)?;
    let total = meta.len();
    let in_a_job = job.is_some();
    let mut own_job = None;
    let job = Job::or_own(job, &mut own_job, options, total);
    let progress = job.file(shown(remote), total);
    let mut source_id = local.as_os_str().as_encoded_bytes().to_vec();
    source_id.extend_from_slice(format!("\0{total}\0{:?}", meta.modified().ok()).as_bytes());
    let write_path = if options.atomic {
        temp_path(remote, options, &source_id)
    } else {
        remote.to_vec()
    };
    let upload = Upload {
        source: &source,
        remote,
        write_path: &write_path,
        total,
        create_mode: upload_modes(&meta, options).1,
        attrs: finish_attrs(&meta, options),
        options,
        progress: &progress,
        verify_with: options.verify_checksum.then_some((local, &shared.dialer)),
    };
    let result = shared.pool.any().and_then(|mut ch| {
        let any_order = options.any_order(ch.extensions());
        match options.plan(total, false, any_order) {
            Plan::Single | Plan::Wave => {
                let beside = options.may_write_beside(total, any_order);
                upload.on_one_session(&mut ch, beside.then_some(shared))
            }
            Plan::Segments(sessions) => upload.in_segments(shared, ch, sessions),
        }
    });
    if let Err(e) = &result {
        if e.kind() == ErrorKind::Disconnected && options.atomic && !options.resume {
            job.orphan(remote, &write_path);
        }
    }
    if in_a_job {
        // The job looks and removes them when it ends.
        return result;
    }
    let result = match result {
        Err(e) if crate::error::delivery_in_doubt(&e) => {
            look_after_doubt(shared, job, local, remote, options, e)
        }
        other => other,
    };
    // A job of its own: what the ended connection left goes now.
    match (result, remove_orphans(shared, job).pop()) {
        (Ok(mut delivery), Some((_, note))) => {
            delivery.warnings.push(note);
            Ok(delivery)
        }
        (Err(e), Some((_, note))) => Err(add_note(e, format!("; {note}"))),
        (result, None) => result,
    }
}

/// What became of an upload of `local` to `remote` whose connection
/// ended while its rename into place was on the way (`err`, see
/// [`RENAME_IN_DOUBT`](crate::error::RENAME_IN_DOUBT)), looked up over
/// `shared` (its pool connects again): its temporary file still there
/// means the rename never happened, so it is removed and the file sent
/// again; the temporary file gone and the target holding as many bytes as
/// were sent means it happened: delivered, with a warning. Anything else
/// keeps `err`: the caller must look.
pub(crate) fn look_after_doubt(
    shared: &Shared,
    job: &Job<'_>,
    local: &Path,
    remote: &[u8],
    options: &TransferOptions,
    err: Error,
) -> Result<Delivery> {
    // The try in doubt is the last one recorded; earlier tries' temporary
    // files go back on the list, to be removed when the job ends.
    let mut temps = job.take_orphans_of(remote);
    let Some(temp) = temps.pop() else {
        return Err(err);
    };
    for earlier in temps {
        job.orphan(remote, &earlier);
    }
    let sent = fs::metadata(local).map(|m| m.len()).ok();
    // Whether the temporary file is still there, else the target's size;
    // once more on a new connection if this one ends too (a session still
    // connecting when the job ended can end ours).
    let look = || -> Result<std::result::Result<(), Option<u64>>> {
        let mut ch = shared.pool.any()?;
        match rfs::stat(&mut ch, &temp, false) {
            Ok(_) => Ok(Ok(())),
            Err(e) if e.kind() == ErrorKind::NotFound => match rfs::stat(&mut ch, remote, true) {
                Ok(m) => Ok(Err(Some(m.len()))),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Err(None)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    };
    let found = match look() {
        Err(e) if e.kind() == ErrorKind::Disconnected => look(),
        other => other,
    };
    match found {
        Ok(Ok(())) => {
            info!(
                "{}: the rename of {} into place did not happen: sending it again",
                shared.pool.target(),
                shown(remote)
            );
            let removed = shared
                .pool
                .any()
                .map_err(|e| e.to_string())
                .and_then(|mut ch| ch.remove_ours(&temp));
            if let Err(why) = removed {
                let note = format!(
                    "; the temporary file {} is left on the server ({why})",
                    shown(&temp)
                );
                return Err(add_note(err, note));
            }
            upload_file(shared, local, remote, options, Some(job)).map(|mut delivery| {
                delivery
                    .warnings
                    .push(format!("an earlier try failed: {err}"));
                delivery
            })
        }
        Ok(Err(Some(size))) if Some(size) == sent => Ok(Delivery {
            target: shown(remote),
            bytes: size,
            verified: Verified::Size,
            checksum: Checksum::NotAsked,
            warnings: vec![format!(
                "the connection ended while the file was renamed into place; its temporary \
                 file is gone and the target holds the {size} bytes sent"
            )],
        }),
        Ok(Err(_)) => Err(err),
        Err(_) => {
            job.orphan(remote, &temp);
            Err(err)
        }
    }
}

/// Removes the temporary files that tries of `job` may have left when
/// their connection ended, over a channel of `shared`'s (its pool
/// connects again); returns a note, by target, for each still there.
pub(crate) fn remove_orphans(shared: &Shared, job: &Job<'_>) -> Vec<(Vec<u8>, String)> {
    let orphans = job.take_orphans();
    if orphans.is_empty() {
        return Vec::new();
    }
    let mut ch = match shared.pool.any() {
        Ok(ch) => Some(ch),
        Err(e) => {
            warn!("cannot remove the temporary files of ended connections: {e}");
            None
        }
    };
    let mut left = Vec::new();
    for (target, temp) in orphans {
        let removed = match ch.as_mut() {
            Some(ch) => ch.remove_ours(&temp),
            None => Err("no connection to the server".into()),
        };
        if let Err(why) = removed {
            left.push((
                target,
                format!(
                    "the temporary file {} of a try whose connection ended is left on the \
                     server ({why})",
                    shown(&temp)
                ),
            ));
        }
    }
    left
}

/// One file's upload: what it writes where.
pub(crate) struct Upload<'a> {
    pub(crate) source: &'a File,
    pub(crate) remote: &'a [u8],
    /// The temporary name (atomic) or the target itself (in place).
    pub(crate) write_path: &'a [u8],
    pub(crate) total: u64,
    /// The mode the file is created with.
    pub(crate) create_mode: u32,
    /// Set before the file is closed ([`finish_attrs`]).
    pub(crate) attrs: Option<Attrs>,
    pub(crate) options: &'a TransferOptions,
    pub(crate) progress: &'a FileProgress<'a>,
    /// With [`TransferOptions::verify_checksum`]: the local file and the
    /// session that hashes the remote one.
    pub(crate) verify_with: Option<(&'a Path, &'a Arc<dyn Dialer>)>,
}

impl Upload<'_> {
    /// The whole upload on one channel; on a long link also on other
    /// channels of `beside`, the session, when it is given
    /// ([`TransferOptions::may_write_beside`]).
    fn on_one_session(&self, ch: &mut SftpChannel, beside: Option<&Shared>) -> Result<Delivery> {
        let (write_path, options) = (self.write_path, self.options);
        let asked = Instant::now();
        let (handle, start) = match self.resumable(ch)? {
            Some(resumed) => resumed,
            None => (self.open(ch, false)?, 0),
        };
        // The OPEN took a round trip (more, with a check before it): it
        // tells how many channels the link is long enough for.
        let opened_in = asked.elapsed();
        if start > 0 {
            info!(
                "resuming the upload of {} at byte {start} of {}",
                shown(self.remote),
                self.total
            );
        }
        self.progress.start(start);
        let write = |ch: &mut SftpChannel, next: pipeline::NextRange<'_>| {
            pipeline::write_ranges(
                ch,
                &handle,
                write_path,
                self.source,
                next,
                options.in_flight(),
                &mut |n| self.progress.add(n),
            )
        };
        let sent = match (beside, channels_for(opened_in)) {
            (Some(shared), channels) if start == 0 && channels > 1 => {
                write_all_beside(shared, channels, &self.writing(), self.total, |next| {
                    write(ch, next)
                })
            }
            _ => {
                let mut once = Some(start..self.total);
                write(ch, &mut || once.take())
            }
        };
        let result = match sent {
            Ok(()) => pipeline::finish_write(
                ch,
                &handle,
                write_path,
                options.fsync,
                self.attrs,
                options.verify_size,
                options.strict_metadata,
            )
            .map_err(|e| self.written_but(e))
            .and_then(|finished| self.settle(ch, self.total, finished)),
            Err(e) => {
                ch.close_quietly(&handle, write_path);
                Err(e)
            }
        };
        match result {
            // A resumable upload cut by the network keeps its temporary
            // file for the next attempt; any other failure removes it.
            Err(e)
                if options.atomic && !(options.resume && e.is_transient()) && !ch.is_broken() =>
            {
                Err(after_cleanup(ch, e, write_path))
            }
            other => other,
        }
    }

    /// What the channels writing this upload's pieces share.
    fn writing(&self) -> Writing<'_> {
        Writing {
            source: self.source,
            path: self.write_path,
            options: self.options,
            progress: self.progress,
        }
    }

    /// An error after every byte was written and acknowledged: for an
    /// upload in place, the file at the target may well be complete.
    fn written_but(&self, e: Error) -> Error {
        if self.options.atomic {
            return e;
        }
        add_note(
            e,
            format!(
                "; all {} bytes had been written to {} and acknowledged by the server \
                 before this failure: the file there may be complete",
                self.total,
                shown(self.remote)
            ),
        )
    }

    /// A temporary file left by an earlier attempt of the same upload,
    /// open, with where to carry on: checked against the source first
    /// (its last buffer before the resume point must be the source's
    /// bytes). `None` to start over, with any stale file removed.
    fn resumable(&self, ch: &mut SftpChannel) -> Result<Option<(Vec<u8>, u64)>> {
        let (write_path, options) = (self.write_path, self.options);
        if !(options.atomic && options.resume) {
            return Ok(None);
        }
        let found = match rfs::stat(ch, write_path, false) {
            Ok(m) if m.is_file() => m.len(),
            _ => return Ok(None),
        };
        let Some(from) = options.resume_from(found, self.total) else {
            let _ = ch.remove_ours(write_path);
            return Ok(None);
        };
        let handle = self.open(ch, true)?;
        let mut overlap = Some(options.overlap(from));
        let checked = pipeline::read_ranges(
            ch,
            &handle,
            write_path,
            Sink::Compare(self.source),
            &mut || overlap.take(),
            None,
            options.in_flight(),
            &mut |_| {},
        );
        match checked {
            Ok(()) => Ok(Some((handle, from))),
            Err(e) if e.kind() == ErrorKind::Changed => {
                info!("{e}; starting the upload over");
                ch.close_quietly(&handle, write_path);
                let _ = ch.remove_ours(write_path);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the file to write: the temporary file, new (or the one left
    /// by an earlier attempt, `again`), or the target in place.
    pub(crate) fn open(&self, ch: &mut SftpChannel, again: bool) -> Result<Vec<u8>> {
        let (remote, write_path, options) = (self.remote, self.write_path, self.options);
        if options.overwrite == Overwrite::Never && rfs::exists(ch, remote)? {
            return Err(ch.error(
                ErrorKind::AlreadyExists,
                "upload",
                remote,
                "the target exists (Overwrite::Never)",
            ));
        }
        let pflags = if again {
            flags::READ | flags::WRITE
        } else if options.atomic || options.overwrite == Overwrite::Never {
            flags::WRITE | flags::CREATE | flags::EXCLUSIVE
        } else {
            flags::WRITE | flags::CREATE | flags::TRUNCATE
        };
        let attrs = Attrs::perm(self.create_mode);
        pipeline::open(ch, write_path, pflags, &attrs, "upload").map_err(|err| {
            if err.kind() == ErrorKind::NotFound {
                let folder = parent(write_path);
                return ch.error(
                    ErrorKind::NotFound,
                    "upload",
                    remote,
                    format!("the remote folder {} does not exist", shown(&folder)),
                );
            }
            if err.kind() == ErrorKind::Other
                && options.overwrite == Overwrite::Never
                && !options.atomic
                && !ch.is_broken()
                && rfs::exists(ch, remote).unwrap_or(false)
            {
                return ch.error(
                    ErrorKind::AlreadyExists,
                    "upload",
                    remote,
                    "the target exists (Overwrite::Never)",
                );
            }
            err
        })
    }

    /// After the data and the finishing requests: the size check (with
    /// the bytes the server acknowledged when it refuses `stat`), the
    /// attributes it refused (a warning unless strict), and the rename
    /// into place.
    pub(crate) fn settle(
        &self,
        ch: &mut SftpChannel,
        sent: u64,
        finished: Finished,
    ) -> Result<Delivery> {
        let mut delivery = self.verdict(ch, sent, finished)?;
        self.check_sum(ch, &mut delivery)?;
        if self.options.atomic {
            let renamed = match self.options.overwrite {
                Overwrite::Replace => rename_replace(ch, self.write_path, self.remote),
                Overwrite::Never => rename_no_replace(ch, self.write_path, self.remote),
            };
            renamed.map_err(|e| self.rename_error(ch, e))?;
        }
        Ok(delivery)
    }

    /// With [`TransferOptions::verify_checksum`], the SHA-256 of the
    /// written file against the source's, into `delivery`.
    pub(crate) fn check_sum(&self, ch: &SftpChannel, delivery: &mut Delivery) -> Result<()> {
        if let Some((local, dialer)) = self.verify_with {
            delivery.checksum =
                checksum::verify(dialer, local, self.write_path, ch.target(), self.remote)
                    .map_err(|e| self.written_but(e))?;
        }
        Ok(())
    }

    /// What the finishing requests found, before the rename: how the file
    /// was checked, and what the server refused that does not stop the
    /// delivery; or why it must not be put in place.
    pub(crate) fn verdict(
        &self,
        ch: &SftpChannel,
        sent: u64,
        finished: Finished,
    ) -> Result<Delivery> {
        let (remote, options) = (self.remote, self.options);
        let mut warnings = Vec::new();
        if let Some(e) = finished.attrs_refused {
            let what = match self.attrs {
                Some(a) if a.mtime.is_some() && a.perm.is_some() => "modification time and mode",
                Some(a) if a.mtime.is_some() => "modification time",
                _ => "mode",
            };
            let words = format!(
                "the server refused to set the {what} of {} ({e}); delivered without it \
                 (TransferOptions::strict_metadata(true) makes this an error)",
                shown(remote)
            );
            warn!("{}: {words}", ch.target());
            warnings.push(words);
        }
        let verified = match (options.verify_size, finished.size) {
            (false, _) => Verified::NotChecked,
            (true, Some(size)) if size == sent => Verified::Size,
            (true, Some(size)) => {
                return Err(ch.error(
                    ErrorKind::Other,
                    "upload",
                    remote,
                    format!(
                        "size check failed: sent {sent} bytes, the server has {size} \
                         (TransferOptions::verify_size(false) skips this check)"
                    ),
                ))
            }
            (true, None) => {
                info!(
                    "{}: the server refuses stat; the size check of {} is the {sent} bytes \
                     it acknowledged",
                    ch.target(),
                    shown(remote)
                );
                Verified::Acknowledged
            }
        };
        Ok(Delivery {
            target: shown(remote),
            bytes: sent,
            verified,
            checksum: Checksum::NotAsked,
            warnings,
        })
    }

    /// What a failed rename into place means for the job: the connection
    /// ended on its way (delivery in doubt), the server took the file at
    /// close (it vanished), renames are refused, or the error as it is.
    pub(crate) fn rename_error(&self, ch: &mut SftpChannel, e: Error) -> Error {
        let (remote, temp) = (self.remote, self.write_path);
        if ch.is_broken() {
            return ch.error(
                ErrorKind::Disconnected,
                crate::error::RENAME_IN_DOUBT,
                remote,
                format!(
                    "the connection ended while {} was being renamed into place ({e}): \
                     whether {} was delivered is unknown; look before sending it again",
                    shown(temp),
                    shown(remote)
                ),
            );
        }
        match e.kind() {
            ErrorKind::NotFound if matches!(rfs::stat(ch, temp, false), Err(ref g) if g.kind() == ErrorKind::NotFound) => {
                ch.error(
                    ErrorKind::Other,
                    "upload",
                    remote,
                    format!(
                        "the server took the file at close under its temporary name {} (a \
                         watcher that picks up every closed file): it was not delivered as \
                         {}, and trying again would deliver the data again under another \
                         temporary name; upload with TransferOptions::temp_dir (a folder the \
                         watcher does not watch) or TransferOptions::atomic(false)",
                        shown(temp),
                        shown(remote)
                    ),
                )
            }
            ErrorKind::PermissionDenied => ch.error(
                ErrorKind::PermissionDenied,
                "upload",
                remote,
                format!(
                    "the server refused to rename the temporary file {} into place ({e}); if \
                     this inbox forbids renames, upload with TransferOptions::atomic(false)",
                    shown(temp)
                ),
            ),
            _ => e,
        }
    }

    /// Creates the temporary file on `ch`, the caller's channel, and
    /// writes into it there at once, while `sessions - 1` more sessions
    /// connect and join the writing; then checks and renames it. The
    /// extra sessions start connecting once the file is created: an
    /// upload the server refuses (no such folder, no permission) logs in
    /// no more than once.
    fn in_segments(&self, shared: &Shared, mut ch: Lease<'_>, sessions: usize) -> Result<Delivery> {
        let write_path = self.write_path;
        let asked = Instant::now();
        let handle = self.open(&mut ch, false)?;
        let extras = Extras::start(shared, sessions);
        let created = Created {
            lease: ch,
            handle,
            round_trip: asked.elapsed(),
        };
        self.progress.start(0);
        let written = upload_segments(shared, extras, created, &self.writing(), self.total);
        let mut ch = shared.pool.any()?;
        let done = written.and_then(|seen| {
            // The segments' handles are closed: what the last one's FSTAT
            // did not see is asked and set by name.
            let size = match seen {
                Some(size) => Some(size),
                None if self.options.verify_size => match rfs::stat(&mut ch, write_path, true) {
                    Ok(m) => Some(m.len()),
                    Err(e) if e.kind() == ErrorKind::PermissionDenied => None,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let attrs_refused = match &self.attrs {
                Some(attrs) => match rfs::set_attrs(&mut ch, "set attributes", write_path, attrs) {
                    Err(e) if !self.options.strict_metadata && !ch.is_broken() => Some(e),
                    other => {
                        other?;
                        None
                    }
                },
                None => None,
            };
            let finished = Finished {
                size,
                attrs_refused,
            };
            self.settle(&mut ch, self.total, finished)
        });
        match done {
            Err(e) if !ch.is_broken() => Err(after_cleanup(&mut ch, e, write_path)),
            other => other,
        }
    }
}
