//! `SftpSession` against both testkit backends (a real OpenSSH sshd and the
//! embedded server) on 127.0.0.1: file operations,
//! atomic upload and download (round trips at the sizes that matter, cut
//! connections), streaming handles, listings, globs and recursive transfers.
//!
//! Both backends serve the local file system, so a temporary directory's
//! path is also a remote path, and the tests check results on disk.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    backends, client_key, embedded, names_in, random_bytes, sha256_file as sha_file, sshd_with_key,
    HostKeyType, KeyFormat, KeyKind, Sshd, StartSshd,
};
use etl_ssh::testkit::{Backend, TestServer, TestServerBuilder};
use etl_ssh::{
    ErrorKind, FileType, Glob, Overwrite, Session, SftpSession, TransferOptions,
    DEFAULT_BUFFER_SIZE,
};

struct Fixture {
    /// A testkit server: OpenSSH's sshd or the embedded server.
    server: TestServer,
    /// A temporary folder, served by both backends as itself.
    dir: tempfile::TempDir,
}

impl Fixture {
    fn on(backend: Backend) -> Fixture {
        Fixture::with(TestServer::builder().backend(backend))
    }

    fn with(builder: TestServerBuilder) -> Fixture {
        let server = builder
            .start()
            .unwrap_or_else(|e| panic!("start the test server: {e}"));
        eprintln!("backend: {}", server.backend());
        let dir = tempfile::Builder::new()
            .prefix("etl-ssh-sftp-")
            .tempdir()
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        Fixture { server, dir }
    }

    /// A fixture on each backend (see `common::backends`).
    fn all() -> Vec<Fixture> {
        backends().into_iter().map(Fixture::on).collect()
    }

    fn session(&self) -> Session {
        self.server
            .session_builder()
            .timeout(Duration::from_secs(20))
            .connect()
            .expect("connect")
    }

    fn sftp(&self) -> SftpSession {
        self.session().sftp().expect("sftp")
    }

    /// Local path inside the served folder.
    fn local(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The same path as a remote path string.
    fn remote(&self, rel: &str) -> String {
        self.local(rel)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }
}

#[test]
fn round_trips_at_boundary_sizes() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        fs::create_dir(fx.local("up")).unwrap();
        fs::create_dir(fx.local("down")).unwrap();
        fs::create_dir(fx.local("src")).unwrap();
        let b = DEFAULT_BUFFER_SIZE;
        for (i, size) in [0, 1, 29_999, 30_000, 30_001, b - 1, b, b + 1, 2 * b + 7]
            .into_iter()
            .enumerate()
        {
            let src = fx.local(&format!("src/f{i}"));
            fs::write(&src, random_bytes(size, i as u64 + 1)).unwrap();
            let remote = fx.remote(&format!("up/f{i}.csv"));
            assert_eq!(
                sftp.upload(&src, &remote).unwrap(),
                size as u64,
                "size {size}"
            );
            assert_eq!(
                sha_file(&src),
                sha_file(Path::new(&remote)),
                "upload {size}"
            );
            let back = fx.local(&format!("down/f{i}.csv"));
            assert_eq!(sftp.download(&remote, &back).unwrap(), size as u64);
            assert_eq!(sha_file(&src), sha_file(&back), "download {size}");
        }
        // No temporary files left on either side.
        assert!(names_in(&fx.local("up"))
            .iter()
            .all(|n| n.ends_with(".csv")));
        assert!(names_in(&fx.local("down"))
            .iter()
            .all(|n| n.ends_with(".csv")));
    }
}

#[test]
fn round_trip_64_mib_random() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let src = fx.local("big.bin");
        {
            let mut f = fs::File::create(&src).unwrap();
            for i in 0..16 {
                f.write_all(&random_bytes(4 << 20, 100 + i)).unwrap();
            }
        }
        let remote = fx.remote("big.remote");
        assert_eq!(sftp.upload(&src, &remote).unwrap(), 64 << 20);
        let back = fx.local("big.back");
        assert_eq!(sftp.download(&remote, &back).unwrap(), 64 << 20);
        let want = sha_file(&src);
        assert_eq!(want, sha_file(Path::new(&remote)));
        assert_eq!(want, sha_file(&back));
    }
}

