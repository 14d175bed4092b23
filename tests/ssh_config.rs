//! `SshConfig` against OpenSSH itself: `ssh -G` resolves the same files
//! (with `Include`, `Match`, chains) to the same values, what `ssh`
//! refuses is refused, and sessions built from aliases (through a
//! `ProxyJump` hop, and a chain of two in OpenSSH's order) connect to
//! real sshd servers.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{current_user, HostKeyType, Sshd, StartSshd};
use etl_ssh::{ErrorKind, HostConfig, SshConfig};

/// `ssh -G -F file alias`, as keyword -> values lines.
fn ssh_g(file: &std::path::Path, alias: &str) -> Vec<(String, String)> {
    let out = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(file)
        .arg(alias)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh -G");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn one(lines: &[(String, String)], key: &str) -> String {
    maybe(lines, key).unwrap_or_else(|| panic!("ssh -G printed no {key}"))
}

/// What we resolve for `alias` and what `ssh -G` prints for it, with the
/// host name, port and user checked equal.
fn resolved_as_ssh(
    config: &SshConfig,
    file: &std::path::Path,
    alias: &str,
) -> (HostConfig, Vec<(String, String)>) {
    let ours = config.resolve(alias).expect("resolves");
    let theirs = ssh_g(file, alias);
    assert_eq!(ours.host_name, one(&theirs, "hostname"), "{alias}");
    assert_eq!(ours.port.to_string(), one(&theirs, "port"), "{alias}");
    assert_eq!(
        ours.user.as_deref(),
        Some(one(&theirs, "user").as_str()),
        "{alias}"
    );
    (ours, theirs)
}

fn maybe(lines: &[(String, String)], key: &str) -> Option<String> {
    lines.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn all_of(lines: &[(String, String)], key: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn resolves_as_ssh_g_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config");
    std::fs::write(
        &file,
        r#"
Host partner-sftp
    HostName sftp.partner.example
    Port 2222
    User etl
    IdentityFile /keys/new
    IdentityFile=/keys/old
    HostKeyAlias partner
    ProxyJump jumper@bastion:2200

Host *.partner.example !legacy.partner.example
    User partner-user
    ConnectTimeout 7
    IdentityFile /keys/%h

Host legacy.* other
    HostName %h.internal
    Port 2200

Host *
    User fallback
    Port 2022
    UserKnownHostsFile /etc/etl/known_hosts /etc/etl/more_hosts
"#,
    )
    .expect("write config");
    let config = SshConfig::from_file(&file).expect("parse");
    for alias in [
        "partner-sftp",
        "db.partner.example",
        "legacy.partner.example",
        "other",
        "nothing",
    ] {
        let (ours, theirs) = resolved_as_ssh(&config, &file, alias);
        assert_eq!(
            ours.host_key_alias,
            maybe(&theirs, "hostkeyalias"),
            "{alias}"
        );
        assert_eq!(ours.proxy_jump, maybe(&theirs, "proxyjump"), "{alias}");
        let timeout = one(&theirs, "connecttimeout");
        assert_eq!(
            ours.connect_timeout
                .map(|t| t.as_secs().to_string())
                .unwrap_or("none".into()),
            timeout,
            "{alias}"
        );
        let files: Vec<String> = ours
            .user_known_hosts_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            files.join(" "),
            one(&theirs, "userknownhostsfile"),
            "{alias}"
        );
        if !ours.identity_files.is_empty() {
            // ssh -G prints tokens unexpanded; ssh expands %h on use.
            let theirs: Vec<String> = all_of(&theirs, "identityfile")
                .iter()
                .map(|v| v.replace("%h", &ours.host_name))
                .collect();
            let ours: Vec<String> = ours
                .identity_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            assert_eq!(ours, theirs, "{alias}");
        }
    }
}

