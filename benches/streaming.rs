//! Streaming handles beside transfers: `open` + `std::io::copy` against
//! `download`, `create` + `std::io::copy` against `upload`, on one open
//! session (one channel, `sessions(1)`), on loopback and through the
//! delay line of `support` (the same as `benches/parallel.rs`). Run with
//! `cargo bench --bench streaming`.
//!
//! Knobs (environment): `ETL_BENCH_RTT_MS` (round trips, comma-separated,
//! default `0,50`; 0 is loopback without the line), `ETL_BENCH_MB` (file
//! size, default 64), `ETL_BENCH_RUNS` (runs per case, median reported,
//! default 3). The four ways alternate within each run.
//!
//! Ratio = handle throughput ÷ transfer throughput: 1.0 is as fast as the
//! transfer, 0.8 is the issue's bound.

#[path = "../tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;
mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{ClientKey, HostKeyType};
use etl_ssh::{SftpSession, TransferOptions};
use support::{bench_sshd, env_num, loadavg, median, time, write_noise, DelayLine};

fn connect(port: u16, host_key: &str, key: &ClientKey) -> SftpSession {
    support::connect_sftp(port, host_key, &key.path)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn main() {
    let rtts: Vec<u64> = std::env::var("ETL_BENCH_RTT_MS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 50]);
    let mb = env_num("ETL_BENCH_MB", 64);
    let runs = env_num("ETL_BENCH_RUNS", 3).max(1) as usize;
    let Some((server, key)) = bench_sshd(None) else {
        return;
    };
    let host_key = server
        .host_key_public_line(HostKeyType::Ed25519)
        .to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let src = d.join("src.bin");
    write_noise(&src, mb);
    let mbps = |secs: f64| (mb << 20) as f64 / secs / 1e6;
    let one = TransferOptions::new().sessions(1);
    println!(
        "# {mb} MiB, {runs} runs each, median, one session; load average {}",
        loadavg()
    );
    for rtt in rtts {
        let line =
            (rtt > 0).then(|| DelayLine::start(server.addr(), Duration::from_millis(rtt / 2)));
        let port = line.as_ref().map_or(server.port(), DelayLine::port);
        let sftp = connect(port, &host_key, &key);
        let (mut up, mut create, mut down, mut open) = (vec![], vec![], vec![], vec![]);
        for i in 0..runs {
            let remote = d.join(format!("r{i}.bin"));
            up.push(time(|| {
                sftp.upload_with(&src, path_str(&remote), &one)
                    .expect("upload");
            }));
            create.push(time(|| {
                let mut w = sftp
                    .create(path_str(&d.join(format!("c{i}.bin"))))
                    .expect("create");
                let mut f = fs::File::open(&src).expect("open source");
                std::io::copy(&mut f, &mut w).expect("copy up");
                w.close().expect("close");
            }));
            down.push(time(|| {
                sftp.download_with(path_str(&remote), d.join(format!("d{i}.bin")), &one)
                    .expect("download");
            }));
            open.push(time(|| {
                let mut r = sftp.open(path_str(&remote)).expect("open");
                let mut f = fs::File::create(d.join(format!("o{i}.bin"))).expect("create local");
                std::io::copy(&mut r, &mut f).expect("copy down");
                f.flush().expect("flush");
            }));
            for name in ["r", "c", "d", "o"] {
                let _ = fs::remove_file(d.join(format!("{name}{i}.bin")));
            }
        }
        let (u, c, dl, o) = (median(up), median(create), median(down), median(open));
        println!(
            "rtt {rtt:>3} ms  up: upload {:>7.1} MB/s  create+copy {:>7.1} MB/s  ratio {:.2}   \
             down: download {:>7.1} MB/s  open+copy {:>7.1} MB/s  ratio {:.2}",
            mbps(u),
            mbps(c),
            u / c,
            mbps(dl),
            mbps(o),
            dl / o
        );
    }
    // What `verify_checksum` costs: the same upload and download on
    // loopback with and without it, alternating.
    let sftp = connect(server.port(), &host_key, &key);
    let checked = one.clone().verify_checksum(true);
    let (mut plain, mut sum) = (vec![], vec![]);
    for i in 0..runs {
        for (times, options) in [(&mut plain, &one), (&mut sum, &checked)] {
            let remote = d.join(format!("v{i}.bin"));
            times.push(time(|| {
                sftp.upload_with(&src, path_str(&remote), options)
                    .expect("upload");
                sftp.download_with(path_str(&remote), d.join(format!("w{i}.bin")), options)
                    .expect("download");
            }));
            let _ = fs::remove_file(&remote);
            let _ = fs::remove_file(d.join(format!("w{i}.bin")));
        }
    }
    let (p, c) = (median(plain), median(sum));
    println!(
        "loopback upload + download: {p:.2} s; with verify_checksum {c:.2} s ({:.2}x)",
        c / p
    );
    println!("load average at the end: {}", loadavg());
}
