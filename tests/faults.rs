//! Every fault ends in a typed error within its deadline, never a hang or a
//! panic: fake servers on 127.0.0.1 that never speak, stall after their
//! banner, send garbage, close or reset at once; and the testkit's proxy in
//! front of real servers (both backends) cutting or stalling a transfer;
//! and a stopped `sftp-server` (SIGSTOP) behind OpenSSH.
//!
//! The bound asserted is generous (the deadline plus 10 s): it catches a
//! hang, not a slow machine. The times measured are printed, and recorded
//! in RELIABILITY.md.

mod common;

use common::{HostKeyType, StartSshd};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use etl_ssh::{Credential, Error, ErrorKind, KnownHost, Session, TransferOptions};
use secrecy::SecretString;

const DEADLINE: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(10);

/// A one-connection fake server on 127.0.0.1 that does `behave` with the
/// connection; returns its port.
fn fake_server(behave: impl FnOnce(std::net::TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            behave(stream);
        }
    });
    port
}

/// Connects to a fake server on `port` with short deadlines.
fn connect_to(port: u16) -> (Error, Duration) {
    let started = Instant::now();
    let err = Session::builder("127.0.0.1")
        .port(port)
        .credential(Credential::password(
            "etl",
            SecretString::from("never sent"),
        ))
        .known_host(
            KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")
                .expect("pin"),
        )
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .expect_err("a fake server never gives a session");
    (err, started.elapsed())
}

fn check(name: &str, (err, took): (Error, Duration), expected: ErrorKind) {
    eprintln!("fault {name}: {:?} after {took:.2?}: {err}", err.kind());
    assert_eq!(err.kind(), expected, "{name}: {err} ({err:?})");
    assert!(took < DEADLINE + SLACK, "{name}: took {took:?}");
}

/// Keeps the connection open and silent for longer than any deadline here.
fn hold(stream: std::net::TcpStream) {
    std::thread::sleep(DEADLINE + SLACK + Duration::from_secs(5));
    drop(stream);
}

#[test]
fn a_server_that_never_speaks_times_out() {
    check("silent", connect_to(fake_server(hold)), ErrorKind::Timeout);
}

#[test]
fn a_banner_then_silence_times_out() {
    let port = fake_server(|mut s| {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        hold(s);
    });
    check("banner then stall", connect_to(port), ErrorKind::Timeout);
}

#[test]
fn garbage_instead_of_a_banner_is_a_protocol_error() {
    let port = fake_server(|mut s| {
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = s.write_all(&garbage);
        hold(s);
    });
    check("garbage", connect_to(port), ErrorKind::Protocol);
}

#[test]
fn garbage_after_a_valid_banner_is_a_protocol_error() {
    let port = fake_server(|mut s| {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        let mut theirs = [0u8; 256];
        let _ = s.read(&mut theirs);
        // A packet length of 0x41414141 followed by more nonsense.
        let _ = s.write_all(&[0x41; 4096]);
        hold(s);
    });
    check(
        "garbage after banner",
        connect_to(port),
        ErrorKind::Protocol,
    );
}

#[test]
fn an_immediate_close_is_a_disconnect() {
    let port = fake_server(drop);
    check("close", connect_to(port), ErrorKind::Disconnected);
}

#[test]
fn an_immediate_reset_is_a_disconnect() {
    let port = fake_server(|s| {
        // SO_LINGER 0: close sends RST instead of FIN.
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    });
    check("reset", connect_to(port), ErrorKind::Disconnected);
}

