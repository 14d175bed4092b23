//! Exec throughput and latency: etl-ssh's `ExecSession` beside OpenSSH's
//! `ssh`, against one test sshd on loopback. Run with
//! `cargo bench --bench exec`.
//!
//! Two cases, each measured in one run, interleaved, medians reported:
//!
//! - `cat` of a large file (the sshd serves the local filesystem): etl-ssh
//!   `run` (whole output in memory, cap raised above the size), `spawn` with
//!   `std::io::copy` into a sink, `spawn` with 1 MiB reads, a raw `ssh2`
//!   channel read with a 1 MiB buffer (what the library is built on),
//!   `ssh ... cat FILE > /dev/null`, and etl-ssh on a new connection per
//!   run (connect, `spawn`, `std::io::copy`, close), as `ssh` does;
//! - connect + authenticate + `run("true")` + close, beside `ssh ... true`
//!   (with OpenSSH's default key exchange, and with
//!   `KexAlgorithms=curve25519-sha256`, the one libssh2 negotiates), and the
//!   same with raw `ssh2`; plus `run("true")` on an open session, the fixed
//!   cost of one command (channel, the login shell, close).
//!
//! CPU is read from `/proc`: the client's own (this process, or the `ssh`
//! child), and the whole machine's busy time (every process, including
//! sshd, `cat` and whatever else shares the machine).
//!
//! Knobs (environment): `ETL_BENCH_EXEC_MB` (file size, default 256),
//! `ETL_BENCH_RUNS` (runs of the `cat` case, default 3),
//! `ETL_BENCH_CONNECT_RUNS` (runs of the connect case, default 15),
//! `ETL_BENCH_CIPHER` (restrict the server to one cipher; default: the
//! normal negotiation, chacha20-poly1305).

#[path = "../tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;
mod support;

use crate::common::HostKeyType;
use support::{bench_sshd, cpu_times, env_num, loadavg, median, write_noise};

use std::fs;
use std::io::{self, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{current_user, ClientKey, Sshd};
use etl_ssh::{Credential, KnownHost, Session};

fn rounded(v: &[f64], scale: f64, digits: i32) -> Vec<f64> {
    let p = 10f64.powi(digits);
    v.iter().map(|x| (x * scale * p).round() / p).collect()
}

/// Busy CPU seconds of the whole machine (all cores), from `/proc/stat`.
fn machine_busy() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 5 {
        return 0.0;
    }
    // user nice system idle iowait irq softirq steal: busy = all but idle, iowait.
    let total: f64 = f.iter().take(8).sum();
    (total - f[3] - f[4]) / 100.0
}

/// `VmHWM` and `VmRSS` of this process in MiB.
fn rss_mib() -> (f64, f64) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// One measurement: wall seconds, client CPU seconds, machine busy seconds.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    client_cpu: f64,
    machine_cpu: f64,
}

/// Times `f`; `child` says whether the client is a child process (its CPU
/// is then read from the children's counters after it was waited for).
fn measure(child: bool, f: impl FnOnce()) -> Sample {
    let (s0, c0) = cpu_times();
    let m0 = machine_busy();
    let t = Instant::now();
    f();
    let wall = t.elapsed().as_secs_f64();
    let (s1, c1) = cpu_times();
    Sample {
        wall,
        client_cpu: if child { c1 - c0 } else { s1 - s0 },
        machine_cpu: machine_busy() - m0,
    }
}

struct Ssh<'a> {
    server: &'a Sshd,
    key: &'a ClientKey,
    known_hosts: &'a Path,
}

impl Ssh<'_> {
    /// `ssh -i key ... [extra] user@127.0.0.1 COMMAND`, stdout to /dev/null.
    fn run(&self, extra: &[&str], command: &str) {
        let status = Command::new("ssh")
            .arg("-i")
            .arg(&self.key.path)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-p")
            .arg(self.server.port().to_string())
            .args(extra)
            .arg(format!("{}@{}", current_user(), self.server.host()))
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("run ssh");
        assert!(status.success(), "ssh {command}: {status}");
    }
}

