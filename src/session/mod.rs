//! [`Session`]: one verified, authenticated SSH connection, and its
//! [`SessionBuilder`].
//!
//! - `builder.rs`: the builder's settings and `connect`: handshake with the
//!   pinned key types preferred, host-key check before authentication;
//! - `transport.rs`: reaching the server: resolve, TCP (bound, through an
//!   HTTP proxy), the socket libssh2 talks through;
//! - `tunnel.rs`: a jump host's `direct-tcpip` tunnel;
//! - `auth.rs`: offering the credential.

mod auth;
mod builder;
mod transport;
mod tunnel;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::debug;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use ssh2::{BlockDirections, DisconnectCode};

use crate::{Credential, Error, ExecSession, HostKey, KnownHost, Result};
pub(crate) use transport::Transport;

/// Default for [`SessionBuilder::port`].
pub const DEFAULT_PORT: u16 = 22;
/// Default for [`SessionBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`SessionBuilder::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default for [`SessionBuilder::keepalive`].
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

/// Default for [`SessionBuilder::receive_buffer`]: 4 MiB.
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;

/// How long cleanup waits for the server: closing a handle after a failure,
/// or the disconnect message of `Drop`. A healthy server answers in far
/// less; a dead link must not hold the caller for a full operation timeout.
const CLEANUP_TIMEOUT: Duration = Duration::from_millis(500);

/// One verified, authenticated SSH connection to a partner's server.
///
/// Made by [`Session::builder`]. By the time a `Session` exists, the
/// server's host key has matched a pin and our credential has been
/// accepted. SFTP and exec handles are opened on it.
///
/// libssh2 serialises every call on one session: for parallel transfers,
/// open several sessions.
///
/// `Session` is `Send` and `Sync`.
///
/// ```no_run
/// use std::time::Duration;
/// use etl_ssh::{Credential, KnownHost, Session};
///
/// # fn main() -> Result<(), etl_ssh::Error> {
/// let session = Session::builder("sftp.partner.example")
///     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
///     .known_host(KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")?)
///     .connect_timeout(Duration::from_secs(10))
///     .connect()?;
/// println!("{} presented {}", session.host(), session.host_key());
/// session.close()?;
/// # Ok(())
/// # }
/// ```
pub struct Session {
    inner: Arc<SessionInner>,
}

/// The connection itself, shared by the [`Session`] and the SFTP and exec
/// handles opened on it: the connection ends when the last of them is
/// dropped, or at [`Session::close`].
pub(crate) struct SessionInner {
    pub(crate) ssh: ssh2::Session,
    /// What this session was built from, to open more like it.
    settings: SessionBuilder,
    pub(crate) host: String,
    pub(crate) port: u16,
    user: String,
    pub(crate) local_addr: SocketAddr,
    pub(crate) peer_addr: SocketAddr,
    host_key: HostKey,
    banner: Option<String>,
    auth: AuthMethod,
    pub(crate) timeout: Duration,
    /// Whether SSH keepalives are on (see [`SessionBuilder::keepalive`]).
    keepalive: bool,
    /// A second handle on the socket libssh2 owns, to wait on it with
    /// `poll` without borrowing libssh2's descriptor.
    pub(crate) socket: Transport,
    closed: AtomicBool,
    /// Held by every SFTP or exec operation while it uses `ssh`. The session
    /// is in blocking mode whenever this lock is free: code that switches
    /// it to non-blocking (exec's poll loop) restores blocking mode before
    /// releasing the lock.
    op_lock: Mutex<()>,
}

