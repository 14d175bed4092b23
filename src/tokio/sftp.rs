//! [`SftpSession`] for async code, and the streaming handles as
//! [`AsyncRead`] and [`AsyncWrite`].

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::task::{spawn_blocking, JoinHandle};

use super::{blocking, wraps};
use crate::{DirEntry, Error, FsStats, Metadata, RemotePath, Result, TransferOptions};

/// How much a streaming handle moves per trip to the blocking pool.
const CHUNK: usize = 1024 * 1024;

/// SFTP for async code: the blocking [`crate::SftpSession`]'s operations
/// as `async fn`s, each run on tokio's blocking pool (see the
/// [module](super) on cancellation).
///
/// Remote paths are taken as the blocking methods take them (`&str`,
/// bytes, [`RemotePath`]) and copied for the blocking pool; so are local
/// paths and [`TransferOptions`].
///
/// ```no_run
/// use etl_ssh::TransferOptions;
///
/// # async fn job(session: etl_ssh::tokio::Session) -> Result<(), etl_ssh::Error> {
/// let sftp = session.sftp().await?;
/// for entry in sftp.read_dir("/outbox").await? {
///     let local = format!("in/{}", entry.name());
///     sftp.download(entry.path().clone(), local).await?;
/// }
/// sftp.upload_dir("out/2026-11", "/inbox/2026-11", &TransferOptions::default()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SftpSession {
    inner: crate::SftpSession,
}

wraps!(SftpSession, crate::SftpSession);

/// Methods on one remote path, each the blocking method of the same name
/// on the blocking pool.
macro_rules! path_ops {
    ($($name:ident -> $ret:ty;)*) => {$(
        #[doc = concat!("[`crate::SftpSession::", stringify!($name), "`], on the blocking pool.")]
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`crate::SftpSession::", stringify!($name), "`].")]
        pub async fn $name(&self, path: impl AsRef<[u8]>) -> Result<$ret> {
            let (sftp, path) = (self.inner.clone(), path.as_ref().to_vec());
            blocking(move || sftp.$name(path)).await
        }
    )*};
}

/// Methods on two remote paths, each the blocking method of the same name
/// on the blocking pool.
macro_rules! two_path_ops {
    ($($name:ident($a:ident, $b:ident) -> $ret:ty;)*) => {$(
        #[doc = concat!("[`crate::SftpSession::", stringify!($name), "`], on the blocking pool.")]
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`crate::SftpSession::", stringify!($name), "`].")]
        pub async fn $name(&self, $a: impl AsRef<[u8]>, $b: impl AsRef<[u8]>) -> Result<$ret> {
            let (sftp, $a, $b) = (self.inner.clone(), $a.as_ref().to_vec(), $b.as_ref().to_vec());
            blocking(move || sftp.$name($a, $b)).await
        }
    )*};
}

/// Whole small files read, at most `max` bytes, each the blocking method
/// of the same name on the blocking pool.
macro_rules! bounded_reads {
    ($($name:ident -> $ret:ty;)*) => {$(
        #[doc = concat!("[`crate::SftpSession::", stringify!($name), "`] (at most `max` bytes), on the blocking pool.")]
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`crate::SftpSession::", stringify!($name), "`].")]
        pub async fn $name(&self, path: impl AsRef<[u8]>, max: u64) -> Result<$ret> {
            let (sftp, path) = (self.inner.clone(), path.as_ref().to_vec());
            blocking(move || sftp.$name(path, max)).await
        }
    )*};
}

/// Transfers between a remote and a local path, each the blocking method
/// of the same name (with options) on the blocking pool.
macro_rules! transfers {
    ($($name:ident($($arg:ident: $kind:ident),*);)*) => {$(
        #[doc = concat!("[`crate::SftpSession::", stringify!($name), "`], on the blocking pool.")]
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`crate::SftpSession::", stringify!($name), "`].")]
        pub async fn $name(
            &self,
            $($arg: transfers!(@type $kind),)*
            options: &TransferOptions,
        ) -> Result<u64> {
            let (sftp, options) = (self.inner.clone(), options.clone());
            $(let $arg = transfers!(@own $kind $arg);)*
            blocking(move || sftp.$name($($arg,)* &options)).await
        }
    )*};
    (@type remote) => { impl AsRef<[u8]> };
    (@type local) => { impl AsRef<Path> };
    (@own remote $arg:ident) => { $arg.as_ref().to_vec() };
    (@own local $arg:ident) => { $arg.as_ref().to_path_buf() };
}

