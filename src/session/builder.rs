//! The builder's settings and `connect`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, info, warn};
use ssh2::{DisconnectCode, MethodType};

use crate::algorithms::{AlgorithmFamily, Offer, Offers};

use super::negotiate::OfferedLists;
use super::{Session, SessionBuilder, SessionInner, Transport};
use crate::conn::{millis, Conn, Parts};
use crate::error::{code, ssh2_code, ssh2_kind, BoxError};
use crate::known_host::{HostKeyPolicy, Presented};
use crate::{Credential, Error, ErrorKind, HostKey, KnownHost, Result};

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
    /// (BENCHMARKS.md, "Receive buffer"). A fixed buffer turns that growth
    /// off; 4 MiB (which Linux doubles for its bookkeeping) still carries
    /// more than a transfer keeps in flight per session at 100 ms round
    /// trip. The jump host's and HTTP proxy's connections get it too.
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

    /// Connects, checks the host key, and authenticates.
    ///
    /// In order: the credential is loaded (a key file is read and its
    /// passphrase checked) and `known_hosts` files are read; the host is
    /// resolved and each address tried within the connect timeout; the SSH
    /// handshake runs with the pinned key types preferred; the host key is
    /// checked against the pins, **before any authentication request**;
    /// then the credential is offered. When the pins are fingerprints only
    /// (which say nothing of the key type) and the key the server shows
    /// first does not match, each other key type is asked for on a new
    /// connection, as `ssh-keyscan` does, before the mismatch is reported.
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
        let offers = Offers::resolve(&self.algorithms)?;
        let loaded = credential.load()?;
        let policy = HostKeyPolicy::load(
            &self.pins,
            &self.host,
            self.port,
            self.host_key_alias.as_deref(),
        )?;

        let pinned = policy.preferred_key_types();
        let verified = match self.open_verified(&policy, &offers, &pinned, false) {
            // A fingerprint says nothing of the key type: the server may hold
            // the pinned key under another type than the one it showed
            // first. Ask for each other type in turn, as `ssh-keyscan`
            // does, before calling it a mismatch.
            Err(err @ Error::HostKeyMismatch { .. })
                if pinned.is_empty() && !policy.has_cert_authorities() =>
            {
                let shown = match &err {
                    Error::HostKeyMismatch { key_type, .. } => key_type.clone(),
                    _ => String::new(),
                };
                self.other_key_types(&policy, &offers, &shown).ok_or(err)?
            }
            other => other?,
        };
        let Verified {
            ssh,
            probe,
            peer_addr,
            local_addr,
            host_key,
            banner,
        } = verified;

        ssh.set_timeout(millis(self.timeout));
        let user = self.user.as_deref().unwrap_or(credential.user());
        let auth = self.authenticate(&ssh, user, &loaded, local_addr)?;
        let auth_banner = super::auth::auth_banner(&ssh);
        if let Some(text) = &auth_banner {
            info!(
                "{}:{} banner: {}",
                self.host,
                self.port,
                crate::error::printable(text)
            );
        }
        info!(
            "authenticated to {}:{} as {} with {}",
            self.host,
            self.port,
            user,
            auth.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", then ")
        );
        // Keepalives only once authenticated: OpenSSH takes a global request
        // before authentication for a protocol error.
        let keepalive_secs = u32::try_from(self.keepalive.as_secs()).unwrap_or(u32::MAX);
        if keepalive_secs > 0 {
            ssh.set_keepalive(true, keepalive_secs);
        }
        let settings = self.clone();
        Ok(Session {
            inner: Arc::new(SessionInner {
                conn: Mutex::new(Arc::new(Conn::new(Parts {
                    ssh,
                    socket: probe,
                    host: self.host,
                    port: self.port,
                    local_addr,
                    peer_addr,
                    timeout: self.timeout,
                    keepalive: keepalive_secs > 0,
                }))),
                settings,
                user: user.to_string(),
                host_key,
                banner,
                auth_banner,
                auth,
            }),
        })
    }
}

/// Host key types a server may hold, for fingerprint pins (see `connect`).
const KEY_TYPES: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// A connection whose host key matched the pins, not yet authenticated.
struct Verified {
    ssh: ssh2::Session,
    probe: Transport,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    host_key: HostKey,
    banner: Option<String>,
}