#[test]
fn sessions_from_aliases_including_a_proxy_jump() {
    let Some((bastion, target, key)) = common::bastion_and_target() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = common::known_hosts_of(dir.path(), &[&bastion, &target]);
    let file = dir.path().join("config");
    std::fs::write(
        &file,
        format!(
            "Host partner\n  HostName 127.0.0.1\n  Port {target}\n  ProxyJump bastion\n\n\
             Host bastion\n  HostName 127.0.0.1\n  Port {bastion}\n\n\
             Host direct\n  HostName 127.0.0.1\n  Port {target}\n\n\
             Host *\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {kh}\n  ConnectTimeout 10\n",
            target = target.port(),
            bastion = bastion.port(),
            user = current_user(),
            key = key.path.display(),
            kh = known_hosts.display(),
        ),
    )
    .expect("config");
    let config = SshConfig::from_file(&file).expect("config");

    let direct = config
        .session_builder("direct")
        .expect("builder")
        .connect()
        .expect("direct");
    assert_eq!(
        direct.host_key().fingerprint(),
        target.host_key_fingerprint(HostKeyType::Ed25519)
    );

    let jumped = config
        .session_builder("partner")
        .expect("builder")
        .connect()
        .expect("jumped");
    assert_eq!(
        jumped.host_key().fingerprint(),
        target.host_key_fingerprint(HostKeyType::Ed25519)
    );
    assert!(
        bastion.wait_for_log("direct-tcpip", Duration::from_secs(5)),
        "{}",
        bastion.log()
    );

    // A known_hosts file that does not list the target: refused, even
    // though the bastion hop is fine.
    std::fs::write(
        &known_hosts,
        format!("{}\n", bastion.known_hosts_line(HostKeyType::Ed25519)),
    )
    .expect("known_hosts");
    let err = config
        .session_builder("partner")
        .expect("builder")
        .connect()
        .expect_err("must fail");
    eprintln!("error: {err}");
    assert_eq!(err.kind(), ErrorKind::HostKeyUnknown);
}

#[test]
fn algorithm_lists_as_ssh_g_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config");
    std::fs::write(
        &file,
        "Host old\n    KexAlgorithms diffie-hellman-group14-sha1,curve25519-sha256\n    \
         HostKeyAlgorithms ssh-ed25519,rsa-sha2-256\n    Ciphers aes128-ctr\n    \
         MACs hmac-sha2-256\nHost *\n    Ciphers aes256-ctr\n    MACs +hmac-sha1\n",
    )
    .expect("write config");
    let config = SshConfig::from_file(&file).expect("parse");
    let ours = config.resolve("old").expect("resolves");
    let theirs = ssh_g(&file, "old");
    assert_eq!(
        ours.kex_algorithms.as_deref(),
        Some(one(&theirs, "kexalgorithms").as_str())
    );
    assert_eq!(
        ours.host_key_algorithms.as_deref(),
        Some(one(&theirs, "hostkeyalgorithms").as_str())
    );
    assert_eq!(
        ours.ciphers.as_deref(),
        Some(one(&theirs, "ciphers").as_str())
    );
    assert_eq!(ours.macs.as_deref(), Some(one(&theirs, "macs").as_str()));
    // An appended list: ssh -G shows OpenSSH's defaults with the name at
    // the end; we keep the list as written and apply it to ours.
    let other = config.resolve("other").expect("resolves");
    assert_eq!(other.macs.as_deref(), Some("+hmac-sha1"));
    assert!(one(&ssh_g(&file, "other"), "macs").ends_with(",hmac-sha1"));
    assert_eq!(other.kex_algorithms, None);
}

