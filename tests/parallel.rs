//! Transfers spread over several sessions, against a real sshd: a 64 MiB
//! file moved in segments over 4 sessions is byte-identical; a cut fails the
//! transfer without leaving a partial file, and a retry completes it; a
//! server that takes one login only still gets the whole transfer, on the
//! one session it allowed; a folder transfer spreads its files.

mod common;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_key, current_user, CutProxy, KeyFormat, KeyKind, Sshd};
use etl_ssh::{Credential, KnownHost, RetryPolicy, Session, TransferOptions};
use sha2::{Digest, Sha256};

const SIZE: usize = 64 << 20;

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn sha(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

fn session(server: &Sshd, port: u16, key: &common::ClientKey) -> etl_ssh::Result<Session> {
    Session::builder(server.host())
        .port(port)
        .credential(Credential::key_pair(current_user(), &key.path))
        .known_host(KnownHost::public_key(server.host_key_public_line("ed25519")).expect("pin"))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
}

fn four_way() -> TransferOptions {
    TransferOptions::new().sessions(4).min_segment_size(4 << 20)
}

fn logins(server: &Sshd) -> usize {
    server
        .log_since_ready()
        .matches("Accepted publickey")
        .count()
}

fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn segments_over_four_sessions_are_byte_identical() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_if_available()
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("big.bin");
    std::fs::write(&local, data(SIZE, 1)).expect("write");
    let remote_dir = dir.path().join("inbox");
    std::fs::create_dir(&remote_dir).expect("inbox");
    let remote = remote_dir.join("big.bin");
    let remote = remote.to_str().expect("utf-8");

    let s = session(&server, server.port(), &key).expect("session");
    let sftp = s.sftp().expect("sftp");
    let before = logins(&server);
    let progress = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&progress);
    let options = four_way().progress(move |done, total| {
        assert!(done <= total);
        seen.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(
        sftp.upload_with(&local, remote, &options).expect("upload"),
        SIZE as u64
    );
    assert_eq!(sha(Path::new(remote)), sha(&local));
    assert_eq!(
        logins(&server) - before,
        3,
        "three extra sessions for the upload"
    );
    assert!(progress.load(Ordering::Relaxed) > 4);
    assert!(leftovers(&remote_dir, &["big.bin"]).is_empty());

    let back = dir.path().join("back.bin");
    assert_eq!(
        sftp.download_with(remote, &back, &four_way())
            .expect("download"),
        SIZE as u64
    );
    assert_eq!(sha(&back), sha(&local));
    assert_eq!(
        logins(&server) - before,
        6,
        "three extra sessions for the download"
    );
    assert!(leftovers(dir.path(), &["big.bin", "back.bin", "inbox"]).is_empty());
}

#[test]
fn a_cut_fails_the_transfer_without_a_partial_file_and_a_retry_completes_it() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_if_available()
    else {
        return;
    };
    let proxy = CutProxy::start(server.addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("big.bin");
    std::fs::write(&local, data(SIZE, 2)).expect("write");
    let remote_dir = dir.path().join("inbox");
    std::fs::create_dir(&remote_dir).expect("inbox");
    let target = remote_dir.join("big.bin");
    std::fs::write(&target, b"the old file").expect("old");
    let remote = target.to_str().expect("utf-8");

    let s = session(&server, proxy.port(), &key).expect("session");
    proxy.cut_after(SIZE as u64 / 3);
    let err = s
        .sftp()
        .expect("sftp")
        .upload_with(&local, remote, &four_way())
        .expect_err("the cut must fail the upload");
    eprintln!("error: {err}");
    assert!(err.is_transient(), "{err} {err:?}");
    assert_eq!(std::fs::read(&target).expect("old"), b"the old file");
    // The connection is gone, so the temporary file could not be removed:
    // it may stay, hidden, never at the target name.
    for name in leftovers(&remote_dir, &["big.bin"]) {
        assert!(
            name.starts_with(".big.bin.") && name.ends_with(".part"),
            "{name}"
        );
    }

    proxy.heal();
    RetryPolicy::new()
        .initial_backoff(Duration::from_millis(10))
        .run("upload", |_| {
            session(&server, proxy.port(), &key)?
                .sftp()?
                .upload_with(&local, remote, &four_way())
        })
        .expect("retry");
    assert_eq!(sha(&target), sha(&local));

    // And a download cut on our side: the old local file stays.
    let back = dir.path().join("back.bin");
    std::fs::write(&back, b"old local").expect("old local");
    let s = session(&server, proxy.port(), &key).expect("session");
    proxy.cut_after(SIZE as u64 / 2);
    s.sftp()
        .expect("sftp")
        .download_with(remote, &back, &four_way())
        .expect_err("the cut must fail the download");
    assert_eq!(std::fs::read(&back).expect("old local"), b"old local");
    // Our side removes its temporary file whatever the network did.
    assert!(leftovers(dir.path(), &["big.bin", "back.bin", "inbox"]).is_empty());
}

/// A proxy that forwards the first connection and hangs up on every other
/// one at once: an appliance that allows one login.
fn one_login_proxy(target: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&refused);
    std::thread::spawn(move || {
        let mut first = true;
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            if !first {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            first = false;
            let upstream = TcpStream::connect(("127.0.0.1", target)).expect("upstream");
            let (mut c1, mut u1) = (
                client.try_clone().expect("clone"),
                upstream.try_clone().expect("clone"),
            );
            let (mut c2, mut u2) = (client, upstream);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut u1);
                let _ = u1.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
                let _ = c2.shutdown(Shutdown::Write);
            });
        }
    });
    (port, refused)
}