fn connect(server: &Sshd, key: &ClientKey) -> Session {
    Session::builder(server.host())
        .port(server.port())
        .known_host(
            KnownHost::public_key(server.host_key_public_line(HostKeyType::Ed25519))
                .expect("host key"),
        )
        .credential(Credential::key_pair(current_user(), &key.path))
        .timeout(Duration::from_secs(120))
        .connect()
        .expect("connect")
}

/// A raw `ssh2` session, as the library's baseline: TCP_NODELAY, public
/// key, no host key check.
fn raw_connect(server: &Sshd, key: &ClientKey) -> ssh2::Session {
    let tcp = TcpStream::connect(server.addr()).expect("tcp connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut s = ssh2::Session::new().expect("ssh2 session");
    s.set_tcp_stream(tcp);
    s.handshake().expect("handshake");
    s.userauth_pubkey_file(&current_user(), None, &key.path, None)
        .expect("auth");
    s
}

/// Runs `command` on a raw `ssh2` channel (16 MiB window, as etl-ssh
/// asks for), reading stdout with a 1 MiB buffer; returns the byte count.
fn raw_exec(s: &ssh2::Session, command: &str) -> u64 {
    let mut ch = s
        .channel_open("session", 16 << 20, 32 << 10, None)
        .expect("channel");
    ch.exec(command).expect("exec");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = ch.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    ch.wait_close().expect("close");
    assert_eq!(ch.exit_status().expect("status"), 0);
    total
}

fn main() {
    let mb = env_num("ETL_BENCH_EXEC_MB", 256);
    let runs = env_num("ETL_BENCH_RUNS", 3).max(1) as usize;
    let connect_runs = env_num("ETL_BENCH_CONNECT_RUNS", 15).max(1) as usize;
    let cipher = std::env::var("ETL_BENCH_CIPHER").ok();

    let Some((server, key)) = bench_sshd(cipher.as_deref()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let known_hosts = d.join("known_hosts");
    fs::write(
        &known_hosts,
        server.known_hosts_line(HostKeyType::Ed25519) + "\n",
    )
    .expect("known_hosts");
    let ssh = Ssh {
        server: &server,
        key: &key,
        known_hosts: &known_hosts,
    };

    let src = d.join("src.bin");
    write_noise(&src, mb);
    let size = mb << 20;
    let cat = format!("cat {}", src.to_str().expect("utf-8 temp path"));

    let session = connect(&server, &key);
    let exec = session
        .exec()
        .expect("exec")
        .with_max_output(size + (1 << 20));
    let raw = raw_connect(&server, &key);

    println!(
        "# exec: `cat` of a {mb} MiB file, {runs} runs; connect case {connect_runs} runs; cipher: {}; load average {}",
        cipher.as_deref().unwrap_or("default (chacha20-poly1305)"),
        loadavg()
    );

    // Memory, before anything else has grown the heap: streaming first
    // (VmHWM only grows), then `run`, which keeps the whole output.
    let (hwm0, rss0) = rss_mib();
    let spawn_copy = || {
        let mut child = exec.spawn(&cat).expect("spawn");
        let mut stdout = child.take_stdout().expect("stdout");
        let n = io::copy(&mut stdout, &mut io::sink()).expect("copy");
        assert_eq!(n, size);
        drop(stdout);
        assert!(child.wait().expect("wait").success());
    };
    let spawn_read = || {
        let mut child = exec.spawn(&cat).expect("spawn");
        let mut stdout = child.take_stdout().expect("stdout");
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = stdout.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        assert_eq!(n, size);
        drop(stdout);
        assert!(child.wait().expect("wait").success());
    };
    let run = || {
        let out = exec.run(&cat).expect("run");
        assert!(out.success());
        assert_eq!(out.stdout().len() as u64, size);
        out
    };
    spawn_copy();
    let (hwm_spawn, _) = rss_mib();
    let out = run();
    let (hwm_run, _) = rss_mib();
    drop(out);
    println!(
        "memory: baseline VmRSS {rss0:.1} MiB (VmHWM {hwm0:.1}); VmHWM after spawn + io::copy {hwm_spawn:.1} MiB; after run {hwm_run:.1} MiB"
    );

    // A new connection per run, connect included, as `ssh cat` does.
    let fresh = || {
        let session = connect(&server, &key);
        let mut child = session.exec().expect("exec").spawn(&cat).expect("spawn");
        let mut stdout = child.take_stdout().expect("stdout");
        let n = io::copy(&mut stdout, &mut io::sink()).expect("copy");
        assert_eq!(n, size);
        drop(stdout);
        assert!(child.wait().expect("wait").success());
        session.close().expect("close");
    };
    const NAMES: [&str; 6] = [
        "etl-ssh run",
        "etl-ssh spawn+io::copy",
        "etl-ssh spawn+1MiB reads",
        "raw ssh2 1MiB reads",
        "openssh ssh cat",
        "etl-ssh new connection+spawn",
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); NAMES.len()];
    for i in 0..runs {
        for k in 0..NAMES.len() {
            // Rotate the order so that no case always runs first.
            let case = (k + i) % NAMES.len();
            let s = match case {
                0 => {
                    let mut kept = None;
                    let s = measure(false, || kept = Some(run()));
                    drop(kept);
                    s
                }
                1 => measure(false, spawn_copy),
                2 => measure(false, spawn_read),
                3 => measure(false, || assert_eq!(raw_exec(&raw, &cat), size)),
                4 => measure(true, || ssh.run(&[], &cat)),
                _ => measure(false, fresh),
            };
            samples[case].push(s);
        }
    }

    // Connect + auth + `true` + close.
    let mut ours = Vec::new();
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    let mut theirs = Vec::new();
    let mut raw_times = Vec::new();
    let mut open_ours = Vec::new();
    let mut open_raw = Vec::new();
    let mut theirs_curve = Vec::new();
    for i in 0..connect_runs {
        for k in 0..6 {
            match (k + i) % 6 {
                0 => {
                    let t0 = Instant::now();
                    let s = connect(&server, &key);
                    let t1 = Instant::now();
                    let out = s.exec().expect("exec").run("true").expect("run true");
                    assert!(out.success());
                    let t2 = Instant::now();
                    s.close().expect("close");
                    let t3 = Instant::now();
                    ours.push((t3 - t0).as_secs_f64());
                    phases[0].push((t1 - t0).as_secs_f64());
                    phases[1].push((t2 - t1).as_secs_f64());
                    phases[2].push((t3 - t2).as_secs_f64());
                }
                1 => {
                    let t0 = Instant::now();
                    ssh.run(&[], "true");
                    theirs.push(t0.elapsed().as_secs_f64());
                }
                5 => {
                    let t0 = Instant::now();
                    ssh.run(&["-o", "KexAlgorithms=curve25519-sha256"], "true");
                    theirs_curve.push(t0.elapsed().as_secs_f64());
                }
                3 => {
                    let t0 = Instant::now();
                    assert!(exec.run("true").expect("run true").success());
                    open_ours.push(t0.elapsed().as_secs_f64());
                }
                4 => {
                    let t0 = Instant::now();
                    assert_eq!(raw_exec(&raw, "true"), 0);
                    open_raw.push(t0.elapsed().as_secs_f64());
                }
                _ => {
                    let t0 = Instant::now();
                    let s = raw_connect(&server, &key);
                    assert_eq!(raw_exec(&s, "true"), 0);
                    s.disconnect(None, "bye", None).expect("disconnect");
                    drop(s);
                    raw_times.push(t0.elapsed().as_secs_f64());
                }
            }
        }
    }

    let bytes = size as f64;
    let mbps = |secs: f64| bytes / secs / 1e6;
    let gib = bytes / f64::from(1u32 << 30);
    let ssh_true = median(theirs.clone());
    let openssh = median(samples[4].iter().map(|s| s.wall).collect());
    // The fixed cost of one command, measured in the connect case: on an
    // open session for etl-ssh and raw ssh2, a whole `ssh true` for OpenSSH.
    let floors = [
        median(open_ours.clone()),
        median(open_ours.clone()),
        median(open_ours.clone()),
        median(open_raw.clone()),
        ssh_true,
        median(ours.clone()),
    ];
    println!(
        "\n## cat {mb} MiB: MB/s (median of {runs}), ratio = etl-ssh MB/s / OpenSSH MB/s (higher is better for etl-ssh)"
    );
    println!(
        "(net: time less the fixed cost of one command: `true` on an open session for etl-ssh and ssh2 ({:.0} / {:.0} ms), a whole `ssh true` for OpenSSH ({:.0} ms), connect + `true` + close for a new etl-ssh connection ({:.0} ms))",
        floors[0] * 1e3,
        floors[3] * 1e3,
        ssh_true * 1e3,
        floors[5] * 1e3
    );
    for ((name, ss), floor) in NAMES.iter().zip(&samples).zip(floors) {
        let wall: Vec<f64> = ss.iter().map(|s| s.wall).collect();
        let cpu: Vec<f64> = ss.iter().map(|s| s.client_cpu / gib).collect();
        let machine: Vec<f64> = ss.iter().map(|s| s.machine_cpu / gib).collect();
        let w = median(wall.clone());
        println!(
            "{name:<26} {:>7.1} MB/s  ratio {:.2}x  net {:>6.1} MB/s  client CPU {:.2} s/GiB  machine busy {:.2} s/GiB  (runs: {:?} s)",
            mbps(w),
            openssh / w,
            mbps(w - floor),
            median(cpu.clone()),
            median(machine.clone()),
            rounded(&wall, 1.0, 2),
        );
    }

    let ms = |v: &[f64]| median(v.to_vec()) * 1e3;
    println!(
        "\n## connect + auth + `true` + close: ms (median of {connect_runs}), ratio = etl-ssh ms / OpenSSH ms (lower is better for etl-ssh)"
    );
    println!(
        "etl-ssh   {:>6.1} ms  ratio {:.2}  (connect {:.1} + run {:.1} + close {:.1} ms; runs: {:?})",
        ms(&ours),
        median(ours.clone()) / ssh_true,
        ms(&phases[0]),
        ms(&phases[1]),
        ms(&phases[2]),
        rounded(&ours, 1e3, 0)
    );
    println!(
        "raw ssh2  {:>6.1} ms  ratio {:.2}  (runs: {:?})",
        ms(&raw_times),
        median(raw_times.clone()) / ssh_true,
        rounded(&raw_times, 1e3, 0)
    );
    println!(
        "openssh   {:>6.1} ms  (default KEX sntrup761x25519-sha512; runs: {:?})",
        ms(&theirs),
        rounded(&theirs, 1e3, 0)
    );
    println!(
        "openssh   {:>6.1} ms  with KexAlgorithms=curve25519-sha256, the KEX libssh2 negotiates; etl-ssh ratio {:.2} (runs: {:?})",
        ms(&theirs_curve),
        median(ours.clone()) / median(theirs_curve.clone()),
        rounded(&theirs_curve, 1e3, 0)
    );
    println!(
        "per command on an open session (channel, `$SHELL -c true`, close): etl-ssh run {:.1} ms (runs: {:?}); raw ssh2 {:.1} ms (runs: {:?})",
        ms(&open_ours),
        rounded(&open_ours, 1e3, 0),
        ms(&open_raw),
        rounded(&open_raw, 1e3, 0)
    );
    println!("load average at the end: {}", loadavg());
}
