//! The async facade (feature `tokio`): [`Session`], [`SftpSession`] and
//! [`ExecSession`] with the blocking types' operations as `async fn`s.
//!
//! libssh2 is a blocking library, so each operation runs on tokio's
//! blocking pool ([`spawn_blocking`](::tokio::task::spawn_blocking)) and
//! never on the runtime's worker threads: a 10-minute download does not
//! stall the other tasks, on a multi-threaded runtime or a current-thread
//! one. The operations must be called from within a tokio runtime.
//!
//! **Cancellation.** Dropping a future (a `select!` that took another
//! branch, a `timeout` that ran out) does not stop the operation it
//! started: that runs to its end on the blocking pool, and its result is
//! dropped. An upload still ends atomically (delivered, or nothing left
//! but what its error would have named), a command still ends or times
//! out, and the session stays usable: the next operation takes its turn on
//! the connection. Bound an operation with the crate's own timeouts
//! ([`SessionBuilder::timeout`](crate::SessionBuilder::timeout),
//! [`ExecSession::with_timeout`]) where it must stop. Keep the runtime alive
//! until such work ends: a runtime that is dropped waits for its blocking
//! tasks.
//!
//! The facades are cheap handles on the blocking ones
//! ([`Session::blocking`], [`SftpSession::blocking`],
//! [`ExecSession::blocking`]), which may be used from `spawn_blocking`
//! code of the caller's own.
//!
//! ```no_run
//! use etl_ssh::{Credential, KnownHost};
//!
//! # async fn job() -> Result<(), etl_ssh::Error> {
//! let builder = etl_ssh::Session::builder("sftp.partner.example")
//!     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
//!     .known_host(KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")?);
//! let session = etl_ssh::tokio::Session::connect(builder).await?;
//! let sftp = session.sftp().await?;
//! sftp.upload("out/orders.csv", "/inbox/orders.csv").await?;
//! let out = session.exec().await?.run_args(["sha256sum", "/inbox/orders.csv"]).await?;
//! println!("{}", String::from_utf8_lossy(out.stdout()));
//! session.close().await?;
//! # Ok(())
//! # }
//! ```

mod sftp;

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Duration;

use crate::{AuthMethod, Error, ExecOutput, HostKey, Result, SessionBuilder, Tunnel};

pub use sftp::{SftpReader, SftpSession, SftpWriter};

/// `Debug` and `From` for a facade on a blocking handle: `$name { inner }`.
macro_rules! wraps {
    ($name:ident, $blocking:ty) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(concat!("tokio::", stringify!($name)))
                    .field(&self.inner)
                    .finish()
            }
        }

        impl From<$blocking> for $name {
            fn from(inner: $blocking) -> $name {
                $name { inner }
            }
        }
    };
}
use wraps;

/// Runs `work` on tokio's blocking pool and waits for it without blocking
/// the runtime. Work that panics panics here too.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match ::tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::io(
            "the blocking work was cancelled (the runtime is shutting down)",
            io::Error::other(e.to_string()),
        )),
    }
}

/// A verified, authenticated SSH connection, for async code: the
/// blocking [`crate::Session`]'s operations as `async fn`s.
///
/// Cheap to clone (clones share the connection). `Send` and `Sync`.
///
/// ```no_run
/// # async fn job(builder: etl_ssh::SessionBuilder) -> Result<(), etl_ssh::Error> {
/// let session = etl_ssh::tokio::Session::connect(builder).await?;
/// println!("{} presented {}", session.blocking().host(), session.host_key());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: crate::Session,
}

wraps!(Session, crate::Session);

impl Session {
    /// Connects as [`SessionBuilder::connect`] does: resolve, TCP,
    /// handshake, host key check, authentication, each within its timeout.
    ///
    /// # Errors
    ///
    /// As [`SessionBuilder::connect`].
    pub async fn connect(builder: SessionBuilder) -> Result<Session> {
        blocking(move || builder.connect()).await.map(Session::from)
    }

    /// The blocking session this one wraps (the same connection).
    pub fn blocking(&self) -> &crate::Session {
        &self.inner
    }

    /// The host key the server presented, which matched a pin.
    pub fn host_key(&self) -> &HostKey {
        self.inner.host_key()
    }

    /// How the server accepted us.
    pub fn auth_method(&self) -> &AuthMethod {
        self.inner.auth_method()
    }

    /// Our end of the TCP connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// Opens an SFTP session on this connection, as
    /// [`crate::Session::sftp`].
    ///
    /// # Errors
    ///
    /// As [`crate::Session::sftp`].
    pub async fn sftp(&self) -> Result<SftpSession> {
        let session = self.inner.clone();
        blocking(move || session.sftp())
            .await
            .map(SftpSession::from)
    }

