//! One file up: to a temporary name beside the target (or in place),
//! pipelined, flushed, its size checked, renamed into place; or cut in
//! pieces over several sessions (`segments.rs`).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use log::info;

use super::options::{Overwrite, Plan, TransferOptions};
use super::pipeline::{self, Sink};
use super::segments::{upload_segments, Workers};
use crate::error::add_note;
use crate::sftp::channel::SftpChannel;
use crate::sftp::fs::{self as rfs, rename_no_replace, rename_replace};
use crate::sftp::path::{file_name, join, parent, shown};
use crate::sftp::proto::{open as flags, Attrs};
use crate::sftp::Shared;
use crate::{Error, ErrorKind, Result};

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

/// The size check of an upload: `size` is what the server has after
/// `sent` bytes went out.
pub(crate) fn check_size(ch: &SftpChannel, remote: &[u8], sent: u64, size: u64) -> Result<()> {
    if size == sent {
        return Ok(());
    }
    Err(ch.error(
        ErrorKind::Other,
        "upload",
        remote,
        format!("size check failed: sent {sent} bytes, the server has {size}"),
    ))
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

/// Uploads `local` to `remote` as `options` say.
pub(crate) fn upload_file(
    shared: &Shared,
    local: &Path,
    remote: &[u8],
    options: &TransferOptions,
) -> Result<u64> {
    let (source, meta) = open_source(local)?;
    let total = meta.len();
    let mut source_id = local.as_os_str().as_encoded_bytes().to_vec();
    source_id.extend_from_slice(format!("\0{total}\0{:?}", meta.modified().ok()).as_bytes());
    let write_path = if options.atomic {
        join(
            &parent(remote),
            &options.temp_for(file_name(remote), &source_id),
        )
    } else {
        remote.to_vec()
    };
    let job = Upload {
        source: &source,
        remote,
        write_path: &write_path,
        total,
        create_mode: upload_modes(&meta, options).1,
        attrs: finish_attrs(&meta, options),
        options,
    };
    match options.plan(total, false) {
        Plan::Single | Plan::Wave => job.on_one_session(&mut *shared.pool.any()?),
        Plan::Segments(sessions) => job.in_segments(shared, local, sessions),
    }
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
}

impl Upload<'_> {
    /// The whole upload on one channel.
    fn on_one_session(&self, ch: &mut SftpChannel) -> Result<u64> {
        let (write_path, options) = (self.write_path, self.options);
        let (handle, start) = match self.resumable(ch)? {
            Some(resumed) => resumed,
            None => (self.open(ch, false)?, 0),
        };
        if start > 0 {
            info!(
                "resuming the upload of {} at byte {start} of {}",
                shown(self.remote),
                self.total
            );
        }
        let mut done = start;
        options.report(done, self.total);
        let mut once = Some(start..self.total);
        let sent = pipeline::write_ranges(
            ch,
            &handle,
            write_path,
            self.source,
            &mut || once.take(),
            options.in_flight(),
            &mut |n| {
                done += n;
                options.report(done, self.total);
            },
        );
        let result = match sent {
            Ok(()) => pipeline::finish_write(
                ch,
                &handle,
                write_path,
                options.fsync,
                self.attrs,
                options.verify_size,
            )
            .and_then(|size| self.put_in_place(ch, self.total, size)),
            Err(e) => {
                ch.close_quietly(&handle, write_path);
                Err(e)
            }
        };
        match result {
            Ok(()) => Ok(self.total),
            // A resumable upload cut by the network keeps its temporary
            // file for the next attempt; any other failure removes it.
            Err(e)
                if options.atomic && !(options.resume && e.is_transient()) && !ch.is_broken() =>
            {
                Err(after_cleanup(ch, e, write_path))
            }
            Err(e) => Err(e),
        }
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
                return ch.error(
                    ErrorKind::NotFound,
                    "upload",
                    remote,
                    format!(
                        "the remote folder {} does not exist",
                        shown(&parent(remote))
                    ),
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

    /// The size check (`size`: what the server has, `None` when
    /// [`TransferOptions::verify_size`] is off) and the rename into place.
    pub(crate) fn put_in_place(
        &self,
        ch: &mut SftpChannel,
        sent: u64,
        size: Option<u64>,
    ) -> Result<()> {
        let (remote, written, options) = (self.remote, self.write_path, self.options);
        if let Some(size) = size {
            check_size(ch, remote, sent, size)?;
        }
        if options.atomic {
            match options.overwrite {
                Overwrite::Replace => rename_replace(ch, written, remote)?,
                Overwrite::Never => rename_no_replace(ch, written, remote)?,
            }
        }
        Ok(())
    }

    /// Creates the temporary file, lets `sessions` sessions write their
    /// pieces into it, then checks and renames it.
    fn in_segments(&self, shared: &Shared, local: &Path, sessions: usize) -> Result<u64> {
        let write_path = self.write_path;
        {
            let mut ch = shared.pool.any()?;
            let handle = self.open(&mut ch, false)?;
            let id = ch.send_close(&handle);
            if let Err(e) = ch.status_of(id, "close", write_path) {
                return Err(after_cleanup(&mut ch, e, write_path));
            }
        }
        let workers = Workers::open(shared, sessions);
        let written = upload_segments(
            shared,
            &workers,
            local,
            write_path,
            self.total,
            self.options,
        );
        let mut ch = shared.pool.any()?;
        let done = written.and_then(|sent| {
            // The segments' handles are closed: stat and set by name.
            let size = if self.options.verify_size {
                Some(rfs::stat(&mut ch, write_path, true)?.len())
            } else {
                None
            };
            if let Some(attrs) = &self.attrs {
                rfs::set_attrs(&mut ch, "set attributes", write_path, attrs)?;
            }
            self.put_in_place(&mut ch, sent, size).map(|()| sent)
        });
        match done {
            Err(e) if !ch.is_broken() => Err(after_cleanup(&mut ch, e, write_path)),
            other => other,
        }
    }
}