/// `ssh -G`'s value of `key`, if it prints one.
fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn include_match_and_more_keywords_as_ssh_g_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("conf.d")).expect("mkdir");
    write_private(
        &d.join("conf.d/10-partner.conf"),
        "Host partner\n  HostName sftp.partner.example\n  ServerAliveInterval 30\n\
         Host legacy\n  HostName old.partner.example\n  ProxyCommand nc %h %p\n\
         Match host x\n",
    );
    write_private(
        &d.join("conf.d/20-defaults.conf"),
        "Host *.example partner\n  IdentitiesOnly yes\n",
    );
    write_private(&d.join("conf.d/skipped.txt"), "Host *\n  Port 1\n");
    let file = d.join("config");
    write_private(
        &file,
        &format!(
            "Include {inc}/conf.d/*.conf\n\
             Match host sftp.partner.example\n  Port 2222\n  BindAddress 127.0.0.1\n\
               CertificateFile /keys/etl-cert.pub\n  IdentityFile /keys/etl\n\
             Match originalhost chain\n  ProxyJump first,ssh://hopper@second:2200\n\
             Host agent\n  IdentityAgent /run/etl-agent.sock\n\
             Match all\n  User fallback\n  ProxyJump none\n",
            inc = d.display()
        ),
    );
    let config = SshConfig::from_file(&file).expect("parse");
    for alias in [
        "partner",
        "legacy",
        "chain",
        "agent",
        "other.example",
        "nothing",
    ] {
        let (ours, theirs) = resolved_as_ssh(&config, &file, alias);
        let yes_no = if ours.identities_only { "yes" } else { "no" };
        assert_eq!(yes_no, one(&theirs, "identitiesonly"), "{alias}");
        assert_eq!(
            ours.server_alive_interval
                .map_or(0, |d| d.as_secs())
                .to_string(),
            one(&theirs, "serveraliveinterval"),
            "{alias}"
        );
        assert_eq!(ours.bind_address, maybe(&theirs, "bindaddress"), "{alias}");
        // ssh -G prints an ssh:// hop without its scheme.
        assert_eq!(
            ours.proxy_jump.map(|j| j.replace("ssh://", "")),
            maybe(&theirs, "proxyjump"),
            "{alias}"
        );
        assert_eq!(
            ours.proxy_command,
            maybe(&theirs, "proxycommand"),
            "{alias}"
        );
        assert_eq!(
            ours.identity_agent,
            maybe(&theirs, "identityagent"),
            "{alias}"
        );
        let certs: Vec<String> = ours
            .certificate_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(certs, all_of(&theirs, "certificatefile"), "{alias}");
        if !ours.identity_files.is_empty() {
            let files: Vec<String> = ours
                .identity_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            assert_eq!(files, all_of(&theirs, "identityfile"), "{alias}");
        }
    }
    // `Match host` saw the HostName set by the included file.
    assert_eq!(config.resolve("partner").expect("resolves").port, 2222);

    // A ProxyCommand is refused, not ignored.
    let err = config.session_builder("legacy").expect_err("ProxyCommand");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("ProxyCommand nc %h %p"), "{err}");
    assert!(err.to_string().contains("ProxyJump"), "{err}");
}

#[test]
fn what_ssh_refuses_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, words) in [
        ("Host a\n  Port 22x\n", "Port `22x` is not a port number"),
        ("Host a\n  ProxyJump b:x\n", "ProxyJump `b:x`"),
        ("Host a\n  ConnectTimeout soon\n", "not a number of seconds"),
    ] {
        let file = dir.path().join("config");
        write_private(&file, text);
        let err = SshConfig::from_file(&file).expect_err(text);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let message = err.to_string();
        assert!(message.contains(words), "{message}");
        assert!(
            message.contains(&format!("{}:2", file.display())),
            "{message}"
        );
        let status = Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(&file)
            .arg("a")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("ssh -G");
        assert!(!status.success(), "ssh accepts {text:?}");
    }
    let err = SshConfig::parse("Match exec \"test -f /x\"\n  User x\n").expect_err("exec");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("`Match exec` is not supported"),
        "{err}"
    );
}

