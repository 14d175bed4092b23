//! Our own SFTP v3 client on an SSH channel, for the bulk paths: uploads,
//! downloads and the folder transfers built on them.
//!
//! libssh2's SFTP layer waits for each call's replies before it returns:
//! an atomic upload of a small file costs six round trips, and a large
//! upload keeps only the caller's buffer in flight. Here requests are
//! pipelined: the data of a transfer goes out as fast as the channel
//! window allows while the acknowledgements come back, and the requests
//! that do not depend on each other's answers (write, fsync, fstat,
//! close) share one round trip. Everything else ([`SftpSession`]'s
//! listings, stat, mkdir, the streaming handles) stays on libssh2's SFTP
//! channel beside this one.
//!
//! Protocol: draft-ietf-secsh-filexfer-02 (version 3, what OpenSSH speaks)
//! with OpenSSH's `posix-rename`, `fsync` and `limits` extensions.
//!
//! [`SftpSession`]: super::SftpSession

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use log::debug;

use super::{sftp_failure, sftp_io_error, status, status_kind, status_name, Metadata};
use crate::session::SessionInner;
use crate::{Error, ErrorKind, Result};

// Packet types (draft-ietf-secsh-filexfer-02 §3).
const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const FSTAT: u8 = 8;
const SETSTAT: u8 = 9;
const REMOVE: u8 = 13;
const STAT: u8 = 17;
const RENAME: u8 = 18;
const EXTENDED: u8 = 200;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const ATTRS: u8 = 105;
const EXTENDED_REPLY: u8 = 201;

/// `SSH_FX_OK` and `SSH_FX_EOF`.
const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;

/// Open flags (`SSH_FXF_*`).
pub(crate) mod flags {
    pub(crate) const READ: u32 = 0x01;
    pub(crate) const WRITE: u32 = 0x02;
    pub(crate) const CREATE: u32 = 0x08;
    pub(crate) const TRUNCATE: u32 = 0x10;
    pub(crate) const EXCLUSIVE: u32 = 0x20;
}

// Attribute flags (`SSH_FILEXFER_ATTR_*`).
const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// The data length of a read or write request when the server does not
/// say more (every SFTP server must take 32 KiB).
const DEFAULT_IO_LEN: u32 = 32 * 1024;
/// The largest request we send even if a server allows more: OpenSSH's
/// `sftp-server` allows 255 KiB; more buys nothing measurable.
const MAX_IO_LEN: u32 = 255 * 1024;
/// The window we give the server for its replies, as exec does.
const WINDOW_SIZE: u32 = 16 * 1024 * 1024;
/// libssh2 refuses packets over ~35,000 bytes: 32 KiB is the most it takes.
const PACKET_SIZE: u32 = 32 * 1024;
/// The largest reply we take: a DATA reply of the largest request, with
/// room to spare.
const MAX_PACKET: usize = MAX_IO_LEN as usize + 64 * 1024;
/// At most this many requests wait for their replies on one channel, as
/// with OpenSSH's `sftp` (`-R 64`): some servers stop reading requests
/// beyond a queue of their own and then stop answering (a russh server's
/// channel buffer holds 100 messages). With OpenSSH's 255 KiB requests
/// this is 16 MiB, more than a transfer keeps in flight; with the 32 KiB
/// every server takes, 2 MiB.
pub(crate) const MAX_OUTSTANDING: usize = 64;
/// Requests are written to the channel in batches of about this much.
const FLUSH_AT: usize = 1 << 20;

/// A handle the server gave us for an open file.
pub(crate) type Handle = Vec<u8>;

/// One reply, parsed; `Data` points into the receive buffer and is valid
/// until the next [`Wire::recv`].
pub(crate) enum Reply {
    Status(u32, String),
    Handle(Handle),
    Data(Range<usize>),
    Attrs(Metadata),
    Extended(Vec<u8>),
}

/// A pipelined SFTP client on its own channel. Every call on the channel
/// takes the session's operation lock; the `Wire` itself belongs to one
/// thread at a time (see `Shared::wire`).
pub(crate) struct Wire {
    channel: ssh2::Channel,
    inner: Arc<SessionInner>,
    next_id: u32,
    posix_rename: bool,
    fsync: bool,
    write_len: u32,
    read_len: u32,
    /// Requests not yet written to the channel.
    out: Vec<u8>,
    /// Received bytes.
    inbox: Inbox,
    /// Requests whose replies nobody waits for (fire-and-forget closes,
    /// requests of a failed pipeline): skipped by `recv`.
    ignored: Vec<u32>,
    /// Replies that came before the one waited for (not data).
    early: Vec<(u32, Reply)>,
    /// Requests sent (or queued) whose replies have not come yet.
    outstanding: usize,
    /// The channel failed: this wire must not be used again.
    broken: bool,
}

/// Received bytes, cut into SFTP packets (a length, then the body).
struct Inbox {
    buf: Vec<u8>,
    /// `head..tail` is received and not yet handed out.
    head: usize,
    tail: usize,
    max_packet: usize,
}

