//! Remote paths as bytes, and the one check that a name from the server
//! is a name and not a path.
//!
//! SFTP v3 paths are byte strings: a Windows partner's Latin-1 `café.csv`
//! arrives as `caf\xe9.csv`, which is not UTF-8. Every operation takes
//! `impl AsRef<[u8]>` (a `&str`, a `String`, bytes, a [`RemotePath`]) and
//! sends exactly those bytes; nothing is changed on the way.

use std::borrow::Cow;
use std::fmt;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use log::warn;

/// A path on the partner's server: exact bytes, shown as UTF-8 where it is
/// and escaped where it is not.
///
/// Every [`SftpSession`](crate::SftpSession) operation takes one (it is
/// `AsRef<[u8]>`), as it takes a `&str`. [`DirEntry::path`](crate::DirEntry::path)
/// hands one out, so a file whose name is not UTF-8 can still be
/// downloaded, renamed or removed.
///
/// ```
/// use etl_ssh::RemotePath;
///
/// let p = RemotePath::from("/outbox").join(b"caf\xe9.csv");
/// assert_eq!(p.as_bytes(), b"/outbox/caf\xe9.csv");
/// assert_eq!(p.to_string(), "/outbox/caf\\xe9.csv");
/// assert_eq!(p.file_name(), b"caf\xe9.csv");
/// assert_eq!(p.to_str(), None);
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RemotePath {
    bytes: Vec<u8>,
}

impl RemotePath {
    /// A path of these exact bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> RemotePath {
        RemotePath {
            bytes: bytes.into(),
        }
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The path as UTF-8, when it is.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// The path as UTF-8, with U+FFFD for bytes that are not.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// This path, `/`, and `name` (no doubled `/`; `.` and the empty path
    /// give `name` alone).
    pub fn join(&self, name: impl AsRef<[u8]>) -> RemotePath {
        RemotePath::new(join(&self.bytes, name.as_ref()))
    }

    /// The folder part (`.` for a bare name, `/` for a file in the root).
    pub fn parent(&self) -> RemotePath {
        RemotePath::new(parent(&self.bytes))
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        file_name(&self.bytes)
    }

    /// Takes the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl AsRef<[u8]> for RemotePath {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl From<&str> for RemotePath {
    fn from(s: &str) -> Self {
        RemotePath::new(s)
    }
}

impl From<String> for RemotePath {
    fn from(s: String) -> Self {
        RemotePath::new(s)
    }
}

impl From<&[u8]> for RemotePath {
    fn from(s: &[u8]) -> Self {
        RemotePath::new(s)
    }
}

impl From<Vec<u8>> for RemotePath {
    fn from(s: Vec<u8>) -> Self {
        RemotePath::new(s)
    }
}

impl fmt::Display for RemotePath {
    /// UTF-8 as it is; other bytes and control characters as `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.bytes))
    }
}

impl fmt::Debug for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemotePath(\"{}\")", escape_bytes(&self.bytes))
    }
}

impl PartialEq<str> for RemotePath {
    fn eq(&self, other: &str) -> bool {
        self.bytes == other.as_bytes()
    }
}

impl PartialEq<String> for RemotePath {
    fn eq(&self, other: &String) -> bool {
        self.bytes == other.as_bytes()
    }
}

impl PartialEq<String> for &RemotePath {
    fn eq(&self, other: &String) -> bool {
        self.bytes == other.as_bytes()
    }
}

impl PartialEq<&str> for RemotePath {
    fn eq(&self, other: &&str) -> bool {
        self.bytes == other.as_bytes()
    }
}

/// `bytes` for messages and logs: valid UTF-8 as it is, other bytes and
/// control characters (a name could carry a terminal escape) as `\xNN`,
/// `\n`, `\r`, `\t`.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A path for an error message (see [`escape_bytes`]).
pub(crate) fn shown(path: &[u8]) -> String {
    escape_bytes(path)
}

/// `dir` + `/` + `name`, without doubling a trailing slash.
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() || dir == b"." {
        return name.to_vec();
    }
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The parent folder of a remote path (`.` for a bare name).
pub(crate) fn parent(path: &[u8]) -> Vec<u8> {
    let trimmed = trim_end_slashes(path);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/".to_vec(),
        Some(i) => trimmed[..i].to_vec(),
        None if path.starts_with(b"/") => b"/".to_vec(),
        None => b".".to_vec(),
    }
}