impl SessionBuilder {
    /// Connects, runs the handshake offering the `types` first (with
    /// `only`, nothing else), and checks the host key against `policy`;
    /// disconnects before any authentication when it does not match.
    fn open_verified(
        &self,
        policy: &HostKeyPolicy,
        offers: &Offers,
        types: &[String],
        only: bool,
    ) -> Result<Verified> {
        let host_keys = if only {
            only_key_types(&offers.host_key, types)
        } else {
            host_key_preferences(&offers.host_key, types, policy.has_cert_authorities())
        };
        let (stream, peer_addr, local_addr) = self.transport()?;
        let probe = stream.try_clone().map_err(|e| self.connect_error(e))?;
        let mut ssh =
            ssh2::Session::new().map_err(|e| Error::ssh("cannot create a libssh2 session", e))?;
        ssh.set_timeout(millis(self.connect_timeout));
        ssh.set_tcp_stream(stream);
        offers.apply(&ssh, &host_keys)?;

        ssh.handshake().map_err(|e| {
            let identified = ssh.banner_bytes().is_some();
            let offered = OfferedLists::new(offers, &host_keys);
            self.handshake_error(e, &probe, local_addr, identified, &offered)
        })?;
        log_algorithms(&ssh);
        let banner = ssh.banner().map(str::to_string);

        let (blob, _) = ssh.host_key().ok_or_else(|| Error::Ssh {
            kind: ErrorKind::Protocol,
            context: format!("{}:{} presented no host key", self.host, self.port),
            source: None,
        })?;
        let presented = Presented::from_blob(blob)?;
        let host_key = presented.key().clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Err(e) = policy.check_presented(&presented, now) {
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
        match &presented {
            Presented::Certificate(cert) => info!(
                "host certificate of {}:{} verified: {cert}",
                self.host, self.port
            ),
            Presented::Plain(_) => info!(
                "host key of {}:{} verified: {host_key}",
                self.host, self.port
            ),
        }
        Ok(Verified {
            ssh,
            probe,
            peer_addr,
            local_addr,
            host_key,
            banner,
        })
    }

    /// For fingerprint pins: asks the server for each key type other than
    /// `shown`, one connection each; the first whose key matches.
    fn other_key_types(
        &self,
        policy: &HostKeyPolicy,
        offers: &Offers,
        shown: &str,
    ) -> Option<Verified> {
        KEY_TYPES
            .iter()
            .filter(|t| **t != shown)
            .filter(|t| !only_key_types(&offers.host_key, &[(**t).to_string()]).is_empty())
            .find_map(|family| {
                match self.open_verified(policy, offers, &[(*family).to_string()], true) {
                    Ok(verified) => Some(verified),
                    Err(e) => {
                        debug!("{}: no matching {family} key: {e}", self.target());
                        None
                    }
                }
            })
    }

    /// `identified`: whether the server sent its identification line.
    fn handshake_error(
        &self,
        err: ssh2::Error,
        probe: &Transport,
        local: SocketAddr,
        identified: bool,
        offered: &OfferedLists,
    ) -> Error {
        if ssh2_code(&err) == code::KEX_FAILURE {
            // Before the hang-up check: the server closes as soon as it
            // finds no common algorithm either.
            return self.negotiation_error(offered, err);
        }
        let kind = ssh2_kind(&err);
        if kind == ErrorKind::Timeout {
            return Error::Timeout {
                operation: format!("SSH handshake with {}:{}", self.host, self.port),
                timeout: self.connect_timeout,
            };
        }
        let stage = if identified {
            Error::STAGE_HANDSHAKE
        } else {
            Error::STAGE_IDENTIFICATION
        };
        if probe.peer_closed() {
            return self.disconnected(stage, local, err);
        }
        if ssh2_code(&err) == code::BANNER_RECV {
            // The connection is still open: what came was not a banner.
            return Error::Ssh {
                kind: ErrorKind::Protocol,
                context: format!(
                    "{}:{} did not answer with an SSH banner: is it an SSH server?",
                    self.host, self.port
                ),
                source: Some(Box::new(err)),
            };
        }
        if kind == ErrorKind::Disconnected {
            return self.disconnected(stage, local, err);
        }
        Error::ssh(
            format!("SSH handshake with {}:{} failed", self.host, self.port),
            err,
        )
    }

    pub(super) fn disconnected(
        &self,
        stage: &'static str,
        local: SocketAddr,
        err: ssh2::Error,
    ) -> Error {
        Error::Disconnected {
            host: self.host.clone(),
            port: self.port,
            local: Some(local),
            stage,
            source: Some(Box::new(err) as BoxError),
        }
    }
}

/// The host key algorithms to offer: `offer` with, unless the caller
/// chose the order, the certificate algorithms first when a certificate
/// authority is pinned (`certs`), then those of the pinned key types.
/// Without a CA the certificate algorithms are left out: a server that has
/// a certificate then presents its plain key.
fn host_key_preferences(offer: &Offer, pinned_types: &[String], certs: bool) -> Vec<String> {
    let allowed: Vec<&String> = offer
        .names
        .iter()
        .filter(|a| certs || !a.contains("-cert-"))
        .collect();
    let mut list: Vec<String> = Vec::new();
    if !offer.explicit_order {
        if certs {
            list.extend(
                allowed
                    .iter()
                    .filter(|a| a.contains("-cert-"))
                    .map(|a| (*a).clone()),
            );
        }
        for alg in pinned_types.iter().flat_map(|t| algorithms_for_key_type(t)) {
            if allowed.iter().any(|a| *a == alg) && !list.iter().any(|l| l == alg) {
                list.push(alg.to_string());
            }
        }
    }
    for alg in allowed {
        if !list.contains(alg) {
            list.push(alg.clone());
        }
    }
    list
}

/// The host key algorithms of the key `types` alone, as far as `offer`
/// allows them (for fingerprint pins, one type per connection).
fn only_key_types(offer: &Offer, types: &[String]) -> Vec<String> {
    types
        .iter()
        .flat_map(|t| algorithms_for_key_type(t))
        .filter(|alg| offer.names.iter().any(|a| a == alg))
        .map(str::to_string)
        .collect()
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
    use crate::algorithms::Algorithms;

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
        let offer = Offers::resolve(&Algorithms::default())
            .expect("defaults")
            .host_key;
        let prefs = host_key_preferences(&offer, &["ecdsa-sha2-nistp256".to_string()], false);
        assert_eq!(prefs[0], "ecdsa-sha2-nistp256", "{prefs:?}");
        assert!(!prefs.iter().any(|p| p.contains("-cert-")), "{prefs:?}");
        assert!(prefs.iter().any(|p| p == "ssh-ed25519"), "{prefs:?}");
        let rsa = host_key_preferences(&offer, &["ssh-rsa".to_string()], false);
        assert_eq!(rsa[..2], ["rsa-sha2-512", "rsa-sha2-256"], "{rsa:?}");
        assert!(
            !rsa.iter().any(|p| p == "ssh-rsa"),
            "no SHA-1 unless asked: {rsa:?}"
        );
    }