    /// The exec side of this connection, as [`crate::Session::exec`].
    ///
    /// # Errors
    ///
    /// As [`crate::Session::exec`].
    pub async fn exec(&self) -> Result<ExecSession> {
        let session = self.inner.clone();
        blocking(move || session.exec())
            .await
            .map(ExecSession::from)
    }

    /// Sends an SSH keepalive if one is due, as
    /// [`crate::Session::keepalive`].
    ///
    /// # Errors
    ///
    /// As [`crate::Session::keepalive`].
    pub async fn keepalive(&self) -> Result<()> {
        let session = self.inner.clone();
        blocking(move || session.keepalive()).await
    }

    /// Forwards a local port through the session, as
    /// [`crate::Session::forward_local`]. The [`Tunnel`] serves
    /// connections on threads of its own, not on the runtime.
    ///
    /// # Errors
    ///
    /// As [`crate::Session::forward_local`].
    pub async fn forward_local(
        &self,
        local_addr: SocketAddr,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<Tunnel> {
        let session = self.inner.clone();
        let remote_host = remote_host.to_string();
        blocking(move || session.forward_local(local_addr, &remote_host, remote_port)).await
    }

    /// Says goodbye to the server, as [`crate::Session::close`].
    ///
    /// # Errors
    ///
    /// As [`crate::Session::close`].
    pub async fn close(self) -> Result<()> {
        let session = self.inner;
        blocking(move || session.close()).await
    }
}

/// Remote commands, for async code: the blocking [`crate::ExecSession`]'s
/// operations as `async fn`s, its settings as they are.
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn job(session: etl_ssh::tokio::Session) -> Result<(), etl_ssh::Error> {
/// let exec = session.exec().await?.with_timeout(Duration::from_secs(600));
/// let out = exec.run("/opt/partner/bin/import /inbox/orders.csv").await?;
/// assert!(out.success(), "{}", String::from_utf8_lossy(out.stderr()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ExecSession {
    inner: crate::ExecSession,
}

wraps!(ExecSession, crate::ExecSession);

impl ExecSession {
    /// The blocking exec session this one wraps.
    pub fn blocking(&self) -> &crate::ExecSession {
        &self.inner
    }

    /// See [`crate::ExecSession::with_timeout`].
    pub fn with_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        self.inner.with_timeout(timeout).into()
    }

    /// See [`crate::ExecSession::with_idempotent`].
    pub fn with_idempotent(self, idempotent: bool) -> Self {
        self.inner.with_idempotent(idempotent).into()
    }

    /// See [`crate::ExecSession::with_kill_on_timeout`].
    pub fn with_kill_on_timeout(self, kill: bool) -> Self {
        self.inner.with_kill_on_timeout(kill).into()
    }

    /// See [`crate::ExecSession::with_max_output`].
    pub fn with_max_output(self, bytes: u64) -> Self {
        self.inner.with_max_output(bytes).into()
    }

    /// See [`crate::ExecSession::with_env`].
    pub fn with_env(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.with_env(name, value).into()
    }

    /// See [`crate::ExecSession::with_pty`].
    pub fn with_pty(self, pty: bool) -> Self {
        self.inner.with_pty(pty).into()
    }

    /// Runs `command`, as [`crate::ExecSession::run`].
    ///
    /// # Errors
    ///
    /// As [`crate::ExecSession::run`].
    pub async fn run(&self, command: impl Into<String>) -> Result<ExecOutput> {
        let (exec, command) = (self.inner.clone(), command.into());
        blocking(move || exec.run(&command)).await
    }

    /// Runs a command from arguments, each quoted, as
    /// [`crate::ExecSession::run_args`].
    ///
    /// # Errors
    ///
    /// As [`crate::ExecSession::run_args`].
    pub async fn run_args<I, S>(&self, args: I) -> Result<ExecOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_string()).collect();
        let exec = self.inner.clone();
        blocking(move || exec.run_args(args)).await
    }

    /// Runs `command` with `input` on its stdin, as
    /// [`crate::ExecSession::run_with_input`]. `input` is read on the
    /// blocking pool: bytes (`std::io::Cursor<Vec<u8>>`), a `std::fs::File`.
    ///
    /// # Errors
    ///
    /// As [`crate::ExecSession::run_with_input`].
    pub async fn run_with_input(
        &self,
        command: impl Into<String>,
        input: impl Read + Send + 'static,
    ) -> Result<ExecOutput> {
        let (exec, command) = (self.inner.clone(), command.into());
        blocking(move || exec.run_with_input(&command, input)).await
    }
}
