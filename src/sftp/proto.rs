//! SFTP version 3 packets (draft-ietf-secsh-filexfer-02, what OpenSSH
//! speaks) and OpenSSH's extensions: requests encoded into a buffer,
//! replies decoded from one. No I/O here: `channel.rs` moves the bytes.
//!
//! Everything a server sends is checked as it is decoded: lengths against
//! the packet, counts against the bytes that could hold them. A malformed
//! reply is a [`DecodeError`], never a panic or an allocation the packet
//! does not pay for (the `sftp_reply` fuzz target holds that).

use std::fmt;

/// Packet types (§3).
pub(crate) mod kind {
    pub(crate) const INIT: u8 = 1;
    pub(crate) const VERSION: u8 = 2;
    pub(crate) const OPEN: u8 = 3;
    pub(crate) const CLOSE: u8 = 4;
    pub(crate) const READ: u8 = 5;
    pub(crate) const WRITE: u8 = 6;
    pub(crate) const LSTAT: u8 = 7;
    pub(crate) const FSTAT: u8 = 8;
    pub(crate) const SETSTAT: u8 = 9;
    pub(crate) const FSETSTAT: u8 = 10;
    pub(crate) const OPENDIR: u8 = 11;
    pub(crate) const READDIR: u8 = 12;
    pub(crate) const REMOVE: u8 = 13;
    pub(crate) const MKDIR: u8 = 14;
    pub(crate) const RMDIR: u8 = 15;
    pub(crate) const REALPATH: u8 = 16;
    pub(crate) const STAT: u8 = 17;
    pub(crate) const RENAME: u8 = 18;
    pub(crate) const READLINK: u8 = 19;
    pub(crate) const SYMLINK: u8 = 20;
    pub(crate) const STATUS: u8 = 101;
    pub(crate) const HANDLE: u8 = 102;
    pub(crate) const DATA: u8 = 103;
    pub(crate) const NAME: u8 = 104;
    pub(crate) const ATTRS: u8 = 105;
    pub(crate) const EXTENDED: u8 = 200;
    pub(crate) const EXTENDED_REPLY: u8 = 201;

    /// The request's name as the draft spells it, for trace logs.
    pub(crate) fn name(k: u8) -> &'static str {
        match k {
            INIT => "INIT",
            OPEN => "OPEN",
            CLOSE => "CLOSE",
            READ => "READ",
            WRITE => "WRITE",
            LSTAT => "LSTAT",
            FSTAT => "FSTAT",
            SETSTAT => "SETSTAT",
            FSETSTAT => "FSETSTAT",
            OPENDIR => "OPENDIR",
            READDIR => "READDIR",
            REMOVE => "REMOVE",
            MKDIR => "MKDIR",
            RMDIR => "RMDIR",
            REALPATH => "REALPATH",
            STAT => "STAT",
            RENAME => "RENAME",
            READLINK => "READLINK",
            SYMLINK => "SYMLINK",
            EXTENDED => "EXTENDED",
            _ => "?",
        }
    }
}

/// Status codes (`SSH_FX_*`; 9 and up from later drafts, which some v3
/// servers send anyway).
pub(crate) mod status {
    pub(crate) const OK: u32 = 0;
    pub(crate) const EOF: u32 = 1;
    pub(crate) const NO_SUCH_FILE: u32 = 2;
    pub(crate) const PERMISSION_DENIED: u32 = 3;
    pub(crate) const BAD_MESSAGE: u32 = 5;
    pub(crate) const NO_CONNECTION: u32 = 6;
    pub(crate) const CONNECTION_LOST: u32 = 7;
    pub(crate) const OP_UNSUPPORTED: u32 = 8;
    pub(crate) const NO_SUCH_PATH: u32 = 10;
    pub(crate) const FILE_ALREADY_EXISTS: u32 = 11;
    pub(crate) const WRITE_PROTECT: u32 = 12;
}

/// Open flags (`SSH_FXF_*`).
pub(crate) mod open {
    pub(crate) const READ: u32 = 0x01;
    pub(crate) const WRITE: u32 = 0x02;
    pub(crate) const APPEND: u32 = 0x04;
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

/// The protocol version we speak.
pub(crate) const VERSION: u32 = 3;

/// File attributes as SFTP v3 carries them; every field is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Attrs {
    pub(crate) size: Option<u64>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    /// `st_mode`: type and permission bits.
    pub(crate) perm: Option<u32>,
    pub(crate) atime: Option<u32>,
    pub(crate) mtime: Option<u32>,
}

