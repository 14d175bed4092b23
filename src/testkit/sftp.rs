//! The embedded backend's SFTP server: version 3 and OpenSSH's extensions
//! over the local file system, on the crate's own packet code
//! (`sftp::proto`), byte-exact: names that are not UTF-8 are served as
//! they are on disk.
//!
//! Paths behave as with OpenSSH's `internal-sftp -d ROOT`: absolute paths
//! are local paths, relative ones start at the SFTP root.
//!
//! [`Quirks`] make it behave as odd, broken or hostile servers do, for
//! tests of what the client does then.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::sftp::proto::{
    kind, open as flags, status, statvfs_flag, Attrs, Encoder, Reader, StatVfs,
};

/// Entries sent per READDIR reply.
const DIR_CHUNK: usize = 100;
/// The largest request taken (OpenSSH's limit).
const MAX_REQUEST: usize = 256 * 1024 + 1024;
/// The name of the folder a bottomless tree holds at every level.
pub(crate) const DEEPER: &str = "deeper";

/// How the server departs from a well-behaved one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quirks {
    /// No OpenSSH extensions: none advertised, every one unsupported.
    pub(crate) plain: bool,
    /// posix-rename advertised, but answered "unsupported".
    pub(crate) refuse_posix_rename: bool,
    /// The plain RENAME always fails (FAILURE), as some servers do.
    pub(crate) refuse_rename: bool,
    /// Every listing also holds these names, as folders.
    pub(crate) extra_names: Vec<Vec<u8>>,
    /// Every folder also holds the folder [`DEEPER`], without end.
    pub(crate) bottomless: bool,
    /// Attributes never carry times.
    pub(crate) no_times: bool,
    /// Sizes of files are reported this much off (growth or shrinkage
    /// the client must catch).
    pub(crate) size_delta: i64,
    /// Sent before the VERSION packet, as a login shell that prints.
    pub(crate) text_first: Option<Vec<u8>>,
    /// A STATUS reply to a request never made follows the VERSION.
    pub(crate) unsolicited: bool,
    /// The subsystem ends at once, saying this on stderr, with this exit
    /// status (as one that fails at start does).
    pub(crate) fail_start: Option<(String, u32)>,
    /// A watcher takes every file written in the SFTP root (the inbox) the
    /// moment its handle closes: it moves into [`PICKED_UP`] below it.
    pub(crate) pickup_on_close: bool,
    /// RENAME and posix-rename are refused (permission denied).
    pub(crate) deny_rename: bool,
    /// REMOVE is refused (permission denied).
    pub(crate) deny_remove: bool,
    /// STAT, LSTAT and FSTAT are refused (permission denied).
    pub(crate) deny_stat: bool,
    /// SETSTAT and FSETSTAT are refused (permission denied).
    pub(crate) deny_setstat: bool,
    /// One open file per session: a second OPEN fails while one is open.
    pub(crate) one_open_file: bool,
    /// WRITE only at the end of what was written (object-storage
    /// gateways): any other offset fails.
    pub(crate) sequential_writes: bool,
}

/// Where [`Quirks::pickup_on_close`] moves the files it takes.
pub(crate) const PICKED_UP: &str = "picked-up";

enum Open {
    /// A file, its path, and whether it was opened for writing.
    File(File, PathBuf, bool),
    Dir(Vec<(Vec<u8>, Attrs)>),
}

/// One SFTP session's state: its handles.
pub(crate) struct SftpServer {
    root: PathBuf,
    quirks: Quirks,
    handles: HashMap<Vec<u8>, Open>,
    next: u64,
}

/// A failed request: its status and message.
struct Fail(u32, String);

impl From<io::Error> for Fail {
    /// The status for an errno, as OpenSSH's `errno_to_portable` maps it.
    fn from(e: io::Error) -> Fail {
        let code = match e.raw_os_error() {
            // ENOENT, ENOTDIR, EBADF, ELOOP
            Some(2 | 20 | 9 | 40) => status::NO_SUCH_FILE,
            // EPERM, EACCES, EFAULT
            Some(1 | 13 | 14) => status::PERMISSION_DENIED,
            // ENAMETOOLONG, EINVAL
            Some(36 | 22) => status::BAD_MESSAGE,
            // ENOSYS
            Some(38) => status::OP_UNSUPPORTED,
            Some(_) => 4,
            None => match e.kind() {
                io::ErrorKind::NotFound => status::NO_SUCH_FILE,
                io::ErrorKind::PermissionDenied => status::PERMISSION_DENIED,
                _ => 4,
            },
        };
        Fail(code, e.to_string())
    }
}

