//! `Session` against a real OpenSSH sshd on 127.0.0.1: credentials, host-key
//! pins, algorithm preference, source address, and the errors for each.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{client_key, current_user, HostKeyType, KeyFormat, KeyKind, Sshd, StartSshd};
use etl_ssh::{AuthMethod, Credential, ErrorKind, KeyPair, KnownHost, Session, SessionBuilder};
use secrecy::SecretString;

fn pin_line(server: &Sshd, ty: HostKeyType) -> KnownHost {
    KnownHost::public_key(server.host_key_public_line(ty)).expect("host key line parses")
}

/// Starts a server that authorizes a fresh key of each listed kind/format.
fn server_with_key(
    kind: KeyKind,
    format: KeyFormat,
    passphrase: Option<&str>,
) -> Option<(Sshd, common::ClientKey)> {
    let key = client_key(kind, format, passphrase);
    let server = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_if_available()?;
    Some((server, key))
}

fn connect_with_key(kind: KeyKind, format: KeyFormat) {
    let Some((server, key)) = server_with_key(kind, format, None) else {
        return;
    };
    let session = server
        .session_builder()
        .credential(key.credential())
        .connect()
        .unwrap_or_else(|e| panic!("{kind:?}/{format:?}: {e} ({e:?})"));
    assert_eq!(session.user(), current_user());
    assert_eq!(
        session.host_key().fingerprint(),
        server.host_key_fingerprint(HostKeyType::Ed25519)
    );
    assert!(
        session
            .identification()
            .unwrap_or("")
            .starts_with("SSH-2.0-OpenSSH"),
        "{:?}",
        session.identification()
    );
    match session.auth_method() {
        AuthMethod::PublicKey { fingerprint, .. } => {
            if format == KeyFormat::OpenSsh {
                assert_eq!(fingerprint.as_deref(), Some(key.fingerprint.as_str()));
            }
        }
        other => panic!("authenticated with {other:?}"),
    }
    // The marker the host-key tests look for really is what sshd logs for
    // an authentication request: without it their check could not fail.
    assert!(
        server.wait_for_log("userauth-request", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    session.close().expect("close");
}

#[test]
fn ed25519_openssh_key() {
    connect_with_key(KeyKind::Ed25519, KeyFormat::OpenSsh);
}

#[test]
fn ecdsa_openssh_key() {
    connect_with_key(KeyKind::Ecdsa, KeyFormat::OpenSsh);
}

#[test]
fn rsa3072_openssh_key_signs_with_sha2() {
    // OpenSSH 8.8+ refuses ssh-rsa (SHA-1) signatures: success proves rsa-sha2.
    connect_with_key(KeyKind::Rsa3072, KeyFormat::OpenSsh);
}

#[test]
fn rsa_pem_pkcs1_key() {
    connect_with_key(KeyKind::Rsa3072, KeyFormat::Pem);
}

#[test]
fn ecdsa_pem_sec1_key() {
    connect_with_key(KeyKind::Ecdsa, KeyFormat::Pem);
}

#[test]
fn rsa_pkcs8_key() {
    connect_with_key(KeyKind::Rsa3072, KeyFormat::Pkcs8);
}

#[test]
fn key_held_in_memory() {
    let Some((server, key)) = server_with_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None) else {
        return;
    };
    let pem = std::fs::read_to_string(&key.path).expect("read key");
    let session = server
        .session_builder()
        .credential(Credential::key_pair_pem(
            current_user(),
            SecretString::from(pem),
        ))
        .connect()
        .expect("in-memory key connects");
    assert!(
        matches!(session.auth_method(), AuthMethod::PublicKey { fingerprint: Some(fp), .. } if *fp == key.fingerprint),
        "{:?}",
        session.auth_method()
    );
}

#[test]
fn encrypted_openssh_key_with_passphrase() {
    let Some((server, key)) =
        server_with_key(KeyKind::Ed25519, KeyFormat::OpenSsh, Some("open sesame"))
    else {
        return;
    };
    server
        .session_builder()
        .credential(
            key.credential()
                .with_passphrase(SecretString::from("open sesame")),
        )
        .connect()
        .expect("encrypted key with the right passphrase connects");

    let err = server
        .session_builder()
        .credential(
            key.credential()
                .with_passphrase(SecretString::from("wrong")),
        )
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Passphrase, "{err}");
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    assert!(
        err.to_string().contains(&key.path.display().to_string()),
        "{err}"
    );

    let err = server
        .session_builder()
        .credential(key.credential())
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Passphrase, "{err}");
    assert!(err.to_string().contains("no passphrase"), "{err}");
}

