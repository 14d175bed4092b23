//! What the benches share: knobs, timing, statistics, test data.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{client_key, ClientKey, HostKeyType, KeyFormat, KeyKind, Sshd, StartSshd};

/// The benches' server: a fresh ed25519 client key, an sshd with only an
/// ed25519 host key and quiet logging, restricted to `cipher` if given.
/// `None` (after a loud line) when sshd is missing outside CI.
pub(crate) fn bench_sshd(cipher: Option<&str>) -> Option<(Sshd, ClientKey)> {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let mut builder = Sshd::builder()
        .host_key_types([HostKeyType::Ed25519])
        .authorized_key(&key.public_line)
        .extra_config("LogLevel INFO");
    if let Some(c) = cipher {
        builder = builder.extra_config(&format!("Ciphers {c}"));
    }
    Some((builder.start_if_available()?, key))
}

/// A session to the bench server through `port` (the server's, or a
/// delay line's), pinned to `host_key`, with `key` for the current user
/// and the bench's receive buffer.
fn builder(port: u16, host_key: &str, key: &Path) -> etl_ssh::SessionBuilder {
    etl_ssh::Session::builder(crate::common::HOST)
        .receive_buffer(receive_buffer())
        .port(port)
        .known_host(etl_ssh::KnownHost::public_key(host_key).expect("host key"))
        .credential(etl_ssh::Credential::key_pair(
            crate::common::current_user(),
            key,
        ))
}

/// An SFTP session to the bench server through `port` (the server's, or a
/// delay line's), pinned to `host_key`, with `key` for the current user,
/// the bench's receive buffer and a 600 s operation timeout.
pub(crate) fn connect_sftp(port: u16, host_key: &str, key: &Path) -> etl_ssh::SftpSession {
    builder(port, host_key, key)
        .timeout(Duration::from_secs(600))
        .connect()
        .expect("connect")
        .sftp()
        .expect("sftp")
}

/// Where the time of a connect through `port` goes: seconds for a bare
/// TCP connect, for an authenticated session (TCP, handshake, host key
/// check, authentication), and for the SFTP channel on it (open,
/// subsystem, version exchange).
pub(crate) fn connect_stages(port: u16, host_key: &str, key: &Path) -> (f64, f64, f64) {
    let t = Instant::now();
    drop(TcpStream::connect((crate::common::HOST, port)).expect("tcp"));
    let tcp = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let session = builder(port, host_key, key).connect().expect("connect");
    let ssh = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sftp = session.sftp().expect("sftp");
    let channel = t.elapsed().as_secs_f64();
    drop(sftp);
    (tcp, ssh, channel)
}

/// A numeric knob from the environment, or `default`.
pub(crate) fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median (the upper one of an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds `f` takes.
pub(crate) fn time<T>(f: impl FnOnce() -> T) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// The 1, 5 and 15 minute load averages, to print beside figures taken on
/// a shared machine.
pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `mb` MiB of xorshift noise at `path` (incompressible, cheap to make).
pub(crate) fn write_noise(path: &Path, mb: u64) {
    let mut f = fs::File::create(path).expect("create");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).expect("write");
    }
}

/// `ETL_BENCH_RCVBUF`: the sessions' receive buffer in bytes (`0` leaves
/// it to the kernel); default: the library's default.
pub(crate) fn receive_buffer() -> Option<usize> {
    match std::env::var("ETL_BENCH_RCVBUF")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(etl_ssh::DEFAULT_RECEIVE_BUFFER),
    }
}

/// CPU seconds from `/proc/self/stat`: (this process, its waited-for
/// children). Resolution: one clock tick (10 ms).
pub(crate) fn cpu_times() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 15 {
        return (0.0, 0.0);
    }
    // utime, stime, cutime, cstime (fields 14-17) in ticks of 10 ms.
    ((f[11] + f[12]) / 100.0, (f[13] + f[14]) / 100.0)
}

/// A loopback TCP proxy in front of `target` that delays each direction by
/// `one_way`, with no limit on the bytes in flight. Runs until the process
/// exits.
#[derive(Debug)]
pub(crate) struct DelayLine {
    pub(crate) addr: SocketAddr,
}

impl DelayLine {
    pub(crate) fn start(target: SocketAddr, one_way: Duration) -> DelayLine {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind delay line");
        let addr = listener.local_addr().expect("delay line address");
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                delay_direction(client, server, one_way);
                delay_direction(server2, client2, one_way);
            }
        });
        DelayLine { addr }
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// One direction of the delay line: the reader stamps each chunk with the
/// time it arrived; the writer sends it at that time plus `delay`. The
/// channel is unbounded, so later chunks keep flowing while earlier ones
/// wait.
fn delay_direction(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return, // dropping `tx` ends the writer
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        let _ = from.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        for (arrived, chunk) in rx {
            let due = arrived + delay;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
