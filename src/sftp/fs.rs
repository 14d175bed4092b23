//! File-system operations on one SFTP channel: stat, listings, folders,
//! removal, and the renames that never lose a file.
//!
//! Each function takes the channel it runs on, so that a transfer holding
//! a channel uses the same code as [`SftpSession`](super::SftpSession)'s
//! one-call operations.

use std::collections::VecDeque;
use std::sync::Arc;

use log::{debug, warn};

use super::channel::{status_code, SftpChannel};
use super::metadata::{DirEntry, Metadata};
use super::path::{check_name, parent, shown, trim_end_slashes, Checked};
use super::pool::Pool;
use super::proto::{kind, status, Attrs};
use crate::{ErrorKind, Result};

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
fn anything_at(ch: &mut SftpChannel, path: &[u8]) -> Result<bool> {
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

/// Makes `link` a hard link to `target` (`hardlink@openssh.com`).
pub(crate) fn hard_link(ch: &mut SftpChannel, target: &[u8], link: &[u8]) -> Result<()> {
    if !ch.extensions().hardlink {
        return Err(ch.error(
            ErrorKind::Unsupported,
            "hard_link",
            link,
            "the server does not offer hardlink@openssh.com",
        ));
    }
    let id = ch.send_extended(b"hardlink@openssh.com", |e| e.str(target).str(link));
    ch.status_of(id, "hard_link", link)
}

/// Opens the folder `path` for listing.
fn opendir(ch: &mut SftpChannel, path: &[u8]) -> Result<Vec<u8>> {
    let id = ch.send_str(kind::OPENDIR, path);
    ch.handle_of(id, "read_dir", path)
}

/// One READDIR: the next entries (checked names only), or `None` at the
/// end.
fn readdir(ch: &mut SftpChannel, handle: &[u8], dir: &[u8]) -> Result<Option<Vec<DirEntry>>> {
    let id = ch.send_str(kind::READDIR, handle);
    let Some(names) = ch.names_of(id, "read_dir", dir)? else {
        return Ok(None);
    };
    let target = ch.target().to_string();
    Ok(Some(
        names
            .into_iter()
            .filter_map(|n| match check_name(&n.filename, dir, &target) {
                Checked::Name(name) => Some(DirEntry::new(dir, name, n.attrs)),
                Checked::Dots | Checked::Suspect => None,
            })
            .collect(),
    ))
}

/// Lists `dir` on `ch`, at most [`MAX_LISTING`] entries.
pub(crate) fn read_dir(ch: &mut SftpChannel, dir: &[u8]) -> Result<Vec<DirEntry>> {
    let handle = opendir(ch, dir)?;
    let mut entries = Vec::new();
    let listed = loop {
        match readdir(ch, &handle, dir) {
            Ok(Some(batch)) => {
                entries.extend(batch);
                if entries.len() > MAX_LISTING {
                    break Err(ch.error(
                        ErrorKind::LimitExceeded,
                        "read_dir",
                        dir,
                        format!(
                            "more than {MAX_LISTING} entries: use SftpSession::read_dir_iter, \
                             which holds one batch at a time"
                        ),
                    ));
                }
            }
            Ok(None) => break Ok(entries),
            Err(e) => break Err(e),
        }
    };
    if !ch.is_broken() {
        ch.close_quietly(&handle, dir);
    }
    listed
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
