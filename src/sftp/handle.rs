//! Streaming handles: an [`SftpFile`] is one open remote file with a read
//! side that reads ahead and a write side that writes behind, each with
//! several requests in flight (bounded), so that `std::io::copy` through
//! it keeps the link busy as a transfer does. [`SftpReader`] and
//! [`SftpWriter`] are an `SftpFile` opened only to read or only to write,
//! with only those traits.
//!
//! A handle belongs to the channel it was opened on and borrows that
//! channel for each call; its requests in flight stay in flight while
//! other operations use the channel, and their replies are kept for it.
//! Every file is opened in one place ([`SftpFile::open`]), from
//! [`OpenOptions`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use super::channel::{sftp_error, Reply, SftpChannel};
use super::metadata::Metadata;
use super::open_options::OpenOptions;
use super::path::{shown, RemotePath};
use super::pool::Lease;
use super::proto::{kind, status};
use super::Shared;
use crate::{Error, ErrorKind, Result};

/// Requests a reader keeps in flight: 32 of OpenSSH's 255 KiB, 8 MiB, as
/// a transfer keeps on one session.
const READ_AHEAD: usize = 32;
/// Writes a writer keeps unacknowledged (the same).
const WRITE_BEHIND: usize = 32;

/// An open remote file: its channel, handle and path.
struct Open {
    shared: Arc<Shared>,
    slot: usize,
    handle: Option<Vec<u8>>,
    path: Vec<u8>,
}

impl Open {
    fn new(shared: Arc<Shared>, ch: &Lease<'_>, handle: Vec<u8>, path: &[u8]) -> Open {
        shared.pool.pin(ch.slot(), true);
        Open {
            slot: ch.slot(),
            shared,
            handle: Some(handle),
            path: path.to_vec(),
        }
    }

    /// The handle's channel, when it is free; the handle bytes.
    fn channel(&self) -> Result<(Lease<'_>, &[u8])> {
        let handle = self.handle.as_deref().ok_or_else(|| {
            sftp_error(
                ErrorKind::InvalidInput,
                "handle",
                self.shared.pool.target(),
                &self.path,
                "the file is closed",
            )
        })?;
        Ok((self.shared.pool.slot(self.slot, &self.path)?, handle))
    }

    fn metadata(&self) -> Result<Metadata> {
        let (mut ch, handle) = self.channel()?;
        let id = ch.send_str(kind::FSTAT, handle);
        ch.attrs_of(id, "metadata", &self.path).map(Metadata::from)
    }

