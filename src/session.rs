//! [`Session`] and its [`SessionBuilder`]: TCP connect, SSH handshake,
//! host-key check, authentication.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use secrecy::{ExposeSecret, SecretString};
use socket2::{Domain, Protocol, Socket, Type};
use ssh2::{BlockDirections, DisconnectCode, KeyboardInteractivePrompt, MethodType, Prompt};

use crate::credential::{Loaded, LoadedKey};
use crate::error::{ssh2_kind, BoxError};
use crate::known_host::HostKeyPolicy;
use crate::tunnel;
use crate::{AuthPrompt, Credential, Error, ErrorKind, ExecSession, HostKey, KnownHost, Result};

/// Default for [`SessionBuilder::port`].
pub const DEFAULT_PORT: u16 = 22;
/// Default for [`SessionBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`SessionBuilder::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `Drop` waits for the server when it sends the disconnect message.
const DROP_TIMEOUT: Duration = Duration::from_secs(2);

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
    pub(crate) host: String,
    pub(crate) port: u16,
    user: String,
    pub(crate) local_addr: SocketAddr,
    pub(crate) peer_addr: SocketAddr,
    host_key: HostKey,
    banner: Option<String>,
    auth: AuthMethod,
    pub(crate) timeout: Duration,
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
/// [`ErrorKind::HostKeyUnknown`], whose message carries the fingerprint the
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
    connect_timeout: Duration,
    timeout: Duration,
    bind_address: Option<IpAddr>,
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
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            bind_address: None,
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
    /// [`ErrorKind::Unsupported`] or [`ErrorKind::Other`] when the server
    /// refuses the `sftp` subsystem; [`ErrorKind::Disconnected`],
    /// [`ErrorKind::Timeout`].
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
    /// open on the session fail with [`ErrorKind::Disconnected`] afterwards.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Disconnected`] or [`ErrorKind::Timeout`] when the
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
        self.ssh.set_timeout(millis(self.timeout.min(DROP_TIMEOUT)));
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

impl SessionBuilder {
    /// The server's port. Defaults to 22.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Who we are. Required; a second call replaces the first.
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Logs in as `user` whatever the credential says. Defaults to the
    /// credential's user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// A pin on the server's host key. May be called several times: a host
    /// key that matches any pin is accepted, unless a `known_hosts` file
    /// marks it `@revoked`.
    ///
    /// The pinned key types are also offered first in the handshake, as
    /// OpenSSH does, so a server holding several host keys presents the
    /// pinned one.
    pub fn known_host(mut self, pin: KnownHost) -> Self {
        self.pins.push(pin);
        self
    }