#[test]
fn a_cut_transfer_is_a_disconnect_upstream_and_downstream() {
    for backend in common::backends() {
        let server = common::test_server(backend);
        let data = vec![7u8; 8 << 20];
        let local = server.dir().join("up.bin");
        std::fs::write(&local, &data).expect("write");
        std::fs::write(server.sftp_root().join("down.bin"), &data).expect("write");
        let one = TransferOptions::new().sessions(1);

        // Upstream: most bytes flow from us to them.
        let session = server.session().expect("session");
        let sftp = session.sftp().expect("sftp");
        server.close_after(1 << 20);
        let started = Instant::now();
        let err = sftp
            .upload_with(&local, server.remote_path("up.bin"), &one)
            .expect_err("cut upload");
        check(
            &format!("{backend} cut upstream"),
            (err, started.elapsed()),
            ErrorKind::Disconnected,
        );
        server.heal();

        // Downstream: most bytes flow from them to us.
        let session = server.session().expect("session");
        let sftp = session.sftp().expect("sftp");
        server.close_after(1 << 20);
        let started = Instant::now();
        let err = sftp
            .download_with(
                server.remote_path("down.bin"),
                server.dir().join("down.bin"),
                &one,
            )
            .expect_err("cut download");
        check(
            &format!("{backend} cut downstream"),
            (err, started.elapsed()),
            ErrorKind::Disconnected,
        );
        server.heal();
    }
}

#[test]
fn a_stalled_link_times_out_and_nothing_hangs() {
    for backend in common::backends() {
        let server = common::test_server(backend);
        std::fs::write(server.sftp_root().join("down.bin"), vec![1u8; 8 << 20]).expect("write");
        let session = server
            .session_builder()
            .timeout(DEADLINE)
            .connect()
            .expect("session");
        let sftp = session.sftp().expect("sftp");
        server.stall_after(1 << 20);
        let started = Instant::now();
        let err = sftp
            .download_with(
                server.remote_path("down.bin"),
                server.dir().join("down.bin"),
                &TransferOptions::new().sessions(1),
            )
            .expect_err("stalled download");
        check(
            &format!("{backend} stall"),
            (err, started.elapsed()),
            ErrorKind::Timeout,
        );
        // Dropping everything on a stalled link is bounded too.
        let started = Instant::now();
        drop(sftp);
        drop(session);
        let took = started.elapsed();
        eprintln!("fault {backend} stall: drop took {took:.2?}");
        assert!(
            took < DEADLINE + SLACK,
            "drop on a stalled link took {took:?}"
        );
        server.heal();
    }
}

/// The pids of `sftp-server` processes descended from `root`.
fn sftp_servers_under(root: u32) -> Vec<u32> {
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": the comm may hold spaces; split after ')'.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("sftp-server") {
            continue;
        }
        let mut p = pid;
        for _ in 0..8 {
            match parent_of(p) {
                Some(parent) if parent == root => {
                    found.push(pid);
                    break;
                }
                Some(parent) if parent > 1 => p = parent,
                _ => break,
            }
        }
    }
    found
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

#[test]
fn a_stopped_sftp_server_times_out() {
    let key = common::client_key(common::KeyKind::Ed25519, common::KeyFormat::OpenSsh, None);
    let Some(server) = common::Sshd::builder()
        .authorized_key(&key.public_line)
        .extra_config("Subsystem sftp /usr/lib/openssh/sftp-server")
        .start_if_available()
    else {
        return;
    };
    let session = Session::builder(server.host())
        .port(server.port())
        .credential(Credential::key_pair(common::current_user(), &key.path))
        .known_host(
            KnownHost::public_key(server.host_key_public_line(HostKeyType::Ed25519)).expect("pin"),
        )
        .timeout(DEADLINE)
        .connect()
        .expect("session");
    let sftp = session.sftp().expect("sftp");
    sftp.metadata("/").expect("a live sftp-server answers");
    let stopped = sftp_servers_under(server.pid());
    assert_eq!(stopped.len(), 1, "our sftp-server: {stopped:?}");
    // Only the sftp-server our own sshd started for this session.
    signal(stopped[0], "STOP");
    let started = Instant::now();
    let err = sftp
        .metadata("/")
        .expect_err("a stopped sftp-server never answers");
    let took = started.elapsed();
    signal(stopped[0], "CONT");
    check("stopped sftp-server", (err, took), ErrorKind::Timeout);
}
