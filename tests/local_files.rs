//! The local files the crate reads and writes: `known_hosts` recorded by
//! trust on first use (a lock, a re-read, a newline, mode 0600, refused
//! names), and OpenSSH's trust checks on private key and config files.
//! Against the embedded testkit server: nothing here needs OpenSSH.

mod common;

use common::HostKeyType;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

use etl_ssh::testkit::{Backend, TestServer};
use etl_ssh::{ErrorKind, KnownHost, Result, Session};

fn embedded() -> TestServer {
    common::test_server(Backend::Embedded)
}

/// A session to `server` with the key credential and `pin` alone, under `alias`.
fn connect(server: &TestServer, alias: &str, pin: KnownHost) -> Result<Session> {
    Session::builder(server.host())
        .port(server.port())
        .credential(server.key_credential())
        .host_key_alias(alias)
        .known_host(pin)
        .connect()
}

/// A session to `server` trusting on first use into `file` under `alias`.
fn tofu(server: &TestServer, file: &Path, alias: &str) -> Result<Session> {
    connect(server, alias, KnownHost::trust_on_first_use(file))
}

/// A session to `server` pinned by `file` alone under `alias`.
fn pinned_by_file(server: &TestServer, file: &Path, alias: &str) -> Result<Session> {
    connect(server, alias, KnownHost::known_hosts_file(file))
}