#[test]
fn encrypted_pem_key_with_passphrase() {
    let Some((server, key)) = server_with_key(KeyKind::Rsa3072, KeyFormat::Pem, Some("pem pass"))
    else {
        return;
    };
    server
        .session_builder()
        .credential(
            key.credential()
                .with_passphrase(SecretString::from("pem pass")),
        )
        .connect()
        .expect("encrypted PEM key with the right passphrase connects");
    let err = server
        .session_builder()
        .credential(key.credential().with_passphrase(SecretString::from("nope")))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Passphrase, "{err} ({err:?})");
}

#[test]
fn missing_key_file_names_the_path() {
    let Some(server) = Sshd::builder().start_if_available() else {
        return;
    };
    let err = server
        .session_builder()
        .credential(Credential::key_pair(
            current_user(),
            "/nonexistent/etl-ssh/id_ed25519",
        ))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::KeyFile);
    assert!(
        err.to_string().contains("/nonexistent/etl-ssh/id_ed25519"),
        "{err}"
    );
}

#[test]
fn key_not_authorized_lists_allowed_methods() {
    let Some((server, _authorized)) = server_with_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None)
    else {
        return;
    };
    let stranger = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let err = server
        .session_builder()
        .credential(stranger.credential())
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let text = err.to_string();
    assert!(text.contains(&stranger.fingerprint), "{text}");
    assert!(text.contains("the server allows: publickey"), "{text}");
}

#[test]
fn password_and_wrong_password() {
    let Some(server) = Sshd::builder()
        .password_authentication(true)
        .start_if_available()
    else {
        return;
    };
    let user = server.password_user().expect("password user");
    let password = server.password().expect("password").clone();
    let session = server
        .session_builder()
        .credential(Credential::password(user, password.clone()))
        .connect()
        .expect("password login");
    assert_eq!(session.auth_method(), &AuthMethod::Password);
    assert_eq!(session.user(), user);

    let err = server
        .session_builder()
        .credential(Credential::password(
            user,
            SecretString::from("not the password"),
        ))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("password"), "{err}");
}

#[test]
fn password_answers_keyboard_interactive() {
    let Some(server) = Sshd::builder()
        .kbd_interactive_authentication(true)
        .start_if_available()
    else {
        return;
    };
    let user = server.password_user().expect("password user");
    let password = server.password().expect("password").clone();
    let session = server
        .session_builder()
        .credential(Credential::password(user, password.clone()))
        .connect()
        .expect("keyboard-interactive login");
    assert_eq!(session.auth_method(), &AuthMethod::KeyboardInteractive);

    let err = server
        .session_builder()
        .credential(Credential::password(
            user,
            SecretString::from("not the password"),
        ))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

/// A test sshd that owns the client key it authorizes: the key's folder
/// lives as long as the server and goes with it.
struct KeyServer {
    server: Sshd,
    _key: common::ClientKey,
}

impl std::ops::Deref for KeyServer {
    type Target = Sshd;

    fn deref(&self) -> &Sshd {
        &self.server
    }
}

fn key_server() -> Option<(KeyServer, Credential)> {
    let (server, key) = server_with_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None)?;
    let cred = key.credential();
    Some((KeyServer { server, _key: key }, cred))
}

fn bare_builder(server: &Sshd, cred: &Credential) -> SessionBuilder {
    Session::builder(server.host())
        .port(server.port())
        .credential(cred.clone())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
}

