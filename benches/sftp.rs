//! SFTP throughput: etl-ssh beside OpenSSH's `sftp`, against one test sshd
//! on loopback. Run with `cargo bench --bench sftp`.
//!
//! Knobs (environment): `ETL_BENCH_MB` (file size, default 256),
//! `ETL_BENCH_RUNS` (runs per case, median reported, default 3),
//! `ETL_BENCH_CIPHER` (restrict the server to one cipher, e.g.
//! `aes128-ctr`; default: the normal negotiation, chacha20-poly1305),
//! `ETL_BENCH_SMALL` (number of 4 KiB files, default 2000; 0 skips),
//! `ETL_BENCH_SWEEP=1` (also try several buffer sizes).

#[path = "../tests/common/mod.rs"]
#[allow(clippy::unwrap_used)]
mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{client_key, current_user, ClientKey, KeyFormat, KeyKind, Sshd};
use etl_ssh::{Credential, KnownHost, Session, SftpSession, TransferOptions};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn openssh_sftp(server: &Sshd, key: &ClientKey, batch: &str) {
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
        .arg("-P")
        .arg(server.port().to_string())
        .arg("-b")
        .arg(&batch_path)
        .arg(format!("{}@{}", current_user(), server.host()))
        .stdin(Stdio::null())
        .output()
        .expect("run sftp");
    assert!(
        out.status.success(),
        "sftp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn connect(server: &Sshd, key: &ClientKey) -> SftpSession {
    let session = Session::builder(server.host())
        .port(server.port())
        .known_host(
            KnownHost::public_key(server.host_key_public_line("ed25519")).expect("host key"),
        )
        .credential(Credential::key_pair(current_user(), &key.path))
        .timeout(Duration::from_secs(120))
        .connect()
        .expect("connect");
    session.sftp().expect("sftp")
}

fn main() {
    let mb = env_num("ETL_BENCH_MB", 256);
    let runs = env_num("ETL_BENCH_RUNS", 3).max(1) as usize;
    let small = env_num("ETL_BENCH_SMALL", 2000) as usize;
    let cipher = std::env::var("ETL_BENCH_CIPHER").ok();

    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let mut builder = Sshd::builder()
        .host_key_types(&["ed25519"])
        .authorized_key(&key.public_line)
        .extra_config("LogLevel INFO");
    if let Some(c) = &cipher {
        builder = builder.extra_config(&format!("Ciphers {c}"));
    }
    let Some(server) = builder.start_if_available() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let src = d.join("src.bin");
    {
        let mut f = fs::File::create(&src).expect("create");
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
    let bytes = (mb << 20) as f64;
    let mbps = |secs: f64| bytes / secs / 1e6;
    let remote = |name: &str| d.join(name).to_str().expect("utf-8").to_string();

    let sftp = connect(&server, &key);
    println!(
        "# {mb} MiB file, {runs} runs each, median; cipher: {}",
        cipher.as_deref().unwrap_or("default (chacha20-poly1305)")
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

    if small > 0 {
        let tree = d.join("small");
        fs::create_dir(&tree).expect("mkdir");
        for i in 0..small {
            fs::write(tree.join(format!("f{i:05}.csv")), vec![b'x'; 4096]).expect("write");
        }
        let opts = TransferOptions::new();
        let ours_up = time(|| {
            sftp.upload_dir(&tree, remote("small-up"), &opts)
                .expect("upload_dir");
        });
        let ours_down = time(|| {
            sftp.download_dir(remote("small-up"), d.join("small-down"), &opts)
                .expect("download_dir");
        });
        let theirs_up = time(|| {
            openssh_sftp(
                &server,
                &key,
                &format!(
                    "mkdir {}\nput -r {} {}\n",
                    remote("small-oup"),
                    tree.display(),
                    remote("small-oup")
                ),
            )
        });
        let theirs_down = time(|| {
            openssh_sftp(
                &server,
                &key,
                &format!(
                    "get -r {} {}\n",
                    remote("small-oup"),
                    d.join("small-odown").display()
                ),
            )
        });
        let count = |p: &Path| fs::read_dir(p).map(|r| r.count()).unwrap_or(0);
        assert_eq!(count(&d.join("small-down")), small);
        println!(
            "{small} x 4 KiB upload_dir   etl-ssh {ours_up:.2} s   openssh sftp -r {theirs_up:.2} s   time ratio {:.2}",
            ours_up / theirs_up
        );
        println!(
            "{small} x 4 KiB download_dir etl-ssh {ours_down:.2} s   openssh sftp -r {theirs_down:.2} s   time ratio {:.2}",
            ours_down / theirs_down
        );
    }
}
