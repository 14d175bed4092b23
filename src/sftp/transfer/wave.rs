//! Many small files on one channel at once, for the folder transfers.
//!
//! One file at a time, an atomic upload takes three round trips (open;
//! write, fsync, fstat and close; rename) and a download two (stat and
//! open; read and close). A *wave* moves its files in *groups* of up to
//! [`TransferOptions::open_files`] (32 by default), every file of a group
//! at each step together: every file's open goes out before the first
//! answer is read, and so on. An upload wave overlaps its groups: one
//! flight carries the renames of a group, the data of the next and the
//! creates of the one after, so a wave of `g` groups takes `g + 2` round
//! trips instead of `3 g`. Each file stays atomic on its own: written to
//! its temporary name, checked, renamed; and each ends in its own result.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::download::{finish_download, sync_folder, LocalTarget, LocalTemp};
use super::options::{Plan, TransferOptions, WAVE};
use super::outcome::Delivery;
use super::pipeline::{self, FinishIds, Finished, Sink};
use super::progress::{FileProgress, Job};
use super::upload::{after_cleanup, finish_attrs, open_source, upload_modes, Upload};
use crate::conn::Dialer;
use crate::sftp::channel::{status_code, Reply, SftpChannel};
use crate::sftp::fs::rename_replace;
use crate::sftp::metadata::Metadata;
use crate::sftp::path::{file_name, join, parent, shown};
use crate::sftp::proto::{kind, open as flags, status, Attrs};
use crate::{Error, ErrorKind, Result};
use std::sync::Arc;

/// One upload of a wave.
struct Up<'a> {
    local: &'a Path,
    remote: &'a [u8],
    temp: Vec<u8>,
    source: File,
    size: u64,
    create_mode: u32,
    attrs: Option<Attrs>,
    progress: FileProgress<'a>,
    handle: Option<Vec<u8>>,
    /// The temporary file was created (and must go if not renamed).
    created: bool,
    finish: Option<FinishIds>,
    writes: Vec<(u32, u64)>,
    finished: Option<Finished>,
    error: Option<Error>,
    /// The posix-rename on its way.
    rename: Option<u32>,
    /// What became of the file, once decided.
    verdict: Option<Result<Delivery>>,
}

impl Up<'_> {
    /// The upload as [`Upload`] sees it, for its checks and messages.
    fn upload<'b>(
        &'b self,
        options: &'b TransferOptions,
        dialer: &'b Arc<dyn Dialer>,
    ) -> Upload<'b> {
        Upload {
            source: &self.source,
            remote: self.remote,
            write_path: &self.temp,
            total: self.size,
            create_mode: self.create_mode,
            attrs: self.attrs,
            options,
            progress: &self.progress,
            verify_with: options.verify_checksum.then_some((self.local, dialer)),
        }
    }
}

/// Uploads `files` (local, remote), each atomic, in one wave on `ch`, as
/// files of `job`. Returns each file's result in `files` order; when the
/// channel fails, the files not renamed into place by then fail with it
/// ([`ErrorKind::Disconnected`]).
pub(crate) fn upload_wave<'a>(
    ch: &mut SftpChannel,
    files: &'a [(PathBuf, Vec<u8>)],
    options: &TransferOptions,
    job: &'a Job<'a>,
    dialer: &Arc<dyn Dialer>,
) -> Vec<Result<Delivery>> {
    let mut temps = Vec::with_capacity(files.len());
    let results = upload_wave_on(ch, files, options, job, dialer, &mut temps);
    if ch.is_broken() && !options.resume {
        // The connection ended: the temporary files of the files not
        // delivered may be left, for the job to remove.
        let delivered = |i: usize| results.get(i).is_some_and(|r| r.is_ok());
        for (i, (remote, temp)) in temps {
            if !delivered(i) {
                job.orphan(remote, &temp);
            }
        }
    }
    results
}

/// The groups of a wave of `files` files: ranges of up to
/// [`TransferOptions::open_files`]; and whether a group's opens may go out
/// beside the previous group's closes: only when the server takes a whole
/// group of open files besides (servers answer in order; one that allows
/// fewer files, `open_files`, may not).
fn groups(files: usize, options: &TransferOptions) -> (Vec<Range<usize>>, bool) {
    let group = options.open_files.clamp(1, WAVE);
    let groups = (0..files)
        .step_by(group)
        .map(|s| s..(s + group).min(files))
        .collect();
    (groups, options.open_files >= WAVE)
}