#[test]
fn a_server_allowing_one_login_still_gets_the_whole_transfer() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_if_available()
    else {
        return;
    };
    let (port, refused) = one_login_proxy(server.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("big.bin");
    std::fs::write(&local, data(SIZE / 4, 3)).expect("write");
    let remote = dir.path().join("copy.bin");
    let s = session(&server, port, &key).expect("the one login");
    s.sftp()
        .expect("sftp")
        .upload_with(&local, remote.to_str().expect("utf-8"), &four_way())
        .expect("one session does the work of four");
    assert_eq!(sha(&remote), sha(&local));
    assert_eq!(
        refused.load(Ordering::SeqCst),
        3,
        "three extra logins were tried and refused"
    );
}

#[test]
fn folder_transfers_spread_files_over_sessions() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_if_available()
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    for sub in ["a", "a/b", "empty"] {
        std::fs::create_dir_all(out.join(sub)).expect("mkdir");
    }
    for i in 0..80 {
        let sub = ["", "a", "a/b"][i % 3];
        std::fs::write(
            out.join(sub).join(format!("f{i}.csv")),
            data(4096 + i, i as u64),
        )
        .expect("write");
    }
    let remote = dir.path().join("remote");
    let s = session(&server, server.port(), &key).expect("session");
    let sftp = s.sftp().expect("sftp");
    let before = logins(&server);
    let sent = sftp
        .upload_dir(
            &out,
            remote.to_str().expect("utf-8"),
            &TransferOptions::new().sessions(4),
        )
        .expect("upload_dir");
    assert_eq!(sent, (0..80).map(|i| 4096 + i as u64).sum::<u64>());
    assert_eq!(logins(&server) - before, 3, "80 files: 4 sessions");
    let back = dir.path().join("back");
    sftp.download_dir(
        remote.to_str().expect("utf-8"),
        &back,
        &TransferOptions::new().sessions(4),
    )
    .expect("download_dir");
    assert!(back.join("empty").is_dir());
    for i in 0..80 {
        let sub = ["", "a", "a/b"][i % 3];
        let rel = Path::new(sub).join(format!("f{i}.csv"));
        assert_eq!(
            sha(&back.join(&rel)),
            sha(&out.join(&rel)),
            "{}",
            rel.display()
        );
    }
}
