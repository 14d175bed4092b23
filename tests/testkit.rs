//! The testkit tested on both backends: each accepts the credentials it
//! advertises and refuses others, presents the advertised pin, serves its
//! SFTP folder, runs exec, and each fault knob produces the fault it claims.

mod common;

use std::fs;
use std::time::Duration;

use common::{backends, test_server};
use etl_ssh::testkit::{Backend, HostKeyType, TestServer};
use etl_ssh::{AuthMethod, Credential, ErrorKind, KnownHost};
use secrecy::{ExposeSecret, SecretString};

#[test]
fn accepts_the_advertised_key_and_refuses_others() {
    for backend in backends() {
        let server = test_server(backend);
        assert_eq!(server.backend(), backend);
        let session = server.session().unwrap();
        assert_eq!(session.user(), server.user());
        assert!(
            matches!(session.auth_method(), AuthMethod::PublicKey { .. }),
            "{backend}: {:?}",
            session.auth_method()
        );

        // Another server's key is not authorized here.
        let other = test_server(Backend::Embedded);
        let err = server
            .session_builder()
            .credential(Credential::key_pair(server.user(), other.key_path()))
            .connect()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{backend}: {err}");
    }
}

#[test]
fn accepts_the_advertised_password_and_refuses_a_wrong_one() {
    for backend in backends() {
        if backend == Backend::OpenSsh && !common::openssh_passwords_available() {
            continue; // printed SKIPPED; a panic under CI
        }
        let server = TestServer::builder()
            .backend(backend)
            .password_authentication(true)
            .start()
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(server.accepts_passwords(), "{backend}");
        let user = server.password_user().expect("password user").to_string();
        assert!(user.starts_with("etlpw"), "{backend}: {user}");
        let session = server
            .session_builder()
            .credential(server.password_credential().expect("credential"))
            .connect()
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(session.auth_method(), &AuthMethod::Password, "{backend}");
        assert_eq!(session.user(), user, "{backend}");

        let err = server
            .session_builder()
            .credential(Credential::password(
                &user,
                SecretString::from("not the password"),
            ))
            .connect()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{backend}: {err}");
    }
}

#[test]
fn passwords_are_off_unless_asked_and_made_per_server() {
    for backend in backends() {
        if backend == Backend::OpenSsh && !common::openssh_passwords_available() {
            continue;
        }
        let with = |on: bool| {
            TestServer::builder()
                .backend(backend)
                .password_authentication(on)
                .start()
                .unwrap_or_else(|e| panic!("{backend}: {e}"))
        };
        let (one, two, keys_only) = (with(true), with(true), with(false));
        assert_ne!(one.password_user(), two.password_user(), "{backend}");
        let secret = |s: &TestServer| s.password().expect("password").expose_secret().to_string();
        assert_ne!(secret(&one), secret(&two), "{backend}");
        assert!(secret(&one).len() >= 32, "{backend}");

        // `one`'s password is refused by `server`.
        let refused = |server: &TestServer| {
            let err = server
                .session_builder()
                .credential(one.password_credential().expect("credential"))
                .connect()
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Auth, "{backend}: {err}");
            err
        };
        // One server's password is no good on another.
        refused(&two);

        // Keys only by default: no password credential, and a password is
        // refused with only publickey offered.
        assert!(!keys_only.accepts_passwords(), "{backend}");
        assert!(keys_only.password_credential().is_none(), "{backend}");
        let err = refused(&keys_only);
        assert!(
            err.to_string().contains("the server allows: publickey"),
            "{backend}: {err}"
        );
    }
}

#[test]
fn presents_the_advertised_pin_and_fails_another() {
    for backend in backends() {
        let server = TestServer::builder()
            .backend(backend)
            .host_key_types([HostKeyType::Ed25519, HostKeyType::Ecdsa])
            .start()
            .unwrap();
        let session = server.session().unwrap();
        assert_eq!(
            Some(session.host_key().fingerprint()),
            server
                .host_key_fingerprint(HostKeyType::Ed25519)
                .map(str::to_string),
            "{backend}"
        );
        // The second host key is presented when it alone is pinned.
        let ecdsa = server.host_key_line(HostKeyType::Ecdsa).unwrap();
        let session = etl_ssh::Session::builder(server.host())
            .port(server.port())
            .credential(server.key_credential())
            .known_host(KnownHost::public_key(ecdsa).unwrap())
            .connect()
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert_eq!(
            session.host_key().algorithm(),
            "ecdsa-sha2-nistp256",
            "{backend}"
        );

        // Another server's pin does not match: no authentication happens.
        let other = test_server(Backend::Embedded);
        // Any pin that matches is accepted, beside one that does not...
        server
            .session_builder()
            .known_host(other.known_host())
            .connect()
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        // ...but the wrong pin alone fails before authentication.
        let err = etl_ssh::Session::builder(server.host())
            .port(server.port())
            .credential(server.key_credential())
            .known_host(other.known_host())
            .connect()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostKeyMismatch, "{backend}: {err}");
    }
}