impl fmt::Debug for SessionInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInner")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl SessionInner {
    /// See [`Session::connect_another`].
    pub(crate) fn connect_another(&self) -> Result<Session> {
        self.settings.clone().connect()
    }

    /// Takes the operation lock (see the field). A poisoned lock is taken
    /// anyway: the guarded state is libssh2's, which a panic does not corrupt
    /// beyond what the next call reports.
    #[allow(dead_code)] // used by the SFTP and exec handles
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.op_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `host:port`, for messages.
    pub(crate) fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Waits until the socket is ready in `dirs` (what libssh2 is blocked
    /// on), for at most `max`, or until `deadline` passes; false once it has
    /// passed. Safe without the operation lock: it only polls the socket.
    pub(crate) fn wait_ready(
        &self,
        dirs: BlockDirections,
        deadline: Instant,
        max: Duration,
    ) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let mut wait = (deadline - now).min(max);
        if dirs == BlockDirections::None {
            // libssh2 waits on a channel state, not the socket: look again soon.
            wait = wait.min(Duration::from_millis(2));
        }
        let timeout = Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: wait.subsec_nanos().into(),
        };
        // EINTR or any other failure: the caller simply tries libssh2 again.
        let _ = poll(
            &mut [PollFd::new(&self.socket, poll_flags(dirs))],
            Some(&timeout),
        );
        true
    }

    /// Runs `f` under the short cleanup timeout, then restores the
    /// session's: for closing handles after a failure, or on drop, which
    /// must not wait a full operation timeout on a dead link. Call it with
    /// the operation lock held.
    pub(crate) fn cleanup<T>(&self, f: impl FnOnce() -> T) -> T {
        self.ssh
            .set_timeout(millis(self.timeout.min(CLEANUP_TIMEOUT)));
        let out = f();
        self.ssh.set_timeout(millis(self.timeout));
        out
    }

    /// Sends an SSH keepalive if one is due. Call it with the operation
    /// lock held, from any loop that may run longer than the keepalive
    /// interval: libssh2 sends keepalives only when asked. Cheap when none
    /// is due; a failure is left for the next real operation to report.
    pub(crate) fn keepalive_tick(&self) {
        if self.keepalive {
            if let Err(e) = self.ssh.keepalive_send() {
                debug!("keepalive to {} not sent: {e}", self.target());
            }
        }
    }

    fn disconnect(&self) -> std::result::Result<(), ssh2::Error> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.ssh.disconnect(
            Some(DisconnectCode::ByApplication),
            "closed by client",
            None,
        )
    }
}

/// How the server accepted us.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// Public key authentication.
    #[non_exhaustive]
    PublicKey {
        /// SHA256 fingerprint of the key that was accepted, when known
        /// (always for OpenSSH-format keys; not for PEM keys).
        fingerprint: Option<String>,
        /// The key's label ([`KeyPair::with_label`](crate::KeyPair::with_label),
        /// else its file name).
        label: String,
    },
    /// Password authentication.
    Password,
    /// The password answered a keyboard-interactive prompt.
    KeyboardInteractive,
    /// The server let us in without asking (`none` method).
    None,
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMethod::PublicKey {
                fingerprint: Some(fp),
                label,
            } => write!(f, "publickey {label} {fp}"),
            AuthMethod::PublicKey {
                fingerprint: None,
                label,
            } => write!(f, "publickey {label}"),
            AuthMethod::Password => f.write_str("password"),
            AuthMethod::KeyboardInteractive => f.write_str("keyboard-interactive"),
            AuthMethod::None => f.write_str("none"),
        }
    }
}

/// Builds a [`Session`]: where to connect, as whom, and which host keys to trust.
///
/// Only the host is required to start; [`SessionBuilder::connect`] needs a
/// credential. Without any [`known_host`](SessionBuilder::known_host) pin
/// the connection is refused after the handshake with
/// [`ErrorKind::HostKeyUnknown`](crate::ErrorKind::HostKeyUnknown), whose message carries the fingerprint the
/// server presented: there is no default that trusts any key.
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    host: String,
    port: u16,
    credential: Option<Credential>,
    pins: Vec<KnownHost>,
    host_key_alias: Option<String>,
    http_proxy: Option<(String, u16)>,
    jump: Option<Arc<SessionInner>>,
    /// A jump host still to connect (from an ssh config's `ProxyJump`).
    jump_via: Option<Box<SessionBuilder>>,
    user: Option<String>,
    keepalive: Duration,
    connect_timeout: Duration,
    timeout: Duration,
    bind_address: Option<IpAddr>,
    receive_buffer: Option<usize>,
}

impl Session {
    /// Starts building a session to `host`: a DNS name or an IP address.
    pub fn builder(host: impl Into<String>) -> SessionBuilder {
        SessionBuilder {
            host: host.into(),
            port: DEFAULT_PORT,
            credential: None,
            pins: Vec::new(),
            host_key_alias: None,
            http_proxy: None,
            jump: None,
            jump_via: None,
            user: None,
            keepalive: DEFAULT_KEEPALIVE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            bind_address: None,
            receive_buffer: Some(DEFAULT_RECEIVE_BUFFER),
        }
    }

    /// The host as given to [`Session::builder`].
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The user we are authenticated as.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// The host key the server presented, which matched a pin.
    pub fn host_key(&self) -> &HostKey {
        &self.inner.host_key
    }