impl Attrs {
    /// Only permission bits.
    pub(crate) fn perm(mode: u32) -> Attrs {
        Attrs {
            perm: Some(mode),
            ..Attrs::default()
        }
    }

    /// Only access and modification times (both `secs`).
    pub(crate) fn times(atime: u32, mtime: u32) -> Attrs {
        Attrs {
            atime: Some(atime),
            mtime: Some(mtime),
            ..Attrs::default()
        }
    }
}

/// What was wrong with a packet from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn short(what: &str) -> DecodeError {
    DecodeError(format!("a truncated {what}"))
}

// ---- encoding ------------------------------------------------------------

/// Appends big-endian fields of one packet to a buffer; the length is
/// written by [`finish`](Self::finish).
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Encoder<'a> {
    /// Starts a packet of type `kind` (no request id: INIT).
    pub(crate) fn packet(out: &'a mut Vec<u8>, kind: u8) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(kind);
        Encoder { out, start }
    }

    /// Starts request `id` of type `kind`.
    pub(crate) fn request(out: &'a mut Vec<u8>, kind: u8, id: u32) -> Self {
        Encoder::packet(out, kind).u32(id)
    }

    /// Starts request `id`, the extended request `name`.
    pub(crate) fn extended(out: &'a mut Vec<u8>, id: u32, name: &[u8]) -> Self {
        Encoder::request(out, kind::EXTENDED, id).str(name)
    }

    pub(crate) fn u32(self, v: u32) -> Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(self, v: u64) -> Self {
        self.out.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A string: its length, then its bytes. Callers keep fields far below
    /// 4 GiB (paths, handles, request data of at most a few hundred KiB).
    pub(crate) fn str(self, s: &[u8]) -> Self {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.u32(len).bytes(s)
    }

    fn bytes(self, s: &[u8]) -> Self {
        self.out.extend_from_slice(s);
        self
    }

    pub(crate) fn attrs(self, a: &Attrs) -> Self {
        let mut flags = 0;
        if a.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if a.uid.is_some() && a.gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if a.perm.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if a.atime.is_some() && a.mtime.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        let mut e = self.u32(flags);
        if let Some(size) = a.size {
            e = e.u64(size);
        }
        if let (Some(uid), Some(gid)) = (a.uid, a.gid) {
            e = e.u32(uid).u32(gid);
        }
        if let Some(perm) = a.perm {
            e = e.u32(perm);
        }
        if let (Some(atime), Some(mtime)) = (a.atime, a.mtime) {
            e = e.u32(atime).u32(mtime);
        }
        e
    }

    /// A string of `len` bytes that `fill` writes in place (the data of a
    /// WRITE, read straight from a file into the buffer). On a fill error
    /// the packet is taken back out of the buffer.
    pub(crate) fn fill_with(
        self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
    ) -> std::io::Result<Self> {
        let start = self.start;
        let e = self.u32(u32::try_from(len).unwrap_or(u32::MAX));
        let at = e.out.len();
        e.out.resize(at + len, 0);
        if let Err(err) = fill(&mut e.out[at..]) {
            e.out.truncate(start);
            return Err(err);
        }
        Ok(e)
    }

    /// Writes the packet's length.
    pub(crate) fn finish(self) {
        let len = u32::try_from(self.out.len() - self.start - 4).unwrap_or(u32::MAX);
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

// ---- decoding ------------------------------------------------------------

/// Reads fields from a packet body; `None` once it runs short.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Some(hi << 32 | lo)
    }

    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    pub(crate) fn attrs(&mut self) -> Option<Attrs> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid = Some(self.u32()?);
            a.gid = Some(self.u32()?);
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.perm = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.atime = Some(self.u32()?);
            a.mtime = Some(self.u32()?);
        }
        if flags & ATTR_EXTENDED != 0 {
            // Each pair takes at least 8 bytes: a count the packet cannot
            // hold runs short below, without looping billions of times.
            let count = self.u32()?;
            if u64::from(count) * 8 > self.remaining() as u64 {
                return None;
            }
            for _ in 0..count {
                self.string()?;
                self.string()?;
            }
        }
        Some(a)
    }
}

