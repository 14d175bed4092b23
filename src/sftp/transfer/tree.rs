//! Folder transfers: the walk of a tree on either side, and the spread of
//! its files over sessions (small files in waves, the others alone).
//!
//! The walks are loops over a stack, never recursion, and stop at
//! [`MAX_DEPTH`] levels (as OpenSSH's `sftp` does). Names from the server
//! reach the local side only after `path::check_name` said they are one
//! component, and every local path is the target folder plus such names:
//! nothing is ever written outside the target. Symbolic links are not
//! followed on the server; locally only with
//! [`TransferOptions::follow_symlinks`], and a link back into the walk is
//! an error, never a loop.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use log::{debug, warn};

use super::download::download_file;
use super::lanes::{self, Step};
use super::options::{Plan, TransferOptions, WAVE, WAVE_GROUPS};
use super::outcome::{Delivery, DirReport, FileReport};
use super::progress::Job;
use super::upload::{look_after_doubt, remove_orphans, upload_file};
use super::wave::{download_wave, upload_wave};
use crate::error::add_note;
use crate::sftp::channel::SftpChannel;
use crate::sftp::fs::{mkdir, mkdir_all, read_dirs, MAX_DEPTH, MAX_LISTING};
use crate::sftp::metadata::{DirEntry, FileType};
use crate::sftp::path::{join, shown, trim_end_slashes, RemotePath};
use crate::sftp::Shared;
use crate::{Error, ErrorKind, Result};

/// The files of a folder upload: (local, remote) and the size.
type UpFiles = Vec<((PathBuf, Vec<u8>), u64)>;
/// The files of a folder download: (remote, local) and the size.
type DownFiles = Vec<((Vec<u8>, PathBuf), u64)>;

/// One job of a folder transfer.
enum Work<T> {
    /// Small files that move together.
    Wave(Vec<T>),
    /// A file that moves alone.
    One(T),
}

fn too_deep(ch: &SftpChannel, op: &'static str, path: &[u8]) -> Error {
    ch.error(
        ErrorKind::LimitExceeded,
        op,
        path,
        format!("the tree is deeper than {MAX_DEPTH} levels"),
    )
}

fn too_many(ch: &SftpChannel, op: &'static str, path: &[u8]) -> Error {
    ch.error(
        ErrorKind::LimitExceeded,
        op,
        path,
        format!("the tree holds more than {MAX_LISTING} entries"),
    )
}

/// Uploads the folder `local` to `remote` (see
/// [`SftpSession::upload_dir`](crate::SftpSession::upload_dir)).
pub(crate) fn upload_dir(
    shared: &Shared,
    local: &Path,
    remote: &[u8],
    options: &TransferOptions,
) -> Result<DirReport> {
    let remote = match trim_end_slashes(remote) {
        b"" => &b"/"[..],
        r => r,
    };
    let files = {
        let mut ch = shared.pool.any()?;
        mkdir_all(&mut ch, remote, 0o755)?;
        walk_local(&mut ch, local, remote, options)?
    };
    spread(
        shared,
        files,
        options,
        |shared, work, options, job| match work {
            Work::Wave(files) => {
                let results = on_a_channel(shared, |ch| {
                    Ok(upload_wave(ch, &files, options, job, &shared.dialer))
                });
                each(files, results)
            }
            Work::One(file) => {
                let result = upload_file(shared, &file.0, &file.1, options, Some(job));
                vec![file.report(result)]
            }
        },
    )
}

/// The report of one file.
fn file_report(local: PathBuf, remote: Vec<u8>, result: Result<Delivery>) -> FileReport {
    FileReport {
        local,
        remote: RemotePath::new(remote),
        result,
    }
}

/// `f` on a channel of `shared`'s.
fn on_a_channel<T>(shared: &Shared, f: impl FnOnce(&mut SftpChannel) -> Result<T>) -> Result<T> {
    f(&mut *shared.pool.any()?)
}

