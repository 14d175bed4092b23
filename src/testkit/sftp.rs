//! The embedded backend's SFTP server: version 3 plus the OpenSSH
//! extensions the crate uses, over the local file system.
//!
//! Paths behave as with OpenSSH's `internal-sftp -d ROOT`: absolute paths
//! are local paths, relative ones start at the SFTP root.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use russh_sftp::protocol::{
    Attrs, Data, File as Entry, FileAttributes, Handle, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use russh_sftp::server::StatusReply;

/// Entries sent per READDIR reply.
const DIR_CHUNK: usize = 100;

enum Open {
    File(File),
    Dir(Vec<Entry>),
}

pub(crate) struct SftpHandler {
    root: PathBuf,
    /// No OpenSSH extensions: none advertised, every one unsupported.
    plain: bool,
    /// posix-rename advertised, but answered "unsupported".
    refuse_posix_rename: bool,
    handles: HashMap<String, Open>,
    next: u64,
}

impl SftpHandler {
    pub(crate) fn new(root: PathBuf, plain: bool, refuse_posix_rename: bool) -> SftpHandler {
        SftpHandler {
            root,
            plain,
            refuse_posix_rename,
            handles: HashMap::new(),
            next: 0,
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else if path.starts_with('/') {
            PathBuf::from(path)
        } else {
            self.root.join(path)
        }
    }

    fn insert(&mut self, open: Open) -> String {
        self.next += 1;
        let handle = self.next.to_string();
        self.handles.insert(handle.clone(), open);
        handle
    }

    fn file(&self, handle: &str) -> Result<&File, StatusReply> {
        match self.handles.get(handle) {
            Some(Open::File(f)) => Ok(f),
            _ => Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle")),
        }
    }
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Success".into(),
        language_tag: "en-US".into(),
    }
}

/// The status for an errno, as OpenSSH's `errno_to_portable` maps it.
fn fail(e: &io::Error) -> StatusReply {
    // Linux errno values.
    let code = match e.raw_os_error() {
        // ENOENT, ENOTDIR, EBADF, ELOOP
        Some(2 | 20 | 9 | 40) => StatusCode::NoSuchFile,
        // EPERM, EACCES, EFAULT
        Some(1 | 13 | 14) => StatusCode::PermissionDenied,
        // ENAMETOOLONG, EINVAL
        Some(36 | 22) => StatusCode::BadMessage,
        // ENOSYS
        Some(38) => StatusCode::OpUnsupported,
        Some(_) => StatusCode::Failure,
        None => match e.kind() {
            io::ErrorKind::NotFound => StatusCode::NoSuchFile,
            io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
            _ => StatusCode::Failure,
        },
    };
    StatusReply::new(code).with_message(e.to_string())
}

fn attrs(meta: &fs::Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(meta.len()),
        uid: Some(meta.uid()),
        user: None,
        gid: Some(meta.gid()),
        group: None,
        // st_mode: the file type bits included, as OpenSSH sends them.
        permissions: Some(meta.mode()),
        atime: Some(u32::try_from(meta.atime()).unwrap_or(0)),
        mtime: Some(u32::try_from(meta.mtime()).unwrap_or(0)),
    }
}

