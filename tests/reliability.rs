//! Liveness and retries against a real sshd: SSH keepalives during quiet
//! commands and idle periods, and a retry policy that retries only what a
//! retry can fix.

mod common;

use std::time::{Duration, Instant};

use common::{client_key, KeyFormat, KeyKind, Sshd};
use etl_ssh::{ErrorKind, RetryPolicy};

/// How many keepalive requests sshd has logged so far.
fn keepalives(server: &Sshd) -> usize {
    server.log().matches("rtype keepalive@").count()
}

#[test]
fn keepalives_during_a_quiet_command_and_when_idle() {
    let Some((server, key)) = common::sshd_with_key(Sshd::builder()) else {
        return;
    };
    let session = server
        .session_builder()
        .credential(key.credential())
        .keepalive(Duration::from_secs(2))
        .connect()
        .expect("connect");
    let before = keepalives(&server);
    let out = session.exec().expect("exec").run("sleep 3").expect("sleep");
    assert!(out.success());
    let during = keepalives(&server);
    assert!(
        during > before,
        "no keepalive during a 3 s quiet command:\n{}",
        server.log()
    );

    std::thread::sleep(Duration::from_millis(2200));
    session.keepalive().expect("idle keepalive");
    let deadline = Instant::now() + Duration::from_secs(5);
    while keepalives(&server) == during && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        keepalives(&server) > during,
        "Session::keepalive sent nothing"
    );

    // Off means off.
    let quiet = server
        .session_builder()
        .credential(key.credential())
        .keepalive(Duration::ZERO)
        .connect()
        .expect("connect");
    let before = keepalives(&server);
    quiet.exec().expect("exec").run("sleep 2").expect("sleep");
    quiet.keepalive().expect("no-op");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(keepalives(&server), before);
}

/// A forwarder on `port` to `target`, started after `delay`: until then the
/// port refuses connections, as a partner's server does while it restarts.
fn late_forwarder(port: u16, target: u16, delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind late port");
        let (client, _) = listener.accept().expect("accept");
        let upstream = std::net::TcpStream::connect(("127.0.0.1", target)).expect("upstream");
        common::pipe(client, upstream);
    })
}

#[test]
fn connect_retries_a_refused_port_but_never_a_refused_key() {
    let Some((server, key)) = common::sshd_with_key(Sshd::builder()) else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let forwarder = late_forwarder(port, server.port(), Duration::from_millis(1500));
    let policy = RetryPolicy::new()
        .attempts(10)
        .initial_backoff(Duration::from_millis(300))
        .max_backoff(Duration::from_millis(600));
    let session = server
        .session_builder()
        .port(port)
        .credential(key.credential())
        .connect_with_retry(&policy)
        .expect("connects once the port answers");
    assert!(session
        .exec()
        .expect("exec")
        .run("true")
        .expect("run")
        .success());
    session.close().expect("close");
    forwarder.join().expect("forwarder");

    // A refused key is not retried: exactly one connection reaches sshd.
    let stranger = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let before = server.log_since_ready().matches("Connection from").count();
    let err = server
        .session_builder()
        .credential(stranger.credential())
        .connect_with_retry(&policy)
        .expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Auth);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.log_since_ready().matches("Connection from").count(),
        before + 1
    );
}
