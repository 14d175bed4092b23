//! The pipelines every transfer runs on a channel: writes from a local
//! file and reads into one, with many requests in flight and the replies
//! taken as they come; and the requests that finish an upload in one
//! round trip.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use log::debug;

use crate::sftp::channel::{status_code, Data, Reply, SftpChannel, MAX_DATA_REQUESTS};
use crate::sftp::proto::{kind, status, Attrs};
use crate::{Error, ErrorKind, Result};

/// What a transfer reports as it goes.
pub(crate) type Progress<'a> = &'a mut dyn FnMut(u64);

/// Hands out the byte ranges a pipeline moves.
pub(crate) type NextRange<'a> = &'a mut dyn FnMut() -> Option<Range<u64>>;

/// Cuts the ranges a pipeline is handed into requests.
struct Chunks<'a> {
    range: Option<Range<u64>>,
    next: NextRange<'a>,
}

impl<'a> Chunks<'a> {
    fn new(next: NextRange<'a>) -> Self {
        Chunks {
            range: next(),
            next,
        }
    }

    /// Whether every range is handed out (`take` said `None`).
    fn is_done(&self) -> bool {
        self.range.is_none()
    }

    /// The next request: its offset and length, at most `max`.
    fn take(&mut self, max: u64) -> Option<(u64, u64)> {
        loop {
            let r = self.range.as_mut()?;
            if r.is_empty() {
                self.range = (self.next)();
                continue;
            }
            let at = r.start;
            let len = (r.end - at).min(max);
            r.start += len;
            return Some((at, len));
        }
    }
}

/// The source or the target changed while it was moved: the transfer
/// fails, and a retry moves the new version.
pub(crate) fn changed(ch: &SftpChannel, op: &'static str, path: &[u8], what: String) -> Error {
    ch.error(
        ErrorKind::Changed,
        op,
        path,
        format!("{what}; nothing was put in place, a retry transfers the new version"),
    )
}

/// Runs a pipeline with its list of requests waiting for replies; after a
/// failure their replies are dropped when they come.
fn pipeline<T>(
    ch: &mut SftpChannel,
    run: impl FnOnce(&mut SftpChannel, &mut VecDeque<(u32, T)>) -> Result<()>,
) -> Result<()> {
    let mut pending = VecDeque::new();
    let result = run(ch, &mut pending);
    if result.is_err() {
        ch.ignore(pending.into_iter().map(|(id, _)| id));
    }
    result
}

/// The next reply to one of `pending`'s requests, and what `pending` held
/// for it.
fn next_reply<T>(
    ch: &mut SftpChannel,
    pending: &mut VecDeque<(u32, T)>,
    op: &'static str,
    path: &[u8],
) -> Result<(Reply, T)> {
    let (id, reply) = ch.recv_where(op, path, &mut |id| pending.iter().any(|(p, _)| *p == id))?;
    let at = pending
        .iter()
        .position(|(p, _)| *p == id)
        .expect("recv_where returns only pending ids");
    let (_, item) = pending.remove(at).expect("found above");
    Ok((reply, item))
}

/// Writes each range `next` hands out from `source` to `handle` at the
/// same offsets, keeping up to `in_flight` bytes unacknowledged; one
/// pipeline across all ranges (the sessions of a parallel upload share
/// one `next`). Reports each acknowledged request to `progress`.
pub(crate) fn write_ranges(
    ch: &mut SftpChannel,
    handle: &[u8],
    path: &[u8],
    source: &File,
    next: NextRange<'_>,
    in_flight: u64,
    progress: Progress<'_>,
) -> Result<()> {
    pipeline(ch, |ch, pending| {
        let mut chunks = Chunks::new(next);
        let mut unacked = 0u64;
        while !chunks.is_done() || !pending.is_empty() {
            while unacked < in_flight && pending.len() < MAX_DATA_REQUESTS && ch.has_room(1) {
                let Some((at, len)) = chunks.take(u64::from(ch.write_len())) else {
                    break;
                };
                let id = ch
                    .send_write_with(handle, at, len as usize, |buf| {
                        source.read_exact_at(buf, at)
                    })
                    .map_err(|e| {
                        if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            changed(
                                ch,
                                "upload",
                                path,
                                format!(
                                    "the local file shrank during the upload (below {})",
                                    at + len
                                ),
                            )
                        } else {
                            Error::io("cannot read the local file for upload", e)
                        }
                    })?;
                pending.push_back((id, len));
                unacked += len;
                ch.flush_if_full("upload", path)?;
            }
            if pending.is_empty() {
                continue;
            }
            let (reply, len) = next_reply(ch, pending, "upload", path)?;
            match reply {
                Reply::Status(status::OK, _) => {
                    unacked -= len;
                    progress(len);
                }
                Reply::Status(code, msg) => return Err(ch.status_error("upload", path, code, &msg)),
                _ => {
                    return Err(ch.protocol(
                        "upload",
                        path,
                        "a reply to WRITE that is not a status",
                    ))
                }
            }
        }
        Ok(())
    })
}