#[test]
fn upload_and_download_replace_an_existing_target() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        fs::write(fx.local("new"), b"new contents").unwrap();
        fs::write(fx.local("target.csv"), b"old old old old").unwrap();
        sftp.upload(fx.local("new"), fx.remote("target.csv"))
            .unwrap();
        assert_eq!(fs::read(fx.local("target.csv")).unwrap(), b"new contents");

        fs::write(fx.local("local.csv"), b"stale").unwrap();
        sftp.download(fx.remote("target.csv"), fx.local("local.csv"))
            .unwrap();
        assert_eq!(fs::read(fx.local("local.csv")).unwrap(), b"new contents");
        assert_eq!(names_in(fx.dir.path()), ["local.csv", "new", "target.csv"]);
    }
}

#[test]
fn overwrite_never_refuses_an_existing_target() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        fs::write(fx.local("new"), b"new").unwrap();
        fs::write(fx.local("there.csv"), b"old").unwrap();
        let never = TransferOptions::new().overwrite(Overwrite::Never);
        for opts in [never.clone(), never.clone().atomic(false)] {
            let err = sftp
                .upload_with(fx.local("new"), fx.remote("there.csv"), &opts)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
            assert!(err.to_string().contains("there.csv"), "{err}");
            let err = sftp
                .download_with(fx.remote("new"), fx.local("there.csv"), &opts)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        }
        assert_eq!(fs::read(fx.local("there.csv")).unwrap(), b"old");
        // And to a free name it works.
        sftp.upload_with(fx.local("new"), fx.remote("free.csv"), &never)
            .unwrap();
        assert_eq!(fs::read(fx.local("free.csv")).unwrap(), b"new");
        assert_eq!(names_in(fx.dir.path()), ["free.csv", "new", "there.csv"]);
    }
}

#[test]
fn transfer_options_in_place_mtime_progress() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let data = random_bytes(3 * DEFAULT_BUFFER_SIZE + 5, 9);
        fs::write(fx.local("src"), &data).unwrap();
        let old = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
        fs::File::options()
            .write(true)
            .open(fx.local("src"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let opts = TransferOptions::new()
            .atomic(false)
            .preserve_mtime(true)
            .buffer_size(100_000)
            .progress(move |done, total| s2.lock().unwrap().push((done, total)));
        let n = sftp
            .upload_with(fx.local("src"), fx.remote("dst"), &opts)
            .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(fs::read(fx.local("dst")).unwrap(), data);
        assert_eq!(
            fs::metadata(fx.local("dst")).unwrap().modified().unwrap(),
            old
        );
        let seen = seen.lock().unwrap().clone();
        let total = data.len() as u64;
        assert_eq!(seen.first(), Some(&(0, total)));
        assert_eq!(seen.last(), Some(&(total, total)));
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
        assert!(seen.len() > 3, "{seen:?}");

        let opts = TransferOptions::new()
            .preserve_mtime(true)
            .temp_name("{name}.partial-{unique}");
        sftp.download_with(fx.remote("dst"), fx.local("back"), &opts)
            .unwrap();
        assert_eq!(fs::read(fx.local("back")).unwrap(), data);
        assert_eq!(
            fs::metadata(fx.local("back")).unwrap().modified().unwrap(),
            old
        );
        assert_eq!(names_in(fx.dir.path()), ["back", "dst", "src"]);
    }
}

#[test]
fn upload_into_a_missing_folder_is_not_found() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        fs::write(fx.local("f"), b"x").unwrap();
        let remote = fx.remote("missing/sub/f.csv");
        let err = sftp.upload(fx.local("f"), &remote).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&remote), "{err}");
        assert!(err.to_string().contains("missing/sub"), "{err}");
        // Local side: a missing source file is NotFound too.
        let err = sftp
            .upload(fx.local("no-such-file"), fx.remote("x"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
}

#[test]
fn not_found_errors_name_the_path() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let missing = fx.remote("nope.csv");
        let checks: Vec<(&str, etl_ssh::Error)> = vec![
            ("metadata", sftp.metadata(&missing).unwrap_err()),
            (
                "symlink_metadata",
                sftp.symlink_metadata(&missing).unwrap_err(),
            ),
            ("open", sftp.open(&missing).unwrap_err()),
            (
                "download",
                sftp.download(&missing, fx.local("x")).unwrap_err(),
            ),
            ("remove_file", sftp.remove_file(&missing).unwrap_err()),
            ("remove_dir", sftp.remove_dir(&missing).unwrap_err()),
            ("read_dir", sftp.read_dir(&missing).unwrap_err()),
            (
                "rename",
                sftp.rename(&missing, fx.remote("other")).unwrap_err(),
            ),
            (
                "set_permissions",
                sftp.set_permissions(&missing, 0o600).unwrap_err(),
            ),
        ];
        for (op, err) in checks {
            assert_eq!(err.kind(), ErrorKind::NotFound, "{op}: {err}");
            assert!(err.to_string().contains(&missing), "{op}: {err}");
        }
        assert!(!sftp.exists(&missing).unwrap());
        // A failed download left nothing behind locally.
        assert!(names_in(fx.dir.path()).is_empty());
    }
}