    /// Looks host key pins up under `name` instead of the host and port,
    /// like OpenSSH's `HostKeyAlias`: a `known_hosts` line `name ssh-ed25519
    /// AAAA...` then holds wherever the partner's server moves (a new IP
    /// address, another port). Defaults to the host (`[host]:port` for a
    /// port other than 22).
    ///
    /// ```no_run
    /// use etl_ssh::{Credential, KnownHost, Session};
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let session = Session::builder("203.0.113.7")
    ///     .host_key_alias("partner-sftp")
    ///     .known_host(KnownHost::known_hosts_file("/etc/etl/known_hosts"))
    ///     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
    ///     .connect()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn host_key_alias(mut self, name: impl Into<String>) -> Self {
        self.host_key_alias = Some(name.into());
        self
    }

    /// Reaches the server through an HTTP proxy (`CONNECT host:port`), for
    /// networks whose only way out is a web proxy. The proxy must allow
    /// CONNECT to the server's port. The host key is still checked end to
    /// end: the proxy sees only encrypted traffic. Defaults to a direct
    /// connection.
    ///
    /// [`bind_address`](Self::bind_address) then applies to the connection
    /// to the proxy.
    pub fn http_proxy(mut self, host: impl Into<String>, port: u16) -> Self {
        self.http_proxy = Some((host.into(), port));
        self
    }

    /// Reaches the server through `jump`, an authenticated session on a
    /// bastion host, as OpenSSH's `ProxyJump` does: a `direct-tcpip`
    /// channel on the jump session carries this session's SSH connection.
    /// Both hops are verified: `jump` checked its own host key when it
    /// connected, and this builder's pins are checked against the final
    /// server, end to end (the bastion sees only encrypted bytes).
    ///
    /// The jump session's connection stays open while this session needs
    /// it. [`bind_address`](Self::bind_address) and
    /// [`http_proxy`](Self::http_proxy) do not apply: the jump session has
    /// its own.
    ///
    /// ```no_run
    /// use etl_ssh::{Credential, KnownHost, Session};
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let bastion = Session::builder("bastion.partner.example")
    ///     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
    ///     .known_host(KnownHost::known_hosts_file("/etc/etl/known_hosts"))
    ///     .connect()?;
    /// let sftp_host = Session::builder("10.1.2.3")
    ///     .host_key_alias("partner-internal-sftp")
    ///     .jump_host(&bastion)
    ///     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
    ///     .known_host(KnownHost::known_hosts_file("/etc/etl/known_hosts"))
    ///     .connect()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn jump_host(mut self, jump: &Session) -> Self {
        self.jump = Some(Arc::clone(&jump.inner));
        self
    }

    /// Connects `jump` first and reaches the server through it, as
    /// [`jump_host`](Self::jump_host) does with a session already open.
    pub(crate) fn jump_via(mut self, jump: SessionBuilder) -> Self {
        self.jump_via = Some(Box::new(jump));
        self
    }

    /// Deadline for each step of reaching the server: DNS resolution, the
    /// TCP connection (shared by all addresses of the host) and the SSH
    /// handshake. Defaults to 30 seconds. A zero duration counts as one
    /// millisecond: there is no infinite wait.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline for each blocking operation once the handshake is done:
    /// authentication, and every SFTP and exec call on the session.
    /// Defaults to 60 seconds. A zero duration counts as one millisecond:
    /// there is no infinite wait.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The local address to connect from, for partners that allow-list our
    /// source address. Defaults to the one the operating system picks.
    pub fn bind_address(mut self, address: IpAddr) -> Self {
        self.bind_address = Some(address);
        self
    }

    /// Connects, checks the host key, and authenticates.
    ///
    /// In order: the credential is loaded (a key file is read and its
    /// passphrase checked) and `known_hosts` files are read; the host is
    /// resolved and each address tried within the connect timeout; the SSH
    /// handshake runs with the pinned key types preferred; the host key is
    /// checked against the pins, **before any authentication request**;
    /// then the credential is offered.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::InvalidInput`] without a credential;
    /// - [`ErrorKind::KeyFile`] / [`ErrorKind::Passphrase`] for a key that
    ///   cannot be read or opened;
    /// - [`ErrorKind::Connect`] when the host cannot be resolved or reached;
    /// - [`ErrorKind::Timeout`] when a step outlasts its deadline;
    /// - [`ErrorKind::Disconnected`] when the server hangs up before we are
    ///   authenticated (the message names our source address: the partner
    ///   may allow-list addresses);
    /// - [`ErrorKind::HostKeyMismatch`], [`ErrorKind::HostKeyUnknown`],
    ///   [`ErrorKind::HostKeyRevoked`] when the host key is not trusted;
    /// - [`ErrorKind::Auth`] when the server refuses the credential (the
    ///   message lists the methods it allows);
    /// - [`ErrorKind::Protocol`] when no common algorithm is found or the
    ///   server speaks garbage.
    pub fn connect(self) -> Result<Session> {
        let credential = self.credential.as_ref().ok_or_else(|| {
            Error::invalid(
                "session",
                "no credential: call .credential(Credential::key_pair(...)) before .connect()",
            )
        })?;
        let loaded = credential.load()?;
        let policy = HostKeyPolicy::load(
            &self.pins,
            &self.host,
            self.port,
            self.host_key_alias.as_deref(),
        )?;

        let (stream, peer_addr, local_addr) = self.transport()?;
        let probe = stream.try_clone().map_err(|e| self.connect_error(e))?;
        let mut ssh =
            ssh2::Session::new().map_err(|e| Error::ssh("cannot create a libssh2 session", e))?;
        ssh.set_timeout(millis(self.connect_timeout));
        ssh.set_tcp_stream(stream);
        let prefs = host_key_preferences(&ssh, &policy.preferred_key_types());
        debug!("host key algorithms offered: {prefs}");
        ssh.method_pref(MethodType::HostKey, &prefs)
            .map_err(|e| Error::ssh("cannot set host key algorithm preferences", e))?;

        ssh.handshake()
            .map_err(|e| self.handshake_error(e, &probe, local_addr))?;
        log_algorithms(&ssh);
        let banner = ssh.banner().map(str::to_string);

        let (blob, _) = ssh.host_key().ok_or_else(|| Error::Ssh {
            kind: ErrorKind::Protocol,
            context: format!("{}:{} presented no host key", self.host, self.port),
            source: None,
        })?;
        let host_key = HostKey::from_blob(blob)?;
        if let Err(e) = policy.check(&host_key) {
            warn!(
                "host key of {}:{} not trusted ({host_key}): disconnecting before authentication",
                self.host, self.port
            );
            let _ = ssh.disconnect(
                Some(DisconnectCode::HostKeyNotVerifiable),
                "host key not trusted",
                None,
            );
            return Err(e);
        }
        info!(
            "host key of {}:{} verified: {host_key}",
            self.host, self.port
        );

        ssh.set_timeout(millis(self.timeout));
        let user = self.user.as_deref().unwrap_or(credential.user());
        let auth = self.authenticate(&ssh, user, &loaded, local_addr)?;
        info!(
            "authenticated to {}:{} as {} with {auth}",
            self.host, self.port, user
        );
        Ok(Session {
            inner: Arc::new(SessionInner {
                ssh,
                host: self.host,
                port: self.port,
                user: user.to_string(),
                local_addr,
                peer_addr,
                host_key,
                banner,
                auth,
                timeout: self.timeout,
                socket: probe,
                closed: AtomicBool::new(false),
                op_lock: Mutex::new(()),
            }),
        })
    }

    /// The byte stream to the server: a TCP connection (direct or through
    /// an HTTP proxy) or a tunnel through the jump host; with the addresses
    /// of the TCP connection it rides on.
    fn transport(&self) -> Result<(Transport, SocketAddr, SocketAddr)> {
        let via = match (&self.jump, &self.jump_via) {
            (None, Some(via)) => Some(via.as_ref().clone().connect()?.inner),
            _ => None,
        };
        if let Some(jump) = self.jump.as_ref().or(via.as_ref()) {
            let socket = tunnel::open(jump, &self.host, self.port)?;
            info!(
                "connected to {}:{} through jump host {}",
                self.host,
                self.port,
                jump.target()
            );
            return Ok((Transport::Tunnel(socket), jump.peer_addr, jump.local_addr));
        }
        let deadline = Instant::now() + self.connect_timeout;
        let (dial_host, dial_port) = match &self.http_proxy {
            Some((host, port)) => (host.as_str(), *port),
            None => (self.host.as_str(), self.port),
        };
        let addrs = resolve(dial_host, dial_port, self.connect_timeout)?;
        let stream = self.connect_tcp(dial_host, dial_port, &addrs, deadline)?;
        if self.http_proxy.is_some() {
            self.http_connect(&stream, dial_host, dial_port, deadline)?;
        }
        let peer_addr = stream.peer_addr().map_err(|e| self.connect_error(e))?;
        let local_addr = stream.local_addr().map_err(|e| self.connect_error(e))?;
        info!(
            "connected to {}:{} ({peer_addr}) from {local_addr}",
            self.host, self.port
        );
        Ok((Transport::Tcp(stream), peer_addr, local_addr))
    }

    fn connect_error(&self, source: io::Error) -> Error {
        self.connect_error_to(&self.host, self.port, source)
    }

    fn connect_error_to(&self, host: &str, port: u16, source: io::Error) -> Error {
        Error::Connect {
            host: host.to_string(),
            port,
            local: self.bind_address,
            source,
        }
    }

    /// Asks the HTTP proxy on `stream` for a tunnel to the server.
    fn http_connect(
        &self,
        stream: &TcpStream,
        proxy: &str,
        proxy_port: u16,
        deadline: Instant,
    ) -> Result<()> {
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let operation = format!("HTTP CONNECT to {authority} through {proxy}:{proxy_port}");
        let io_error = |e: io::Error| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout {
                operation: operation.clone(),
                timeout: self.connect_timeout,
            },
            _ => self.connect_error_to(proxy, proxy_port, e),
        };
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io_error(io::ErrorKind::TimedOut.into()))?;
        stream
            .set_write_timeout(Some(remaining))
            .map_err(io_error)?;
        stream.set_read_timeout(Some(remaining)).map_err(io_error)?;
        let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        (&mut &*stream)
            .write_all(request.as_bytes())
            .map_err(io_error)?;
        // Byte by byte: whatever follows the headers is the SSH server's
        // banner, which libssh2 must read itself.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(Error::Ssh {
                    kind: ErrorKind::Protocol,
                    context: format!("{operation}: the proxy's answer is not HTTP"),
                    source: None,
                });
            }
            match (&mut &*stream).read(&mut byte).map_err(io_error)? {
                0 => {
                    return Err(self.connect_error_to(
                        proxy,
                        proxy_port,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the proxy closed the connection",
                        ),
                    ))
                }
                _ => head.push(byte[0]),
            }
        }
        stream.set_write_timeout(None).map_err(io_error)?;
        stream.set_read_timeout(None).map_err(io_error)?;
        let head = String::from_utf8_lossy(&head);
        let status_line = head.lines().next().unwrap_or_default().trim().to_string();
        let status = status_line.split_whitespace().nth(1);
        if !status_line.starts_with("HTTP/1.") || status != Some("200") {
            return Err(Error::Ssh {
                kind: ErrorKind::Connect,
                context: format!("{operation}: the proxy answered `{status_line}`"),
                source: None,
            });
        }
        debug!("{operation}: tunnel open");
        Ok(())
    }

    /// Tries each address in turn until one connects or the deadline passes.
    fn connect_tcp(
        &self,
        host: &str,
        port: u16,
        addrs: &[SocketAddr],
        deadline: Instant,
    ) -> Result<TcpStream> {
        let candidates: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.bind_address.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
            .collect();
        if candidates.is_empty() {
            return Err(self.connect_error_to(
                host,
                port,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the host has no address of the bind address's family",
                ),
            ));
        }
        let mut last = None;
        for addr in candidates {
            let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match try_connect(addr, self.bind_address, remaining) {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    debug!("TCP connect to {addr} failed: {e}");
                    last = Some(e);
                }
            }
        }
        match last {
            Some(e) if e.kind() != io::ErrorKind::TimedOut => {
                Err(self.connect_error_to(host, port, e))
            }
            _ => Err(Error::Timeout {
                operation: format!("TCP connect to {host}:{port}"),
                timeout: self.connect_timeout,
            }),
        }
    }

    fn handshake_error(&self, err: ssh2::Error, probe: &Transport, local: SocketAddr) -> Error {
        let kind = ssh2_kind(&err);
        if kind == ErrorKind::Timeout {
            return Error::Timeout {
                operation: format!("SSH handshake with {}:{}", self.host, self.port),
                timeout: self.connect_timeout,
            };
        }
        if kind == ErrorKind::Disconnected || peer_closed(probe) {
            return self.disconnected("the SSH handshake", local, err);
        }
        Error::ssh(
            format!("SSH handshake with {}:{} failed", self.host, self.port),
            err,
        )
    }

    fn disconnected(&self, stage: &'static str, local: SocketAddr, err: ssh2::Error) -> Error {
        Error::Disconnected {
            host: self.host.clone(),
            port: self.port,
            local: Some(local),
            stage,
            source: Some(Box::new(err) as BoxError),
        }
    }

    /// Maps an error raised during authentication that is not a refusal.
    fn auth_stage_error(&self, err: ssh2::Error, local: SocketAddr) -> Error {
        match ssh2_kind(&err) {
            ErrorKind::Timeout => Error::Timeout {
                operation: format!("authentication on {}:{}", self.host, self.port),
                timeout: self.timeout,
            },
            ErrorKind::Disconnected => self.disconnected("authentication", local, err),
            _ => Error::ssh(
                format!("authentication on {}:{} failed", self.host, self.port),
                err,
            ),
        }
    }

    fn authenticate(
        &self,
        ssh: &ssh2::Session,
        user: &str,
        loaded: &Loaded,
        local: SocketAddr,
    ) -> Result<AuthMethod> {
        // The `none` request: the server answers with the methods it allows.
        let allowed = ssh
            .auth_methods(user)
            .map_err(|e| self.auth_stage_error(e, local))?;
        if ssh.authenticated() {
            return Ok(AuthMethod::None);
        }
        let allowed = split_methods(allowed);
        debug!("{}:{} allows: {}", self.host, self.port, allowed.join(","));
        let offers = |m: &str| allowed.iter().any(|a| a == m);

        let mut tried = Vec::new();
        match loaded {
            Loaded::Keys(keys) if offers("publickey") => {
                for (index, key) in keys.iter().enumerate() {
                    tried.push(key.describe());
                    let result = ssh.userauth_pubkey_memory(
                        user,
                        key.public.as_deref(),
                        &key.private,
                        key.passphrase.as_ref().map(|p| p.expose_secret()),
                    );
                    if self.settle(ssh, result, Some(key), local)? {
                        if index > 0 {
                            warn!(
                                "{}:{} still accepts only an older key: {} ({}); refused: {}",
                                self.host,
                                self.port,
                                key.label,
                                key.describe(),
                                keys[..index]
                                    .iter()
                                    .map(|k| k.label.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            );
                        }
                        return Ok(AuthMethod::PublicKey {
                            fingerprint: key.fingerprint.clone(),
                            label: key.label.clone(),
                        });
                    }
                }
            }
            Loaded::Keys(keys) => tried.extend(keys.iter().map(LoadedKey::describe)),
            Loaded::Password(pw) if offers("password") => {
                tried.push("password".to_string());
                let result = ssh.userauth_password(user, pw.expose_secret());
                if self.settle(ssh, result, None, local)? {
                    return Ok(AuthMethod::Password);
                }
            }
            Loaded::Password(pw) if offers("keyboard-interactive") => {
                tried.push("keyboard-interactive (password)".to_string());
                let mut prompter = PasswordPrompter {
                    password: pw,
                    rounds: 0,
                };
                let result = ssh.userauth_keyboard_interactive(user, &mut prompter);
                if self.settle(ssh, result, None, local)? {
                    return Ok(AuthMethod::KeyboardInteractive);
                }
            }
            Loaded::Agent(socket) if offers("publickey") => {
                if let Some(method) =
                    self.auth_agent(ssh, user, socket.as_deref(), local, &mut tried)?
                {
                    return Ok(method);
                }
            }
            Loaded::KeyboardInteractive(responder) if offers("keyboard-interactive") => {
                tried.push("keyboard-interactive".to_string());
                let mut prompter = CallbackPrompter {
                    responder: responder.as_ref(),
                };
                let result = ssh.userauth_keyboard_interactive(user, &mut prompter);
                if self.settle(ssh, result, None, local)? {
                    return Ok(AuthMethod::KeyboardInteractive);
                }
            }
            // The server does not offer what we have.
            Loaded::Password(_) => tried.push("password".to_string()),
            Loaded::Agent(_) => tried.push("publickey (ssh-agent)".to_string()),
            Loaded::KeyboardInteractive(_) => tried.push("keyboard-interactive".to_string()),
        }
        // Ask again: the list may have changed after a partial success.
        let allowed = ssh.auth_methods(user).map(split_methods).unwrap_or(allowed);
        Err(Error::Auth {
            user: user.to_string(),
            host: self.host.clone(),
            port: self.port,
            tried,
            allowed,
            source: None,
        })
    }

    /// Tries every identity the agent holds, in the agent's order.
    fn auth_agent(
        &self,
        ssh: &ssh2::Session,
        user: &str,
        socket: Option<&std::path::Path>,
        local: SocketAddr,
        tried: &mut Vec<String>,
    ) -> Result<Option<AuthMethod>> {
        let where_ =
            socket.map_or_else(|| "SSH_AUTH_SOCK".to_string(), |p| p.display().to_string());
        let agent_error = |e: ssh2::Error| Error::KeyFile {
            path: socket.map(std::path::Path::to_path_buf),
            reason: format!("the ssh-agent ({where_}) cannot be used"),
            source: Some(Box::new(e)),
        };
        let mut agent = ssh.agent().map_err(agent_error)?;
        if let Some(socket) = socket {
            agent.set_identity_path(socket).map_err(agent_error)?;
        }
        agent.connect().map_err(agent_error)?;
        agent.list_identities().map_err(agent_error)?;
        let identities = agent.identities().map_err(agent_error)?;
        if identities.is_empty() {
            tried.push(format!("publickey (ssh-agent {where_} holds no key)"));
        }
        let mut accepted = None;
        for identity in &identities {
            let fingerprint = HostKey::from_blob(identity.blob())
                .map(|k| k.fingerprint())
                .ok();
            let label = identity.comment().to_string();
            tried.push(format!(
                "publickey {label} {} (ssh-agent)",
                fingerprint.as_deref().unwrap_or("?")
            ));
            let result = agent.userauth(user, identity);
            if self.settle(ssh, result, None, local)? {
                accepted = Some(AuthMethod::PublicKey { fingerprint, label });
                break;
            }
        }
        let _ = agent.disconnect();
        Ok(accepted)
    }

    /// The outcome of one authentication attempt: `Ok(true)` when we are in,
    /// `Ok(false)` when the server refused (or wants another method too),
    /// an error when the attempt could not be made (key unusable, hang-up,
    /// timeout).
    fn settle(
        &self,
        ssh: &ssh2::Session,
        result: std::result::Result<(), ssh2::Error>,
        key: Option<&LoadedKey>,
        local: SocketAddr,
    ) -> Result<bool> {
        match result {
            Ok(()) => Ok(ssh.authenticated()),
            Err(e) => {
                if let Some(err) = key.and_then(|k| k.auth_error(&e)) {
                    return Err(err);
                }
                if ssh2_kind(&e) == ErrorKind::Auth {
                    Ok(false)
                } else {
                    Err(self.auth_stage_error(e, local))
                }
            }
        }
    }
}

