//! File-system operations on one SFTP channel: stat, listings, folders,
//! removal, the renames that never lose a file, links, and what OpenSSH's
//! extensions add (file system statistics, server-side copies).
//!
//! Each function takes the channel it runs on, so that a transfer holding
//! a channel uses the same code as [`SftpSession`](super::SftpSession)'s
//! one-call operations.

use std::collections::VecDeque;
use std::sync::Arc;

use log::{debug, warn};

use super::channel::{status_code, Name, SftpChannel};
use super::metadata::{DirEntry, Metadata};
use super::path::{check_name, parent, shown, trim_end_slashes, Checked};
use super::pool::Pool;
use super::proto::{self, kind, open as flags, status, Attrs, StatVfs};
use crate::{Error, ErrorKind, Result};

/// At most this many entries are kept from one listing by
/// [`read_dir`](super::SftpSession::read_dir); the iterator
/// ([`read_dir_iter`](super::SftpSession::read_dir_iter)) has no bound.
pub(crate) const MAX_LISTING: usize = 1_000_000;

/// The deepest a walk of a remote or local tree goes, as OpenSSH's
/// `sftp -r`.
pub(crate) const MAX_DEPTH: usize = 64;

/// STAT (`follow`) or LSTAT of `path`.
pub(crate) fn stat(ch: &mut SftpChannel, path: &[u8], follow: bool) -> Result<Metadata> {
    let (k, op) = if follow {
        (kind::STAT, "stat")
    } else {
        (kind::LSTAT, "lstat")
    };
    let id = ch.send_str(k, path);
    ch.attrs_of(id, op, path).map(Metadata::from)
}

