//! SFTP throughput: etl-ssh beside OpenSSH's `sftp`, against one test sshd
//! on loopback. Run with `cargo bench --bench sftp`.
//!
//! Knobs (environment): `ETL_BENCH_MB` (file size, default 256),
//! `ETL_BENCH_RUNS` (runs per case, median reported, default 3),
//! `ETL_BENCH_CIPHER` (restrict the server to one cipher, e.g.
//! `aes128-ctr`; default: the normal negotiation, chacha20-poly1305),
//! `ETL_BENCH_SMALL` (number of 4 KiB files, default 2000; 0 skips),
//! `ETL_BENCH_SWEEP=1` (also try several buffer sizes),
//! `ETL_BENCH_RCVBUF` (the sessions' receive buffer in bytes, 0 for the
//! kernel's own sizing; default: the library's),
//! `ETL_BENCH_LARGE=1` (also the large-file case, off by default: about
//! two minutes and 2 GiB of /tmp at the default `ETL_BENCH_LARGE_MB`
//! of 1024).
//!
//! The large-file case times `upload` / `download` (default options, then
//! with `fsync(false)`) beside `sftp -b` put / get (and put with `-f`,
//! which fsyncs as etl-ssh's default does), and measures peak RSS
//! while moving the file: each etl-ssh transfer runs alone in a child
//! process (this binary re-executed with `ETL_BENCH_RSS_CHILD` set), which
//! reports its own `VmRSS` / `VmHWM` from `/proc/self/status` after
//! connecting and `VmHWM` after the transfer; `upload`, `download`,
//! `create` + `std::io::copy` and `open` + `std::io::copy`. For OpenSSH, the
//! `VmHWM` of `sftp` and of the `ssh` it starts are sampled from
//! `/proc/<pid>/status` every 10 ms. Client CPU per GiB comes from
//! `/proc/self/stat` (this process, or the waited-for `sftp` and `ssh`).

#[path = "../tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;
mod support;

use crate::common::HostKeyType;
use support::{bench_sshd, cpu_times, env_num, loadavg, median, time, write_noise};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{current_user, ClientKey, Sshd};
use etl_ssh::{SftpSession, TransferOptions};

/// Runs OpenSSH's `sftp -b` with `batch`; returns the client's peak RSS
/// (MiB): the `VmHWM` of `sftp` plus that of the `ssh` it starts (which
/// does the crypto), as last sampled while they ran (every 10 ms).
fn openssh_sftp(server: &Sshd, key: &ClientKey, batch: &str) -> f64 {
    openssh_sftp_with(server, key, &[], batch)
}

