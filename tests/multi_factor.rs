//! Multi-factor logins against sshd (`AuthenticationMethods
//! publickey,password` and `publickey,keyboard-interactive`, passwords
//! through PAM in the testkit's private namespace): `Credential::all`
//! completes them across partial success; errors say which factor was
//! accepted and which refused; a keyboard-interactive responder is asked
//! once per connection, never for an extra session unless allowed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{client_key, KeyFormat, KeyKind, Sshd, StartSshd};
use etl_ssh::{AuthMethod, Credential, ErrorKind};
use secrecy::SecretString;

/// An sshd that wants a key and then `second` (`password` or
/// `keyboard-interactive`), with a key authorized for its password user.
fn two_factor_server(second: &str) -> Option<(Sshd, common::ClientKey)> {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let builder = Sshd::builder()
        .authorized_key(&key.public_line)
        .extra_config(&format!("AuthenticationMethods publickey,{second}"));
    let builder = match second {
        "password" => builder.password_authentication(true),
        _ => builder.kbd_interactive_authentication(true),
    };
    Some((builder.start_if_available()?, key))
}

#[test]
fn key_then_password() {
    let Some((server, key)) = two_factor_server("password") else {
        return;
    };
    let user = server.password_user().expect("password user");
    let password = server.password().expect("password").clone();
    let both = Credential::all([
        Credential::key_pair(user, &key.path),
        Credential::password(user, password),
    ]);
    let session = server
        .session_builder()
        .credential(both)
        .connect()
        .expect("key, then password");
    assert!(
        matches!(
            &session.auth_factors(),
            [AuthMethod::PublicKey { .. }, AuthMethod::Password]
        ),
        "{:?}",
        session.auth_factors()
    );
    assert_eq!(session.auth_method(), &AuthMethod::Password);
    let out = session.exec().expect("exec").run("id -un").expect("run");
    assert_eq!(String::from_utf8_lossy(out.stdout()).trim(), user);

    // The password refused after the key was accepted.
    let wrong = Credential::all([
        Credential::key_pair(user, &key.path),
        Credential::password(user, SecretString::from("not the password")),
    ]);
    let err = server
        .session_builder()
        .credential(wrong)
        .connect()
        .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let text = err.to_string();
    for words in [
        format!("the server accepted publickey {}", key_label(&key)),
        "(partial success), then refused password".to_string(),
    ] {
        assert!(text.contains(&words), "{text:?} lacks {words:?}");
    }
    assert!(!err.is_transient(), "{text}");

    // The key alone: not "the key failed", but what else the server wants.
    let err = server
        .session_builder()
        .credential(Credential::key_pair(user, &key.path))
        .connect()
        .expect_err("key alone");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let text = err.to_string();
    for words in [
        "is incomplete",
        "the server accepted publickey",
        "(partial success) and wants another factor: password",
        "Credential::all",
    ] {
        assert!(text.contains(words), "{text:?} lacks {words:?}");
    }
}

fn key_label(key: &common::ClientKey) -> String {
    key.path
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn key_then_keyboard_interactive_asks_once_per_connection() {
    let Some((server, key)) = two_factor_server("keyboard-interactive") else {
        return;
    };
    let user = server.password_user().expect("password user");
    let password = server.password().expect("password").clone();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&asked);
    let responder = Credential::keyboard_interactive(user, move |_, prompts| {
        count.fetch_add(1, Ordering::SeqCst);
        common::answer_password(prompts, &password)
    });
    let both = Credential::all([Credential::key_pair(user, &key.path), responder]);
    let session = server
        .session_builder()
        .credential(both.clone())
        .connect()
        .expect("key, then keyboard-interactive");
    assert_eq!(session.auth_method(), &AuthMethod::KeyboardInteractive);
    assert_eq!(session.auth_factors().len(), 2);
    let rounds = asked.load(Ordering::SeqCst);
    assert!(rounds >= 1, "the responder was never asked");

    // An extra session would ask again: refused, and the responder is not asked.
    let err = session.connect_another().expect_err("no extra session");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        err.to_string()
            .contains("Credential::with_extra_sessions(true)"),
        "{err}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), rounds);

    // A parallel transfer then runs on one session, and the responder
    // is still not asked.
    let remote = server.dir().join("big.bin");
    std::fs::write(&remote, vec![5u8; 3 << 20]).expect("write the file to fetch");
    let local = tempfile::tempdir().expect("tempdir");
    let options = etl_ssh::TransferOptions::new()
        .sessions(4)
        .min_segment_size(1 << 20);
    let sftp = session.sftp().expect("sftp");
    let bytes = sftp
        .download_with(
            remote.to_str().expect("utf-8"),
            local.path().join("big.bin"),
            &options,
        )
        .expect("download on one session");
    assert_eq!(bytes, 3 << 20);
    assert_eq!(asked.load(Ordering::SeqCst), rounds);

    // Allowed: the extra session asks once more.
    let allowed = server
        .session_builder()
        .credential(both.with_extra_sessions(true))
        .connect()
        .expect("connect");
    let before = asked.load(Ordering::SeqCst);
    allowed.connect_another().expect("extra session allowed");
    assert!(asked.load(Ordering::SeqCst) > before);

    // The password through keyboard-interactive as the second factor.
    let session = server
        .session_builder()
        .credential(Credential::all([
            Credential::key_pair(user, &key.path),
            server.password_credential().expect("password credential"),
        ]))
        .connect()
        .expect("key, then the password as keyboard-interactive");
    assert_eq!(session.auth_method(), &AuthMethod::KeyboardInteractive);
}

#[test]
fn credentials_for_different_users_are_refused() {
    let both = Credential::all([
        Credential::password("etl", SecretString::from("a")),
        Credential::password("other", SecretString::from("b")),
    ]);
    let err = etl_ssh::Session::builder("127.0.0.1")
        .port(9)
        .credential(both)
        .connect()
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("etl and other"), "{err}");
}
