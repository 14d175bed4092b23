//! Self tests of the sshd test harness (tests/common), using the system
//! OpenSSH `ssh` client rather than this crate, so a harness bug cannot hide
//! behind a library bug.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{client_key, current_user, HostKeyType, KeyFormat, KeyKind, Sshd};
use secrecy::ExposeSecret;
use tempfile::TempDir;

/// Scratch files for one ssh invocation: known_hosts and an askpass script.
struct ClientFiles {
    dir: TempDir,
}

impl ClientFiles {
    fn new(known_hosts: &[String]) -> Self {
        Self::with_password(known_hosts, "")
    }

    /// With an askpass script that answers `password` to any prompt.
    fn with_password(known_hosts: &[String], password: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("etl-ssh-client-")
            .tempdir()
            .expect("client temp dir");
        fs::write(
            dir.path().join("known_hosts"),
            known_hosts.join("\n") + "\n",
        )
        .expect("write known_hosts");
        let askpass = dir.path().join("askpass");
        // Prints the password for any prompt (password or keyboard-interactive).
        fs::write(
            &askpass,
            format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n"),
        )
        .expect("write askpass");
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).expect("chmod askpass");
        ClientFiles { dir }
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    fn askpass(&self) -> PathBuf {
        self.dir.path().join("askpass")
    }
}