/// Answers the password to the first round of echo-off prompts; later
/// rounds (a second factor, say) get empty answers, so the password is
/// never sent twice.
struct PasswordPrompter<'a> {
    password: &'a SecretString,
    rounds: u32,
}

impl KeyboardInteractivePrompt for PasswordPrompter<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        _instructions: &str,
        prompts: &[Prompt<'b>],
    ) -> Vec<String> {
        let answer = self.rounds == 0 && prompts.iter().any(|p| !p.echo);
        if answer {
            self.rounds += 1;
        }
        prompts
            .iter()
            .map(|p| {
                if answer && !p.echo {
                    self.password.expose_secret().to_string()
                } else {
                    String::new()
                }
            })
            .collect()
    }
}

/// Hands each keyboard-interactive round to the caller's responder.
struct CallbackPrompter<'a> {
    responder: &'a crate::credential::Responder,
}

impl KeyboardInteractivePrompt for CallbackPrompter<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        instructions: &str,
        prompts: &[Prompt<'b>],
    ) -> Vec<String> {
        let ours: Vec<AuthPrompt> = prompts
            .iter()
            .map(|p| AuthPrompt::new(p.text.to_string(), p.echo))
            .collect();
        let answers = (self.responder)(instructions, &ours);
        // One answer per prompt, whatever the responder returned.
        (0..prompts.len())
            .map(|i| {
                answers
                    .get(i)
                    .map(|a| a.expose_secret().to_string())
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn split_methods(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// libssh2 takes timeouts in milliseconds, and 0 means forever: never pass 0.
pub(crate) fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u128::from(u32::MAX)) as u32
}

/// Resolves `host`, bounded by `timeout` (the system resolver has no deadline
/// of its own: it runs on a helper thread that is abandoned on timeout).
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    thread::Builder::new()
        .name("etl-ssh-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(|e| Error::io("cannot start the resolver thread", e))?;
    let resolve_error = |source| Error::Resolve {
        host: host.to_string(),
        source,
    };
    match rx.recv_timeout(timeout.max(Duration::from_millis(1))) {
        Ok(Ok(addrs)) if !addrs.is_empty() => {
            debug!("{host} resolves to {addrs:?}");
            Ok(addrs)
        }
        Ok(Ok(_)) => Err(resolve_error(io::Error::new(
            io::ErrorKind::NotFound,
            "no address",
        ))),
        Ok(Err(e)) => Err(resolve_error(e)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout {
            operation: format!("resolving {host}"),
            timeout,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(resolve_error(io::Error::other(
            "the resolver thread ended without an answer",
        ))),
    }
}

fn try_connect(addr: SocketAddr, bind: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = bind {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&addr.into(), timeout.max(Duration::from_millis(1)))?;
    // libssh2 does not set TCP_NODELAY; without it each handshake round
    // trip and small SFTP request waits on Nagle's algorithm.
    socket.set_nodelay(true)?;
    socket.set_keepalive(true)?;
    Ok(socket.into())
}

/// Whether the server has closed its end: a peek sees end-of-file or a reset.
fn peer_closed(probe: &Transport) -> bool {
    let socket = socket2::SockRef::from(probe);
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
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

/// The socket libssh2 talks through.
#[derive(Debug)]
pub(crate) enum Transport {
    /// A TCP connection to the server or the HTTP proxy.
    Tcp(TcpStream),
    /// Our end of a jump host's tunnel.
    Tunnel(UnixStream),
}

impl Transport {
    fn try_clone(&self) -> io::Result<Transport> {
        Ok(match self {
            Transport::Tcp(s) => Transport::Tcp(s.try_clone()?),
            Transport::Tunnel(s) => Transport::Tunnel(s.try_clone()?),
        })
    }
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Tcp(s) => s.as_fd(),
            Transport::Tunnel(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The host key algorithms to offer: those of the pinned key types first,
/// then the rest libssh2 supports. Certificate algorithms are left out:
/// libssh2 cannot check a host certificate, and a server that has one then
/// presents its plain key.
fn host_key_preferences(ssh: &ssh2::Session, pinned_types: &[String]) -> String {
    let supported = ssh.supported_algs(MethodType::HostKey).unwrap_or_default();
    let mut list: Vec<&str> = Vec::new();
    let pinned = pinned_types.iter().flat_map(|t| algorithms_for_key_type(t));
    for alg in pinned.chain(supported.iter().copied()) {
        if supported.contains(&alg) && !alg.contains("-cert-") && !list.contains(&alg) {
            list.push(alg);
        }
    }
    list.join(",")
}

/// The signature algorithms a host key of `key_type` can be presented with.
fn algorithms_for_key_type(key_type: &str) -> Vec<&str> {
    match key_type {
        "ssh-rsa" => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        other => vec![other],
    }
}

fn log_algorithms(ssh: &ssh2::Session) {
    let m = |t| ssh.methods(t).unwrap_or("?");
    debug!(
        "negotiated kex {}, host key {}, cipher {} / {}, mac {} / {}, compression {} / {}",
        m(MethodType::Kex),
        m(MethodType::HostKey),
        m(MethodType::CryptCs),
        m(MethodType::CryptSc),
        m(MethodType::MacCs),
        m(MethodType::MacSc),
        m(MethodType::CompCs),
        m(MethodType::CompSc),
    );
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

    #[test]
    fn rsa_pin_prefers_sha2_signatures() {
        assert_eq!(
            algorithms_for_key_type("ssh-rsa"),
            ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        );
        assert_eq!(algorithms_for_key_type("ssh-ed25519"), ["ssh-ed25519"]);
    }

    #[test]
    fn pinned_types_come_first_and_certificates_never() {
        let ssh = ssh2::Session::new().expect("session");
        let prefs = host_key_preferences(&ssh, &["ecdsa-sha2-nistp256".to_string()]);
        assert!(prefs.starts_with("ecdsa-sha2-nistp256,"), "{prefs}");
        assert!(!prefs.contains("-cert-"), "{prefs}");
        assert!(prefs.contains("ssh-ed25519"), "{prefs}");
    }

    #[test]
    fn split_methods_trims_and_drops_empties() {
        assert_eq!(
            split_methods("publickey, password,,"),
            ["publickey", "password"]
        );
        assert!(split_methods("").is_empty());
    }

    #[test]
    fn builder_requires_a_credential() {
        let err = Session::builder("127.0.0.1").connect().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