/// [`openssh_sftp`] with extra command-line flags (e.g. `-f`: fsync each
/// file, with `fsync@openssh.com`).
fn openssh_sftp_with(server: &Sshd, key: &ClientKey, flags: &[&str], batch: &str) -> f64 {
    let dir = tempfile::tempdir().expect("batch dir");
    let batch_path = dir.path().join("batch");
    fs::write(&batch_path, batch).expect("write batch");
    let stderr_path = dir.path().join("stderr");
    let stderr = fs::File::create(&stderr_path).expect("stderr file");
    let mut child = Command::new("sftp")
        .arg("-q")
        .args(flags)
        .arg("-i")
        .arg(&key.path)
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes"])
        .arg("-P")
        .arg(server.port().to_string())
        .arg("-b")
        .arg(&batch_path)
        .arg(format!("{}@{}", current_user(), server.host()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("run sftp");
    let pid = child.id();
    let (mut sftp_hwm, mut ssh_hwm) = (0.0f64, 0.0f64);
    let hwm_of = |pid: &str| {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|text| status_kib(&text, "VmHWM:") / 1024.0)
            .unwrap_or(0.0)
    };
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait sftp") {
            break status;
        }
        sftp_hwm = sftp_hwm.max(hwm_of(&pid.to_string()));
        let children =
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for ssh in children.split_whitespace() {
            ssh_hwm = ssh_hwm.max(hwm_of(ssh));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let hwm = sftp_hwm + ssh_hwm;
    assert!(
        status.success(),
        "sftp failed: {}",
        fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    hwm
}

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmHWM:`.
fn status_kib(text: &str, field: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// (`VmRSS`, `VmHWM`) of this process, in KiB.
fn own_rss_kib() -> (f64, f64) {
    let text = fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status_kib(&text, "VmRSS:"), status_kib(&text, "VmHWM:"))
}

fn connect(server: &Sshd, key: &ClientKey) -> SftpSession {
    connect_to(
        server.port(),
        server.host_key_public_line(HostKeyType::Ed25519),
        &key.path,
    )
}

fn connect_to(port: u16, host_key: &str, key: &Path) -> SftpSession {
    support::connect_sftp(port, host_key, key)
}

/// The ways of moving a file whose peak RSS is measured.
const RSS_MODES: [&str; 4] = ["upload", "download", "create+io::copy", "open+io::copy"];

/// Child mode (`ETL_BENCH_RSS_CHILD` = one of [`RSS_MODES`]): connects, notes
/// its RSS, moves one file, prints one line with the figures and exits.
fn rss_child(mode: &str) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let port: u16 = var("ETL_BENCH_RSS_PORT").parse().expect("port");
    let sftp = connect_to(
        port,
        &var("ETL_BENCH_RSS_HOST_KEY"),
        Path::new(&var("ETL_BENCH_RSS_KEY")),
    );
    let local = PathBuf::from(var("ETL_BENCH_RSS_LOCAL"));
    let remote = var("ETL_BENCH_RSS_REMOTE");
    let (rss0, hwm0) = own_rss_kib();
    let (cpu0, _) = cpu_times();
    let t = Instant::now();
    let bytes = match mode {
        "upload" => sftp.upload(&local, &remote).expect("upload"),
        "download" => sftp.download(&remote, &local).expect("download"),
        "create+io::copy" => {
            let mut from = fs::File::open(&local).expect("open local");
            let mut to = sftp.create(&remote).expect("create");
            let n = io::copy(&mut from, &mut to).expect("copy");
            to.close().expect("close");
            n
        }
        "open+io::copy" => {
            let mut from = sftp.open(&remote).expect("open");
            let mut to = fs::File::create(&local).expect("create local");
            io::copy(&mut from, &mut to).expect("copy")
        }
        other => panic!("unknown ETL_BENCH_RSS_CHILD mode {other:?}"),
    };
    let secs = t.elapsed().as_secs_f64();
    let (cpu1, _) = cpu_times();
    let (_, hwm1) = own_rss_kib();
    println!(
        "rss-child {rss0} {hwm0} {hwm1} {secs} {bytes} {}",
        cpu1 - cpu0
    );
}

/// What a child reported: baseline `VmRSS` and `VmHWM` after connecting,
/// `VmHWM` at the end (MiB), seconds, CPU seconds of the transfer.
struct ChildRss {
    rss0: f64,
    hwm0: f64,
    hwm1: f64,
    secs: f64,
    cpu: f64,
}

fn run_rss_child(
    mode: &str,
    server: &Sshd,
    key: &ClientKey,
    local: &Path,
    remote: &str,
) -> ChildRss {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .env("ETL_BENCH_RSS_CHILD", mode)
        .env("ETL_BENCH_RSS_PORT", server.port().to_string())
        .env(
            "ETL_BENCH_RSS_HOST_KEY",
            server.host_key_public_line(HostKeyType::Ed25519),
        )
        .env("ETL_BENCH_RSS_KEY", &key.path)
        .env("ETL_BENCH_RSS_LOCAL", local)
        .env("ETL_BENCH_RSS_REMOTE", remote)
        .stdin(Stdio::null())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode} child failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("rss-child "))
        .expect("child report line");
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().expect("number"))
        .collect();
    ChildRss {
        rss0: f[0] / 1024.0,
        hwm0: f[1] / 1024.0,
        hwm1: f[2] / 1024.0,
        secs: f[3],
        cpu: f[5],
    }
}

fn main() {
    if let Ok(mode) = std::env::var("ETL_BENCH_RSS_CHILD") {
        rss_child(&mode);
        return;
    }
    let mb = env_num("ETL_BENCH_MB", 256);
    let runs = env_num("ETL_BENCH_RUNS", 3).max(1) as usize;
    let small = env_num("ETL_BENCH_SMALL", 2000) as usize;
    let cipher = std::env::var("ETL_BENCH_CIPHER").ok();

    let Some((server, key)) = bench_sshd(cipher.as_deref()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let src = d.join("src.bin");
    write_noise(&src, mb);
    let bytes = (mb << 20) as f64;
    let mbps = |secs: f64| bytes / secs / 1e6;
    let remote = |name: &str| d.join(name).to_str().expect("utf-8").to_string();

    let sftp = connect(&server, &key);
    println!(
        "# {mb} MiB file, {runs} runs each, median; cipher: {}; load average {}",
        cipher.as_deref().unwrap_or("default (chacha20-poly1305)"),
        loadavg()
    );
    let mut up = Vec::new();
    let mut down = Vec::new();
    let mut o_up = Vec::new();
    let mut o_down = Vec::new();
    for i in 0..runs {
        up.push(time(|| {
            sftp.upload(&src, remote(&format!("up{i}")))
                .expect("upload");
        }));
        down.push(time(|| {
            sftp.download(remote(&format!("up{i}")), d.join(format!("down{i}")))
                .expect("download");
        }));
        o_up.push(time(|| {
            openssh_sftp(
                &server,
                &key,
                &format!("put {} {}\n", src.display(), remote(&format!("oup{i}"))),
            )
        }));
        o_down.push(time(|| {
            openssh_sftp(
                &server,
                &key,
                &format!(
                    "get {} {}\n",
                    remote(&format!("oup{i}")),
                    d.join(format!("odown{i}")).display()
                ),
            )
        }));
        for name in [
            format!("up{i}"),
            format!("down{i}"),
            format!("oup{i}"),
            format!("odown{i}"),
        ] {
            let _ = fs::remove_file(d.join(name));
        }
    }
    let show = |what: &str, ours: &[f64], theirs: &[f64]| {
        let (a, b) = (median(ours.to_vec()), median(theirs.to_vec()));
        println!(
            "{what:<10} etl-ssh {:>7.1} MB/s   openssh sftp {:>7.1} MB/s   ratio {:.2}x   (runs: {:?} / {:?} s)",
            mbps(a),
            mbps(b),
            b / a,
            ours.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>(),
            theirs.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>(),
        );
    };
    let overhead = median(
        (0..runs)
            .map(|_| time(|| openssh_sftp(&server, &key, "pwd\n")))
            .collect(),
    );
    println!(
        "(openssh sftp times include starting sftp and connecting: a `pwd` batch takes {overhead:.2} s)"
    );
    show("upload", &up, &o_up);
    show("download", &down, &o_down);

    if env_num("ETL_BENCH_SWEEP", 0) == 1 {
        for chunks in [2usize, 8, 34, 70, 140] {
            let opts = TransferOptions::new().buffer_size(chunks * 30_000);
            let u = median(
                (0..runs)
                    .map(|_| {
                        time(|| {
                            sftp.upload_with(&src, remote("sweep"), &opts)
                                .expect("upload");
                        })
                    })
                    .collect(),
            );
            let dl = median(
                (0..runs)
                    .map(|_| {
                        time(|| {
                            sftp.download_with(remote("sweep"), d.join("sweep.back"), &opts)
                                .expect("download");
                        })
                    })
                    .collect(),
            );
            println!(
                "buffer {:>9} bytes: upload {:>7.1} MB/s, download {:>7.1} MB/s",
                chunks * 30_000,
                mbps(u),
                mbps(dl)
            );
        }
    }
    let _ = fs::remove_file(&src);

    if env_num("ETL_BENCH_LARGE", 0) == 1 {
        large(&server, &key, d, &sftp, runs);
    }

    if small > 0 {
        small_files(&server, &key, d, &sftp, small, runs);
    }
    println!("load average at the end: {}", loadavg());
}

/// `small` files of 4 KiB: `upload_dir` / `download_dir` (default options,
/// then `fsync(false)`) beside `sftp -r` (plain, and `-f` for uploads:
/// fsync each file as the default etl-ssh upload does), `runs` rounds with
/// the order rotated, medians.
fn small_files(
    server: &Sshd,
    key: &ClientKey,
    d: &Path,
    sftp: &SftpSession,
    small: usize,
    runs: usize,
) {
    let tree = d.join("small");
    fs::create_dir(&tree).expect("mkdir");
    for i in 0..small {
        fs::write(tree.join(format!("f{i:05}.csv")), vec![b'x'; 4096]).expect("write");
    }
    let remote = |name: &str| d.join(name).to_str().expect("utf-8").to_string();
    let fsync = TransferOptions::new();
    let no_fsync = TransferOptions::new().fsync(false);
    let count = |p: &Path| fs::read_dir(p).map(|r| r.count()).unwrap_or(0);
    let case = |c: usize, round: usize| -> f64 {
        let fresh = |name: &str| {
            let _ = fs::remove_dir_all(d.join(name));
            remote(name)
        };
        match c {
            0 | 1 => {
                let target = fresh(&format!("s-up{c}-{round}"));
                let opts = if c == 0 { &fsync } else { &no_fsync };
                time(|| sftp.upload_dir(&tree, &target, opts).expect("upload_dir"))
            }
            2 | 3 => {
                let target = fresh(&format!("s-down{c}-{round}"));
                let opts = if c == 2 { &fsync } else { &no_fsync };
                let secs = time(|| {
                    sftp.download_dir(remote("s-src"), &target, opts)
                        .expect("download_dir")
                });
                assert_eq!(count(Path::new(&target)), small);
                secs
            }
            4 | 5 => {
                let target = fresh(&format!("s-oup{c}-{round}"));
                let flags: &[&str] = if c == 4 { &[] } else { &["-f"] };
                time(|| {
                    openssh_sftp_with(
                        server,
                        key,
                        flags,
                        &format!("mkdir {target}\nput -r {} {target}\n", tree.display()),
                    )
                })
            }
            _ => {
                let target = fresh(&format!("s-odown-{round}"));
                time(|| {
                    openssh_sftp(
                        server,
                        key,
                        &format!("get -r {} {target}\n", remote("s-src")),
                    )
                })
            }
        }
    };
    sftp.upload_dir(&tree, remote("s-src"), &no_fsync)
        .expect("upload_dir");
    const NAMES: [&str; 7] = [
        "etl-ssh upload_dir",
        "etl-ssh upload_dir fsync(false)",
        "etl-ssh download_dir",
        "etl-ssh download_dir fsync(false)",
        "openssh put -r",
        "openssh put -r -f (fsync)",
        "openssh get -r",
    ];
    let mut secs = vec![Vec::new(); NAMES.len()];
    for round in 0..runs {
        for k in 0..NAMES.len() {
            let c = (k + round) % NAMES.len();
            secs[c].push(case(c, round));
        }
    }
    let med: Vec<f64> = secs.iter().map(|v| median(v.clone())).collect();
    println!("\n# {small} files of 4 KiB, {runs} rounds, median; time ratio = etl-ssh s / OpenSSH s (lower is better for etl-ssh)");
    let theirs = |c: usize| match c {
        0 => (5, "put -r -f"),
        1 => (4, "put -r"),
        _ => (6, "get -r"),
    };
    for (c, name) in NAMES.iter().enumerate() {
        let runs: Vec<f64> = secs[c]
            .iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect();
        if c < 4 {
            let (o, oname) = theirs(c);
            let also = if c == 0 {
                format!(", {:.2} vs put -r", med[0] / med[4])
            } else {
                String::new()
            };
            println!(
                "{name:<36} {:>6.2} s   time ratio {:.2} vs {oname}{also}   (runs: {runs:?} s)",
                med[c],
                med[c] / med[o]
            );
        } else {
            println!("{name:<36} {:>6.2} s   (runs: {runs:?} s)", med[c]);
        }
    }
}

/// The large-file case: throughput beside OpenSSH, then peak RSS.
fn large(server: &Sshd, key: &ClientKey, d: &Path, sftp: &SftpSession, runs: usize) {
    let mb = env_num("ETL_BENCH_LARGE_MB", 1024);
    let src = d.join("large.bin");
    write_noise(&src, mb);
    let bytes = (mb << 20) as f64;
    let mbps = |secs: f64| bytes / secs / 1e6;
    let no_fsync = TransferOptions::new().fsync(false);
    println!("\n# large file: {mb} MiB, {runs} runs each, median");

    const CASES: [&str; 7] = [
        "etl-ssh upload",
        "etl-ssh download",
        "etl-ssh upload fsync(false)",
        "etl-ssh download fsync(false)",
        "openssh put",
        "openssh get",
        "openssh put -f (fsync)",
    ];
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    let gib = bytes / f64::from(1u32 << 30);
    let mut sftp_hwm: [f64; 2] = [0.0, 0.0];
    for i in 0..runs {
        // Downloads read the source file itself (the server serves this
        // filesystem).
        let down_src = src.to_str().expect("utf-8").to_string();
        for k in 0..CASES.len() {
            // Rotate the order so that no case always runs first.
            let case = (k + i) % CASES.len();
            let out = d.join(format!("L{i}-{case}"));
            let out_remote = out.to_str().expect("utf-8").to_string();
            let (own0, children0) = cpu_times();
            let secs = match case {
                0 => time(|| sftp.upload(&src, &out_remote).expect("upload")),
                1 => time(|| sftp.download(&down_src, &out).expect("download")),
                2 => time(|| {
                    sftp.upload_with(&src, &out_remote, &no_fsync)
                        .expect("upload")
                }),
                3 => time(|| {
                    sftp.download_with(&down_src, &out, &no_fsync)
                        .expect("download")
                }),
                4 => {
                    let batch = format!("put {} {}\n", src.display(), out_remote);
                    let mut hwm = 0.0;
                    let s = time(|| hwm = openssh_sftp(server, key, &batch));
                    sftp_hwm[0] = sftp_hwm[0].max(hwm);
                    s
                }
                6 => {
                    let batch = format!("put {} {}\n", src.display(), out_remote);
                    time(|| openssh_sftp_with(server, key, &["-f"], &batch))
                }
                _ => {
                    let batch = format!("get {} {}\n", down_src, out.display());
                    let mut hwm = 0.0;
                    let s = time(|| hwm = openssh_sftp(server, key, &batch));
                    sftp_hwm[1] = sftp_hwm[1].max(hwm);
                    s
                }
            };
            assert_eq!(
                fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
                mb << 20,
                "{}",
                CASES[case]
            );
            let (own1, children1) = cpu_times();
            // OpenSSH: `sftp` and the `ssh` it starts, both waited for.
            cpu[case].push(if case >= 4 {
                children1 - children0
            } else {
                own1 - own0
            });
            let _ = fs::remove_file(&out);
            t[case].push(secs);
        }
    }
    let rounded = |v: &[f64]| {
        v.iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    };
    let med = |v: &[f64]| median(v.to_vec());
    for (case, name) in CASES.iter().enumerate() {
        let theirs = med(&t[4 + case % 2]);
        println!(
            "{name:<31} {:>7.1} MB/s   ratio {:.2}x vs openssh   client CPU {:.2} s/GiB   (runs: {:?} s)",
            mbps(med(&t[case])),
            theirs / med(&t[case]),
            med(&cpu[case]) / gib,
            rounded(&t[case]),
        );
    }
    println!(
        "etl-ssh upload (fsync) vs openssh put -f (fsync): ratio {:.2}x",
        med(&t[6]) / med(&t[0])
    );
    println!("(ratio = etl-ssh MB/s / OpenSSH MB/s, higher is better for etl-ssh)");

    println!("\n# peak RSS while moving the {mb} MiB file (MiB; one child process per transfer)");
    for mode in RSS_MODES {
        let out = d.join("rss-out");
        let out_remote = out.to_str().expect("utf-8").to_string();
        let (local, remote_path) = match mode {
            "upload" | "create+io::copy" => (src.clone(), out_remote.clone()),
            _ => (out.clone(), src.to_str().expect("utf-8").to_string()),
        };
        let r = run_rss_child(mode, server, key, &local, &remote_path);
        assert_eq!(
            fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
            mb << 20,
            "{mode}"
        );
        let _ = fs::remove_file(&out);
        println!(
            "{mode:<16} peak VmHWM {:>6.1}   baseline after connect: VmRSS {:.1}, VmHWM {:.1}   growth {:>5.1}   ({:.1} MB/s, client CPU {:.2} s/GiB)",
            r.hwm1,
            r.rss0,
            r.hwm0,
            r.hwm1 - r.rss0,
            mbps(r.secs),
            r.cpu / gib
        );
    }
    println!(
        "openssh sftp client (sftp + its ssh): peak VmHWM {:.1} (put), {:.1} (get), sampled every 10 ms",
        sftp_hwm[0], sftp_hwm[1]
    );
    let _ = fs::remove_file(&src);
}