fn set_attrs(path: &Path, file: Option<&File>, a: &FileAttributes) -> io::Result<()> {
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
    if let Some(mode) = a.permissions {
        let perms = fs::Permissions::from_mode(mode & 0o7777);
        match file {
            Some(f) => f.set_permissions(perms)?,
            None => fs::set_permissions(path, perms)?,
        }
    }
    if a.uid.is_some() || a.gid.is_some() {
        std::os::unix::fs::chown(path, a.uid, a.gid)?;
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

/// Reads an SSH string from `data`.
fn take_string(data: &mut &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let s = data.get(4..4 + len)?;
    let s = String::from_utf8(s.to_vec()).ok()?;
    *data = &data[4 + len..];
    Some(s)
}

fn bad_message() -> StatusReply {
    StatusReply::new(StatusCode::BadMessage)
}

impl russh_sftp::server::Handler for SftpHandler {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusReply::new(StatusCode::OpUnsupported)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        let mut v = Version::new();
        if self.plain {
            return Ok(v);
        }
        for ext in [
            "posix-rename@openssh.com",
            "fsync@openssh.com",
            "hardlink@openssh.com",
        ] {
            v.extensions.insert(ext.into(), "1".into());
        }
        Ok(v)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let mut o = OpenOptions::new();
        let create = pflags.contains(OpenFlags::CREATE);
        o.read(pflags.contains(OpenFlags::READ))
            .write(pflags.contains(OpenFlags::WRITE))
            .append(pflags.contains(OpenFlags::APPEND))
            .truncate(pflags.contains(OpenFlags::TRUNCATE))
            .create(create && !pflags.contains(OpenFlags::EXCLUDE))
            .create_new(create && pflags.contains(OpenFlags::EXCLUDE))
            .mode(attrs.permissions.map_or(0o644, |m| m & 0o7777));
        let file = o.open(self.resolve(&filename)).map_err(|e| fail(&e))?;
        Ok(Handle {
            id,
            handle: self.insert(Open::File(file)),
        })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle")),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        let mut data = vec![0u8; len.min(256 * 1024) as usize];
        let mut filled = 0;
        while filled < data.len() {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(&e)),
            }
        }
        if filled == 0 && len > 0 {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        data.truncate(filled);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        self.file(&handle)?
            .write_all_at(&data, offset)
            .map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = fs::symlink_metadata(self.resolve(&path)).map_err(|e| fail(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs(&meta),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let meta = fs::metadata(self.resolve(&path)).map_err(|e| fail(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs(&meta),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let meta = self.file(&handle)?.metadata().map_err(|e| fail(&e))?;
        Ok(Attrs {
            id,
            attrs: attrs(&meta),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        a: FileAttributes,
    ) -> Result<Status, Self::Error> {
        set_attrs(&self.resolve(&path), None, &a).map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        a: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let file = self.file(&handle)?;
        // chown needs a path; the others work on the open file.
        let a = FileAttributes {
            uid: None,
            gid: None,
            ..a
        };
        set_attrs(Path::new(""), Some(file), &a).map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let dir = self.resolve(&path);
        let mut entries = Vec::new();
        for name in [".", ".."] {
            if let Ok(meta) = fs::metadata(dir.join(name)) {
                entries.push(Entry::new(name, attrs(&meta)));
            }
        }
        for entry in fs::read_dir(&dir).map_err(|e| fail(&e))? {
            let entry = entry.map_err(|e| fail(&e))?;
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push(Entry::new(name, attrs(&meta)));
        }
        entries.reverse();
        Ok(Handle {
            id,
            handle: self.insert(Open::Dir(entries)),
        })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir(entries)) if entries.is_empty() => {
                Err(StatusReply::new(StatusCode::Eof))
            }
            Some(Open::Dir(entries)) => {
                let at = entries.len().saturating_sub(DIR_CHUNK);
                let mut files = entries.split_off(at);
                files.reverse();
                Ok(Name { id, files })
            }
            _ => Err(StatusReply::new(StatusCode::Failure).with_message("invalid handle")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        fs::remove_file(self.resolve(&filename)).map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        a: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let path = self.resolve(&path);
        fs::DirBuilder::new()
            .mode(a.permissions.map_or(0o777, |m| m & 0o7777))
            .create(&path)
            .map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        fs::remove_dir(self.resolve(&path)).map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let path = self.resolve(&path);
        let real = fs::canonicalize(&path).unwrap_or_else(|_| normalize(&path));
        Ok(Name {
            id,
            files: vec![Entry::dummy(real.to_string_lossy())],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        // Plain SFTP rename refuses an existing target, as OpenSSH's does.
        let (from, to) = (self.resolve(&oldpath), self.resolve(&newpath));
        if fs::symlink_metadata(&to).is_ok() {
            return Err(StatusReply::new(StatusCode::Failure).with_message("target exists"));
        }
        fs::rename(from, to).map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = fs::read_link(self.resolve(&path)).map_err(|e| fail(&e))?;
        Ok(Name {
            id,
            files: vec![Entry::dummy(target.to_string_lossy())],
        })
    }

    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        // OpenSSH (and so libssh2) send the target first, then the link:
        // the reverse of the draft's order, which russh-sftp's names follow.
        let (target, link) = (linkpath, targetpath);
        std::os::unix::fs::symlink(target, self.resolve(&link)).map_err(|e| fail(&e))?;
        Ok(ok(id))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        if self.plain || (self.refuse_posix_rename && request == "posix-rename@openssh.com") {
            return Err(self.unimplemented());
        }
        let mut rest = data.as_slice();
        match request.as_str() {
            "posix-rename@openssh.com" | "hardlink@openssh.com" => {
                let from = take_string(&mut rest).ok_or_else(bad_message)?;
                let to = take_string(&mut rest).ok_or_else(bad_message)?;
                let (from, to) = (self.resolve(&from), self.resolve(&to));
                if request.starts_with("posix") {
                    fs::rename(from, to).map_err(|e| fail(&e))?;
                } else {
                    fs::hard_link(from, to).map_err(|e| fail(&e))?;
                }
            }
            "fsync@openssh.com" => {
                let handle = take_string(&mut rest).ok_or_else(bad_message)?;
                self.file(&handle)?.sync_all().map_err(|e| fail(&e))?;
            }
            _ => return Err(self.unimplemented()),
        }
        Ok(Packet::Status(ok(id)))
    }
}