/// `type base64` of the server's first host key.
fn key_fields(server: &TestServer) -> String {
    let line = server
        .host_key_line(HostKeyType::Ed25519)
        .expect("ed25519 host key");
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn fingerprint(server: &TestServer) -> String {
    server
        .host_key_fingerprint(HostKeyType::Ed25519)
        .expect("ed25519 host key")
        .to_string()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn tofu_after_a_last_line_without_newline_keeps_both_lines() {
    let (old, new) = (embedded(), embedded());
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("known_hosts");
    // Written by hand or by another tool: no final newline.
    fs::write(&file, format!("old.partner {}", key_fields(&old))).expect("write");

    tofu(&new, &file, "new.partner").expect("first use is trusted");
    let text = fs::read_to_string(&file).expect("read");
    assert_eq!(
        text,
        format!(
            "old.partner {}\nnew.partner {}\n",
            key_fields(&old),
            key_fields(&new)
        )
    );
    // Both lines parse and pin their host.
    pinned_by_file(&old, &file, "old.partner").expect("the old pin survived");
    pinned_by_file(&new, &file, "new.partner").expect("the new pin works");
}

#[test]
fn concurrent_first_connections_record_one_key() {
    let servers = [embedded(), embedded()];
    for round in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<Result<Session>> = std::thread::scope(|s| {
            let handles: Vec<_> = servers
                .iter()
                .map(|server| {
                    let (barrier, file) = (Arc::clone(&barrier), &file);
                    s.spawn(move || {
                        barrier.wait();
                        tofu(server, file, "partner")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let text = fs::read_to_string(&file).expect("read");
        assert_eq!(text.lines().count(), 1, "round {round}: {text}");
        let winner = results
            .iter()
            .position(Result::is_ok)
            .unwrap_or_else(|| panic!("round {round}: none connected: {results:?}"));
        let loser = 1 - winner;
        assert_eq!(
            text,
            format!("partner {}\n", key_fields(&servers[winner])),
            "round {round}"
        );
        let err = results[loser].as_ref().expect_err("the other one fails");
        assert_eq!(
            err.kind(),
            ErrorKind::HostKeyMismatch,
            "round {round}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&fingerprint(&servers[winner])), "{msg}");
        assert!(msg.contains(&fingerprint(&servers[loser])), "{msg}");
    }
}

#[test]
fn tofu_waits_for_another_writers_lock() {
    use std::io::BufRead;
    let Some(flock) = ["/usr/bin/flock", "/bin/flock"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        common::loud("SKIPPED: flock(1) (util-linux) is not installed");
        return;
    };
    let server = embedded();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("known_hosts");
    fs::write(&file, "").expect("create");
    // Another writer holds the lock for a second, and writes a pin for
    // another host meanwhile, without a final newline.
    let mut holder = std::process::Command::new(flock)
        .arg(&file)
        .arg("-c")
        .arg(format!(
            "echo locked; sleep 1; printf 'other.partner {}' >> '{}'",
            key_fields(&server),
            file.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run flock");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "locked\n");
    let started = std::time::Instant::now();
    tofu(&server, &file, "partner").expect("first use is trusted");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(500),
        "did not wait for the lock: {:?}",
        started.elapsed()
    );
    assert!(holder.wait().expect("flock").success());
    assert_eq!(
        fs::read_to_string(&file).expect("read"),
        format!(
            "other.partner {}\npartner {}\n",
            key_fields(&server),
            key_fields(&server)
        )
    );
}

#[test]
fn tofu_creates_the_file_0600_and_its_folder_0700() {
    let server = embedded();
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("ssh");
    let file = folder.join("known_hosts");
    tofu(&server, &file, "partner").expect("first use is trusted");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&folder), 0o700);
}

#[test]
fn tofu_refuses_names_that_are_not_one_plain_host_field() {
    let server = embedded();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("known_hosts");
    for alias in [
        "two words",
        "tab\there",
        "new\nline",
        "*",
        "a,b",
        "@revoked",
    ] {
        let err = tofu(&server, &file, alias).expect_err(alias);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{alias:?}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("host_key_alias"), "{msg}");
        assert!(msg.contains("known_hosts"), "{msg}");
        assert!(!msg.contains('\n') && !msg.contains('\t'), "{msg:?}");
    }
    assert!(!file.exists() || fs::read(&file).expect("read").is_empty());
}

#[test]
fn a_private_key_readable_by_others_is_refused_as_openssh_does() {
    let server = embedded();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("id_ed25519");
    fs::copy(server.key_path(), &key).expect("copy key");
    for bad in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(&key, fs::Permissions::from_mode(bad)).expect("chmod");
        let err = server
            .session_builder()
            .credential(etl_ssh::Credential::key_pair(server.user(), &key))
            .connect()
            .expect_err("an unprotected key is refused");
        assert_eq!(err.kind(), ErrorKind::KeyFile, "{err}");
        let msg = err.to_string();
        for words in [
            key.display().to_string(),
            format!("{bad:04o}"),
            "too open".to_string(),
            format!("chmod 600 {}", key.display()),
        ] {
            assert!(msg.contains(&words), "{msg:?} lacks {words:?}");
        }
    }
    for good in [0o600, 0o400] {
        fs::set_permissions(&key, fs::Permissions::from_mode(good)).expect("chmod");
        server
            .session_builder()
            .credential(etl_ssh::Credential::key_pair(server.user(), &key))
            .connect()
            .unwrap_or_else(|e| panic!("{good:o}: {e}"));
    }
}

#[test]
fn a_key_owned_by_another_user_is_not_checked_as_openssh_does_not() {
    if !common::is_root() {
        common::loud("SKIPPED: a key owned by another user needs root to chown");
        return;
    }
    let server = embedded();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("id_ed25519");
    fs::copy(server.key_path(), &key).expect("copy key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    // A uid that is nobody's: no account is involved, only the file's owner.
    std::os::unix::fs::chown(&key, Some(4_000_000_001), None).expect("chown");
    server
        .session_builder()
        .credential(etl_ssh::Credential::key_pair(server.user(), &key))
        .connect()
        .expect("OpenSSH checks only the modes of keys we own");
}

#[test]
fn a_writable_ssh_config_is_refused_as_openssh_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    fs::write(&config, "Host partner\n  HostName 127.0.0.1\n").expect("write");
    for bad in [0o664, 0o646, 0o666, 0o620] {
        fs::set_permissions(&config, fs::Permissions::from_mode(bad)).expect("chmod");
        let err = etl_ssh::SshConfig::from_file(&config).expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let msg = err.to_string();
        for words in [
            "bad owner or permissions".to_string(),
            config.display().to_string(),
            format!("{bad:04o}"),
            format!("chmod go-w {}", config.display()),
        ] {
            assert!(msg.contains(&words), "{msg:?} lacks {words:?}");
        }
    }
    for good in [0o644, 0o600, 0o444] {
        fs::set_permissions(&config, fs::Permissions::from_mode(good)).expect("chmod");
        let parsed = etl_ssh::SshConfig::from_file(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.resolve("partner").host_name, "127.0.0.1");
    }
    if common::is_root() {
        // Owned by someone who is neither us nor root: refused.
        fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod");
        std::os::unix::fs::chown(&config, Some(4_000_000_001), None).expect("chown");
        let err = etl_ssh::SshConfig::from_file(&config).expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("owned by uid 4000000001"), "{msg}");
        assert!(
            msg.contains(&format!("chown 0 {}", config.display())),
            "{msg}"
        );
    }
}