/// One entry of a NAME reply, borrowed from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameRef<'a> {
    pub(crate) filename: &'a [u8],
    pub(crate) longname: &'a [u8],
    pub(crate) attrs: Attrs,
}

/// A decoded reply; strings borrow from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    Status { code: u32, message: &'a [u8] },
    Handle(&'a [u8]),
    Data(&'a [u8]),
    Name(Vec<NameRef<'a>>),
    Attrs(Attrs),
    Extended(&'a [u8]),
}

/// The smallest NAME entry: three empty fields (filename, longname, no
/// attribute flags).
const MIN_NAME_ENTRY: usize = 12;

/// Decodes a reply body (type byte on): its request id and contents.
///
/// # Errors
///
/// A [`DecodeError`] saying what is wrong: a type no reply has, a field
/// that runs past the packet, a count the packet cannot hold.
pub(crate) fn decode_reply(body: &[u8]) -> Result<(u32, Reply<'_>), DecodeError> {
    let mut r = Reader::new(body);
    let kind = r.u8().ok_or_else(|| short("reply"))?;
    let id = r.u32().ok_or_else(|| short("reply"))?;
    let reply = match kind {
        kind::STATUS => {
            let code = r.u32().ok_or_else(|| short("STATUS reply"))?;
            // The message and language tag are optional in practice (some
            // v3 servers stop after the code).
            let message = r.string().unwrap_or_default();
            Reply::Status { code, message }
        }
        kind::HANDLE => {
            let handle = r.string().ok_or_else(|| short("HANDLE reply"))?;
            if handle.is_empty() || handle.len() > 256 {
                return Err(DecodeError(format!(
                    "a HANDLE reply with a {}-byte handle (the protocol allows 1 to 256)",
                    handle.len()
                )));
            }
            Reply::Handle(handle)
        }
        kind::DATA => Reply::Data(r.string().ok_or_else(|| short("DATA reply"))?),
        kind::NAME => {
            let count = r.u32().ok_or_else(|| short("NAME reply"))?;
            if u64::from(count) * MIN_NAME_ENTRY as u64 > r.remaining() as u64 {
                return Err(DecodeError(format!(
                    "a NAME reply announcing {count} names in {} bytes",
                    r.remaining()
                )));
            }
            let mut names = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let filename = r.string().ok_or_else(|| short("NAME reply"))?;
                let longname = r.string().ok_or_else(|| short("NAME reply"))?;
                let attrs = r.attrs().ok_or_else(|| short("NAME reply"))?;
                names.push(NameRef {
                    filename,
                    longname,
                    attrs,
                });
            }
            Reply::Name(names)
        }
        kind::ATTRS => Reply::Attrs(r.attrs().ok_or_else(|| short("ATTRS reply"))?),
        kind::EXTENDED_REPLY => Reply::Extended(r.rest),
        other => return Err(DecodeError(format!("a packet of type {other}"))),
    };
    Ok((id, reply))
}

/// The server's VERSION packet: its version and the extensions it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) version: u32,
    pub(crate) extensions: Vec<(Vec<u8>, Vec<u8>)>,
}

/// At most this many extensions are kept from a VERSION packet.
const MAX_EXTENSIONS: usize = 64;

/// Decodes a VERSION packet body (type byte on).
///
/// # Errors
///
/// A [`DecodeError`] when the body is not a VERSION packet.
pub(crate) fn decode_version(body: &[u8]) -> Result<Version, DecodeError> {
    let mut r = Reader::new(body);
    match r.u8() {
        Some(kind::VERSION) => {}
        Some(other) => {
            return Err(DecodeError(format!(
                "a packet of type {other} where VERSION was due"
            )))
        }
        None => return Err(short("VERSION packet")),
    }
    let version = r.u32().ok_or_else(|| short("VERSION packet"))?;
    let mut extensions = Vec::new();
    // Extension pairs run to the end of the packet; a dangling half is
    // ignored, as OpenSSH does.
    while let (Some(name), Some(data)) = (r.string(), r.string()) {
        if extensions.len() < MAX_EXTENSIONS {
            extensions.push((name.to_vec(), data.to_vec()));
        }
    }
    Ok(Version {
        version,
        extensions,
    })
}

/// The reply to `statvfs@openssh.com`: the fields of POSIX `statvfs`, as
/// OpenSSH's `PROTOCOL` file lists them (eleven `uint64`s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct StatVfs {
    pub(crate) bsize: u64,
    pub(crate) frsize: u64,
    pub(crate) blocks: u64,
    pub(crate) bfree: u64,
    pub(crate) bavail: u64,
    pub(crate) files: u64,
    pub(crate) ffree: u64,
    pub(crate) favail: u64,
    pub(crate) fsid: u64,
    pub(crate) flag: u64,
    pub(crate) namemax: u64,
}