#[test]
fn serves_the_sftp_folder() {
    for backend in backends() {
        let server = test_server(backend);
        let sftp = server.session().unwrap().sftp().unwrap();
        let local = server.sftp_root().join("orders.csv");
        fs::write(&local, "id,qty\n1,2\n").unwrap();

        // Absolute remote paths are the local paths; relative ones start
        // in the SFTP root.
        sftp.create_dir_all(server.remote_path("inbox/2026"))
            .unwrap();
        let n = sftp
            .upload(&local, server.remote_path("inbox/2026/orders.csv"))
            .unwrap();
        assert_eq!(n, 11);
        assert_eq!(
            fs::read(server.sftp_root().join("inbox/2026/orders.csv")).unwrap(),
            b"id,qty\n1,2\n"
        );
        sftp.upload(&local, "inbox/relative.csv").unwrap();
        assert!(server.sftp_root().join("inbox/relative.csv").is_file());

        let names: Vec<String> = sftp
            .read_dir(server.remote_path("inbox"))
            .unwrap()
            .into_iter()
            .map(|e| e.name().to_string())
            .collect();
        assert!(names.contains(&"2026".to_string()), "{backend}: {names:?}");
        assert!(
            names.contains(&"relative.csv".to_string()),
            "{backend}: {names:?}"
        );

        let back = server.sftp_root().join("back.csv");
        sftp.download(server.remote_path("inbox/2026/orders.csv"), &back)
            .unwrap();
        assert_eq!(fs::read(&back).unwrap(), b"id,qty\n1,2\n");

        sftp.rename(
            server.remote_path("inbox/relative.csv"),
            server.remote_path("inbox/renamed.csv"),
        )
        .unwrap();
        sftp.remove_file(server.remote_path("inbox/renamed.csv"))
            .unwrap();
        assert!(!server.sftp_root().join("inbox/renamed.csv").exists());
        let err = sftp
            .metadata(server.remote_path("inbox/missing.csv"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{backend}: {err}");
    }
}

#[test]
fn runs_exec_with_output_exit_code_signal_and_input() {
    for backend in backends() {
        let server = test_server(backend);
        let session = server.session().unwrap();
        let exec = session.exec().unwrap();

        let out = exec.run("printf out; printf err >&2; exit 3").unwrap();
        assert_eq!(out.stdout(), b"out", "{backend}");
        assert_eq!(out.stderr(), b"err", "{backend}");
        assert_eq!(out.exit_code(), Some(3), "{backend}");

        let out = exec.run("kill -TERM $$").unwrap();
        assert_eq!(out.exit_signal(), Some("TERM"), "{backend}: {out:?}");

        let out = exec
            .run_with_input("tr a-z A-Z", &b"partner\n"[..])
            .unwrap();
        assert_eq!(out.stdout(), b"PARTNER\n", "{backend}");

        fs::write(server.sftp_root().join("f.txt"), "abc").unwrap();
        let out = exec
            .run_args(["cat", &server.remote_path("f.txt")])
            .unwrap();
        assert_eq!(out.stdout(), b"abc", "{backend}");
    }
}

#[test]
fn refuse_auth_refuses_then_accepts_again() {
    for backend in backends() {
        let server = test_server(backend);
        server.refuse_auth(true).unwrap();
        let err = server.session().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{backend}: {err}");
        server.refuse_auth(false).unwrap();
        server
            .session()
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
    }
}

#[test]
fn close_after_cuts_a_transfer_with_disconnected() {
    for backend in backends() {
        let server = test_server(backend);
        let local = server.sftp_root().join("big.bin");
        fs::write(&local, vec![7u8; 4 << 20]).unwrap();
        fs::write(server.sftp_root().join("target.bin"), b"old").unwrap();
        let sftp = server.session().unwrap().sftp().unwrap();
        server.close_after(256 * 1024);
        let err = sftp
            .upload(&local, server.remote_path("target.bin"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{backend}: {err}");
        // Atomic upload: the old target is untouched.
        assert_eq!(
            fs::read(server.sftp_root().join("target.bin")).unwrap(),
            b"old"
        );
        server.heal();
        server.session().unwrap();
    }
}

#[test]
fn stall_after_ends_in_timeout() {
    for backend in backends() {
        let server = test_server(backend);
        let session = server
            .session_builder()
            .timeout(Duration::from_secs(2))
            .connect()
            .unwrap();
        let sftp = session.sftp().unwrap();
        server.stall_after(0);
        let err = sftp.metadata(server.remote_path("")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{backend}: {err}");
        server.heal();
    }
}

#[test]
fn slow_link_delays_past_a_timeout_and_a_rate_limit_delivers_intact() {
    for backend in backends() {
        let server = test_server(backend);
        let session = server
            .session_builder()
            .timeout(Duration::from_secs(1))
            .connect()
            .unwrap();
        let sftp = session.sftp().unwrap();
        server.slow_link(Duration::from_secs(3), 0);
        let err = sftp.metadata(server.remote_path("")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{backend}: {err}");
        server.heal();

        // A bandwidth cap slows, never corrupts.
        server.slow_link(Duration::ZERO, 512 * 1024);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let local = server.sftp_root().join("capped.bin");
        fs::write(&local, &data).unwrap();
        let before = server.bytes_relayed();
        let sftp = server.session().unwrap().sftp().unwrap();
        sftp.upload(&local, server.remote_path("capped.copy"))
            .unwrap();
        assert_eq!(
            fs::read(server.sftp_root().join("capped.copy")).unwrap(),
            data
        );
        assert!(server.bytes_relayed() - before > data.len() as u64);
    }
}

#[test]
fn stops_on_drop() {
    for backend in backends() {
        let server = test_server(backend);
        let (addr, inner) = (server.addr(), server.server_addr());
        drop(server);
        for a in [addr, inner] {
            assert!(
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_err(),
                "{backend}: {a} still accepts connections"
            );
        }
    }
}