/// Whether `path` exists (following symlinks).
pub(crate) fn exists(ch: &mut SftpChannel, path: &[u8]) -> Result<bool> {
    match stat(ch, path, true) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether something (a dangling link too) is at `path`.
pub(crate) fn anything_at(ch: &mut SftpChannel, path: &[u8]) -> Result<bool> {
    match stat(ch, path, false) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A request whose reply is a status: REMOVE, RMDIR, ...
pub(crate) fn simple(ch: &mut SftpChannel, k: u8, op: &'static str, path: &[u8]) -> Result<()> {
    let id = ch.send_str(k, path);
    ch.status_of(id, op, path)
}

/// SETSTAT of `path`.
pub(crate) fn set_attrs(
    ch: &mut SftpChannel,
    op: &'static str,
    path: &[u8],
    attrs: &Attrs,
) -> Result<()> {
    let id = ch.send(kind::SETSTAT, |e| e.str(path).attrs(attrs));
    ch.status_of(id, op, path)
}

/// MKDIR of `path` with `mode` (less the server's umask). SFTP v3 has no
/// "already exists": OpenSSH says FAILURE, which is told apart here.
pub(crate) fn mkdir(ch: &mut SftpChannel, path: &[u8], mode: u32) -> Result<()> {
    let id = ch.send(kind::MKDIR, |e| e.str(path).attrs(&Attrs::perm(mode)));
    match ch.status_of(id, "create_dir", path) {
        Err(e) if e.kind() == ErrorKind::Other && !ch.is_broken() => {
            if anything_at(ch, path).unwrap_or(false) {
                return Err(ch.error(
                    ErrorKind::AlreadyExists,
                    "create_dir",
                    path,
                    "already exists",
                ));
            }
            let up = parent(path);
            if !exists(ch, &up).unwrap_or(true) {
                return Err(ch.error(
                    ErrorKind::NotFound,
                    "create_dir",
                    path,
                    format!("the parent folder {} does not exist", shown(&up)),
                ));
            }
            Err(e)
        }
        other => other,
    }
}

/// Creates `path` and its missing parents; fine when it is a folder
/// already. Walks up to the first folder that exists, then down: no
/// recursion.
pub(crate) fn mkdir_all(ch: &mut SftpChannel, path: &[u8], mode: u32) -> Result<()> {
    let mut missing: Vec<Vec<u8>> = Vec::new();
    let mut at = trim_end_slashes(path).to_vec();
    loop {
        if at.is_empty() || at == b"." || at == b"/" {
            break;
        }
        match stat(ch, &at, true) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(ch.error(
                    ErrorKind::AlreadyExists,
                    "create_dir_all",
                    &at,
                    "exists and is not a directory",
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let up = parent(&at);
        missing.push(std::mem::replace(&mut at, up));
    }
    while let Some(dir) = missing.pop() {
        match mkdir(ch, &dir, mode) {
            Ok(()) => {}
            // Someone else made it meanwhile.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if !stat(ch, &dir, true).is_ok_and(|m| m.is_dir()) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A unique name beside `path`, for a file moved aside.
fn aside_name(path: &[u8]) -> Vec<u8> {
    let dir = parent(path);
    let name = super::path::file_name(path);
    let pattern = super::path::ASIDE_NAME.replace("{unique}", &super::path::unique());
    let aside = super::path::bounded_name(name, &pattern);
    super::path::join(&dir, &aside)
}

/// Renames `from` to `to`, replacing `to`, without ever losing either.
///
/// With `posix-rename@openssh.com` the replacement is atomic. Without it
/// (or when the server refuses it as unsupported), a plain RENAME is
/// tried; when that fails, the source must exist (else nothing is
/// touched), and an existing `to` is renamed aside to a unique name, ours
/// renamed in, and the aside copy removed; any failure on the way puts
/// the old file back. `to` is briefly absent then, never lost.
///
/// # Errors
///
/// Each says what state the server is left in: nothing changed; or the
/// old file is at the aside name (when putting it back failed too).
pub(crate) fn rename_replace(ch: &mut SftpChannel, from: &[u8], to: &[u8]) -> Result<()> {
    if ch.extensions().posix_rename {
        let id = ch.send_rename(from, to, true);
        match ch.status_of(id, "rename", from) {
            Err(e) if status_code(&e) == Some(status::OP_UNSUPPORTED) => {
                ch.forget_posix_rename();
            }
            done => return done,
        }
    }
    let id = ch.send_rename(from, to, false);
    let first = match ch.status_of(id, "rename", from) {
        Ok(()) => return Ok(()),
        Err(e) if ch.is_broken() => return Err(e),
        Err(e) => e,
    };
    // Why did it fail? Never touch `to` unless `from` is there to replace it.
    if !anything_at(ch, from)? {
        return Err(ch.error(
            ErrorKind::NotFound,
            "rename",
            from,
            format!(
                "the source does not exist; {} was left untouched",
                shown(to)
            ),
        ));
    }
    match stat(ch, to, false) {
        Ok(m) if m.is_dir() => return Err(first),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(first),
        Err(e) => return Err(e),
    }
    debug!(
        "{}: the plain rename of {} over {} failed ({first}); moving the old file aside",
        ch.target(),
        shown(from),
        shown(to)
    );
    let aside = aside_name(to);
    let id = ch.send_rename(to, &aside, false);
    ch.status_of(id, "rename", to).map_err(|e| {
        ch.error(
            e.kind(),
            "rename",
            from,
            format!(
                "the server refused to replace {} ({first}) and to move it aside ({e}); \
                 nothing was changed",
                shown(to)
            ),
        )
    })?;
    let id = ch.send_rename(from, to, false);
    if let Err(e) = ch.status_of(id, "rename", from) {
        let id = ch.send_rename(&aside, to, false);
        return Err(match ch.status_of(id, "rename", &aside) {
            Ok(()) => ch.error(
                e.kind(),
                "rename",
                from,
                format!(
                    "cannot rename it over {} ({e}); the old file was put back, nothing \
                     was changed",
                    shown(to)
                ),
            ),
            Err(back) => ch.error(
                e.kind(),
                "rename",
                from,
                format!(
                    "cannot rename it over {} ({e}), and the old file could not be put \
                     back ({back}): it is at {}; rename it to {} to restore it",
                    shown(to),
                    shown(&aside),
                    shown(to)
                ),
            ),
        });
    }
    if let Err(e) = simple(ch, kind::REMOVE, "remove", &aside) {
        warn!(
            "{}: {} replaced {}, but the old copy {} could not be removed: {e}",
            ch.target(),
            shown(from),
            shown(to),
            shown(&aside)
        );
    }
    Ok(())
}

/// Renames `from` to `to` only if `to` does not exist: the plain SFTP
/// rename, which OpenSSH does with a hard link that fails on an existing
/// target.
pub(crate) fn rename_no_replace(ch: &mut SftpChannel, from: &[u8], to: &[u8]) -> Result<()> {
    let id = ch.send_rename(from, to, false);
    match ch.status_of(id, "rename", to) {
        Err(e) if e.kind() == ErrorKind::Other && anything_at(ch, to).unwrap_or(false) => {
            Err(ch.error(ErrorKind::AlreadyExists, "rename", to, "the target exists"))
        }
        done => done,
    }
}

/// REALPATH of `path`: the server's absolute, canonical form.
pub(crate) fn realpath(ch: &mut SftpChannel, path: &[u8]) -> Result<Vec<u8>> {
    let id = ch.send_str(kind::REALPATH, path);
    ch.name_of(id, "canonicalize", path)
}

/// READLINK of `path`.
pub(crate) fn readlink(ch: &mut SftpChannel, path: &[u8]) -> Result<Vec<u8>> {
    let id = ch.send_str(kind::READLINK, path);
    ch.name_of(id, "read_link", path)
}

/// Makes `link` a symbolic link to `target`. OpenSSH's server takes the
/// two paths in the reverse of the draft's order (target first), and
/// most servers follow it: so does this.
pub(crate) fn symlink(ch: &mut SftpChannel, target: &[u8], link: &[u8]) -> Result<()> {
    let id = ch.send(kind::SYMLINK, |e| e.str(target).str(link));
    ch.status_of(id, "symlink", link)
}

/// [`ErrorKind::Unsupported`] naming the extension `name`, unless the
/// server advertised it (`offered`).
fn offered(
    ch: &SftpChannel,
    offered: bool,
    name: &str,
    op: &'static str,
    path: &[u8],
) -> Result<()> {
    match offered {
        true => Ok(()),
        false => Err(ch.error(
            ErrorKind::Unsupported,
            op,
            path,
            format!("the server does not offer the {name} extension"),
        )),
    }
}

/// Makes `link` a hard link to `target` (`hardlink@openssh.com`).
pub(crate) fn hard_link(ch: &mut SftpChannel, target: &[u8], link: &[u8]) -> Result<()> {
    let name = "hardlink@openssh.com";
    offered(ch, ch.extensions().hardlink, name, "hard_link", link)?;
    let id = ch.send_extended(name.as_bytes(), |e| e.str(target).str(link));
    ch.status_of(id, "hard_link", link)
}

/// Statistics of the file system `path` is on (`statvfs@openssh.com`).
pub(crate) fn statvfs(ch: &mut SftpChannel, path: &[u8]) -> Result<StatVfs> {
    let name = "statvfs@openssh.com";
    offered(ch, ch.extensions().statvfs, name, "statvfs", path)?;
    let id = ch.send_extended(name.as_bytes(), |e| e.str(path));
    let data = ch.extended_of(id, "statvfs", path)?;
    proto::decode_statvfs(&data).map_err(|e| ch.protocol("statvfs", path, &e.0))
}

/// Copies the file `from` to `to` on the server (the `copy-data`
/// extension); returns the bytes in `to` afterwards.
///
/// `to` is opened without truncation (created, with `from`'s permission
/// bits, when missing), the data copied from offset 0 to the end of
/// `from`, and only then is `to` cut to `from`'s length: when `to` is
/// `from` under another name (a link, `./a` for `a`), a truncating open
/// would empty the source before the copy read it; this way the bytes are
/// copied onto themselves and nothing is lost.
pub(crate) fn copy(ch: &mut SftpChannel, from: &[u8], to: &[u8]) -> Result<u64> {
    let name = "copy-data";
    offered(ch, ch.extensions().copy_data, name, "copy", from)?;
    if from == to {
        return Err(ch.error(
            ErrorKind::InvalidInput,
            "copy",
            from,
            "the source and the destination are the same path",
        ));
    }
    // What the source is, and its handle: one round trip.
    let stat = ch.send_str(kind::STAT, from);
    let open = ch.send_open(from, flags::READ, &Attrs::default());
    let meta = ch.attrs_of(stat, "copy", from);
    let src = match (meta, ch.handle_of(open, "copy", from)) {
        (Ok(meta), Ok(src)) if Metadata::from(meta).is_file() => (meta, src),
        (Ok(_), Ok(src)) => {
            ch.close_quietly(&src, from);
            return Err(ch.error(
                ErrorKind::InvalidInput,
                "copy",
                from,
                "not a regular file: copy takes files only",
            ));
        }
        (Err(e), Ok(src)) => {
            ch.close_quietly(&src, from);
            return Err(e);
        }
        (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
    };
    let (meta, src) = src;
    let perm = Attrs::perm(meta.perm.map_or(0o644, |m| m & 0o777));
    let id = ch.send_open(to, flags::WRITE | flags::CREATE, &perm);
    let dst = match ch.handle_of(id, "copy", to) {
        Ok(dst) => dst,
        Err(e) => {
            if !ch.is_broken() {
                ch.close_quietly(&src, from);
            }
            return Err(e);
        }
    };
    // Offset 0, length 0 (to the end of the file), to offset 0.
    let id = ch.send_extended(name.as_bytes(), |e| {
        e.str(&src).u64(0).u64(0).str(&dst).u64(0)
    });
    let fstat = ch.send_str(kind::FSTAT, &src);
    let copied = ch.status_of(id, "copy", to);
    let size = ch.attrs_of(fstat, "copy", from).map(|a| a.size);
    let result = match (copied, size) {
        (Ok(()), Ok(Some(len))) => {
            let cut = Attrs {
                size: Some(len),
                ..Attrs::default()
            };
            let id = ch.send(kind::FSETSTAT, |e| e.str(&dst).attrs(&cut));
            ch.status_of(id, "copy", to).map(|()| len)
        }
        (Ok(()), Ok(None)) => Err(ch.error(
            ErrorKind::Protocol,
            "copy",
            to,
            format!(
                "the server did not report the size of {}, so the copy could not be cut \
                 to length: bytes of the old file may follow it",
                shown(from)
            ),
        )),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
    };
    if ch.is_broken() {
        return result;
    }
    let close_src = ch.send_close(&src);
    ch.ignore([close_src]);
    let close_dst = ch.send_close(&dst);
    let closed = ch.status_of(close_dst, "copy", to);
    let len = result?;
    closed.map(|()| len)
}

/// Opens the folder `path` for listing.
fn opendir(ch: &mut SftpChannel, path: &[u8]) -> Result<Vec<u8>> {
    let id = ch.send_str(kind::OPENDIR, path);
    ch.handle_of(id, "read_dir", path)
}

/// The entries of one READDIR reply whose names pass `check_name`.
fn checked(ch: &SftpChannel, dir: &[u8], names: Vec<Name>) -> Vec<DirEntry> {
    names
        .into_iter()
        .filter_map(|n| match check_name(&n.filename, dir, ch.target()) {
            Checked::Name(name) => Some(DirEntry::new(dir, name, n.attrs)),
            Checked::Dots | Checked::Suspect => None,
        })
        .collect()
}

/// One READDIR: the next entries (checked names only), or `None` at the
/// end.
fn readdir(ch: &mut SftpChannel, handle: &[u8], dir: &[u8]) -> Result<Option<Vec<DirEntry>>> {
    let id = ch.send_str(kind::READDIR, handle);
    Ok(ch
        .names_of(id, "read_dir", dir)?
        .map(|names| checked(ch, dir, names)))
}

/// READDIRs kept in flight on one folder once it proved to hold more than
/// one reply's worth (OpenSSH sends about a hundred names per reply).
const READDIRS_IN_FLIGHT: usize = 8;

/// Lists `dir` on `ch`, at most [`MAX_LISTING`] entries.
pub(crate) fn read_dir(ch: &mut SftpChannel, dir: &[u8]) -> Result<Vec<DirEntry>> {
    read_dirs(ch, &[dir.to_vec()], MAX_LISTING)
        .pop()
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// Lists each of `dirs` on `ch` at once, each at most `max` entries: the
/// OPENDIRs go out together, then READDIRs on every open folder, two at
/// first (a small folder's end comes with its names) and up to
/// [`READDIRS_IN_FLIGHT`] on a folder that keeps answering, so a tree or a
/// long listing costs round trips for its depth and length, not one per
/// request. No request is sent on a folder after its end (EOF); replies
/// still on their way are read, and an error after the end is ignored
/// (some servers answer a READDIR past the end with a failure).
pub(crate) fn read_dirs(
    ch: &mut SftpChannel,
    dirs: &[Vec<u8>],
    max: usize,
) -> Vec<Result<Vec<DirEntry>>> {
    struct Listing {
        handle: Option<Vec<u8>>,
        entries: Vec<DirEntry>,
        in_flight: usize,
        ended: bool,
        error: Option<Error>,
    }
    let mut listings: Vec<Listing> = dirs
        .iter()
        .map(|_| Listing {
            handle: None,
            entries: Vec::new(),
            in_flight: 0,
            ended: false,
            error: None,
        })
        .collect();
    let opens: Vec<u32> = dirs.iter().map(|d| ch.send_str(kind::OPENDIR, d)).collect();
    // Replies are read in the order the requests went out.
    let mut waiting: VecDeque<(u32, usize)> = VecDeque::new();
    for (i, id) in opens.into_iter().enumerate() {
        let l = &mut listings[i];
        match ch.handle_of(id, "read_dir", &dirs[i]) {
            Ok(handle) => {
                for _ in 0..2 {
                    waiting.push_back((ch.send_str(kind::READDIR, &handle), i));
                }
                l.in_flight = 2;
                l.handle = Some(handle);
            }
            Err(e) => {
                l.ended = true;
                l.error = Some(e);
            }
        }
        if ch.is_broken() {
            break;
        }
    }
    while let Some((id, i)) = waiting.pop_front() {
        if ch.is_broken() {
            break;
        }
        let dir = &dirs[i];
        let reply = ch.names_of(id, "read_dir", dir);
        let l = &mut listings[i];
        l.in_flight -= 1;
        match reply {
            Ok(Some(names)) => {
                l.entries.extend(checked(ch, dir, names));
                if l.entries.len() > max && l.error.is_none() {
                    l.error = Some(ch.error(
                        ErrorKind::LimitExceeded,
                        "read_dir",
                        dir,
                        format!(
                            "more than {max} entries: use SftpSession::read_dir_iter, which \
                             holds one batch at a time"
                        ),
                    ));
                    l.ended = true;
                }
                if !l.ended {
                    // Room for two more: the folder keeps answering.
                    let more = (l.in_flight + 2).min(READDIRS_IN_FLIGHT) - l.in_flight;
                    let handle = l.handle.as_deref().unwrap_or_default();
                    for _ in 0..more {
                        waiting.push_back((ch.send_str(kind::READDIR, handle), i));
                    }
                    l.in_flight += more;
                }
            }
            Ok(None) => l.ended = true,
            Err(e) => {
                if !l.ended && l.error.is_none() {
                    l.error = Some(e);
                }
                l.ended = true;
            }
        }
        if l.in_flight == 0 {
            if let Some(handle) = l.handle.take() {
                if !ch.is_broken() {
                    let id = ch.send_close(&handle);
                    ch.ignore([id]);
                }
            }
        }
    }
    if !ch.is_broken() {
        if let Err(e) = ch.flush("close", b"") {
            debug!("cannot close listed folders: {e}");
        }
    }
    listings
        .into_iter()
        .enumerate()
        .map(|(i, l)| match l.error {
            Some(e) => Err(e),
            None if l.in_flight > 0 || !l.ended => Err(ch.error(
                ErrorKind::Disconnected,
                "read_dir",
                &dirs[i],
                "the connection ended before the listing did",
            )),
            None => Ok(l.entries),
        })
        .collect()
}

/// Removes the folder `path` and everything in it, never following a
/// symlink: a loop over a stack, at most [`MAX_DEPTH`] levels.
pub(crate) fn remove_tree(ch: &mut SftpChannel, path: &[u8]) -> Result<()> {
    if !stat(ch, path, false)?.is_dir() {
        return Err(ch.error(
            ErrorKind::InvalidInput,
            "remove_dir_all",
            path,
            "not a directory",
        ));
    }
    // (folder, depth, whether its entries are gone already)
    let mut stack = vec![(path.to_vec(), 0usize, false)];
    while let Some((dir, depth, emptied)) = stack.pop() {
        if emptied {
            simple(ch, kind::RMDIR, "remove_dir", &dir)?;
            continue;
        }
        if depth >= MAX_DEPTH {
            return Err(ch.error(
                ErrorKind::LimitExceeded,
                "remove_dir_all",
                &dir,
                format!("the tree is deeper than {MAX_DEPTH} levels"),
            ));
        }
        stack.push((dir.clone(), depth, true));
        for entry in read_dir(ch, &dir)? {
            let child = entry.path().as_bytes().to_vec();
            if entry.file_type() == super::metadata::FileType::Dir {
                stack.push((child, depth + 1, false));
            } else {
                simple(ch, kind::REMOVE, "remove_file", &child)?;
            }
        }
    }
    Ok(())
}

/// A folder listing read as it is iterated: one batch of entries (one
/// READDIR reply, about a hundred on OpenSSH) in memory at a time. Made by
/// [`SftpSession::read_dir_iter`](super::SftpSession::read_dir_iter).
///
/// Yields `Err` once and then ends when the listing fails part way: a
/// listing is never cut short silently.
pub struct ReadDir {
    pool: Arc<Pool>,
    slot: usize,
    dir: Vec<u8>,
    handle: Option<Vec<u8>>,
    batch: VecDeque<DirEntry>,
}

impl std::fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDir")
            .field("dir", &shown(&self.dir))
            .finish_non_exhaustive()
    }
}

impl ReadDir {
    pub(crate) fn open(pool: Arc<Pool>, dir: &[u8]) -> Result<ReadDir> {
        let (slot, handle) = {
            let mut ch = pool.any()?;
            (ch.slot(), opendir(&mut ch, dir)?)
        };
        pool.pin(slot, true);
        Ok(ReadDir {
            pool,
            slot,
            dir: dir.to_vec(),
            handle: Some(handle),
            batch: VecDeque::new(),
        })
    }

    fn close(&mut self) {
        if let Some(handle) = self.handle.take() {
            if let Ok(mut ch) = self.pool.slot(self.slot, &self.dir) {
                ch.close_quietly(&handle, &self.dir);
            }
            self.pool.pin(self.slot, false);
        }
    }
}

impl Iterator for ReadDir {
    type Item = Result<DirEntry>;

    fn next(&mut self) -> Option<Result<DirEntry>> {
        loop {
            if let Some(entry) = self.batch.pop_front() {
                return Some(Ok(entry));
            }
            let handle = self.handle.as_ref()?;
            let next = self
                .pool
                .slot(self.slot, &self.dir)
                .and_then(|mut ch| readdir(&mut ch, handle, &self.dir));
            match next {
                Ok(Some(batch)) => self.batch.extend(batch),
                Ok(None) => {
                    self.close();
                    return None;
                }
                Err(e) => {
                    self.close();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Drop for ReadDir {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::super::channel::testbed;
    use super::*;

    fn bytes(p: &std::path::Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    }

    /// Several folders listed at once, one of them long (eleven READDIR
    /// replies and more in flight), one empty, one missing: each listing
    /// whole and exactly once, the missing one its own error, the channel
    /// still usable; a cap on entries is an error naming `read_dir_iter`.
    #[test]
    fn folders_listed_together_come_back_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let Some(mut ch) = testbed::channel(dir.path()) else {
            return;
        };
        let long = dir.path().join("long");
        std::fs::create_dir(&long).expect("mkdir");
        for i in 0..1050 {
            std::fs::write(long.join(format!("f{i:04}")), b"x").expect("write");
        }
        std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
        std::fs::create_dir(dir.path().join("small")).expect("mkdir");
        std::fs::write(dir.path().join("small/a"), b"a").expect("write");
        let dirs: Vec<Vec<u8>> = ["long", "missing", "empty", "small"]
            .iter()
            .map(|d| bytes(&dir.path().join(d)))
            .collect();
        let mut listed = read_dirs(&mut ch, &dirs, MAX_LISTING).into_iter();
        let mut names: Vec<String> = listed
            .next()
            .expect("long")
            .expect("long listed")
            .iter()
            .map(|e| e.name().to_string())
            .collect();
        names.sort();
        let expected: Vec<String> = (0..1050).map(|i| format!("f{i:04}")).collect();
        assert_eq!(names, expected);
        let missing = listed.next().expect("missing").expect_err("missing");
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
        assert!(listed.next().expect("empty").expect("empty").is_empty());
        let small = listed.next().expect("small").expect("small listed");
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].name(), "a");
        let capped = read_dirs(&mut ch, &dirs[..1], 500)
            .pop()
            .expect("one")
            .expect_err("over the cap");
        assert_eq!(capped.kind(), ErrorKind::LimitExceeded);
        assert!(capped.to_string().contains("read_dir_iter"), "{capped}");
        // The channel answers in step after all that.
        assert_eq!(read_dir(&mut ch, &dirs[3]).expect("again").len(), 1);
    }

    #[test]
    fn folders_listings_and_renames_against_sftp_server() {
        let dir = tempfile::tempdir().expect("temp dir");
        let Some(mut ch) = testbed::channel(dir.path()) else {
            return;
        };
        let root = bytes(dir.path());
        let deep = super::super::path::join(&root, b"a/b/c");
        mkdir_all(&mut ch, &deep, 0o755).expect("mkdir -p");
        mkdir_all(&mut ch, &deep, 0o755).expect("mkdir -p again");
        assert!(dir.path().join("a/b/c").is_dir());
        let err = mkdir(&mut ch, &deep, 0o755).expect_err("exists");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        let orphan = super::super::path::join(&root, b"no/such");
        assert_eq!(
            mkdir(&mut ch, &orphan, 0o755)
                .expect_err("no parent")
                .kind(),
            ErrorKind::NotFound
        );

        std::fs::write(dir.path().join("caf\u{e9}.csv"), b"x").expect("write");
        std::fs::write(dir.path().join("old.csv"), b"old").expect("write");
        let names: Vec<String> = read_dir(&mut ch, &root)
            .expect("list")
            .iter()
            .map(|e| e.name().to_string())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");

        // A rename over an existing file on the plain-rename path keeps
        // the old file until ours is in place.
        let from = super::super::path::join(&root, "café.csv".as_bytes());
        let to = super::super::path::join(&root, b"old.csv");
        ch.forget_posix_rename();
        rename_replace(&mut ch, &from, &to).expect("replace");
        assert_eq!(
            std::fs::read(dir.path().join("old.csv")).expect("read"),
            b"x"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 2, "no aside copy left: {left:?}");
        // A missing source never costs the target.
        let err = rename_replace(&mut ch, &from, &to).expect_err("no source");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("untouched"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("old.csv")).expect("read"),
            b"x"
        );
    }
}
