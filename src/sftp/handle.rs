//! Streaming handles: [`SftpReader`] reads ahead and [`SftpWriter`] writes
//! behind, each with several requests in flight (bounded), so that
//! `std::io::copy` through them keeps the link busy as a transfer does.
//!
//! A handle belongs to the channel it was opened on and borrows that
//! channel for each call; its requests in flight stay in flight while
//! other operations use the channel, and their replies are kept for it.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use super::channel::{Reply, SftpChannel};
use super::metadata::Metadata;
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
            super::channel::sftp_error(
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

/// A remote file open for reading: [`Read`], [`BufRead`] and [`Seek`].
/// Made by [`SftpSession::open`](super::SftpSession::open).
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
    file: Open,
    /// The file offset of `buf[at]`.
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

impl fmt::Debug for SftpReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpReader")
            .field("path", &shown(&self.file.path))
            .field("pos", &self.position())
            .finish_non_exhaustive()
    }
}

impl SftpReader {
    pub(crate) fn new(shared: Arc<Shared>, ch: &Lease<'_>, handle: Vec<u8>, path: &[u8]) -> Self {
        SftpReader {
            file: Open::new(shared, ch, handle, path),
            pos: 0,
            buf: Vec::new(),
            at: 0,
            ahead: VecDeque::new(),
            next: 0,
            eof: None,
        }
    }

    /// The remote path.
    pub fn path(&self) -> RemotePath {
        RemotePath::new(self.file.path.clone())
    }

    /// Metadata of the open file (`fstat`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`], [`ErrorKind::Timeout`].
    pub fn metadata(&mut self) -> Result<Metadata> {
        self.file.metadata()
    }

    fn position(&self) -> u64 {
        self.pos + self.at as u64
    }

    /// Drops the data at hand and the reads in flight; reading goes on at
    /// `pos`.
    fn restart_at(&mut self, pos: u64) -> Result<()> {
        if !self.ahead.is_empty() {
            let (mut ch, _) = self.file.channel()?;
            ch.ignore(self.ahead.drain(..).map(|(id, _, _)| id));
        }
        self.pos = pos;
        self.buf.clear();
        self.at = 0;
        self.next = pos;
        self.eof = None;
        Ok(())
    }

    /// Refills `buf` from the next reply; empty at the end of the file.
    fn fill(&mut self) -> Result<()> {
        let pos = self.position();
        self.pos = pos;
        self.buf.clear();
        self.at = 0;
        if self.eof.is_some_and(|end| pos >= end) {
            return Ok(());
        }
        let path = self.file.path.clone();
        let (mut ch, handle) = self.file.channel()?;
        let handle = handle.to_vec();
        let read_len = ch.read_len();
        while self.eof.is_none() && self.ahead.len() < READ_AHEAD && ch.has_room(1) {
            let id = ch.send_read(&handle, self.next, read_len);
            self.ahead.push_back((id, self.next, read_len));
            self.next += u64::from(read_len);
        }
        let Some(&(id, offset, len)) = self.ahead.front() else {
            return Ok(());
        };
        let reply = ch.wait(id, "read", &path);
        self.ahead.pop_front();
        match reply? {
            Reply::Data(d) => {
                let data = ch.data(&d);
                if data.is_empty() || data.len() > len as usize {
                    return Err(ch.protocol("read", &path, "a DATA reply of the wrong size"));
                }
                self.buf.extend_from_slice(data);
                let got = data.len() as u32;
                if got < len {
                    // A short read: ask for the rest before what follows.
                    let rest = offset + u64::from(got);
                    let id = ch.send_read(&handle, rest, len - got);
                    self.ahead.push_front((id, rest, len - got));
                }
                Ok(())
            }
            Reply::Status(status::EOF, _) => {
                self.eof = Some(offset);
                ch.ignore(self.ahead.drain(..).map(|(id, _, _)| id));
                Ok(())
            }
            Reply::Status(code, msg) => Err(ch.status_error("read", &path, code, &msg)),
            _ => Err(ch.protocol("read", &path, "a reply to READ that is not data")),
        }
    }
}

