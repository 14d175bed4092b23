//! Delivery into partner inboxes as partners configure them, on the
//! testkit's embedded server with its inbox knobs (a watcher that takes
//! files at close, renames or removals refused, no stat, no setstat, one
//! open file, sequential writes only): each upload ends delivered, or not
//! delivered with nothing left, or not delivered with its leftovers
//! named, and the error names the option that fits the inbox.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{embedded, names_in, random_bytes};
use etl_ssh::testkit::TestServer;
use etl_ssh::{Checksum, ErrorKind, RetryPolicy, TransferOptions, Verified, WriteOrder};

/// A local folder with `orders.csv` of `len` bytes.
fn source(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = random_bytes(len, len as u64);
    let path = dir.path().join("orders.csv");
    fs::write(&path, &data).expect("write");
    (dir, path, data)
}

/// A watcher that takes every closed file: the default atomic upload is
/// taken under its temporary name, and the error says so, names the
/// options that fit, and is not transient (a retry would deliver twice).
/// A temporary folder outside the watched inbox, or writing in place,
/// delivers under the target name.
#[test]
fn pickup_on_close_inboxes() {
    let (server, sftp) = embedded(TestServer::builder().pickup_on_close(true));
    let root = server.sftp_root();
    let (_dir, src, data) = source(100_000);
    let calls = AtomicU64::new(0);
    let err = RetryPolicy::new()
        .attempts(3)
        .initial_backoff(Duration::from_millis(1))
        .run("upload", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            sftp.upload(&src, server.remote_path("orders.csv"))
        })
        .expect_err("taken at close");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never retried: {err}");
    assert!(!err.is_transient(), "{err}");
    let text = err.to_string();
    for part in [
        "took the file at close",
        "temp_dir",
        "atomic(false)",
        "orders.csv",
    ] {
        assert!(text.contains(part), "{text} lacks {part:?}");
    }
    let taken = names_in(&root.join("picked-up"));
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(taken[0].ends_with(".part"), "{taken:?}");
    assert!(!root.join("orders.csv").exists());

    fs::create_dir(root.join("tmp")).expect("mkdir tmp");
    let options = TransferOptions::new().temp_dir(server.remote_path("tmp"));
    sftp.upload_with(&src, server.remote_path("orders.csv"), &options)
        .expect("through tmp/");
    assert!(fs::read(root.join("orders.csv")).expect("delivered") == data);
    assert!(names_in(&root.join("tmp")).is_empty());

    let options = TransferOptions::new().atomic(false);
    sftp.upload_with(&src, server.remote_path("in-place.csv"), &options)
        .expect("in place");
    assert!(fs::read(root.join("picked-up").join("in-place.csv")).expect("taken") == data);
}

/// Renames refused: the error names the target, the temporary file as
/// detail, and `atomic(false)`; nothing is left. In place, it delivers.
#[test]
fn rename_denied_inboxes() {
    let (server, sftp) = embedded(TestServer::builder().deny_rename(true));
    let root = server.sftp_root();
    let (_dir, src, data) = source(50_000);
    let err = sftp
        .upload(&src, server.remote_path("orders.csv"))
        .expect_err("rename refused");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    for part in ["upload", "orders.csv", ".part", "atomic(false)"] {
        assert!(text.contains(part), "{text} lacks {part:?}");
    }
    assert!(!text.contains("is left"), "{text}");
    assert!(names_in(root).is_empty(), "nothing left");
    sftp.upload_with(
        &src,
        server.remote_path("orders.csv"),
        &TransferOptions::new().atomic(false),
    )
    .expect("in place");
    assert!(fs::read(root.join("orders.csv")).expect("read") == data);
}

