//! Host certificates: a server's key signed by a certificate authority
//! that we pin (`@cert-authority` in `known_hosts`, or
//! [`KnownHost::cert_authority`](crate::KnownHost::cert_authority)).
//!
//! libssh2 checks that the server holds the certificate's key (the
//! handshake signature) and nothing more; the certificate itself is
//! checked here, as OpenSSH's `check_host_cert` does, before any
//! authentication: signed by a pinned CA that is not `@revoked`, a host
//! certificate, naming the host (or the `host_key_alias`) among its
//! principals, within its validity window; the signature verified by
//! `ssh-key`.

use signature::Verifier as _;

use super::keys::{read_string, valid_algorithm_name};
use super::{Accept, HostKey, HostKeyPolicy};
use crate::{Error, ErrorKind, Result};

/// `SSH2_CERT_TYPE_HOST` (PROTOCOL.certkeys).
const HOST_CERT: u32 = 2;
/// The suffix of certificate type names.
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// What a server presented in the handshake.
#[derive(Debug)]
pub(crate) enum Presented {
    /// A plain public key.
    Plain(HostKey),
    /// An OpenSSH host certificate.
    Certificate(Box<HostCertificate>),
}

/// An OpenSSH certificate a server presented (PROTOCOL.certkeys), read
/// here rather than by `ssh-key` 0.6, which refuses the validity "forever"
/// (`u64::MAX`) that `ssh-keygen` writes by default.
#[derive(Debug)]
pub(crate) struct HostCertificate {
    /// The certificate type, `ssh-ed25519-cert-v01@openssh.com`, ...
    algorithm: String,
    /// The key it certifies.
    key: HostKey,
    cert_type: u32,
    key_id: String,
    principals: Vec<String>,
    valid_after: u64,
    valid_before: u64,
    /// The CA's key (the signer).
    ca: HostKey,
    /// What the CA signed: the certificate up to its signature.
    signed: Vec<u8>,
    signature: Vec<u8>,
}

/// How many key fields (strings or mpints) each certificate type's key
/// has, and the plain key type they make.
fn key_layout(algorithm: &str) -> Option<(usize, String)> {
    let base = algorithm.strip_suffix(CERT_SUFFIX)?;
    let fields = match base {
        "ssh-ed25519" => 1,
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => 2,
        "ssh-rsa" => 2,
        "ssh-dss" => 4,
        "sk-ecdsa-sha2-nistp256" => 3,
        "sk-ssh-ed25519" => 2,
        _ => return None,
    };
    let plain = if base.starts_with("sk-") {
        format!("{base}@openssh.com")
    } else {
        base.to_string()
    };
    Some((fields, plain))
}