/// The reports of `files` from their `results` (in order), or, when the
/// whole wave failed, each with the wave's error.
fn each<T: FileItem>(files: Vec<T>, results: Result<Vec<Result<Delivery>>>) -> Vec<FileReport> {
    match results {
        Ok(results) => files
            .into_iter()
            .zip(results)
            .map(|(f, r)| f.report(r))
            .collect(),
        Err(e) => {
            let mut reports = Vec::with_capacity(files.len());
            // Of the same kind: a wave whose session ended goes to another.
            let kind = e.kind();
            let mut first = Some(e);
            for f in files {
                let err = first.take().unwrap_or_else(|| {
                    crate::sftp::channel::sftp_error(
                        kind,
                        "transfer",
                        "",
                        b"",
                        "the wave this file was in failed (see the first file's error)",
                    )
                });
                reports.push(f.report(Err(err)));
            }
            reports
        }
    }
}

/// A local folder to walk: its path, the remote folder it goes to, and
/// the `(device, inode)` of it and the folders above it.
struct LocalDir {
    path: PathBuf,
    remote: Vec<u8>,
    ancestors: Vec<(u64, u64)>,
}

/// Creates the remote folders under `remote` and lists the files to
/// upload, with their sizes.
fn walk_local(
    ch: &mut SftpChannel,
    local: &Path,
    remote: &[u8],
    options: &TransferOptions,
) -> Result<UpFiles> {
    let stat = |p: &Path| {
        fs::metadata(p).map_err(|e| Error::io(format!("cannot stat {}", p.display()), e))
    };
    let root = stat(local)?;
    let mut stack = vec![LocalDir {
        path: local.to_path_buf(),
        remote: remote.to_vec(),
        ancestors: vec![(root.dev(), root.ino())],
    }];
    let mut files = Vec::new();
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let read = fs::read_dir(&dir.path)
            .map_err(|e| Error::io(format!("cannot list {}", dir.path.display()), e))?;
        for entry in read {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot list {}", dir.path.display()), e))?;
            seen += 1;
            if seen > MAX_LISTING {
                return Err(too_many(ch, "upload_dir", remote));
            }
            let path = entry.path();
            let name = entry.file_name();
            let target = join(&dir.remote, name.as_bytes());
            let link = fs::symlink_metadata(&path)
                .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
            let meta = if link.file_type().is_symlink() {
                if !options.follow_symlinks {
                    debug!("skipping the symbolic link {}", path.display());
                    continue;
                }
                match fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!("skipping the broken symbolic link {}: {e}", path.display());
                        continue;
                    }
                }
            } else {
                link
            };
            if meta.is_dir() {
                let id = (meta.dev(), meta.ino());
                if dir.ancestors.contains(&id) {
                    return Err(Error::io(
                        format!("cannot upload {}", path.display()),
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "a symbolic link leads back into a folder above it (a loop)",
                        ),
                    ));
                }
                if dir.ancestors.len() >= MAX_DEPTH {
                    return Err(too_deep(ch, "upload_dir", &target));
                }
                match mkdir(ch, &target, 0o755) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                let mut ancestors = dir.ancestors.clone();
                ancestors.push(id);
                stack.push(LocalDir {
                    path,
                    remote: target,
                    ancestors,
                });
            } else if meta.is_file()
                && options
                    .filter
                    .as_ref()
                    .is_none_or(|g| g.matches(&name.to_string_lossy()))
            {
                files.push(((path, target), meta.len()));
            }
        }
    }
    Ok(files)
}