/// Renames and removals both refused: the error names the leftover
/// temporary file and why it could not be removed.
#[test]
fn rename_and_remove_denied_names_the_leftover() {
    let (server, sftp) = embedded(TestServer::builder().deny_rename(true).deny_remove(true));
    let (_dir, src, _) = source(50_000);
    let err = sftp
        .upload(&src, server.remote_path("orders.csv"))
        .expect_err("rename refused");
    let left = names_in(server.sftp_root());
    assert_eq!(left.len(), 1, "{left:?}");
    let text = err.to_string();
    assert!(text.contains(&left[0]), "{text} does not name {}", left[0]);
    assert!(text.contains("is left on the server"), "{text}");
    assert!(text.contains("permission denied"), "{text}");
}

/// No stat: the acknowledged bytes are the size check (said in the
/// delivery), atomic and in place.
#[test]
fn stat_denied_inboxes_deliver_on_acknowledged_bytes() {
    let (server, sftp) = embedded(TestServer::builder().deny_stat(true));
    let root = server.sftp_root();
    let (_dir, src, data) = source(300_000);
    for (name, options) in [
        ("atomic.csv", TransferOptions::new()),
        ("in-place.csv", TransferOptions::new().atomic(false)),
    ] {
        let delivery = sftp
            .deliver(&src, server.remote_path(name), &options)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(delivery.verified(), Verified::Acknowledged, "{name}");
        assert_eq!(delivery.bytes(), data.len() as u64);
        assert!(fs::read(root.join(name)).expect("read") == data, "{name}");
    }
}

/// SETSTAT refused: the modification time is a warning in the delivery
/// (as OpenSSH's `put -p` warns), unless strict.
#[test]
fn setstat_denied_is_a_warning_unless_strict() {
    let (server, sftp) = embedded(TestServer::builder().deny_setstat(true));
    let root = server.sftp_root();
    let (_dir, src, data) = source(10_000);
    let options = TransferOptions::new().preserve_mtime(true);
    let delivery = sftp
        .deliver(&src, server.remote_path("a.csv"), &options)
        .expect("delivered");
    assert_eq!(delivery.warnings().len(), 1, "{delivery:?}");
    assert!(delivery.warnings()[0].contains("modification time"));
    assert!(fs::read(root.join("a.csv")).expect("read") == data);
    let err = sftp
        .upload_with(
            &src,
            server.remote_path("b.csv"),
            &options.clone().strict_metadata(true),
        )
        .expect_err("strict");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!root.join("b.csv").exists());
    assert_eq!(names_in(root), ["a.csv"], "nothing left");
}

/// A gateway that takes writes in order only: the default keeps uploads
/// sequential on servers that are not OpenSSH's `sftp-server` (here: no
/// OpenSSH extensions), and on any server with `WriteOrder::Sequential`;
/// writing out of order there fails (the knob is real).
#[test]
fn sequential_write_gateways_get_sequential_uploads() {
    let (_dir, src, data) = source(40 << 20);
    let segmented = TransferOptions::new().sessions(4).min_segment_size(8 << 20);
    let (server, sftp) = embedded(
        TestServer::builder()
            .sequential_writes(true)
            .plain_sftp(true),
    );
    sftp.upload_with(&src, server.remote_path("auto.bin"), &segmented)
        .expect("sequential by default here");
    assert!(fs::read(server.sftp_root().join("auto.bin")).expect("read") == data);

    let (server, sftp) = embedded(TestServer::builder().sequential_writes(true));
    sftp.upload_with(
        &src,
        server.remote_path("seq.bin"),
        &segmented.clone().write_order(WriteOrder::Sequential),
    )
    .expect("sequential when asked");
    assert!(fs::read(server.sftp_root().join("seq.bin")).expect("read") == data);
    let err = sftp
        .upload_with(
            &src,
            server.remote_path("any.bin"),
            &segmented.write_order(WriteOrder::Any),
        )
        .expect_err("out of order refused");
    assert!(err.to_string().contains("sequential"), "{err}");
    assert_eq!(names_in(server.sftp_root()), ["seq.bin"], "nothing left");
}

/// A folder of small files.
fn folder(n: usize) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut total = 0;
    for i in 0..n {
        let data = random_bytes(1000 + i * 37, i as u64);
        total += data.len() as u64;
        fs::write(dir.path().join(format!("f{i:02}.csv")), data).expect("write");
    }
    (dir, total)
}

