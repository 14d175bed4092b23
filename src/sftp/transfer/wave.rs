//! Many small files on one channel at once, for the folder transfers.
//!
//! One file at a time, an atomic upload takes three round trips (open;
//! write, fsync, fstat and close; rename) and a download two (stat and
//! open; read and close). A *wave* of up to [`WAVE`](super::options::WAVE)
//! files takes the same round trips for all of its files together: every
//! file's open goes out before the first answer is read, and so on. Each
//! file stays atomic on its own: written to its temporary name, checked,
//! renamed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::download::{finish_download, sync_folder, LocalTarget, LocalTemp};
use super::options::{Plan, TransferOptions};
use super::pipeline::{self, FinishIds, Sink};
use super::upload::{check_size, finish_attrs, open_source, upload_modes};
use crate::sftp::channel::{status_code, Reply, SftpChannel};
use crate::sftp::fs::rename_replace;
use crate::sftp::metadata::Metadata;
use crate::sftp::path::{file_name, join, parent, shown};
use crate::sftp::proto::{kind, open as flags, status, Attrs};
use crate::{Error, ErrorKind, Result};

/// One upload of a wave.
struct Up<'a> {
    remote: &'a [u8],
    temp: Vec<u8>,
    source: File,
    size: u64,
    create_mode: u32,
    attrs: Option<Attrs>,
    handle: Option<Vec<u8>>,
    /// The temporary file was created (and must go if not renamed).
    created: bool,
    finish: Option<FinishIds>,
    writes: Vec<u32>,
    error: Option<Error>,
}