    /// The server's identification string, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2`.
    pub fn banner(&self) -> Option<&str> {
        self.inner.banner.as_deref()
    }

    /// How the server accepted us.
    pub fn auth_method(&self) -> &AuthMethod {
        &self.inner.auth
    }

    /// Our end of the TCP connection: the source address a partner's
    /// allow-list sees.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The server's address we connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr
    }

    /// Opens another, separate connection to the same server with the same
    /// settings: credential, pins, timeouts, source address, proxy or jump
    /// host. For work in parallel: libssh2 serialises every call on one
    /// session, so parallel transfers need several (the segment-parallel
    /// and directory transfers of [`SftpSession`](crate::SftpSession) use
    /// this).
    ///
    /// # Errors
    ///
    /// As [`SessionBuilder::connect`]; a server that limits connections
    /// (OpenSSH's `MaxStartups`, `MaxSessions`) may refuse it with
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    pub fn connect_another(&self) -> Result<Session> {
        self.inner.connect_another()
    }

    /// Sends an SSH keepalive if one is due, for a session that sits idle
    /// between operations (a job waiting for a partner's file, say): call
    /// it at least once per [keepalive interval](SessionBuilder::keepalive)
    /// and a NAT or firewall never sees the connection as dead. Transfers
    /// and commands send keepalives by themselves.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) or
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when the connection
    /// is gone.
    pub fn keepalive(&self) -> Result<()> {
        let _lock = self.inner.lock();
        if !self.inner.keepalive {
            return Ok(());
        }
        self.inner
            .ssh
            .keepalive_send()
            .map(drop)
            .map_err(|e| Error::ssh(format!("keepalive to {}", self.inner.target()), e))
    }

    /// The deadline for each blocking operation on this session.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The shared connection, for the SFTP and exec handles.
    #[allow(dead_code)] // used by the SFTP and exec handles
    pub(crate) fn inner(&self) -> &Arc<SessionInner> {
        &self.inner
    }

    /// Opens an SFTP channel on the session: file operations and atomic
    /// transfers on the server.
    ///
    /// The [`SftpSession`](crate::SftpSession) shares this connection and
    /// keeps it open while it lives. Several may be open at once; they take
    /// turns on the connection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) or [`ErrorKind::Other`](crate::ErrorKind::Other) when the server
    /// refuses the `sftp` subsystem; [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected),
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub fn sftp(&self) -> Result<crate::SftpSession> {
        crate::sftp::SftpSession::start(Arc::clone(&self.inner))
    }

    /// Opens the exec side of the session: runs commands on the server.
    ///
    /// Each command gets its own channel; the [`ExecSession`] shares this
    /// connection and keeps it open while it lives.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a check of the server.
    pub fn exec(&self) -> Result<ExecSession> {
        Ok(ExecSession::new(Arc::clone(&self.inner)))
    }

    /// Says goodbye to the server and closes the connection.
    ///
    /// Dropping the `Session` and every handle opened on it does the same on
    /// a best-effort basis; `close` reports what went wrong. Handles still
    /// open on the session fail with [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) afterwards.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) or [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when the
    /// disconnect message could not be sent.
    pub fn close(self) -> Result<()> {
        self.inner.disconnect().map_err(|e| {
            Error::ssh(
                format!("cannot close the session with {}", self.inner.target()),
                e,
            )
        })
    }
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        self.ssh
            .set_timeout(millis(self.timeout.min(CLEANUP_TIMEOUT)));
        if let Err(e) = self.disconnect() {
            debug!("disconnect from {} on drop failed: {e}", self.target());
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Session")
            .field("host", &i.host)
            .field("port", &i.port)
            .field("user", &i.user)
            .field("local_addr", &i.local_addr)
            .field("peer_addr", &i.peer_addr)
            .field("host_key", &i.host_key)
            .field("auth", &i.auth)
            .field("timeout", &i.timeout)
            .finish_non_exhaustive()
    }
}

/// libssh2 takes timeouts in milliseconds, and 0 means forever: never pass 0.
pub(crate) fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

/// The `poll` events for what libssh2 is blocked on (reading when it is
/// blocked on nothing in particular).
pub(crate) fn poll_flags(dirs: BlockDirections) -> PollFlags {
    match dirs {
        BlockDirections::Outbound => PollFlags::OUT,
        BlockDirections::Both => PollFlags::IN | PollFlags::OUT,
        BlockDirections::Inbound | BlockDirections::None => PollFlags::IN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