#[test]
fn directories_and_metadata() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let deep = fx.remote("a/b/c");
        sftp.create_dir_all(&deep).unwrap();
        assert!(fx.local("a/b/c").is_dir());
        sftp.create_dir_all(&deep).unwrap(); // existing: fine
        sftp.create_dir_all(format!("{deep}/")).unwrap();
        let err = sftp.create_dir(&deep).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
        let err = sftp.create_dir(fx.remote("x/y")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        fs::write(fx.local("a/file"), b"12345").unwrap();
        let err = sftp.create_dir_all(fx.remote("a/file/sub")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

        let m = sftp.metadata(fx.remote("a/file")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.len(), 5);
        assert!(m.modified().is_some());
        assert!(sftp.metadata(fx.remote("a")).unwrap().is_dir());
        std::os::unix::fs::symlink(fx.local("a/file"), fx.local("a/link")).unwrap();
        assert!(sftp.metadata(fx.remote("a/link")).unwrap().is_file());
        assert_eq!(
            sftp.symlink_metadata(fx.remote("a/link"))
                .unwrap()
                .file_type(),
            FileType::Symlink
        );
        assert!(sftp.exists(fx.remote("a/link")).unwrap());

        sftp.set_permissions(fx.remote("a/file"), 0o640).unwrap();
        assert_eq!(
            fs::metadata(fx.local("a/file"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );
        assert_eq!(
            sftp.metadata(fx.remote("a/file")).unwrap().permissions(),
            Some(0o640)
        );

        // rename replaces an existing file (posix-rename on OpenSSH).
        fs::write(fx.local("a/other"), b"other").unwrap();
        sftp.rename(fx.remote("a/other"), fx.remote("a/file"))
            .unwrap();
        assert_eq!(fs::read(fx.local("a/file")).unwrap(), b"other");
        assert!(!fx.local("a/other").exists());

        let mut names: Vec<_> = sftp
            .read_dir(fx.remote("a"))
            .unwrap()
            .into_iter()
            .map(|e| (e.name().to_string(), e.file_type()))
            .collect();
        names.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            names,
            [
                ("b".to_string(), FileType::Dir),
                ("file".to_string(), FileType::File),
                ("link".to_string(), FileType::Symlink)
            ]
        );
        let entry = sftp
            .read_dir(fx.remote("a"))
            .unwrap()
            .into_iter()
            .find(|e| e.name() == "file")
            .unwrap();
        assert_eq!(entry.path(), fx.remote("a/file"));
        assert_eq!(entry.len(), 5);

        sftp.remove_file(fx.remote("a/link")).unwrap();
        assert!(fx.local("a/file").exists());
        let err = sftp.remove_dir(fx.remote("a")).unwrap_err();
        assert_ne!(err.kind(), ErrorKind::NotFound, "{err}");
        sftp.remove_dir(fx.remote("a/b/c")).unwrap();
        sftp.remove_dir_all(fx.remote("a")).unwrap();
        assert!(!fx.local("a").exists());
    }
}

#[test]
fn odd_names_never_panic() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        fs::write(fx.local("src"), b"data").unwrap();
        for name in [
            "with space.csv",
            "quote'and\"double.csv",
            "ünïcödé ✓.csv",
            "semi;colon $(x) `y`.csv",
        ] {
            let remote = fx.remote(name);
            sftp.upload(fx.local("src"), &remote).unwrap();
            assert_eq!(fs::read(fx.local(name)).unwrap(), b"data", "{name}");
            assert!(sftp.exists(&remote).unwrap());
        }
        // A name that is not UTF-8, made on the server side.
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"bad-\xff\xfe.csv");
        fs::write(fx.dir.path().join(raw), b"x").unwrap();
        let entries = sftp.read_dir(fx.remote("")).unwrap();
        // OpenSSH only: russh-sftp holds names as Strings, so the embedded
        // server sends this one lossily converted.
        if fx.server.backend() == Backend::OpenSsh {
            let bad = entries
                .iter()
                .find(|e| e.name_bytes() == b"bad-\xff\xfe.csv")
                .expect("listed");
            assert!(bad.name().starts_with("bad-"));
        }
        assert_eq!(entries.len(), 6);
    }
}

