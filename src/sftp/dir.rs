//! Glob patterns, filtered listings and recursive transfers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::batch::{download_wave, fits_wave, upload_wave, WAVE};
use super::parallel::Workers;
use super::transfer::{download_file, upload_file};
use super::{file_name, join, parent, DirEntry, FileType, SftpSession, Shared, TransferOptions};
use crate::{Error, ErrorKind, Result};

/// One job of a folder transfer.
enum Work<T> {
    /// Small files that move together.
    Wave(Vec<T>),
    /// A file that moves alone.
    One(T),
}

/// A shell-style pattern for file names: `*` (any run of characters), `?`
/// (one character), `[abc]`, `[a-z]`, `[!abc]` (one of, or none of, a set),
/// and `\` to take the next character literally. It matches a whole name,
/// never across `/`.
///
/// ```
/// use etl_ssh::Glob;
///
/// let csv = Glob::new("orders_*.csv")?;
/// assert!(csv.matches("orders_2026-11.csv"));
/// assert!(!csv.matches("orders_2026-11.csv.part"));
/// # Ok::<(), etl_ssh::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses `pattern`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for an unclosed `[` or a trailing `\`.
    pub fn new(pattern: impl Into<String>) -> Result<Glob> {
        let pattern = pattern.into();
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '\\' => match chars.next() {
                    Some(c) => tokens.push(Token::Char(c)),
                    None => return Err(Error::invalid("glob pattern", "ends with a lone '\\'")),
                },
                '[' => {
                    let negated = matches!(chars.peek(), Some('!') | Some('^'));
                    if negated {
                        chars.next();
                    }
                    let mut items = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(c) = chars.next() else {
                            return Err(Error::invalid(
                                "glob pattern",
                                format!("unclosed '[' in {pattern:?}"),
                            ));
                        };
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            chars.next().unwrap_or('\\')
                        } else {
                            c
                        };
                        let mut lookahead = chars.clone();
                        if lookahead.next() == Some('-')
                            && lookahead.peek().is_some_and(|&n| n != ']')
                        {
                            chars.next();
                            let hi = chars.next().unwrap_or(lo);
                            items.push((lo, hi));
                        } else {
                            items.push((lo, lo));
                        }
                    }
                    tokens.push(Token::Set { negated, items });
                }
                c => tokens.push(Token::Char(c)),
            }
        }
        Ok(Glob { pattern, tokens })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Iterative matcher with backtracking to the last star: linear
        // space, no recursion.
        let (mut t, mut n) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(tok) if tok_matches(tok, name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            }
        }
        self.tokens[t..].iter().all(|tok| *tok == Token::Star)
    }
}