#[test]
fn fingerprint_pin() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    // A fingerprint says nothing of the key type: the server shows its
    // ed25519 key first, and the pinned ecdsa or rsa key is asked for in
    // turn, on new connections, before any authentication.
    for (ty, alg) in [
        (HostKeyType::Ecdsa, "ecdsa-sha2-nistp256"),
        (HostKeyType::Rsa, "ssh-rsa"),
    ] {
        let pin = KnownHost::fingerprint(server.host_key_fingerprint(ty)).expect("fingerprint");
        let session = bare_builder(&server, &cred)
            .known_host(pin)
            .connect()
            .unwrap_or_else(|e| panic!("{ty:?} fingerprint pin: {e}"));
        assert_eq!(session.host_key().algorithm(), alg);
        assert_eq!(
            session.host_key().fingerprint(),
            server.host_key_fingerprint(ty)
        );
    }
}

#[test]
fn fingerprint_pin_alone_matches_default_key() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    // libssh2's default preference puts ed25519 first among the three.
    let session = bare_builder(&server, &cred)
        .known_host(
            KnownHost::fingerprint(server.host_key_fingerprint(HostKeyType::Ed25519)).expect("fp"),
        )
        .connect()
        .expect("fingerprint pin");
    assert_eq!(
        session.host_key().fingerprint(),
        server.host_key_fingerprint(HostKeyType::Ed25519)
    );
}

#[test]
fn each_host_key_type_is_presented_when_pinned_alone() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    for (ty, alg) in [
        (HostKeyType::Ed25519, "ssh-ed25519"),
        (HostKeyType::Ecdsa, "ecdsa-sha2-nistp256"),
        (HostKeyType::Rsa, "ssh-rsa"),
    ] {
        let session = bare_builder(&server, &cred)
            .known_host(pin_line(&server, ty))
            .connect()
            .unwrap_or_else(|e| panic!("pinned by {ty:?}: {e}"));
        assert_eq!(session.host_key().algorithm(), alg);
        assert_eq!(
            session.host_key().fingerprint(),
            server.host_key_fingerprint(ty)
        );
    }
}

#[test]
fn host_certificate_server_presents_plain_key() {
    let Some((server, key)) = common::sshd_with_key(Sshd::builder().host_certificate(true)) else {
        return;
    };
    let session = key.connect_to(&server);
    assert_eq!(session.host_key().algorithm(), "ssh-ed25519");
}

fn write_known_hosts(dir: &std::path::Path, name: &str, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create known_hosts");
    for line in lines {
        writeln!(f, "{line}").expect("write known_hosts");
    }
    path
}

#[test]
fn known_hosts_with_port_and_garbage_lines() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let line = server.host_key_public_line(HostKeyType::Ed25519);
    let file = write_known_hosts(
        dir.path(),
        "known_hosts",
        &[
            "# a comment".into(),
            "this line is garbage".into(),
            format!("[127.0.0.1]:{} ssh-ed25519 !!!notbase64!!!", server.port()),
            format!("[127.0.0.1]:{} {line}", server.port()),
        ],
    );
    let session = bare_builder(&server, &cred)
        .known_host(KnownHost::known_hosts_file(&file))
        .connect()
        .expect("known_hosts [host]:port line");
    assert_eq!(session.host_key().algorithm(), "ssh-ed25519");
}

#[test]
fn known_hosts_hashed_entry() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_known_hosts(
        dir.path(),
        "known_hosts",
        &[format!(
            "[127.0.0.1]:{} {}",
            server.port(),
            server.host_key_public_line(HostKeyType::Rsa)
        )],
    );
    let status = std::process::Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&file)
        .status()
        .expect("ssh-keygen -H");
    assert!(status.success());
    let hashed = std::fs::read_to_string(&file).expect("read");
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let session = bare_builder(&server, &cred)
        .known_host(KnownHost::known_hosts_file(&file))
        .connect()
        .expect("hashed known_hosts entry");
    assert_eq!(session.host_key().algorithm(), "ssh-rsa");
}

#[test]
fn known_hosts_port_22_line_does_not_match_other_port() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_known_hosts(
        dir.path(),
        "known_hosts",
        &[format!(
            "127.0.0.1 {}",
            server.host_key_public_line(HostKeyType::Ed25519)
        )],
    );
    let err = bare_builder(&server, &cred)
        .known_host(KnownHost::known_hosts_file(&file))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown, "{err}");
    assert!(
        err.to_string()
            .contains(server.host_key_fingerprint(HostKeyType::Ed25519)),
        "{err}"
    );
}

