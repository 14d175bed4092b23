//! Parallel sessions over a delay line: etl-ssh with 1, 2, 4, 8 sessions
//! beside OpenSSH's `sftp`, both through the same loopback delay line in
//! front of one test sshd, in the same run. Run with
//! `cargo bench --bench parallel`.
//!
//! The delay line is a TCP proxy that holds every chunk for the one-way
//! delay (half the round trip, each direction) without limiting how many
//! chunks are in flight: per direction, a reader thread timestamps what it
//! reads into a channel and a writer thread sends each chunk when its time
//! is due. That is what a long link does (the testkit's `slow_link` sleeps
//! in the pump instead, which caps a connection at one chunk per delay).
//! The bench measures the line's round trip and raw throughput first.
//!
//! Knobs (environment): `ETL_BENCH_RTT_MS` (round trips, comma-separated,
//! default `50,10`), `ETL_BENCH_MB` (large file, default 256; 0 skips),
//! `ETL_BENCH_FILES` (number of 4 KiB files, default 2000; 0 skips),
//! `ETL_BENCH_SESSIONS` (default `1,2,4,8`), `ETL_BENCH_RUNS` (runs per
//! case, median reported, default 3), `ETL_BENCH_OPENSSH` (0 skips
//! OpenSSH's `sftp`, default 1), `ETL_BENCH_RCVBUF` (the sessions' receive
//! buffer in bytes, 0 for the kernel's own sizing; default: the library's), `ETL_BENCH_LOOPBACK_MB` (the loopback
//! check, no delay line: `sessions(4)` beside `sessions(1)`, default 256;
//! 0 skips).
//!
//! Every timing covers a whole job: etl-ssh connects a new session, moves
//! the file or folder (extra sessions connect during the transfer) and
//! drops the session; OpenSSH's `sftp -b` starts, connects, moves it and
//! exits. Ratio = etl-ssh throughput ÷ OpenSSH throughput (for the folders:
//! OpenSSH's seconds ÷ etl-ssh's), higher is better for etl-ssh.

#[path = "../tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;
mod support;

use crate::common::HostKeyType;
use support::{bench_sshd, env_num, loadavg, median, time, write_noise, DelayLine};

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{current_user, ClientKey};
use etl_ssh::{SftpSession, TransferOptions};

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|s| (s * 100.0).round() / 100.0).collect()
}

/// Checks the delay line itself: the median round trip of one byte through
/// it to an echo server, and the throughput of 64 MiB through it to a sink.
fn check_line(one_way: Duration) -> (f64, f64) {
    let echo = TcpListener::bind(("127.0.0.1", 0)).expect("bind echo");
    let echo_addr = echo.local_addr().expect("echo address");
    thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                let mut first = [0u8; 1];
                // First byte: 'e' = echo bytes back, 's' = sink and answer
                // with one byte at the end.
                if s.read_exact(&mut first).is_err() {
                    return;
                }
                let mut total = 0u64;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if first[0] == b'e' {
                        let _ = s.write_all(&buf[..n]);
                    } else {
                        total += n as u64;
                        if total >= 64 << 20 {
                            let _ = s.write_all(b"k");
                        }
                    }
                }
            });
        }
    });
    let line = DelayLine::start(echo_addr, one_way);
    let mut s = TcpStream::connect(line.addr).expect("connect echo");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(b"e").expect("write");
    let mut rtts = Vec::new();
    for _ in 0..5 {
        let mut b = [0u8; 1];
        rtts.push(time(|| {
            s.write_all(b"x").expect("write");
            s.read_exact(&mut b).expect("read");
        }));
    }
    let mut sink = TcpStream::connect(line.addr).expect("connect sink");
    sink.write_all(b"s").expect("write");
    let block = vec![0u8; 1 << 20];
    let secs = time(|| {
        for _ in 0..64 {
            sink.write_all(&block).expect("write");
        }
        let mut b = [0u8; 1];
        sink.read_exact(&mut b).expect("read");
    });
    (median(rtts) * 1000.0, (64u64 << 20) as f64 / secs / 1e6)
}

fn connect(port: u16, host_key: &str, key: &ClientKey) -> SftpSession {
    support::connect_sftp(port, host_key, &key.path)
}