/// Downloads the folder `remote` into `local` (see
/// [`SftpSession::download_dir`](crate::SftpSession::download_dir)).
pub(crate) fn download_dir(
    shared: &Shared,
    remote: &[u8],
    local: &Path,
    options: &TransferOptions,
) -> Result<DirReport> {
    fs::create_dir_all(local)
        .map_err(|e| Error::io(format!("cannot create {}", local.display()), e))?;
    let files = walk_remote(&mut *shared.pool.any()?, remote, local, options)?;
    spread(shared, files, options, |shared, work, options, job| {
        match work {
            Work::Wave(files) => {
                let results = match on_a_channel(shared, |ch| {
                    Ok(download_wave(ch, &files, options, job, &shared.dialer))
                }) {
                    Ok(results) => results,
                    Err(e) => return each(files, Err(e)),
                };
                // Files bigger than a wave takes (`None`) move alone.
                let mut reports: Vec<FileReport> = Vec::new();
                let mut bigger = Vec::new();
                for (file, result) in files.iter().zip(results) {
                    match result {
                        Some(r) => reports.push(file.clone().report(r)),
                        None => bigger.push(file.clone()),
                    }
                }
                for file in bigger {
                    let result = download_file(shared, &file.0, &file.1, options, Some(job));
                    reports.push(file.report(result));
                }
                reports
            }
            Work::One(file) => {
                let result = download_file(shared, &file.0, &file.1, options, Some(job));
                vec![file.report(result)]
            }
        }
    })
}

/// `dir` joined with `name`, a name the server sent and `check_name`
/// passed: exactly one normal component, or an error (never a path
/// outside `dir`).
fn local_child(dir: &Path, name: &[u8]) -> Result<PathBuf> {
    let name = Path::new(OsStr::from_bytes(name));
    let mut parts = name.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(dir.join(name)),
        _ => Err(Error::invalid(
            "name from the server",
            format!("{} is not one path component", name.display()),
        )),
    }
}

/// Creates the local folders under `local` and lists the files to
/// download, with their sizes.
fn walk_remote(
    ch: &mut SftpChannel,
    remote: &[u8],
    local: &Path,
    options: &TransferOptions,
) -> Result<DownFiles> {
    // Level by level, each level's folders listed together.
    let mut level = vec![(remote.to_vec(), local.to_path_buf())];
    let mut depth = 0usize;
    let mut files = Vec::new();
    let mut seen = 0usize;
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(FOLDERS_AT_ONCE) {
            let dirs: Vec<Vec<u8>> = chunk.iter().map(|(dir, _)| dir.clone()).collect();
            for ((_, local_dir), listing) in chunk.iter().zip(read_dirs(ch, &dirs, MAX_LISTING)) {
                for entry in listing? {
                    seen += 1;
                    if seen > MAX_LISTING {
                        return Err(too_many(ch, "download_dir", remote));
                    }
                    let target = local_child(local_dir, entry.name_bytes())?;
                    walk_entry(ch, entry, target, depth, options, &mut next, &mut files)?;
                }
            }
        }
        level = next;
        depth += 1;
    }
    Ok(files)
}

/// Folders listed at once by a folder download's walk.
const FOLDERS_AT_ONCE: usize = 32;

/// One entry of a folder download's walk at `depth`: a folder is created
/// at `target` and goes on `next` level; a file the filter takes goes on
/// `files`; anything else is skipped.
fn walk_entry(
    ch: &SftpChannel,
    entry: DirEntry,
    target: PathBuf,
    depth: usize,
    options: &TransferOptions,
    next: &mut Vec<(Vec<u8>, PathBuf)>,
    files: &mut DownFiles,
) -> Result<()> {
    match entry.file_type() {
        FileType::Dir => {
            if depth + 1 >= MAX_DEPTH {
                return Err(too_deep(ch, "download_dir", entry.path().as_bytes()));
            }
            match fs::create_dir(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Never follow a local symlink out of the target.
                    if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                        return Err(Error::io(
                            format!("cannot download into {}", target.display()),
                            std::io::Error::new(
                                std::io::ErrorKind::AlreadyExists,
                                "it exists and is not a folder",
                            ),
                        ));
                    }
                }
                Err(e) => return Err(Error::io(format!("cannot create {}", target.display()), e)),
            }
            next.push((entry.path().as_bytes().to_vec(), target));
        }
        FileType::File
            if options
                .filter
                .as_ref()
                .is_none_or(|g| g.matches(entry.name())) =>
        {
            files.push(((entry.path().as_bytes().to_vec(), target), entry.len()));
        }
        FileType::File => {}
        other => debug!(
            "skipping {} ({other:?}): only files and folders are downloaded",
            shown(entry.path().as_bytes())
        ),
    }
    Ok(())
}