    /// Closes the handle; `wait` for the server's answer (else it is
    /// dropped). Requests in flight (`ids`) are given up.
    fn close(&mut self, ids: impl IntoIterator<Item = u32>, wait: bool) -> Result<()> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        let result = match self.shared.pool.slot(self.slot, &self.path) {
            Ok(mut ch) => {
                ch.ignore(ids);
                if wait {
                    let id = ch.send_close(&handle);
                    ch.status_of(id, "close", &self.path)
                } else {
                    ch.close_quietly(&handle, &self.path);
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        self.shared.pool.pin(self.slot, false);
        result
    }
}

/// The read side of a file: what was read ahead.
struct ReadAhead {
    /// The file offset of `buf[0]`.
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    /// Reads in flight, in offset order: (request id, offset, length).
    ahead: VecDeque<(u32, u64, u32)>,
    /// Where the next read-ahead request starts.
    next: u64,
    /// The end of the file, once a read found it.
    eof: Option<u64>,
}

impl ReadAhead {
    fn new() -> ReadAhead {
        ReadAhead {
            pos: 0,
            buf: Vec::new(),
            at: 0,
            ahead: VecDeque::new(),
            next: 0,
            eof: None,
        }
    }

    fn position(&self) -> u64 {
        self.pos + self.at as u64
    }

    /// The reads in flight, given up.
    fn drain(&mut self) -> impl Iterator<Item = u32> + '_ {
        self.ahead.drain(..).map(|(id, _, _)| id)
    }

    /// Drops the data at hand and the reads in flight; reading goes on at
    /// `pos`.
    fn restart_at(&mut self, file: &Open, pos: u64) -> Result<()> {
        if !self.ahead.is_empty() {
            let (mut ch, _) = file.channel()?;
            ch.ignore(self.drain());
        }
        self.pos = pos;
        self.buf.clear();
        self.at = 0;
        self.next = pos;
        self.eof = None;
        Ok(())
    }

    /// Moves to `target`, keeping the data at hand and the reads in
    /// flight when `target` is within the data at hand.
    fn seek_to(&mut self, file: &Open, target: u64) -> Result<()> {
        if target >= self.pos && target <= self.pos + self.buf.len() as u64 {
            self.at = (target - self.pos) as usize;
            return Ok(());
        }
        self.restart_at(file, target)
    }

    /// The data at hand, refilled from the next reply when it is all
    /// consumed; empty at the end of the file.
    fn fill_buf(&mut self, file: &Open) -> Result<&[u8]> {
        if self.at >= self.buf.len() {
            self.fill(file)?;
        }
        Ok(&self.buf[self.at..])
    }

    fn consume(&mut self, amt: usize) {
        self.at = (self.at + amt).min(self.buf.len());
    }

    /// Refills `buf` from the next reply; empty at the end of the file.
    fn fill(&mut self, file: &Open) -> Result<()> {
        let pos = self.position();
        self.pos = pos;
        self.buf.clear();
        self.at = 0;
        if self.eof.is_some_and(|end| pos >= end) {
            return Ok(());
        }
        let path = &file.path;
        let (mut ch, handle) = file.channel()?;
        let read_len = ch.read_len();
        while self.eof.is_none() && self.ahead.len() < READ_AHEAD && ch.has_room(1) {
            let id = ch.send_read(handle, self.next, read_len);
            self.ahead.push_back((id, self.next, read_len));
            self.next += u64::from(read_len);
        }
        let Some(&(id, offset, len)) = self.ahead.front() else {
            return Ok(());
        };
        let reply = ch.wait(id, "read", path);
        self.ahead.pop_front();
        match reply? {
            Reply::Data(d) => {
                let data = ch.data(&d);
                if data.is_empty() || data.len() > len as usize {
                    return Err(ch.protocol("read", path, "a DATA reply of the wrong size"));
                }
                self.buf.extend_from_slice(data);
                let got = data.len() as u32;
                if got < len {
                    // A short read: ask for the rest before what follows.
                    let rest = offset + u64::from(got);
                    let id = ch.send_read(handle, rest, len - got);
                    self.ahead.push_front((id, rest, len - got));
                }
                Ok(())
            }
            Reply::Status(status::EOF, _) => {
                self.eof = Some(offset);
                ch.ignore(self.drain());
                Ok(())
            }
            Reply::Status(code, msg) => Err(ch.status_error("read", path, code, &msg)),
            _ => Err(ch.protocol("read", path, "a reply to READ that is not data")),
        }
    }
}

/// The write side of a file: what is gathered and what is in flight.
struct WriteBehind {
    /// The file offset of `buf[0]`.
    pos: u64,
    buf: Vec<u8>,
    /// Writes in flight: (request id, bytes).
    behind: VecDeque<(u32, usize)>,
    /// The first write that failed.
    failed: Option<Error>,
    /// The data length of one WRITE request.
    write_len: usize,
}

impl WriteBehind {
    fn new(write_len: usize, pos: u64) -> WriteBehind {
        WriteBehind {
            pos,
            buf: Vec::new(),
            behind: VecDeque::new(),
            failed: None,
            write_len,
        }
    }

    fn position(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    /// Nothing gathered, nothing in flight.
    fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.behind.is_empty()
    }

