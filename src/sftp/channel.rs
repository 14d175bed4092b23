//! One SFTP channel: request ids, the requests queued to go out, the
//! replies cut from the bytes that come in, and which reply belongs to
//! whom. The bytes travel through a [`ChannelIo`]: an SSH channel in
//! `pool.rs`, or a pipe to OpenSSH's `sftp-server` in the tests.
//!
//! Requests are pipelined: a caller queues as many as it likes (up to
//! [`MAX_OUTSTANDING`]), then waits for the replies it needs. Every reply
//! must answer a request we sent and have not seen answered; anything else
//! breaks the channel. Replies that come while someone else is waiting are
//! kept for their owner (the control channel is shared by several users,
//! each with requests in flight), so what is kept is bounded by the
//! requests in flight.

use std::collections::HashSet;
use std::ops::Range;

use log::{debug, trace, warn};

use super::path::{escape_bytes, shown};
use super::proto::{self, kind, status, Attrs, Encoder};
use crate::error::BoxError;
use crate::{Error, ErrorKind, Result};

/// The data length of a read or write request when the server does not
/// say more (every SFTP server must take 32 KiB).
pub(crate) const DEFAULT_IO_LEN: u32 = 32 * 1024;
/// The largest request we send even if a server allows more: OpenSSH's
/// `sftp-server` allows 255 KiB; more buys nothing measurable.
pub(crate) const MAX_IO_LEN: u32 = 255 * 1024;
/// The largest reply we take: a DATA reply of the largest request, with
/// room to spare (OpenSSH's client takes 256 KiB).
const MAX_PACKET: usize = MAX_IO_LEN as usize + 64 * 1024;
/// At most this many requests wait for their replies on one channel. The
/// small requests of a wave of files (open, fsync, setstat, fstat, close,
/// rename: five or six per file) go out together up to this cap: with
/// OpenSSH's 64, a wave of 32 uploads took five round trips instead of
/// three. Requests that carry or ask for data are held to
/// [`MAX_DATA_REQUESTS`] besides.
pub(crate) const MAX_OUTSTANDING: usize = 256;
/// At most this many READ or WRITE requests of one transfer wait for
/// their replies, as with OpenSSH's `sftp` (`-R 64`): some servers stop
/// reading requests beyond a queue of their own (a russh server's channel
/// buffer holds 100 messages), and data requests are big enough for that
/// queue to fill the link's buffers and stall both sides.
pub(crate) const MAX_DATA_REQUESTS: usize = 64;
/// Requests are written to the channel in batches of about this much.
const FLUSH_AT: usize = 1 << 20;
/// How much of the text a server printed instead of SFTP goes into the
/// error.
const TEXT_SHOWN: usize = 200;

/// How a [`ChannelIo`] failed: the kind, in words, and the cause.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub(crate) kind: ErrorKind,
    pub(crate) reason: String,
    pub(crate) source: Option<BoxError>,
}

/// The byte stream under one SFTP channel.
pub(crate) trait ChannelIo: Send {
    /// Writes all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> std::result::Result<(), IoFailure>;
    /// Reads what has arrived (at least one byte; 0 at the end).
    fn read(&mut self, buf: &mut [u8]) -> std::result::Result<usize, IoFailure>;
    /// Called once SFTP is agreed: what the server writes on the
    /// channel's stderr from then on may be dropped.
    fn started(&mut self) {}
    /// After the stream ended: what the server said on stderr and its
    /// exit status, if anything, for the error message.
    fn last_words(&mut self) -> Option<String> {
        None
    }
    /// Closes the stream, best effort.
    fn shutdown(&mut self);
}

/// A reply, owned or pointing into the channel's receive buffer.
#[derive(Debug)]
pub(crate) enum Reply {
    Status(u32, String),
    Handle(Vec<u8>),
    Data(Data),
    Name(Vec<Name>),
    Attrs(Attrs),
    Extended(Vec<u8>),
}

/// The bytes of a DATA reply: in the receive buffer (valid until the next
/// receive on the channel; read with [`SftpChannel::data`]) or kept.
#[derive(Debug)]
pub(crate) enum Data {
    Inbox(Range<usize>),
    Owned(Vec<u8>),
}

impl Data {
    pub(crate) fn len(&self) -> usize {
        match self {
            Data::Inbox(r) => r.len(),
            Data::Owned(v) => v.len(),
        }
    }
}