/// A file of a folder transfer, as its report names it.
trait FileItem: Clone + Send {
    /// The report of this file with `result`.
    fn report(self, result: Result<Delivery>) -> FileReport;
    /// The file a report is about.
    fn of(report: &FileReport) -> Self;
    /// Its remote path.
    fn remote(&self) -> &[u8];
}

/// An upload: (local, remote).
impl FileItem for (PathBuf, Vec<u8>) {
    fn report(self, result: Result<Delivery>) -> FileReport {
        file_report(self.0, self.1, result)
    }
    fn of(report: &FileReport) -> Self {
        (report.local.clone(), report.remote.as_bytes().to_vec())
    }
    fn remote(&self) -> &[u8] {
        &self.1
    }
}

/// A download: (remote, local).
impl FileItem for (Vec<u8>, PathBuf) {
    fn report(self, result: Result<Delivery>) -> FileReport {
        file_report(self.1, self.0, result)
    }
    fn of(report: &FileReport) -> Self {
        (report.remote.as_bytes().to_vec(), report.local.clone())
    }
    fn remote(&self) -> &[u8] {
        &self.0
    }
}

/// Whether a file that failed with `e` goes to another session: its
/// session ended, and it is known not to be in place (a rename on its way
/// when the connection ended may have delivered it: trying again could
/// deliver it twice).
fn worth_another_session(e: &Error) -> bool {
    e.kind() == ErrorKind::Disconnected && !crate::error::delivery_in_doubt(e)
}

/// The files of one wave: [`WAVE_GROUPS`] groups of `open_files` (a wave
/// overlaps its groups' round trips, see `wave.rs`). Not smaller so that
/// every session gets a part: the first session moves a group per round
/// trip while the others connect (about ten round trips), so the first
/// waves are its own either way.
fn wave_len(open_files: usize) -> usize {
    open_files.clamp(1, WAVE) * WAVE_GROUPS
}

