//! Algorithms in OpenSSH's terms, against a real sshd: the modern defaults
//! (no SHA-1, even in a build that has it), lists in OpenSSH's syntax, and
//! malformed lists refused before any connection.

mod common;

use common::Sshd;
use etl_ssh::{AlgorithmFamily, ErrorKind};

/// The client's KEXINIT proposal as sshd logged it (`LogLevel DEBUG3`):
/// `(what, list)` for each `debug2: <what>: <list>` line after
/// "peer client KEXINIT proposal".
fn client_proposal(server: &Sshd) -> Vec<(String, String)> {
    let log = server.log_since_ready();
    let start = log
        .find("peer client KEXINIT proposal")
        .unwrap_or_else(|| panic!("sshd logged no client proposal:\n{log}"));
    log[start..]
        .lines()
        .skip(1)
        .take(10)
        .filter_map(|l| l.split_once("debug2: "))
        .filter_map(|(_, rest)| rest.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.trim_end_matches(" [preauth]").to_string()))
        .collect()
}

fn proposed(proposal: &[(String, String)], what: &str) -> String {
    proposal
        .iter()
        .find(|(k, _)| k == what)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no `{what}` in {proposal:?}"))
}

#[test]
fn defaults_offer_no_sha1_algorithm() {
    let Some((server, key)) = common::sshd_with_key(Sshd::builder()) else {
        return;
    };
    let session = key.connect_to(&server);
    drop(session);
    let proposal = client_proposal(&server);
    for what in [
        "KEX algorithms",
        "host key algorithms",
        "MACs ctos",
        "MACs stoc",
    ] {
        let list = proposed(&proposal, what);
        for name in list.split(',') {
            assert!(
                !name.contains("sha1") && name != "ssh-rsa" && !name.contains("md5"),
                "{what} offers {name}: {list}"
            );
        }
    }
    // The defaults are this build's algorithms without the legacy ones.
    let kex = proposed(&proposal, "KEX algorithms");
    for name in AlgorithmFamily::Kex.defaults() {
        assert!(kex.split(',').any(|k| k == name), "{name} not in {kex}");
    }
}

#[test]
fn openssh_list_syntax_shapes_the_offer() {
    let Some((server, key)) = common::sshd_with_key(
        Sshd::builder()
            .extra_config("KexAlgorithms ecdh-sha2-nistp256,curve25519-sha256")
            .extra_config("Ciphers aes256-ctr,aes128-ctr")
            .extra_config("MACs hmac-sha2-512,hmac-sha2-256"),
    ) else {
        return;
    };
    let session = server
        .session_builder()
        .credential(key.credential())
        .kex_algorithms("-curve25519*")
        .ciphers("aes128-ctr,aes256-ctr")
        .ciphers("-aes256-ctr")
        .macs("^hmac-sha2-512")
        .connect()
        .expect("connect");
    drop(session);
    let proposal = client_proposal(&server);
    let kex = proposed(&proposal, "KEX algorithms");
    assert!(!kex.contains("curve25519"), "{kex}");
    assert!(kex.contains("ecdh-sha2-nistp256"), "{kex}");
    assert_eq!(proposed(&proposal, "ciphers ctos"), "aes128-ctr");
    assert_eq!(proposed(&proposal, "ciphers stoc"), "aes128-ctr");
    assert!(
        proposed(&proposal, "MACs ctos").starts_with("hmac-sha2-512,"),
        "{proposal:?}"
    );
    assert!(
        server
            .log_since_ready()
            .contains("cipher: aes128-ctr MAC: hmac-sha2-512"),
        "negotiated: {}",
        server.log_since_ready()
    );
}

#[test]
fn malformed_lists_are_refused_before_connecting() {
    // Nothing listens on port 9 of 127.0.0.1: an attempt to connect
    // would be a Connect error, not these.
    let builder =
        etl_ssh::Session::builder("127.0.0.1")
            .port(9)
            .credential(etl_ssh::Credential::key_pair(
                "etl",
                "/nonexistent/etl-ssh-key",
            ));
    let cases = [
        (
            builder.clone().ciphers("aes128-ctr,blowfish-ecb"),
            "blowfish-ecb",
        ),
        (builder.clone().macs(""), "empty"),
        (
            builder.clone().kex_algorithms("!curve25519-sha256"),
            "negated",
        ),
        (builder.clone().host_key_algorithms("-*"), "leaves nothing"),
    ];
    for (builder, words) in cases {
        let err = builder.connect().expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let text = err.to_string();
        assert!(text.contains(words), "{text:?} lacks {words:?}");
        assert!(text.contains("algorithms"), "{text}");
    }
}

#[test]
fn a_failed_negotiation_names_the_family_and_both_offers() {
    let Some((server, key)) =
        common::sshd_with_key(Sshd::builder().extra_config("Ciphers aes256-ctr,aes192-ctr"))
    else {
        return;
    };
    let err = server
        .session_builder()
        .credential(key.credential())
        .ciphers("aes128-ctr,aes128-gcm@openssh.com")
        .connect()
        .expect_err("no common cipher");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let text = err.to_string();
    for words in [
        format!(
            "no common cipher algorithm with 127.0.0.1:{}",
            server.port()
        ),
        "the server offers aes256-ctr,aes192-ctr".to_string(),
        "we offer aes128-ctr,aes128-gcm@openssh.com".to_string(),
    ] {
        assert!(text.contains(&words), "{text:?} lacks {words:?}");
    }
    assert!(
        !text.contains("SHA-1") && !text.contains("allow-list"),
        "{text}"
    );
    assert!(!err.is_transient(), "retrying cannot help: {text}");
}