    #[test]
    fn a_pinned_ca_asks_for_certificates_first() {
        let offer = Offers::resolve(&Algorithms::default())
            .expect("defaults")
            .host_key;
        let prefs = host_key_preferences(&offer, &["ssh-ed25519".to_string()], true);
        assert!(prefs[0].ends_with("-cert-v01@openssh.com"), "{prefs:?}");
        let first_plain = prefs
            .iter()
            .position(|p| !p.contains("-cert-"))
            .expect("plain algorithms too");
        assert_eq!(prefs[first_plain], "ssh-ed25519", "{prefs:?}");
        assert!(prefs[first_plain..].iter().all(|p| !p.contains("-cert-")));
        assert!(!prefs.iter().any(|p| p == "ssh-rsa-cert-v01@openssh.com"));
    }

    #[test]
    fn an_explicit_order_is_kept() {
        let mut algorithms = Algorithms::default();
        algorithms.push(AlgorithmFamily::HostKey, "ssh-ed25519,ecdsa-sha2-nistp256");
        let offer = Offers::resolve(&algorithms).expect("offer").host_key;
        let prefs = host_key_preferences(&offer, &["ecdsa-sha2-nistp256".to_string()], true);
        assert_eq!(prefs, ["ssh-ed25519", "ecdsa-sha2-nistp256"]);
        assert_eq!(
            only_key_types(&offer, &["ssh-rsa".to_string()]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn builder_requires_a_credential() {
        let err = Session::builder("127.0.0.1").connect().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