/// One open file per session: waves of 32 fail, `open_files(1)` moves
/// the folder both ways.
#[test]
fn one_open_file_servers_take_folders_one_file_at_a_time() {
    let (server, sftp) = embedded(TestServer::builder().one_open_file(true));
    let (src, _) = folder(40);
    sftp.upload_dir(
        src.path(),
        server.remote_path("waves"),
        &TransferOptions::new(),
    )
    .expect_err("32 files at once are refused");
    let one = TransferOptions::new().open_files(1);
    sftp.upload_dir(src.path(), server.remote_path("one"), &one)
        .expect("one at a time");
    assert_eq!(names_in(&server.sftp_root().join("one")).len(), 40);
    let back = tempfile::tempdir().expect("temp dir");
    sftp.download_dir(server.remote_path("one"), back.path(), &one)
        .expect("download one at a time");
    assert_eq!(names_in(back.path()), names_in(src.path()));
}

/// A folder transfer with one failing file (a folder stands at its name
/// on the server): with `continue_on_error` every other file arrives and
/// the report lists each; without it the error names the file. Progress
/// events name their file and add up for the whole job.
#[test]
fn folder_reports_list_every_file_and_progress_adds_up() {
    for backend in common::backends() {
        let server = common::test_server(backend);
        let sftp = server.session().expect("session").sftp().expect("sftp");
        let (src, total) = folder(30);
        let dst = server.sftp_root().join("dst");
        fs::create_dir_all(dst.join("f07.csv")).expect("a folder in the way");
        fs::write(dst.join("f07.csv").join("keep"), "x").expect("write");
        let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let (last, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, l, m) = (Arc::clone(&seen), Arc::clone(&last), Arc::clone(&most));
        let options = TransferOptions::new()
            .continue_on_error(true)
            .on_progress(move |p| {
                s.lock().expect("lock").insert(p.file().to_string());
                l.store(p.job_total(), Ordering::SeqCst);
                m.fetch_max(p.job_done(), Ordering::SeqCst);
            });
        let report = sftp
            .upload_dir_report(src.path(), server.remote_path("dst"), &options)
            .expect("report");
        assert_eq!(report.files().len(), 30, "{backend}");
        let failed: Vec<_> = report.failed().collect();
        assert_eq!(failed.len(), 1, "{backend}: {report:?}");
        assert!(failed[0].local().ends_with("f07.csv"));
        assert_eq!(report.delivered().count(), 29);
        assert_eq!(
            report.bytes(),
            total
                - fs::metadata(src.path().join("f07.csv"))
                    .expect("stat")
                    .len()
        );
        assert!(!report.is_complete());
        assert_eq!(
            seen.lock().expect("lock").len(),
            30,
            "{backend}: every file named"
        );
        assert_eq!(last.load(Ordering::SeqCst), total, "{backend}: job total");
        assert!(most.load(Ordering::SeqCst) >= report.bytes(), "{backend}");
        assert!(dst.join("f07.csv").join("keep").exists(), "{backend}");

        let err = sftp
            .upload_dir(
                src.path(),
                server.remote_path("dst"),
                &TransferOptions::new(),
            )
            .expect_err("stops");
        assert!(err.to_string().contains("f07.csv"), "{backend}: {err}");
    }
}

