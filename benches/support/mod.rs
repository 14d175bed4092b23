//! What the benches share: knobs, timing, statistics, test data.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

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