/// Uploads `files` (local, remote), each atomic, in one wave on `ch`.
/// Returns the bytes sent, or the first file's error (in `files` order)
/// after the others are done.
pub(crate) fn upload_wave(
    ch: &mut SftpChannel,
    files: &[(PathBuf, Vec<u8>)],
    options: &TransferOptions,
) -> Result<u64> {
    let mut items = Vec::with_capacity(files.len());
    for (local, remote) in files {
        let (source, meta) = open_source(local)?;
        items.push(Up {
            remote,
            temp: join(&parent(remote), &options.temp_for(file_name(remote), b"")),
            source,
            size: meta.len(),
            create_mode: upload_modes(&meta, options).1,
            attrs: finish_attrs(&meta, options),
            handle: None,
            created: false,
            finish: None,
            writes: Vec::new(),
            error: None,
        });
    }
    // Round trip 1: every temporary file is created.
    let ids: Vec<u32> = items
        .iter()
        .map(|it| {
            ch.send_open(
                &it.temp,
                flags::WRITE | flags::CREATE | flags::EXCLUSIVE,
                &Attrs::perm(it.create_mode),
            )
        })
        .collect();
    for (it, id) in items.iter_mut().zip(ids) {
        match ch.handle_of(id, "upload", &it.temp) {
            Ok(h) => {
                it.handle = Some(h);
                it.created = true;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                it.error = Some(ch.error(
                    ErrorKind::NotFound,
                    "upload",
                    it.remote,
                    format!(
                        "the remote folder {} does not exist",
                        shown(&parent(it.remote))
                    ),
                ));
            }
            Err(e) => it.error = Some(e),
        }
    }
    // Round trip 2: the data, fsync, attributes, size and close of every
    // file. The replies of the oldest files are taken as the channel's
    // request limit requires: a sliding window over the files.
    let mut oldest = 0;
    for i in 0..items.len() {
        let Some(handle) = items[i].handle.take() else {
            continue;
        };
        let writes = items[i].size.div_ceil(u64::from(ch.write_len())) as usize;
        while !ch.has_room(writes + 4) && oldest < i {
            upload_replies(ch, &mut items[oldest]);
            oldest += 1;
        }
        let it = &mut items[i];
        options.report(0, it.size);
        let mut offset = 0;
        while offset < it.size {
            let len = (it.size - offset).min(u64::from(ch.write_len()));
            let source = &it.source;
            let at = offset;
            match ch.send_write_with(&handle, at, len as usize, |buf| {
                source.read_exact_at(buf, at)
            }) {
                Ok(id) => it.writes.push(id),
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
    for it in items.iter_mut().skip(oldest) {
        upload_replies(ch, it);
    }
    // Round trip 3: the complete files are renamed into place, the others'
    // temporary files removed.
    let posix = ch.extensions().posix_rename;
    let mut renames = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if it.error.is_some() {
            if it.created {
                let id = ch.send_str(kind::REMOVE, &it.temp);
                ch.ignore([id]);
            }
        } else if posix {
            renames.push((i, ch.send_rename(&it.temp, it.remote, true)));
        }
    }
    for (i, id) in renames {
        let it = &mut items[i];
        let renamed = match ch.status_of(id, "rename", it.remote) {
            Err(e) if status_code(&e) == Some(status::OP_UNSUPPORTED) => {
                ch.forget_posix_rename();
                rename_replace(ch, &it.temp, it.remote)
            }
            other => other,
        };
        if let Err(e) = renamed {
            it.error = Some(e);
            let _ = ch.remove_ours(&it.temp);
        }
    }
    if !posix {
        // One by one: the plain rename needs the target out of the way.
        for it in items.iter_mut().filter(|it| it.error.is_none()) {
            if let Err(e) = rename_replace(ch, &it.temp, it.remote) {
                it.error = Some(e);
                let _ = ch.remove_ours(&it.temp);
            }
        }
    }
    ch.flush("upload", b"")?;
    let mut sent = 0;
    for it in items {
        if let Some(e) = it.error {
            return Err(e);
        }
        options.report(it.size, it.size);
        sent += it.size;
    }
    Ok(sent)
}

/// Takes the replies to one wave file's writes and finishing requests.
fn upload_replies(ch: &mut SftpChannel, it: &mut Up<'_>) {
    for id in std::mem::take(&mut it.writes) {
        let written = ch.status_of(id, "upload", &it.temp);
        if it.error.is_none() {
            it.error = written.err();
        }
    }
    let Some(ids) = it.finish.take() else {
        return;
    };
    match pipeline::finish_write_replies(ch, ids, &it.temp) {
        Ok(Some(size)) if it.error.is_none() => {
            it.error = check_size(ch, it.remote, it.size, size).err();
        }
        Ok(_) => {}
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
    received: u64,
    error: Option<Error>,
}

/// Downloads `files` (remote, local), each atomic, in one wave on `ch`.
/// Files that turn out bigger than a wave takes are returned in `bigger`
/// untouched, for the caller to download alone. Returns the bytes
/// received, or the first file's error (in `files` order).
pub(crate) fn download_wave(
    ch: &mut SftpChannel,
    files: &[(Vec<u8>, PathBuf)],
    options: &TransferOptions,
    bigger: &mut Vec<(Vec<u8>, PathBuf)>,
) -> Result<u64> {
    let mut items: Vec<Down<'_>> = files
        .iter()
        .map(|(remote, local)| Down {
            remote,
            local,
            meta: None,
            target: None,
            guard: LocalTemp { path: None },
            received: 0,
            error: None,
        })
        .collect();
    // Round trip 1: STAT and OPEN of every file.
    let ids: Vec<(u32, u32)> = items
        .iter()
        .map(|it| {
            (
                ch.send_str(kind::STAT, it.remote),
                ch.send_open(it.remote, flags::READ, &Attrs::default()),
            )
        })
        .collect();
    let mut handles: Vec<Option<Vec<u8>>> = Vec::with_capacity(items.len());
    for (it, (stat_id, open_id)) in items.iter_mut().zip(ids) {
        let meta = ch.attrs_of(stat_id, "download", it.remote);
        let handle = match ch.handle_of(open_id, "download", it.remote) {
            Ok(h) => h,
            Err(e) => {
                it.error = Some(e);
                handles.push(None);
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
            Ok(m) if options.plan(m.len(), true) != Plan::Wave => {
                ch.close_quietly(&handle, it.remote);
                bigger.push((it.remote.to_vec(), it.local.to_path_buf()));
                handles.push(None);
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
                        it.meta = Some(m);
                        handles.push(Some(handle));
                    }
                    Err(e) => {
                        ch.close_quietly(&handle, it.remote);
                        it.error = Some(e);
                        handles.push(None);
                    }
                }
            }
            Err(e) => {
                ch.close_quietly(&handle, it.remote);
                it.error = Some(e);
                handles.push(None);
            }
        }
    }
    // Round trip 2: the reads of every file, a probe for growth past the
    // size it had, and the close; the replies of the oldest files are
    // taken as the channel's request limit requires.
    let read_len = u64::from(ch.read_len());
    let mut reads = Reads {
        pending: Vec::new(),
        left: vec![0; items.len()],
    };
    let mut oldest = 0;
    for i in 0..items.len() {
        let Some(handle) = handles[i].clone() else {
            continue;
        };
        let size = items[i].meta.as_ref().map_or(0, Metadata::len);
        let need = size.div_ceil(read_len) as usize + 2;
        while !ch.has_room(need) && oldest < i {
            reads.settle(ch, &mut items, &handles, oldest)?;
            oldest += 1;
        }
        options.report(0, size);
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(read_len);
            reads.add(ch.send_read(&handle, offset, len as u32), i, offset, len);
            offset += len;
        }
        reads.add(ch.send_read(&handle, size, 1), i, size, PROBE);
        reads.add(ch.send_close(&handle), i, 0, CLOSE);
    }
    for i in oldest..items.len() {
        reads.settle(ch, &mut items, &handles, i)?;
    }
    // Locally: flush, rename into place, and flush each folder once.
    let mut received = 0;
    let mut first_error = None;
    let mut folders: Vec<PathBuf> = Vec::new();
    for it in items {
        let Down {
            remote,
            local,
            meta,
            target,
            mut guard,
            received: got,
            error,
        } = it;
        if let Some(e) = error {
            first_error.get_or_insert(e);
            continue;
        }
        let (Some(target), Some(meta)) = (target, meta) else {
            continue;
        };
        if !folders.contains(&target.dir) {
            folders.push(target.dir.clone());
        }
        match finish_download(
            remote, local, target, got, &meta, options, &mut guard, false,
        ) {
            Ok(n) => {
                options.report(n, n);
                received += n;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if options.fsync {
        for dir in &folders {
            sync_folder(dir);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(received),
    }
}