/// A temporary file of a wave: its file's index, target and name.
type WaveTemp<'a> = (usize, (&'a [u8], Vec<u8>));

/// [`upload_wave`], noting in `temps` each temporary file it may create
/// (with the index of its file and the target).
fn upload_wave_on<'a>(
    ch: &mut SftpChannel,
    files: &'a [(PathBuf, Vec<u8>)],
    options: &TransferOptions,
    job: &'a Job<'a>,
    dialer: &Arc<dyn Dialer>,
    temps: &mut Vec<WaveTemp<'a>>,
) -> Vec<Result<Delivery>> {
    let mut items = Vec::with_capacity(files.len());
    let mut results: Vec<Option<Result<Delivery>>> = Vec::with_capacity(files.len());
    for (i, (local, remote)) in files.iter().enumerate() {
        match open_source(local) {
            Ok((source, meta)) => {
                let temp = match &options.temp_dir {
                    Some(dir) => join(dir, &options.temp_for(file_name(remote), b"")),
                    None => join(&parent(remote), &options.temp_for(file_name(remote), b"")),
                };
                temps.push((i, (remote.as_slice(), temp.clone())));
                items.push(Some(Up {
                    local,
                    remote,
                    temp,
                    source,
                    size: meta.len(),
                    create_mode: upload_modes(&meta, options).1,
                    attrs: finish_attrs(&meta, options),
                    progress: job.file(shown(remote), meta.len()),
                    handle: None,
                    created: false,
                    finish: None,
                    writes: Vec::new(),
                    finished: None,
                    error: None,
                    rename: None,
                    verdict: None,
                }));
                results.push(None);
            }
            Err(e) => {
                items.push(None);
                results.push(Some(Err(e)));
            }
        }
    }
    let mut live: Vec<&mut Up<'_>> = items.iter_mut().flatten().collect();
    let (groups, overlap) = groups(live.len(), options);
    let mut failed = None;
    for flight in 0..groups.len() + 2 {
        // Flight by flight: the renames of a group, the data of the next,
        // the creates of the one after (three round trips per group, one
        // per group when many follow each other). Nothing more goes out
        // once the channel failed: the files not renamed by then fail.
        if failed.is_some() || ch.is_broken() {
            break;
        }
        let renaming = flight.checked_sub(2).map(|g| groups[g].clone());
        let writing = flight.checked_sub(1).and_then(|g| groups.get(g)).cloned();
        let creating = groups.get(flight).cloned();
        if let Some(r) = &renaming {
            send_renames(ch, &mut live[r.clone()], options, dialer);
        }
        let oldest = match &writing {
            Some(r) => match send_bodies(ch, &mut live[r.clone()], options) {
                Ok(oldest) => oldest,
                Err(e) => {
                    failed = Some(e);
                    0
                }
            },
            None => 0,
        };
        let created = match (&creating, overlap && failed.is_none()) {
            (Some(r), true) => Some(send_creates(ch, &live[r.clone()])),
            _ => None,
        };
        if let Some(r) = renaming {
            take_renames(ch, &mut live[r], options, dialer);
        }
        if let (Some(r), None) = (writing, &failed) {
            for it in live[r].iter_mut().skip(oldest) {
                upload_replies(ch, it, options);
            }
        }
        // (`created` is only there when the data went out.)
        if let (Some(r), None) = (creating, &failed) {
            let ids = created.unwrap_or_else(|| send_creates(ch, &live[r.clone()]));
            take_creates(ch, &mut live[r], ids);
        }
    }
    // Every reply was read: a failure now leaves the verdicts as they are
    // (a rename already confirmed must not be sent again).
    if let Err(e) = ch.flush("upload", b"") {
        log::warn!("{}: after the renames: {e}", ch.target());
    }
    let verdicts: Vec<Option<Result<Delivery>>> =
        live.into_iter().map(|it| it.verdict.take()).collect();
    let mut verdicts = verdicts.into_iter();
    results
        .into_iter()
        .map(|early| match early {
            Some(result) => result,
            // Never renamed: the channel failed before.
            None => verdicts
                .next()
                .flatten()
                .unwrap_or_else(|| Err(unfinished(ch, &mut failed, "upload", b""))),
        })
        .collect()
}