/// Reads a certificate blob; the reason when it is malformed.
fn parse_certificate(blob: &[u8]) -> std::result::Result<HostCertificate, String> {
    let mut rest = blob;
    fn string<'a>(rest: &mut &'a [u8], what: &str) -> std::result::Result<&'a [u8], String> {
        read_string(rest).ok_or_else(|| format!("it ends inside its {what}"))
    }
    let u64_field = |rest: &mut &[u8], what: &str| -> std::result::Result<u64, String> {
        let (bytes, tail) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| format!("it ends inside its {what}"))?;
        *rest = tail;
        Ok(u64::from_be_bytes(*bytes))
    };
    let text = |bytes: &[u8], what: &str| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| format!("its {what} is not UTF-8"))
    };
    let algorithm = text(string(&mut rest, "type")?, "type")?;
    let (fields, plain_type) = key_layout(&algorithm)
        .ok_or_else(|| format!("{algorithm} is not a known certificate type"))?;
    string(&mut rest, "nonce")?;
    let key_start = rest;
    for _ in 0..fields {
        string(&mut rest, "key")?;
    }
    let key_fields = &key_start[..key_start.len() - rest.len()];
    let mut plain = Vec::with_capacity(4 + plain_type.len() + key_fields.len());
    plain.extend_from_slice(&u32::try_from(plain_type.len()).unwrap_or(0).to_be_bytes());
    plain.extend_from_slice(plain_type.as_bytes());
    plain.extend_from_slice(key_fields);
    let key = super::keys::parse_blob(&plain)?;
    u64_field(&mut rest, "serial")?;
    let (cert_type, tail) = rest
        .split_first_chunk::<4>()
        .ok_or("it ends inside its certificate type")?;
    let cert_type = u32::from_be_bytes(*cert_type);
    rest = tail;
    let key_id = text(string(&mut rest, "key id")?, "key id")?;
    let mut packed = string(&mut rest, "principals")?;
    let mut principals = Vec::new();
    while !packed.is_empty() {
        principals.push(text(string(&mut packed, "principals")?, "principal")?);
    }
    let valid_after = u64_field(&mut rest, "validity")?;
    let valid_before = u64_field(&mut rest, "validity")?;
    for what in ["critical options", "extensions", "reserved field"] {
        string(&mut rest, what)?;
    }
    let ca = super::keys::parse_blob(string(&mut rest, "CA key")?)
        .map_err(|e| format!("its CA key: {e}"))?;
    let signed = blob[..blob.len() - rest.len()].to_vec();
    let signature = string(&mut rest, "signature")?.to_vec();
    if !rest.is_empty() {
        return Err("it has bytes after its signature".to_string());
    }
    Ok(HostCertificate {
        algorithm,
        key,
        cert_type,
        key_id,
        principals,
        valid_after,
        valid_before,
        ca,
        signed,
        signature,
    })
}

impl HostCertificate {
    /// Whether the CA's signature over the certificate holds.
    fn signature_holds(&self) -> std::result::Result<(), String> {
        let ca = ssh_key::PublicKey::from_bytes(self.ca.as_bytes())
            .map_err(|e| format!("its CA key cannot be used ({e})"))?;
        let signature = ssh_key::Signature::try_from(self.signature.as_slice())
            .map_err(|e| format!("its signature does not parse ({e})"))?;
        ca.key_data()
            .verify(&self.signed, &signature)
            .map_err(|e| format!("its signature is not valid ({e})"))
    }
}

/// The key an OpenSSH certificate (its base64 field, as in a
/// `-cert.pub` file) certifies, as `type base64`; `None` when it is not
/// one.
pub(crate) fn certified_key(base64: &str) -> Option<String> {
    use base64::Engine as _;
    let blob = super::BASE64_ANY_PADDING.decode(base64.trim()).ok()?;
    parse_certificate(&blob)
        .ok()
        .map(|cert| cert.key.to_openssh())
}

impl Presented {
    /// Reads the blob libssh2 returns for the server's host key: a plain
    /// key or a certificate.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] for a blob that is neither.
    pub(crate) fn from_blob(blob: &[u8]) -> Result<Presented> {
        let mut rest = blob;
        let algorithm = read_string(&mut rest)
            .and_then(|name| std::str::from_utf8(name).ok())
            .filter(|name| valid_algorithm_name(name))
            .unwrap_or_default();
        if !algorithm.ends_with(CERT_SUFFIX) {
            return HostKey::from_blob(blob).map(Presented::Plain);
        }
        parse_certificate(blob)
            .map(|cert| Presented::Certificate(Box::new(cert)))
            .map_err(|reason| Error::Ssh {
                kind: ErrorKind::Protocol,
                context: format!("the server sent a malformed host certificate: {reason}"),
                source: None,
            })
    }

    /// The server's key: the plain one, or the one the certificate
    /// certifies.
    pub(crate) fn key(&self) -> &HostKey {
        match self {
            Presented::Plain(key) => key,
            Presented::Certificate(cert) => &cert.key,
        }
    }
}

impl std::fmt::Display for HostCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} `{}` for {} signed by CA {} {}",
            self.algorithm,
            self.key_id,
            self.key.fingerprint(),
            self.ca.algorithm(),
            self.ca.fingerprint()
        )
    }
}

impl HostKeyPolicy {
    /// Whether a certificate authority applies to this host: the handshake
    /// then asks for certificates first.
    pub(crate) fn has_cert_authorities(&self) -> bool {
        self.accept
            .iter()
            .any(|a| matches!(a, Accept::CertAuthority(_)))
    }