/// Runs `job` over `files` (each with its size) on as many sessions as
/// [`TransferOptions::sessions`] allows for that many files: small files
/// in waves of four groups of [`TransferOptions::open_files`], bigger ones alone,
/// biggest first; each file moves on one session, with `options` less
/// segmenting, as a file of one job whose progress adds up. Returns the
/// report of every file tried: all of them with
/// [`TransferOptions::continue_on_error`], else up to the first failure.
///
/// A file whose session the server ended is tried again on another; when
/// that delivers it, its [`Delivery::warnings`] keep the earlier try's
/// error, which names any temporary file that session could not remove.
/// Files left when every session ended are reported failed.
fn spread<T: FileItem>(
    shared: &Shared,
    mut files: Vec<(T, u64)>,
    options: &TransferOptions,
    job: impl Fn(&Shared, Work<T>, &TransferOptions, &Job<'_>) -> Vec<FileReport> + Sync,
) -> Result<DirReport> {
    let per_file = options.clone().sessions(1);
    let progress = Job::new(options, files.iter().map(|(_, size)| size).sum());
    let sessions = options.sessions_for_files(files.len());
    files.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    let (small, big): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(_, size)| options.plan(*size, true, true) == Plan::Wave);
    let small: Vec<T> = small.into_iter().map(|(f, _)| f).collect();
    let work: Vec<Work<T>> = big
        .into_iter()
        .map(|(f, _)| Work::One(f))
        .chain(
            small
                .chunks(wave_len(options.open_files))
                .map(|c| Work::Wave(c.to_vec())),
        )
        .collect();
    let reports = Mutex::new(Vec::new());
    // What an earlier try of a file said when the server ended its session.
    let first_tries: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let ran = lanes::run(shared, sessions, work, |shared, work, last_try| {
        let (again, mut done): (Vec<_>, Vec<_>) = job(shared, work, &per_file, &progress)
            .into_iter()
            .partition(|f| !last_try && f.result.as_ref().is_err_and(worth_another_session));
        let mut lost = None;
        let mut items = Vec::new();
        for report in again {
            items.push(Work::One(T::of(&report)));
            if let Err(e) = report.result {
                first_tries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((report.local, format!("an earlier try failed: {e}")));
                lost.get_or_insert(e);
            }
        }
        // A rename cut off on its way is looked up when the job ends, not a
        // reason to stop.
        let failed = done
            .iter()
            .filter_map(|f| f.result.as_ref().err())
            .find(|e| !crate::error::delivery_in_doubt(e));
        let step = match (lost, failed) {
            (Some(e), _) => Step::Again(items, e),
            (None, Some(e)) if !options.continue_on_error => Step::Stop(crate::Error::invalid(
                "folder transfer",
                format!("stopped at the first failure: {e}"),
            )),
            _ => Step::Done,
        };
        let tries = first_tries.lock().unwrap_or_else(|e| e.into_inner());
        for report in &mut done {
            if let Ok(delivery) = &mut report.result {
                delivery.warnings.extend(
                    tries
                        .iter()
                        .filter(|(local, _)| *local == report.local)
                        .map(|(_, first)| first.clone()),
                );
            }
        }
        drop(tries);
        reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(done);
        step
    });
    let mut reports = reports.into_inner().unwrap_or_else(|e| e.into_inner());
    match ran {
        // A stop is in the report already: the failed file's own error.
        Ok(()) => {}
        Err(left) if left.stopped => {}
        Err(left) => {
            warn!(
                "{}: every session ended with {} job(s) left: {}",
                shared.pool.target(),
                left.items.len(),
                left.error
            );
            for work in left.items {
                let files = match work {
                    Work::One(f) => vec![f],
                    Work::Wave(files) => files,
                };
                for file in files {
                    let err = Error::Sftp {
                        kind: ErrorKind::Disconnected,
                        operation: "folder transfer",
                        path: shown(file.remote()),
                        target: shared.pool.target().to_owned(),
                        status: None,
                        reason: format!(
                            "not tried: every session ended ({}); nothing was written for it",
                            left.error
                        ),
                        source: None,
                    };
                    reports.push(file.report(Err(err)));
                }
            }
        }
    }
    // Renames cut off on their way: looked up, sent again where they never
    // happened.
    let mut reports: Vec<FileReport> = reports
        .into_iter()
        .map(|mut report| {
            report.result = match report.result {
                Err(e) if crate::error::delivery_in_doubt(&e) => {
                    let remote = report.remote.as_bytes().to_vec();
                    look_after_doubt(shared, &progress, &report.local, &remote, &per_file, e)
                }
                other => other,
            };
            report
        })
        .collect();
    let left = remove_orphans(shared, &progress);
    if !left.is_empty() {
        reports = reports
            .into_iter()
            .map(|mut report| {
                let notes = left.iter().filter(|(t, _)| *t == report.remote.as_bytes());
                for (_, note) in notes {
                    report.result = match report.result {
                        Ok(mut delivery) => {
                            delivery.warnings.push(note.clone());
                            Ok(delivery)
                        }
                        Err(e) => Err(add_note(e, format!("; {note}"))),
                    };
                }
                report
            })
            .collect();
    }
    Ok(DirReport { files: reports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_are_whole_groups() {
        assert_eq!(wave_len(32), 128);
        assert_eq!(wave_len(5), 20);
        // One open file at a time: groups of one.
        assert_eq!(wave_len(1), 4);
    }

    #[test]
    fn local_children_are_one_component() {
        let dir = Path::new("/tmp/target");
        assert_eq!(
            local_child(dir, b"a.csv").expect("a name"),
            Path::new("/tmp/target/a.csv")
        );
        for bad in [&b".."[..], b"/etc", b"a/b", b"", b"."] {
            assert!(local_child(dir, bad).is_err(), "{bad:?}");
        }
    }
}