fn failure(msg: &str) -> Fail {
    Fail(4, msg.to_string())
}

fn bad_message() -> Fail {
    Fail(status::BAD_MESSAGE, "bad message".into())
}

fn denied() -> Fail {
    Fail(status::PERMISSION_DENIED, "permission denied".into())
}

fn unsupported() -> Fail {
    Fail(status::OP_UNSUPPORTED, "operation unsupported".into())
}

/// The next string field of a request.
fn string(r: &mut Reader<'_>) -> Result<Vec<u8>, Fail> {
    r.string().map(<[u8]>::to_vec).ok_or_else(bad_message)
}

/// `/a/./b/../c` -> `/a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl SftpServer {
    pub(crate) fn new(root: PathBuf, quirks: Quirks) -> SftpServer {
        SftpServer {
            root,
            quirks,
            handles: HashMap::new(),
            next: 0,
        }
    }

    fn resolve(&self, path: &[u8]) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else if path.starts_with(b"/") {
            PathBuf::from(OsStr::from_bytes(path))
        } else {
            self.root.join(OsStr::from_bytes(path))
        }
    }

    /// Whether `path` is in the endless part of a bottomless tree.
    fn in_the_deep(&self, path: &Path) -> bool {
        self.quirks.bottomless && path.components().any(|c| c.as_os_str() == DEEPER)
    }

    fn attrs(&self, meta: &fs::Metadata) -> Attrs {
        let mut size = meta.len();
        if meta.is_file() {
            size = size.saturating_add_signed(self.quirks.size_delta);
        }
        let (atime, mtime) = if self.quirks.no_times {
            (None, None)
        } else {
            (
                Some(u32::try_from(meta.atime()).unwrap_or(0)),
                Some(u32::try_from(meta.mtime()).unwrap_or(0)),
            )
        };
        Attrs {
            size: Some(size),
            uid: Some(meta.uid()),
            gid: Some(meta.gid()),
            // st_mode: the file type bits included, as OpenSSH sends them.
            perm: Some(meta.mode()),
            atime,
            mtime,
        }
    }

    fn dir_attrs() -> Attrs {
        Attrs {
            size: Some(4096),
            perm: Some(0o040_755),
            ..Attrs::default()
        }
    }

    fn insert(&mut self, open: Open) -> Vec<u8> {
        self.next += 1;
        let handle = self.next.to_string().into_bytes();
        self.handles.insert(handle.clone(), open);
        handle
    }

    fn file(&self, handle: &[u8]) -> Result<&File, Fail> {
        match self.handles.get(handle) {
            Some(Open::File(f, _, _)) => Ok(f),
            _ => Err(failure("invalid handle")),
        }
    }

    /// The VERSION packet (and what the quirks send with it).
    pub(crate) fn hello(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(text) = &self.quirks.text_first {
            out.extend_from_slice(text);
        }
        let mut e = Encoder::packet(&mut out, kind::VERSION).u32(3);
        if !self.quirks.plain {
            for (name, data) in [
                (&b"posix-rename@openssh.com"[..], &b"1"[..]),
                (b"fsync@openssh.com", b"1"),
                (b"hardlink@openssh.com", b"1"),
                (b"limits@openssh.com", b"1"),
                (b"statvfs@openssh.com", b"2"),
                (b"copy-data", b"1"),
            ] {
                e = e.str(name).str(data);
            }
        }
        e.finish();
        if self.quirks.unsolicited {
            Encoder::request(&mut out, kind::STATUS, 0x7fff_fff0)
                .u32(status::OK)
                .str(b"")
                .str(b"")
                .finish();
        }
        out
    }

    /// Answers one request (packet body, type byte on) into `out`.
    pub(crate) fn handle(&mut self, body: &[u8], out: &mut Vec<u8>) {
        let mut r = Reader::new(body);
        let (Some(k), Some(id)) = (r.u8(), r.u32()) else {
            return;
        };
        if let Err(Fail(code, msg)) = self.answer(k, id, &mut r, out) {
            Encoder::request(out, kind::STATUS, id)
                .u32(code)
                .str(msg.as_bytes())
                .str(b"en")
                .finish();
        }
    }

    fn ok(id: u32, out: &mut Vec<u8>) {
        Encoder::request(out, kind::STATUS, id)
            .u32(status::OK)
            .str(b"Success")
            .str(b"en")
            .finish();
    }

    fn answer(
        &mut self,
        k: u8,
        id: u32,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Fail> {
        match k {
            kind::OPEN => {
                let path = string(r)?;
                let pflags = r.u32().ok_or_else(bad_message)?;
                let a = r.attrs().ok_or_else(bad_message)?;
                let create = pflags & flags::CREATE != 0;
                let excl = pflags & flags::EXCLUSIVE != 0;
                let local = self.resolve(&path);
                if self.quirks.one_open_file
                    && self.handles.values().any(|h| matches!(h, Open::File(..)))
                {
                    return Err(failure("too many open files: one at a time"));
                }
                let file = OpenOptions::new()
                    .read(pflags & flags::READ != 0)
                    .write(pflags & flags::WRITE != 0)
                    .append(pflags & flags::APPEND != 0)
                    .truncate(pflags & flags::TRUNCATE != 0)
                    .create(create && !excl)
                    .create_new(create && excl)
                    .mode(a.perm.map_or(0o644, |m| m & 0o7777))
                    .open(&local)?;
                let writing = pflags & flags::WRITE != 0;
                let handle = self.insert(Open::File(file, local, writing));
                Encoder::request(out, kind::HANDLE, id)
                    .str(&handle)
                    .finish();
            }
            kind::CLOSE => {
                let handle = string(r)?;
                let closed = self
                    .handles
                    .remove(&handle)
                    .ok_or_else(|| failure("invalid handle"))?;
                let in_inbox = |p: &Path| p.parent() == Some(self.root.as_path());
                if let (Open::File(_, path, true), true) = (closed, self.quirks.pickup_on_close) {
                    if !in_inbox(&path) {
                        Self::ok(id, out);
                        return Ok(());
                    }
                    let bin = self.root.join(PICKED_UP);
                    fs::create_dir_all(&bin)?;
                    if let Some(name) = path.file_name() {
                        fs::rename(&path, bin.join(name))?;
                    }
                }
                Self::ok(id, out);
            }
            kind::READ => {
                let handle = string(r)?;
                let offset = r.u64().ok_or_else(bad_message)?;
                let len = r.u32().ok_or_else(bad_message)?;
                let file = self.file(&handle)?;
                let mut data = vec![0u8; (len as usize).min(MAX_REQUEST)];
                let mut filled = 0;
                while filled < data.len() {
                    match file.read_at(&mut data[filled..], offset + filled as u64) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if filled == 0 && len > 0 {
                    return Err(Fail(status::EOF, "end of file".into()));
                }
                Encoder::request(out, kind::DATA, id)
                    .str(&data[..filled])
                    .finish();
            }
            kind::WRITE => {
                let handle = string(r)?;
                let offset = r.u64().ok_or_else(bad_message)?;
                let data = r.string().ok_or_else(bad_message)?;
                let file = self.file(&handle)?;
                if self.quirks.sequential_writes && offset != file.metadata()?.len() {
                    return Err(failure("writes must be sequential"));
                }
                file.write_all_at(data, offset)?;
                Self::ok(id, out);
            }
            kind::STAT | kind::LSTAT | kind::FSTAT if self.quirks.deny_stat => {
                return Err(denied());
            }
            kind::SETSTAT | kind::FSETSTAT if self.quirks.deny_setstat => {
                return Err(denied());
            }
            kind::RENAME if self.quirks.deny_rename => return Err(denied()),
            kind::REMOVE if self.quirks.deny_remove => return Err(denied()),
            kind::STAT | kind::LSTAT => {
                let path = self.resolve(&string(r)?);
                let a = if self.in_the_deep(&path) {
                    Self::dir_attrs()
                } else if k == kind::STAT {
                    self.attrs(&fs::metadata(&path)?)
                } else {
                    self.attrs(&fs::symlink_metadata(&path)?)
                };
                Encoder::request(out, kind::ATTRS, id).attrs(&a).finish();
            }
            kind::FSTAT => {
                let handle = string(r)?;
                let a = self.attrs(&self.file(&handle)?.metadata()?);
                Encoder::request(out, kind::ATTRS, id).attrs(&a).finish();
            }
            kind::SETSTAT => {
                let path = self.resolve(&string(r)?);
                let a = r.attrs().ok_or_else(bad_message)?;
                set_attrs(&path, None, &a)?;
                Self::ok(id, out);
            }
            kind::FSETSTAT => {
                let handle = string(r)?;
                let a = r.attrs().ok_or_else(bad_message)?;
                let (file, path) = match self.handles.get(&handle) {
                    Some(Open::File(f, p, _)) => (f, p.clone()),
                    _ => return Err(failure("invalid handle")),
                };
                set_attrs(&path, Some(file), &a)?;
                Self::ok(id, out);
            }
            kind::OPENDIR => {
                let path = string(r)?;
                let entries = self.list(&self.resolve(&path))?;
                let handle = self.insert(Open::Dir(entries));
                Encoder::request(out, kind::HANDLE, id)
                    .str(&handle)
                    .finish();
            }
            kind::READDIR => {
                let handle = string(r)?;
                match self.handles.get_mut(&handle) {
                    Some(Open::Dir(entries)) if entries.is_empty() => {
                        return Err(Fail(status::EOF, "end of file".into()))
                    }
                    Some(Open::Dir(entries)) => {
                        let at = entries.len().saturating_sub(DIR_CHUNK);
                        let batch: Vec<_> = entries.split_off(at).into_iter().rev().collect();
                        let mut e = Encoder::request(out, kind::NAME, id).u32(batch.len() as u32);
                        for (name, a) in &batch {
                            e = e.str(name).str(name).attrs(a);
                        }
                        e.finish();
                    }
                    _ => return Err(failure("invalid handle")),
                }
            }
            kind::REMOVE => {
                fs::remove_file(self.resolve(&string(r)?))?;
                Self::ok(id, out);
            }
            kind::MKDIR => {
                let path = self.resolve(&string(r)?);
                let a = r.attrs().ok_or_else(bad_message)?;
                fs::DirBuilder::new()
                    .mode(a.perm.map_or(0o777, |m| m & 0o7777))
                    .create(&path)?;
                Self::ok(id, out);
            }
            kind::RMDIR => {
                fs::remove_dir(self.resolve(&string(r)?))?;
                Self::ok(id, out);
            }
            kind::REALPATH => {
                let path = self.resolve(&string(r)?);
                let real = fs::canonicalize(&path).unwrap_or_else(|_| normalize(&path));
                self.one_name(id, real.as_os_str().as_bytes(), out);
            }
            kind::READLINK => {
                let target = fs::read_link(self.resolve(&string(r)?))?;
                self.one_name(id, target.as_os_str().as_bytes(), out);
            }
            kind::SYMLINK => {
                // OpenSSH's order: the target first, then the link.
                let target = string(r)?;
                let link = string(r)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), self.resolve(&link))?;
                Self::ok(id, out);
            }
            kind::RENAME => {
                let (from, to) = (self.resolve(&string(r)?), self.resolve(&string(r)?));
                if self.quirks.refuse_rename {
                    return Err(failure("rename refused"));
                }
                // Plain SFTP rename refuses an existing target, as OpenSSH's
                // does.
                if fs::symlink_metadata(&to).is_ok() {
                    return Err(failure("target exists"));
                }
                fs::rename(from, to)?;
                Self::ok(id, out);
            }
            kind::EXTENDED => {
                let name = string(r)?;
                self.extended(&name, id, r, out)?;
            }
            _ => return Err(unsupported()),
        }
        Ok(())
    }

    fn one_name(&self, id: u32, name: &[u8], out: &mut Vec<u8>) {
        Encoder::request(out, kind::NAME, id)
            .u32(1)
            .str(name)
            .str(name)
            .attrs(&Attrs::default())
            .finish();
    }

    fn extended(
        &mut self,
        name: &[u8],
        id: u32,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Fail> {
        if self.quirks.plain
            || (self.quirks.refuse_posix_rename && name == b"posix-rename@openssh.com")
        {
            return Err(unsupported());
        }
        match name {
            b"posix-rename@openssh.com" if self.quirks.deny_rename => return Err(denied()),
            b"posix-rename@openssh.com" => {
                let (from, to) = (self.resolve(&string(r)?), self.resolve(&string(r)?));
                fs::rename(from, to)?;
            }
            b"hardlink@openssh.com" => {
                let (from, to) = (self.resolve(&string(r)?), self.resolve(&string(r)?));
                fs::hard_link(from, to)?;
            }
            b"fsync@openssh.com" => {
                let handle = string(r)?;
                self.file(&handle)?.sync_all()?;
            }
            b"limits@openssh.com" => {
                Encoder::request(out, kind::EXTENDED_REPLY, id)
                    .u64(MAX_REQUEST as u64)
                    .u64(255 * 1024)
                    .u64(255 * 1024)
                    .u64(0)
                    .finish();
                return Ok(());
            }
            b"statvfs@openssh.com" => {
                let stats = statvfs(&self.resolve(&string(r)?))?;
                stats
                    .encode(Encoder::request(out, kind::EXTENDED_REPLY, id))
                    .finish();
                return Ok(());
            }
            b"copy-data" => self.copy_data(r)?,
            _ => return Err(unsupported()),
        }
        Self::ok(id, out);
        Ok(())
    }

    /// `copy-data`: from one open file to another, as OpenSSH's
    /// `sftp-server` does it (a length of 0 copies to the end; the same
    /// handle, or two handles on the same path, are refused).
    fn copy_data(&self, r: &mut Reader<'_>) -> Result<(), Fail> {
        let from = string(r)?;
        let mut read_at = r.u64().ok_or_else(bad_message)?;
        let len = r.u64().ok_or_else(bad_message)?;
        let to = string(r)?;
        let mut write_at = r.u64().ok_or_else(bad_message)?;
        let (src, dst) = match (self.handles.get(&from), self.handles.get(&to)) {
            (Some(Open::File(src, a, _)), Some(Open::File(dst, b, _))) if from != to && a != b => {
                (src, dst)
            }
            _ => return Err(failure("copy-data needs two handles of two files")),
        };
        let mut left = if len == 0 { u64::MAX } else { len };
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = src.read_at(&mut buf[..want], read_at)?;
            if n == 0 {
                return match len {
                    0 => Ok(()),
                    _ => Err(Fail(status::EOF, "end of file".into())),
                };
            }
            dst.write_all_at(&buf[..n], write_at)?;
            read_at += n as u64;
            write_at += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// The entries of `dir` (with `.` and `..`, as OpenSSH lists them),
    /// in reverse for `split_off`, and what the quirks add.
    fn list(&self, dir: &Path) -> Result<Vec<(Vec<u8>, Attrs)>, Fail> {
        let mut entries = Vec::new();
        if self.in_the_deep(dir) {
            for name in [".", "..", DEEPER] {
                entries.push((name.as_bytes().to_vec(), Self::dir_attrs()));
            }
        } else {
            for name in [".", ".."] {
                if let Ok(meta) = fs::metadata(dir.join(name)) {
                    entries.push((name.as_bytes().to_vec(), self.attrs(&meta)));
                }
            }
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                entries.push((entry.file_name().as_bytes().to_vec(), self.attrs(&meta)));
            }
            if self.quirks.bottomless {
                entries.push((DEEPER.as_bytes().to_vec(), Self::dir_attrs()));
            }
        }
        // Hostile names go in the middle of the listing.
        let middle = entries.len() / 2;
        for name in self.quirks.extra_names.iter().rev() {
            entries.insert(middle, (name.clone(), Self::dir_attrs()));
        }
        entries.reverse();
        Ok(entries)
    }
}