/// `f_flag` bits of a [`StatVfs`] (`SSH_FXE_STATVFS_ST_*`).
pub(crate) mod statvfs_flag {
    pub(crate) const RDONLY: u64 = 0x1;
    pub(crate) const NOSUID: u64 = 0x2;
}

impl StatVfs {
    /// Encodes the fields, in order, after whatever `e` holds (the
    /// embedded test server's reply).
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn encode<'a>(&self, e: Encoder<'a>) -> Encoder<'a> {
        e.u64(self.bsize)
            .u64(self.frsize)
            .u64(self.blocks)
            .u64(self.bfree)
            .u64(self.bavail)
            .u64(self.files)
            .u64(self.ffree)
            .u64(self.favail)
            .u64(self.fsid)
            .u64(self.flag)
            .u64(self.namemax)
    }
}

/// Decodes the data of a `statvfs@openssh.com` reply (what follows the
/// request id of an EXTENDED_REPLY). Bytes after the eleven fields are
/// ignored, as OpenSSH's client ignores them.
///
/// # Errors
///
/// A [`DecodeError`] when the data holds fewer than eleven fields.
pub(crate) fn decode_statvfs(data: &[u8]) -> Result<StatVfs, DecodeError> {
    let mut r = Reader::new(data);
    let mut next = || r.u64().ok_or_else(|| short("statvfs@openssh.com reply"));
    Ok(StatVfs {
        bsize: next()?,
        frsize: next()?,
        blocks: next()?,
        bfree: next()?,
        bavail: next()?,
        files: next()?,
        ffree: next()?,
        favail: next()?,
        fsid: next()?,
        flag: next()?,
        namemax: next()?,
    })
}