#[test]
fn known_hosts_revoked_key_is_refused_even_when_pinned() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let line = server.host_key_public_line(HostKeyType::Ed25519);
    let file = write_known_hosts(
        dir.path(),
        "known_hosts",
        &[
            format!("[127.0.0.1]:{} {line}", server.port()),
            format!("@revoked * {line}"),
        ],
    );
    let err = bare_builder(&server, &cred)
        .known_host(KnownHost::known_hosts_file(&file))
        .known_host(pin_line(&server, HostKeyType::Ed25519))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyRevoked, "{err}");
}

#[test]
fn no_pin_is_unknown_and_shows_the_fingerprint() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let err = bare_builder(&server, &cred)
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown, "{err}");
    assert!(err.to_string().contains("SHA256:"), "{err}");
}

/// The sshd log since start-up shows our connection, its end, and no
/// authentication request of any kind.
fn assert_no_auth_request(server: &Sshd) {
    let ended = |log: &str| {
        ["Connection closed", "Connection reset", "Disconnected from"]
            .iter()
            .any(|n| log.contains(n))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ended(&server.log_since_ready()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log_since_ready();
    assert!(
        ended(&log),
        "sshd never logged the end of the connection:\n{log}"
    );
    assert!(
        log.contains("Connection from 127.0.0.1"),
        "no connection in the log:\n{log}"
    );
    assert!(
        !log.contains("userauth-request"),
        "an authentication request reached sshd:\n{log}"
    );
    assert!(
        !log.contains("ssh-userauth"),
        "the userauth service was requested:\n{log}"
    );
}

#[test]
fn wrong_pin_mismatch_before_key_auth() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let other = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let err = bare_builder(&server, &cred)
        .known_host(KnownHost::public_key(&other.public_line).expect("line"))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&other.fingerprint),
        "expected fingerprint missing: {text}"
    );
    assert!(
        text.contains(server.host_key_fingerprint(HostKeyType::Ed25519)),
        "seen fingerprint missing: {text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    assert_no_auth_request(&server);
}

#[test]
fn wrong_pin_mismatch_before_password_auth() {
    let Some(server) = Sshd::builder().start_if_available() else {
        return;
    };
    let wrong =
        KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s").expect("fp");
    let err = Session::builder(server.host())
        .port(server.port())
        .credential(Credential::password(
            "nobody",
            SecretString::from("never sent"),
        ))
        .known_host(wrong)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{err}");
    assert!(
        err.to_string()
            .contains("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"),
        "{err}"
    );
    assert_no_auth_request(&server);
}

#[test]
fn bind_address_meets_source_restriction() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&format!("from=\"127.0.0.1\" {}", key.public_line))
        .start_if_available()
    else {
        return;
    };
    let cred = key.credential();
    let session = server
        .session_builder()
        .credential(cred.clone())
        .bind_address("127.0.0.1".parse().expect("ip"))
        .connect()
        .expect("bound to the allowed address");
    assert_eq!(session.local_addr().ip().to_string(), "127.0.0.1");

    let err = server
        .session_builder()
        .credential(cred)
        .bind_address("127.0.0.2".parse().expect("ip"))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let started = Instant::now();
    let err = Session::builder("127.0.0.1")
        .port(port)
        .credential(Credential::password("u", SecretString::from("p")))
        .known_host(
            KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")
                .expect("fp"),
        )
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // Generous bound: the point is that it ends, not how fast.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    drop(listener);
}