impl SftpSession {
    /// The blocking SFTP session this one wraps (the same channels).
    pub fn blocking(&self) -> &crate::SftpSession {
        &self.inner
    }

    path_ops! {
        metadata -> Metadata;
        symlink_metadata -> Metadata;
        exists -> bool;
        read_dir -> Vec<DirEntry>;
        create_dir -> ();
        create_dir_all -> ();
        remove_file -> ();
        remove_dir -> ();
        remove_dir_all -> ();
        canonicalize -> RemotePath;
        statvfs -> FsStats;
    }

    two_path_ops! {
        rename(from, to) -> ();
        copy(from, to) -> u64;
    }

    bounded_reads! {
        read -> Vec<u8>;
        read_to_string -> String;
    }

    /// [`crate::SftpSession::create_dir_with_mode`], on the blocking pool.
    ///
    /// # Errors
    ///
    /// As [`crate::SftpSession::create_dir_with_mode`].
    pub async fn create_dir_with_mode(&self, path: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        let (sftp, path) = (self.inner.clone(), path.as_ref().to_vec());
        blocking(move || sftp.create_dir_with_mode(path, mode)).await
    }

    transfers! {
        upload_with(local: local, remote: remote);
        download_with(remote: remote, local: local);
        upload_dir(local: local, remote: remote);
        download_dir(remote: remote, local: local);
    }

    /// Uploads atomically with the default options, as
    /// [`crate::SftpSession::upload`].
    ///
    /// # Errors
    ///
    /// As [`crate::SftpSession::upload`].
    pub async fn upload(&self, local: impl AsRef<Path>, remote: impl AsRef<[u8]>) -> Result<u64> {
        self.upload_with(local, remote, &TransferOptions::default())
            .await
    }

    /// Downloads atomically with the default options, as
    /// [`crate::SftpSession::download`].
    ///
    /// # Errors
    ///
    /// As [`crate::SftpSession::download`].
    pub async fn download(&self, remote: impl AsRef<[u8]>, local: impl AsRef<Path>) -> Result<u64> {
        self.download_with(remote, local, &TransferOptions::default())
            .await
    }

    /// Writes a whole small file, as [`crate::SftpSession::write`].
    ///
    /// # Errors
    ///
    /// As [`crate::SftpSession::write`].
    pub async fn write(&self, path: impl AsRef<[u8]>, data: impl Into<Vec<u8>>) -> Result<()> {
        let (sftp, path, data) = (self.inner.clone(), path.as_ref().to_vec(), data.into());
        blocking(move || sftp.write(path, data)).await
    }

    /// Opens a remote file for reading, as [`crate::SftpSession::open`]:
    /// an [`AsyncRead`] whose reads run on the blocking pool, a megabyte at
    /// a time.
    ///
    /// ```no_run
    /// use tokio::io::AsyncReadExt;
    ///
    /// # async fn job(sftp: etl_ssh::tokio::SftpSession) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut reader = sftp.open("/outbox/report.csv").await?;
    /// let mut text = String::new();
    /// reader.read_to_string(&mut text).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::SftpSession::open`].
    pub async fn open(&self, path: impl AsRef<[u8]>) -> Result<SftpReader> {
        let (sftp, path) = (self.inner.clone(), path.as_ref().to_vec());
        blocking(move || sftp.open(path)).await.map(SftpReader::new)
    }

    /// Creates (or truncates) a remote file for writing, as
    /// [`crate::SftpSession::create`]: an [`AsyncWrite`] whose writes run
    /// on the blocking pool; [`SftpWriter::close`] reports the last error.
    ///
    /// ```no_run
    /// use tokio::io::AsyncWriteExt;
    ///
    /// # async fn job(sftp: etl_ssh::tokio::SftpSession) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut writer = sftp.create("/inbox/orders.csv").await?;
    /// writer.write_all(b"id,qty\n1,2\n").await?;
    /// writer.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::SftpSession::create`].
    pub async fn create(&self, path: impl AsRef<[u8]>) -> Result<SftpWriter> {
        let (sftp, path) = (self.inner.clone(), path.as_ref().to_vec());
        blocking(move || sftp.create(path))
            .await
            .map(SftpWriter::new)
    }

    /// Opens a remote file for appending, as
    /// [`crate::SftpSession::append`]; see [`create`](Self::create).
    ///
    /// # Errors
    ///
    /// As [`crate::SftpSession::append`].
    pub async fn append(&self, path: impl AsRef<[u8]>) -> Result<SftpWriter> {
        let (sftp, path) = (self.inner.clone(), path.as_ref().to_vec());
        blocking(move || sftp.append(path))
            .await
            .map(SftpWriter::new)
    }
}