    /// Ok when `presented` is a plain key that matches a pin, or a valid
    /// certificate by a pinned CA (at `now`, seconds since 1970).
    ///
    /// # Errors
    ///
    /// As [`HostKeyPolicy::check`] for a plain key (a host with only CA
    /// pins is a [`HostKeyMismatch`](ErrorKind::HostKeyMismatch) naming
    /// them); for a certificate, [`ErrorKind::HostKeyRevoked`] when its
    /// CA or its key is `@revoked`, [`ErrorKind::HostCertificate`] when
    /// it is not valid (another CA, a user certificate, another host,
    /// outside its validity window, a bad signature).
    pub(crate) fn check_presented(&self, presented: &Presented, now: u64) -> Result<()> {
        let cert = match presented {
            Presented::Plain(key) => return self.check(key),
            Presented::Certificate(cert) => cert,
        };
        self.not_revoked(&cert.ca)?;
        self.not_revoked(&cert.key)?;
        let pinned_ca = self.accept.iter().find_map(|a| match a {
            Accept::CertAuthority(ca) if ca.key == cert.ca => Some(ca),
            _ => None,
        });
        let Some(pinned_ca) = pinned_ca else {
            // As OpenSSH: a certificate by a CA we do not know counts for
            // its plain key, which a plain pin may accept.
            if self.check(&cert.key).is_ok() {
                log::debug!(
                    "host certificate of {}:{} ({cert}) is by no pinned CA; its key is pinned",
                    self.host,
                    self.port
                );
                return Ok(());
            }
            let pinned: Vec<String> = self
                .accept
                .iter()
                .filter(|a| matches!(a, Accept::CertAuthority(_)))
                .map(Accept::describe)
                .collect();
            return Err(self.certificate_error(
                cert,
                if pinned.is_empty() {
                    "no certificate authority is pinned for this host; confirm the CA with \
                     the partner, then add an `@cert-authority` line to known_hosts \
                     (KnownHost::cert_authority)"
                        .to_string()
                } else {
                    format!(
                        "it is signed by a CA that is not pinned; pinned: {}",
                        pinned.join(" or ")
                    )
                },
            ));
        };
        if cert.cert_type != HOST_CERT {
            return Err(self.certificate_error(
                cert,
                "it is a user certificate, not a host certificate".to_string(),
            ));
        }
        let principals = &cert.principals;
        let name = self.principal.as_str();
        if !principals.is_empty() && !principals.iter().any(|p| principal_matches(p, name)) {
            return Err(self.certificate_error(
                cert,
                format!(
                    "it is for {}, not {name} (the {}): connect with a name it lists, or \
                     set host_key_alias to one",
                    principals.join(", "),
                    if self.lookup_from == "host_key_alias" {
                        "host_key_alias"
                    } else {
                        "host name"
                    }
                ),
            ));
        }
        let (after, before) = (cert.valid_after, cert.valid_before);
        if now < after {
            return Err(self.certificate_error(
                cert,
                format!(
                    "it is not valid before {} (now {}): check this machine's clock, or ask \
                     the partner for a certificate valid now",
                    utc(after),
                    utc(now)
                ),
            ));
        }
        if now >= before {
            return Err(self.certificate_error(
                cert,
                format!(
                    "it expired at {} (now {}): ask the partner to renew it",
                    utc(before),
                    utc(now)
                ),
            ));
        }
        cert.signature_holds()
            .map_err(|reason| self.certificate_error(cert, reason))?;
        log::debug!(
            "host certificate of {}:{} ({cert}) accepted: CA {}, principal {name}",
            self.host,
            self.port,
            pinned_ca.source
        );
        Ok(())
    }

    fn certificate_error(&self, cert: &HostCertificate, reason: String) -> Error {
        Error::HostCertificate {
            host: self.host.clone(),
            port: self.port,
            certificate: cert.to_string(),
            reason,
        }
    }
}