#[test]
fn hang_up_before_auth_hints_at_allow_list() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let closer = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        drop(stream);
    });
    let err = Session::builder("127.0.0.1")
        .port(port)
        .credential(Credential::password("u", SecretString::from("p")))
        .known_host(
            KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")
                .expect("fp"),
        )
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    closer.join().expect("closer thread");
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err} ({err:?})");
    let text = err.to_string();
    assert!(text.contains("allow-list"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[test]
fn refused_port_is_connect_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = Session::builder("127.0.0.1")
        .port(port)
        .credential(Credential::password("u", SecretString::from("p")))
        .known_host(
            KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")
                .expect("fp"),
        )
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn host_key_alias_follows_the_name_not_the_address() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_known_hosts(
        dir.path(),
        "known_hosts",
        &[format!(
            "partner-sftp {}",
            server.host_key_public_line(HostKeyType::Ed25519)
        )],
    );
    // "localhost" and 127.0.0.1 are different names for the same server,
    // as an old and a new address of a partner would be.
    for host in ["127.0.0.1", "localhost"] {
        let session = Session::builder(host)
            .port(server.port())
            .credential(cred.clone())
            .host_key_alias("partner-sftp")
            .known_host(KnownHost::known_hosts_file(&file))
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .unwrap_or_else(|e| panic!("{host} with alias: {e}"));
        assert_eq!(session.host(), host);
    }
    // Without the alias the same file has no line for the address.
    let err = bare_builder(&server, &cred)
        .known_host(KnownHost::known_hosts_file(&file))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown);
}

#[test]
fn trust_on_first_use_records_then_enforces() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tofu_known_hosts");
    let connect = |server: &Sshd| {
        bare_builder(server, &cred)
            .host_key_alias("partner")
            .known_host(KnownHost::trust_on_first_use(&file))
            .connect()
    };
    connect(&server).expect("first use is trusted");
    let recorded = std::fs::read_to_string(&file).expect("recorded");
    let key_line = server.host_key_public_line(HostKeyType::Ed25519);
    let key_fields: Vec<&str> = key_line.split_whitespace().take(2).collect();
    assert_eq!(recorded, format!("partner {}\n", key_fields.join(" ")));
    connect(&server).expect("the recorded key is accepted");
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        recorded,
        "recorded twice"
    );

    // Another server under the same name: a changed key, refused.
    let Some((impostor, _)) = key_server() else {
        return;
    };
    let err = connect(&impostor).expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch);
    assert!(
        err.to_string()
            .contains(server.host_key_fingerprint(HostKeyType::Ed25519)),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        recorded,
        "impostor recorded"
    );
}

#[test]
fn rotated_credential_reports_the_old_key_still_accepted() {
    let new = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let old = client_key(KeyKind::Rsa3072, KeyFormat::Pem, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&old.public_line)
        .start_if_available()
    else {
        return;
    };
    let cred = Credential::key_pairs(
        current_user(),
        [
            KeyPair::file(&new.path).with_label("2026"),
            KeyPair::file(&old.path).with_label("2024"),
        ],
    );
    let session = server
        .session_builder()
        .credential(cred.clone())
        .connect()
        .expect("old key accepted");
    match session.auth_method() {
        AuthMethod::PublicKey { label, .. } => assert_eq!(label, "2024"),
        other => panic!("{other:?}"),
    }
    // Once the partner installs the new key, the new key is the one used.
    server
        .add_authorized_key(&new.public_line)
        .expect("add an authorized key");
    let session = server
        .session_builder()
        .credential(cred.clone())
        .connect()
        .expect("new key accepted");
    match session.auth_method() {
        AuthMethod::PublicKey {
            label, fingerprint, ..
        } => {
            assert_eq!(label, "2026");
            assert_eq!(fingerprint.as_deref(), Some(new.fingerprint.as_str()));
        }
        other => panic!("{other:?}"),
    }
    // Neither key authorized: both are named in the error.
    let (a, b) = (
        client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None),
        client_key(KeyKind::Ecdsa, KeyFormat::OpenSsh, None),
    );
    let err = server
        .session_builder()
        .credential(Credential::key_pairs(
            current_user(),
            [KeyPair::file(&a.path), KeyPair::file(&b.path)],
        ))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth);
    for fp in [&a.fingerprint, &b.fingerprint] {
        assert!(err.to_string().contains(fp.as_str()), "{err}");
    }
}

