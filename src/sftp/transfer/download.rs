//! One file down: into a temporary local file beside the target (mode
//! `0o600`, never through a symlink), pipelined, flushed (a large one
//! behind the writes as well, see [`flusher`](super::flusher)), its size
//! checked, renamed into place; or in pieces over several sessions.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{debug, info, warn};

use super::checksum::{self, Checksum};
use super::flusher::{Flusher, FLUSH_BEHIND_FROM};
use super::options::{Overwrite, Plan, TransferOptions};
use super::outcome::{Delivery, Verified};
use super::pipeline::{self, Sink};
use super::progress::Job;
use super::segments::download_segments;
use crate::conn::Dialer;
use crate::sftp::channel::SftpChannel;
use crate::sftp::metadata::Metadata;
use crate::sftp::proto::{kind, open as flags, Attrs};
use crate::sftp::Shared;
use crate::{Error, ErrorKind, Result};
use std::sync::Arc;

/// Removes a local temporary file when dropped, unless disarmed.
pub(crate) struct LocalTemp {
    pub(crate) path: Option<PathBuf>,
}

impl Drop for LocalTemp {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            if let Err(e) = fs::remove_file(&p) {
                debug!("cannot remove temporary file {}: {e}", p.display());
            }
        }
    }
}

/// Flushes a local folder (best effort): makes renames in it durable.
pub(crate) fn sync_folder(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// This process's umask, from `/proc/self/status` (reading it with
/// `umask(2)` would change it for every thread); `0o022` where that is not
/// to be had.
fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// The mode a downloaded file gets: the remote mode's permission bits
/// (never setuid, setgid or sticky) less our umask, as OpenSSH's `sftp`
/// gives it; `0o666` less the umask without
/// [`TransferOptions::preserve_permissions`] or a mode from the server.
pub(crate) fn local_mode(remote: &Metadata, options: &TransferOptions) -> u32 {
    let bits = match remote.permissions() {
        Some(p) if options.preserve_permissions => p & 0o777,
        _ => 0o666,
    };
    bits & !umask()
}

/// Downloads `remote` to `local` as `options` say, as one file of `job`
/// (or of a job of its own).
pub(crate) fn download_file(
    shared: &Shared,
    remote: &[u8],
    local: &Path,
    options: &TransferOptions,
    job: Option<&Job<'_>>,
) -> Result<Delivery> {
    let mut guard = LocalTemp { path: None };
    let result = download_into(shared, remote, local, options, job, &mut guard);
    if let Err(e) = &result {
        // A resumable download cut by the network keeps its temporary file
        // for the next attempt; any other failure removes it.
        if options.resume && e.is_transient() && e.kind() != ErrorKind::Changed {
            guard.path = None;
        }
    }
    result
}

/// The download itself; `guard` holds the temporary file while it is not
/// in place.
fn download_into(
    shared: &Shared,
    remote: &[u8],
    local: &Path,
    options: &TransferOptions,
    job: Option<&Job<'_>>,
    guard: &mut LocalTemp,
) -> Result<Delivery> {
    if options.overwrite == Overwrite::Never && local.symlink_metadata().is_ok() {
        return Err(Error::io(
            format!("cannot download to {}", local.display()),
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the target exists (Overwrite::Never)",
            ),
        ));
    }
    let mut ch = shared.pool.any()?;
    let (handle, meta) = stat_and_open(&mut ch, remote)?;
    let total = meta.len();
    let mut own_job = None;
    let job = Job::or_own(job, &mut own_job, options, total);
    let progress = job.file(local.display().to_string(), total);
    let target = match LocalTarget::create(&mut ch, &handle, remote, local, &meta, options, guard) {
        Ok(t) => t,
        Err(e) => {
            pipeline::close_read(&mut ch, &handle, remote);
            return Err(e);
        }
    };
    let flusher = (options.fsync && total.saturating_sub(target.start) >= FLUSH_BEHIND_FROM)
        .then(|| Flusher::start(&target.out))
        .flatten();
    let written = |n: u64| {
        progress.add(n);
        if let Some(f) = &flusher {
            f.wrote(n);
        }
    };
    let done = match options.plan(total, false, true) {
        Plan::Single | Plan::Wave => {
            let start = target.start;
            if start > 0 {
                info!(
                    "resuming the download of {} at byte {start} of {total}",
                    crate::sftp::path::shown(remote)
                );
            }
            progress.start(start);
            let mut done = start;
            let mut once = Some(start..total);
            let read = pipeline::read_ranges(
                &mut ch,
                &handle,
                remote,
                Sink::File(&target.out),
                &mut || once.take(),
                Some(total),
                options.in_flight(),
                &mut |n| {
                    done += n;
                    written(n);
                },
            );
            pipeline::close_read(&mut ch, &handle, remote);
            read?;
            done
        }
        Plan::Segments(sessions) => {
            pipeline::close_read(&mut ch, &handle, remote);
            drop(ch);
            // Every session writes its pieces into the file.
            target
                .out
                .set_len(total)
                .map_err(|e| Error::io(format!("cannot size {}", target.path.display()), e))?;
            progress.start(0);
            download_segments(
                shared,
                sessions,
                remote,
                &target.out,
                total,
                options,
                &written,
            )?
        }
    };
    if let Some(f) = flusher {
        f.finish()
            .map_err(|e| Error::io(format!("cannot fsync {}", target.path.display()), e))?;
    }
    let verify_with = options.verify_checksum.then_some(&shared.dialer);
    finish_download(
        remote,
        local,
        target,
        done,
        &meta,
        options,
        guard,
        verify_with,
        true,
    )
}

