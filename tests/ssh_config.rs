//! `SshConfig` against OpenSSH itself: `ssh -G` resolves the same file to
//! the same values, and sessions built from aliases (one through a
//! `ProxyJump` hop) connect to real sshd servers.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{current_user, HostKeyType, Sshd, StartSshd};
use etl_ssh::{ErrorKind, SshConfig};

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
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("ssh -G printed no {key}"))
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
        let ours = config.resolve(alias);
        let theirs = ssh_g(&file, alias);
        assert_eq!(ours.host_name, one(&theirs, "hostname"), "{alias}");
        assert_eq!(ours.port.to_string(), one(&theirs, "port"), "{alias}");
        assert_eq!(
            ours.user.as_deref().unwrap_or("?"),
            one(&theirs, "user"),
            "{alias}"
        );
        assert_eq!(
            ours.host_key_alias,
            theirs
                .iter()
                .find(|(k, _)| k == "hostkeyalias")
                .map(|(_, v)| v.clone()),
            "{alias}"
        );
        assert_eq!(
            ours.proxy_jump,
            theirs
                .iter()
                .find(|(k, _)| k == "proxyjump")
                .map(|(_, v)| v.clone()),
            "{alias}"
        );
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
            let theirs: Vec<String> = theirs
                .iter()
                .filter(|(k, _)| k == "identityfile")
                // ssh -G prints tokens unexpanded; ssh expands %h on use.
                .map(|(_, v)| v.replace("%h", &ours.host_name))
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
    let Some((bastion, key)) = common::sshd_with_key(Sshd::builder()) else {
        return;
    };
    let target = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_or_panic();
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "{}\n{}\n",
            bastion.known_hosts_line(HostKeyType::Ed25519),
            target.known_hosts_line(HostKeyType::Ed25519)
        ),
    )
    .expect("known_hosts");
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
