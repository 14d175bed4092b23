//! `Session::forward_local` through OpenSSH's sshd on 127.0.0.1: a TCP
//! echo server and a tiny HTTP server behind the tunnel, connections at
//! once, the bound on them, SFTP on the same session meanwhile, refusals,
//! and a clean end on drop. The embedded server does not forward: there
//! the refusal is what is tested.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{random_bytes, test_server};
use etl_ssh::testkit::{Backend, TestServer};
use etl_ssh::{ErrorKind, Session, Tunnel, MAX_TUNNEL_CONNECTIONS};

/// The tests count this process's tunnel threads: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// An OpenSSH test server and a session on it; `None` (after a loud
/// SKIPPED line, or a panic under CI) without sshd.
fn openssh() -> Option<(TestServer, Session)> {
    if !common::backends().contains(&Backend::OpenSsh) {
        common::loud("SKIPPED: tunnels need OpenSSH's sshd");
        return None;
    }
    let server = test_server(Backend::OpenSsh);
    let session = server.session().expect("session");
    Some((server, session))
}

/// One test at a time, an OpenSSH test server, a session on it and a
/// tunnel to `host` and `target`'s port.
struct Fixture {
    tunnel: Tunnel,
    session: Session,
    server: TestServer,
    _one: MutexGuard<'static, ()>,
}