    /// The writes in flight, given up.
    fn drain(&mut self) -> impl Iterator<Item = u32> + '_ {
        self.behind.drain(..).map(|(id, _)| id)
    }

    /// The first failed write's error, once; later calls get an error
    /// saying an earlier write failed.
    fn check(&mut self, file: &Open) -> Result<()> {
        match self.failed.take() {
            Some(e) => {
                let again = sftp_error(
                    e.kind(),
                    "write",
                    file.shared.pool.target(),
                    &file.path,
                    "an earlier write failed",
                );
                self.failed = Some(again);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Sends what is gathered; keeps at most [`WRITE_BEHIND`] in flight,
    /// or none with `all`.
    fn push(&mut self, file: &Open, all: bool) -> Result<()> {
        self.check(file)?;
        let WriteBehind {
            pos,
            buf,
            behind,
            failed,
            ..
        } = self;
        let (mut ch, handle) = file.channel()?;
        let path = &file.path;
        let mut reap_one = |ch: &mut SftpChannel, behind: &mut VecDeque<(u32, usize)>| {
            if let Some((id, _)) = behind.pop_front() {
                if let Err(e) = ch.status_of(id, "write", path) {
                    failed.get_or_insert(e);
                }
            }
        };
        if !buf.is_empty() {
            while !behind.is_empty() && (behind.len() >= WRITE_BEHIND || !ch.has_room(1)) {
                reap_one(&mut ch, behind);
            }
            let id = ch
                .send_write_with(handle, *pos, buf.len(), |out| {
                    out.copy_from_slice(buf);
                    Ok(())
                })
                .map_err(|e| Error::io("cannot queue a write", e))?;
            behind.push_back((id, buf.len()));
            *pos += buf.len() as u64;
            buf.clear();
            ch.flush("write", path)?;
        }
        while all && !behind.is_empty() {
            reap_one(&mut ch, behind);
        }
        drop(ch);
        self.check(file)
    }

    /// Gathers as much of `data` as fits in one request, sending the
    /// request once it is full.
    fn write(&mut self, file: &Open, data: &[u8]) -> Result<usize> {
        self.check(file)?;
        let len = self.write_len;
        if self.buf.capacity() < len {
            self.buf.reserve_exact(len - self.buf.len());
        }
        let n = data.len().min(len - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= len {
            self.push(file, false)?;
        }
        Ok(n)
    }

    /// Sends what is gathered and moves the write position (writes in
    /// flight stay in flight).
    fn seek_to(&mut self, file: &Open, target: u64) -> Result<()> {
        if target != self.position() {
            self.push(file, false)?;
            self.pos = target;
        }
        Ok(())
    }
}

/// Which side of an [`SftpFile`] holds its position: the one used last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Read,
    Write,
}

/// A remote file opened with [`OpenOptions`]: [`Read`], [`BufRead`],
/// [`Write`] and [`Seek`], with one position as a [`std::fs::File`] has.
/// Made by [`SftpSession::open_with`](super::SftpSession::open_with).
///
/// Reading reads ahead (up to 32 requests, 8 MiB with OpenSSH, in
/// flight) and writing writes behind (as many unacknowledged), as
/// [`SftpReader`] and [`SftpWriter`] do: those two are this type opened
/// only to read or only to write. Switching from writing to reading first
/// waits until the server has every write (so a read sees them), and
/// switching from reading to writing drops what was read ahead. Reading a
/// file not opened for reading, or writing one not opened for writing,
/// fails with [`ErrorKind::InvalidInput`] naming the option.
///
/// A failed write is reported by a later `write`, by `flush`, by
/// [`sync_all`](Self::sync_all) or by [`close`](Self::close): call
/// `close` to learn whether everything arrived. Dropping it writes out and
/// closes on a best-effort basis and cannot report errors. Writes go
/// straight to the file (not atomic: use
/// [`SftpSession::upload`](super::SftpSession::upload) for files a
/// partner picks up).
///
/// Keeps the connection open while it lives. `SftpFile` is `Send` and
/// `Sync`. I/O errors convert from this crate's [`Error`], so
/// `io::Error::get_ref` downcasts to it (with the path and kind).
pub struct SftpFile {
    file: Open,
    reads: bool,
    writes: bool,
    appends: bool,
    reading: ReadAhead,
    writing: WriteBehind,
    side: Side,
}

impl fmt::Debug for SftpFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpFile")
            .field("path", &shown(&self.file.path))
            .field("read", &self.reads)
            .field("write", &self.writes)
            .field("append", &self.appends)
            .field("pos", &self.position())
            .finish_non_exhaustive()
    }
}

impl SftpFile {
    /// Opens `path` as `options` say; `op` names the operation in errors
    /// (`open`, `create`, `append`).
    ///
    /// With `append`, the write position starts at the file's size: a
    /// server that ignores SFTP's append flag writes at the offset sent.
    /// With `create_new`, a plain failure to open a file that exists is
    /// reported as [`ErrorKind::AlreadyExists`] (SFTP v3 has no such
    /// status; OpenSSH says "failure").
    pub(crate) fn open(
        shared: &Arc<Shared>,
        path: &[u8],
        options: &OpenOptions,
        op: &'static str,
    ) -> Result<SftpFile> {
        let target = shared.pool.target();
        let (pflags, attrs) = options
            .sftp_flags()
            .map_err(|why| sftp_error(ErrorKind::InvalidInput, op, target, path, why))?;
        let mut ch = shared.pool.any()?;
        let id = ch.send_open(path, pflags, &attrs);
        let handle = match ch.handle_of(id, op, path) {
            Ok(handle) => handle,
            Err(e)
                if options.exclusive()
                    && e.kind() == ErrorKind::Other
                    && !ch.is_broken()
                    && super::fs::anything_at(&mut ch, path).unwrap_or(false) =>
            {
                return Err(ch.error(
                    ErrorKind::AlreadyExists,
                    op,
                    path,
                    "something is there already (OpenOptions::create_new)",
                ));
            }
            Err(e) => return Err(e),
        };
        let start = match options.appends() {
            true => match end_of(&mut ch, &handle, op, path) {
                Ok(end) => end,
                Err(e) => {
                    ch.close_quietly(&handle, path);
                    return Err(e);
                }
            },
            false => 0,
        };
        let write_len = ch.write_len() as usize;
        Ok(SftpFile {
            file: Open::new(Arc::clone(shared), &ch, handle, path),
            reads: options.reads(),
            writes: options.writes(),
            appends: options.appends(),
            reading: ReadAhead::new(),
            writing: WriteBehind::new(write_len, start),
            side: match options.reads() {
                true => Side::Read,
                false => Side::Write,
            },
        })
    }