/// Runs OpenSSH's `sftp -b` with `batch` against `port`; panics on failure.
fn openssh_sftp(port: u16, key: &ClientKey, batch: &str) {
    let dir = tempfile::tempdir().expect("batch dir");
    let batch_path = dir.path().join("batch");
    fs::write(&batch_path, batch).expect("write batch");
    let out = Command::new("sftp")
        .arg("-q")
        .arg("-i")
        .arg(&key.path)
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes"])
        .args(["-o", "LogLevel=ERROR"])
        .arg("-P")
        .arg(port.to_string())
        .arg("-b")
        .arg(&batch_path)
        .arg(format!("{}@{}", current_user(), common::HOST))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run sftp");
    assert!(
        out.status.success(),
        "sftp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Regular files under `dir`, recursively.
fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        count_files(&p)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn remove(p: &Path) {
    if p.is_dir() {
        let _ = fs::remove_dir_all(p);
    } else {
        let _ = fs::remove_file(p);
    }
}

struct Ctx<'a> {
    key: &'a ClientKey,
    host_key: String,
    dir: &'a Path,
    runs: usize,
    sessions: Vec<usize>,
    openssh: bool,
}

impl Ctx<'_> {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs every case `ctx.runs` times, the order rotated: the cases are
/// etl-ssh with each of `ctx.sessions`, then OpenSSH. `go(case, target,
/// back)` moves the data up to `target` and down to `back` and returns the
/// seconds each way; `check(path)` checks what arrived, which is then
/// removed. Returns the seconds of every run per case, up and down.
fn run_cases(
    ctx: &Ctx<'_>,
    label: &str,
    prefix: &str,
    go: impl Fn(usize, &Path, &Path) -> (f64, f64),
    check: impl Fn(&Path),
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let cases = ctx.sessions.len() + usize::from(ctx.openssh);
    let mut up: Vec<Vec<f64>> = vec![Vec::new(); cases];
    let mut down: Vec<Vec<f64>> = vec![Vec::new(); cases];
    for run in 0..ctx.runs {
        for k in 0..cases {
            // Rotate the order so that no case always runs first.
            let case = (k + run) % cases;
            let target = ctx.path(&format!("{prefix}up-{case}"));
            let back = ctx.path(&format!("{prefix}down-{case}"));
            let (u, d) = go(case, &target, &back);
            for p in [&target, &back] {
                check(p);
                remove(p);
            }
            eprintln!("  [{label}] run {run} case {case}: up {u:.2} s, down {d:.2} s");
            up[case].push(u);
            down[case].push(d);
        }
    }
    (up, down)
}

/// The rows of a results table, upload then download: each case's client,
/// `cells(median seconds)`, its ratio to OpenSSH's median, and its runs.
fn print_rows(
    ctx: &Ctx<'_>,
    (up, down): (Vec<Vec<f64>>, Vec<Vec<f64>>),
    openssh_name: &str,
    cells: impl Fn(f64) -> String,
) {
    for (dir_name, t) in [("upload", &up), ("download", &down)] {
        let theirs = ctx.openssh.then(|| median(t[t.len() - 1].clone()));
        for (case, runs) in t.iter().enumerate() {
            let secs = median(runs.clone());
            let who = if case < ctx.sessions.len() {
                format!("etl-ssh sessions({})", ctx.sessions[case])
            } else {
                openssh_name.to_string()
            };
            let ratio = match theirs {
                Some(th) if case < ctx.sessions.len() => format!("{:.2}×", th / secs),
                _ => "—".to_string(),
            };
            println!(
                "| {dir_name} | {who} | {} | {ratio} | {:?} |",
                cells(secs),
                rounded(runs)
            );
        }
    }
}

/// 256 MiB (or `mb`) up and down through `port`; prints a table.
fn large_file(ctx: &Ctx<'_>, port: u16, mb: u64, label: &str) {
    let src = ctx.path("src.bin");
    if fs::metadata(&src).map(|m| m.len()).unwrap_or(0) != mb << 20 {
        write_noise(&src, mb);
    }
    let bytes = (mb << 20) as f64;
    let times = run_cases(
        ctx,
        label,
        "",
        |case, target, back| {
            if case < ctx.sessions.len() {
                let opts = TransferOptions::new().sessions(ctx.sessions[case]);
                let u = time(|| {
                    connect(port, &ctx.host_key, ctx.key)
                        .upload_with(&src, path_str(target), &opts)
                        .expect("upload")
                });
                let d = time(|| {
                    connect(port, &ctx.host_key, ctx.key)
                        .download_with(path_str(&src), back, &opts)
                        .expect("download")
                });
                (u, d)
            } else {
                let batch = |b: String| time(|| openssh_sftp(port, ctx.key, &b));
                (
                    batch(format!("put {} {}\n", src.display(), target.display())),
                    batch(format!("get {} {}\n", src.display(), back.display())),
                )
            }
        },
        |p| {
            assert_eq!(
                fs::metadata(p).map(|m| m.len()).unwrap_or(0),
                mb << 20,
                "{}",
                p.display()
            );
        },
    );
    println!("\n### {label}: {mb} MiB file, {} run(s), median", ctx.runs);
    println!("| direction | client | MB/s | ratio vs OpenSSH | runs (s) |");
    println!("|---|---|---|---|---|");
    print_rows(ctx, times, "OpenSSH `sftp`", |secs| {
        format!("{:.1}", bytes / secs / 1e6)
    });
}

/// `files` files of 4 KiB up and down through `port`; prints a table.
fn small_files(ctx: &Ctx<'_>, port: u16, files: usize, label: &str) {
    let tree = ctx.path(&format!("small-{files}"));
    if count_files(&tree) != files {
        remove(&tree);
        fs::create_dir(&tree).expect("mkdir");
        for i in 0..files {
            fs::write(tree.join(format!("f{i:05}.csv")), vec![b'x'; 4096]).expect("write");
        }
    }
    let times = run_cases(
        ctx,
        label,
        "s",
        |case, target, back| {
            if case < ctx.sessions.len() {
                let opts = TransferOptions::new().sessions(ctx.sessions[case]);
                let u = time(|| {
                    connect(port, &ctx.host_key, ctx.key)
                        .upload_dir(&tree, path_str(target), &opts)
                        .expect("upload_dir")
                });
                let d = time(|| {
                    connect(port, &ctx.host_key, ctx.key)
                        .download_dir(path_str(&tree), back, &opts)
                        .expect("download_dir")
                });
                (u, d)
            } else {
                let batch = |b: String| time(|| openssh_sftp(port, ctx.key, &b));
                (
                    batch(format!(
                        "mkdir {t}\nput -r {} {t}\n",
                        tree.display(),
                        t = target.display()
                    )),
                    batch(format!("get -r {} {}\n", tree.display(), back.display())),
                )
            }
        },
        |p| assert_eq!(count_files(p), files, "{}", p.display()),
    );
    println!(
        "\n### {label}: {files} files of 4 KiB, {} run(s), median",
        ctx.runs
    );
    println!("| direction | client | seconds | files/s | ratio vs OpenSSH | runs (s) |");
    println!("|---|---|---|---|---|---|");
    print_rows(ctx, times, "OpenSSH `sftp -r`", |secs| {
        format!("{secs:.2} | {:.0}", files as f64 / secs)
    });
}

fn main() {
    let rtts = env_list("ETL_BENCH_RTT_MS", &[50, 10]);
    let mb = env_num("ETL_BENCH_MB", 256);
    let files = env_num("ETL_BENCH_FILES", 2000) as usize;
    let sessions: Vec<usize> = env_list("ETL_BENCH_SESSIONS", &[1, 2, 4, 8])
        .into_iter()
        .map(|n| n.max(1) as usize)
        .collect();
    let runs = env_num("ETL_BENCH_RUNS", 3).max(1) as usize;
    let openssh = env_num("ETL_BENCH_OPENSSH", 1) == 1;
    let loopback_mb = env_num("ETL_BENCH_LOOPBACK_MB", 256);

    let Some((server, key)) = bench_sshd(None) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let ctx = Ctx {
        key: &key,
        host_key: server
            .host_key_public_line(HostKeyType::Ed25519)
            .to_string(),
        dir: dir.path(),
        runs,
        sessions,
        openssh,
    };
    println!(
        "# parallel sessions: RTTs {rtts:?} ms, {mb} MiB, {files} files, sessions {:?}, {runs} run(s); load average {}",
        ctx.sessions,
        loadavg()
    );

    for rtt in rtts {
        let one_way = Duration::from_micros(rtt * 500);
        let (measured, line_mbps) = check_line(one_way);
        println!(
            "\n## {rtt} ms round trip: measured {measured:.1} ms through the delay line; raw line throughput {line_mbps:.0} MB/s (one connection, 64 MiB)"
        );
        let line = DelayLine::start(server.addr(), one_way);
        if openssh {
            let pwd = median(
                (0..3)
                    .map(|_| time(|| openssh_sftp(line.port(), &key, "pwd\n")))
                    .collect(),
            );
            let ours = median(
                (0..3)
                    .map(|_| time(|| connect(line.port(), &ctx.host_key, &key)))
                    .collect(),
            );
            println!("(a `pwd`-only `sftp -b` takes {pwd:.2} s; an etl-ssh connect + sftp takes {ours:.2} s)");
        }
        if mb > 0 {
            large_file(&ctx, line.port(), mb, &format!("{rtt} ms RTT"));
        }
        if files > 0 {
            small_files(&ctx, line.port(), files, &format!("{rtt} ms RTT"));
        }
    }

    if loopback_mb > 0 {
        let loop_ctx = Ctx {
            sessions: vec![1, 4],
            openssh: false,
            host_key: ctx.host_key.clone(),
            ..ctx
        };
        large_file(&loop_ctx, server.port(), loopback_mb, "loopback, no delay");
    }
    println!("\nload average at the end: {}", loadavg());
}