/// Stale temporary files of ours, older than the age given, are removed
/// on both sides; other files, and fresh temporary files, stay.
#[test]
fn stale_temps_are_found_and_removed() {
    let server = common::test_server(etl_ssh::testkit::Backend::Embedded);
    let sftp = server.session().expect("session").sftp().expect("sftp");
    let local = tempfile::tempdir().expect("temp dir");
    let old = SystemTime::now() - Duration::from_secs(7200);
    let make = |dir: &Path, name: &str, aged: bool| {
        let path = dir.join(name);
        fs::write(&path, "x").expect("write");
        if aged {
            fs::File::options()
                .write(true)
                .open(&path)
                .expect("open")
                .set_modified(old)
                .expect("age");
        }
    };
    for dir in [server.sftp_root(), local.path()] {
        make(dir, ".orders.csv.4242-0abcdef1-7.part", true);
        make(dir, ".orders.csv.resume-0123456789ab.part", true);
        make(dir, ".orders.csv.4242-0abcdef1-8.old", true);
        make(dir, ".orders.csv.4242-0abcdef1-9.part", false);
        make(dir, "orders.csv", true);
        make(dir, ".profile.part", true);
    }
    let options = TransferOptions::new();
    let removed = sftp
        .remove_stale_temps(server.remote_path(""), Duration::from_secs(3600), &options)
        .expect("remote");
    assert_eq!(removed.len(), 3, "{removed:?}");
    let removed = options
        .remove_stale_local_temps(local.path(), Duration::from_secs(3600))
        .expect("local");
    assert_eq!(removed.len(), 3, "{removed:?}");
    for dir in [server.sftp_root(), local.path()] {
        assert_eq!(
            names_in(dir),
            [
                ".orders.csv.4242-0abcdef1-9.part",
                ".profile.part",
                "orders.csv"
            ]
        );
    }
}

