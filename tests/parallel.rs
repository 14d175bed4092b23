//! Transfers spread over several sessions, on both testkit backends (a
//! real OpenSSH sshd and the embedded server): a 64 MiB file moved in
//! segments over 4 sessions is byte-identical; a cut fails the transfer
//! without leaving a partial file, and a retry completes it; a server that
//! takes one login only still gets the whole transfer, on the one session
//! it allowed; a folder transfer spreads its files. How many logins a
//! transfer makes is counted in sshd's log, so on OpenSSH only.

mod common;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{backends, leftovers, random_bytes, sha256_file as sha, test_server};
use etl_ssh::testkit::{Backend, TestServer};
use etl_ssh::{DirReport, ErrorKind, RetryPolicy, Session, TransferOptions};

const SIZE: usize = 64 << 20;

fn session(server: &TestServer, port: u16) -> etl_ssh::Result<Session> {
    server.session_builder().port(port).connect()
}

fn four_way() -> TransferOptions {
    TransferOptions::new().sessions(4).min_segment_size(4 << 20)
}

/// Logins sshd has accepted so far; `None` on the embedded server, which
/// keeps no log.
fn logins(server: &TestServer) -> Option<usize> {
    server
        .sshd_log()
        .map(|log| log.matches("Accepted publickey").count())
}

/// On OpenSSH, asserts that the logins made since `before` are within
/// `extra`: extra sessions join while they are useful (one still
/// connecting when the work runs out is not waited for, and one whose turn
/// to connect comes after that never logs in), never more than asked for.
fn assert_logins(
    server: &TestServer,
    before: Option<usize>,
    extra: std::ops::RangeInclusive<usize>,
    why: &str,
) {
    if server.backend() == Backend::OpenSsh {
        let before = before.expect("sshd's log");
        let now = logins(server).expect("sshd's log");
        assert!(extra.contains(&(now - before)), "{why}: {}", now - before);
    }
}

#[test]
fn segments_over_four_sessions_are_byte_identical() {
    for backend in backends() {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("big.bin");
        std::fs::write(&local, random_bytes(SIZE, 1)).expect("write");
        let remote_dir = dir.path().join("inbox");
        std::fs::create_dir(&remote_dir).expect("inbox");
        let remote = remote_dir.join("big.bin");
        let remote = remote.to_str().expect("utf-8");

        let s = session(&server, server.port()).expect("session");
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
            SIZE as u64,
            "{backend}"
        );
        assert_eq!(sha(Path::new(remote)), sha(&local), "{backend}");
        assert_logins(
            &server,
            before,
            1..=3,
            "up to three extra sessions for the upload",
        );
        assert!(progress.load(Ordering::Relaxed) > 4, "{backend}");
        assert!(leftovers(&remote_dir, &["big.bin"]).is_empty(), "{backend}");

        let back = dir.path().join("back.bin");
        assert_eq!(
            sftp.download_with(remote, &back, &four_way())
                .expect("download"),
            SIZE as u64,
            "{backend}"
        );
        assert_eq!(sha(&back), sha(&local), "{backend}");
        assert_logins(
            &server,
            before,
            2..=6,
            "up to three extra sessions each way",
        );
        assert!(
            leftovers(dir.path(), &["big.bin", "back.bin", "inbox"]).is_empty(),
            "{backend}"
        );
    }
}

/// A large upload the server refuses at once (its remote folder does not
/// exist) fails with `NotFound` naming the folder, and logs in no extra
/// session: they start connecting only once the temporary file exists.
#[test]
fn a_refused_parallel_upload_logs_in_no_extra_session() {
    for backend in backends() {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("big.bin");
        std::fs::write(&local, random_bytes(SIZE, 2)).expect("write");
        let remote = dir.path().join("no-such-folder").join("big.bin");
        let remote = remote.to_str().expect("utf-8");
        let s = session(&server, server.port()).expect("session");
        let sftp = s.sftp().expect("sftp");
        let before = logins(&server);
        let err = sftp
            .upload_with(&local, remote, &four_way())
            .expect_err("no such folder");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{backend}: {err}");
        assert!(err.to_string().contains("no-such-folder"), "{err}");
        // A session that had started would log in within its handshake.
        std::thread::sleep(Duration::from_millis(500));
        assert_logins(
            &server,
            before,
            0..=0,
            "no extra session for a refused upload",
        );
    }
}

