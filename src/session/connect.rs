//! One connection recipe: transport → handshake → verify → authenticate
//! → connection. [`Prepared`] holds what every connection of a session
//! shares, made once: the loaded credential (a key file read and
//! decrypted once), the pins (`known_hosts` read once), the algorithm
//! lists, and the bastion connection of an ssh config's `ProxyJump`;
//! extra sessions ([`Session::connect_another`]) and reconnections use it
//! again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use log::{debug, info, trace, warn};
use ssh2::{DisconnectCode, MethodType};

use super::config::Jump;
use super::negotiate::OfferedLists;
use super::{Session, SessionBuilder, SessionInner, Transport};
use crate::algorithms::{Offer, Offers};
use crate::conn::{millis, Conn, Parts};
use crate::credential::Loaded;
use crate::error::{code, ssh2_code, ssh2_kind, BoxError};
use crate::known_host::{HostKeyPolicy, Presented};
use crate::{Error, ErrorKind, HostKey, Result};

impl SessionBuilder {
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
        Arc::new(Prepared::new(self)?).connect()
    }
}

/// What every connection of one session shares, made once from the
/// settings.
pub(crate) struct Prepared {
    pub(super) settings: SessionBuilder,
    /// The user we log in as.
    user: String,
    credential: Loaded,
    policy: HostKeyPolicy,
    offers: Offers,
    /// The bastion session: the caller's, or one connected from the
    /// settings the first time it is needed (again if it died).
    jump: Mutex<Option<Arc<SessionInner>>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("target", &self.settings.target())
            .field("user", &self.user)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Checks the settings, loads the credential (reads and decrypts a key
    /// file) and reads the pins.
    fn new(settings: SessionBuilder) -> Result<Prepared> {
        let credential = settings.credential.as_ref().ok_or_else(|| {
            Error::invalid(
                "session",
                "no credential: call .credential(Credential::key_pair(...)) before .connect()",
            )
        })?;
        let offers = Offers::resolve(&settings.algorithms)?;
        let user = settings
            .user
            .clone()
            .unwrap_or_else(|| credential.user().to_string());
        let loaded = credential.load()?;
        let policy = HostKeyPolicy::load(
            &settings.pins,
            &settings.host,
            settings.port,
            settings.host_key_alias.as_deref(),
        )?;
        let jump = match &settings.jump {
            Some(Jump::Session(inner)) => Some(Arc::clone(inner)),
            _ => None,
        };
        Ok(Prepared {
            settings,
            user,
            credential: loaded,
            policy,
            offers,
            jump: Mutex::new(jump),
        })
    }

    /// The bastion session, connected now if need be: once for every
    /// connection of the session, again only after it ended.
    pub(super) fn jump(&self) -> Result<Option<Arc<SessionInner>>> {
        let mut jump = self.jump.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inner) = jump.as_ref() {
            let dead = matches!(self.settings.jump, Some(Jump::Config(_)))
                && inner.conn().socket().peer_closed();
            if !dead {
                return Ok(Some(Arc::clone(inner)));
            }
            info!(
                "{}: the jump host {} ended its connection; connecting it again",
                self.settings.target(),
                inner.target()
            );
        }
        let Some(Jump::Config(via)) = &self.settings.jump else {
            return Ok(None);
        };
        let inner = via.as_ref().clone().connect()?.inner;
        *jump = Some(Arc::clone(&inner));
        Ok(Some(inner))
    }

    /// One connection: transport, handshake, host key check (before any
    /// authentication), authentication.
    pub(crate) fn connect(self: &Arc<Self>) -> Result<Session> {
        let this = &self.settings;
        let jump = self.jump()?;
        let jump = jump.as_ref();
        let (policy, offers) = (&self.policy, &self.offers);
        let pinned = policy.preferred_key_types();
        let verified = match this.open_verified(policy, offers, &pinned, false, jump) {
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
                this.other_key_types(policy, offers, &shown, jump)
                    .ok_or(err)?
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

        ssh.set_timeout(millis(this.timeout));
        let user = self.user.as_str();
        let auth = this.authenticate(&ssh, user, &self.credential, local_addr)?;
        let auth_banner = super::auth::auth_banner(&ssh);
        if let Some(text) = &auth_banner {
            info!(
                "{}:{} banner: {}",
                this.host,
                this.port,
                crate::error::printable(text)
            );
        }
        info!(
            "authenticated to {}:{} as {} with {}",
            this.host,
            this.port,
            user,
            auth.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", then ")
        );
        // Keepalives only once authenticated: OpenSSH takes a global request
        // before authentication for a protocol error.
        let keepalive_secs = u32::try_from(this.keepalive.as_secs()).unwrap_or(u32::MAX);
        if keepalive_secs > 0 {
            ssh.set_keepalive(true, keepalive_secs);
        }
        Ok(Session {
            inner: Arc::new(SessionInner {
                conn: Mutex::new(Arc::new(Conn::new(Parts {
                    ssh,
                    socket: probe,
                    host: this.host.clone(),
                    port: this.port,
                    local_addr,
                    peer_addr,
                    timeout: this.timeout,
                    keepalive: keepalive_secs > 0,
                }))),
                prepared: Arc::clone(self),
                user: user.to_string(),
                host_key,
                banner,
                auth_banner,
                auth,
                jump: jump.cloned(),
                closed: std::sync::atomic::AtomicBool::new(false),
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
        jump: Option<&Arc<SessionInner>>,
    ) -> Result<Verified> {
        let host_keys = if only {
            only_key_types(&offers.host_key, types)
        } else {
            host_key_preferences(&offers.host_key, types, policy.has_cert_authorities())
        };
        trace!("{}:{}: TCP connect", self.host, self.port);
        let (stream, peer_addr, local_addr) = self.transport(jump)?;
        let probe = stream.try_clone().map_err(|e| self.connect_error(e))?;
        let mut ssh =
            ssh2::Session::new().map_err(|e| Error::ssh("cannot create a libssh2 session", e))?;
        ssh.set_timeout(millis(self.connect_timeout));
        ssh.set_tcp_stream(stream);
        offers.apply(&ssh, &host_keys)?;

        trace!("{}:{}: SSH handshake", self.host, self.port);
        ssh.handshake().map_err(|e| {
            let identified = ssh.banner_bytes().is_some();
            let offered = OfferedLists::new(offers, &host_keys);
            self.handshake_error(e, &probe, local_addr, identified, &offered, jump)
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
        jump: Option<&Arc<SessionInner>>,
    ) -> Option<Verified> {
        KEY_TYPES
            .iter()
            .filter(|t| **t != shown)
            .filter(|t| !only_key_types(&offers.host_key, &[(**t).to_string()]).is_empty())
            .find_map(|family| {
                match self.open_verified(policy, offers, &[(*family).to_string()], true, jump) {
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
        jump: Option<&Arc<SessionInner>>,
    ) -> Error {
        if ssh2_code(&err) == code::KEX_FAILURE {
            // Before the hang-up check: the server closes as soon as it
            // finds no common algorithm either.
            return self.negotiation_error(offered, err, jump);
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
    use crate::algorithms::{AlgorithmFamily, Algorithms};

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
