//! [`Session`]: one verified, authenticated SSH connection, and its
//! [`SessionBuilder`].
//!
//! - `config.rs`: [`SessionBuilder`], the settings as a plain value, and
//!   their setters;
//! - `connect.rs`: one connection recipe (transport → handshake → verify
//!   → authenticate → connection) and what a session's connections share:
//!   the loaded credential, the pins, the jump host's connection;
//! - `transport.rs`: reaching the server: resolve, TCP (bound, through an
//!   HTTP proxy), the socket libssh2 talks through;
//! - `negotiate.rs`: the server's algorithm offer, read when a handshake
//!   finds nothing in common;
//! - `tunnel.rs`: `direct-tcpip` channels pumped to a local socket, for a
//!   jump host and for port forwarding;
//! - `forward.rs`: local port forwarding ([`Tunnel`]);
//! - `auth.rs`: offering the credential.

mod auth;
mod config;
mod connect;
mod forward;
mod negotiate;
mod transport;
#[cfg(feature = "fuzzing")]
pub(crate) use negotiate::parse_kexinit as fuzz_parse_kexinit;
mod tunnel;

pub use forward::{Tunnel, MAX_TUNNEL_CONNECTIONS};

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::conn::Transport;
pub use config::SessionBuilder;

use crate::conn::{Conn, Dialer};
use crate::{Error, ExecSession, HostKey, Result};
use log::info;
use std::sync::Mutex;

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

/// One verified, authenticated SSH connection to a partner's server.
///
/// Made by [`Session::builder`]. By the time a `Session` exists, the
/// server's host key has matched a pin and our credential has been
/// accepted. SFTP and exec handles are opened on it.
///
/// libssh2 serialises every call on one session: for parallel transfers,
/// open several sessions.
///
/// `Session` is `Send` and `Sync`, and a cheap handle: a clone shares the
/// connection (and the SFTP and exec handles opened on it), so threads may
/// each hold one. The connection ends when the last clone and the last
/// handle opened on it are dropped, or at [`close`](Session::close).
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
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