#[test]
fn a_cut_fails_the_transfer_without_a_partial_file_and_a_retry_completes_it() {
    for backend in backends() {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("big.bin");
        std::fs::write(&local, random_bytes(SIZE, 2)).expect("write");
        let remote_dir = dir.path().join("inbox");
        std::fs::create_dir(&remote_dir).expect("inbox");
        let target = remote_dir.join("big.bin");
        std::fs::write(&target, b"the old file").expect("old");
        let remote = target.to_str().expect("utf-8");

        let s = session(&server, server.port()).expect("session");
        server.close_after(SIZE as u64 / 3);
        let err = s
            .sftp()
            .expect("sftp")
            .upload_with(&local, remote, &four_way())
            .expect_err("the cut must fail the upload");
        eprintln!("{backend}: error: {err}");
        assert!(err.is_transient(), "{backend}: {err} {err:?}");
        assert_eq!(std::fs::read(&target).expect("old"), b"the old file");
        // The connection is gone, so the temporary file could not be removed:
        // it may stay, hidden, never at the target name.
        for name in leftovers(&remote_dir, &["big.bin"]) {
            assert!(
                name.starts_with(".big.bin.") && name.ends_with(".part"),
                "{backend}: {name}"
            );
        }

        server.heal();
        RetryPolicy::new()
            .initial_backoff(Duration::from_millis(10))
            .run("upload", |_| {
                session(&server, server.port())?
                    .sftp()?
                    .upload_with(&local, remote, &four_way())
            })
            .expect("retry");
        assert_eq!(sha(&target), sha(&local), "{backend}");

        // And a download cut on our side: the old local file stays.
        let back = dir.path().join("back.bin");
        std::fs::write(&back, b"old local").expect("old local");
        let s = session(&server, server.port()).expect("session");
        server.close_after(SIZE as u64 / 2);
        s.sftp()
            .expect("sftp")
            .download_with(remote, &back, &four_way())
            .expect_err("the cut must fail the download");
        assert_eq!(std::fs::read(&back).expect("old local"), b"old local");
        // Our side removes its temporary file whatever the network did.
        assert!(
            leftovers(dir.path(), &["big.bin", "back.bin", "inbox"]).is_empty(),
            "{backend}"
        );
    }
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
            std::thread::spawn(move || common::pipe(client, upstream));
        }
    });
    (port, refused)
}

#[test]
fn a_server_allowing_one_login_still_gets_the_whole_transfer() {
    for backend in backends() {
        let server = test_server(backend);
        let (port, refused) = one_login_proxy(server.port());
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("big.bin");
        std::fs::write(&local, random_bytes(SIZE / 4, 3)).expect("write");
        let remote = dir.path().join("copy.bin");
        let s = session(&server, port).expect("the one login");
        s.sftp()
            .expect("sftp")
            .upload_with(&local, remote.to_str().expect("utf-8"), &four_way())
            .expect("one session does the work of four");
        assert_eq!(sha(&remote), sha(&local), "{backend}");
        assert_eq!(
            refused.load(Ordering::SeqCst),
            3,
            "{backend}: three extra logins were tried and refused"
        );
    }
}

#[test]
fn folder_transfers_spread_files_over_sessions() {
    for backend in backends() {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        for sub in ["a", "a/b", "empty"] {
            std::fs::create_dir_all(out.join(sub)).expect("mkdir");
        }
        for i in 0..80 {
            let sub = ["", "a", "a/b"][i % 3];
            std::fs::write(
                out.join(sub).join(format!("f{i}.csv")),
                random_bytes(4096 + i, i as u64),
            )
            .expect("write");
        }
        let remote = dir.path().join("remote");
        let s = session(&server, server.port()).expect("session");
        let sftp = s.sftp().expect("sftp");
        let before = logins(&server);
        let sent = sftp
            .upload_dir(
                &out,
                remote.to_str().expect("utf-8"),
                &TransferOptions::new().sessions(4),
            )
            .expect("upload_dir");
        assert_eq!(
            sent,
            (0..80).map(|i| 4096 + i as u64).sum::<u64>(),
            "{backend}"
        );
        assert_logins(&server, before, 0..=3, "80 files: up to 4 sessions");
        let back = dir.path().join("back");
        sftp.download_dir(
            remote.to_str().expect("utf-8"),
            &back,
            &TransferOptions::new().sessions(4),
        )
        .expect("download_dir");
        assert!(back.join("empty").is_dir(), "{backend}");
        for i in 0..80 {
            let sub = ["", "a", "a/b"][i % 3];
            let rel = Path::new(sub).join(format!("f{i}.csv"));
            assert_eq!(
                sha(&back.join(&rel)),
                sha(&out.join(&rel)),
                "{backend}: {}",
                rel.display()
            );
        }
    }
}