impl Inbox {
    fn new(capacity: usize, max_packet: usize) -> Inbox {
        assert!(capacity >= max_packet + 4, "a whole packet must fit");
        Inbox {
            buf: vec![0; capacity],
            head: 0,
            tail: 0,
            max_packet,
        }
    }

    /// The body of the next whole packet, consumed (its bytes stay valid
    /// until the next call); `Ok(None)` when more bytes are needed, with
    /// room made for them in [`space`](Self::space); `Err(len)` for a
    /// length no packet may have.
    fn next_packet(&mut self) -> std::result::Result<Option<Range<usize>>, usize> {
        let have = self.tail - self.head;
        let mut need = 4;
        if have >= 4 {
            let len = u32::from_be_bytes(
                self.buf[self.head..self.head + 4]
                    .try_into()
                    .expect("four bytes"),
            ) as usize;
            if len == 0 || len > self.max_packet {
                return Err(len);
            }
            if have >= 4 + len {
                let body = self.head + 4..self.head + 4 + len;
                self.head = body.end;
                return Ok(Some(body));
            }
            need = 4 + len;
        }
        // Make room for the whole packet: a read into an empty slice would
        // wait for nothing.
        if self.head + need > self.buf.len() {
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        Ok(None)
    }

    /// Where received bytes go; never empty after `next_packet` said
    /// `Ok(None)`.
    fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.tail..]
    }

    fn filled(&mut self, n: usize) {
        self.tail += n;
    }
}

/// The requests [`Wire::send_finish_write`] queued.
pub(crate) struct FinishIds {
    fsync: Option<u32>,
    mtime: Option<u32>,
    stat: Option<u32>,
    close: u32,
}

/// What a transfer over the wire reports as it goes.
pub(crate) type Progress<'a> = &'a mut dyn FnMut(u64);

impl Wire {
    /// Opens a channel, starts the `sftp` subsystem and agrees on version 3.
    /// The caller does not hold the operation lock.
    pub(crate) fn open(inner: &Arc<SessionInner>) -> Result<Wire> {
        let channel = {
            let _g = inner.lock();
            let started = inner
                .ssh
                .channel_open("session", WINDOW_SIZE, PACKET_SIZE, None)
                .and_then(|mut ch| {
                    ch.handle_extended_data(ssh2::ExtendedData::Ignore)?;
                    ch.subsystem("sftp")?;
                    Ok(ch)
                });
            started.map_err(|e| {
                let mut err = super::sftp_error("start", "", e);
                if let Error::Sftp { path, reason, .. } = &mut err {
                    *path = inner.target();
                    reason.push_str(" (does the server enable the sftp subsystem?)");
                }
                err
            })?
        };
        let mut wire = Wire {
            channel,
            inner: Arc::clone(inner),
            next_id: 1,
            posix_rename: false,
            fsync: false,
            write_len: DEFAULT_IO_LEN,
            read_len: DEFAULT_IO_LEN,
            out: Vec::with_capacity(FLUSH_AT + MAX_IO_LEN as usize + 1024),
            inbox: Inbox::new(2 << 20, MAX_PACKET),
            ignored: Vec::new(),
            early: Vec::new(),
            outstanding: 0,
            broken: false,
        };
        wire.handshake()?;
        Ok(wire)
    }

    fn handshake(&mut self) -> Result<()> {
        let start = self.out.len();
        put_u32(&mut self.out, 0);
        self.out.push(INIT);
        put_u32(&mut self.out, 3);
        self.finish(start);
        self.flush("start", "")?;
        let range = self.packet("start", "")?;
        let mut body = Reader::new(&self.inbox.buf[range]);
        if body.u8() != Some(VERSION) {
            return Err(self.protocol("start", "", "no VERSION reply"));
        }
        let version = body.u32().unwrap_or(0);
        let mut limits = false;
        while let (Some(name), Some(_data)) = (body.string(), body.string()) {
            match name {
                b"posix-rename@openssh.com" => self.posix_rename = true,
                b"fsync@openssh.com" => self.fsync = true,
                b"limits@openssh.com" => limits = true,
                _ => {}
            }
        }
        debug!(
            "SFTP version {version} on {}: posix-rename {}, fsync {}, limits {limits}",
            self.inner.target(),
            self.posix_rename,
            self.fsync
        );
        if limits {
            let id = self.begin(EXTENDED);
            put_str(&mut self.out, b"limits@openssh.com");
            self.end(id.0);
            match self.wait(id.1, "start", "")? {
                Reply::Extended(data) => {
                    let mut r = Reader::new(&data);
                    let (_packet, read, write) = (r.u64(), r.u64(), r.u64());
                    let clamp = |v: Option<u64>| match v {
                        Some(0) | None => DEFAULT_IO_LEN,
                        Some(v) => u32::try_from(v)
                            .unwrap_or(MAX_IO_LEN)
                            .clamp(1024, MAX_IO_LEN),
                    };
                    self.read_len = clamp(read);
                    self.write_len = clamp(write);
                }
                _ => debug!("no usable limits@openssh.com reply"),
            }
        }
        Ok(())
    }