#[test]
fn permission_denied_as_an_unprivileged_user() {
    // OpenSSH only: acts as the server's own unprivileged password user.
    if common::require_sshd().is_none() || !common::openssh_passwords_available() {
        return;
    }
    let fx = Fixture::with(
        TestServer::builder()
            .backend(Backend::OpenSsh)
            .password_authentication(true),
    );
    // Root ignores permissions: act as the test account.
    fs::create_dir(fx.local("locked")).unwrap();
    fs::write(fx.local("locked/inside"), b"x").unwrap();
    fs::set_permissions(fx.local("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::write(fx.local("secret"), b"s").unwrap();
    fs::set_permissions(fx.local("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(fx.local("src"), b"data").unwrap();
    fs::set_permissions(fx.local("src"), fs::Permissions::from_mode(0o644)).unwrap();

    let session = Session::builder(fx.server.host())
        .port(fx.server.port())
        .known_host(fx.server.known_host())
        .credential(fx.server.password_credential().expect("password user"))
        .timeout(Duration::from_secs(20))
        .connect()
        .unwrap();
    let sftp = session.sftp().unwrap();

    let locked = fx.remote("locked");
    let err = sftp.read_dir(&locked).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains(&locked), "{err}");

    let target = fx.remote("locked/new.csv");
    let err = sftp.upload(fx.local("src"), &target).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    let secret = fx.remote("secret");
    let err = sftp.open(&secret).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains(&secret), "{err}");
    let err = sftp.download(&secret, "/tmp/never-written").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    // The served folder itself is root's 0755: no writing there either.
    let err = sftp
        .upload(fx.local("src"), fx.remote("x.csv"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = sftp.create_dir(fx.remote("newdir")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    fs::set_permissions(fx.local("locked"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn upload_cut_mid_transfer_leaves_the_old_target() {
    for fx in Fixture::all() {
        let session = fx.session();
        let sftp = session.sftp().unwrap();
        // Warm up the rename channel so the cut lands in the data.
        fs::write(fx.local("warm"), b"w").unwrap();
        sftp.upload(fx.local("warm"), fx.remote("warm.csv"))
            .unwrap();

        fs::create_dir(fx.local("inbox")).unwrap();
        let old = random_bytes(100_000, 1);
        fs::write(fx.local("inbox/orders.csv"), &old).unwrap();
        fs::write(fx.local("new"), random_bytes(16 << 20, 2)).unwrap();

        fx.server.close_after(5 << 20);
        let err = sftp
            .upload(fx.local("new"), fx.remote("inbox/orders.csv"))
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Disconnected | ErrorKind::Timeout),
            "{err:?}"
        );
        assert!(err.to_string().contains("orders.csv"), "{err}");
        assert_eq!(fs::read(fx.local("inbox/orders.csv")).unwrap(), old);
        // The temp file could not be removed (the connection is gone) but it
        // is hidden, and nothing else is at or beside the target name.
        let names = names_in(&fx.local("inbox"));
        assert!(names.contains(&"orders.csv".to_string()), "{names:?}");
        for n in &names {
            assert!(
                n == "orders.csv" || (n.starts_with(".orders.csv.") && n.ends_with(".part")),
                "{names:?}"
            );
        }
        // Later calls on the broken session fail cleanly too.
        let err = sftp.metadata(fx.remote("inbox")).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Disconnected | ErrorKind::Timeout),
            "{err:?}"
        );
    }
}

#[test]
fn download_cut_mid_transfer_leaves_the_old_local_file() {
    for fx in Fixture::all() {
        let session = fx.session();
        let sftp = session.sftp().unwrap();
        fs::write(fx.local("remote.bin"), random_bytes(16 << 20, 3)).unwrap();
        fs::create_dir(fx.local("in")).unwrap();
        let old = b"previous report".to_vec();
        fs::write(fx.local("in/report.csv"), &old).unwrap();

        fx.server.close_after(5 << 20);
        let err = sftp
            .download(fx.remote("remote.bin"), fx.local("in/report.csv"))
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Disconnected | ErrorKind::Timeout),
            "{err:?}"
        );
        assert_eq!(fs::read(fx.local("in/report.csv")).unwrap(), old);
        assert_eq!(names_in(&fx.local("in")), ["report.csv"]);

        // A fresh target: nothing at all afterwards.
        fx.server.heal();
        let session = fx.session();
        let sftp = session.sftp().unwrap();
        fx.server.close_after(5 << 20);
        sftp.download(fx.remote("remote.bin"), fx.local("in/fresh.csv"))
            .unwrap_err();
        assert_eq!(names_in(&fx.local("in")), ["report.csv"]);
    }
}

#[test]
fn read_dir_ten_thousand_entries_and_glob() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        fs::create_dir(fx.local("many")).unwrap();
        for i in 0..10_000 {
            let ext = if i % 4 == 0 { "csv" } else { "txt" };
            fs::write(fx.local(&format!("many/f{i:05}.{ext}")), b"").unwrap();
        }
        let entries = sftp.read_dir(fx.remote("many")).unwrap();
        assert_eq!(entries.len(), 10_000);
        let mut names: Vec<&str> = entries.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 10_000);
        assert!(entries.iter().all(|e| e.file_type() == FileType::File));

        let csv = sftp.glob(format!("{}/*.csv", fx.remote("many"))).unwrap();
        assert_eq!(csv.len(), 2_500);
        assert!(csv.iter().all(|e| e.name().ends_with(".csv")));
        let some = sftp
            .glob(format!("{}/f0001[0-4].*", fx.remote("many")))
            .unwrap();
        let mut some: Vec<_> = some.iter().map(|e| e.name().to_string()).collect();
        some.sort();
        assert_eq!(
            some,
            [
                "f00010.txt",
                "f00011.txt",
                "f00012.csv",
                "f00013.txt",
                "f00014.txt"
            ]
        );
        let err = sftp
            .glob(format!("{}/[oops", fx.remote("many")))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn recursive_round_trip_with_nested_and_empty_folders() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let src = fx.local("src");
        for d in ["a/b/c", "empty", "a/empty2"] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        let files = [
            ("top.csv", 10),
            ("a/one.csv", 30_001),
            ("a/notes.txt", 5),
            ("a/b/c/deep.csv", 1_000_000),
            ("a/b/zero.csv", 0),
        ];
        for (i, (f, n)) in files.iter().enumerate() {
            fs::write(src.join(f), random_bytes(*n, i as u64)).unwrap();
        }
        let opts = TransferOptions::new();
        let up = sftp
            .upload_dir(&src, fx.remote("remote/tree"), &opts)
            .unwrap();
        assert_eq!(up, files.iter().map(|(_, n)| *n as u64).sum::<u64>());
        let down = sftp
            .download_dir(fx.remote("remote/tree"), fx.local("back"), &opts)
            .unwrap();
        assert_eq!(down, up);
        for (f, _) in files {
            assert_eq!(
                sha_file(&src.join(f)),
                sha_file(&fx.local("back").join(f)),
                "{f}"
            );
        }
        assert!(fx.local("back/empty").is_dir());
        assert!(fx.local("back/a/empty2").is_dir());

        // Filtered: only *.csv comes across; folders are still walked.
        let csv = TransferOptions::new().filter(Glob::new("*.csv").unwrap());
        sftp.download_dir(fx.remote("remote/tree"), fx.local("csv"), &csv)
            .unwrap();
        assert!(fx.local("csv/a/one.csv").is_file());
        assert!(fx.local("csv/a/b/c/deep.csv").is_file());
        assert!(!fx.local("csv/a/notes.txt").exists());
        sftp.upload_dir(&src, fx.remote("csv-up"), &csv).unwrap();
        assert!(fx.local("csv-up/a/b/zero.csv").is_file());
        assert!(!fx.local("csv-up/a/notes.txt").exists());
    }
}