impl Read for SftpReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for SftpReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at >= self.buf.len() {
            self.fill()?;
        }
        Ok(&self.buf[self.at..])
    }

    fn consume(&mut self, amt: usize) {
        self.at = (self.at + amt).min(self.buf.len());
    }
}

impl Seek for SftpReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let here = self.position();
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => here.checked_add_signed(d),
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        // Within the data at hand: keep it and the reads in flight.
        if target >= self.pos && target <= self.pos + self.buf.len() as u64 {
            self.at = (target - self.pos) as usize;
            return Ok(target);
        }
        self.restart_at(target)?;
        Ok(target)
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        let ids: Vec<u32> = self.ahead.drain(..).map(|(id, _, _)| id).collect();
        let _ = self.file.close(ids, false);
    }
}

/// A remote file open for writing: [`Write`] and [`Seek`]. Made by
/// [`SftpSession::create`](super::SftpSession::create) and
/// [`SftpSession::append`](super::SftpSession::append).
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
    file: Open,
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

impl fmt::Debug for SftpWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpWriter")
            .field("path", &shown(&self.file.path))
            .field("pos", &(self.pos + self.buf.len() as u64))
            .finish_non_exhaustive()
    }
}

impl SftpWriter {
    pub(crate) fn new(
        shared: Arc<Shared>,
        ch: &Lease<'_>,
        handle: Vec<u8>,
        path: &[u8],
        pos: u64,
    ) -> Self {
        SftpWriter {
            write_len: ch.write_len() as usize,
            file: Open::new(shared, ch, handle, path),
            pos,
            buf: Vec::new(),
            behind: VecDeque::new(),
            failed: None,
        }
    }

    /// The remote path.
    pub fn path(&self) -> RemotePath {
        RemotePath::new(self.file.path.clone())
    }

    fn check(&mut self) -> Result<()> {
        match self.failed.take() {
            Some(e) => {
                let again = super::channel::sftp_error(
                    e.kind(),
                    "write",
                    self.file.shared.pool.target(),
                    &self.file.path,
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
    fn push(&mut self, all: bool) -> Result<()> {
        self.check()?;
        let SftpWriter {
            file,
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
        self.check()
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
        self.push(true)?;
        let path = self.file.path.clone();
        let (mut ch, handle) = self.file.channel()?;
        if !ch.extensions().fsync {
            return Ok(());
        }
        let id = ch.send_fsync(handle);
        match ch.status_of(id, "fsync", &path) {
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                ch.forget_fsync();
                Ok(())
            }
            other => other,
        }
    }

    /// Writes out what is gathered and closes the file, reporting any
    /// error of any write.
    ///
    /// # Errors
    ///
    /// As for [`sync_all`](Self::sync_all).
    pub fn close(mut self) -> Result<()> {
        let pushed = self.push(true);
        let ids: Vec<u32> = self.behind.drain(..).map(|(id, _)| id).collect();
        let closed = self.file.close(ids, true);
        pushed?;
        closed
    }
}

impl Write for SftpWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        let len = self.write_len;
        if self.buf.capacity() < len {
            self.buf.reserve_exact(len - self.buf.len());
        }
        let n = data.len().min(len - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= len {
            self.push(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(self.push(true)?)
    }
}

impl Seek for SftpWriter {
    /// Writes out what is gathered and moves the write position (writes in
    /// flight stay in flight). `SeekFrom::End` asks the server for the
    /// size, after the writes in flight are done.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let here = self.pos + self.buf.len() as u64;
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => here.checked_add_signed(d),
            SeekFrom::End(d) => {
                self.push(true)?;
                self.file.metadata()?.len().checked_add_signed(d)
            }
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target != here {
            self.push(false)?;
            self.pos = target;
        }
        Ok(target)
    }
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        if self.file.handle.is_some() {
            let _ = self.push(true);
            let ids: Vec<u32> = self.behind.drain(..).map(|(id, _)| id).collect();
            let _ = self.file.close(ids, false);
        }
    }
}