/// A session's connection and what it was built from, shared by the
/// [`Session`] and the SFTP and exec handles opened on it: the connection
/// ends when the last of them is dropped, or at [`Session::close`].
pub(crate) struct SessionInner {
    /// The connection in use (another after a [`Dialer::redial`]).
    conn: Mutex<Arc<Conn>>,
    /// What this session was built from, and what its connections share,
    /// to open more like it.
    prepared: Arc<connect::Prepared>,
    user: String,
    host_key: HostKey,
    banner: Option<String>,
    /// The text the server showed before login (`SSH_MSG_USERAUTH_BANNER`).
    auth_banner: Option<String>,
    /// The methods accepted, in order (several for a multi-factor login).
    auth: Vec<AuthMethod>,
    /// The jump host's session this connection rides on: kept open while
    /// the connection lives.
    #[allow(dead_code)] // held, never read
    jump: Option<Arc<SessionInner>>,
    /// Set by [`Session::close`]: no connection is made again for it.
    closed: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for SessionInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInner")
            .field("target", &self.conn().target())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl SessionInner {
    /// See [`Session::connect_another`].
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) once
    /// [`Session::close`] ended the session: its clones and handles do not
    /// connect again.
    fn refuse_if_closed(&self) -> Result<()> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Ssh {
                kind: crate::ErrorKind::Disconnected,
                context: format!(
                    "the session with {} was closed (Session::close); connect a new one",
                    self.target()
                ),
                source: None,
            });
        }
        Ok(())
    }

    pub(crate) fn connect_another(&self) -> Result<Session> {
        self.refuse_if_closed()?;
        if let Some(credential) = &self.prepared.settings.credential {
            if credential.responder_forbids_extra_sessions() {
                return Err(Error::Ssh {
                    kind: crate::ErrorKind::Unsupported,
                    context: format!(
                        "no extra session to {}: it would ask the keyboard-interactive \
                         responder again (a one-time code would be spent); allow it with \
                         Credential::with_extra_sessions(true)",
                        self.target()
                    ),
                    source: None,
                });
            }
        }
        self.prepared.connect()
    }

    /// The connection in use now.
    pub(crate) fn conn(&self) -> Arc<Conn> {
        Arc::clone(&self.conn.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `host:port`, for messages.
    pub(crate) fn target(&self) -> String {
        self.conn().target()
    }
}

impl Dialer for SessionInner {
    fn current(&self) -> Arc<Conn> {
        self.conn()
    }

    fn redial(&self, dead: &Arc<Conn>) -> Result<Arc<Conn>> {
        self.refuse_if_closed()?;
        let mut current = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, dead) {
            return Ok(Arc::clone(&current));
        }
        let fresh = self.prepared.connect()?.inner.conn();
        info!(
            "{}: the server ended the connection (as servers that allow one channel per \
             connection do after it closes); connected again from {}",
            fresh.target(),
            fresh.local_addr()
        );
        *current = Arc::clone(&fresh);
        Ok(fresh)
    }

    fn another(&self) -> Result<Arc<dyn Dialer>> {
        Ok(self.connect_another()?.inner as Arc<dyn Dialer>)
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

impl AuthMethod {
    /// `PublicKey` with its fields (the variant is `#[non_exhaustive]`).
    pub(crate) fn public_key(fingerprint: Option<String>, label: String) -> AuthMethod {
        AuthMethod::PublicKey { fingerprint, label }
    }

    /// The SSH method's name, as servers list them: `publickey`,
    /// `password`, `keyboard-interactive` or `none`.
    ///
    /// ```
    /// assert_eq!(etl_ssh::AuthMethod::Password.name(), "password");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::PublicKey { .. } => "publickey",
            AuthMethod::Password => "password",
            AuthMethod::KeyboardInteractive => "keyboard-interactive",
            AuthMethod::None => "none",
        }
    }
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

impl Session {
    /// The host as given to [`Session::builder`].
    pub fn host(&self) -> &str {
        &self.inner.prepared.settings.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.inner.conn().port()
    }

    /// The user we are authenticated as.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// The host key the server presented, which matched a pin.
    pub fn host_key(&self) -> &HostKey {
        &self.inner.host_key
    }

    /// The server's identification string, e.g. `SSH-2.0-OpenSSH_9.2p1
    /// Debian-2`: its software and version, sent before the key exchange.
    /// Not the text it shows before login: that is
    /// [`auth_banner`](Self::auth_banner).
    pub fn identification(&self) -> Option<&str> {
        self.inner.banner.as_deref()
    }

    /// The server's identification string: [`identification`](Self::identification).
    #[deprecated(
        since = "0.1.0",
        note = "this is the identification string (`SSH-2.0-...`): call identification(); \
                the text a server shows before login is auth_banner()"
    )]
    pub fn banner(&self) -> Option<&str> {
        self.identification()
    }

    /// The text the server showed before login (`SSH_MSG_USERAUTH_BANNER`,
    /// sshd's `Banner` file: often "authorized use only", sometimes "this
    /// server moves to ... on ..."), without control characters other
    /// than line breaks; `None` when it sent none. Also logged at `info`,
    /// and quoted in authentication errors.
    pub fn auth_banner(&self) -> Option<&str> {
        self.inner.auth_banner.as_deref()
    }

    /// How the server accepted us: the method that completed the login
    /// (the last factor of a multi-factor one).
    pub fn auth_method(&self) -> &AuthMethod {
        self.inner.auth.last().unwrap_or(&AuthMethod::None)
    }

    /// Every method the server accepted, in order: one for most logins,
    /// each factor of a multi-factor one
    /// ([`Credential::all`](crate::Credential::all)).
    pub fn auth_factors(&self) -> &[AuthMethod] {
        &self.inner.auth
    }

    /// Our end of the TCP connection: the source address a partner's
    /// allow-list sees.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.conn().local_addr()
    }

    /// The server's address we connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.conn().peer_addr()
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
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected);
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) when the
    /// credential's keyboard-interactive responder may not be asked again
    /// ([`Credential::with_extra_sessions`](crate::Credential::with_extra_sessions)).
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
        self.inner
            .conn()
            .lock()
            .keepalive_now()
            .map_err(|e| Error::ssh(format!("keepalive to {}", self.inner.target()), e))
    }

    /// The deadline for each blocking operation on this session.
    pub fn timeout(&self) -> Duration {
        self.inner.conn().timeout()
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
        crate::sftp::SftpSession::start(Arc::clone(&self.inner) as Arc<dyn Dialer>)
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
        Ok(ExecSession::new(Arc::clone(&self.inner) as Arc<dyn Dialer>))
    }

    /// Forwards a local port to `remote_host:remote_port` as the server
    /// reaches it, as `ssh -L` does: a database behind the partner's
    /// firewall, reached at `127.0.0.1:<port>` by a driver that knows
    /// nothing of SSH. Port 0 in `local_addr` picks a free port
    /// ([`Tunnel::local_addr`] says which). Listen on a loopback address
    /// unless other machines are meant to use the tunnel.
    ///
    /// The [`Tunnel`] serves connections until it is dropped, at most
    /// [`MAX_TUNNEL_CONNECTIONS`] at once, each on a `direct-tcpip`
    /// channel of this session; it keeps the session's connection open
    /// while it lives. The channel is opened when a connection arrives, so
    /// a server that forbids forwarding (sshd's `AllowTcpForwarding no`)
    /// or a target it cannot reach shows as a connection closed at once,
    /// with the reason in the log and in [`Tunnel::take_error`].
    ///
    /// ```no_run
    /// use std::io::{Read, Write};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let session: etl_ssh::Session = todo!();
    /// let tunnel = session.forward_local("127.0.0.1:0".parse()?, "reports.partner.internal", 80)?;
    /// let mut http = std::net::TcpStream::connect(tunnel.local_addr())?;
    /// http.write_all(b"GET /daily.csv HTTP/1.0\r\nHost: reports.partner.internal\r\n\r\n")?;
    /// let mut reply = Vec::new();
    /// http.read_to_end(&mut reply)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) (or the kind of the local
    /// error) when `local_addr` cannot be listened on (a port in use, an
    /// address not ours, a port below 1024 without the right);
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for an
    /// empty host name.
    pub fn forward_local(
        &self,
        local_addr: SocketAddr,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<Tunnel> {
        forward::forward_local(
            Arc::clone(&self.inner) as Arc<dyn Dialer>,
            local_addr,
            remote_host,
            remote_port,
        )
    }

    /// Says goodbye to the server and closes the connection.
    ///
    /// Dropping the `Session` and every handle opened on it does the same on
    /// a best-effort basis; `close` reports what went wrong. Handles still
    /// open on the session fail with [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) afterwards.
    /// Clones of this `Session` share the connection: `close` ends it for
    /// all of them, and none of them connects again.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) or [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when the
    /// disconnect message could not be sent.
    pub fn close(self) -> Result<()> {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.conn().disconnect().map_err(|e| {
            Error::ssh(
                format!("cannot close the session with {}", self.inner.target()),
                e,
            )
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Session")
            .field("host", &i.prepared.settings.host)
            .field("port", &i.conn().port())
            .field("user", &i.user)
            .field("local_addr", &i.conn().local_addr())
            .field("peer_addr", &i.conn().peer_addr())
            .field("host_key", &i.host_key)
            .field("auth", &i.auth)
            .field("timeout", &i.conn().timeout())
            .finish_non_exhaustive()
    }
}