/// Where the bytes a read pipeline receives go.
pub(crate) enum Sink<'a> {
    /// Written to a local file at their offsets.
    File(&'a File),
    /// Compared with a local file at their offsets (a resume's check);
    /// the first difference fails the pipeline with
    /// [`ErrorKind::Changed`].
    Compare(&'a File),
}

/// Reads each range `next` hands out from `handle` into `sink`, keeping up
/// to `in_flight` bytes requested; with `eof`, checks at the end that the
/// file ends there (it did not grow). A short read asks again for the
/// rest; the end of the file before a range's end means it shrank.
#[allow(clippy::too_many_arguments)] // one pipeline's parameters
pub(crate) fn read_ranges(
    ch: &mut SftpChannel,
    handle: &[u8],
    path: &[u8],
    sink: Sink<'_>,
    next: NextRange<'_>,
    mut eof: Option<u64>,
    in_flight: u64,
    progress: Progress<'_>,
) -> Result<()> {
    pipeline(ch, |ch, pending: &mut VecDeque<(u32, (u64, u64))>| {
        // A request of length 0 marks the end-of-file probe.
        let mut chunks = Chunks::new(next);
        let mut requested = 0u64;
        while !chunks.is_done() || eof.is_some() || !pending.is_empty() {
            while requested < in_flight && pending.len() < MAX_DATA_REQUESTS && ch.has_room(1) {
                let Some((at, len)) = chunks.take(u64::from(ch.read_len())) else {
                    break;
                };
                let id = ch.send_read(handle, at, len as u32);
                pending.push_back((id, (at, len)));
                requested += len;
            }
            if chunks.is_done() {
                if let Some(end) = eof.take() {
                    let id = ch.send_read(handle, end, 1);
                    pending.push_back((id, (end, 0)));
                }
            }
            if pending.is_empty() {
                continue;
            }
            let (reply, (at, len)) = next_reply(ch, pending, "download", path)?;
            let got = read_reply(ch, reply, path, &sink, at, len)?;
            if len > 0 {
                requested -= len;
                progress(got);
                if got < len {
                    // A short read: ask again for the rest.
                    let id = ch.send_read(handle, at + got, (len - got) as u32);
                    pending.push_back((id, (at + got, len - got)));
                    requested += len - got;
                }
            }
        }
        Ok(())
    })
}

/// What the reply to a READ of `len` bytes at `at` says (`len` 0: the
/// probe at the end of the file, which must find the end): the data, put
/// in `sink` at `at`, and how many bytes it was.
pub(crate) fn read_reply(
    ch: &mut SftpChannel,
    reply: Reply,
    path: &[u8],
    sink: &Sink<'_>,
    at: u64,
    len: u64,
) -> Result<u64> {
    match reply {
        Reply::Status(status::EOF, _) if len == 0 => Ok(0),
        Reply::Data(_) if len == 0 => Err(changed(
            ch,
            "download",
            path,
            format!("the file grew during the download (it had {at} bytes)"),
        )),
        Reply::Data(data) => {
            let got = data.len() as u64;
            if got == 0 || got > len {
                return Err(ch.protocol("download", path, "a DATA reply of the wrong size"));
            }
            put(ch, &data, path, sink, at)?;
            Ok(got)
        }
        Reply::Status(status::EOF, _) => Err(changed(
            ch,
            "download",
            path,
            format!("the file ended at byte {at}, before the size it had"),
        )),
        Reply::Status(code, msg) => Err(ch.status_error("download", path, code, &msg)),
        _ => Err(ch.protocol("download", path, "a reply to READ that is not data")),
    }
}

fn put(ch: &SftpChannel, data: &Data, path: &[u8], sink: &Sink<'_>, at: u64) -> Result<()> {
    let bytes = ch.data(data);
    match sink {
        Sink::File(out) => out
            .write_all_at(bytes, at)
            .map_err(|e| Error::io("cannot write the downloaded data", e)),
        Sink::Compare(local) => {
            let mut mine = vec![0; bytes.len()];
            local
                .read_exact_at(&mut mine, at)
                .map_err(|e| Error::io("cannot read the local file to compare", e))?;
            if mine == bytes {
                Ok(())
            } else {
                Err(changed(
                    ch,
                    "resume",
                    path,
                    format!("the partial file differs from the source near byte {at}"),
                ))
            }
        }
    }
}

/// The requests [`send_finish_write`] queued.
pub(crate) struct FinishIds {
    fsync: Option<u32>,
    attrs: Option<u32>,
    stat: Option<u32>,
    close: u32,
}

/// Queues what finishes an upload: `fsync@openssh.com` (when `fsync` and
/// the server offers it), FSETSTAT of `attrs` (when any), FSTAT (when
/// `fstat`), and CLOSE; all in one round trip.
pub(crate) fn send_finish_write(
    ch: &mut SftpChannel,
    handle: &[u8],
    fsync: bool,
    attrs: Option<Attrs>,
    fstat: bool,
) -> FinishIds {
    FinishIds {
        fsync: (fsync && ch.extensions().fsync).then(|| ch.send_fsync(handle)),
        attrs: attrs.map(|a| ch.send(kind::FSETSTAT, |e| e.str(handle).attrs(&a))),
        stat: fstat.then(|| ch.send_str(kind::FSTAT, handle)),
        close: ch.send_close(handle),
    }
}

/// What the requests that finish an upload found.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The size FSTAT saw; `None` when it was not asked, or refused.
    pub(crate) size: Option<u64>,
    /// The server refused to set the attributes (when that is not to fail
    /// the upload).
    pub(crate) attrs_refused: Option<Error>,
}

