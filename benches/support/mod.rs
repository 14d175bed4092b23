//! What the benches share: knobs, timing, statistics, test data.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{client_key, ClientKey, HostKeyType, KeyFormat, KeyKind, Sshd, StartSshd};

pub(crate) mod tun_link;

/// Where the bench's clients find the server: loopback, or the server's
/// end of a [`tun_link::TunLink`] once [`use_host`] says so.
static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sends every later client of the bench to `host` (once per run).
pub(crate) fn use_host(host: &str) {
    HOST.set(host.to_string()).expect("the host is set once");
}

/// The address the bench's clients connect to.
pub(crate) fn host() -> &'static str {
    HOST.get().map_or(crate::common::HOST, String::as_str)
}

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
    etl_ssh::Session::builder(host())
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
    drop(TcpStream::connect((host(), port)).expect("tcp"));
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

/// One thing a trace saw, at the time the client saw it.
enum Seen {
    /// Bytes through the delay line on connection `conn`: `up` from the
    /// client, else to it.
    Chunk { conn: usize, up: bool, len: usize },
    /// A log line of the library.
    Log(String),
}

/// What [`traced`] records while it runs.
static TRACE: Mutex<Vec<(Instant, Seen)>> = Mutex::new(Vec::new());
static TRACING: AtomicBool = AtomicBool::new(false);
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

fn record(seen: Seen) {
    if TRACING.load(Ordering::Relaxed) {
        if let Ok(mut t) = TRACE.lock() {
            t.push((Instant::now(), seen));
        }
    }
}

/// Puts the library's log lines (all levels) into the trace.
struct TraceLogger;

impl log::Log for TraceLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        TRACING.load(Ordering::Relaxed) && m.target().starts_with("etl_ssh")
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            record(Seen::Log(format!("{:5} {}", r.level(), r.args())));
        }
    }

    fn flush(&self) {}
}

/// What [`traced`] saw while a job ran.
pub(crate) struct Trace {
    start: Instant,
    end: Instant,
    seen: Vec<(Instant, Seen)>,
    /// The whole machine's busy share of all its cores, 0 to 1.
    machine_busy: f64,
    /// The same, sampled every 100 ms during the job.
    machine_samples: Vec<f64>,
    /// CPU seconds of this process (the client).
    client_cpu: f64,
}

/// (busy, total) jiffies of all cores, from `/proc/stat`.
fn machine_jiffies() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    // idle and iowait
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Runs `job` with a packet trace on: what crossed every delay line
/// (direction, bytes, on which connection), each at the time the client
/// sent or received it, with the library's log lines when `logs`, and the
/// machine's and the client's CPU use over the job.
pub(crate) fn traced<T>(logs: bool, job: impl FnOnce() -> T) -> (T, Trace) {
    static LOGGER: TraceLogger = TraceLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Off);
    }
    log::set_max_level(if logs {
        log::LevelFilter::Trace
    } else {
        log::LevelFilter::Off
    });
    TRACE.lock().map(|mut t| t.clear()).unwrap_or(());
    let (busy0, total0) = machine_jiffies();
    let cpu0 = cpu_times().0;
    let start = Instant::now();
    TRACING.store(true, Ordering::SeqCst);
    let sampler = thread::spawn(|| {
        let mut samples = Vec::new();
        let mut before = machine_jiffies();
        while TRACING.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(100));
            let now = machine_jiffies();
            samples.push((now.0 - before.0) as f64 / (now.1 - before.1).max(1) as f64);
            before = now;
        }
        samples
    });
    let out = job();
    TRACING.store(false, Ordering::SeqCst);
    let end = Instant::now();
    let machine_samples = sampler.join().unwrap_or_default();
    log::set_max_level(log::LevelFilter::Off);
    let (busy1, total1) = machine_jiffies();
    let mut seen = std::mem::take(&mut *TRACE.lock().expect("trace"));
    seen.sort_by_key(|(at, _)| *at);
    let trace = Trace {
        start,
        end,
        seen,
        machine_busy: (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64,
        machine_samples,
        client_cpu: cpu_times().0 - cpu0,
    };
    (out, trace)
}

impl Trace {
    fn ms(&self, at: Instant) -> f64 {
        at.duration_since(self.start).as_secs_f64() * 1000.0
    }

    /// One line per flight (consecutive chunks one way on one connection)
    /// or log line, then each connection's round trips: flights from the
    /// client that follow one to it.
    pub(crate) fn flights(&self) -> String {
        let mut text = String::new();
        // Per connection: the direction of its last flight, and round trips.
        let mut last: Vec<Option<bool>> = Vec::new();
        let mut trips: Vec<usize> = Vec::new();
        let mut open: Option<(usize, bool, Instant, usize, usize)> = None;
        let flush = |text: &mut String, f: Option<(usize, bool, Instant, usize, usize)>| {
            if let Some((conn, up, at, len, chunks)) = f {
                let arrow = if up {
                    "client -> server"
                } else {
                    "client <- server"
                };
                text.push_str(&format!(
                    "{:9.1} ms  conn {conn}  {arrow} {len:>9} bytes ({chunks} chunk(s))\n",
                    self.ms(at)
                ));
            }
        };
        for (at, s) in &self.seen {
            match s {
                Seen::Chunk { conn, up, len } => {
                    let (conn, up, len) = (*conn, *up, *len);
                    if let Some((c, u, _, l, n)) = open.as_mut() {
                        if *c == conn && *u == up {
                            *l += len;
                            *n += 1;
                            continue;
                        }
                    }
                    flush(&mut text, open.take());
                    if last.len() <= conn {
                        last.resize(conn + 1, None);
                        trips.resize(conn + 1, 0);
                    }
                    if up && last[conn] == Some(false) {
                        trips[conn] += 1;
                    }
                    last[conn] = Some(up);
                    open = Some((conn, up, *at, len, 1));
                }
                Seen::Log(line) => {
                    flush(&mut text, open.take());
                    text.push_str(&format!("{:9.1} ms  {line}\n", self.ms(*at)));
                }
            }
        }
        flush(&mut text, open.take());
        for (conn, n) in trips.iter().enumerate().filter(|(c, _)| last[*c].is_some()) {
            text.push_str(&format!(
                "conn {conn}: {n} round trips after the client's first bytes\n"
            ));
        }
        text
    }

