//! Streaming handles: [`SftpReader`] (`Read + BufRead + Seek`) and
//! [`SftpWriter`] (`Write`), both buffered with megabyte buffers.

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use ssh2::OpenFlags;

use super::{sftp_error, sftp_io_error, Metadata, SftpSession, Shared, DEFAULT_BUFFER_SIZE};
use crate::Result;

/// An open remote file; every libssh2 call happens under the session's
/// operation lock, and so does the close on drop.
struct Handle {
    file: Option<ssh2::File>,
    shared: Arc<Shared>,
    path: String,
}

impl Handle {
    fn file(&mut self) -> io::Result<&mut ssh2::File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the remote file is closed"))
    }

    fn close(&mut self) -> Result<()> {
        let _g = self.shared.inner.lock();
        match self.file.take() {
            Some(mut f) => f.close().map_err(|e| sftp_error("close", &self.path, e)),
            None => Ok(()),
        }
    }

    fn metadata(&mut self) -> Result<Metadata> {
        let shared = Arc::clone(&self.shared);
        let _g = shared.inner.lock();
        let path = self.path.clone();
        let file = self
            .file()
            .map_err(|e| sftp_io_error("metadata", &path, e, None))?;
        file.stat()
            .map(Metadata::from)
            .map_err(|e| sftp_error("metadata", &path, e))
    }
}

impl Read for Handle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let shared = Arc::clone(&self.shared);
        let _g = shared.inner.lock();
        shared.inner.keepalive_tick();
        match self.file()?.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => Err(sftp_io_error("read", &self.path, e, Some(&shared.inner.ssh)).into()),
        }
    }
}

impl Write for Handle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shared = Arc::clone(&self.shared);
        let _g = shared.inner.lock();
        shared.inner.keepalive_tick();
        match self.file()?.write(buf) {
            Ok(n) => Ok(n),
            Err(e) => Err(sftp_io_error("write", &self.path, e, Some(&shared.inner.ssh)).into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Handle {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let shared = Arc::clone(&self.shared);
        let _g = shared.inner.lock();
        match self.file()?.seek(pos) {
            Ok(n) => Ok(n),
            Err(e) => Err(sftp_io_error("seek", &self.path, e, Some(&shared.inner.ssh)).into()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let _g = self.shared.inner.lock();
            self.shared.inner.cleanup(|| drop(file));
        }
    }
}

/// A remote file open for reading: [`Read`], [`BufRead`] and [`Seek`],
/// with a buffer of about 1 MiB so that `std::io::copy` out of it runs at
/// full speed. Made by [`SftpSession::open`].
///
/// Keeps the connection open while it lives. `SftpReader` is `Send` and
/// `Sync`. I/O errors convert from this crate's [`Error`](crate::Error),
/// so `io::Error::get_ref` downcasts to it (with the path and kind).
pub struct SftpReader {
    inner: BufReader<Handle>,
}

impl fmt::Debug for SftpReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpReader")
            .field("path", &self.inner.get_ref().path)
            .finish_non_exhaustive()
    }
}

impl SftpReader {
    /// The remote path.
    pub fn path(&self) -> &str {
        &self.inner.get_ref().path
    }

    /// Metadata of the open file (`fstat`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn metadata(&mut self) -> Result<Metadata> {
        self.inner.get_mut().metadata()
    }
}

impl Read for SftpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl BufRead for SftpReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}

impl Seek for SftpReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// A remote file open for writing: [`Write`], buffered with about 1 MiB.
/// Made by [`SftpSession::create`] and [`SftpSession::append`].
///
/// Writes go straight to the target name (not atomic: use
/// [`SftpSession::upload`] for that). Call [`close`](Self::close) to learn
/// whether the last buffered bytes arrived; dropping flushes and closes on
/// a best-effort basis and cannot report errors.
///
/// Keeps the connection open while it lives. `SftpWriter` is `Send` and
/// `Sync`.
pub struct SftpWriter {
    inner: Option<BufWriter<Handle>>,
}