#[test]
fn a_chain_goes_through_its_hops_in_openssh_order() {
    let Some((first, key)) = common::sshd_with_key(Sshd::builder()) else {
        return;
    };
    let second = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_or_panic();
    let target = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_or_panic();
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("known_hosts");
    let lines: Vec<String> = [&first, &second, &target]
        .iter()
        .map(|s| s.known_hosts_line(HostKeyType::Ed25519))
        .collect();
    std::fs::write(&known_hosts, lines.join("\n") + "\n").expect("known_hosts");
    let file = dir.path().join("config");
    write_private(
        &file,
        &format!(
            "Host partner\n  HostName 127.0.0.1\n  Port {target}\n  ProxyJump first,second\n\
             Host first\n  HostName 127.0.0.1\n  Port {first}\n\
             Host second\n  HostName 127.0.0.1\n  Port {second}\n  ProxyJump nowhere\n\
             Host *\n  User {user}\n  IdentityFile {key}\n  UserKnownHostsFile {kh}\n",
            target = target.port(),
            first = first.port(),
            second = second.port(),
            user = current_user(),
            key = key.path.display(),
            kh = known_hosts.display(),
        ),
    );
    let config = SshConfig::from_file(&file).expect("config");
    let session = config
        .session_builder("partner")
        .expect("builder")
        .connect()
        .expect("through first, then second");
    assert_eq!(
        session.host_key().fingerprint(),
        target.host_key_fingerprint(HostKeyType::Ed25519)
    );
    // `first` opened the tunnel to `second`, and `second` the one to the
    // target (whose own `ProxyJump nowhere` the chain replaced).
    let forwarded = |server: &Sshd, port: u16| {
        let target = format!("target 127.0.0.1 port {port}");
        server
            .log_since_ready()
            .lines()
            .any(|l| l.contains("server_request_direct_tcpip") && l.ends_with(&target))
    };
    assert!(
        first.wait_for_log("direct-tcpip", Duration::from_secs(5)),
        "{}",
        first.log()
    );
    assert!(
        forwarded(&first, second.port()),
        "{}",
        first.log_since_ready()
    );
    assert!(
        forwarded(&second, target.port()),
        "{}",
        second.log_since_ready()
    );
    assert!(
        !forwarded(&first, target.port()),
        "{}",
        first.log_since_ready()
    );
}

#[test]
fn a_certificate_file_goes_with_the_key_it_certifies() {
    let ca = common::client_key(common::KeyKind::Ed25519, common::KeyFormat::OpenSsh, None);
    let key = common::client_key(common::KeyKind::Ed25519, common::KeyFormat::OpenSsh, None);
    let other = common::client_key(common::KeyKind::Ed25519, common::KeyFormat::OpenSsh, None);
    let Some(server) = Sshd::builder()
        .extra_config(&format!("TrustedUserCAKeys {}", ca.public_path.display()))
        .start_if_available()
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.path)
        .args([
            "-I",
            "etl-ssh-config",
            "-n",
            &current_user(),
            "-V",
            "-5m:+1h",
        ])
        .arg(&key.public_path)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("ssh-keygen -s");
    assert!(status.success());
    // Away from the key, so that only CertificateFile can bring it.
    let cert = dir.path().join("etl-cert.pub");
    let mut beside = key.path.as_os_str().to_owned();
    beside.push("-cert.pub");
    std::fs::rename(std::path::PathBuf::from(beside), &cert).expect("move cert");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        server.known_hosts_line(HostKeyType::Ed25519) + "\n",
    )
    .expect("known_hosts");
    let file = dir.path().join("config");
    write_private(
        &file,
        &format!(
            "Host partner\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n\
               IdentityFile {other}\n  IdentityFile {key}\n  CertificateFile {cert}\n\
               UserKnownHostsFile {kh}\n  ServerAliveInterval 5\n  BindAddress 127.0.0.1\n",
            port = server.port(),
            user = current_user(),
            other = other.path.display(),
            key = key.path.display(),
            cert = cert.display(),
            kh = known_hosts.display(),
        ),
    );
    let session = SshConfig::from_file(&file)
        .expect("config")
        .session_builder("partner")
        .expect("builder")
        .connect()
        .expect("the certificate went with its key");
    assert_eq!(session.local_addr().ip().to_string(), "127.0.0.1");
    assert!(
        server.wait_for_log(
            "Accepted certificate ID \"etl-ssh-config\"",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
}