    /// Per connection: bytes each way, and the bytes it carried per round
    /// trip `rtt` in its main direction (median and most, over the middle
    /// 80 % of its time, past slow start and the tail); then the CPU the
    /// machine and the client used.
    pub(crate) fn per_round_trip(&self, rtt: Duration) -> String {
        // Per connection: (when, from the client, bytes) of each chunk.
        type Chunks = Vec<(Instant, bool, usize)>;
        let mut conns: Vec<(usize, Chunks)> = Vec::new();
        for (at, s) in &self.seen {
            if let Seen::Chunk { conn, up, len } = s {
                match conns.iter_mut().find(|(c, _)| c == conn) {
                    Some((_, v)) => v.push((*at, *up, *len)),
                    None => conns.push((*conn, vec![(*at, *up, *len)])),
                }
            }
        }
        let mut text = String::new();
        for (conn, chunks) in &conns {
            let up: usize = chunks.iter().filter(|c| c.1).map(|c| c.2).sum();
            let down: usize = chunks.iter().filter(|c| !c.1).map(|c| c.2).sum();
            let main = up > down;
            let data: Vec<&(Instant, bool, usize)> =
                chunks.iter().filter(|c| c.1 == main).collect();
            let (Some(first), Some(last)) = (data.first(), data.last()) else {
                continue;
            };
            let span = last.0.duration_since(first.0);
            let slots = (span.as_secs_f64() / rtt.as_secs_f64()).ceil().max(1.0) as usize;
            let mut per = vec![0usize; slots];
            for c in &data {
                let i = (c.0.duration_since(first.0).as_secs_f64() / rtt.as_secs_f64()) as usize;
                per[i.min(slots - 1)] += c.2;
            }
            let middle: Vec<f64> = per[slots / 10..slots - slots / 10]
                .iter()
                .map(|b| *b as f64 / 1024.0)
                .collect();
            let most = middle.iter().copied().fold(0.0, f64::max);
            text.push_str(&format!(
                "conn {conn}: {:.1} MiB up, {:.1} MiB down, {:.2} s from its first to its last {} chunk; per round trip {}: median {:.0} KiB, most {:.0} KiB ({} round trips)\n",
                up as f64 / 1048576.0,
                down as f64 / 1048576.0,
                span.as_secs_f64(),
                if main { "client -> server" } else { "client <- server" },
                if main { "up" } else { "down" },
                median(middle.clone()),
                most,
                slots
            ));
        }
        let wall = self.end.duration_since(self.start).as_secs_f64();
        let mut samples = self.machine_samples.clone();
        samples.sort_by(f64::total_cmp);
        let share = |q: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * q).round() as usize)
                .map_or(0.0, |s| s * 100.0)
        };
        text.push_str(&format!(
            "job {wall:.2} s; machine busy {:.0} % of its {} cores (per 100 ms: median {:.0} %, 90th percentile {:.0} %, most {:.0} %); client CPU {:.2} s ({:.0} % of one core)\n",
            self.machine_busy * 100.0,
            thread::available_parallelism().map_or(1, usize::from),
            share(0.5),
            share(0.9),
            share(1.0),
            self.client_cpu,
            self.client_cpu / wall * 100.0
        ));
        let timeline: Vec<String> = self
            .machine_samples
            .iter()
            .map(|s| format!("{:.0}", s * 100.0))
            .collect();
        text.push_str(&format!(
            "machine busy per 100 ms, %: {}\n",
            timeline.join(" ")
        ));
        text
    }
}

/// A loopback TCP proxy in front of `target` that delays each direction by
/// `one_way`, with no limit on the bytes in flight. Runs until the process
/// exits. Under [`traced`], records what crosses it.
#[derive(Debug)]
pub(crate) struct DelayLine {
    pub(crate) addr: SocketAddr,
}

impl DelayLine {
    pub(crate) fn start(target: SocketAddr, one_way: Duration) -> DelayLine {
        DelayLine::start_on(
            crate::common::HOST.parse().expect("loopback"),
            target,
            one_way,
        )
    }

    /// The same, listening on `ip` (the server's end of a
    /// [`tun_link::TunLink`], with no delay of its own: a relay).
    pub(crate) fn start_on(
        ip: std::net::IpAddr,
        target: SocketAddr,
        one_way: Duration,
    ) -> DelayLine {
        let listener = TcpListener::bind((ip, 0)).expect("bind delay line");
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
                let conn = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                delay_direction(client, server, one_way, (conn, true));
                delay_direction(server2, client2, one_way, (conn, false));
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
/// wait. `(conn, up)` names the connection and direction for a trace:
/// bytes from the client are recorded when read, bytes to it when written.
fn delay_direction(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    (conn, up): (usize, bool),
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return, // dropping `tx` ends the writer
                Ok(n) => {
                    if up {
                        record(Seen::Chunk { conn, up, len: n });
                    }
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
            if !up {
                record(Seen::Chunk {
                    conn,
                    up,
                    len: chunk.len(),
                });
            }
            if to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
