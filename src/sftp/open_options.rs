//! [`OpenOptions`]: how [`SftpSession::open_with`](super::SftpSession::open_with)
//! opens a remote file, in the manner of [`std::fs::OpenOptions`], and the
//! one table from those options to SFTP's open flags.

use super::proto::{open as flags, Attrs};

/// How to open a remote file, as [`std::fs::OpenOptions`]: start from
/// [`new`](Self::new) (nothing set), choose what to do, and open with
/// [`SftpSession::open_with`](crate::SftpSession::open_with), which
/// returns an [`SftpFile`](crate::SftpFile).
///
/// The options are SFTP's own open flags (`READ`, `WRITE`, `APPEND`,
/// `CREAT`, `TRUNC`, `EXCL`), checked as std checks them: a combination std
/// refuses is refused with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
/// naming the option, before anything is sent.
///
/// [`SftpSession::open`](crate::SftpSession::open) is `read(true)`;
/// [`create`](crate::SftpSession::create) is
/// `write(true).create(true).truncate(true)`;
/// [`append`](crate::SftpSession::append) is `append(true).create(true)`.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let sftp: etl_ssh::SftpSession = todo!();
/// use std::io::Write;
/// use etl_ssh::{ErrorKind, OpenOptions};
///
/// // A lock file: only one job may make it.
/// let options = OpenOptions::new().write(true).create_new(true).mode(0o600);
/// match sftp.open_with("/inbox/.lock", &options) {
///     Ok(mut file) => {
///         writeln!(file, "job 42")?;
///         file.close()?;
///     }
///     Err(e) if e.kind() == ErrorKind::AlreadyExists => println!("another job runs"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(())
/// # }
/// ```
///
/// Setters take `self` and return it, as every builder of this crate does
/// (std's take `&mut self`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    create: bool,
    create_new: bool,
    truncate: bool,
    mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Nothing set (opening with only this is refused, as std refuses it);
    /// the creation mode is `0o644`.
    pub fn new() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            create: false,
            create_new: false,
            truncate: false,
            mode: 0o644,
        }
    }

    /// Open for reading. Defaults to `false`.
    pub fn read(mut self, on: bool) -> Self {
        self.read = on;
        self
    }

    /// Open for writing. Defaults to `false`.
    pub fn write(mut self, on: bool) -> Self {
        self.write = on;
        self
    }

    /// Open for writing at the end of the file (implies
    /// [`write`](Self::write)): every write goes to the end, where the
    /// server honours SFTP's append flag; for servers that do not, the
    /// file starts at the size it had when opened. Defaults to `false`.
    pub fn append(mut self, on: bool) -> Self {
        self.append = on;
        self
    }

    /// Create the file if it is missing (needs `write` or `append`).
    /// Defaults to `false`.
    pub fn create(mut self, on: bool) -> Self {
        self.create = on;
        self
    }

    /// Create the file, failing with
    /// [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) if
    /// anything is there already (SFTP's `EXCL`, needs `write` or
    /// `append`); `create` and `truncate` are then ignored, as std ignores
    /// them. Defaults to `false`.
    ///
    /// OpenSSH creates the file with `O_EXCL`: no other client can make it
    /// in between. An SFTP v3 server reports an existing file as a plain
    /// failure; it is told apart here and reported as `AlreadyExists`.
    pub fn create_new(mut self, on: bool) -> Self {
        self.create_new = on;
        self
    }

    /// Cut an existing file to length 0 when opening it (needs `write`,
    /// and not `append`). Defaults to `false`.
    pub fn truncate(mut self, on: bool) -> Self {
        self.truncate = on;
        self
    }

    /// The permission bits of a file this creates, less the server's
    /// umask (sent as the open request's attributes; an existing file
    /// keeps its own). Defaults to `0o644`.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o7777;
        self
    }

    /// Whether the file is opened for reading.
    pub(crate) fn reads(&self) -> bool {
        self.read
    }

    /// Whether the file is opened for writing (`write` or `append`).
    pub(crate) fn writes(&self) -> bool {
        self.write || self.append
    }

    /// Whether writes go to the end.
    pub(crate) fn appends(&self) -> bool {
        self.append
    }

    /// Whether opening creates the file when it is missing.
    pub(crate) fn creates(&self) -> bool {
        self.create || self.create_new
    }

    /// Whether opening fails on an existing file.
    pub(crate) fn exclusive(&self) -> bool {
        self.create_new
    }

    /// SFTP's open flags and the attributes to send with them, or why std
    /// would refuse the combination (the words name the options).
    pub(crate) fn sftp_flags(&self) -> Result<(u32, Attrs), &'static str> {
        if !self.read && !self.writes() {
            return Err("OpenOptions sets none of read, write and append: nothing to open for");
        }
        if !self.writes() && (self.truncate || self.create || self.create_new) {
            return Err(match (self.truncate, self.create_new) {
                (true, _) => "OpenOptions::truncate needs write",
                (false, true) => "OpenOptions::create_new needs write or append",
                (false, false) => "OpenOptions::create needs write or append",
            });
        }
        if self.append && self.truncate && !self.create_new {
            return Err("OpenOptions::truncate cannot go with append");
        }
        let mut pflags = 0;
        if self.read {
            pflags |= flags::READ;
        }
        if self.writes() {
            pflags |= flags::WRITE;
        }
        if self.append {
            pflags |= flags::APPEND;
        }
        if self.create_new {
            pflags |= flags::CREATE | flags::EXCLUSIVE;
        } else {
            if self.create {
                pflags |= flags::CREATE;
            }
            if self.truncate {
                pflags |= flags::TRUNCATE;
            }
        }
        let attrs = match self.creates() {
            true => Attrs::perm(self.mode),
            false => Attrs::default(),
        };
        Ok((pflags, attrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pflags(o: OpenOptions) -> Result<u32, &'static str> {
        o.sftp_flags().map(|(f, _)| f)
    }

    /// The table std's Unix `OpenOptions` follows (`get_access_mode`,
    /// `get_creation_mode`), in SFTP's flags.
    #[test]
    fn options_map_to_sftp_flags_as_std_maps_them_to_open_flags() {
        use flags::*;
        let o = OpenOptions::new;
        assert_eq!(pflags(o().read(true)), Ok(READ));
        assert_eq!(pflags(o().write(true)), Ok(WRITE));
        assert_eq!(pflags(o().read(true).write(true)), Ok(READ | WRITE));
        assert_eq!(pflags(o().append(true)), Ok(WRITE | APPEND));
        assert_eq!(
            pflags(o().read(true).append(true).create(true)),
            Ok(READ | WRITE | APPEND | CREATE)
        );
        assert_eq!(
            pflags(o().write(true).create(true).truncate(true)),
            Ok(WRITE | CREATE | TRUNCATE)
        );
        assert_eq!(
            pflags(o().write(true).create_new(true).create(true).truncate(true)),
            Ok(WRITE | CREATE | EXCLUSIVE)
        );
        assert_eq!(
            pflags(o().append(true).truncate(true).create_new(true)),
            Ok(WRITE | APPEND | CREATE | EXCLUSIVE)
        );
        for (bad, word) in [
            (o(), "none of read, write and append"),
            (o().create(true), "none of"),
            (o().read(true).truncate(true), "truncate needs write"),
            (o().read(true).create(true), "create needs write or append"),
            (o().read(true).create_new(true), "create_new needs write"),
            (
                o().append(true).truncate(true),
                "truncate cannot go with append",
            ),
        ] {
            let err = pflags(bad).expect_err("refused");
            assert!(err.contains(word), "{bad:?}: {err}");
        }
        // The mode goes out only with a flag that creates.
        let (_, attrs) = o().write(true).mode(0o100_600).sftp_flags().expect("ok");
        assert_eq!(attrs, Attrs::default());
        let (_, attrs) = o()
            .write(true)
            .create(true)
            .mode(0o600)
            .sftp_flags()
            .expect("ok");
        assert_eq!(attrs, Attrs::perm(0o600));
    }
}
