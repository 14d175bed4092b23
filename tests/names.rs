//! Traits and names against both testkit backends: a cloned `Session`
//! shares its connection, pins read from configuration text connect, the
//! credential reports its method as an `AuthMethod`, and an unusable
//! ssh-agent is an `ErrorKind::Agent` error that names `SSH_AUTH_SOCK`.

mod common;

use std::time::Duration;

use common::{backends, test_server};
use etl_ssh::{AuthMethod, Credential, ErrorKind, Glob, HostKey, KnownHost, Session};

#[test]
fn a_cloned_session_shares_the_connection() {
    for backend in backends() {
        let server = test_server(backend);
        let session = server.session().expect("session");
        let clone = session.clone();
        assert_eq!(clone.local_addr(), session.local_addr(), "{backend}");
        let remote = server.remote_path("from-clone.txt");
        let worker = std::thread::spawn(move || {
            clone
                .sftp()
                .expect("sftp on the clone")
                .write(&remote, b"hello")
                .expect("write");
            clone
        });
        let out = session.exec().expect("exec").run("echo ok").expect("run");
        assert_eq!(out.stdout(), b"ok\n", "{backend}");
        let clone = worker.join().expect("worker");
        assert_eq!(
            std::fs::read(server.sftp_root().join("from-clone.txt")).expect("read"),
            b"hello"
        );
        drop(clone);
        session.close().expect("close");
    }
}

/// `close` on one clone ends the connection for all: the others' SFTP,
/// exec and extra sessions fail with `Disconnected` naming `close`, and
/// none of them connects again behind the caller's back.
#[test]
fn a_closed_session_stays_closed_for_its_clones() {
    for backend in backends() {
        let server = test_server(backend);
        let session = server.session().expect("session");
        let clone = session.clone();
        let sftp = clone.sftp().expect("sftp before close");
        session.close().expect("close");
        let err = clone
            .exec()
            .and_then(|e| e.run("true"))
            .expect_err("exec after close");
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{backend}: {err}");
        let err = sftp
            .metadata(server.remote_path(""))
            .expect_err("sftp after close");
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{backend}: {err}");
        let err = clone.connect_another().expect_err("another after close");
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{backend}: {err}");
        assert!(
            err.to_string().contains("Session::close"),
            "{backend}: {err}"
        );
    }
}

#[test]
fn pins_from_configuration_text_connect() {
    for backend in backends() {
        let server = test_server(backend);
        let key_line = server.known_host().to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, server.known_hosts_line()).expect("write known_hosts");
        let seen = server.session().expect("session").host_key().clone();
        for text in [
            key_line.clone(),
            seen.fingerprint(),
            seen.to_openssh(),
            format!("known_hosts:{}", known_hosts.display()),
            known_hosts.display().to_string(),
        ] {
            let pin: KnownHost = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            let session = Session::builder(server.host())
                .port(server.port())
                .credential(server.key_credential())
                .known_host(pin.clone())
                .connect_timeout(Duration::from_secs(20))
                .connect()
                .unwrap_or_else(|e| panic!("{backend} with pin {text}: {e}"));
            assert_eq!(session.host_key(), &seen);
            assert_eq!(pin.to_string().parse::<KnownHost>().expect("again"), pin);
        }
        let key: HostKey = seen.to_openssh().parse().expect("host key");
        assert_eq!(key, seen);
    }
}

#[test]
fn credential_method_is_an_auth_method() {
    for backend in backends() {
        let server = test_server(backend);
        let credential = server.key_credential();
        let offered = credential.method();
        assert_eq!(offered.name(), "publickey");
        let session = server.session().expect("session");
        match (offered, session.auth_method()) {
            (
                AuthMethod::PublicKey { label: offered, .. },
                AuthMethod::PublicKey { label: used, .. },
            ) => assert_eq!(&offered, used, "{backend}"),
            other => panic!("{backend}: {other:?}"),
        }
        assert_eq!(session.auth_method().name(), "publickey");
    }
}

#[test]
fn an_unusable_agent_is_an_agent_error_naming_ssh_auth_sock() {
    for backend in backends() {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("no-agent.sock");
        let err = Session::builder(server.host())
            .port(server.port())
            .credential(Credential::agent_at(server.user(), &socket))
            .known_host(server.known_host())
            .connect()
            .expect_err("no agent listens there");
        assert_eq!(err.kind(), ErrorKind::Agent, "{backend}: {err}");
        let text = err.to_string();
        assert!(text.contains("SSH_AUTH_SOCK="), "{text}");
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(!text.contains("private key"), "{text}");
        assert!(!err.is_transient());
    }
}

#[test]
fn glob_from_configuration_text() {
    let glob: Glob = "orders_*.csv".parse().expect("glob");
    assert!(glob.matches("orders_1.csv"));
    assert_eq!(glob.to_string(), "orders_*.csv");
    assert_eq!(
        "[a".parse::<Glob>().expect_err("unclosed").kind(),
        ErrorKind::InvalidInput
    );
}
