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
//! Peers: OpenSSH's `sftp -b`, and rclone (`copyto`/`copy` on an sftp
//! remote with `--multi-thread-streams 4` and `--transfers 4`, its fastest
//! settings for one server) when `rclone` is on `PATH`.
//!
//! Knobs (environment): `ETL_BENCH_RTT_MS` (round trips, comma-separated,
//! default `10,50,100`), `ETL_BENCH_MB` (large file, default 256; 0 skips),
//! `ETL_BENCH_FILES` (number of 4 KiB files, default 2000; 0 skips),
//! `ETL_BENCH_SESSIONS` (default `4`, the library's default; e.g.
//! `1,2,4,8` to compare), `ETL_BENCH_RUNS` (runs per case, median
//! reported, default 3), `ETL_BENCH_OPENSSH` (0 skips OpenSSH's `sftp`,
//! default 1), `ETL_BENCH_RCLONE` (0 skips rclone, default 1),
//! `ETL_BENCH_ONE` (0 skips the one-small-file case, default 1),
//! `ETL_BENCH_TRACE` (1 prints a packet trace of one small file up and
//! down, etl-ssh's and OpenSSH's, with the library's log lines, and for
//! the large file what each connection carried per round trip and the
//! CPU used, and nothing else; default 0), `ETL_BENCH_TRACE_TAIL` (with
//! the trace: the last lines of each large transfer's flights and log
//! lines, default 0),
//! `ETL_BENCH_LINK` (`tun`: instead of the delay line, a link in the
//! kernel, `support::tun_link`, with TCP end to end from the client to a
//! relay in front of sshd; needs root; default: the delay line),
//! `ETL_BENCH_NAMES` (a folder of that many names listed, default 50000;
//! 0 skips), `ETL_BENCH_TREE` (`folders,files` of 4 KiB downloaded as a
//! tree, default `20,10`; 0 skips), `ETL_BENCH_RCVBUF` (the sessions' receive
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
use support::tun_link::{TunLink, SERVER_SIDE};
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
        .arg(format!("{}@{}", current_user(), support::host()))
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
    /// The other clients, after the etl-ssh cases.
    peers: Vec<Peer>,
}

/// Another client, timed beside etl-ssh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    OpenSsh,
    Rclone,
}