/// The last component of a remote path.
pub(crate) fn file_name(path: &[u8]) -> &[u8] {
    let trimmed = trim_end_slashes(path);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// `path` without trailing slashes (`/` stays `/`).
pub(crate) fn trim_end_slashes(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

/// The longest file name most file systems take (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// `pattern` with `{name}` replaced by `name`, at most [`NAME_MAX`] bytes:
/// a name too long for that keeps its start and gets a hash of the whole.
pub(crate) fn bounded_name(name: &[u8], pattern: &str) -> Vec<u8> {
    let (head, tail) = match pattern.split_once("{name}") {
        Some((h, t)) => (h.as_bytes(), t.as_bytes()),
        None => (pattern.as_bytes(), &b""[..]),
    };
    let with = |n: &[u8]| [head, n, tail].concat();
    let full = with(name);
    if full.len() <= NAME_MAX || !pattern.contains("{name}") {
        return full;
    }
    let hash = short_hash(name);
    let room = NAME_MAX.saturating_sub(head.len() + tail.len() + hash.len() + 1);
    let mut cut = room.min(name.len());
    // Keep UTF-8 names UTF-8: cut at a character boundary.
    if std::str::from_utf8(name).is_ok() {
        while cut > 0 && std::str::from_utf8(&name[..cut]).is_err() {
            cut -= 1;
        }
    }
    let mut short = name[..cut].to_vec();
    short.push(b'~');
    short.extend_from_slice(hash.as_bytes());
    with(&short)
}

pub(crate) fn short_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A string unique to this process and call: pid, time and a counter.
pub(crate) fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:08x}-{n}", std::process::id())
}

/// The name a rename gives a replaced file while ours moves in.
pub(crate) const ASIDE_NAME: &str = ".{name}.{unique}.old";

/// Whether `token` is a `{unique}` part this crate makes: [`unique`]'s
/// `PID-NANOS-COUNTER`, or a resumable transfer's `resume-HASH`.
pub(crate) fn is_unique_token(token: &[u8]) -> bool {
    let hex = |b: &[u8], n: usize| b.len() == n && b.iter().all(|c| c.is_ascii_hexdigit());
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    if let Some(hash) = token.strip_prefix(b"resume-") {
        return hex(hash, 12);
    }
    let parts: Vec<&[u8]> = token.split(|&b| b == b'-').collect();
    matches!(parts.as_slice(), [pid, nanos, n] if digits(pid) && nanos.len() >= 8 && hex(nanos, nanos.len()) && digits(n))
}

/// Whether `name` is what `pattern` (with `{name}` and `{unique}`) makes
/// of some non-empty name and one of our `{unique}` tokens.
pub(crate) fn matches_temp_pattern(name: &[u8], pattern: &str) -> bool {
    // The pattern's literal parts and the order of its two fields.
    let (name_at, unique_at) = match (pattern.find("{name}"), pattern.find("{unique}")) {
        (Some(n), Some(u)) => (n, u),
        _ => return false,
    };
    let (first, first_len, second_len) = if name_at < unique_at {
        (name_at, 6, 8)
    } else {
        (unique_at, 8, 6)
    };
    let second = first.max(name_at.max(unique_at));
    let bytes = pattern.as_bytes();
    let head = &bytes[..first];
    let middle = &bytes[first + first_len..second];
    let tail = &bytes[second + second_len..];
    let Some(rest) = name.strip_prefix(head).and_then(|r| r.strip_suffix(tail)) else {
        return false;
    };
    // Every place the middle text could split the two fields.
    (0..=rest.len().saturating_sub(middle.len())).any(|at| {
        rest[at..].starts_with(middle) && {
            let (a, b) = (&rest[..at], &rest[at + middle.len()..]);
            let (field_name, token) = if name_at < unique_at { (a, b) } else { (b, a) };
            !field_name.is_empty() && is_unique_token(token)
        }
    })
}

