//! More ways in, against a real sshd: an ssh-agent holding several keys,
//! keyboard-interactive answered by a callback, and an OpenSSH user
//! certificate signed by a CA the server trusts.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client_key, current_user, KeyFormat, KeyKind, Sshd, StartSshd};
use etl_ssh::{AuthMethod, Credential, ErrorKind, KeyPair};
use secrecy::SecretString;

/// An `ssh-agent` run in the foreground on its own socket, ended on drop.
struct Agent {
    child: Child,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) is installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent never made its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent {
            child,
            _dir: dir,
            socket,
        }
    }

    fn add(&self, key: &Path) {
        let status = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .status()
            .expect("ssh-add");
        assert!(status.success(), "ssh-add {}", key.display());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_tries_every_identity() {
    let first = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let second = client_key(KeyKind::Ecdsa, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&second.public_line)
        .start_if_available()
    else {
        return;
    };
    let agent = Agent::start();
    agent.add(&first.path);
    agent.add(&second.path);
    let session = server
        .session_builder()
        .credential(Credential::agent_at(current_user(), &agent.socket))
        .connect()
        .expect("the agent's second key is accepted");
    match session.auth_method() {
        AuthMethod::PublicKey { fingerprint, .. } => {
            assert_eq!(fingerprint.as_deref(), Some(second.fingerprint.as_str()))
        }
        other => panic!("{other:?}"),
    }

    // An empty agent: refused, and the error says the agent held nothing.
    let empty = Agent::start();
    let err = server
        .session_builder()
        .credential(Credential::agent_at(current_user(), &empty.socket))
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.to_string().contains("holds no key"), "{err}");
}

#[test]
fn keyboard_interactive_callback() {
    let Some(server) = Sshd::builder()
        .kbd_interactive_authentication(true)
        .start_if_available()
    else {
        return;
    };
    let user = server.password_user().expect("password user");
    let password = server.password().expect("password").clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let cred = Credential::keyboard_interactive(user, move |_instructions, prompts| {
        log.lock().expect("lock").extend(prompts.iter().cloned());
        common::answer_password(prompts, &password)
    });
    let session = server
        .session_builder()
        .credential(cred)
        .connect()
        .expect("kbd-interactive");
    assert_eq!(session.auth_method(), &AuthMethod::KeyboardInteractive);
    let prompts = seen.lock().expect("lock").clone();
    assert!(
        prompts
            .iter()
            .any(|p| p.text().contains("assword") && !p.echo()),
        "{prompts:?}"
    );

    let cred = Credential::keyboard_interactive(user, |_, prompts| {
        prompts
            .iter()
            .map(|_| SecretString::from("wrong"))
            .collect()
    });
    let err = server
        .session_builder()
        .credential(cred)
        .connect()
        .expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Auth);
}

#[test]
fn user_certificate_signed_by_trusted_ca() {
    let ca = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .extra_config(&format!("TrustedUserCAKeys {}", ca.public_path.display()))
        .start_if_available()
    else {
        return;
    };
    // Without the certificate the key is a stranger.
    let err = server
        .session_builder()
        .credential(key.credential())
        .connect()
        .expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Auth);

    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.path)
        .args(["-I", "etl-ssh-test", "-n", &current_user(), "-V", "-5m:+1h"])
        .arg(&key.public_path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen -s");
    assert!(status.success());
    // `<key>-cert.pub` beside the key is picked up without being named.
    let session = server
        .session_builder()
        .credential(key.credential())
        .connect()
        .expect("certificate accepted");
    assert!(matches!(
        session.auth_method(),
        AuthMethod::PublicKey { .. }
    ));
    assert!(
        server.wait_for_log(
            "Accepted certificate ID \"etl-ssh-test\"",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );

    // Named explicitly, from elsewhere.
    let cert_path = {
        let mut p = key.path.as_os_str().to_owned();
        p.push("-cert.pub");
        std::path::PathBuf::from(p)
    };
    let moved = tempfile::tempdir().expect("tempdir");
    let elsewhere = moved.path().join("user-cert.pub");
    std::fs::rename(&cert_path, &elsewhere).expect("move cert");
    server
        .session_builder()
        .credential(Credential::key_pairs(
            current_user(),
            [KeyPair::file(&key.path).with_certificate(&elsewhere)],
        ))
        .connect()
        .expect("explicit certificate accepted");
}