/// The name of a status code, for messages.
pub(crate) fn status_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        9 => "invalid handle",
        10 => "no such path",
        11 => "file already exists",
        12 => "write protected",
        14 => "no space on file system",
        15 => "quota exceeded",
        18 => "directory not empty",
        19 => "not a directory",
        20 => "invalid file name",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        build(&mut out);
        // Strip the length: decoders take the body.
        out.split_off(4)
    }

    #[test]
    fn statvfs_replies_round_trip_and_short_ones_are_refused() {
        let stats = StatVfs {
            bsize: 4096,
            frsize: 4096,
            blocks: 1 << 40,
            bfree: 77,
            bavail: 66,
            files: 1_000_000,
            ffree: 999,
            favail: 998,
            fsid: u64::MAX,
            flag: statvfs_flag::RDONLY,
            namemax: 255,
        };
        let body = packet(|out| {
            stats
                .encode(Encoder::request(out, kind::EXTENDED_REPLY, 7))
                .finish()
        });
        let (id, reply) = decode_reply(&body).expect("reply");
        assert_eq!(id, 7);
        let Reply::Extended(data) = reply else {
            panic!("not an extended reply: {reply:?}");
        };
        assert_eq!(decode_statvfs(data), Ok(stats));
        for cut in [0, 8, 80, 87] {
            let err = decode_statvfs(&data[..cut]).expect_err("short");
            assert!(err.0.contains("statvfs"), "{err}");
        }
    }

    #[test]
    fn attrs_round_trip_and_stop_short_on_truncation() {
        let a = Attrs {
            size: Some(29_999),
            uid: Some(1000),
            gid: Some(1001),
            perm: Some(0o100_640),
            atime: Some(7),
            mtime: Some(1_700_000_000),
        };
        let body = packet(|out| Encoder::packet(out, kind::ATTRS).attrs(&a).finish());
        let mut r = Reader::new(&body[1..]);
        assert_eq!(r.attrs(), Some(a));
        for cut in 1..body.len() {
            assert!(Reader::new(&body[1..cut]).attrs().is_none(), "cut at {cut}");
        }
        // Extended pairs are skipped; an impossible count is refused.
        let mut ext = Vec::new();
        ext.extend_from_slice(&ATTR_EXTENDED.to_be_bytes());
        ext.extend_from_slice(&1u32.to_be_bytes());
        for s in [&b"name@example"[..], b"value"] {
            ext.extend_from_slice(&(s.len() as u32).to_be_bytes());
            ext.extend_from_slice(s);
        }
        assert_eq!(Reader::new(&ext).attrs(), Some(Attrs::default()));
        ext[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Reader::new(&ext).attrs(), None);
    }

    #[test]
    fn replies_decode_and_malformed_ones_are_errors() {
        let status = packet(|out| {
            Encoder::request(out, kind::STATUS, 9)
                .u32(status::NO_SUCH_FILE)
                .str(b"No such file")
                .str(b"en")
                .finish()
        });
        assert_eq!(
            decode_reply(&status),
            Ok((
                9,
                Reply::Status {
                    code: 2,
                    message: b"No such file"
                }
            ))
        );
        // A bare status code is accepted.
        assert!(matches!(
            decode_reply(&status[..9]),
            Ok((9, Reply::Status { code: 2, .. }))
        ));
        let name = packet(|out| {
            Encoder::request(out, kind::NAME, 3)
                .u32(2)
                .str(b"a.csv")
                .str(b"-rw-r--r-- a.csv")
                .attrs(&Attrs::perm(0o100_644))
                .str(b"caf\xe9")
                .str(b"")
                .attrs(&Attrs::default())
                .finish()
        });
        let (id, reply) = decode_reply(&name).expect("a NAME reply");
        assert_eq!(id, 3);
        let Reply::Name(names) = reply else {
            panic!("not a NAME reply: {reply:?}")
        };
        assert_eq!(names.len(), 2);
        assert_eq!(names[1].filename, b"caf\xe9");
        for cut in 0..name.len() {
            assert!(decode_reply(&name[..cut]).is_err(), "cut at {cut}");
        }
        // A count the packet cannot hold is refused before any allocation.
        let mut huge = name.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_reply(&huge)
            .expect_err("impossible count")
            .0
            .contains("announcing"));
        // Handles are 1 to 256 bytes.
        let empty = packet(|out| Encoder::request(out, kind::HANDLE, 1).str(b"").finish());
        assert!(decode_reply(&empty).is_err());
        assert!(decode_reply(&[kind::OPEN, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn version_lists_extensions_and_refuses_other_packets() {
        let body = packet(|out| {
            Encoder::packet(out, kind::VERSION)
                .u32(3)
                .str(b"posix-rename@openssh.com")
                .str(b"1")
                .str(b"dangling")
                .finish()
        });
        let v = decode_version(&body).expect("a VERSION packet");
        assert_eq!(v.version, 3);
        assert_eq!(
            v.extensions,
            vec![(b"posix-rename@openssh.com".to_vec(), b"1".to_vec())]
        );
        assert!(decode_version(&[kind::STATUS, 0, 0, 0, 3]).is_err());
        assert!(decode_version(&[]).is_err());
    }

    #[test]
    fn fill_with_takes_a_failed_packet_back() {
        let mut out = vec![1, 2, 3];
        let failed = Encoder::request(&mut out, kind::WRITE, 5)
            .str(b"h")
            .u64(0)
            .fill_with(4, |_| Err(std::io::Error::other("read failed")));
        assert!(failed.is_err());
        assert_eq!(out, [1, 2, 3]);
        Encoder::request(&mut out, kind::WRITE, 5)
            .str(b"h")
            .u64(0)
            .fill_with(2, |buf| {
                buf.copy_from_slice(b"ok");
                Ok(())
            })
            .expect("filled")
            .finish();
        assert_eq!(&out[3..7], &((out.len() - 7) as u32).to_be_bytes());
        assert!(out.ends_with(b"\0\0\0\x02ok"));
    }
}