    /// The remote path.
    pub fn path(&self) -> RemotePath {
        RemotePath::new(self.file.path.clone())
    }

    /// Metadata of the open file (`fstat`), after the server has every
    /// write so far.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`]; a failed
    /// write.
    pub fn metadata(&mut self) -> Result<Metadata> {
        self.settle()?;
        self.file.metadata()
    }

    /// Writes out what is gathered, waits until the server has it all and
    /// asks it to flush the file to its disk (`fsync@openssh.com`; nothing
    /// more when the server does not offer it).
    ///
    /// # Errors
    ///
    /// Those of a write: [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`], [`ErrorKind::PermissionDenied`], a full
    /// disk ([`ErrorKind::Other`]).
    pub fn sync_all(&mut self) -> Result<()> {
        self.settle()?;
        let path = &self.file.path;
        let (mut ch, handle) = self.file.channel()?;
        if !ch.extensions().fsync {
            return Ok(());
        }
        let id = ch.send_fsync(handle);
        match ch.status_of(id, "fsync", path) {
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                ch.forget_fsync();
                Ok(())
            }
            other => other,
        }
    }

    /// Writes out what is gathered and closes the file, reporting any
    /// error of any write and of the close.
    ///
    /// # Errors
    ///
    /// As for [`sync_all`](Self::sync_all).
    pub fn close(mut self) -> Result<()> {
        let pushed = self.settle();
        let ids: Vec<u32> = self.reading.drain().chain(self.writing.drain()).collect();
        let closed = self.file.close(ids, true);
        pushed?;
        closed
    }