    /// Whether the server offers `posix-rename@openssh.com`.
    pub(crate) fn has_posix_rename(&self) -> bool {
        self.posix_rename
    }

    /// The data length of one WRITE request.
    pub(crate) fn write_len(&self) -> u32 {
        self.write_len
    }

    /// The data length of one READ request.
    pub(crate) fn read_len(&self) -> u32 {
        self.read_len
    }

    /// Requests whose replies have not come yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Whether the channel failed (the wire must be dropped).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Closes the channel; the caller holds the lock (within `cleanup`).
    pub(crate) fn shutdown(mut self) {
        let _ = self.channel.send_eof();
        let _ = self.channel.close();
    }

    // ---- packets out ------------------------------------------------

    /// Starts a request: returns where it starts in `out` and its id.
    fn begin(&mut self, kind: u8) -> (usize, u32) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let start = self.out.len();
        put_u32(&mut self.out, 0);
        self.out.push(kind);
        put_u32(&mut self.out, id);
        self.outstanding += 1;
        (start, id)
    }

    fn end(&mut self, start: usize) {
        self.finish(start);
    }

    /// Writes the length of the packet that starts at `start`.
    fn finish(&mut self, start: usize) {
        let len = u32::try_from(self.out.len() - start - 4).expect("packets are small");
        self.out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes the queued requests to the channel once they fill a batch.
    pub(crate) fn flush_if_full(&mut self, op: &'static str, path: &str) -> Result<()> {
        if self.out.len() >= FLUSH_AT {
            self.flush(op, path)?;
        }
        Ok(())
    }

    /// Writes the queued requests to the channel.
    pub(crate) fn flush(&mut self, op: &'static str, path: &str) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let _g = self.inner.lock();
        self.inner.keepalive_tick();
        let written = self.channel.write_all(&self.out);
        self.out.clear();
        written.map_err(|e| {
            self.broken = true;
            sftp_io_error(op, path, e, Some(&self.inner.ssh))
        })
    }

    // ---- packets in -------------------------------------------------

    /// Reads until a whole packet is buffered; returns its body (type
    /// byte on) as a range of `buf`, consumed.
    fn packet(&mut self, op: &'static str, path: &str) -> Result<Range<usize>> {
        loop {
            match self.inbox.next_packet() {
                Ok(Some(body)) => return Ok(body),
                Ok(None) => self.fill(op, path)?,
                Err(len) => {
                    self.broken = true;
                    return Err(self.protocol(op, path, &format!("a {len}-byte packet")));
                }
            }
        }
    }

    fn fill(&mut self, op: &'static str, path: &str) -> Result<()> {
        self.flush(op, path)?;
        let _g = self.inner.lock();
        self.inner.keepalive_tick();
        match self.channel.read(self.inbox.space()) {
            Ok(0) => {
                self.broken = true;
                Err(sftp_failure(
                    ErrorKind::Disconnected,
                    op,
                    path,
                    "connection lost (the server closed the SFTP channel)",
                ))
            }
            Ok(n) => {
                self.inbox.filled(n);
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(sftp_io_error(op, path, e, Some(&self.inner.ssh)))
            }
        }
    }

    /// The next reply that somebody waits for, with its request id.
    pub(crate) fn recv(&mut self, op: &'static str, path: &str) -> Result<(u32, Reply)> {
        loop {
            let range = self.packet(op, path)?;
            let mut r = Reader::new(&self.inbox.buf[range.clone()]);
            let (Some(kind), Some(id)) = (r.u8(), r.u32()) else {
                self.broken = true;
                return Err(self.protocol(op, path, "a truncated reply"));
            };
            self.outstanding = self.outstanding.saturating_sub(1);
            let reply = match kind {
                STATUS => {
                    let code = r.u32().unwrap_or(status::FAILURE);
                    let msg = r
                        .string()
                        .map(|m| String::from_utf8_lossy(m).into_owned())
                        .unwrap_or_default();
                    Reply::Status(code, msg)
                }
                HANDLE => Reply::Handle(r.string().unwrap_or_default().to_vec()),
                DATA => {
                    let len = r.u32().unwrap_or(0) as usize;
                    let at = range.start + 9;
                    if at + len > range.end {
                        self.broken = true;
                        return Err(self.protocol(op, path, "a truncated DATA reply"));
                    }
                    Reply::Data(at..at + len)
                }
                ATTRS => Reply::Attrs(r.attrs().unwrap_or_else(empty_metadata)),
                EXTENDED_REPLY => {
                    Reply::Extended(self.inbox.buf[range.start + 5..range.end].to_vec())
                }
                other => {
                    self.broken = true;
                    return Err(self.protocol(op, path, &format!("reply type {other}")));
                }
            };
            if let Some(i) = self.ignored.iter().position(|&x| x == id) {
                self.ignored.swap_remove(i);
                if let Reply::Status(code, msg) = &reply {
                    if *code != FX_OK {
                        debug!("ignored SFTP request {id} failed: {code} {msg}");
                    }
                }
                continue;
            }
            return Ok((id, reply));
        }
    }

    /// The reply to `id`. Replies to other requests that come first (a
    /// server may answer out of order) are kept for their own `wait`.
    fn wait(&mut self, id: u32, op: &'static str, path: &str) -> Result<Reply> {
        if let Some(i) = self.early.iter().position(|(got, _)| *got == id) {
            return Ok(self.early.swap_remove(i).1);
        }
        loop {
            let (got, reply) = self.recv(op, path)?;
            if got == id {
                return Ok(reply);
            }
            if matches!(reply, Reply::Data(_)) {
                self.broken = true;
                return Err(self.protocol(op, path, &format!("data for {got} where {id} was due")));
            }
            self.early.push((got, reply));
        }
    }

    /// Replies to requests nobody will wait for are skipped.
    pub(crate) fn ignore(&mut self, ids: impl IntoIterator<Item = u32>) {
        self.ignored.extend(ids);
    }

    fn protocol(&self, op: &'static str, path: &str, what: &str) -> Error {
        sftp_failure(
            ErrorKind::Protocol,
            op,
            path,
            format!("unexpected SFTP data from the server: {what}"),
        )
    }

    // ---- requests -----------------------------------------------------

    /// Queues OPEN of `path`.
    pub(crate) fn send_open(&mut self, path: &str, pflags: u32, mode: u32) -> u32 {
        let (start, id) = self.begin(OPEN);
        put_str(&mut self.out, path.as_bytes());
        put_u32(&mut self.out, pflags);
        put_u32(&mut self.out, ATTR_PERMISSIONS);
        put_u32(&mut self.out, mode);
        self.end(start);
        id
    }

    /// Queues a request whose only field is one string: CLOSE and FSTAT
    /// (a handle), STAT and REMOVE (a path).
    fn send_string(&mut self, kind: u8, field: &[u8]) -> u32 {
        let (start, id) = self.begin(kind);
        put_str(&mut self.out, field);
        self.end(start);
        id
    }

    pub(crate) fn send_close(&mut self, handle: &[u8]) -> u32 {
        self.send_string(CLOSE, handle)
    }

    pub(crate) fn send_fstat(&mut self, handle: &[u8]) -> u32 {
        self.send_string(FSTAT, handle)
    }

    pub(crate) fn send_stat(&mut self, path: &str) -> u32 {
        self.send_string(STAT, path.as_bytes())
    }

    pub(crate) fn send_remove(&mut self, path: &str) -> u32 {
        self.send_string(REMOVE, path.as_bytes())
    }

    /// Queues `fsync@openssh.com` (only sent where the server offers it).
    pub(crate) fn send_fsync(&mut self, handle: &[u8]) -> u32 {
        let (start, id) = self.begin(EXTENDED);
        put_str(&mut self.out, b"fsync@openssh.com");
        put_str(&mut self.out, handle);
        self.end(start);
        id
    }

    /// Queues a rename: `posix-rename@openssh.com` (replaces `to`) when
    /// `posix` and the server offers it, else the plain SFTP rename.
    pub(crate) fn send_rename(&mut self, from: &str, to: &str, posix: bool) -> u32 {
        let (start, id) = if posix && self.posix_rename {
            let (start, id) = self.begin(EXTENDED);
            put_str(&mut self.out, b"posix-rename@openssh.com");
            (start, id)
        } else {
            self.begin(RENAME)
        };
        put_str(&mut self.out, from.as_bytes());
        put_str(&mut self.out, to.as_bytes());
        self.end(start);
        id
    }

    /// Queues SETSTAT of the access and modification times of `path`.
    pub(crate) fn send_set_times(&mut self, path: &str, secs: u32) -> u32 {
        let (start, id) = self.begin(SETSTAT);
        put_str(&mut self.out, path.as_bytes());
        put_u32(&mut self.out, ATTR_ACMODTIME);
        put_u32(&mut self.out, secs);
        put_u32(&mut self.out, secs);
        self.end(start);
        id
    }

    /// Queues a READ of `len` bytes at `offset`.
    pub(crate) fn send_read(&mut self, handle: &[u8], offset: u64, len: u32) -> u32 {
        let (start, id) = self.begin(READ);
        put_str(&mut self.out, handle);
        put_u64(&mut self.out, offset);
        put_u32(&mut self.out, len);
        self.end(start);
        id
    }

    /// Queues a WRITE of `len` bytes at `offset`, which `fill` puts in
    /// place (straight into the outgoing buffer: no copy of its own).
    pub(crate) fn send_write_with(
        &mut self,
        handle: &[u8],
        offset: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
    ) -> std::io::Result<u32> {
        let (start, id) = self.begin(WRITE);
        put_str(&mut self.out, handle);
        put_u64(&mut self.out, offset);
        put_u32(
            &mut self.out,
            u32::try_from(len).expect("requests are small"),
        );
        let at = self.out.len();
        self.out.resize(at + len, 0);
        if let Err(e) = fill(&mut self.out[at..]) {
            self.out.truncate(start);
            self.outstanding -= 1;
            return Err(e);
        }
        self.end(start);
        Ok(id)
    }

    // ---- one request, one reply ---------------------------------------

    /// Sends what is queued, waits for `id`'s reply and expects a status.
    pub(crate) fn status_of(&mut self, id: u32, op: &'static str, path: &str) -> Result<()> {
        match self.wait(id, op, path)? {
            Reply::Status(FX_OK, _) => Ok(()),
            Reply::Status(code, msg) => Err(status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not a status")),
        }
    }

    /// Sends what is queued, waits for `id`'s reply and expects a handle.
    pub(crate) fn handle_of(&mut self, id: u32, op: &'static str, path: &str) -> Result<Handle> {
        match self.wait(id, op, path)? {
            Reply::Handle(h) => Ok(h),
            Reply::Status(code, msg) => Err(status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not a handle")),
        }
    }

    /// Sends what is queued, waits for `id`'s reply and expects attributes.
    pub(crate) fn attrs_of(&mut self, id: u32, op: &'static str, path: &str) -> Result<Metadata> {
        match self.wait(id, op, path)? {
            Reply::Attrs(m) => Ok(m),
            Reply::Status(code, msg) => Err(status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not attributes")),
        }
    }

    /// STAT of `path`.
    pub(crate) fn stat(&mut self, path: &str) -> Result<Metadata> {
        let id = self.send_stat(path);
        self.attrs_of(id, "stat", path)
    }

    /// Whether `path` exists (following symlinks).
    pub(crate) fn exists(&mut self, path: &str) -> Result<bool> {
        match self.stat(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Renames `from` to `to`, replacing `to`: atomically with
    /// `posix-rename@openssh.com`; without it, a plain rename, and when
    /// that is refused because `to` exists (SFTP v3 servers refuse), `to`
    /// is removed first (not atomic: `to` is briefly absent).
    pub(crate) fn rename_replace(&mut self, from: &str, to: &str) -> Result<()> {
        let posix = self.posix_rename;
        let id = self.send_rename(from, to, true);
        match self.status_of(id, "rename", from) {
            Err(e) if !posix && status_code(&e) == Some(status::FAILURE) => {}
            Err(e) if posix && self.refuses_posix_rename(&e) => {
                return self.rename_replace(from, to);
            }
            done => return done,
        }
        if self.stat(to).is_ok_and(|m| !m.is_dir()) {
            let id = self.send_remove(to);
            self.status_of(id, "rename (remove target)", to)?;
        }
        let id = self.send_rename(from, to, false);
        self.status_of(id, "rename", from)
    }

    /// Whether `e`, the answer to a posix-rename, says the server does not
    /// do it after all (it advertised it): from then on this wire uses the
    /// plain rename.
    pub(crate) fn refuses_posix_rename(&mut self, e: &Error) -> bool {
        if status_code(e) != Some(status::OP_UNSUPPORTED) {
            return false;
        }
        debug!(
            "{} advertises posix-rename@openssh.com but does not do it",
            self.inner.target()
        );
        self.posix_rename = false;
        true
    }

    /// Renames `from` to `to` only if `to` does not exist: the plain SFTP
    /// rename, which OpenSSH does with a hard link that fails on an
    /// existing target.
    pub(crate) fn rename_no_replace(&mut self, from: &str, to: &str) -> Result<()> {
        let id = self.send_rename(from, to, false);
        match self.status_of(id, "rename", to) {
            Err(e) if e.kind() == ErrorKind::Other && self.exists(to).unwrap_or(false) => Err(
                sftp_failure(ErrorKind::AlreadyExists, "rename", to, "the target exists"),
            ),
            done => done,
        }
    }

    /// Best-effort removal of a temporary file after a failure.
    pub(crate) fn remove_quietly(&mut self, path: &str) {
        let id = self.send_remove(path);
        if let Err(e) = self.status_of(id, "remove", path) {
            debug!("cannot remove temporary file {path}: {e}");
        }
    }

    /// After the data of an upload: `fsync@openssh.com` (when `fsync` and
    /// the server offers it), the mtime (when given), FSTAT (when
    /// `fstat`), and CLOSE, in one round trip. Returns the size FSTAT saw.
    /// The handle is closed whatever fails.
    pub(crate) fn finish_write(
        &mut self,
        handle: &[u8],
        path: &str,
        fsync: bool,
        mtime: Option<u32>,
        fstat: bool,
    ) -> Result<Option<u64>> {
        let ids = self.send_finish_write(handle, path, fsync, mtime, fstat);
        self.finish_write_replies(ids, path)
    }

    /// Queues what [`finish_write`](Self::finish_write) sends.
    pub(crate) fn send_finish_write(
        &mut self,
        handle: &[u8],
        path: &str,
        fsync: bool,
        mtime: Option<u32>,
        fstat: bool,
    ) -> FinishIds {
        FinishIds {
            fsync: (fsync && self.fsync).then(|| self.send_fsync(handle)),
            mtime: mtime.map(|secs| self.send_set_times(path, secs)),
            stat: fstat.then(|| self.send_fstat(handle)),
            close: self.send_close(handle),
        }
    }

    /// Waits for the replies to what [`send_finish_write`] queued.
    ///
    /// [`send_finish_write`]: Self::send_finish_write
    pub(crate) fn finish_write_replies(
        &mut self,
        ids: FinishIds,
        path: &str,
    ) -> Result<Option<u64>> {
        let synced = match ids.fsync.map(|id| self.status_of(id, "fsync", path)) {
            Some(Err(e)) if status_code(&e) == Some(status::OP_UNSUPPORTED) => {
                debug!("{} does not offer fsync@openssh.com", self.inner.target());
                self.fsync = false;
                Ok(())
            }
            Some(other) => other,
            None => Ok(()),
        };
        let timed = ids
            .mtime
            .map_or(Ok(()), |id| self.status_of(id, "set mtime", path));
        let size = ids
            .stat
            .map(|id| self.attrs_of(id, "stat", path))
            .transpose();
        let closed = self.status_of(ids.close, "close", path);
        synced?;
        timed?;
        let size = size?;
        closed?;
        Ok(size.map(|m| m.len()))
    }

    /// Closes `handle` without waiting for the reply (for files that were
    /// only read, or after a failure: nothing depends on it).
    pub(crate) fn close_quietly(&mut self, handle: &[u8], path: &str) {
        let id = self.send_close(handle);
        self.ignore([id]);
        if let Err(e) = self.flush("close", path) {
            debug!("cannot close {path}: {e}");
        }
    }

    // ---- pipelines ----------------------------------------------------

    /// Writes bytes `range` of `source` to `handle` at the same offsets,
    /// keeping up to `in_flight` bytes unacknowledged. Reports each
    /// acknowledged request to `progress`.
    pub(crate) fn write_from(
        &mut self,
        handle: &[u8],
        path: &str,
        source: &File,
        range: Range<u64>,
        in_flight: u64,
        progress: Progress<'_>,
    ) -> Result<()> {
        let mut once = Some(range);
        self.write_ranges(
            handle,
            path,
            source,
            &mut || once.take(),
            in_flight,
            progress,
        )
    }

    /// Like [`write_from`](Self::write_from) for each range `next` hands
    /// out, until it hands out `None`: one pipeline across all of them
    /// (the sessions of a parallel upload share one `next`).
    pub(crate) fn write_ranges(
        &mut self,
        handle: &[u8],
        path: &str,
        source: &File,
        next: &mut dyn FnMut() -> Option<Range<u64>>,
        in_flight: u64,
        progress: Progress<'_>,
    ) -> Result<()> {
        self.pipeline(|w, pending| {
            w.write_pipeline(handle, path, source, next, in_flight, progress, pending)
        })
    }

    /// Runs a pipeline with its list of requests waiting for replies;
    /// after a failure, their replies are skipped when they come.
    fn pipeline<T>(
        &mut self,
        run: impl FnOnce(&mut Self, &mut VecDeque<(u32, T)>) -> Result<()>,
    ) -> Result<()> {
        let mut pending = VecDeque::new();
        let result = run(self, &mut pending);
        if result.is_err() {
            self.ignore(pending.into_iter().map(|(id, _)| id));
        }
        result
    }

    /// Removes and returns what `pending` holds for the reply `id`.
    fn take_pending<T>(
        &mut self,
        pending: &mut VecDeque<(u32, T)>,
        id: u32,
        op: &'static str,
        path: &str,
    ) -> Result<T> {
        match pending.iter().position(|(p, _)| *p == id) {
            Some(i) => Ok(pending.remove(i).expect("found above").1),
            None => {
                self.broken = true;
                Err(self.protocol(op, path, &format!("a reply to unknown request {id}")))
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // one pipeline's state
    fn write_pipeline(
        &mut self,
        handle: &[u8],
        path: &str,
        source: &File,
        next_range: &mut dyn FnMut() -> Option<Range<u64>>,
        in_flight: u64,
        progress: Progress<'_>,
        pending: &mut VecDeque<(u32, u64)>,
    ) -> Result<()> {
        let mut chunks = Chunks::new(next_range);
        let mut unacked = 0u64;
        while !chunks.is_done() || !pending.is_empty() {
            while unacked < in_flight && self.outstanding < MAX_OUTSTANDING {
                let Some((at, len)) = chunks.take(u64::from(self.write_len)) else {
                    break;
                };
                let id = self
                    .send_write_with(handle, at, len as usize, |buf| {
                        source.read_exact_at(buf, at)
                    })
                    .map_err(|e| {
                        let e = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            std::io::Error::new(e.kind(), "the local file shrank during the upload")
                        } else {
                            e
                        };
                        Error::io("cannot read the local file for upload", e)
                    })?;
                pending.push_back((id, len));
                unacked += len;
                self.flush_if_full("upload", path)?;
            }
            if pending.is_empty() {
                continue;
            }
            let (id, reply) = self.recv("upload", path)?;
            let len = self.take_pending(pending, id, "upload", path)?;
            match reply {
                Reply::Status(FX_OK, _) => {
                    unacked -= len;
                    progress(len);
                }
                Reply::Status(code, msg) => return Err(status_error("upload", path, code, &msg)),
                _ => {
                    return Err(self.protocol(
                        "upload",
                        path,
                        "a reply to WRITE that is not a status",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Reads bytes `range` of `handle` into `out` at the same offsets,
    /// keeping up to `in_flight` bytes requested. With `to_eof`, also
    /// checks that the file ends at `range.end` (it did not grow).
    #[allow(clippy::too_many_arguments)] // one pipeline's parameters
    pub(crate) fn read_into(
        &mut self,
        handle: &[u8],
        path: &str,
        out: &File,
        range: Range<u64>,
        to_eof: bool,
        in_flight: u64,
        progress: Progress<'_>,
    ) -> Result<()> {
        let eof = to_eof.then_some(range.end);
        let mut once = Some(range);
        self.read_ranges(
            handle,
            path,
            out,
            &mut || once.take(),
            eof,
            in_flight,
            progress,
        )
    }

    /// Like [`read_into`](Self::read_into) for each range `next` hands
    /// out, until it hands out `None`: one pipeline across all of them.
    /// With `eof`, checks at the end that the file ends there.
    #[allow(clippy::too_many_arguments)] // one pipeline's parameters
    pub(crate) fn read_ranges(
        &mut self,
        handle: &[u8],
        path: &str,
        out: &File,
        next: &mut dyn FnMut() -> Option<Range<u64>>,
        eof: Option<u64>,
        in_flight: u64,
        progress: Progress<'_>,
    ) -> Result<()> {
        self.pipeline(|w, pending| {
            w.read_pipeline(handle, path, out, next, eof, in_flight, progress, pending)
        })
    }

    #[allow(clippy::too_many_arguments)] // one pipeline's state
    fn read_pipeline(
        &mut self,
        handle: &[u8],
        path: &str,
        out: &File,
        next_range: &mut dyn FnMut() -> Option<Range<u64>>,
        mut eof: Option<u64>,
        in_flight: u64,
        progress: Progress<'_>,
        pending: &mut VecDeque<(u32, (u64, u64))>,
    ) -> Result<()> {
        // A request of length 0 marks the end-of-file probe.
        let mut chunks = Chunks::new(next_range);
        let mut requested = 0u64;
        while !chunks.is_done() || eof.is_some() || !pending.is_empty() {
            while requested < in_flight && self.outstanding < MAX_OUTSTANDING {
                let Some((at, len)) = chunks.take(u64::from(self.read_len)) else {
                    break;
                };
                let id = self.send_read(handle, at, len as u32);
                pending.push_back((id, (at, len)));
                requested += len;
            }
            if chunks.is_done() {
                if let Some(end) = eof.take() {
                    let id = self.send_read(handle, end, 1);
                    pending.push_back((id, (end, 0)));
                }
            }
            if pending.is_empty() {
                continue;
            }
            let (id, reply) = self.recv("download", path)?;
            let (at, len) = self.take_pending(pending, id, "download", path)?;
            let got = self.read_reply(reply, path, out, at, len)?;
            if len > 0 {
                requested -= len;
                progress(got);
                if got < len {
                    // A short read: ask again for the rest.
                    let id = self.send_read(handle, at + got, (len - got) as u32);
                    pending.push_back((id, (at + got, len - got)));
                    requested += len - got;
                }
            }
        }
        Ok(())
    }

    /// What the reply to a READ of `len` bytes at `at` says (`len` 0: the
    /// probe at the end of the file, which must find the end): the data,
    /// written to `out` at `at`, and how many bytes it was.
    pub(crate) fn read_reply(
        &self,
        reply: Reply,
        path: &str,
        out: &File,
        at: u64,
        len: u64,
    ) -> Result<u64> {
        match reply {
            Reply::Status(FX_EOF, _) if len == 0 => Ok(0),
            Reply::Data(_) if len == 0 => Err(sftp_failure(
                ErrorKind::Other,
                "download",
                path,
                format!("the file grew during the download (it had {at} bytes)"),
            )),
            Reply::Data(data) => {
                let got = data.len() as u64;
                if got == 0 || got > len {
                    return Err(self.protocol("download", path, "a DATA reply of the wrong size"));
                }
                out.write_all_at(&self.inbox.buf[data], at)
                    .map_err(|e| Error::io("cannot write the downloaded data", e))?;
                Ok(got)
            }
            Reply::Status(FX_EOF, _) => Err(sftp_failure(
                ErrorKind::Other,
                "download",
                path,
                format!("the file ended at byte {at}, before the size it had"),
            )),
            Reply::Status(code, msg) => Err(status_error("download", path, code, &msg)),
            _ => Err(self.protocol("download", path, "a reply to READ that is not data")),
        }
    }
}

/// Cuts the ranges a pipeline is handed into requests.
struct Chunks<'a> {
    range: Option<Range<u64>>,
    next: &'a mut dyn FnMut() -> Option<Range<u64>>,
}

impl<'a> Chunks<'a> {
    fn new(next: &'a mut dyn FnMut() -> Option<Range<u64>>) -> Self {
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

/// The error for an SFTP status other than OK.
fn status_error(op: &'static str, path: &str, code: u32, msg: &str) -> Error {
    let name = status_name(code);
    let reason = if msg.is_empty() || msg.eq_ignore_ascii_case(name) {
        name.to_string()
    } else {
        format!("{name} ({msg})")
    };
    Error::Sftp {
        kind: status_kind(code),
        operation: op,
        path: path.to_string(),
        status: Some(code),
        reason,
        source: None,
    }
}

/// The SFTP status behind an error, if any.
pub(crate) fn status_code(e: &Error) -> Option<u32> {
    match e {
        Error::Sftp { status, .. } => *status,
        _ => None,
    }
}

fn empty_metadata() -> Metadata {
    Metadata {
        size: None,
        mode: None,
        mtime: None,
        atime: None,
        uid: None,
        gid: None,
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, u32::try_from(s.len()).expect("strings are small"));
    out.extend_from_slice(s);
}

/// Reads SFTP fields from a packet body; `None` once it runs short.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("eight bytes")))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn attrs(&mut self) -> Option<Metadata> {
        let flags = self.u32()?;
        let mut m = empty_metadata();
        if flags & ATTR_SIZE != 0 {
            m.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            m.uid = Some(self.u32()?);
            m.gid = Some(self.u32()?);
        }
        if flags & ATTR_PERMISSIONS != 0 {
            m.mode = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            m.atime = Some(u64::from(self.u32()?));
            m.mtime = Some(u64::from(self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.string()?;
                self.string()?;
            }
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_parse_every_field_and_stop_short_on_truncation() {
        let mut body = Vec::new();
        put_u32(
            &mut body,
            ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED,
        );
        put_u64(&mut body, 29_999);
        put_u32(&mut body, 1000);
        put_u32(&mut body, 1001);
        put_u32(&mut body, 0o100_640);
        put_u32(&mut body, 7);
        put_u32(&mut body, 1_700_000_000);
        put_u32(&mut body, 1);
        put_str(&mut body, b"name@example");
        put_str(&mut body, b"value");
        let m = Reader::new(&body).attrs().expect("complete attributes");
        assert_eq!(m.len(), 29_999);
        assert_eq!((m.uid(), m.gid()), (Some(1000), Some(1001)));
        assert_eq!(m.permissions(), Some(0o640));
        assert!(m.is_file());
        assert_eq!(m.atime, Some(7));
        assert_eq!(m.mtime, Some(1_700_000_000));
        for cut in 0..body.len() {
            assert!(Reader::new(&body[..cut]).attrs().is_none(), "cut at {cut}");
        }
    }

    /// Packets of every size fed in chunks of every size come out whole,
    /// with room for more bytes whenever more are needed (the buffer's end
    /// falling inside a length once hung a download).
    #[test]
    fn the_inbox_cuts_any_stream_into_its_packets() {
        let max_packet = 40;
        let mut stream = Vec::new();
        let mut bodies = Vec::new();
        for i in 0..200usize {
            let len = 1 + (i * 7) % max_packet;
            let body: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
            put_u32(&mut stream, len as u32);
            stream.extend_from_slice(&body);
            bodies.push(body);
        }
        for capacity in [max_packet + 4, max_packet + 5, 64, 100] {
            for chunk in [1, 2, 3, 5, 44, 1000] {
                let mut inbox = Inbox::new(capacity, max_packet);
                let mut fed = 0;
                let mut got = Vec::new();
                while got.len() < bodies.len() {
                    match inbox.next_packet().expect("valid lengths") {
                        Some(body) => got.push(inbox.buf[body].to_vec()),
                        None => {
                            let space = inbox.space();
                            assert!(!space.is_empty(), "capacity {capacity} chunk {chunk}");
                            let n = chunk.min(space.len()).min(stream.len() - fed);
                            assert!(n > 0, "more was needed than was sent");
                            space[..n].copy_from_slice(&stream[fed..fed + n]);
                            inbox.filled(n);
                            fed += n;
                        }
                    }
                }
                assert_eq!(got, bodies, "capacity {capacity} chunk {chunk}");
            }
        }
        let mut inbox = Inbox::new(64, max_packet);
        inbox.space()[..4].copy_from_slice(&41u32.to_be_bytes());
        inbox.filled(4);
        assert_eq!(inbox.next_packet(), Err(41));
    }

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

    #[test]
    fn status_errors_keep_the_code_and_the_kind() {
        let e = status_error(
            "upload",
            "/in/a b.csv",
            status::PERMISSION_DENIED,
            "Permission denied",
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let text = e.to_string();
        assert!(text.contains("/in/a b.csv"), "{text}");
        assert!(!text.contains("(Permission denied)"), "{text}");
        let e = status_error("stat", "/x", status::NO_SUCH_FILE, "");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