/// A blocking handle and its buffer.
struct Buffered<H> {
    handle: H,
    buf: Vec<u8>,
    /// How much of `buf` a reader has handed out.
    pos: usize,
}

/// What a trip to the blocking pool gives back: the handle, its buffer,
/// and the outcome.
type Back<H> = (Box<Buffered<H>>, io::Result<()>);

/// A trip to the blocking pool.
type Trip<H> = JoinHandle<Back<H>>;

/// Starts `work` on `buffered` on the blocking pool.
fn trip<H: Send + 'static>(
    mut buffered: Box<Buffered<H>>,
    work: impl FnOnce(&mut Buffered<H>) -> io::Result<()> + Send + 'static,
) -> Trip<H> {
    spawn_blocking(move || {
        let result = work(&mut buffered);
        (buffered, result)
    })
}

/// Polls a trip; a task that could not finish (a panic, a runtime that
/// shuts down) is an I/O error, and the handle is lost.
fn poll_trip<H>(trip: &mut Trip<H>, cx: &mut Context<'_>) -> Poll<io::Result<Back<H>>> {
    Poll::Ready(match ready!(Pin::new(trip).poll(cx)) {
        Ok(done) => Ok(done),
        Err(e) => Err(io::Error::other(format!(
            "an SFTP handle's blocking work ended: {e}"
        ))),
    })
}

fn lost() -> io::Error {
    io::Error::other("the SFTP handle was lost by an earlier failure")
}

/// Drops a blocking handle on the blocking pool (closing it is blocking
/// work), or here when there is no runtime.
fn drop_blocking<H: Send + 'static>(handle: H) {
    match ::tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(handle))),
        Err(_) => drop(handle),
    }
}

enum ReadState {
    Idle(Box<Buffered<crate::SftpReader>>),
    Reading(Trip<crate::SftpReader>),
    Lost,
}

/// A remote file being read, for async code: [`AsyncRead`], made by
/// [`SftpSession::open`]. A read that finds its buffer empty reads up to a
/// megabyte on the blocking pool (the blocking [`crate::SftpReader`] reads
/// ahead underneath). Dropping it closes the remote file on the blocking
/// pool, after a read in progress ends.
pub struct SftpReader {
    path: RemotePath,
    state: ReadState,
}

impl fmt::Debug for SftpReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("tokio::SftpReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SftpReader {
    fn new(reader: crate::SftpReader) -> SftpReader {
        SftpReader {
            path: reader.path(),
            state: ReadState::Idle(Box::new(Buffered {
                handle: reader,
                buf: Vec::new(),
                pos: 0,
            })),
        }
    }

    /// The remote path it reads.
    pub fn path(&self) -> &RemotePath {
        &self.path
    }
}

impl AsyncRead for SftpReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match std::mem::replace(&mut self.state, ReadState::Lost) {
                ReadState::Idle(mut b) if b.pos < b.buf.len() => {
                    let n = out.remaining().min(b.buf.len() - b.pos);
                    out.put_slice(&b.buf[b.pos..b.pos + n]);
                    b.pos += n;
                    self.state = ReadState::Idle(b);
                    return Poll::Ready(Ok(()));
                }
                ReadState::Idle(b) => {
                    self.state = ReadState::Reading(trip(b, |b| {
                        b.buf.resize(CHUNK, 0);
                        let read = b.handle.read(&mut b.buf);
                        b.buf.truncate(*read.as_ref().unwrap_or(&0));
                        b.pos = 0;
                        read.map(drop)
                    }));
                }
                ReadState::Reading(mut t) => match poll_trip(&mut t, cx) {
                    Poll::Pending => {
                        self.state = ReadState::Reading(t);
                        return Poll::Pending;
                    }
                    Poll::Ready(done) => {
                        let (b, result) = done?;
                        let at_end = b.buf.is_empty();
                        self.state = ReadState::Idle(b);
                        result?;
                        if at_end {
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                ReadState::Lost => return Poll::Ready(Err(lost())),
            }
        }
    }
}

impl Drop for SftpReader {
    fn drop(&mut self) {
        if let ReadState::Idle(b) = std::mem::replace(&mut self.state, ReadState::Lost) {
            drop_blocking(b);
        }
    }
}

enum WriteState {
    Idle(Box<Buffered<crate::SftpWriter>>),
    Writing(Trip<crate::SftpWriter>),
    Flushing(Trip<crate::SftpWriter>),
    Closing(JoinHandle<Result<()>>),
    Closed,
    Lost,
}