/// The [`Delivery`] of a download of `bytes` to `local`.
pub(crate) fn delivered(local: &Path, bytes: u64, options: &TransferOptions) -> Delivery {
    Delivery {
        target: local.display().to_string(),
        bytes,
        verified: if options.verify_size {
            Verified::Size
        } else {
            Verified::NotChecked
        },
        checksum: Checksum::NotAsked,
        warnings: Vec::new(),
    }
}

/// STAT and OPEN of `remote` in one round trip: the handle and the
/// metadata (a folder is refused).
pub(crate) fn stat_and_open(ch: &mut SftpChannel, remote: &[u8]) -> Result<(Vec<u8>, Metadata)> {
    let stat_id = ch.send_str(kind::STAT, remote);
    let open_id = ch.send_open(remote, flags::READ, &Attrs::default());
    let stat = ch.attrs_of(stat_id, "download", remote);
    let handle = ch.handle_of(open_id, "download", remote)?;
    let meta = match stat.map(Metadata::from) {
        Ok(m) if m.is_dir() => Err(ch.error(
            ErrorKind::InvalidInput,
            "download",
            remote,
            "is a directory",
        )),
        other => other,
    };
    match meta {
        Ok(m) => Ok((handle, m)),
        Err(e) => {
            pipeline::close_read(ch, &handle, remote);
            Err(e)
        }
    }
}

/// The local file a download writes: a temporary file beside the target
/// (atomic), or the target itself.
pub(crate) struct LocalTarget {
    /// The server, for messages.
    target: String,
    pub(crate) out: File,
    path: PathBuf,
    pub(crate) dir: PathBuf,
    /// Where the download starts (a resumed one after 0).
    start: u64,
}

/// Opens an existing resume temporary file at `temp` only if it is
/// safe to write into: not through a symlink, a regular file of ours with
/// one link, and not locked by another transfer (it is locked for this
/// one).
fn reopen_resumable(temp: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(temp)
        .ok()?;
    let meta = file.metadata().ok()?;
    let ours =
        meta.is_file() && meta.uid() == rustix::process::geteuid().as_raw() && meta.nlink() == 1;
    if !ours {
        warn!(
            "not resuming into {}: it is not a regular file of ours with one link",
            temp.display()
        );
        return None;
    }
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        info!(
            "another transfer is resuming into {}; this one starts a copy of its own",
            temp.display()
        );
        return None;
    }
    Some(file)
}

/// Creates a new temporary file at `temp`: exclusively, `0o600`, never
/// through a symlink, locked.
fn create_temp(temp: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(temp)?;
    // New and ours: the lock only keeps a later resume out while we write.
    let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    Ok(file)
}

