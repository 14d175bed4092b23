//! Secrets never reach a log record or a `Debug` string, during password
//! and passphrase authentication alike. Every record at every level is
//! captured by a logger installed for this test binary.

mod common;

use std::sync::Mutex;

use common::{client_key, KeyFormat, KeyKind, Sshd, StartSshd};
use etl_ssh::testkit::{Backend, TestServer};
use etl_ssh::Credential;
use log::{LevelFilter, Log, Metadata, Record};
use secrecy::{ExposeSecret, SecretString};

static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

const PASSPHRASE: &str = "passphrase-c4n4ry-7f3a";
const WRONG_PASSWORD: &str = "password-c4n4ry-91bd";

#[test]
fn no_secret_in_logs_or_debug_output() {
    log::set_logger(&LOGGER).expect("logger");
    log::set_max_level(LevelFilter::Trace);

    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, Some(PASSPHRASE));
    let Some(server) = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_if_available()
    else {
        return;
    };
    let builder = |cred: Credential| server.session_builder().credential(cred);
    let mut debug_output = Vec::new();

    // Passphrase: right, then wrong.
    let cred = key
        .credential()
        .with_passphrase(SecretString::from(PASSPHRASE));
    debug_output.push(format!("{cred:?}"));
    let session = builder(cred).connect().expect("passphrase login");
    debug_output.push(format!("{session:?}"));
    drop(session);
    let cred = key
        .credential()
        .with_passphrase(SecretString::from(format!("{PASSPHRASE}-wrong")));
    let err = builder(cred).connect().expect_err("must fail");
    debug_output.push(format!("{err:?} {err}"));

    // Password: on OpenSSH where its password tests can run, else on the
    // embedded server; right, then wrong.
    let backend = if Sshd::check_passwords_available().is_ok() {
        Backend::OpenSsh
    } else {
        Backend::Embedded
    };
    let password_server = TestServer::builder()
        .backend(backend)
        .password_authentication(true)
        .start()
        .unwrap_or_else(|e| panic!("start a {backend} server with passwords: {e}"));
    let cred = password_server
        .password_credential()
        .expect("password credential");
    let password = password_server
        .password()
        .expect("password")
        .expose_secret()
        .to_string();
    let user = password_server.password_user().expect("password user");
    let wrong = Credential::password(user, SecretString::from(WRONG_PASSWORD));
    for (cred, right) in [(cred, true), (wrong, false)] {
        debug_output.push(format!("{cred:?}"));
        match password_server.session_builder().credential(cred).connect() {
            Ok(session) if right => debug_output.push(format!("{session:?}")),
            Err(err) if !right => debug_output.push(format!("{err:?} {err}")),
            other => panic!("right password {right}: {other:?}"),
        }
    }

    let records = RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        records.iter().any(|r| r.contains("authenticated")),
        "the capture saw no authentication record: {records:#?}"
    );
    for secret in [PASSPHRASE, WRONG_PASSWORD, password.as_str()] {
        for line in records.iter().chain(&debug_output) {
            assert!(!line.contains(secret), "secret leaked: {line}");
        }
    }
    let private_key = std::fs::read_to_string(&key.path).expect("key");
    let body_line = private_key.lines().nth(1).expect("key body");
    for line in records.iter().chain(&debug_output) {
        assert!(
            !line.contains(body_line),
            "private key material leaked: {line}"
        );
    }
}