/// Folder transfers move small files in waves (many requests in flight on
/// one channel); this runs waves on one session with sizes around the
/// request sizes and the wave's file limit, more files than a wave and
/// more requests than a channel takes at once, and checks every byte,
/// the mtimes, and that no temporary file is left on either side.
#[test]
fn folder_waves_round_trip_many_files_of_mixed_sizes() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let src = fx.local("many");
        fs::create_dir_all(src.join("sub")).unwrap();
        let sizes = [
            0usize, 1, 4096, 32_767, 32_768, 32_769, 100_000, 261_121, 1_020_000, 1_100_000,
        ];
        let mut files = Vec::new();
        for i in 0..150 {
            let name = if i % 5 == 0 {
                format!("sub/f{i:03}.csv")
            } else {
                format!("f{i:03}.csv")
            };
            let size = sizes[i % sizes.len()];
            fs::write(src.join(&name), random_bytes(size, 1000 + i as u64)).unwrap();
            files.push((name, size));
        }
        let opts = TransferOptions::new().sessions(1).preserve_mtime(true);
        let total: u64 = files.iter().map(|(_, n)| *n as u64).sum();
        assert_eq!(
            sftp.upload_dir(&src, fx.remote("waves"), &opts).unwrap(),
            total
        );
        assert_eq!(
            sftp.download_dir(fx.remote("waves"), fx.local("waves-back"), &opts)
                .unwrap(),
            total
        );
        for (name, _) in &files {
            let original = src.join(name);
            for copy in [
                fx.local("waves").join(name),
                fx.local("waves-back").join(name),
            ] {
                assert_eq!(sha_file(&copy), sha_file(&original), "{}", copy.display());
                let secs = |p: &Path| {
                    fs::metadata(p)
                        .unwrap()
                        .modified()
                        .unwrap()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                };
                assert_eq!(secs(&copy), secs(&original), "{}", copy.display());
            }
        }
        for dir in ["waves", "waves/sub", "waves-back", "waves-back/sub"] {
            let names = names_in(&fx.local(dir));
            assert!(
                names.iter().all(|n| n.starts_with('f') || n == "sub"),
                "{dir}: {names:?}"
            );
            let expected = files
                .iter()
                .filter(|(n, _)| n.starts_with("sub/") == dir.ends_with("sub"))
                .count()
                + usize::from(!dir.ends_with("sub"));
            assert_eq!(names.len(), expected, "{dir}: {names:?}");
        }
    }
}