impl LocalTarget {
    #[allow(clippy::too_many_arguments)] // one download's state
    pub(crate) fn create(
        ch: &mut SftpChannel,
        handle: &[u8],
        remote: &[u8],
        local: &Path,
        remote_meta: &Metadata,
        options: &TransferOptions,
        guard: &mut LocalTemp,
    ) -> Result<LocalTarget> {
        let total = remote_meta.len();
        let local_name = local.file_name().map_or(&b"download"[..], |n| n.as_bytes());
        let dir = match local.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !options.atomic {
            let mut oo = OpenOptions::new();
            oo.write(true).mode(local_mode(remote_meta, options));
            if options.overwrite == Overwrite::Never {
                oo.create_new(true);
            } else {
                oo.create(true).truncate(true);
            }
            let out = oo
                .open(local)
                .map_err(|e| Error::io(format!("cannot create {}", local.display()), e))?;
            return Ok(LocalTarget {
                target: ch.target().to_string(),
                out,
                path: local.to_path_buf(),
                dir,
                start: 0,
            });
        }
        // Resume only what can be told unchanged: without an mtime from
        // the server, a rewritten file of the same size looks the same.
        let resume = options.resume && remote_meta.mtime_secs().is_some();
        if options.resume && !resume {
            info!(
                "not resuming the download of {}: the server gives no mtime to tell a \
                 changed file apart",
                crate::sftp::path::shown(remote)
            );
        }
        let fresh = options.clone().resume(false);
        if resume {
            let mut source_id = remote.to_vec();
            source_id
                .extend_from_slice(format!("\0{total}\0{:?}", remote_meta.mtime_secs()).as_bytes());
            let temp = dir.join(OsStr::from_bytes(&options.temp_for(local_name, &source_id)));
            if let Some(out) = reopen_resumable(&temp) {
                guard.path = Some(temp.clone());
                let found = out
                    .metadata()
                    .map_err(|e| Error::io(format!("cannot stat {}", temp.display()), e))?
                    .len();
                let start = match options.resume_from(found, total) {
                    Some(from) => verified_start(ch, handle, remote, &out, from, options)?,
                    None => 0,
                };
                out.set_len(start)
                    .map_err(|e| Error::io(format!("cannot truncate {}", temp.display()), e))?;
                return Ok(LocalTarget {
                    target: ch.target().to_string(),
                    out,
                    path: temp,
                    dir,
                    start,
                });
            }
            if fs::symlink_metadata(&temp).is_err() {
                let out = create_temp(&temp)
                    .map_err(|e| Error::io(format!("cannot create {}", temp.display()), e))?;
                guard.path = Some(temp.clone());
                return Ok(LocalTarget {
                    target: ch.target().to_string(),
                    out,
                    path: temp,
                    dir,
                    start: 0,
                });
            }
        }
        let temp = dir.join(OsStr::from_bytes(&fresh.temp_for(local_name, b"")));
        let out = create_temp(&temp)
            .map_err(|e| Error::io(format!("cannot create {}", temp.display()), e))?;
        guard.path = Some(temp.clone());
        Ok(LocalTarget {
            target: ch.target().to_string(),
            out,
            path: temp,
            dir,
            start: 0,
        })
    }
}

/// Where a resumed download carries on: `from` when the local file's last
/// buffer before it holds the remote file's bytes, else 0 (start over).
fn verified_start(
    ch: &mut SftpChannel,
    handle: &[u8],
    remote: &[u8],
    out: &File,
    from: u64,
    options: &TransferOptions,
) -> Result<u64> {
    let mut overlap = Some(options.overlap(from));
    let checked = pipeline::read_ranges(
        ch,
        handle,
        remote,
        Sink::Compare(out),
        &mut || overlap.take(),
        None,
        options.in_flight(),
        &mut |_| {},
    );
    match checked {
        Ok(()) => Ok(from),
        Err(e) if e.kind() == ErrorKind::Changed => {
            info!("{e}; starting the download over");
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// Flush, mtime, mode, size check, and the rename into place of a
/// download. With `sync_dir`, the folder is flushed too (the rename made
/// durable); a caller that puts several files in one folder may do that
/// once.
#[allow(clippy::too_many_arguments)] // the state of one download, in pieces
pub(crate) fn finish_download(
    remote: &[u8],
    local: &Path,
    target: LocalTarget,
    done: u64,
    remote_meta: &Metadata,
    options: &TransferOptions,
    guard: &mut LocalTemp,
    verify_with: Option<&Arc<dyn Dialer>>,
    sync_dir: bool,
) -> Result<Delivery> {
    let LocalTarget {
        target,
        out,
        path: out_path,
        dir: local_dir,
        ..
    } = target;
    let out_path = out_path.as_path();
    let total = remote_meta.len();
    if options.fsync {
        out.sync_all()
            .map_err(|e| Error::io(format!("cannot fsync {}", out_path.display()), e))?;
    }
    if options.preserve_mtime {
        if let Some(mtime) = remote_meta.modified() {
            out.set_modified(mtime)
                .map_err(|e| Error::io(format!("cannot set mtime of {}", out_path.display()), e))?;
        }
    }
    if options.atomic {
        out.set_permissions(fs::Permissions::from_mode(local_mode(remote_meta, options)))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", out_path.display()), e))?;
    }
    drop(out);
    if options.verify_size && done != total {
        return Err(crate::sftp::channel::sftp_error(
            ErrorKind::Other,
            "download",
            &target,
            remote,
            format!("size check failed: the server said {total} bytes, received {done}"),
        ));
    }
    let mut delivery = delivered(local, done, options);
    if let Some(dialer) = verify_with {
        delivery.checksum = checksum::verify(dialer, out_path, remote, &target, remote)?;
    }
    if options.atomic {
        if options.overwrite == Overwrite::Never {
            // hard_link fails if `local` appeared meanwhile: no clobbering.
            fs::hard_link(out_path, local).map_err(|e| {
                Error::io(
                    format!("cannot put the download in place at {}", local.display()),
                    e,
                )
            })?;
        } else {
            fs::rename(out_path, local).map_err(|e| {
                Error::io(
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
    Ok(delivery)
}