    /// `Debug` for a reader or writer: its path and position.
    fn debug_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("path", &shown(&self.file.path))
            .field("pos", &self.position())
            .finish_non_exhaustive()
    }

    fn position(&self) -> u64 {
        match self.side {
            Side::Read => self.reading.position(),
            Side::Write => self.writing.position(),
        }
    }

    /// Waits until the server has every write (a failed one is the
    /// error).
    fn settle(&mut self) -> Result<()> {
        match self.writing.is_idle() {
            true => self.writing.check(&self.file),
            false => self.writing.push(&self.file, true),
        }
    }

    /// The error for reading a file not opened to read, or writing one not
    /// opened to write.
    fn not_opened(&self, option: &str) -> Error {
        sftp_error(
            ErrorKind::InvalidInput,
            "handle",
            self.file.shared.pool.target(),
            &self.file.path,
            format!("the file was not opened with OpenOptions::{option}"),
        )
    }

    /// Makes the read side hold the position.
    fn reading_side(&mut self) -> Result<()> {
        if !self.reads {
            return Err(self.not_opened("read"));
        }
        if self.side == Side::Write {
            self.settle()?;
            self.reading
                .restart_at(&self.file, self.writing.position())?;
            self.side = Side::Read;
        }
        Ok(())
    }

    /// Makes the write side hold the position.
    fn writing_side(&mut self) -> Result<()> {
        if !self.writes {
            return Err(self.not_opened("write"));
        }
        if self.side == Side::Read {
            let here = self.reading.position();
            self.reading.restart_at(&self.file, here)?;
            self.writing.pos = match self.appends {
                true => {
                    let (mut ch, handle) = self.file.channel()?;
                    end_of(&mut ch, handle, "write", &self.file.path)?
                }
                false => here,
            };
            self.side = Side::Write;
        }
        Ok(())
    }
}

/// The size of the open file `handle` (FSTAT; 0 when the server does not
/// say).
fn end_of(ch: &mut SftpChannel, handle: &[u8], op: &'static str, path: &[u8]) -> Result<u64> {
    let id = ch.send_str(kind::FSTAT, handle);
    Ok(ch.attrs_of(id, op, path)?.size.unwrap_or(0))
}

impl Read for SftpFile {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for SftpFile {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reading_side()?;
        Ok(self.reading.fill_buf(&self.file)?)
    }

    fn consume(&mut self, amt: usize) {
        self.reading.consume(amt);
    }
}

impl Write for SftpFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.writing_side()?;
        Ok(self.writing.write(&self.file, data)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(self.settle()?)
    }
}

impl Seek for SftpFile {
    /// Moves the position. On the read side, a target within the data at
    /// hand keeps it and the reads in flight; elsewhere they are dropped.
    /// On the write side, what is gathered is sent (writes in flight stay
    /// in flight). `SeekFrom::End` asks the server for the size, after
    /// the writes in flight are done.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.position().checked_add_signed(d),
            SeekFrom::End(d) => self.metadata()?.len().checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        match self.side {
            Side::Read => self.reading.seek_to(&self.file, target)?,
            Side::Write => self.writing.seek_to(&self.file, target)?,
        }
        Ok(target)
    }
}

