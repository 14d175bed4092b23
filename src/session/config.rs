//! [`SessionBuilder`]: a session's settings as a plain value, and their
//! setters, each with its default. `connect.rs` turns them into a
//! connection.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Session, SessionInner, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE, DEFAULT_PORT,
    DEFAULT_RECEIVE_BUFFER, DEFAULT_TIMEOUT,
};
use crate::algorithms::{AlgorithmFamily, Algorithms};
use crate::{Credential, KnownHost};

/// Builds a [`Session`]: where to connect, as whom, and which host keys to trust.
///
/// Only the host is required to start; [`SessionBuilder::connect`] needs a
/// credential. Without any [`known_host`](SessionBuilder::known_host) pin
/// the connection is refused after the handshake with
/// [`ErrorKind::HostKeyUnknown`](crate::ErrorKind::HostKeyUnknown), whose message carries the fingerprint the
/// server presented: there is no default that trusts any key.
///
/// The builder is a plain value: cloning it clones settings, never a
/// connection (a [`jump_host`](SessionBuilder::jump_host) session is shared,
/// as the caller's). [`connect`](SessionBuilder::connect) turns it into a
/// session.
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) credential: Option<Credential>,
    pub(super) pins: Vec<KnownHost>,
    pub(super) host_key_alias: Option<String>,
    pub(super) http_proxy: Option<(String, u16)>,
    pub(super) jump: Option<Jump>,
    pub(super) user: Option<String>,
    pub(super) keepalive: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) timeout: Duration,
    pub(super) bind_address: Option<IpAddr>,
    pub(super) receive_buffer: Option<usize>,
    pub(super) algorithms: Algorithms,
}

/// How the server is reached through a bastion.
#[derive(Debug, Clone)]
pub(crate) enum Jump {
    /// A session the caller opened ([`SessionBuilder::jump_host`]).
    Session(Arc<SessionInner>),
    /// A bastion still to connect, once for every connection of the
    /// session (an ssh config's `ProxyJump`).
    Config(Box<SessionBuilder>),
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
            user: None,
            keepalive: DEFAULT_KEEPALIVE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            bind_address: None,
            receive_buffer: Some(DEFAULT_RECEIVE_BUFFER),
            algorithms: Algorithms::default(),
        }
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
        self.jump = Some(Jump::Session(Arc::clone(&jump.inner)));
        self
    }

    /// Reaches the server through `jump`, connected once (when the first
    /// connection is made) and shared by every connection of the session,
    /// extra sessions and reconnections included, as
    /// [`jump_host`](Self::jump_host) does with a session already open.
    pub(crate) fn jump_via(mut self, jump: SessionBuilder) -> Self {
        self.jump = Some(Jump::Config(Box::new(jump)));
        self
    }

    /// Interval of SSH keepalives (`keepalive@openssh.com`, reply
    /// requested) during long transfers and commands, and for
    /// [`Session::keepalive`] on an idle session: they keep NATs and
    /// firewalls from dropping a quiet connection. TCP keepalive is on as
    /// well. Defaults to 15 seconds; `Duration::ZERO` turns SSH keepalives
    /// off; libssh2 counts anything under 2 seconds as 2.
    pub fn keepalive(mut self, interval: Duration) -> Self {
        self.keepalive = interval;
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

    /// The TCP receive buffer (`SO_RCVBUF`) of the connection, set before
    /// it connects. Defaults to 4 MiB where the system grants that much
    /// (`net.core.rmem_max` on Linux; elsewhere, and where the limit is
    /// lower, nothing is set). `None` leaves it to the kernel.
    ///
    /// Linux grows a new connection's receive buffer only slowly under
    /// libssh2's reads: without a fixed one, downloads on a new connection
    /// ran at about half speed here for their first hundreds of megabytes
    /// (BENCHMARKS.md, "Receive buffer"), and through a 50 or 100 ms link
    /// in the kernel 18–36 % slower than with 4 MiB (BENCHMARKS.md,
    /// "Through a link in the kernel"). A fixed buffer turns that growth
    /// off; 4 MiB (which Linux doubles for its bookkeeping) carried as much
    /// as the server's send buffer let through at 50 and 100 ms there (2 MiB
    /// did too). The jump host's and HTTP proxy's connections get it too.
    pub fn receive_buffer(mut self, bytes: Option<usize>) -> Self {
        self.receive_buffer = bytes;
        self
    }

    /// Key exchange algorithms, in OpenSSH's `KexAlgorithms` syntax:
    /// `"+a,b"` appends to the list, `"-a"` removes from it, `"^a"` puts
    /// first, `"a,b"` replaces it; names may be patterns (`*`, `?`).
    /// Several calls apply in turn. Defaults to
    /// [`AlgorithmFamily::Kex.defaults()`](AlgorithmFamily::defaults):
    /// what this build of libssh2 has, without SHA-1 key exchange.
    ///
    /// For a server that offers only SHA-1 key exchange, in a build that
    /// has it ([`has_sha1_algorithms`](crate::has_sha1_algorithms); README,
    /// "Old servers"):
    ///
    /// ```no_run
    /// use etl_ssh::{Credential, KnownHost, Session};
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let session = Session::builder("old-appliance.partner.example")
    ///     .kex_algorithms("+diffie-hellman-group14-sha1")
    ///     .credential(Credential::key_pair("etl", "/keys/id_ed25519"))
    ///     .known_host(KnownHost::known_hosts_file("/etc/etl/known_hosts"))
    ///     .connect()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A malformed list, or an algorithm this build lacks, is reported by
    /// [`connect`](Self::connect).
    pub fn kex_algorithms(mut self, list: impl AsRef<str>) -> Self {
        self.algorithms.push(AlgorithmFamily::Kex, list.as_ref());
        self
    }

    /// Host key (signature) algorithms, in OpenSSH's `HostKeyAlgorithms`
    /// syntax (see [`kex_algorithms`](Self::kex_algorithms)). Defaults to
    /// [`AlgorithmFamily::HostKey.defaults()`](AlgorithmFamily::defaults),
    /// without `ssh-rsa` (RSA with SHA-1) and `ssh-dss`; `+ssh-rsa` opts
    /// in. Unless the list was given whole (or with `^`), the pinned key
    /// types still go first, as OpenSSH orders them.
    pub fn host_key_algorithms(mut self, list: impl AsRef<str>) -> Self {
        self.algorithms
            .push(AlgorithmFamily::HostKey, list.as_ref());
        self
    }

    /// Ciphers, both directions, in OpenSSH's `Ciphers` syntax (see
    /// [`kex_algorithms`](Self::kex_algorithms)). Defaults to
    /// [`AlgorithmFamily::Cipher.defaults()`](AlgorithmFamily::defaults)
    /// (libssh2's list, CBC modes included, as before).
    pub fn ciphers(mut self, list: impl AsRef<str>) -> Self {
        self.algorithms.push(AlgorithmFamily::Cipher, list.as_ref());
        self
    }

    /// MACs, both directions, in OpenSSH's `MACs` syntax (see
    /// [`kex_algorithms`](Self::kex_algorithms)). Defaults to
    /// [`AlgorithmFamily::Mac.defaults()`](AlgorithmFamily::defaults),
    /// without `hmac-sha1`; `+hmac-sha1` opts in.
    pub fn macs(mut self, list: impl AsRef<str>) -> Self {
        self.algorithms.push(AlgorithmFamily::Mac, list.as_ref());
        self
    }

    /// `host:port`, for messages.
    pub(crate) fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