/// `ssh` with no user config, strict host key checking against `files`'
/// known_hosts only, and no agent. `args` go before the destination.
fn ssh(server: &Sshd, files: &ClientFiles, user: &str, args: &[&str], askpass: bool) -> Output {
    let mut cmd = Command::new("setsid");
    cmd.arg("-w").arg("timeout").arg("60").arg("ssh");
    cmd.args(["-F", "/dev/null", "-v"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            files.known_hosts().display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(args)
        .arg("-p")
        .arg(server.port().to_string())
        .arg(format!("{user}@{}", server.host()))
        .args(["echo", "hello"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null());
    if askpass {
        cmd.env("SSH_ASKPASS", files.askpass())
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0");
    }
    cmd.output().expect("run ssh")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_hello(out: &Output, server: &Sshd) {
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "hello\n",
        "ssh failed ({}):\nstdout: {}\nstderr: {}\n--- sshd log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr_of(out),
        server.log()
    );
}

fn can_continue_line(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("debug1: Authentications that can continue: "))
}

fn cli_fingerprint(pub_path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-E", "sha256", "-lf"])
        .arg(pub_path)
        .output()
        .expect("run ssh-keygen -lf");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

#[test]
fn pubkey_login_with_system_ssh() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let server = sshd_or_skip!(Sshd::builder().authorized_key(&key.public_line));
    let user = current_user();

    // Accessors agree with ssh-keygen run here and with what ssh sees.
    let ed_pub = server.dir().join("ssh_host_ed25519_key.pub");
    assert_eq!(
        server.host_key_fingerprint(HostKeyType::Ed25519),
        cli_fingerprint(&ed_pub)
    );
    assert_eq!(
        server.host_key_public_line(HostKeyType::Ed25519),
        fs::read_to_string(&ed_pub).unwrap_or_default().trim_end()
    );
    assert!(server
        .host_key_public_line(HostKeyType::Ecdsa)
        .starts_with("ecdsa-sha2-nistp256 AAAA"));
    assert!(server
        .host_key_public_line(HostKeyType::Rsa)
        .starts_with("ssh-rsa AAAA"));
    assert_eq!(key.fingerprint, cli_fingerprint(&key.public_path));

    let files = ClientFiles::new(&[format!(
        "[127.0.0.1]:{} {}",
        server.port(),
        server.host_key_public_line(HostKeyType::Ed25519)
    )]);
    let key_path = key.path.to_str().expect("utf-8 key path");
    let out = ssh(
        &server,
        &files,
        &user,
        &[
            "-i",
            key_path,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
        ],
        false,
    );
    assert_hello(&out, &server);
    let stderr = stderr_of(&out);
    let seen = format!(
        "debug1: Server host key: ssh-ed25519 {}",
        server.host_key_fingerprint(HostKeyType::Ed25519)
    );
    assert!(
        stderr.contains(&seen),
        "ssh -v did not show {seen:?}:\n{stderr}"
    );
    assert_eq!(can_continue_line(&stderr), Some("publickey"));

    let accepted = format!("Accepted publickey for {user} from 127.0.0.1 port ");
    assert!(
        server.wait_for_log(&accepted, Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(server
        .log()
        .contains(&format!("ED25519 {}", key.fingerprint)));
    assert!(!server.log_since_ready().contains("Server listening"));
}

#[test]
fn password_login_via_pam() {
    let server = sshd_or_skip!(Sshd::builder().password_authentication(true));
    let user = server.password_user().expect("password user");
    let files = ClientFiles::with_password(
        &[server.known_hosts_line(HostKeyType::Ecdsa)],
        server.password().expect("password").expose_secret(),
    );
    let out = ssh(
        &server,
        &files,
        user,
        &[
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ],
        true,
    );
    assert_hello(&out, &server);
    assert!(server
        .log()
        .contains(&format!("Accepted password for {user} from 127.0.0.1")));
}

#[test]
fn kbd_interactive_only_offers_no_password() {
    let server = sshd_or_skip!(Sshd::builder()
        .host_key_types([HostKeyType::Rsa])
        .kbd_interactive_authentication(true));
    let user = server.password_user().expect("password user");
    let config = server.config_text();
    for line in [
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication yes",
        "UsePAM yes",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "missing {line:?} in:\n{config}"
        );
    }
    let files = ClientFiles::with_password(
        &[server.known_hosts_line(HostKeyType::Rsa)],
        server.password().expect("password").expose_secret(),
    );

    let out = ssh(
        &server,
        &files,
        user,
        &[
            "-o",
            "PreferredAuthentications=keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ],
        true,
    );
    assert_hello(&out, &server);
    assert_eq!(
        can_continue_line(&stderr_of(&out)),
        Some("publickey,keyboard-interactive")
    );
    assert!(server.log().contains(&format!(
        "Accepted keyboard-interactive/pam for {user} from 127.0.0.1"
    )));

    let out = ssh(
        &server,
        &files,
        user,
        &[
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ],
        true,
    );
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("Permission denied (publickey,keyboard-interactive)"));
}

#[test]
fn host_certificate_and_runtime_authorized_key() {
    let server = sshd_or_skip!(Sshd::builder()
        .host_key_types([HostKeyType::Ed25519])
        .host_certificate(true)
        .password_authentication(false)
        .extra_config("MaxAuthTries 2"));
    let config = server.config_text();
    assert!(
        config.contains("UsePAM no") && config.contains("MaxAuthTries 2"),
        "{config}"
    );
    assert!(server
        .host_certificate_line(HostKeyType::Ed25519)
        .starts_with("ssh-ed25519-cert-v01@openssh.com "));

    // Authorized only after start: sshd rereads the file per connection.
    let key = client_key(KeyKind::Ecdsa, KeyFormat::Pem, None);
    server
        .add_authorized_key(&format!("from=\"127.0.0.1\" {}", key.public_line))
        .expect("add an authorized key");

    // Trust only the CA: the login works only if sshd offers the certificate.
    let files = ClientFiles::new(&[server.ca_known_hosts_line()]);
    let key_path = key.path.to_str().expect("utf-8 key path");
    let out = ssh(
        &server,
        &files,
        &current_user(),
        &[
            "-i",
            key_path,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
        ],
        false,
    );
    assert_hello(&out, &server);
    assert!(stderr_of(&out)
        .contains("debug1: Server host certificate: ssh-ed25519-cert-v01@openssh.com"));
}

#[test]
fn client_key_formats() {
    let cases = [
        (KeyKind::Ed25519, KeyFormat::OpenSsh, "OPENSSH PRIVATE KEY"),
        (KeyKind::Ecdsa, KeyFormat::Pem, "EC PRIVATE KEY"),
        (KeyKind::Ecdsa, KeyFormat::Pkcs8, "PRIVATE KEY"),
        (KeyKind::Rsa3072, KeyFormat::Pem, "RSA PRIVATE KEY"),
    ];
    for (kind, format, label) in cases {
        let key = client_key(kind, format, None);
        assert!(key
            .private_pem()
            .starts_with(&format!("-----BEGIN {label}-----")));
        assert!(key
            .public_line
            .starts_with(&format!("{} AAAA", kind.algorithm())));
        assert!(key.public_line.ends_with(" etl-ssh-test"));
        assert!(key.fingerprint.starts_with("SHA256:"));
        let mode = fs::metadata(&key.path)
            .expect("stat key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let enc = client_key(KeyKind::Ecdsa, KeyFormat::Pkcs8, Some("secret pass"));
    assert!(enc
        .private_pem()
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let enc = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, Some("secret pass"));
    // ssh-keygen -y needs the passphrase: proves the key is really encrypted.
    let out = Command::new("ssh-keygen")
        .args(["-y", "-P", "secret pass", "-f"])
        .arg(&enc.path)
        .output()
        .expect("ssh-keygen -y");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        enc.public_line
    );
    let out = Command::new("ssh-keygen")
        .args(["-y", "-P", "wrong pass", "-f"])
        .arg(&enc.path)
        .output()
        .expect("ssh-keygen -y");
    assert!(!out.status.success());
}

#[test]
fn default_config_is_the_least_permissive() {
    let server = sshd_or_skip!();
    let config = server.config_text();
    for line in [
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "PermitEmptyPasswords no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        &format!("AllowUsers {}", current_user()),
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "missing {line:?} in:\n{config}"
        );
    }
    assert!(!config.contains("PermitRootLogin yes"), "{config}");
    assert!(server.password_user().is_none() && server.password().is_none());
}

#[test]
fn password_user_exists_only_inside_the_servers_namespace() {
    let passwd_before = fs::read("/etc/passwd").expect("read /etc/passwd");
    let shadow_before = fs::read("/etc/shadow").ok();
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, None);
    let server = sshd_or_skip!(Sshd::builder()
        .authorized_key(&key.public_line)
        .password_authentication(true));
    let user = server.password_user().expect("password user").to_string();
    let uid = server.password_uid().expect("password uid");

    // The machine's account files are untouched, and the user unknown there.
    assert_eq!(fs::read("/etc/passwd").expect("read"), passwd_before);
    assert_eq!(fs::read("/etc/shadow").ok(), shadow_before);
    let getent = Command::new("getent")
        .args(["passwd", &user])
        .output()
        .expect("run getent");
    assert!(!getent.status.success(), "{user} exists on the machine");

    // Inside, the password logs in, and commands run as that unprivileged uid.
    let session = server
        .session_builder()
        .credential(server.password_credential().expect("credential"))
        .connect()
        .expect("password login");
    let out = session.exec().expect("exec").run("id -u").expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(out.stdout()).trim(),
        uid.to_string()
    );

    // The key user (root too, with a key only) still logs in beside it.
    let session = server
        .session_builder()
        .credential(key.credential())
        .connect()
        .expect("key login beside passwords");
    let out = session.exec().expect("exec").run("id -un").expect("id -un");
    assert_eq!(String::from_utf8_lossy(out.stdout()).trim(), current_user());
    if common::is_root() {
        let err = server
            .session_builder()
            .credential(etl_ssh::Credential::password(
                "root",
                server.password().expect("password").clone(),
            ))
            .connect()
            .expect_err("root never logs in with a password");
        assert_eq!(err.kind(), etl_ssh::ErrorKind::Auth, "{err}");
    }
}

/// Set for the child process of
/// `sshd_and_folders_die_with_a_killed_test_process`.
const HELPER_ENV: &str = "ETL_SSH_WATCHDOG_HELPER";

/// Not a test of its own: in the child process of
/// `sshd_and_folders_die_with_a_killed_test_process` (this binary run again
/// with `HELPER_ENV` set), starts a server and a folder, says where, and
/// waits to be killed. Elsewhere it returns at once.
#[test]
fn watchdog_helper() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let server = Sshd::builder()
        .host_key_types([HostKeyType::Ed25519])
        .start()
        .expect("start sshd");
    let folder = etl_ssh::testkit::temp_dir("etl-ssh-helper-").expect("temp dir");
    println!(
        "READY {} {} {}",
        server.pid(),
        server.dir().display(),
        folder.path().display()
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn sshd_and_folders_die_with_a_killed_test_process() {
    use std::io::BufRead;
    if common::require_sshd().is_none() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "watchdog_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the helper");
    let stdout = child.stdout.take().expect("helper stdout");
    let ready = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("READY ").map(|(_, rest)| rest.to_string()))
        .expect("the helper says READY");
    let mut fields = ready.split_whitespace();
    let pid: u32 = fields.next().and_then(|p| p.parse().ok()).expect("pid");
    let sshd_dir = PathBuf::from(fields.next().expect("sshd folder"));
    let folder = PathBuf::from(fields.next().expect("folder"));
    let root = folder.parent().expect("temp root").to_path_buf();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists() && sshd_dir.is_dir() && folder.is_dir());
    assert!(
        root.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("etl-ssh-")),
        "{}",
        root.display()
    );

    child.kill().expect("SIGKILL the helper"); // our own child, by pid
    child.wait().expect("reap the helper");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while proc_dir.exists() || sshd_dir.exists() || root.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: sshd {pid} running: {}, {} exists: {}, {} exists: {}",
            proc_dir.exists(),
            sshd_dir.display(),
            sshd_dir.exists(),
            root.display(),
            root.exists()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_config_sshd_rejects_is_reported_with_its_words() {
    if common::require_sshd().is_none() {
        return;
    }
    let err = Sshd::builder()
        .host_key_types([HostKeyType::Ed25519])
        .extra_config("NoSuchKeyword yes")
        .start()
        .expect_err("sshd -t refuses it");
    let text = err.to_string();
    assert!(text.contains("sshd -t rejected the test config"), "{text}");
    assert!(text.contains("NoSuchKeyword"), "{text}");
}
