//! Extra sessions reuse what their session prepared: the key (read and
//! decrypted once), the pins (`known_hosts` read once) and the bastion
//! connection of an ssh config's `ProxyJump`.

mod common;

use std::time::Duration;

use common::{client_key, current_user, HostKeyType, KeyFormat, KeyKind, Sshd, StartSshd};
use etl_ssh::{Credential, KnownHost, Session, SshConfig};
use secrecy::SecretString;

#[test]
fn the_key_and_the_pins_are_read_once() {
    let key = client_key(KeyKind::Ed25519, KeyFormat::OpenSsh, Some("correct horse"));
    let Some(server) = Sshd::builder()
        .authorized_key(&key.public_line)
        .start_if_available()
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        server.known_hosts_line(HostKeyType::Ed25519) + "\n",
    )
    .expect("known_hosts");
    let session = Session::builder(server.host())
        .port(server.port())
        .credential(
            Credential::key_pair(current_user(), &key.path)
                .with_passphrase(SecretString::from("correct horse")),
        )
        .known_host(KnownHost::known_hosts_file(&known_hosts))
        .connect()
        .expect("connect");
    // Neither file is there any more: an extra session that read them
    // again would fail.
    std::fs::remove_file(&key.path).expect("remove the key");
    std::fs::remove_file(&known_hosts).expect("remove known_hosts");
    let extra = session.connect_another().expect("extra session");
    let out = extra.exec().expect("exec").run("echo extra").expect("run");
    assert_eq!(out.stdout(), b"extra\n");
    assert_eq!(extra.host_key(), session.host_key());
    assert_ne!(
        extra.local_addr(),
        session.local_addr(),
        "a connection of its own"
    );
}

#[test]
fn the_bastion_connection_is_shared() {
    let Some((bastion, target, key)) = common::bastion_and_target() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = common::known_hosts_of(dir.path(), &[&bastion, &target]);
    let config = SshConfig::parse(&format!(
        "Host partner\n  HostName 127.0.0.1\n  Port {}\n  ProxyJump bastion\n\
         Host bastion\n  HostName 127.0.0.1\n  Port {}\n\
         Host *\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n",
        target.port(),
        bastion.port(),
        current_user(),
        key.path.display(),
        known_hosts.display()
    ))
    .expect("config");
    let session = config
        .session_builder("partner")
        .expect("builder")
        .connect()
        .expect("through the bastion");
    let extra = session.connect_another().expect("extra session");
    let second = session.connect_another().expect("another one");
    for s in [&session, &extra, &second] {
        let out = s.exec().expect("exec").run("echo hi").expect("run");
        assert_eq!(out.stdout(), b"hi\n");
    }
    let count = |needle: &str| {
        bastion
            .log_since_ready()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    };
    assert!(
        bastion.wait_for_log("Accepted publickey", Duration::from_secs(5)),
        "{}",
        bastion.log()
    );
    assert_eq!(count("Accepted publickey"), 1, "one login on the bastion");
    assert_eq!(
        count("server_request_direct_tcpip"),
        3,
        "three tunnels through it:\n{}",
        bastion.log_since_ready()
    );
}