/// A file of a wave that cannot be put in place fails the folder transfer
/// with its own name; the wave's other files are whole, the failed one's
/// target is untouched, and no temporary file stays.
#[test]
fn a_failing_file_in_a_wave_names_itself_and_leaves_nothing_partial() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let src = fx.local("wave-fail");
        fs::create_dir_all(&src).unwrap();
        for i in 0..20 {
            fs::write(src.join(format!("f{i:02}.csv")), random_bytes(5000, i)).unwrap();
        }
        // The target of f07.csv is a folder: its rename into place fails
        // (for root too).
        let blocker = fx.local("wave-fail-up/f07.csv");
        fs::create_dir_all(&blocker).unwrap();
        fs::write(blocker.join("keep"), b"k").unwrap();
        let err = sftp
            .upload_dir(
                &src,
                fx.remote("wave-fail-up"),
                &TransferOptions::new().sessions(1),
            )
            .unwrap_err();
        assert!(err.to_string().contains("f07.csv"), "{err}");
        assert_eq!(names_in(&blocker), ["keep"]);
        let names = names_in(&fx.local("wave-fail-up"));
        assert!(
            names
                .iter()
                .all(|n| n.starts_with('f') && n.ends_with(".csv")),
            "{names:?}"
        );
        for name in names.iter().filter(|n| *n != "f07.csv") {
            assert_eq!(
                fs::read(fx.local("wave-fail-up").join(name)).unwrap(),
                fs::read(src.join(name)).unwrap(),
                "{name}"
            );
        }
    }
}