/// A remote file being written, for async code: [`AsyncWrite`], made by
/// [`SftpSession::create`] and [`SftpSession::append`].
///
/// A write is accepted at once and carried out on the blocking pool while
/// the caller goes on (one write in flight, up to a megabyte); its error,
/// if any, is returned by the next write, flush or close, as with
/// `tokio::fs::File`. `shutdown` closes the remote file;
/// [`close`](Self::close) does the same and returns this crate's error.
/// Dropping it without closing closes the file on the blocking pool,
/// best-effort.
pub struct SftpWriter {
    path: RemotePath,
    state: WriteState,
    /// The error of a write carried out after it was accepted.
    failed: Option<io::Error>,
}

impl fmt::Debug for SftpWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("tokio::SftpWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SftpWriter {
    fn new(writer: crate::SftpWriter) -> SftpWriter {
        SftpWriter {
            path: writer.path(),
            state: WriteState::Idle(Box::new(Buffered {
                handle: writer,
                buf: Vec::with_capacity(CHUNK),
                pos: 0,
            })),
            failed: None,
        }
    }

    /// The remote path it writes.
    pub fn path(&self) -> &RemotePath {
        &self.path
    }

    /// Waits for a write or flush in flight; its error is kept in
    /// `failed`.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let trip = match &mut self.state {
            WriteState::Writing(t) | WriteState::Flushing(t) => t,
            _ => return Poll::Ready(Ok(())),
        };
        match ready!(poll_trip(trip, cx)) {
            Ok((b, result)) => {
                self.state = WriteState::Idle(b);
                if let Err(e) = result {
                    self.failed = Some(e);
                }
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                self.state = WriteState::Lost;
                Poll::Ready(Err(e))
            }
        }
    }

    /// The idle handle, once what is in flight has settled; the error of
    /// a write not reported yet comes first.
    fn poll_idle(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Box<Buffered<crate::SftpWriter>>>> {
        ready!(self.poll_settle(cx))?;
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(match std::mem::replace(&mut self.state, WriteState::Lost) {
            WriteState::Idle(b) => Ok(b),
            WriteState::Closing(h) => {
                self.state = WriteState::Closing(h);
                Err(closed())
            }
            WriteState::Closed => {
                self.state = WriteState::Closed;
                Err(closed())
            }
            _ => Err(lost()),
        })
    }

    /// Waits for the write in flight, then closes the remote file as
    /// [`crate::SftpWriter::close`] does (as `shutdown` does).
    ///
    /// # Errors
    ///
    /// The error of a write not reported yet, or those of
    /// [`crate::SftpWriter::close`].
    pub async fn close(mut self) -> Result<()> {
        std::future::poll_fn(|cx| Pin::new(&mut self).poll_shutdown(cx))
            .await
            .map_err(Error::from)
    }
}

impl AsyncWrite for SftpWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut b = ready!(self.poll_idle(cx))?;
        let n = data.len().min(CHUNK);
        b.buf.clear();
        b.buf.extend_from_slice(&data[..n]);
        self.state = WriteState::Writing(trip(b, |b| b.handle.write_all(&b.buf)));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &self.state {
                WriteState::Flushing(_) => {
                    ready!(self.poll_settle(cx))?;
                    return Poll::Ready(self.failed.take().map_or(Ok(()), Err));
                }
                WriteState::Closing(_) | WriteState::Closed => return Poll::Ready(Ok(())),
                _ => {
                    let b = ready!(self.poll_idle(cx))?;
                    self.state = WriteState::Flushing(trip(b, |b| b.handle.flush()));
                }
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                WriteState::Closing(h) => {
                    let closed = ready!(Pin::new(h).poll(cx));
                    self.state = WriteState::Closed;
                    return Poll::Ready(match closed {
                        Ok(result) => result.map_err(io::Error::from),
                        Err(e) => Err(io::Error::other(format!(
                            "closing an SFTP file did not finish: {e}"
                        ))),
                    });
                }
                WriteState::Closed => return Poll::Ready(Ok(())),
                _ => {
                    let b = ready!(self.poll_idle(cx))?;
                    self.state = WriteState::Closing(spawn_blocking(move || b.handle.close()));
                }
            }
        }
    }
}

impl Drop for SftpWriter {
    fn drop(&mut self) {
        if let WriteState::Idle(b) = std::mem::replace(&mut self.state, WriteState::Lost) {
            drop_blocking(b);
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the SFTP writer is closed")
}