fn tok_matches(tok: &Token, c: char) -> bool {
    match tok {
        Token::Char(x) => *x == c,
        Token::Any => true,
        Token::Star => false,
        Token::Set { negated, items } => {
            items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

impl SftpSession {
    /// Lists the entries of one folder whose names match a pattern:
    /// `sftp.glob("/outbox/*.csv")`. Wildcards are allowed in the last
    /// component only (see [`Glob`]); the folder part is taken literally.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a malformed pattern; otherwise as for
    /// [`read_dir`](Self::read_dir) on the folder.
    pub fn glob(&self, pattern: impl AsRef<str>) -> Result<Vec<DirEntry>> {
        let pattern = pattern.as_ref();
        let (dir, name) = match pattern.rfind('/') {
            Some(_) => (parent(pattern), file_name(pattern)),
            None => (".", pattern),
        };
        let glob = Glob::new(name)?;
        let mut entries = self.read_dir(dir)?;
        entries.retain(|e| glob.matches(e.name()));
        Ok(entries)
    }

    /// Uploads the local folder `local` to `remote`, recursively: folders
    /// (empty ones too) are created with
    /// [`create_dir_all`](Self::create_dir_all), each file is uploaded with
    /// `options` (atomic by default). With [`TransferOptions::filter`], only
    /// files whose names match are sent; folders are always walked.
    /// Symlinks are followed; other special files are skipped. Returns the
    /// total bytes sent. The progress callback reports per file.
    ///
    /// # Errors
    ///
    /// Stops at the first failure, naming the file: those of
    /// [`upload`](Self::upload) and [`create_dir_all`](Self::create_dir_all),
    /// and [`ErrorKind::Io`] for a local folder that cannot be read.
    pub fn upload_dir(
        &self,
        local: impl AsRef<Path>,
        remote: impl AsRef<str>,
        options: &TransferOptions,
    ) -> Result<u64> {
        let remote = remote.as_ref().trim_end_matches('/');
        let remote = if remote.is_empty() { "/" } else { remote };
        self.create_dir_all(remote)?;
        // Folders first, on this session; then the files, spread over the
        // sessions (each one atomic on its own).
        let mut files = Vec::new();
        self.upload_tree(local.as_ref(), remote, options, &mut files)?;
        self.spread(files, options, |shared, work, options| match work {
            Work::Wave(files) => shared.with_wire(|w| upload_wave(w, &files, options)),
            Work::One((local, remote)) => upload_file(shared, &local, &remote, options),
        })
    }

    /// Creates the remote folders under `remote` and lists the files to
    /// upload into `files`.
    fn upload_tree(
        &self,
        local: &Path,
        remote: &str,
        options: &TransferOptions,
        files: &mut Vec<((PathBuf, String), u64)>,
    ) -> Result<()> {
        let read = fs::read_dir(local)
            .map_err(|e| Error::io(format!("cannot list {}", local.display()), e))?;
        for entry in read {
            let entry =
                entry.map_err(|e| Error::io(format!("cannot list {}", local.display()), e))?;
            let path = entry.path();
            let meta = fs::metadata(&path)
                .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = join(remote, &name);
            if meta.is_dir() {
                match self.create_dir(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                self.upload_tree(&path, &target, options, files)?;
            } else if meta.is_file() && options.filter.as_ref().is_none_or(|g| g.matches(&name)) {
                files.push(((path, target), meta.len()));
            }
        }
        Ok(())
    }

    /// Runs `job` over `files` (each with its size) on as many sessions
    /// as [`TransferOptions::sessions`] allows for that many files: small
    /// files in waves of up to [`WAVE`] (`batch.rs`), bigger ones alone,
    /// biggest first; each file moves on one session, with `options` less
    /// segmenting. Returns the bytes the jobs moved.
    fn spread<T: Send + Clone>(
        &self,
        mut files: Vec<(T, u64)>,
        options: &TransferOptions,
        job: impl Fn(&Shared, Work<T>, &TransferOptions) -> Result<u64> + Sync,
    ) -> Result<u64> {
        let per_file = options.clone().sessions(1);
        let workers = Workers::open(&self.shared, options.sessions_for_files(files.len()));
        files.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
        let (small, big): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|(_, size)| fits_wave(*size, options));
        let small: Vec<T> = small.into_iter().map(|(f, _)| f).collect();
        let work: Vec<Work<T>> = big
            .into_iter()
            .map(|(f, _)| Work::One(f))
            .chain(small.chunks(WAVE).map(|c| Work::Wave(c.to_vec())))
            .collect();
        let bytes = AtomicU64::new(0);
        workers.run(&self.shared, work, |shared, work| {
            bytes.fetch_add(job(shared, work, &per_file)?, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(bytes.into_inner())
    }

    /// Downloads the remote folder `remote` into the local folder `local`,
    /// recursively: folders (empty ones too) are created, each file is
    /// downloaded with `options` (atomic by default). With
    /// [`TransferOptions::filter`], only files whose names match are
    /// fetched; folders are always walked. Remote symlinks and special
    /// files are skipped. Returns the total bytes received.
    ///
    /// # Errors
    ///
    /// Stops at the first failure, naming the file: those of
    /// [`download`](Self::download) and [`read_dir`](Self::read_dir), and
    /// [`ErrorKind::Io`] for a local folder that cannot be created.
    pub fn download_dir(
        &self,
        remote: impl AsRef<str>,
        local: impl AsRef<Path>,
        options: &TransferOptions,
    ) -> Result<u64> {
        let local = local.as_ref();
        fs::create_dir_all(local)
            .map_err(|e| Error::io(format!("cannot create {}", local.display()), e))?;
        // Folders first, on this session; then the files, spread over the
        // sessions (each one atomic on its own).
        let mut files = Vec::new();
        self.download_tree(remote.as_ref(), local, options, &mut files)?;
        self.spread(files, options, |shared, work, options| match work {
            Work::Wave(files) => {
                let mut bigger = Vec::new();
                let mut bytes =
                    shared.with_wire(|w| download_wave(w, &files, options, &mut bigger))?;
                for (remote, local) in bigger {
                    bytes += download_file(shared, &remote, &local, options)?;
                }
                Ok(bytes)
            }
            Work::One((remote, local)) => download_file(shared, &remote, &local, options),
        })
    }

    /// Creates the local folders under `local` and lists the files to
    /// download into `files`.
    fn download_tree(
        &self,
        remote: &str,
        local: &Path,
        options: &TransferOptions,
        files: &mut Vec<((String, PathBuf), u64)>,
    ) -> Result<()> {
        for entry in self.read_dir(remote)? {
            let target = local.join(entry.name());
            match entry.file_type() {
                FileType::Dir => {
                    match fs::create_dir(&target) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            return Err(Error::io(format!("cannot create {}", target.display()), e))
                        }
                    }
                    self.download_tree(entry.path(), &target, options, files)?;
                }
                FileType::File
                    if options
                        .filter
                        .as_ref()
                        .is_none_or(|g| g.matches(entry.name())) =>
                {
                    files.push(((entry.path().to_string(), target), entry.len()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).expect("pattern").matches(n)
    }

    #[test]
    fn glob_basics() {
        assert!(m("*.csv", "a.csv"));
        assert!(m("*.csv", ".csv"));
        assert!(!m("*.csv", "a.csv.part"));
        assert!(!m("*.csv", "a.tsv"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", ""));
        assert!(m("**x*", "abxcd"));
        assert!(m("[ab]*", "bz"));
        assert!(!m("[!ab]*", "bz"));
        assert!(m("[a-c]1", "b1"));
        assert!(m("[a-]", "-"));
        assert!(m("[]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("é*ß", "éxyzß"));
        assert!(m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn glob_rejects_malformed() {
        assert_eq!(
            Glob::new("[abc").expect_err("unclosed").kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Glob::new("abc\\").expect_err("trailing").kind(),
            ErrorKind::InvalidInput
        );
    }
}