/// The error of a wave's file left unfinished when the channel failed:
/// the failure itself for the first such file, a pointer to it for the
/// others.
fn unfinished(
    ch: &SftpChannel,
    failed: &mut Option<Error>,
    op: &'static str,
    path: &[u8],
) -> Error {
    failed.take().unwrap_or_else(|| {
        ch.error(
            ErrorKind::Disconnected,
            op,
            path,
            "not finished: the channel failed during this file's wave (see the wave's first \
             failed file)",
        )
    })
}

/// Queues the creation of every temporary file of `group`.
fn send_creates(ch: &mut SftpChannel, group: &[&mut Up<'_>]) -> Vec<u32> {
    group
        .iter()
        .map(|it| {
            ch.send_open(
                &it.temp,
                flags::WRITE | flags::CREATE | flags::EXCLUSIVE,
                &Attrs::perm(it.create_mode),
            )
        })
        .collect()
}

/// Takes the replies to [`send_creates`]: each file's handle or error.
fn take_creates(ch: &mut SftpChannel, group: &mut [&mut Up<'_>], ids: Vec<u32>) {
    for (it, id) in group.iter_mut().zip(ids) {
        match ch.handle_of(id, "upload", &it.temp) {
            Ok(h) => {
                it.handle = Some(h);
                it.created = true;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let folder = parent(&it.temp);
                it.error = Some(ch.error(
                    ErrorKind::NotFound,
                    "upload",
                    it.remote,
                    format!("the remote folder {} does not exist", shown(&folder)),
                ));
            }
            Err(e) => it.error = Some(e),
        }
    }
}

/// Queues the data, fsync, attributes, size and close of every created
/// file of `group`. The replies of its oldest files are taken as the
/// channel's request limit requires (a sliding window over the files):
/// returns how many files have theirs. `Err` when the channel failed.
fn send_bodies(
    ch: &mut SftpChannel,
    group: &mut [&mut Up<'_>],
    options: &TransferOptions,
) -> Result<usize> {
    let mut oldest = 0;
    for i in 0..group.len() {
        let Some(handle) = group[i].handle.take() else {
            continue;
        };
        let writes = group[i].size.div_ceil(u64::from(ch.write_len())) as usize;
        while !ch.has_room(writes + 4) && oldest < i {
            upload_replies(ch, group[oldest], options);
            oldest += 1;
        }
        let it = &mut group[i];
        it.progress.start(0);
        let mut offset = 0;
        while offset < it.size {
            let len = (it.size - offset).min(u64::from(ch.write_len()));
            let source = &it.source;
            let at = offset;
            match ch.send_write_with(&handle, at, len as usize, |buf| {
                source.read_exact_at(buf, at)
            }) {
                Ok(id) => it.writes.push((id, len)),
                Err(e) => {
                    it.error = Some(Error::io(
                        format!("cannot read the local file for {}", shown(it.remote)),
                        e,
                    ));
                    break;
                }
            }
            offset += len;
            ch.flush_if_full("upload", it.remote)?;
        }
        it.finish = Some(pipeline::send_finish_write(
            ch,
            &handle,
            options.fsync,
            it.attrs,
            options.verify_size,
        ));
    }
    Ok(oldest)
}

/// Decides each file of `group` (checked, or failed) and queues the
/// renames into place of the checked ones when the server offers
/// posix-rename.
fn send_renames(
    ch: &mut SftpChannel,
    group: &mut [&mut Up<'_>],
    options: &TransferOptions,
    dialer: &Arc<dyn Dialer>,
) {
    for it in group.iter_mut() {
        let verdict = match (it.error.take(), it.finished.take()) {
            (Some(e), _) => Some(Err(e)),
            (None, Some(f)) => Some({
                let upload = it.upload(options, dialer);
                upload.verdict(ch, it.size, f).and_then(|mut d| {
                    upload.check_sum(ch, &mut d)?;
                    Ok(d)
                })
            }),
            (None, None) => None,
        };
        if matches!(verdict, Some(Ok(_))) && ch.extensions().posix_rename {
            it.rename = Some(ch.send_rename(&it.temp, it.remote, true));
        }
        it.verdict = verdict;
    }
}

/// Takes the replies to [`send_renames`] (falling back to the plain
/// rename, one file at a time, where posix-rename is not there), and
/// removes the temporary file of every file that failed.
fn take_renames(
    ch: &mut SftpChannel,
    group: &mut [&mut Up<'_>],
    options: &TransferOptions,
    dialer: &Arc<dyn Dialer>,
) {
    for it in group.iter_mut() {
        let renamed = match (it.rename.take(), &it.verdict) {
            (Some(id), _) => match ch.status_of(id, "rename", it.remote) {
                Err(e) if status_code(&e) == Some(status::OP_UNSUPPORTED) => {
                    ch.forget_posix_rename();
                    rename_replace(ch, &it.temp, it.remote)
                }
                other => other,
            },
            // The plain rename needs the target out of the way.
            (None, Some(Ok(_))) => rename_replace(ch, &it.temp, it.remote),
            (None, _) => Ok(()),
        };
        if let Err(e) = renamed {
            let failed = it.upload(options, dialer).rename_error(ch, e);
            it.verdict = Some(Err(failed));
        }
        if let Some(Err(e)) = it.verdict.take_if(|v| v.is_err()) {
            it.verdict = Some(Err(if it.created && !ch.is_broken() {
                after_cleanup(ch, e, &it.temp)
            } else {
                e
            }));
        }
    }
}

/// Takes the replies to one wave file's writes and finishing requests.
fn upload_replies(ch: &mut SftpChannel, it: &mut Up<'_>, options: &TransferOptions) {
    for (id, len) in std::mem::take(&mut it.writes) {
        match ch.status_of(id, "upload", &it.temp) {
            Ok(()) => it.progress.add(len),
            Err(e) => {
                it.error.get_or_insert(e);
            }
        }
    }
    let Some(ids) = it.finish.take() else {
        return;
    };
    match pipeline::finish_write_replies(ch, ids, &it.temp, options.strict_metadata) {
        Ok(finished) => it.finished = Some(finished),
        Err(e) => {
            it.error.get_or_insert(e);
        }
    }
}

/// Marks a probe READ past the end (in `Reads::pending`'s length).
const PROBE: u64 = 0;
/// Marks a CLOSE.
const CLOSE: u64 = u64::MAX;

/// The requests of a download wave that wait for replies: (request id,
/// file, offset, length or [`PROBE`] / [`CLOSE`]), and how many each
/// file still waits for.
struct Reads {
    pending: Vec<(u32, usize, u64, u64)>,
    left: Vec<usize>,
}

impl Reads {
    fn add(&mut self, id: u32, item: usize, offset: u64, len: u64) {
        self.pending.push((id, item, offset, len));
        self.left[item] += 1;
    }

    /// Takes replies (to any file) until file `until` has all of its.
    /// Errors of a file are kept in it; a failed channel is returned.
    fn settle(
        &mut self,
        ch: &mut SftpChannel,
        items: &mut [Down<'_>],
        handles: &[Option<Vec<u8>>],
        until: usize,
    ) -> Result<()> {
        while self.left[until] > 0 {
            let pending = &self.pending;
            let (id, reply) = match ch.recv_where("download", items[until].remote, &mut |id| {
                pending.iter().any(|p| p.0 == id)
            }) {
                Ok(r) => r,
                Err(e) => {
                    ch.ignore(self.pending.drain(..).map(|p| p.0));
                    return Err(e);
                }
            };
            let Some(at) = self.pending.iter().position(|p| p.0 == id) else {
                continue;
            };
            let (_, i, offset, len) = self.pending.swap_remove(at);
            self.left[i] -= 1;
            let it = &mut items[i];
            if len == CLOSE {
                if let Reply::Status(code, msg) = reply {
                    if code != 0 {
                        log::debug!("cannot close {}: {code} {msg}", shown(it.remote));
                    }
                }
                continue;
            }
            let out = &it
                .target
                .as_ref()
                .expect("files with reads have a target")
                .out;
            match pipeline::read_reply(ch, reply, it.remote, &Sink::File(out), offset, len) {
                Ok(got) => {
                    it.received += got;
                    if let Some(p) = &it.progress {
                        p.add(got);
                    }
                    if got < len {
                        // A short read: ask again for the rest. The file's
                        // close went out with its reads, so on a server
                        // that answers in order the retry fails, and with
                        // it the file: short reads mean it shrank.
                        if let Some(handle) = &handles[i] {
                            let id = ch.send_read(handle, offset + got, (len - got) as u32);
                            self.add(id, i, offset + got, len - got);
                        }
                    }
                }
                Err(e) => {
                    it.error.get_or_insert(e);
                }
            }
        }
        Ok(())
    }
}

/// One download of a wave.
struct Down<'a> {
    remote: &'a [u8],
    local: &'a Path,
    meta: Option<Metadata>,
    target: Option<LocalTarget>,
    guard: LocalTemp,
    progress: Option<FileProgress<'a>>,
    received: u64,
    /// Bigger than a wave takes: left for the caller to move alone.
    bigger: bool,
    /// Every reply to its reads and close came.
    read: bool,
    error: Option<Error>,
}

/// Downloads `files` (remote, local), each atomic, in one wave on `ch`, as
/// files of `job`. Returns each file's result in `files` order; a file
/// that turns out bigger than a wave takes has `None`, untouched, for the
/// caller to download alone. When the channel fails, the files not read
/// whole by then fail with it ([`ErrorKind::Disconnected`]).
pub(crate) fn download_wave<'a>(
    ch: &mut SftpChannel,
    files: &'a [(Vec<u8>, PathBuf)],
    options: &TransferOptions,
    job: &'a Job<'a>,
    dialer: &Arc<dyn Dialer>,
) -> Vec<Option<Result<Delivery>>> {
    let mut items: Vec<Down<'_>> = files
        .iter()
        .map(|(remote, local)| Down {
            remote,
            local,
            meta: None,
            target: None,
            guard: LocalTemp { path: None },
            progress: None,
            received: 0,
            bigger: false,
            read: false,
            error: None,
        })
        .collect();
    let mut handles: Vec<Option<Vec<u8>>> = vec![None; items.len()];
    let (groups, overlap) = groups(items.len(), options);
    let mut failed = None;
    for flight in 0..groups.len() + 1 {
        // Flight by flight: the reads and close of a group, the STAT and
        // OPEN of the next (two round trips per group, one per group when
        // many follow each other).
        if failed.is_some() || ch.is_broken() {
            break;
        }
        let reading = flight.checked_sub(1).map(|g| groups[g].clone());
        let opening = groups.get(flight).cloned();
        let mut sent = None;
        if let Some(r) = &reading {
            match send_reads(ch, &mut items[r.clone()], &handles[r.clone()]) {
                Ok(reads) => sent = Some(reads),
                Err(e) => failed = Some(e),
            }
        }
        let opened = match (&opening, overlap && failed.is_none()) {
            (Some(r), true) => Some(send_opens(ch, &items[r.clone()])),
            _ => None,
        };
        if let (Some(r), Some((mut reads, oldest))) = (reading, sent) {
            let (group, handles) = (&mut items[r.clone()], &handles[r]);
            match (oldest..group.len()).try_for_each(|i| reads.settle(ch, group, handles, i)) {
                Ok(()) => group.iter_mut().for_each(|it| it.read = true),
                Err(e) => failed = Some(e),
            }
        }
        if let (Some(r), None) = (opening, &failed) {
            let ids = opened.unwrap_or_else(|| send_opens(ch, &items[r.clone()]));
            take_opens(
                ch,
                &mut items[r.clone()],
                &mut handles[r],
                ids,
                options,
                job,
            );
        } else if let Some(ids) = opened {
            ch.ignore(ids.into_iter().flat_map(|(stat, open)| [stat, open]));
        }
    }
    // Locally: flush, rename into place, and flush each folder once.
    let mut results = Vec::with_capacity(items.len());
    let mut folders: Vec<PathBuf> = Vec::new();
    for it in items {
        let Down {
            remote,
            local,
            meta,
            target,
            mut guard,
            received,
            bigger,
            read,
            error,
            ..
        } = it;
        if bigger {
            results.push(None);
            continue;
        }
        let result = match (error, target, meta) {
            (Some(e), _, _) => Err(e),
            (None, Some(target), Some(meta)) if read => {
                if !folders.contains(&target.dir) {
                    folders.push(target.dir.clone());
                }
                let verify_with = options.verify_checksum.then_some(dialer);
                finish_download(
                    remote,
                    local,
                    target,
                    received,
                    &meta,
                    options,
                    &mut guard,
                    verify_with,
                    false,
                )
            }
            // Never read whole: the channel failed before.
            _ => Err(unfinished(ch, &mut failed, "download", remote)),
        };
        results.push(Some(result));
    }
    if options.fsync {
        for dir in &folders {
            sync_folder(dir);
        }
    }
    results
}

/// Queues the STAT and OPEN of every file of `group`.
fn send_opens(ch: &mut SftpChannel, group: &[Down<'_>]) -> Vec<(u32, u32)> {
    group
        .iter()
        .map(|it| {
            (
                ch.send_str(kind::STAT, it.remote),
                ch.send_open(it.remote, flags::READ, &Attrs::default()),
            )
        })
        .collect()
}

/// Takes the replies to [`send_opens`]: each file's handle and local
/// temporary file, or why not (a file bigger than a wave takes is closed
/// and marked to move alone).
fn take_opens<'a>(
    ch: &mut SftpChannel,
    group: &mut [Down<'a>],
    handles: &mut [Option<Vec<u8>>],
    ids: Vec<(u32, u32)>,
    options: &TransferOptions,
    job: &'a Job<'a>,
) {
    for ((it, slot), (stat_id, open_id)) in group.iter_mut().zip(handles).zip(ids) {
        let meta = ch.attrs_of(stat_id, "download", it.remote);
        let handle = match ch.handle_of(open_id, "download", it.remote) {
            Ok(h) => h,
            Err(e) => {
                it.error = Some(e);
                continue;
            }
        };
        let opened = meta.map(Metadata::from).and_then(|m| {
            if m.is_dir() {
                return Err(ch.error(
                    ErrorKind::InvalidInput,
                    "download",
                    it.remote,
                    "is a directory",
                ));
            }
            Ok(m)
        });
        match opened {
            Ok(m) if options.plan(m.len(), true, true) != Plan::Wave => {
                ch.close_quietly(&handle, it.remote);
                it.bigger = true;
            }
            Ok(m) => {
                match LocalTarget::create(
                    ch,
                    &handle,
                    it.remote,
                    it.local,
                    &m,
                    options,
                    &mut it.guard,
                ) {
                    Ok(t) => {
                        it.target = Some(t);
                        let progress = job.file(it.local.display().to_string(), m.len());
                        progress.start(0);
                        it.progress = Some(progress);
                        it.meta = Some(m);
                        *slot = Some(handle);
                    }
                    Err(e) => {
                        ch.close_quietly(&handle, it.remote);
                        it.error = Some(e);
                    }
                }
            }
            Err(e) => {
                ch.close_quietly(&handle, it.remote);
                it.error = Some(e);
            }
        }
    }
}

/// Queues the reads of every opened file of `group`, a probe for growth
/// past the size it had, and its close; the replies of the oldest files
/// are taken as the channel's request limit requires. Returns the reads
/// waiting and how many files have all their replies.
fn send_reads(
    ch: &mut SftpChannel,
    group: &mut [Down<'_>],
    handles: &[Option<Vec<u8>>],
) -> Result<(Reads, usize)> {
    let read_len = u64::from(ch.read_len());
    let mut reads = Reads {
        pending: Vec::new(),
        left: vec![0; group.len()],
    };
    let mut oldest = 0;
    for i in 0..group.len() {
        let Some(handle) = handles[i].clone() else {
            continue;
        };
        let size = group[i].meta.as_ref().map_or(0, Metadata::len);
        let need = size.div_ceil(read_len) as usize + 2;
        while !ch.has_room(need) && oldest < i {
            reads.settle(ch, group, handles, oldest)?;
            oldest += 1;
        }
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(read_len);
            reads.add(ch.send_read(&handle, offset, len as u32), i, offset, len);
            offset += len;
        }
        reads.add(ch.send_read(&handle, size, 1), i, size, PROBE);
        reads.add(ch.send_close(&handle), i, 0, CLOSE);
    }
    Ok((reads, oldest))
}
