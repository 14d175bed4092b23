//! Host certificates against sshd's `HostCertificate`: a CA pinned by an
//! `@cert-authority` line or `KnownHost::cert_authority` accepts the
//! server's certificate, checked before any authentication; an expired
//! certificate, one for another name, one by another CA, a revoked CA and
//! a plain key where only a CA is pinned are refused with what to do.

mod common;

use common::{client_key, KeyFormat, KeyKind, Sshd, SshdBuilder, StartSshd};
use etl_ssh::{Error, ErrorKind, KnownHost, Session, SessionBuilder};

struct Server {
    sshd: Sshd,
    key: common::ClientKey,
    dir: tempfile::TempDir,
}

fn start(builder: SshdBuilder) -> Option<Server> {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let sshd = builder
        .authorized_key(&key.public_line)
        .start_if_available()?;
    Some(Server {
        sshd,
        key,
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

fn certified() -> SshdBuilder {
    Sshd::builder().host_certificate(true)
}

impl Server {
    /// A builder with no pin but `pins`.
    fn builder(&self, pins: Vec<KnownHost>) -> SessionBuilder {
        let mut builder = Session::builder(self.sshd.host())
            .port(self.sshd.port())
            .credential(self.key.credential());
        for pin in pins {
            builder = builder.known_host(pin);
        }
        builder
    }

    fn known_hosts(&self, lines: &[String]) -> KnownHost {
        let path = self.dir.path().join("known_hosts");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write known_hosts");
        KnownHost::known_hosts_file(path)
    }

    /// The CA pin from the server's own `@cert-authority` line.
    fn ca_pin(&self) -> KnownHost {
        KnownHost::cert_authority(self.sshd.ca_public_line()).expect("CA pin")
    }

    /// Whether sshd logged that no authentication request came.
    fn no_auth_attempted(&self) -> bool {
        let log = self.sshd.log_since_ready();
        !log.contains("userauth-request") && !log.contains("Accepted publickey")
    }
}

#[test]
fn a_certificate_by_the_pinned_ca_is_accepted() {
    let Some(server) = start(certified()) else {
        return;
    };
    let pin = server.known_hosts(&[server.sshd.ca_known_hosts_line()]);
    let session = server.builder(vec![pin]).connect().expect("CA line");
    assert_eq!(
        session.host_key().fingerprint(),
        server
            .sshd
            .host_key_fingerprint(common::HostKeyType::Ed25519)
    );
    assert!(
        server
            .sshd
            .log_since_ready()
            .contains("host key algorithm: ssh-ed25519-cert-v01@openssh.com"),
        "the certificate was not negotiated:\n{}",
        server.sshd.log_since_ready()
    );
    drop(session);
    let session = server
        .builder(vec![server.ca_pin()])
        .connect()
        .expect("cert_authority pin");
    let out = session
        .exec()
        .expect("exec")
        .run("echo certified")
        .expect("run");
    assert_eq!(out.stdout(), b"certified\n");
}

#[test]
fn an_expired_certificate_is_refused() {
    let Some(server) = start(certified().host_certificate_validity("20200101:20200102")) else {
        return;
    };
    let err = server
        .builder(vec![server.ca_pin()])
        .connect()
        .expect_err("expired");
    assert_eq!(err.kind(), ErrorKind::HostCertificate, "{err}");
    let text = err.to_string();
    for words in [
        format!(
            "host certificate of 127.0.0.1:{} is not valid",
            server.sshd.port()
        ),
        "it expired at 2020-01-0".to_string(),
        "ask the partner to renew it".to_string(),
        "ssh-ed25519-cert-v01@openssh.com".to_string(),
    ] {
        assert!(text.contains(&words), "{text:?} lacks {words:?}");
    }
    assert!(!err.is_transient());
    assert!(
        server.no_auth_attempted(),
        "{}",
        server.sshd.log_since_ready()
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_unless_aliased() {
    let Some(server) = start(certified().host_certificate_principal("sftp.partner.example")) else {
        return;
    };
    let err = server
        .builder(vec![server.ca_pin()])
        .connect()
        .expect_err("another name");
    assert_eq!(err.kind(), ErrorKind::HostCertificate, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("it is for sftp.partner.example, not 127.0.0.1 (the host name)"),
        "{text}"
    );
    assert!(text.contains("host_key_alias"), "{text}");
    assert!(server.no_auth_attempted());

    // The alias is the name certificates and known_hosts lines are read for.
    let line = server.sshd.ca_known_hosts_line().replace(
        &format!("[127.0.0.1]:{}", server.sshd.port()),
        "sftp.partner.example",
    );
    let pin = server.known_hosts(&[line]);
    server
        .builder(vec![pin])
        .host_key_alias("sftp.partner.example")
        .connect()
        .expect("aliased");
}

#[test]
fn another_ca_a_revoked_ca_and_a_plain_key() {
    let Some(server) = start(certified()) else {
        return;
    };
    let Some(other) = start(certified()) else {
        return;
    };
    // Signed by a CA that is not the pinned one.
    let err = server
        .builder(vec![
            KnownHost::cert_authority(other.sshd.ca_public_line()).expect("pin")
        ])
        .connect()
        .expect_err("other CA");
    assert_eq!(err.kind(), ErrorKind::HostCertificate, "{err}");
    assert!(
        err.to_string()
            .contains("signed by a CA that is not pinned"),
        "{err}"
    );

    // The CA pinned and revoked.
    let ca = server.sshd.ca_public_line().to_string();
    let pin = server.known_hosts(&[
        server.sshd.ca_known_hosts_line(),
        format!("@revoked * {ca}"),
    ]);
    let err = server.builder(vec![pin]).connect().expect_err("revoked CA");
    assert_eq!(err.kind(), ErrorKind::HostKeyRevoked, "{err}");
    assert!(err.to_string().contains("@revoked"), "{err}");

    // A server without a certificate, where only a CA is pinned.
    let Some(plain) = start(Sshd::builder()) else {
        return;
    };
    let err = plain
        .builder(vec![server.ca_pin()])
        .connect()
        .expect_err("plain key");
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{err}");
    assert!(matches!(err, Error::HostKeyMismatch { .. }));
    let text = err.to_string();
    assert!(
        text.contains("a host certificate signed by CA SHA256:")
            && text.contains("cert_authority pin"),
        "{text}"
    );
    assert!(plain.no_auth_attempted());
}

#[test]
fn ecdsa_and_rsa_certificates() {
    use common::HostKeyType;
    for ty in [HostKeyType::Ecdsa, HostKeyType::Rsa] {
        let Some(server) = start(certified().host_key_types([ty])) else {
            return;
        };
        let session = server
            .builder(vec![server.ca_pin()])
            .connect()
            .unwrap_or_else(|e| panic!("{ty:?} certificate: {e}"));
        assert_eq!(
            session.host_key().fingerprint(),
            server.sshd.host_key_fingerprint(ty)
        );
        assert!(
            server
                .sshd
                .log_since_ready()
                .contains("-cert-v01@openssh.com"),
            "{ty:?}: no certificate negotiated"
        );
    }
}