/// Waits for the replies to what [`send_finish_write`] queued. A refused
/// FSETSTAT fails the upload only when `strict`; a refused FSTAT never
/// (the caller checks the acknowledged bytes instead).
pub(crate) fn finish_write_replies(
    ch: &mut SftpChannel,
    ids: FinishIds,
    path: &[u8],
    strict: bool,
) -> Result<Finished> {
    let synced = match ids.fsync.map(|id| ch.status_of(id, "fsync", path)) {
        Some(Err(e)) if status_code(&e) == Some(status::OP_UNSUPPORTED) => {
            ch.forget_fsync();
            Ok(())
        }
        Some(other) => other,
        None => Ok(()),
    };
    let attrs = ids
        .attrs
        .map_or(Ok(()), |id| ch.status_of(id, "set attributes", path));
    let size = ids.stat.map(|id| ch.attrs_of(id, "stat", path)).transpose();
    let closed = ch.status_of(ids.close, "close", path);
    synced?;
    let attrs_refused = match attrs {
        Err(e) if !strict && status_code(&e).is_some() => Some(e),
        other => {
            other?;
            None
        }
    };
    let size = match size {
        Ok(a) => a.map(|a| a.size.unwrap_or(0)),
        Err(e) if status_code(&e).is_some() => None,
        Err(e) => return Err(e),
    };
    closed?;
    Ok(Finished {
        size,
        attrs_refused,
    })
}

/// [`send_finish_write`] and [`finish_write_replies`].
#[allow(clippy::too_many_arguments)] // one upload's finishing requests
pub(crate) fn finish_write(
    ch: &mut SftpChannel,
    handle: &[u8],
    path: &[u8],
    fsync: bool,
    attrs: Option<Attrs>,
    fstat: bool,
    strict: bool,
) -> Result<Finished> {
    let ids = send_finish_write(ch, handle, fsync, attrs, fstat);
    finish_write_replies(ch, ids, path, strict)
}

/// Opens `path` with `pflags` (and `attrs` for a file it creates).
pub(crate) fn open(
    ch: &mut SftpChannel,
    path: &[u8],
    pflags: u32,
    attrs: &Attrs,
    op: &'static str,
) -> Result<Vec<u8>> {
    let id = ch.send_open(path, pflags, attrs);
    ch.handle_of(id, op, path)
}

/// Logs a failed close of a file only read (nothing depends on it).
pub(crate) fn close_read(ch: &mut SftpChannel, handle: &[u8], path: &[u8]) {
    if ch.is_broken() {
        debug!(
            "not closing {:?}: the channel is gone",
            String::from_utf8_lossy(path)
        );
        return;
    }
    ch.close_quietly(handle, path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cut_every_range_into_requests_in_order() {
        let mut ranges = vec![0..0, 0..10, 10..10, 10..25, 100..101].into_iter();
        let mut next = || ranges.next();
        let mut chunks = Chunks::new(&mut next);
        let mut got = Vec::new();
        while let Some(c) = chunks.take(7) {
            got.push(c);
        }
        assert!(chunks.is_done());
        assert_eq!(got, [(0, 7), (7, 3), (10, 7), (17, 7), (24, 1), (100, 1)]);
        let mut none = || None;
        assert!(Chunks::new(&mut none).is_done());
    }
}