impl Peer {
    fn name(self, what: &str) -> String {
        match (self, what) {
            (Peer::OpenSsh, "files") => "OpenSSH `sftp -r`".into(),
            (Peer::OpenSsh, _) => "OpenSSH `sftp`".into(),
            (Peer::Rclone, "files") => "rclone `--transfers 4`".into(),
            (Peer::Rclone, _) => "rclone `--multi-thread-streams 4`".into(),
        }
    }
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
    let cases = ctx.sessions.len() + ctx.peers.len();
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
/// `cells(median seconds)`, its ratio to each peer's median (higher is
/// better for etl-ssh), and its runs.
fn print_rows(
    ctx: &Ctx<'_>,
    (up, down): (Vec<Vec<f64>>, Vec<Vec<f64>>),
    what: &str,
    cells: impl Fn(f64) -> String,
) {
    let peers: Vec<String> = ctx.peers.iter().map(|p| p.name(what)).collect();
    println!(
        "| direction | client | {} | {} | runs (s) |",
        match what {
            "files" => "seconds | files/s",
            "one" => "seconds",
            _ => "MB/s",
        },
        peers
            .iter()
            .map(|p| format!("ratio vs {p}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!(
        "|---|---|---|{}---|",
        "---|".repeat(peers.len() + usize::from(what == "files"))
    );
    for (dir_name, t) in [("upload", &up), ("download", &down)] {
        let n = ctx.sessions.len();
        let theirs: Vec<f64> = (0..ctx.peers.len())
            .map(|i| median(t[n + i].clone()))
            .collect();
        for (case, runs) in t.iter().enumerate() {
            let secs = median(runs.clone());
            let who = if case < n {
                format!("etl-ssh sessions({})", ctx.sessions[case])
            } else {
                peers[case - n].clone()
            };
            let ratios: Vec<String> = theirs
                .iter()
                .map(|th| {
                    if case < n {
                        format!("{:.2}×", th / secs)
                    } else {
                        "—".to_string()
                    }
                })
                .collect();
            println!(
                "| {dir_name} | {who} | {} | {} | {:?} |",
                cells(secs),
                ratios.join(" | "),
                rounded(runs)
            );
        }
    }
}

/// Runs `rclone` with `args` (after the common ones); panics on failure.
fn rclone(args: &[&str]) {
    let out = Command::new("rclone")
        .args(["-q", "--sftp-disable-hashcheck", "--retries", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("run rclone");
    assert!(
        out.status.success(),
        "rclone failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An rclone remote path on the bench server through `port`.
fn rclone_path(port: u16, key: &ClientKey, path: &Path) -> String {
    format!(
        ":sftp,host={},port={port},user={},key_file={}:{}",
        support::host(),
        current_user(),
        key.path.display(),
        path.display()
    )
}

/// Moves `src` up to `target` and down to `back` with `peer` through
/// `port` (a file, or with `dir` a folder); the seconds each way.
fn peer_round_trip(
    peer: Peer,
    port: u16,
    key: &ClientKey,
    (src, target, back): (&Path, &Path, &Path),
    dir: bool,
) -> (f64, f64) {
    match (peer, dir) {
        (Peer::OpenSsh, false) => {
            let batch = |b: String| time(|| openssh_sftp(port, key, &b));
            (
                batch(format!("put {} {}\n", src.display(), target.display())),
                batch(format!("get {} {}\n", src.display(), back.display())),
            )
        }
        (Peer::OpenSsh, true) => {
            let batch = |b: String| time(|| openssh_sftp(port, key, &b));
            (
                batch(format!(
                    "mkdir {t}\nput -r {} {t}\n",
                    src.display(),
                    t = target.display()
                )),
                batch(format!("get -r {} {}\n", src.display(), back.display())),
            )
        }
        (Peer::Rclone, false) => (
            time(|| {
                rclone(&[
                    "copyto",
                    "--multi-thread-streams",
                    "4",
                    path_str(src),
                    &rclone_path(port, key, target),
                ])
            }),
            time(|| {
                rclone(&[
                    "copyto",
                    "--multi-thread-streams",
                    "4",
                    &rclone_path(port, key, src),
                    path_str(back),
                ])
            }),
        ),
        (Peer::Rclone, true) => (
            time(|| {
                rclone(&[
                    "copy",
                    "--transfers",
                    "4",
                    path_str(src),
                    &rclone_path(port, key, target),
                ])
            }),
            time(|| {
                rclone(&[
                    "copy",
                    "--transfers",
                    "4",
                    &rclone_path(port, key, src),
                    path_str(back),
                ])
            }),
        ),
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
                let peer = ctx.peers[case - ctx.sessions.len()];
                peer_round_trip(peer, port, ctx.key, (&src, target, back), false)
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
    print_rows(ctx, times, "file", |secs| {
        format!("{:.1}", bytes / secs / 1e6)
    });
}

/// Whether `rclone` is on `PATH`.
fn rclone_found() -> bool {
    Command::new("rclone")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One file of 4 KiB up and down through `port`, each a whole job
/// (connect, move, close); prints a table of seconds.
fn one_file(ctx: &Ctx<'_>, port: u16, label: &str) {
    let src = ctx.path("one.csv");
    fs::write(&src, vec![b'x'; 4096]).expect("write");
    let times = run_cases(
        ctx,
        label,
        "one",
        |case, target, back| {
            if case < ctx.sessions.len() {
                let u = time(|| {
                    connect(port, &ctx.host_key, ctx.key)
                        .upload(&src, path_str(target))
                        .expect("upload")
                });
                let d = time(|| {
                    connect(port, &ctx.host_key, ctx.key)
                        .download(path_str(&src), back)
                        .expect("download")
                });
                (u, d)
            } else {
                let peer = ctx.peers[case - ctx.sessions.len()];
                peer_round_trip(peer, port, ctx.key, (&src, target, back), false)
            }
        },
        |p| assert_eq!(fs::metadata(p).map(|m| m.len()).unwrap_or(0), 4096),
    );
    println!(
        "\n### {label}: one file of 4 KiB, {} run(s), median",
        ctx.runs
    );
    print_rows(ctx, times, "one", |secs| format!("{secs:.3} s"));
}

/// With `ETL_BENCH_TRACE=1`: one file of 4 KiB up and down through
/// `port` by etl-ssh and by OpenSSH's `sftp`, each with a packet trace of
/// the delay line and the library's log lines, printed.
fn trace_one_file(ctx: &Ctx<'_>, port: u16, label: &str) {
    let src = ctx.path("one.csv");
    fs::write(&src, vec![b'x'; 4096]).expect("write");
    let target = ctx.path("traced-up.csv");
    let back = ctx.path("traced-down.csv");
    let jobs: [(&str, &dyn Fn()); 3] = [
        ("etl-ssh upload", &|| {
            connect(port, &ctx.host_key, ctx.key)
                .upload(&src, path_str(&target))
                .expect("upload");
        }),
        ("etl-ssh download", &|| {
            connect(port, &ctx.host_key, ctx.key)
                .download(path_str(&src), &back)
                .expect("download");
        }),
        ("OpenSSH sftp put, then get", &|| {
            peer_round_trip(Peer::OpenSsh, port, ctx.key, (&src, &target, &back), false);
        }),
    ];
    for (what, job) in jobs {
        let trace = traced_job([&target, &back], true, job);
        println!(
            "\n### {label}: trace of one file of 4 KiB, {what}\n\n```\n{}```",
            trace.flights()
        );
    }
}

/// Runs `job` under [`support::traced`] once `paths` are removed.
fn traced_job(paths: [&Path; 2], logs: bool, job: &dyn Fn()) -> support::Trace {
    for p in paths {
        remove(p);
    }
    support::traced(logs, job).1
}

/// With `ETL_BENCH_TRACE=1`: `mb` MiB up and down through `port` by
/// etl-ssh with `sessions` (once each), each with what every connection
/// carried per round trip and the CPU the machine and the client used.
fn trace_large_file(ctx: &Ctx<'_>, port: u16, mb: u64, rtt: Duration, label: &str) {
    let src = ctx.path("src.bin");
    if fs::metadata(&src).map(|m| m.len()).unwrap_or(0) != mb << 20 {
        write_noise(&src, mb);
    }
    let target = ctx.path("traced-up.bin");
    let back = ctx.path("traced-down.bin");
    if ctx.peers.contains(&Peer::OpenSsh) {
        let trace = traced_job([&target, &back], false, &|| {
            peer_round_trip(Peer::OpenSsh, port, ctx.key, (&src, &target, &back), false);
        });
        println!(
            "\n### {label}: {mb} MiB by OpenSSH's sftp, put then get, per connection\n\n```\n{}```",
            trace.per_round_trip(rtt)
        );
    }
    for &sessions in &ctx.sessions {
        let opts = TransferOptions::new().sessions(sessions);
        let jobs: [(&str, &dyn Fn()); 2] = [
            ("upload", &|| {
                connect(port, &ctx.host_key, ctx.key)
                    .upload_with(&src, path_str(&target), &opts)
                    .expect("upload");
            }),
            ("download", &|| {
                connect(port, &ctx.host_key, ctx.key)
                    .download_with(path_str(&src), &back, &opts)
                    .expect("download");
            }),
        ];
        let tail = env_num("ETL_BENCH_TRACE_TAIL", 0) as usize;
        for (what, job) in jobs {
            let trace = traced_job([&target, &back], tail > 0, job);
            println!(
                "\n### {label}: {mb} MiB {what}, sessions({sessions}), per connection\n\n```\n{}```",
                trace.per_round_trip(rtt)
            );
            if tail > 0 {
                let flights = trace.flights();
                let lines: Vec<&str> = flights.lines().collect();
                let from = lines.len().saturating_sub(tail);
                println!("```\n{}\n```", lines[from..].join("\n"));
            }
        }
    }
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
                let peer = ctx.peers[case - ctx.sessions.len()];
                peer_round_trip(peer, port, ctx.key, (&tree, target, back), true)
            }
        },
        |p| assert_eq!(count_files(p), files, "{}", p.display()),
    );
    println!(
        "\n### {label}: {files} files of 4 KiB, {} run(s), median",
        ctx.runs
    );
    print_rows(ctx, times, "files", |secs| {
        format!("{secs:.2} | {:.0}", files as f64 / secs)
    });
}

/// Times each of `cases` (name, job) `runs` times, the order rotated;
/// prints a table of median seconds, each etl-ssh case's ratio to each
/// other case (`their seconds ÷ ours`), and the runs.
fn alternate(label: &str, what: &str, runs: usize, cases: &[(String, &dyn Fn() -> f64)]) {
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for run in 0..runs {
        for k in 0..cases.len() {
            let case = (k + run) % cases.len();
            let s = (cases[case].1)();
            eprintln!("  [{label}] {what} run {run}: {} {s:.2} s", cases[case].0);
            secs[case].push(s);
        }
    }
    let medians: Vec<f64> = secs.iter().map(|r| median(r.clone())).collect();
    println!("\n### {label}: {what}, {runs} run(s), median");
    println!("| client | seconds | ratio (their time ÷ ours) | runs (s) |");
    println!("|---|---|---|---|");
    for (i, (name, _)) in cases.iter().enumerate() {
        let ratio = if name.starts_with("etl-ssh") {
            cases
                .iter()
                .zip(&medians)
                .filter(|((other, _), _)| !other.starts_with("etl-ssh"))
                .map(|((other, _), m)| format!("{:.2}× vs {other}", m / medians[i]))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "—".into()
        };
        println!(
            "| {name} | {:.2} | {ratio} | {:?} |",
            medians[i],
            rounded(&secs[i])
        );
    }
}

/// One folder of `names` empty files listed, whole-process: etl-ssh's
/// `read_dir` beside OpenSSH's `ls -1` (neither asks for more than the
/// listing).
fn listing(ctx: &Ctx<'_>, port: u16, names: usize, label: &str) {
    let dir = ctx.path(&format!("names-{names}"));
    if fs::read_dir(&dir).map(|r| r.count()).unwrap_or(0) != names {
        remove(&dir);
        fs::create_dir(&dir).expect("mkdir");
        for i in 0..names {
            fs::File::create(dir.join(format!("name-{i:06}.csv"))).expect("create");
        }
    }
    let ours = || {
        time(|| {
            let got = connect(port, &ctx.host_key, ctx.key)
                .read_dir(path_str(&dir))
                .expect("read_dir");
            assert_eq!(got.len(), names);
        })
    };
    let theirs = || time(|| openssh_sftp(port, ctx.key, &format!("ls -1 {}\n", dir.display())));
    let mut cases: Vec<(String, &dyn Fn() -> f64)> = vec![("etl-ssh read_dir".into(), &ours)];
    if ctx.peers.contains(&Peer::OpenSsh) {
        cases.push(("OpenSSH `ls -1`".into(), &theirs));
    }
    alternate(
        label,
        &format!("a folder of {names} names listed"),
        ctx.runs,
        &cases,
    );
}

/// A tree of `folders` folders of `files` files of 4 KiB each downloaded,
/// whole-process: etl-ssh's `download_dir` beside OpenSSH's `get -r` (and
/// rclone's `copy --transfers 4`).
fn tree(ctx: &Ctx<'_>, port: u16, (folders, files): (usize, usize), label: &str) {
    let src = ctx.path(&format!("tree-{folders}x{files}"));
    if count_files(&src) != folders * files {
        remove(&src);
        for d in 0..folders {
            let sub = src.join(format!("d{d:04}"));
            fs::create_dir_all(&sub).expect("mkdir");
            for f in 0..files {
                fs::write(sub.join(format!("f{f:04}.csv")), vec![b'x'; 4096]).expect("write");
            }
        }
    }
    let back = ctx.path("tree-back");
    let fresh = || {
        remove(&back);
    };
    let check = || {
        assert_eq!(count_files(&back), folders * files);
        remove(&back);
    };
    let ours = || {
        fresh();
        let s = time(|| {
            connect(port, &ctx.host_key, ctx.key)
                .download_dir(path_str(&src), &back, &TransferOptions::new())
                .expect("download_dir")
        });
        check();
        s
    };
    let openssh = || {
        fresh();
        let s = time(|| {
            openssh_sftp(
                port,
                ctx.key,
                &format!("get -r {} {}\n", src.display(), back.display()),
            )
        });
        check();
        s
    };
    let rclone_copy = || {
        fresh();
        let s = time(|| {
            rclone(&[
                "copy",
                "--transfers",
                "4",
                &rclone_path(port, ctx.key, &src),
                path_str(&back),
            ])
        });
        check();
        s
    };
    let mut cases: Vec<(String, &dyn Fn() -> f64)> = vec![("etl-ssh download_dir".into(), &ours)];
    if ctx.peers.contains(&Peer::OpenSsh) {
        cases.push(("OpenSSH `get -r`".into(), &openssh));
    }
    if ctx.peers.contains(&Peer::Rclone) {
        cases.push(("rclone `--transfers 4`".into(), &rclone_copy));
    }
    alternate(
        label,
        &format!("a tree of {folders} folders × {files} files of 4 KiB downloaded"),
        ctx.runs,
        &cases,
    );
}

fn main() {
    let rtts = env_list("ETL_BENCH_RTT_MS", &[10, 50, 100]);
    let mb = env_num("ETL_BENCH_MB", 256);
    let files = env_num("ETL_BENCH_FILES", 2000) as usize;
    let sessions: Vec<usize> = env_list("ETL_BENCH_SESSIONS", &[etl_ssh::DEFAULT_SESSIONS as u64])
        .into_iter()
        .map(|n| n.max(1) as usize)
        .collect();
    let runs = env_num("ETL_BENCH_RUNS", 3).max(1) as usize;
    let openssh = env_num("ETL_BENCH_OPENSSH", 1) == 1;
    let rclone = env_num("ETL_BENCH_RCLONE", 1) == 1 && rclone_found();
    let one = env_num("ETL_BENCH_ONE", 1) == 1;
    let peers: Vec<Peer> = [(openssh, Peer::OpenSsh), (rclone, Peer::Rclone)]
        .into_iter()
        .filter_map(|(on, p)| on.then_some(p))
        .collect();
    let loopback_mb = env_num("ETL_BENCH_LOOPBACK_MB", 256);
    let names = env_num("ETL_BENCH_NAMES", 50_000) as usize;
    let tree_shape = env_list("ETL_BENCH_TREE", &[20, 10]);
    let tree_shape = match tree_shape[..] {
        [folders, files] if folders > 0 && files > 0 => Some((folders as usize, files as usize)),
        _ => None,
    };

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
        peers,
    };
    println!(
        "# parallel sessions: RTTs {rtts:?} ms, {mb} MiB, {files} files, sessions {:?}, {runs} run(s); load average {}",
        ctx.sessions,
        loadavg()
    );

    let tun = std::env::var("ETL_BENCH_LINK").is_ok_and(|v| v == "tun");
    if tun {
        support::use_host(&SERVER_SIDE.to_string());
    }
    let cases = Cases {
        openssh,
        mb,
        one,
        files,
        names,
        tree: tree_shape,
    };
    // One kernel link for every round trip: its devices last as long as
    // the process.
    let tun_link = tun.then(|| {
        let link = TunLink::start(Duration::ZERO)
            .unwrap_or_else(|e| panic!("ETL_BENCH_LINK=tun needs root, ip and /dev/net/tun: {e}"));
        let relay = DelayLine::start_on(SERVER_SIDE, server.addr(), Duration::ZERO);
        (link, relay)
    });
    for rtt in rtts {
        let one_way = Duration::from_micros(rtt * 500);
        if let Some((link, relay)) = &tun_link {
            link.set_one_way(one_way);
            println!("\n## {rtt} ms round trip through a TUN link (TCP end to end, in the kernel)");
            link.in_client(|| at_round_trip(&ctx, relay.port(), rtt, &cases));
            continue;
        }
        let (measured, line_mbps) = check_line(one_way);
        println!(
            "\n## {rtt} ms round trip: measured {measured:.1} ms through the delay line; raw line throughput {line_mbps:.0} MB/s (one connection, 64 MiB)"
        );
        let line = DelayLine::start(server.addr(), one_way);
        at_round_trip(&ctx, line.port(), rtt, &cases);
    }

    if loopback_mb > 0 {
        let loop_ctx = Ctx {
            sessions: vec![1, 4],
            peers: vec![Peer::OpenSsh],
            host_key: ctx.host_key.clone(),
            ..ctx
        };
        large_file(&loop_ctx, server.port(), loopback_mb, "loopback, no delay");
    }
    println!("\nload average at the end: {}", loadavg());
}

/// Which cases a run has (the knobs).
struct Cases {
    openssh: bool,
    mb: u64,
    one: bool,
    files: usize,
    names: usize,
    tree: Option<(usize, usize)>,
}

/// Every case at one round trip `rtt`, through `port`.
fn at_round_trip(ctx: &Ctx<'_>, port: u16, rtt: u64, cases: &Cases) {
    if cases.openssh {
        let pwd = median(
            (0..3)
                .map(|_| time(|| openssh_sftp(port, ctx.key, "pwd\n")))
                .collect(),
        );
        let ours = median(
            (0..3)
                .map(|_| time(|| connect(port, &ctx.host_key, ctx.key)))
                .collect(),
        );
        println!("(a `pwd`-only `sftp -b` takes {pwd:.2} s; an etl-ssh connect + sftp takes {ours:.2} s)");
        let stages: Vec<(f64, f64, f64)> = (0..3)
            .map(|_| support::connect_stages(port, &ctx.host_key, &ctx.key.path))
            .collect();
        let stage = |f: fn(&(f64, f64, f64)) -> f64| median(stages.iter().map(f).collect());
        let rtt_s = rtt as f64 / 1000.0;
        let (tcp, ssh, chan) = (stage(|s| s.0), stage(|s| s.1), stage(|s| s.2));
        println!(
            "(etl-ssh's connect in round trips: TCP {:.1}, TCP + SSH handshake + authentication {:.1}, SFTP channel {:.1})",
            tcp / rtt_s,
            ssh / rtt_s,
            chan / rtt_s
        );
    }
    if env_num("ETL_BENCH_TRACE", 0) == 1 {
        trace_one_file(ctx, port, &format!("{rtt} ms RTT"));
        if cases.mb > 0 {
            let rtt_d = Duration::from_millis(rtt);
            trace_large_file(ctx, port, cases.mb, rtt_d, &format!("{rtt} ms RTT"));
        }
        return;
    }
    if cases.one {
        one_file(ctx, port, &format!("{rtt} ms RTT"));
    }
    if cases.mb > 0 {
        large_file(ctx, port, cases.mb, &format!("{rtt} ms RTT"));
    }
    if cases.files > 0 {
        small_files(ctx, port, cases.files, &format!("{rtt} ms RTT"));
    }
    if cases.names > 0 {
        listing(ctx, port, cases.names, &format!("{rtt} ms RTT"));
    }
    if let Some(shape) = cases.tree {
        tree(ctx, port, shape, &format!("{rtt} ms RTT"));
    }
}