/// A [`Fixture`]; `None` as [`openssh`].
fn tunnel_to(host: &str, target: SocketAddr) -> Option<Fixture> {
    let one = one_at_a_time();
    let (server, session) = openssh()?;
    let tunnel = session
        .forward_local(any_port(), host, target.port())
        .expect("forward");
    Some(Fixture {
        tunnel,
        session,
        server,
        _one: one,
    })
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// A server on loopback that runs `serve` on a thread for each connection;
/// it stops accepting when the process ends.
fn loopback_server(serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind(any_port()).expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// A TCP echo server.
fn echo_server() -> SocketAddr {
    loopback_server(|mut stream| {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Write);
    })
}

/// A tiny HTTP/1.0 server: `GET /N` answers N bytes.
fn http_server() -> SocketAddr {
    loopback_server(|mut stream| {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&request);
        let size: usize = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.trim_start_matches('/').parse().ok())
            .unwrap_or(0);
        let body = random_bytes(size, size as u64);
        let head =
            format!("HTTP/1.0 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    })
}

/// Sends `data` through an echo connection and reads it back.
fn echo_round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the tunnel");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let data = data.to_vec();
        thread::spawn(move || {
            stream.write_all(&data).expect("write");
            stream.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read the echo");
    writer.join().expect("writer");
    back
}

/// Runs `job` for each item on a thread of its own, all at once, and waits
/// for them (a panic in one fails the test).
fn at_once<T: Send>(items: impl IntoIterator<Item = T>, job: impl Fn(T) + Sync) {
    let job = &job;
    thread::scope(|s| {
        for item in items {
            s.spawn(move || job(item));
        }
    });
}

/// A connection to `tunnel` is closed without a byte.
fn assert_closed_at_once(tunnel: &Tunnel) {
    let mut stream = TcpStream::connect(tunnel.local_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut rest = Vec::new();
    assert!(matches!(stream.read_to_end(&mut rest), Ok(0) | Err(_)));
    assert!(rest.is_empty());
}

/// A command runs on `session`.
fn assert_usable(session: &Session) {
    let out = session.exec().expect("exec").run("echo ok").expect("run");
    assert_eq!(out.stdout(), b"ok\n");
}

/// This process's threads whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn echo_through_the_tunnel_with_connections_at_once() {
    let Some(f) = tunnel_to("127.0.0.1", echo_server()) else {
        return;
    };
    let Fixture { tunnel, .. } = f;
    let local = tunnel.local_addr();
    assert!(local.ip().is_loopback() && local.port() != 0, "{local}");
    assert!(
        tunnel.target().starts_with("127.0.0.1:"),
        "{}",
        tunnel.target()
    );

    at_once(0..8u64, |i| {
        let data = random_bytes(1 << 20, i);
        assert!(echo_round_trip(local, &data) == data, "connection {i}");
    });
    assert!(tunnel.take_error().is_none());
    tunnel.close().expect("close");
}

#[test]
fn http_through_the_tunnel() {
    let Some(f) = tunnel_to("localhost", http_server()) else {
        return;
    };
    let tunnel = &f.tunnel;
    let local = tunnel.local_addr();
    at_once([0usize, 10, 100_000, 3 << 20], |size| {
        let mut stream = TcpStream::connect(local).expect("connect");
        write!(stream, "GET /{size} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("reply");
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers end");
        let head = String::from_utf8_lossy(&reply[..split]);
        assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
        assert!(head.contains(&format!("Content-Length: {size}")), "{head}");
        assert!(reply[split + 4..] == random_bytes(size, size as u64)[..]);
    });
}

/// Idle tunnel connections do not hold the session; SFTP and exec on it go
/// on, and a connection opened meanwhile still works.
#[test]
fn sftp_and_exec_go_on_while_connections_sit_idle() {
    let Some(f) = tunnel_to("127.0.0.1", echo_server()) else {
        return;
    };
    let server = &f.server;
    let session = &f.session;
    let tunnel = &f.tunnel;
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(tunnel.local_addr()).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(tunnel.connections(), 4);
    let sftp = session.sftp().expect("sftp");
    let started = Instant::now();
    for i in 0..50 {
        sftp.write(server.remote_path("idle.txt"), format!("{i}"))
            .expect("write");
    }
    assert_usable(session);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The idle connections still carry data.
    for (i, stream) in idle.iter_mut().enumerate() {
        stream
            .write_all(format!("hello {i}").as_bytes())
            .expect("write");
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).expect("echo");
        assert_eq!(&buf, format!("hello {i}").as_bytes());
    }
}

/// At most `MAX_TUNNEL_CONNECTIONS` are served at once; the next waits
/// until one ends.
#[test]
fn connections_past_the_bound_wait_their_turn() {
    let Some(f) = tunnel_to("127.0.0.1", echo_server()) else {
        return;
    };
    let tunnel = &f.tunnel;
    let mut served: Vec<TcpStream> = Vec::new();
    for i in 0..MAX_TUNNEL_CONNECTIONS {
        let mut s = TcpStream::connect(tunnel.local_addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(b"x").expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        served.push(s);
    }
    assert_eq!(tunnel.connections(), MAX_TUNNEL_CONNECTIONS);
    let mut waiting = TcpStream::connect(tunnel.local_addr()).expect("queued by the kernel");
    waiting.write_all(b"y").expect("write");
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut b = [0u8; 1];
    assert!(waiting.read_exact(&mut b).is_err(), "served past the bound");
    drop(served.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    waiting.read_exact(&mut b).expect("served once one ended");
    assert_eq!(&b, b"y");
}

/// Dropping the tunnel stops listening, ends its connections and leaves
/// no thread behind.
#[test]
fn drop_closes_everything() {
    let Some(f) = tunnel_to("127.0.0.1", echo_server()) else {
        return;
    };
    let session = &f.session;
    let Fixture { tunnel, .. } = f;
    let local = tunnel.local_addr();
    let mut open = TcpStream::connect(local).expect("connect");
    open.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    open.read_exact(&mut buf).expect("echo");
    assert_eq!(threads_named("etl-ssh-tunnel"), 1);
    assert_eq!(threads_named("etl-ssh-forward"), 1);
    let started = Instant::now();
    drop(tunnel);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(threads_named("etl-ssh-tunnel"), 0);
    assert_eq!(threads_named("etl-ssh-forward"), 0);
    open.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    assert!(matches!(open.read_to_end(&mut rest), Ok(0) | Err(_)));
    assert!(TcpStream::connect(local).is_err(), "still listening");
    // The session goes on.
    assert_usable(session);
}

/// A target the server cannot reach, and a server that does not forward
/// (the embedded one; sshd with `AllowTcpForwarding no`): the connection is
/// closed and the reason kept.
#[test]
fn refusals_close_the_connection_and_say_why() {
    let _one = one_at_a_time();
    let closed_port = {
        let l = TcpListener::bind(any_port()).expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cases: Vec<(String, TestServer, Session)> = Vec::new();
    if let Some((server, session)) = openssh() {
        cases.push(("openssh, a closed port".into(), server, session));
    }
    let embedded = test_server(Backend::Embedded);
    let session = embedded.session().expect("session");
    cases.push(("embedded, no forwarding".into(), embedded, session));
    for (case, _server, session) in &cases {
        let tunnel = session
            .forward_local(any_port(), "127.0.0.1", closed_port)
            .expect("forward");
        assert_closed_at_once(&tunnel);
        let err = tunnel
            .take_error()
            .unwrap_or_else(|| panic!("{case}: no error kept"));
        assert_eq!(err.kind(), ErrorKind::Connect, "{case}: {err}");
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{closed_port}")), "{text}");
        assert!(text.contains("AllowTcpForwarding"), "{text}");
        drop(tunnel);
        assert_usable(session);
    }
    if let Some((server, key)) =
        common::sshd_with_key(common::Sshd::builder().extra_config("AllowTcpForwarding no"))
    {
        let session = key.connect_to(&server);
        let echo = echo_server();
        let tunnel = session
            .forward_local(any_port(), "127.0.0.1", echo.port())
            .expect("forward");
        assert_closed_at_once(&tunnel);
        let err = tunnel.close().expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
        assert!(err.to_string().contains("prohibited"), "{err}");
    }
}

#[test]
fn a_port_in_use_is_an_error() {
    let _one = one_at_a_time();
    let taken = TcpListener::bind(any_port()).expect("bind");
    let embedded = test_server(Backend::Embedded);
    let session = embedded.session().expect("session");
    let err = session
        .forward_local(taken.local_addr().expect("addr"), "127.0.0.1", 1)
        .expect_err("in use");
    assert!(
        err.to_string()
            .contains(&taken.local_addr().expect("addr").to_string()),
        "{err}"
    );
    let err = session
        .forward_local(any_port(), "", 1)
        .expect_err("no host");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