impl fmt::Debug for SftpWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpWriter")
            .field(
                "path",
                &self.inner.as_ref().map(|w| w.get_ref().path.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl SftpWriter {
    fn writer(&mut self) -> io::Result<&mut BufWriter<Handle>> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("the remote file is closed"))
    }

    /// Flushes the buffer and asks the server to flush the file to its disk
    /// (`fsync@openssh.com`; does nothing more when the server does not
    /// offer it).
    ///
    /// # Errors
    ///
    /// Those of a write: [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout),
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied), ...
    pub fn sync_all(&mut self) -> Result<()> {
        let w = self.inner.as_mut().ok_or_else(|| {
            super::sftp_failure(crate::ErrorKind::InvalidInput, "fsync", "", "closed")
        })?;
        let path = w.get_ref().path.clone();
        w.flush()
            .map_err(|e| sftp_io_error("write", &path, e, None))?;
        let handle = w.get_mut();
        let shared = Arc::clone(&handle.shared);
        let _g = shared.inner.lock();
        match handle.file.as_mut() {
            Some(f) => shared.fsync(f, &path).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Writes out the buffer and closes the file, reporting any error.
    ///
    /// # Errors
    ///
    /// Those of a write: [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout),
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied),
    /// a full disk ([`ErrorKind::Other`](crate::ErrorKind::Other)).
    pub fn close(mut self) -> Result<()> {
        let Some(w) = self.inner.take() else {
            return Ok(());
        };
        let path = w.get_ref().path.clone();
        let mut handle = w
            .into_inner()
            .map_err(|e| sftp_io_error("write", &path, e.into_error(), None))?;
        handle.close()
    }
}

impl Write for SftpWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl SftpSession {
    fn open_handle(&self, path: &str, flags: OpenFlags, op: &'static str) -> Result<Handle> {
        let file = {
            let _g = self.shared.inner.lock();
            self.shared
                .sftp()?
                .open_mode(Path::new(path), flags, 0o644, ssh2::OpenType::File)
                .map_err(|e| sftp_error(op, path, e))?
        };
        Ok(Handle {
            file: Some(file),
            shared: Arc::clone(&self.shared),
            path: path.to_string(),
        })
    }

    /// Opens `path` for reading. The reader is buffered (about 1 MiB) and
    /// seekable; `std::io::copy` out of it is fast.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let sftp: etl_ssh::SftpSession = todo!();
    /// let mut reader = sftp.open("/outbox/big.csv")?;
    /// let mut out = std::fs::File::create("big.csv")?;
    /// std::io::copy(&mut reader, &mut out)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound),
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied),
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn open(&self, path: impl AsRef<str>) -> Result<SftpReader> {
        let handle = self.open_handle(path.as_ref(), OpenFlags::READ, "open")?;
        Ok(SftpReader {
            inner: BufReader::with_capacity(DEFAULT_BUFFER_SIZE, handle),
        })
    }

    /// Creates `path` (or truncates it) for writing, mode `0o644` less the
    /// server's umask. Not atomic: readers may see a partial file; use
    /// [`upload`](Self::upload) for files a partner picks up.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the folder
    /// is missing, [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied),
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn create(&self, path: impl AsRef<str>) -> Result<SftpWriter> {
        let handle = self.open_handle(
            path.as_ref(),
            OpenFlags::WRITE | OpenFlags::TRUNCATE,
            "create",
        )?;
        Ok(SftpWriter {
            inner: Some(BufWriter::with_capacity(DEFAULT_BUFFER_SIZE, handle)),
        })
    }

    /// Opens `path` for writing at its end, creating it if missing.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create).
    pub fn append(&self, path: impl AsRef<str>) -> Result<SftpWriter> {
        let path = path.as_ref();
        let mut handle = self.open_handle(
            path,
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE,
            "append",
        )?;
        // Servers that ignore the append flag write at the offset we send:
        // start at the current end.
        let len = handle.metadata()?.len();
        handle
            .seek(SeekFrom::Start(len))
            .map_err(|e| sftp_io_error("append", path, e, None))?;
        Ok(SftpWriter {
            inner: Some(BufWriter::with_capacity(DEFAULT_BUFFER_SIZE, handle)),
        })
    }
}