/// What a name in a listing turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Checked<'a> {
    /// One component: use it.
    Name(&'a [u8]),
    /// `.` or `..`: every listing has them; skip quietly.
    Dots,
    /// Not one component (empty, with `/`, `\` or NUL): skipped with a
    /// warning, never joined onto a path.
    Suspect,
}

/// The one check of a name the server sent in a listing of `dir`: a
/// server may send `../../etc` or `/root/.ssh` as a "name" (OpenSSH's
/// client refuses names with `/` as "suspect"). Logs a warning naming
/// what was skipped.
pub(crate) fn check_name<'a>(name: &'a [u8], dir: &[u8], target: &str) -> Checked<'a> {
    match name {
        b"." | b".." => Checked::Dots,
        _ if name.is_empty() || name.iter().any(|&b| matches!(b, b'/' | b'\\' | 0)) => {
            warn!(
                "{target}: the server sent the suspect name \"{}\" in the listing of {}; \
                 skipped (a name must be one path component)",
                escape_bytes(name),
                shown(dir)
            );
            Checked::Suspect
        }
        _ => Checked::Name(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_join() {
        assert_eq!(parent(b"/inbox/a.csv"), b"/inbox");
        assert_eq!(parent(b"/a.csv"), b"/");
        assert_eq!(parent(b"/"), b"/");
        assert_eq!(parent(b"a.csv"), b".");
        assert_eq!(parent(b"in/a.csv/"), b"in");
        assert_eq!(file_name(b"/inbox/a.csv"), b"a.csv");
        assert_eq!(file_name(b"a.csv"), b"a.csv");
        assert_eq!(file_name(b"/inbox/"), b"inbox");
        assert_eq!(join(b"/inbox/", b"a"), b"/inbox/a");
        assert_eq!(join(b"/inbox", b"a"), b"/inbox/a");
        assert_eq!(join(b".", b"a"), b"a");
        assert_eq!(join(b"", b"a"), b"a");
    }

    #[test]
    fn names_are_one_component_or_skipped() {
        assert_eq!(check_name(b"a.csv", b"/d", "h:22"), Checked::Name(b"a.csv"));
        assert_eq!(
            check_name(b"caf\xe9", b"/d", "h:22"),
            Checked::Name(b"caf\xe9")
        );
        assert_eq!(check_name(b".", b"/d", "h:22"), Checked::Dots);
        assert_eq!(check_name(b"..", b"/d", "h:22"), Checked::Dots);
        for bad in [
            &b""[..],
            b"/",
            b"/etc",
            b"x/../..",
            b"/root/.ssh/..",
            b"..\\..\\x",
            b"a\0b",
        ] {
            assert_eq!(check_name(bad, b"/d", "h:22"), Checked::Suspect, "{bad:?}");
        }
    }

    #[test]
    fn our_temporary_names_are_recognised_and_no_others() {
        let pattern = ".{name}.{unique}.part";
        let made = bounded_name(b"orders.csv", &pattern.replace("{unique}", &unique()));
        assert!(matches_temp_pattern(&made, pattern), "{made:?}");
        assert!(matches_temp_pattern(
            b".a.b.c.resume-0123456789ab.part",
            pattern
        ));
        for other in [
            &b"orders.csv"[..],
            b".orders.csv.part",
            b".orders.csv.123.part",
            b".orders.csv.1-2-3.part",
            b"..123-0000000a-1.part",
            b".x.resume-0123.part",
        ] {
            assert!(!matches_temp_pattern(other, pattern), "{other:?}");
        }
        let before = "{unique}_{name}.tmp";
        assert!(matches_temp_pattern(b"7-0abcdef1-0_x.csv.tmp", before));
        assert!(!matches_temp_pattern(b"x.csv.tmp", before));
    }

    #[test]
    fn escaping_shows_what_is_there() {
        assert_eq!(escape_bytes(b"plain.csv"), "plain.csv");
        assert_eq!(escape_bytes("café".as_bytes()), "café");
        assert_eq!(escape_bytes(b"caf\xe9"), "caf\\xe9");
        assert_eq!(escape_bytes(b"a\x1b[31mred"), "a\\x1b[31mred");
        assert_eq!(escape_bytes(b"line\nbreak\\"), "line\\nbreak\\\\");
    }
}