/// One entry of a NAME reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    pub(crate) filename: Vec<u8>,
    pub(crate) attrs: Attrs,
}

/// What the server offers beyond plain version 3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extensions {
    pub(crate) posix_rename: bool,
    pub(crate) fsync: bool,
    pub(crate) hardlink: bool,
    pub(crate) statvfs: bool,
    pub(crate) copy_data: bool,
    pub(crate) limits: bool,
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
            let b = &self.buf[self.head..self.head + 4];
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
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

    /// The bytes received and not handed out.
    fn pending(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
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

/// A pipelined SFTP version 3 client on one channel. It belongs to one
/// thread at a time (the pool hands it out).
pub(crate) struct SftpChannel {
    io: Box<dyn ChannelIo>,
    /// `host:port`, for messages.
    target: String,
    next_id: u32,
    ext: Extensions,
    write_len: u32,
    read_len: u32,
    /// Requests not yet written to the channel.
    out: Vec<u8>,
    inbox: Inbox,
    /// Requests sent (or queued) whose replies have not come.
    outstanding: HashSet<u32>,
    /// Outstanding requests whose replies nobody will wait for.
    ignored: HashSet<u32>,
    /// Replies that came while somebody else was waiting.
    kept: Vec<(u32, Reply)>,
    /// The channel failed: it must not be used again.
    broken: bool,
    /// What the server said when the stream ended (asked once).
    last_words: Option<Option<String>>,
    /// The `limits@openssh.com` request, until its reply comes.
    limits_id: Option<u32>,
}

impl std::fmt::Debug for SftpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpChannel")
            .field("target", &self.target)
            .field("ext", &self.ext)
            .field("outstanding", &self.outstanding.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// The error for an SFTP operation `op` on `path` at `target`.
pub(crate) fn sftp_error(
    kind: ErrorKind,
    op: &'static str,
    target: &str,
    path: &[u8],
    reason: impl Into<String>,
) -> Error {
    Error::Sftp {
        kind,
        operation: op,
        path: shown(path),
        target: target.to_string(),
        status: None,
        reason: reason.into(),
        source: None,
    }
}

/// The one table from SFTP status codes to [`ErrorKind`]s.
pub(crate) fn status_kind(code: u32) -> ErrorKind {
    match code {
        status::NO_SUCH_FILE | status::NO_SUCH_PATH => ErrorKind::NotFound,
        status::PERMISSION_DENIED | status::WRITE_PROTECT => ErrorKind::PermissionDenied,
        status::FILE_ALREADY_EXISTS => ErrorKind::AlreadyExists,
        status::NO_CONNECTION | status::CONNECTION_LOST => ErrorKind::Disconnected,
        status::OP_UNSUPPORTED => ErrorKind::Unsupported,
        status::BAD_MESSAGE => ErrorKind::Protocol,
        _ => ErrorKind::Other,
    }
}

/// The error for a status other than OK.
pub(crate) fn status_error(
    op: &'static str,
    target: &str,
    path: &[u8],
    code: u32,
    msg: &str,
) -> Error {
    let name = proto::status_name(code);
    let reason = if msg.is_empty() || msg.eq_ignore_ascii_case(name) {
        name.to_string()
    } else {
        format!("{name} ({})", escape_bytes(msg.as_bytes()))
    };
    Error::Sftp {
        kind: status_kind(code),
        operation: op,
        path: shown(path),
        target: target.to_string(),
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

impl SftpChannel {
    /// Agrees on version 3 over `io` and learns the server's extensions
    /// and request sizes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] when the server sends text (a login shell
    /// that prints) or something else that is not SFTP, with what it sent;
    /// [`ErrorKind::Disconnected`] when the subsystem ends at once, with
    /// what it said on stderr and its exit status.
    pub(crate) fn start(io: Box<dyn ChannelIo>, target: String) -> Result<SftpChannel> {
        let mut ch = SftpChannel {
            io,
            target,
            next_id: 1,
            ext: Extensions::default(),
            write_len: DEFAULT_IO_LEN,
            read_len: DEFAULT_IO_LEN,
            out: Vec::with_capacity(FLUSH_AT + MAX_IO_LEN as usize + 1024),
            inbox: Inbox::new(2 << 20, MAX_PACKET),
            outstanding: HashSet::new(),
            ignored: HashSet::new(),
            kept: Vec::new(),
            broken: false,
            last_words: None,
            limits_id: None,
        };
        ch.handshake()?;
        ch.io.started();
        Ok(ch)
    }

    fn handshake(&mut self) -> Result<()> {
        Encoder::packet(&mut self.out, kind::INIT)
            .u32(proto::VERSION)
            .finish();
        self.flush("start", b"")?;
        let body = match self.packet("start", b"") {
            Ok(body) => body,
            Err(e) if e.kind() == ErrorKind::Protocol => return Err(self.not_sftp()),
            Err(e) => return Err(self.ended_at_start(e)),
        };
        let version = match proto::decode_version(&self.inbox.buf[body]) {
            Ok(v) => v,
            Err(_) => return Err(self.not_sftp()),
        };
        for (name, _) in &version.extensions {
            match name.as_slice() {
                b"posix-rename@openssh.com" => self.ext.posix_rename = true,
                b"fsync@openssh.com" => self.ext.fsync = true,
                b"hardlink@openssh.com" => self.ext.hardlink = true,
                b"statvfs@openssh.com" => self.ext.statvfs = true,
                b"copy-data" => self.ext.copy_data = true,
                b"limits@openssh.com" => self.ext.limits = true,
                _ => {}
            }
        }
        debug!(
            "SFTP version {} on {}: {:?}",
            version.version, self.target, self.ext
        );
        if self.ext.limits {
            // Not waited for: the reply comes in front of the replies to
            // the first requests (servers answer in order), and is taken
            // then (see `recv_where`): no round trip of its own.
            self.limits_id = Some(self.send_extended(b"limits@openssh.com", |e| e));
        }
        Ok(())
    }

    /// The request sizes from the `limits@openssh.com` reply.
    fn take_limits(&mut self, reply: Reply) {
        let Reply::Extended(data) = reply else {
            debug!("no usable limits@openssh.com reply: {reply:?}");
            return;
        };
        let mut r = proto::Reader::new(&data);
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

    /// The error for a server that sent something other than SFTP first:
    /// usually a login shell that prints.
    fn not_sftp(&mut self) -> Error {
        self.broken = true;
        // What has come so far, and a little more if it is on its way.
        let mut seen = self.inbox.pending().to_vec();
        if seen.len() < TEXT_SHOWN {
            let mut more = vec![0; TEXT_SHOWN];
            if let Ok(n) = self.io.read(&mut more) {
                seen.extend_from_slice(&more[..n]);
            }
        }
        seen.truncate(TEXT_SHOWN);
        // Text up to the first byte no text has (the SFTP version the
        // server sends after what the shell printed, say).
        let text = seen
            .iter()
            .position(|&b| !(b.is_ascii_graphic() || b" \r\n\t".contains(&b) || b >= 0x80))
            .unwrap_or(seen.len());
        let (seen, hint) = if text >= 1 {
            (
                &seen[..text],
                "; the account's login shell or its startup files (.bashrc, .profile) print \
                 text, which breaks SFTP: the partner must make the shell produce no output \
                 for non-interactive sessions",
            )
        } else {
            (&seen[..], "")
        };
        sftp_error(
            ErrorKind::Protocol,
            "start",
            &self.target,
            b"",
            format!(
                "the server sent \"{}\" where the SFTP version was due{hint}",
                escape_bytes(seen)
            ),
        )
    }

    /// The error for a subsystem that ended before it answered: with what
    /// it said on stderr and its exit status.
    fn ended_at_start(&mut self, e: Error) -> Error {
        self.broken = true;
        match self.last_words() {
            Some(words) => sftp_error(
                ErrorKind::Disconnected,
                "start",
                &self.target,
                b"",
                format!("the SFTP subsystem ended at start: {words}"),
            ),
            None => e,
        }
    }

    /// What the server said when the stream ended, asked of the stream
    /// once.
    fn last_words(&mut self) -> Option<String> {
        if self.last_words.is_none() {
            self.last_words = Some(self.io.last_words());
        }
        self.last_words.clone().flatten()
    }

    /// `host:port`.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// What the server offers.
    pub(crate) fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// From now on, posix-rename is not used on this channel (the server
    /// advertised it and refused it).
    pub(crate) fn forget_posix_rename(&mut self) {
        if self.ext.posix_rename {
            debug!(
                "{} advertises posix-rename@openssh.com but does not do it",
                self.target
            );
        }
        self.ext.posix_rename = false;
    }

    /// From now on, fsync is not sent on this channel.
    pub(crate) fn forget_fsync(&mut self) {
        if self.ext.fsync {
            debug!("{} does not do fsync@openssh.com", self.target);
        }
        self.ext.fsync = false;
    }

    /// The data length of one WRITE request.
    pub(crate) fn write_len(&self) -> u32 {
        self.write_len
    }

    /// The data length of one READ request.
    pub(crate) fn read_len(&self) -> u32 {
        self.read_len
    }

    /// Requests whose replies have not come yet (also other users').
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether `n` more requests may be sent now.
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.outstanding.len() + n <= MAX_OUTSTANDING
    }

    /// Whether the channel failed (it must be dropped).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Closes the channel, best effort.
    pub(crate) fn shutdown(&mut self) {
        self.broken = true;
        self.io.shutdown();
    }

    /// An error of ours about `path`.
    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        op: &'static str,
        path: &[u8],
        reason: impl Into<String>,
    ) -> Error {
        sftp_error(kind, op, &self.target, path, reason)
    }

    /// The error for status `code`.
    pub(crate) fn status_error(
        &self,
        op: &'static str,
        path: &[u8],
        code: u32,
        msg: &str,
    ) -> Error {
        status_error(op, &self.target, path, code, msg)
    }

    /// A reply we cannot make sense of: the channel is broken.
    pub(crate) fn protocol(&mut self, op: &'static str, path: &[u8], what: &str) -> Error {
        self.broken = true;
        self.error(
            ErrorKind::Protocol,
            op,
            path,
            format!("unexpected SFTP data from the server: {what}"),
        )
    }

    // ---- requests out --------------------------------------------------

    fn next_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.outstanding.contains(&id) {
                self.outstanding.insert(id);
                return id;
            }
        }
    }

    /// Queues a request of type `k` whose fields `fields` encodes.
    pub(crate) fn send(&mut self, k: u8, fields: impl FnOnce(Encoder<'_>) -> Encoder<'_>) -> u32 {
        let id = self.next_id();
        trace!("{}: SFTP {} #{id} queued", self.target, kind::name(k));
        fields(Encoder::request(&mut self.out, k, id)).finish();
        id
    }

    /// Queues the extended request `name`.
    pub(crate) fn send_extended(
        &mut self,
        name: &[u8],
        fields: impl FnOnce(Encoder<'_>) -> Encoder<'_>,
    ) -> u32 {
        let id = self.next_id();
        trace!(
            "{}: SFTP {} #{id} queued",
            self.target,
            String::from_utf8_lossy(name)
        );
        fields(Encoder::extended(&mut self.out, id, name)).finish();
        id
    }

    /// Queues OPEN of `path` with `attrs` for a file it creates.
    pub(crate) fn send_open(&mut self, path: &[u8], pflags: u32, attrs: &Attrs) -> u32 {
        self.send(kind::OPEN, |e| e.str(path).u32(pflags).attrs(attrs))
    }

    /// Queues a request whose one field is a string: a path or a handle.
    pub(crate) fn send_str(&mut self, k: u8, field: &[u8]) -> u32 {
        self.send(k, |e| e.str(field))
    }

    pub(crate) fn send_close(&mut self, handle: &[u8]) -> u32 {
        self.send_str(kind::CLOSE, handle)
    }

    /// Queues `fsync@openssh.com` (only sent where the server offers it).
    pub(crate) fn send_fsync(&mut self, handle: &[u8]) -> u32 {
        self.send_extended(b"fsync@openssh.com", |e| e.str(handle))
    }

    /// Queues a READ of `len` bytes at `offset`.
    pub(crate) fn send_read(&mut self, handle: &[u8], offset: u64, len: u32) -> u32 {
        self.send(kind::READ, |e| e.str(handle).u64(offset).u32(len))
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
        let id = self.next_id();
        trace!("{}: SFTP WRITE #{id} queued", self.target);
        let filled = Encoder::request(&mut self.out, kind::WRITE, id)
            .str(handle)
            .u64(offset)
            .fill_with(len, fill);
        match filled {
            Ok(e) => {
                e.finish();
                Ok(id)
            }
            Err(err) => {
                self.outstanding.remove(&id);
                Err(err)
            }
        }
    }

    /// Queues a rename: `posix-rename@openssh.com` (replaces `to`) when
    /// `posix` and the server offers it, else the plain SFTP rename.
    pub(crate) fn send_rename(&mut self, from: &[u8], to: &[u8], posix: bool) -> u32 {
        if posix && self.ext.posix_rename {
            self.send_extended(b"posix-rename@openssh.com", |e| e.str(from).str(to))
        } else {
            self.send(kind::RENAME, |e| e.str(from).str(to))
        }
    }

    /// Writes the queued requests to the channel once they fill a batch.
    pub(crate) fn flush_if_full(&mut self, op: &'static str, path: &[u8]) -> Result<()> {
        if self.out.len() >= FLUSH_AT {
            self.flush(op, path)?;
        }
        Ok(())
    }

    /// Writes the queued requests to the channel.
    pub(crate) fn flush(&mut self, op: &'static str, path: &[u8]) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        trace!(
            "{}: SFTP sends {} bytes ({op})",
            self.target,
            self.out.len()
        );
        let written = self.io.write_all(&self.out);
        self.out.clear();
        written.map_err(|f| self.io_error(op, path, f))
    }

    fn io_error(&mut self, op: &'static str, path: &[u8], f: IoFailure) -> Error {
        self.broken = true;
        Error::Sftp {
            kind: f.kind,
            operation: op,
            path: shown(path),
            target: self.target.clone(),
            status: None,
            reason: f.reason,
            source: f.source,
        }
    }

    // ---- replies in ----------------------------------------------------

    /// Reads until a whole packet is buffered; returns its body (type byte
    /// on) as a range of the receive buffer, consumed.
    fn packet(&mut self, op: &'static str, path: &[u8]) -> Result<Range<usize>> {
        loop {
            match self.inbox.next_packet() {
                Ok(Some(body)) => return Ok(body),
                Ok(None) => self.fill(op, path)?,
                Err(len) => {
                    return Err(self.protocol(op, path, &format!("a {len}-byte packet")));
                }
            }
        }
    }

    fn fill(&mut self, op: &'static str, path: &[u8]) -> Result<()> {
        self.flush(op, path)?;
        trace!("{}: SFTP reads replies ({op})", self.target);
        match self.io.read(self.inbox.space()) {
            Ok(0) => {
                self.broken = true;
                let words = self
                    .last_words()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                Err(self.error(
                    ErrorKind::Disconnected,
                    op,
                    path,
                    format!("connection lost (the server closed the SFTP channel{words})"),
                ))
            }
            Ok(n) => {
                self.inbox.filled(n);
                Ok(())
            }
            Err(f) => Err(self.io_error(op, path, f)),
        }
    }

    /// The next reply that `mine` claims, with its request id: one kept
    /// earlier, or the next to come. Replies to requests nobody waits for
    /// are dropped; replies to other users' requests are kept for them.
    pub(crate) fn recv_where(
        &mut self,
        op: &'static str,
        path: &[u8],
        mine: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(u32, Reply)> {
        if let Some(i) = self.kept.iter().position(|(id, _)| mine(*id)) {
            return Ok(self.kept.swap_remove(i));
        }
        loop {
            let body = self.packet(op, path)?;
            let base = self.inbox.buf.as_ptr() as usize;
            let (id, reply) = match proto::decode_reply(&self.inbox.buf[body]) {
                Ok((id, r)) => (id, Self::own(r, base)),
                Err(e) => return Err(self.protocol(op, path, &e.0)),
            };
            if !self.outstanding.remove(&id) {
                return Err(self.protocol(
                    op,
                    path,
                    &format!("a reply to request {id}, which was not sent or was answered"),
                ));
            }
            if self.limits_id == Some(id) {
                self.limits_id = None;
                self.take_limits(reply);
                continue;
            }
            if self.ignored.remove(&id) {
                if let Reply::Status(code, msg) = &reply {
                    if *code != status::OK {
                        debug!("ignored SFTP request {id} failed: {code} {msg}");
                    }
                }
                continue;
            }
            if mine(id) {
                return Ok((id, reply));
            }
            let reply = match reply {
                Reply::Data(Data::Inbox(r)) => Reply::Data(Data::Owned(self.inbox.buf[r].to_vec())),
                other => other,
            };
            self.kept.push((id, reply));
        }
    }

    /// A decoded reply as [`Reply`]: data stays in the buffer (`base` is
    /// its address), the rest is copied.
    fn own(r: proto::Reply<'_>, base: usize) -> Reply {
        match r {
            proto::Reply::Status { code, message } => {
                Reply::Status(code, String::from_utf8_lossy(message).into_owned())
            }
            proto::Reply::Handle(h) => Reply::Handle(h.to_vec()),
            proto::Reply::Data(d) => {
                let start = d.as_ptr() as usize - base;
                Reply::Data(Data::Inbox(start..start + d.len()))
            }
            proto::Reply::Name(names) => Reply::Name(
                names
                    .into_iter()
                    .map(|n| Name {
                        filename: n.filename.to_vec(),
                        attrs: n.attrs,
                    })
                    .collect(),
            ),
            proto::Reply::Attrs(a) => Reply::Attrs(a),
            proto::Reply::Extended(x) => Reply::Extended(x.to_vec()),
        }
    }

    /// The bytes of a DATA reply.
    pub(crate) fn data<'a>(&'a self, d: &'a Data) -> &'a [u8] {
        match d {
            Data::Inbox(r) => &self.inbox.buf[r.clone()],
            Data::Owned(v) => v,
        }
    }

    /// Sends what is queued and waits for `id`'s reply.
    pub(crate) fn wait(&mut self, id: u32, op: &'static str, path: &[u8]) -> Result<Reply> {
        self.recv_where(op, path, &mut |got| got == id)
            .map(|(_, r)| r)
    }

    /// Replies to these requests are dropped when they come.
    pub(crate) fn ignore(&mut self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            if let Some(i) = self.kept.iter().position(|(k, _)| *k == id) {
                self.kept.swap_remove(i);
            } else if self.outstanding.contains(&id) {
                self.ignored.insert(id);
            }
        }
    }

    /// Waits for `id`'s reply and expects a status OK.
    pub(crate) fn status_of(&mut self, id: u32, op: &'static str, path: &[u8]) -> Result<()> {
        match self.wait(id, op, path)? {
            Reply::Status(status::OK, _) => Ok(()),
            Reply::Status(code, msg) => Err(self.status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not a status")),
        }
    }

    /// Waits for `id`'s reply and expects a handle.
    pub(crate) fn handle_of(&mut self, id: u32, op: &'static str, path: &[u8]) -> Result<Vec<u8>> {
        match self.wait(id, op, path)? {
            Reply::Handle(h) => Ok(h),
            Reply::Status(code, msg) => Err(self.status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not a handle")),
        }
    }

    /// Waits for `id`'s reply and expects attributes.
    pub(crate) fn attrs_of(&mut self, id: u32, op: &'static str, path: &[u8]) -> Result<Attrs> {
        match self.wait(id, op, path)? {
            Reply::Attrs(a) => Ok(a),
            Reply::Status(code, msg) => Err(self.status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not attributes")),
        }
    }

    /// Waits for `id`'s reply and expects an extended reply's data.
    pub(crate) fn extended_of(
        &mut self,
        id: u32,
        op: &'static str,
        path: &[u8],
    ) -> Result<Vec<u8>> {
        match self.wait(id, op, path)? {
            Reply::Extended(data) => Ok(data),
            Reply::Status(code, msg) => Err(self.status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not an extended reply")),
        }
    }

    /// Waits for `id`'s reply and expects names; `Ok(None)` at the end of
    /// a listing (status EOF).
    pub(crate) fn names_of(
        &mut self,
        id: u32,
        op: &'static str,
        path: &[u8],
    ) -> Result<Option<Vec<Name>>> {
        match self.wait(id, op, path)? {
            Reply::Name(names) => Ok(Some(names)),
            Reply::Status(status::EOF, _) => Ok(None),
            Reply::Status(code, msg) => Err(self.status_error(op, path, code, &msg)),
            _ => Err(self.protocol(op, path, "a reply that is not names")),
        }
    }

    /// Waits for `id`'s reply and expects exactly one name (REALPATH,
    /// READLINK).
    pub(crate) fn name_of(&mut self, id: u32, op: &'static str, path: &[u8]) -> Result<Vec<u8>> {
        match self.names_of(id, op, path)? {
            Some(mut names) if names.len() == 1 => Ok(names.remove(0).filename),
            Some(names) => Err(self.protocol(
                op,
                path,
                &format!("{} names where one was due", names.len()),
            )),
            None => Err(self.protocol(op, path, "end of file where a name was due")),
        }
    }

    /// Closes `handle` without waiting for the reply (for files that were
    /// only read, or after a failure: nothing depends on it).
    pub(crate) fn close_quietly(&mut self, handle: &[u8], path: &[u8]) {
        let id = self.send_close(handle);
        self.ignore([id]);
        if let Err(e) = self.flush("close", path) {
            debug!("cannot close {}: {e}", shown(path));
        }
    }

    /// Removes a file we made, best effort (one already gone is fine);
    /// `Err` with the reason when the server refused, for the caller to
    /// report as a leftover.
    pub(crate) fn remove_ours(&mut self, path: &[u8]) -> std::result::Result<(), String> {
        if self.broken {
            return Err("the connection is lost".into());
        }
        let id = self.send_str(kind::REMOVE, path);
        match self.status_of(id, "remove", path) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => {
                warn!("cannot remove our temporary file {}: {e}", shown(path));
                Err(e.to_string())
            }
            Ok(()) => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod testbed {
    //! OpenSSH's `sftp-server` over a pipe, with no SSH in between: the
    //! SFTP client tested on its own.

    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

    use super::{ChannelIo, IoFailure, SftpChannel};
    use crate::ErrorKind;

    /// Where Debian and others put `sftp-server`.
    pub(crate) fn sftp_server() -> Option<PathBuf> {
        [
            "/usr/lib/openssh/sftp-server",
            "/usr/libexec/openssh/sftp-server",
            "/usr/libexec/sftp-server",
            "/usr/lib/ssh/sftp-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    }

    /// `sftp-server` as our child, talked to over its stdin and stdout.
    pub(crate) struct PipeIo {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: ChildStdout,
    }

    impl PipeIo {
        /// Starts `sftp-server` with `args` in `dir`.
        pub(crate) fn start(args: &[&str], dir: &std::path::Path) -> Option<PipeIo> {
            let path = match sftp_server() {
                Some(p) => p,
                None if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!("sftp-server not found: install openssh-server (.ci/run does)")
                }
                None => {
                    eprintln!("SKIPPED: sftp-server not found");
                    return None;
                }
            };
            let mut child = Command::new(path)
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sftp-server");
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().expect("stdout");
            Some(PipeIo {
                child,
                stdin,
                stdout,
            })
        }
    }

    fn failure(e: std::io::Error) -> IoFailure {
        IoFailure {
            kind: ErrorKind::Disconnected,
            reason: e.to_string(),
            source: Some(Box::new(e)),
        }
    }

    impl ChannelIo for PipeIo {
        fn write_all(&mut self, buf: &[u8]) -> Result<(), IoFailure> {
            match &mut self.stdin {
                Some(s) => s.write_all(buf).map_err(failure),
                None => Err(failure(std::io::Error::other("closed"))),
            }
        }

        fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoFailure> {
            self.stdout.read(buf).map_err(failure)
        }

        fn shutdown(&mut self) {
            self.stdin = None;
        }
    }

    impl Drop for PipeIo {
        fn drop(&mut self) {
            self.stdin = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A channel to `sftp-server` serving `dir`, or `None` (skipped)
    /// without one; under `CI=true` a missing `sftp-server` fails the test.
    pub(crate) fn channel(dir: &std::path::Path) -> Option<SftpChannel> {
        let Some(io) = PipeIo::start(&[], dir) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and no sftp-server to test against (install openssh-sftp-server)"
            );
            return None;
        };
        Some(SftpChannel::start(Box::new(io), "sftp-server (pipe)".into()).expect("handshake"))
    }

    /// A fake server that writes `bytes` and then ends.
    pub(crate) struct Canned {
        pub(crate) bytes: Vec<u8>,
        pub(crate) at: usize,
        pub(crate) words: Option<String>,
    }

    impl ChannelIo for Canned {
        fn write_all(&mut self, _buf: &[u8]) -> Result<(), IoFailure> {
            Ok(())
        }

        fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoFailure> {
            let n = (self.bytes.len() - self.at).min(buf.len());
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }

        fn last_words(&mut self) -> Option<String> {
            self.words.clone()
        }

        fn shutdown(&mut self) {}
    }
}

#[cfg(test)]
mod tests {
    use super::testbed::Canned;
    use super::*;
    use crate::sftp::proto::Encoder;

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
            stream.extend_from_slice(&(len as u32).to_be_bytes());
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

    fn version(extensions: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::packet(&mut out, kind::VERSION).u32(3);
        for x in extensions {
            e = e.str(x).str(b"1");
        }
        e.finish();
        out
    }

    fn canned(bytes: Vec<u8>) -> Box<Canned> {
        Box::new(Canned {
            bytes,
            at: 0,
            words: None,
        })
    }

    #[test]
    fn text_before_sftp_is_shown_with_the_login_shell_hint() {
        let io = canned(b"Welcome to the partner's server!\r\nLast login: never\n".to_vec());
        let err = SftpChannel::start(io, "h:22".into()).expect_err("not SFTP");
        assert_eq!(err.kind(), ErrorKind::Protocol);
        let text = err.to_string();
        for part in [
            "h:22",
            "Welcome to the partner's server!\\r\\n",
            "login shell",
        ] {
            assert!(text.contains(part), "{text} lacks {part:?}");
        }
    }

    #[test]
    fn a_subsystem_that_ends_at_start_says_what_the_server_said() {
        let io = Box::new(Canned {
            bytes: Vec::new(),
            at: 0,
            words: Some("exit status 1: You are required to change your password".into()),
        });
        let err = SftpChannel::start(io, "h:22".into()).expect_err("ended");
        assert_eq!(err.kind(), ErrorKind::Disconnected);
        assert!(err.to_string().contains("change your password"), "{err}");
    }

    #[test]
    fn replies_to_requests_never_sent_break_the_channel() {
        let mut bytes = version(&[b"posix-rename@openssh.com"]);
        Encoder::request(&mut bytes, kind::STATUS, 77)
            .u32(0)
            .str(b"")
            .str(b"")
            .finish();
        let mut ch = SftpChannel::start(canned(bytes), "h:22".into()).expect("handshake");
        assert!(ch.extensions().posix_rename);
        let id = ch.send_str(kind::STAT, b"/x");
        let err = ch.wait(id, "stat", b"/x").expect_err("unsolicited");
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert!(err.to_string().contains("request 77"), "{err}");
        assert!(ch.is_broken());
    }

    #[test]
    fn replies_for_others_are_kept_until_asked_for() {
        let mut bytes = version(&[]);
        for (id, code) in [(2u32, 2u32), (1, 0)] {
            Encoder::request(&mut bytes, kind::STATUS, id)
                .u32(code)
                .str(b"")
                .str(b"")
                .finish();
        }
        let mut ch = SftpChannel::start(canned(bytes), "h:22".into()).expect("handshake");
        let a = ch.send_str(kind::REMOVE, b"/a");
        let b = ch.send_str(kind::REMOVE, b"/b");
        assert_eq!((a, b), (1, 2));
        ch.status_of(a, "remove", b"/a").expect("a removed");
        let err = ch.status_of(b, "remove", b"/b").expect_err("b missing");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(ch.outstanding(), 0);
    }

    #[test]
    fn status_errors_keep_the_code_the_kind_and_the_target() {
        let e = status_error(
            "upload",
            "sftp.partner.example:2222",
            b"/in/a b.csv",
            status::PERMISSION_DENIED,
            "Permission denied",
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let text = e.to_string();
        assert!(text.contains("/in/a b.csv"), "{text}");
        assert!(text.contains("sftp.partner.example:2222"), "{text}");
        assert!(!text.contains("(Permission denied)"), "{text}");
        assert_eq!(status_kind(status::NO_SUCH_PATH), ErrorKind::NotFound);
        assert_eq!(status_kind(4), ErrorKind::Other);
    }

    #[test]
    fn sftp_server_over_a_pipe_answers_the_basics() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.csv"), b"12345").expect("write");
        let Some(mut ch) = super::testbed::channel(dir.path()) else {
            return;
        };
        assert!(ch.extensions().posix_rename && ch.extensions().fsync);
        let path = dir.path().join("a.csv");
        let path = path.to_str().expect("utf-8").as_bytes().to_vec();
        let id = ch.send_str(kind::STAT, &path);
        let a = ch.attrs_of(id, "stat", &path).expect("stat");
        assert_eq!(a.size, Some(5));
    }
}