impl Drop for SftpFile {
    fn drop(&mut self) {
        if self.file.handle.is_some() {
            if !self.writing.is_idle() {
                let _ = self.writing.push(&self.file, true);
            }
            let ids: Vec<u32> = self.reading.drain().chain(self.writing.drain()).collect();
            let _ = self.file.close(ids, false);
        }
    }
}

/// A remote file open for reading: [`Read`], [`BufRead`] and [`Seek`].
/// Made by [`SftpSession::open`](super::SftpSession::open): an
/// [`SftpFile`] opened with `OpenOptions::new().read(true)`.
///
/// It keeps up to 32 read requests (8 MiB with OpenSSH) in flight ahead of
/// what was read, so that `std::io::copy` out of it runs near the speed of
/// [`download`](super::SftpSession::download). A seek outside the data at
/// hand drops the read-ahead and starts again at the new position.
///
/// Keeps the connection open while it lives. `SftpReader` is `Send` and
/// `Sync`. I/O errors convert from this crate's [`Error`], so
/// `io::Error::get_ref` downcasts to it (with the path and kind).
pub struct SftpReader {
    file: SftpFile,
}

impl fmt::Debug for SftpReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.file.debug_as("SftpReader", f)
    }
}

impl SftpReader {
    pub(crate) fn new(file: SftpFile) -> Self {
        SftpReader { file }
    }

    /// The remote path.
    pub fn path(&self) -> RemotePath {
        self.file.path()
    }

    /// Metadata of the open file (`fstat`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn metadata(&mut self) -> Result<Metadata> {
        self.file.metadata()
    }
}

impl Read for SftpReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.file.read(out)
    }
}

impl BufRead for SftpReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.file.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.file.consume(amt);
    }
}

impl Seek for SftpReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file.seek(to)
    }
}

/// A remote file open for writing: [`Write`] and [`Seek`]. Made by
/// [`SftpSession::create`](super::SftpSession::create) and
/// [`SftpSession::append`](super::SftpSession::append): an [`SftpFile`]
/// opened only to write.
///
/// Writes are gathered into requests of the server's largest size and up
/// to 32 of them are in flight unacknowledged, so that `std::io::copy`
/// into it runs near the speed of [`upload`](super::SftpSession::upload).
/// A failed write is reported by a later `write`, by `flush` or by
/// [`close`](Self::close): call `close` to learn whether everything
/// arrived. Dropping it writes out and closes on a best-effort basis and
/// cannot report errors.
///
/// Writes go straight to the target name (not atomic: use
/// [`SftpSession::upload`](super::SftpSession::upload) for that).
///
/// Keeps the connection open while it lives. `SftpWriter` is `Send` and
/// `Sync`.
pub struct SftpWriter {
    file: SftpFile,
}

impl fmt::Debug for SftpWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.file.debug_as("SftpWriter", f)
    }
}

impl SftpWriter {
    pub(crate) fn new(file: SftpFile) -> Self {
        SftpWriter { file }
    }

    /// The remote path.
    pub fn path(&self) -> RemotePath {
        self.file.path()
    }

    /// Writes out what is gathered, waits until the server has it all and
    /// asks it to flush the file to its disk (`fsync@openssh.com`; nothing
    /// more when the server does not offer it).
    ///
    /// # Errors
    ///
    /// Those of a write: [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`], [`ErrorKind::PermissionDenied`], a full
    /// disk ([`ErrorKind::Other`]).
    pub fn sync_all(&mut self) -> Result<()> {
        self.file.sync_all()
    }

    /// Writes out what is gathered and closes the file, reporting any
    /// error of any write.
    ///
    /// # Errors
    ///
    /// As for [`sync_all`](Self::sync_all).
    pub fn close(self) -> Result<()> {
        self.file.close()
    }
}

impl Write for SftpWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.file.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for SftpWriter {
    /// Writes out what is gathered and moves the write position (writes in
    /// flight stay in flight). `SeekFrom::End` asks the server for the
    /// size, after the writes in flight are done.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file.seek(to)
    }
}