/// A server with no OpenSSH extensions (no posix-rename, fsync or limits,
/// as some appliances): transfers use 32 KiB requests, skip the fsync, and
/// replace an existing target by removing it first; `Overwrite::Never`
/// still refuses one; waves rename one file at a time.
#[test]
fn plain_sftp_servers_get_the_fallbacks() {
    let (server, sftp) = embedded(TestServer::builder().plain_sftp(true));
    let dir = tempfile::tempdir().unwrap();
    let root = server.sftp_root();
    let remote = |name: &str| server.remote_path(name);

    let first = dir.path().join("first.bin");
    let second = dir.path().join("second.bin");
    fs::write(&first, random_bytes(3_000_001, 1)).unwrap();
    fs::write(&second, random_bytes(2_000_003, 2)).unwrap();
    assert_eq!(sftp.upload(&first, remote("t.bin")).unwrap(), 3_000_001);
    assert_eq!(sha_file(&root.join("t.bin")), sha_file(&first));
    assert_eq!(sftp.upload(&second, remote("t.bin")).unwrap(), 2_000_003);
    assert_eq!(sha_file(&root.join("t.bin")), sha_file(&second));

    let never = TransferOptions::new().overwrite(Overwrite::Never);
    let err = sftp
        .upload_with(&first, remote("t.bin"), &never)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(sha_file(&root.join("t.bin")), sha_file(&second));

    let back = dir.path().join("back.bin");
    assert_eq!(sftp.download(remote("t.bin"), &back).unwrap(), 2_000_003);
    assert_eq!(sha_file(&back), sha_file(&second));

    sftp.rename(remote("t.bin"), remote("u.bin")).unwrap();
    fs::write(root.join("v.bin"), b"old").unwrap();
    sftp.rename(remote("u.bin"), remote("v.bin")).unwrap();
    assert_eq!(sha_file(&root.join("v.bin")), sha_file(&second));

    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    for i in 0..70 {
        fs::write(
            tree.join(format!("f{i:02}.csv")),
            random_bytes(100 + i, i as u64),
        )
        .unwrap();
    }
    fs::create_dir(root.join("tree-up")).unwrap();
    fs::write(root.join("tree-up/f07.csv"), b"replace me").unwrap();
    let opts = TransferOptions::new().sessions(1);
    sftp.upload_dir(&tree, remote("tree-up"), &opts).unwrap();
    let names = names_in(&root.join("tree-up"));
    assert_eq!(names.len(), 70, "{names:?}");
    for name in names {
        assert_eq!(
            fs::read(root.join("tree-up").join(&name)).unwrap(),
            fs::read(tree.join(&name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        names_in(root).len(),
        2,
        "no temporary files: {:?}",
        names_in(root)
    );
}

/// A server that advertises posix-rename but answers "unsupported": the
/// upload falls back to the plain rename (removing an existing target
/// first), for one file and for a folder's waves.
#[test]
fn a_refused_posix_rename_falls_back_to_the_plain_rename() {
    let (server, sftp) = embedded(TestServer::builder().refuse_posix_rename(true));
    let dir = tempfile::tempdir().unwrap();
    let root = server.sftp_root();
    let local = dir.path().join("new.csv");
    fs::write(&local, random_bytes(70_000, 5)).unwrap();
    fs::write(root.join("t.csv"), b"old").unwrap();
    sftp.upload(&local, server.remote_path("t.csv")).unwrap();
    assert_eq!(sha_file(&root.join("t.csv")), sha_file(&local));

    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    for i in 0..40 {
        fs::write(
            tree.join(format!("f{i:02}.csv")),
            random_bytes(50 + i, i as u64),
        )
        .unwrap();
    }
    fs::create_dir(root.join("up")).unwrap();
    fs::write(root.join("up/f03.csv"), b"old").unwrap();
    // A new session: its wire has not yet learnt that the server refuses.
    let sftp = server.session().expect("session").sftp().expect("sftp");
    sftp.upload_dir(
        &tree,
        server.remote_path("up"),
        &TransferOptions::new().sessions(1),
    )
    .unwrap();
    let names = names_in(&root.join("up"));
    assert_eq!(names.len(), 40, "{names:?}");
    for name in names {
        assert_eq!(
            fs::read(root.join("up").join(&name)).unwrap(),
            fs::read(tree.join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn streaming_read_seek_write_append() {
    for fx in Fixture::all() {
        let sftp = fx.sftp();
        let data = random_bytes(5 * DEFAULT_BUFFER_SIZE / 2 + 3, 77);
        let mut w = sftp.create(fx.remote("stream.bin")).unwrap();
        for chunk in data.chunks(7_000) {
            w.write_all(chunk).unwrap();
        }
        w.close().unwrap();
        assert_eq!(fs::read(fx.local("stream.bin")).unwrap(), data);

        let mut r = sftp.open(fx.remote("stream.bin")).unwrap();
        assert_eq!(r.metadata().unwrap().len(), data.len() as u64);
        let mut out = Vec::new();
        let n = std::io::copy(&mut r, &mut out).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
        r.seek(SeekFrom::Start(1_000_000)).unwrap();
        let mut buf = [0u8; 100];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &data[1_000_000..1_000_100]);
        r.seek(SeekFrom::End(-10)).unwrap();
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[data.len() - 10..]);
        drop(r);

        let mut a = sftp.append(fx.remote("stream.bin")).unwrap();
        a.write_all(b"APPENDED").unwrap();
        a.sync_all().unwrap();
        drop(a); // flushes and closes
        let now = fs::read(fx.local("stream.bin")).unwrap();
        assert_eq!(&now[..data.len()], &data[..]);
        assert_eq!(&now[data.len()..], b"APPENDED");
        let mut a = sftp.append(fx.remote("fresh.log")).unwrap();
        a.write_all(b"line\n").unwrap();
        a.close().unwrap();
        assert_eq!(fs::read(fx.local("fresh.log")).unwrap(), b"line\n");

        // An io::Error from a handle keeps our kind and path.
        let err = sftp.open(fx.remote("missing")).unwrap_err();
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}

#[test]
fn handles_outlive_the_session_and_sessions_share_threads() {
    for fx in Fixture::all() {
        let data = random_bytes(3_000_000, 5);
        fs::write(fx.local("f"), &data).unwrap();
        let session = fx.session();
        let sftp = Arc::new(session.sftp().unwrap());
        let reader = sftp.open(fx.remote("f")).unwrap();
        drop(session);
        let mut reader = reader;
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);

        // More threads than a server allows channels on one connection
        // (OpenSSH: 10): the session's transfer channels are shared.
        const THREADS: usize = 12;
        let done = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let sftp = Arc::clone(&sftp);
                let done = Arc::clone(&done);
                let src = fx.local("f");
                let dst = fx.remote(&format!("t{i}.bin"));
                let back = fx.local(&format!("back{i}.bin"));
                std::thread::spawn(move || {
                    let n = sftp.upload(&src, &dst).unwrap();
                    done.fetch_add(n, Ordering::SeqCst);
                    let n = sftp.download(&dst, &back).unwrap();
                    done.fetch_add(n, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            done.load(Ordering::SeqCst),
            2 * THREADS as u64 * data.len() as u64
        );
        for i in 0..THREADS {
            assert_eq!(fs::read(fx.local(&format!("t{i}.bin"))).unwrap(), data);
            assert_eq!(fs::read(fx.local(&format!("back{i}.bin"))).unwrap(), data);
        }
    }
}

// OpenSSH only: needs sshd's MaxSessions.
/// A server that allows few channels per connection (`MaxSessions 2`):
/// eight threads transferring through one `SftpSession` at once share the
/// channels it could open, instead of failing on the refused ones.
#[test]
fn concurrent_transfers_share_the_channels_a_server_allows() {
    let Some((server, key)) = sshd_with_key(Sshd::builder().extra_config("MaxSessions 2")) else {
        return;
    };
    let session = key.connect_to(&server);
    let sftp = Arc::new(session.sftp().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(2_000_000, 9);
    fs::write(dir.path().join("src"), &data).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let sftp = Arc::clone(&sftp);
            let src = dir.path().join("src");
            let remote = dir
                .path()
                .join(format!("up{i}"))
                .to_str()
                .unwrap()
                .to_string();
            let back = dir.path().join(format!("back{i}"));
            std::thread::spawn(move || {
                sftp.upload(&src, &remote).unwrap();
                sftp.download(&remote, &back).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for i in 0..8 {
        assert_eq!(fs::read(dir.path().join(format!("back{i}"))).unwrap(), data);
    }
}

// OpenSSH only: reads the request log of OpenSSH's sftp-server.
#[test]
fn upload_uses_fsync_and_posix_rename_on_openssh() {
    // The external sftp-server, logging its requests to a file (the
    // subsystem command runs through the user's shell).
    let server_bin = Path::new("/usr/lib/openssh/sftp-server");
    if !server_bin.exists() {
        common::loud("SKIPPED: /usr/lib/openssh/sftp-server not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sftp-server.log");
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .host_key_types([HostKeyType::Ed25519])
        .authorized_key(&key.public_line)
        .extra_config(&format!(
            "Subsystem sftp {} -e -l DEBUG3 2>>{}",
            server_bin.display(),
            log.display()
        ))
        .start_if_available()
    else {
        return;
    };
    let session = key.connect_to(&server);
    let sftp = session.sftp().unwrap();
    let local = |rel: &str| dir.path().join(rel);
    fs::write(local("src"), b"payload").unwrap();
    fs::write(local("dst.csv"), b"old").unwrap();
    sftp.upload(local("src"), local("dst.csv").to_str().unwrap())
        .unwrap();
    assert_eq!(fs::read(local("dst.csv")).unwrap(), b"payload");
    drop(sftp);
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("posix-rename"), "no posix-rename in:\n{text}");
    assert!(text.contains("fsync"), "no fsync in:\n{text}");
}