/// `verify_checksum`: where the account runs commands, both sides' SHA-256
/// match and the delivery carries it (uploads, downloads, folders); on an
/// SFTP-only account the delivery says why it could not be verified.
#[test]
fn checksums_where_the_server_can_and_not_verifiable_where_not() {
    let options = TransferOptions::new().verify_checksum(true);
    let (_dir, src, data) = source(3 << 20);
    let expected = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&data);
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for backend in common::backends() {
        let server = common::test_server(backend);
        let sftp = server.session().expect("session").sftp().expect("sftp");
        let up = sftp
            .deliver(&src, server.remote_path("c.bin"), &options)
            .expect("upload");
        assert_eq!(
            up.checksum(),
            &Checksum::Sha256(expected.clone()),
            "{backend}"
        );
        let back = tempfile::tempdir().expect("temp dir");
        let down = sftp
            .fetch(
                server.remote_path("c.bin"),
                back.path().join("c.bin"),
                &options,
            )
            .expect("download");
        assert_eq!(
            down.checksum(),
            &Checksum::Sha256(expected.clone()),
            "{backend}"
        );
        let (folder, _) = folder(5);
        let report = sftp
            .upload_dir_report(folder.path(), server.remote_path("dir"), &options)
            .expect("folder");
        assert!(report.is_complete(), "{backend}");
        for file in report.files() {
            let d = file.result().expect("delivered");
            assert!(
                matches!(d.checksum(), Checksum::Sha256(_)),
                "{backend}: {d:?}"
            );
        }
    }

    let Some((_sshd, sftp)) = common::openssh_sftp("ForceCommand internal-sftp") else {
        return;
    };
    let remote = tempfile::tempdir().expect("temp dir");
    let target = remote.path().join("c.bin");
    let up = sftp
        .deliver(&src, target.to_str().expect("utf-8"), &options)
        .expect("delivered on its size");
    match up.checksum() {
        Checksum::NotVerifiable(why) => assert!(why.contains("does not run commands"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(fs::read(&target).expect("read") == data);
}

/// A login limit per user: a server that turns away one login more makes
/// a parallel transfer carry on with the sessions it allowed; one that
/// ends the older login when a new one arrives makes it carry on with one
/// session (on a new login of the caller's own). Both deliver the file.
#[test]
fn login_limits_per_user_still_deliver() {
    use etl_ssh::testkit::LoginLimit;
    let (_dir, src, data) = source(40 << 20);
    let parallel = TransferOptions::new().sessions(4).min_segment_size(8 << 20);
    for policy in [LoginLimit::RefuseNew, LoginLimit::KickOldest] {
        let (server, sftp) = embedded(TestServer::builder().login_limit(1, policy));
        sftp.upload_with(&src, server.remote_path("big.bin"), &parallel)
            .unwrap_or_else(|e| panic!("{policy:?}: {e}"));
        assert!(
            fs::read(server.sftp_root().join("big.bin")).expect("read") == data,
            "{policy:?}"
        );
        let back = tempfile::tempdir().expect("temp dir");
        sftp.download_with(
            server.remote_path("big.bin"),
            back.path().join("b"),
            &parallel,
        )
        .unwrap_or_else(|e| panic!("{policy:?}: download: {e}"));
        assert!(
            fs::read(back.path().join("b")).expect("read") == data,
            "{policy:?}"
        );
        assert_eq!(names_in(server.sftp_root()), ["big.bin"], "{policy:?}");
    }
}

/// Folders under a login limit: with four sessions asked for, a server
/// that turns away the extra logins leaves the work to ours; one that
/// ends the older login when a new one arrives has the files of the
/// session it ended moved by another. Every file is delivered both ways,
/// each exactly once in the report, nothing else is left.
#[test]
fn login_limits_per_user_still_deliver_folders() {
    use etl_ssh::testkit::LoginLimit;
    let (src, total) = folder(90);
    let big = random_bytes(9 << 20, 99);
    fs::write(src.path().join("big.bin"), &big).expect("write");
    let parallel = TransferOptions::new().sessions(4).min_segment_size(8 << 20);
    for policy in [LoginLimit::RefuseNew, LoginLimit::KickOldest] {
        let (server, sftp) = embedded(TestServer::builder().login_limit(1, policy));
        let report = sftp
            .upload_dir_report(src.path(), server.remote_path("in"), &parallel)
            .unwrap_or_else(|e| panic!("{policy:?}: {e}"));
        assert!(report.is_complete(), "{policy:?}: {report:?}");
        assert_eq!(report.files().len(), 91, "{policy:?}");
        assert_eq!(report.bytes(), total + big.len() as u64, "{policy:?}");
        // Files whose session was ended say so (sent again, or found in
        // place after a rename cut off); nothing else is warned.
        for file in report.delivered() {
            for warning in file.result().expect("delivered").warnings() {
                assert!(
                    warning.starts_with("an earlier try failed")
                        || warning.starts_with("the connection ended while the file was renamed"),
                    "{warning}"
                );
            }
        }
        assert_eq!(
            names_in(&server.sftp_root().join("in")),
            names_in(src.path()),
            "{policy:?}"
        );
        let back = tempfile::tempdir().expect("temp dir");
        let report = sftp
            .download_dir_report(server.remote_path("in"), back.path(), &parallel)
            .unwrap_or_else(|e| panic!("{policy:?}: download: {e}"));
        assert!(report.is_complete(), "{policy:?}: {report:?}");
        assert_eq!(report.files().len(), 91, "{policy:?}");
        for name in names_in(src.path()) {
            assert!(
                fs::read(src.path().join(&name)).expect("read")
                    == fs::read(back.path().join(&name)).expect("read back"),
                "{policy:?}: {name}"
            );
        }
        assert_eq!(names_in(back.path()), names_in(src.path()), "{policy:?}");
    }
}

/// The same inbox on OpenSSH itself: `internal-sftp -P rename,posix-rename`
/// denies renames (as the partner's sshd can); the default upload fails
/// naming `atomic(false)` and leaves nothing, in place it delivers.
#[test]
fn openssh_with_renames_denied() {
    let Some((_sshd, sftp)) =
        common::openssh_sftp("Subsystem sftp internal-sftp -P rename,posix-rename")
    else {
        return;
    };
    let remote = tempfile::tempdir().expect("temp dir");
    let (_dir, src, data) = source(200_000);
    let target = remote.path().join("orders.csv");
    let err = sftp
        .upload(&src, target.to_str().expect("utf-8"))
        .expect_err("renames denied");
    assert!(err.to_string().contains("atomic(false)"), "{err}");
    assert!(names_in(remote.path()).is_empty(), "nothing left");
    sftp.upload_with(
        &src,
        target.to_str().expect("utf-8"),
        &TransferOptions::new().atomic(false),
    )
    .expect("in place");
    assert!(fs::read(&target).expect("read") == data);
}