#[test]
fn credential_tells_what_to_send_the_partner() {
    for (kind, format) in [
        (KeyKind::Ed25519, KeyFormat::OpenSsh),
        (KeyKind::Ecdsa, KeyFormat::Pem),
    ] {
        let key = client_key(kind, format, Some("a passphrase"));
        // No passphrase needed to print the public half.
        let cred = Credential::key_pair("etl", &key.path);
        assert_eq!(cred.fingerprint().expect("fingerprint"), key.fingerprint);
        let line = cred.public_key().expect("public key line");
        let ours: Vec<&str> = line.split_whitespace().take(2).collect();
        let theirs: Vec<&str> = key.public_line.split_whitespace().take(2).collect();
        assert_eq!(ours, theirs, "{kind:?}/{format:?}");
    }
    let err = Credential::password("etl", SecretString::from("x"))
        .public_key()
        .expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A one-connection HTTP CONNECT proxy on 127.0.0.1: answers `status` and,
/// for 200, pumps bytes to the requested address. Returns its port and a
/// handle giving the request head it received.
fn http_proxy(status: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            client.read_exact(&mut byte).expect("request");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("utf-8");
        let target = head
            .split_whitespace()
            .nth(1)
            .expect("authority")
            .to_string();
        client
            .write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes())
            .expect("answer");
        if status.starts_with("200") {
            let upstream = std::net::TcpStream::connect(&target).expect("upstream");
            common::pipe(client, upstream);
        }
        head
    });
    (port, handle)
}

#[test]
fn http_connect_proxy() {
    let Some((server, cred)) = key_server() else {
        return;
    };
    let (proxy_port, proxy) = http_proxy("200 Connection established");
    let session = bare_builder(&server, &cred)
        .known_host(pin_line(&server, HostKeyType::Ed25519))
        .http_proxy("127.0.0.1", proxy_port)
        .connect()
        .expect("through the proxy");
    assert_eq!(session.peer_addr().port(), proxy_port);
    assert_eq!(
        session.host_key().fingerprint(),
        server.host_key_fingerprint(HostKeyType::Ed25519)
    );
    session.close().expect("close");
    let head = proxy.join().expect("proxy thread");
    assert!(
        head.starts_with(&format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n", server.port())),
        "{head}"
    );

    let (proxy_port, proxy) = http_proxy("403 Forbidden");
    let err = bare_builder(&server, &cred)
        .known_host(pin_line(&server, HostKeyType::Ed25519))
        .http_proxy("127.0.0.1", proxy_port)
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.to_string().contains("403 Forbidden"), "{err}");
    proxy.join().expect("proxy thread");
}

#[test]
fn jump_host_carries_the_session_and_checks_both_hops() {
    let Some((bastion, target, key)) = common::bastion_and_target() else {
        return;
    };
    let cred = key.credential();
    let jump = bastion
        .session_builder()
        .credential(cred.clone())
        .connect()
        .expect("bastion");

    let session = target
        .session_builder()
        .credential(cred.clone())
        .jump_host(&jump)
        .connect()
        .expect("target through the bastion");
    assert_eq!(
        session.host_key().fingerprint(),
        target.host_key_fingerprint(HostKeyType::Ed25519)
    );
    // Real traffic through the tunnel, both ways, more than one window.
    let out = session
        .exec()
        .expect("exec")
        .run("head -c 3000000 /dev/zero | tr '\\0' x")
        .expect("run through the tunnel");
    assert_eq!(out.stdout().len(), 3_000_000);
    assert!(out.stdout().iter().all(|&b| b == b'x'));
    // The bastion saw a forwarding request, not our credentials for the target.
    assert!(
        bastion.wait_for_log("direct-tcpip", Duration::from_secs(5)),
        "{}",
        bastion.log()
    );
    session.close().expect("close");

    // A wrong pin on the far hop is refused through the tunnel too.
    let err = Session::builder(target.host())
        .port(target.port())
        .credential(cred)
        .known_host(pin_line(&bastion, HostKeyType::Ed25519))
        .jump_host(&jump)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyMismatch);
    // The jump session is still usable afterwards.
    assert!(jump
        .exec()
        .expect("exec")
        .run("true")
        .expect("run")
        .success());
}