/// `statvfs(2)` of `path`, as `statvfs@openssh.com` sends it.
fn statvfs(path: &Path) -> io::Result<StatVfs> {
    let s = rustix::fs::statvfs(path)?;
    let mut flag = 0;
    if s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        flag |= statvfs_flag::RDONLY;
    }
    if s.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID) {
        flag |= statvfs_flag::NOSUID;
    }
    Ok(StatVfs {
        bsize: s.f_bsize,
        frsize: s.f_frsize,
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        files: s.f_files,
        ffree: s.f_ffree,
        favail: s.f_favail,
        fsid: s.f_fsid,
        flag,
        namemax: s.f_namemax,
    })
}

fn set_attrs(path: &Path, file: Option<&File>, a: &Attrs) -> io::Result<()> {
    let owned;
    let file = match file {
        Some(f) => Some(f),
        None if a.size.is_some() || a.mtime.is_some() || a.atime.is_some() => {
            owned = if a.size.is_some() {
                OpenOptions::new().write(true).open(path)?
            } else {
                File::open(path)?
            };
            Some(&owned)
        }
        None => None,
    };
    if let (Some(size), Some(f)) = (a.size, file) {
        f.set_len(size)?;
    }
    if let Some(mode) = a.perm {
        let perms = fs::Permissions::from_mode(mode & 0o7777);
        match file {
            Some(f) => f.set_permissions(perms)?,
            None => fs::set_permissions(path, perms)?,
        }
    }
    if let (Some(f), true) = (file, a.mtime.is_some() || a.atime.is_some()) {
        let mut times = FileTimes::new();
        if let Some(m) = a.mtime {
            times = times.set_modified(UNIX_EPOCH + Duration::from_secs(m.into()));
        }
        if let Some(t) = a.atime {
            times = times.set_accessed(UNIX_EPOCH + Duration::from_secs(t.into()));
        }
        f.set_times(times)?;
    }
    Ok(())
}

/// Serves SFTP on `stream` until the client closes it.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut server: SftpServer,
) {
    let mut len = [0u8; 4];
    let mut out = Vec::new();
    // INIT first, then VERSION.
    let mut body = Vec::new();
    loop {
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > MAX_REQUEST + 64 {
            return;
        }
        body.resize(n, 0);
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        out.clear();
        if body[0] == kind::INIT {
            out = server.hello();
        } else {
            server.handle(&body, &mut out);
        }
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}