/// Extra sessions connect a few at a time: against an sshd that drops
/// unauthenticated connections past three (`MaxStartups 3`), a transfer
/// over eight sessions makes its extra logins without one dropped.
#[test]
fn extra_sessions_connect_a_few_at_a_time() {
    let Some((sshd, sftp)) = common::openssh_sftp("MaxStartups 3") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("big.bin");
    std::fs::write(&local, random_bytes(SIZE, 3)).expect("write");
    let target = dir.path().join("up.bin");
    let eight = TransferOptions::new().sessions(8).min_segment_size(4 << 20);
    for _ in 0..3 {
        sftp.upload_with(&local, target.to_str().expect("utf-8"), &eight)
            .expect("upload");
    }
    assert_eq!(sha(&target), sha(&local));
    let log = sshd.log();
    assert!(
        !log.contains("past MaxStartups"),
        "a handshake was dropped: {}",
        log.lines()
            .filter(|l| l.contains("MaxStartups"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        log.matches("Accepted publickey").count() >= 4,
        "extra logins made"
    );
}

/// Files of 8 KiB, each its own bytes: 128 of them make one wave of four
/// groups on one session.
fn many_small_files(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).expect("folder");
    for i in 0..count {
        std::fs::write(
            dir.join(format!("f{i:03}.csv")),
            random_bytes(8 << 10, i as u64),
        )
        .expect("write");
    }
}

/// Checks that a cut wave of 128 files delivered some and failed some,
/// every file accounted for.
fn counts(report: &DirReport, backend: Backend, way: &str) {
    let (delivered, failed) = (report.delivered().count(), report.failed().count());
    eprintln!("{backend}: {way}: {delivered} delivered, {failed} failed");
    assert_eq!(delivered + failed, 128, "{backend}");
    assert!(
        delivered >= 32 && failed >= 1,
        "{backend}: {delivered} / {failed}"
    );
}

#[test]
fn a_cut_during_a_wave_reports_each_file_as_it_is() {
    for backend in backends() {
        let server = test_server(backend);
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("out");
        many_small_files(&local, 128);
        let inbox = dir.path().join("inbox");
        let remote = inbox.to_str().expect("utf-8");
        let one = TransferOptions::new().sessions(1).continue_on_error(true);

        let s = session(&server, server.port()).expect("session");
        let sftp = s.sftp().expect("sftp");
        // About half of the wave's bytes: the first groups are renamed
        // into place while the later ones are on their way.
        server.close_after(600 << 10);
        let report = sftp
            .upload_dir_report(&local, remote, &one)
            .expect("report");
        counts(&report, backend, "up");
        for file in report.files() {
            let target = Path::new(file.remote().to_str().expect("utf-8"));
            match file.result() {
                // Delivered: at its name, whole.
                Ok(_) => assert_eq!(
                    std::fs::read(target).expect("delivered"),
                    std::fs::read(file.local()).expect("local"),
                    "{backend}"
                ),
                // Not delivered: nothing at its name (a rename cut on its
                // way says so: it may be there, whole).
                Err(e) if e.to_string().contains("is unknown") => {
                    if let Ok(bytes) = std::fs::read(target) {
                        assert_eq!(bytes, std::fs::read(file.local()).expect("local"));
                    }
                }
                Err(e) => assert!(!target.exists(), "{backend}: {e}"),
            }
        }
        // Only hidden temporary files beside the delivered ones (and those
        // whose rename was cut on its way).
        let keep: Vec<String> = report
            .files()
            .iter()
            .filter(|f| {
                f.result()
                    .map_or_else(|e| e.to_string().contains("is unknown"), |_| true)
            })
            .map(|f| {
                f.local()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        for name in leftovers(&inbox, &keep) {
            assert!(
                name.starts_with('.') && name.ends_with(".part"),
                "{backend}: {name}"
            );
        }

        // And back: each file downloaded whole at its name, or not at all.
        server.heal();
        let full = dir.path().join("full");
        many_small_files(&full, 128);
        let back = dir.path().join("back");
        let s = session(&server, server.port()).expect("session");
        let sftp = s.sftp().expect("sftp");
        server.close_after(600 << 10);
        let report = sftp
            .download_dir_report(full.to_str().expect("utf-8"), &back, &one)
            .expect("report");
        counts(&report, backend, "down");
        for file in report.files() {
            let source = Path::new(file.remote().to_str().expect("utf-8"));
            match file.result() {
                Ok(_) => assert_eq!(
                    std::fs::read(file.local()).expect("delivered"),
                    std::fs::read(source).expect("source"),
                    "{backend}"
                ),
                Err(e) => assert!(!file.local().exists(), "{backend}: {e}"),
            }
        }
        // Our side leaves no temporary file.
        let delivered: Vec<String> = report
            .delivered()
            .map(|f| {
                f.local()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let keep: Vec<&str> = delivered.iter().map(String::as_str).collect();
        assert!(leftovers(&back, &keep).is_empty(), "{backend}");
    }
}