/// OpenSSH's host certificate principal check: the name itself, or a
/// wildcard principal (`*.partner.example`) that matches it; names
/// compare without regard to ASCII case.
fn principal_matches(principal: &str, name: &str) -> bool {
    let (principal, name) = (principal.to_ascii_lowercase(), name.to_ascii_lowercase());
    principal == name
        || (principal.contains(['*', '?'])
            && crate::openssh_match::match_pattern(principal.as_bytes(), name.as_bytes()))
}

/// `2026-11-30 12:00:00 UTC` for seconds since 1970 (`forever` for the
/// largest value, which OpenSSH writes for no end).
pub(crate) fn utc(secs: u64) -> String {
    if secs == u64::MAX {
        return "forever".to_string();
    }
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KnownHost;
    use ssh_key::certificate::{Builder, CertType};
    use ssh_key::private::Ed25519Keypair;
    use ssh_key::PrivateKey;

    const NOW: u64 = 1_764_504_000; // 2025-11-30 12:00:00 UTC
    const HOST: &str = "sftp.partner.example";

    fn keypair(seed: u8) -> Ed25519Keypair {
        Ed25519Keypair::from_seed(&[seed; 32])
    }

    fn public_line(seed: u8) -> String {
        ssh_key::PublicKey::from(keypair(seed).public)
            .to_openssh()
            .expect("encode")
    }

    /// A certificate for host key `seed` 1, signed by CA `ca`.
    fn cert(ca: u8, kind: CertType, principals: &[&str], after: u64, before: u64) -> Vec<u8> {
        let mut builder =
            Builder::new([9u8; 16], keypair(1).public, after, before).expect("builder");
        builder.cert_type(kind).expect("type");
        builder.key_id("partner host").expect("key id");
        for p in principals {
            builder.valid_principal(*p).expect("principal");
        }
        if principals.is_empty() {
            builder.all_principals_valid().expect("any principal");
        }
        let ca = PrivateKey::from(keypair(ca));
        builder.sign(&ca).expect("sign").to_bytes().expect("encode")
    }

    fn good() -> Vec<u8> {
        cert(7, CertType::Host, &[HOST], NOW - 60, NOW + 3600)
    }

    fn policy(pins: &[KnownHost], alias: Option<&str>) -> HostKeyPolicy {
        HostKeyPolicy::load(pins, HOST, 22, alias).expect("policy")
    }

    fn ca_pin(seed: u8) -> KnownHost {
        KnownHost::cert_authority(public_line(seed)).expect("CA pin")
    }

    fn check(blob: &[u8], pins: &[KnownHost], alias: Option<&str>) -> Result<()> {
        let presented = Presented::from_blob(blob).expect("parses");
        policy(pins, alias).check_presented(&presented, NOW)
    }

    fn refused(blob: &[u8], pins: &[KnownHost], words: &str) -> ErrorKind {
        let err = check(blob, pins, None).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains(words), "{text:?} lacks {words:?}");
        err.kind()
    }

    #[test]
    fn a_valid_certificate_by_a_pinned_ca() {
        let blob = good();
        let presented = Presented::from_blob(&blob).expect("parses");
        assert_eq!(
            presented.key().to_openssh(),
            public_line(1)
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        );
        policy(&[ca_pin(7)], None)
            .check_presented(&presented, NOW)
            .expect("valid");
        let any_host = cert(7, CertType::Host, &[], NOW - 60, NOW + 60);
        check(&any_host, &[ca_pin(7)], None).expect("no principals: any host");
        let wildcard = cert(
            7,
            CertType::Host,
            &["*.partner.example"],
            NOW - 60,
            NOW + 60,
        );
        check(&wildcard, &[ca_pin(7)], None).expect("wildcard principal");
        let aliased = cert(7, CertType::Host, &["partner-sftp"], NOW - 60, NOW + 60);
        check(&aliased, &[ca_pin(7)], Some("partner-sftp")).expect("principal = alias");
    }

    #[test]
    fn cert_authority_lines_apply_to_their_hosts() {
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        use std::io::Write as _;
        writeln!(file, "@cert-authority *.partner.example {}", public_line(7)).expect("write");
        let pins = [KnownHost::known_hosts_file(file.path())];
        check(&good(), &pins, None).expect("CA line for *.partner.example");
        let other = HostKeyPolicy::load(&pins, "other.example", 22, None).expect("policy");
        let presented = Presented::from_blob(&good()).expect("parses");
        let err = other.check_presented(&presented, NOW).expect_err("no CA");
        assert_eq!(err.kind(), ErrorKind::HostCertificate);
        assert!(
            err.to_string()
                .contains("no certificate authority is pinned"),
            "{err}"
        );

        writeln!(file, "@revoked * {}", public_line(7)).expect("write");
        let err = check(&good(), &pins, None).expect_err("revoked CA");
        assert_eq!(err.kind(), ErrorKind::HostKeyRevoked);
        assert!(err.to_string().contains("@revoked"), "{err}");
    }

    #[test]
    fn invalid_certificates_say_why() {
        let ca = [ca_pin(7)];
        let expired = cert(7, CertType::Host, &[HOST], NOW - 7200, NOW - 3600);
        assert_eq!(
            refused(&expired, &ca, "it expired at 2025-11-30 11:00:00 UTC"),
            ErrorKind::HostCertificate
        );
        let early = cert(7, CertType::Host, &[HOST], NOW + 3600, NOW + 7200);
        refused(&early, &ca, "not valid before 2025-11-30 13:00:00 UTC");
        let elsewhere = cert(
            7,
            CertType::Host,
            &["db.partner.example"],
            NOW - 60,
            NOW + 60,
        );
        refused(
            &elsewhere,
            &ca,
            "it is for db.partner.example, not sftp.partner.example (the host name)",
        );
        let user = cert(7, CertType::User, &[HOST], NOW - 60, NOW + 60);
        refused(&user, &ca, "user certificate");
        refused(&good(), &[ca_pin(8)], "signed by a CA that is not pinned");
        let text = check(&good(), &[ca_pin(8)], None)
            .expect_err("other CA")
            .to_string();
        assert!(
            text.contains("partner host"),
            "names the certificate: {text}"
        );
    }

    #[test]
    fn a_forged_certificate_is_refused() {
        let mut blob = good();
        let at = blob
            .windows(12)
            .position(|w| w == b"partner host")
            .expect("key id in the blob");
        blob[at] = b'P';
        refused(&blob, &[ca_pin(7)], "signature is not valid");
    }

    #[test]
    fn a_plain_key_where_only_a_ca_is_pinned() {
        let plain = ssh_key::PublicKey::from(keypair(1).public)
            .to_bytes()
            .expect("blob");
        let err = check(&plain, &[ca_pin(7)], None).expect_err("plain key");
        assert_eq!(err.kind(), ErrorKind::HostKeyMismatch);
        let text = err.to_string();
        assert!(
            text.contains("a host certificate signed by CA SHA256:"),
            "{text}"
        );
        assert!(text.contains("cert_authority pin"), "{text}");
        // A plain pin for the key inside accepts a certificate by another CA.
        let key_pin = KnownHost::public_key(public_line(1)).expect("pin");
        check(&good(), &[key_pin], None).expect("plain pin");
    }

    #[test]
    fn malformed_certificates_are_protocol_errors() {
        let blob = good();
        for cut in [30, 60, blob.len() - 1] {
            let err = Presented::from_blob(&blob[..cut]).expect_err("cut");
            assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(Presented::from_blob(&longer)
            .expect_err("trailing")
            .to_string()
            .contains("after its signature"));
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_764_504_000), "2025-11-30 12:00:00 UTC");
        assert_eq!(utc(u64::MAX), "forever");
    }

    #[test]
    fn principals() {
        assert!(principal_matches(
            "sftp.partner.example",
            "SFTP.partner.example"
        ));
        assert!(principal_matches(
            "*.partner.example",
            "sftp.partner.example"
        ));
        assert!(!principal_matches("*.partner.example", "partner.example"));
        assert!(!principal_matches("127.0.0.2", "127.0.0.1"));
    }
}
