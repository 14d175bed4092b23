//! The server's own words: the `Banner` text (kept, logged at `info`,
//! quoted in authentication errors), the identification string under its
//! own name, an expired password (PAM through keyboard-interactive) as its
//! own error, a refused second login, and a connection closed before the
//! server's identification line (every likely cause named; `MaxStartups`
//! retried with backoff).

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_key, KeyFormat, KeyKind, Sshd, StartSshd};
use etl_ssh::testkit::{Backend, LoginLimit, ShadowAging, TestServer};
use etl_ssh::{Credential, Error, ErrorKind, RetryPolicy};
use secrecy::SecretString;

const BANNER: &str =
    "Authorized use only.\nThis server moves to sftp2.partner.example on 2026-12-01.\n";

#[test]
fn the_banner_is_kept_logged_and_quoted() {
    common::capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let banner = dir.path().join("banner");
    std::fs::write(&banner, BANNER).expect("write banner");
    let Some((server, key)) = common::sshd_with_key(
        Sshd::builder().extra_config(&format!("Banner {}", banner.display())),
    ) else {
        return;
    };
    let session = key.connect_to(&server);
    assert_eq!(session.auth_banner(), Some(BANNER.trim_end()));
    assert!(
        session
            .identification()
            .is_some_and(|id| id.starts_with("SSH-2.0-OpenSSH")),
        "{:?}",
        session.identification()
    );
    let records = common::log_records();
    assert!(
        records.iter().any(|r| r.starts_with("INFO")
            && r.contains("banner: Authorized use only. This server moves to sftp2")),
        "{records:#?}"
    );

    // A refused key: the error quotes what the server said.
    let stranger = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let err = server
        .session_builder()
        .credential(stranger.credential())
        .connect()
        .expect_err("unknown key");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(
        err.to_string()
            .contains("the server said: \"Authorized use only. This server moves to sftp2"),
        "{err}"
    );
}

#[test]
fn an_expired_password_is_its_own_error() {
    let Some(server) = Sshd::builder()
        .kbd_interactive_authentication(true)
        .shadow_aging(ShadowAging::must_change_password())
        .start_if_available()
    else {
        return;
    };
    let user = server.password_user().expect("password user");
    let check = |err: Error| {
        assert_eq!(err.kind(), ErrorKind::PasswordExpired, "{err}");
        assert!(matches!(err, Error::PasswordExpired { .. }), "{err:?}");
        assert!(!err.is_transient(), "{err}");
        let text = err.to_string();
        for words in [
            format!(
                "the password of {user} on 127.0.0.1:{} has expired",
                server.port()
            ),
            "You are required to change your password immediately".to_string(),
            "ask the partner to reset it".to_string(),
        ] {
            assert!(text.contains(&words), "{text:?} lacks {words:?}");
        }
    };
    // The password answering keyboard-interactive.
    let err = server
        .session_builder()
        .credential(server.password_credential().expect("credential"))
        .connect()
        .expect_err("expired");
    check(err);

    // A responder: asked for the password, never for a new one.
    let password = server.password().expect("password").clone();
    let rounds = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&rounds);
    let responder = Credential::keyboard_interactive(user, move |_, prompts| {
        count.fetch_add(1, Ordering::SeqCst);
        assert!(
            !prompts.iter().any(|p| p.text().contains("New password")),
            "asked for a new password: {prompts:?}"
        );
        prompts.iter().map(|_| password.clone()).collect()
    });
    let err = server
        .session_builder()
        .credential(responder)
        .connect()
        .expect_err("expired");
    check(err);
    assert_eq!(rounds.load(Ordering::SeqCst), 1);
}

/// With sshd's `password` method an expired password logs in, and sshd
/// then runs nothing without a terminal: SFTP fails at start with
/// `PasswordExpired` saying so, not as a dead subsystem.
#[test]
fn an_expired_password_through_the_password_method_fails_sftp_as_expired() {
    let Some(server) = Sshd::builder()
        .password_authentication(true)
        .kbd_interactive_authentication(false)
        .shadow_aging(ShadowAging::must_change_password())
        .start_if_available()
    else {
        return;
    };
    let session = server
        .session_builder()
        .credential(server.password_credential().expect("credential"))
        .connect()
        .expect("sshd lets the login in");
    let err = session.sftp().expect_err("nothing runs");
    assert_eq!(err.kind(), ErrorKind::PasswordExpired, "{err}");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("reset it"), "{err}");
}

#[test]
fn a_refused_second_login_says_the_server_limits_logins() {
    let server = TestServer::builder()
        .backend(Backend::Embedded)
        .login_limit(1, LoginLimit::RefuseNew)
        .start()
        .expect("embedded server");
    let first = server.session().expect("first login");
    let second = server.session().expect("the second login is accepted");
    for err in [
        second
            .sftp()
            .map(drop)
            .expect_err("refused at the first channel"),
        second
            .exec()
            .expect("exec")
            .run("true")
            .map(drop)
            .expect_err("refused"),
    ] {
        let text = err.to_string();
        assert!(
            text.contains("it may allow fewer logins per user than we opened"),
            "{text}"
        );
        assert!(!text.contains("allow-list"), "{text}");
    }
    drop(first);
}

#[test]
fn closed_before_the_identification_line_names_every_cause() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let closer = std::thread::spawn(move || drop(listener.accept().expect("accept")));
    let err = etl_ssh::Session::builder("127.0.0.1")
        .port(port)
        .credential(Credential::password("u", SecretString::from("p")))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .expect_err("closed");
    closer.join().expect("closer");
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    for words in [
        "before sending its SSH identification line",
        "allow-list",
        "ask them to allow 127.0.0.1",
        "MaxStartups",
        "RetryPolicy",
    ] {
        assert!(text.contains(words), "{text:?} lacks {words:?}");
    }
}

#[test]
fn max_startups_drops_are_named_and_retried() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&key.public_line)
        .extra_config("MaxStartups 1")
        .start_if_available()
    else {
        return;
    };
    // One unauthenticated connection takes sshd's only startup slot.
    let held = TcpStream::connect(server.addr()).expect("hold a startup slot");
    let held_port = held.local_addr().expect("addr").port();
    assert!(
        server.wait_for_log(
            &format!("Connection from 127.0.0.1 port {held_port}"),
            Duration::from_secs(5)
        ),
        "sshd never saw the held connection"
    );
    std::thread::sleep(Duration::from_millis(300));
    let builder = server
        .session_builder()
        .credential(key.credential())
        .connect_timeout(Duration::from_secs(5));
    let err = builder.clone().connect().expect_err("past MaxStartups");
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    assert!(err.to_string().contains("MaxStartups"), "{err}");
    assert!(
        server.wait_for_log("past MaxStartups", Duration::from_secs(5)),
        "sshd did not drop us for MaxStartups:\n{}",
        server.log_since_ready()
    );

    // The slot frees while the policy waits; the retry gets in.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(held);
    });
    let policy = RetryPolicy::new()
        .attempts(5)
        .initial_backoff(Duration::from_secs(1))
        .jitter(0.0);
    builder
        .connect_with_retry(&policy)
        .expect("retried past MaxStartups");
    release.join().expect("release");
}
