//! Old servers: sshd offering only SHA-1 key exchange, only `ssh-rsa`
//! host keys, or only `hmac-sha1`. Without the opt-in, the error names the
//! family, both offers and what to do; with it, a build whose libssh2 has
//! the SHA-1 algorithms connects (README, "Old servers").
//!
//! The connecting half needs that build: elsewhere it is skipped loudly,
//! except under `ETL_SSH_TEST_SHA1_BUILD=1` (CI's SHA-1 step), where a
//! build without them fails.

mod common;

use common::{HostKeyType, Sshd};
use etl_ssh::{has_sha1_algorithms, Error, ErrorKind, SessionBuilder};

/// Set by CI's SHA-1 step: the tests must find SHA-1 in this build.
const SHA1_BUILD_ENV: &str = "ETL_SSH_TEST_SHA1_BUILD";

/// Whether this build has the SHA-1 algorithms: a loud SKIPPED line when
/// not, a failure when [`SHA1_BUILD_ENV`] says it must.
fn sha1_build_or_skip(what: &str) -> bool {
    if has_sha1_algorithms() {
        return true;
    }
    if std::env::var(SHA1_BUILD_ENV).is_ok_and(|v| v == "1") {
        panic!(
            "{SHA1_BUILD_ENV}=1 but this build's libssh2 lacks the SHA-1 algorithms: \
             was it built with CFLAGS=\"-DLIBSSH2_RSA_SHA1_ENABLE -DLIBSSH2_KEX_SHA1_ENABLE \
             -DLIBSSH2_HMAC_SHA1_ENABLE\" in a target dir of its own?"
        );
    }
    common::loud(&format!(
        "SKIPPED: {what}: this build's libssh2 has no SHA-1 algorithms (CI runs it in a \
         SHA-1 build with {SHA1_BUILD_ENV}=1)"
    ));
    false
}

/// What an old server offers, how we opt in, and what sshd logs once the
/// opt-in is agreed.
struct Old {
    config: &'static [&'static str],
    host_keys: &'static [HostKeyType],
    family: &'static str,
    offer: &'static str,
    opt_in: fn(SessionBuilder) -> SessionBuilder,
    opt_in_words: &'static str,
    agreed: &'static str,
}

fn check(old: &Old) {
    let mut builder = Sshd::builder().host_key_types(old.host_keys.iter().copied());
    for line in old.config {
        builder = builder.extra_config(line);
    }
    let Some((server, key)) = common::sshd_with_key(builder) else {
        return;
    };
    let session = || server.session_builder().credential(key.credential());

    // Without the opt-in: the error says which family, both offers, what to do.
    let err = session().connect().expect_err("no common algorithm");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(matches!(err, Error::Negotiation { .. }), "{err:?}");
    let text = err.to_string();
    for words in [
        format!(
            "no common {} algorithm with 127.0.0.1:{}",
            old.family,
            server.port()
        ),
        format!("the server offers {}", old.offer),
        "we offer ".to_string(),
        "only SHA-1 algorithms".to_string(),
        old.opt_in_words.to_string(),
    ] {
        assert!(text.contains(&words), "{text:?} lacks {words:?}");
    }
    assert!(!text.contains("allow-list"), "{text}");
    assert_eq!(
        text.contains("README, \"Old servers\""),
        !has_sha1_algorithms(),
        "the build advice appears exactly when this build lacks SHA-1: {text}"
    );

    // With the opt-in.
    let opted = (old.opt_in)(session()).connect();
    if !sha1_build_or_skip(&format!("connecting with {}", old.opt_in_words)) {
        let err = opted.expect_err("this build lacks SHA-1");
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        let text = err.to_string();
        assert!(text.contains("not in this build of libssh2"), "{text}");
        assert!(text.contains("Old servers"), "{text}");
        return;
    }
    let session = opted.unwrap_or_else(|e| panic!("connect with {}: {e}", old.opt_in_words));
    let out = session.exec().expect("exec").run("echo old").expect("run");
    assert_eq!(out.stdout(), b"old\n");
    assert!(
        server.log_since_ready().contains(old.agreed),
        "sshd did not agree {}:\n{}",
        old.agreed,
        server.log_since_ready()
    );
}

#[test]
fn sha1_key_exchange_only() {
    check(&Old {
        config: &["KexAlgorithms diffie-hellman-group14-sha1"],
        host_keys: &[HostKeyType::Ed25519],
        family: "key exchange",
        offer: "diffie-hellman-group14-sha1",
        opt_in: |b| b.kex_algorithms("+diffie-hellman-group14-sha1"),
        opt_in_words: ".kex_algorithms(\"+diffie-hellman-group14-sha1\")",
        agreed: "kex: algorithm: diffie-hellman-group14-sha1",
    });
}

#[test]
fn ssh_rsa_host_key_only() {
    check(&Old {
        config: &["HostKeyAlgorithms ssh-rsa"],
        host_keys: &[HostKeyType::Rsa],
        family: "host key",
        offer: "ssh-rsa",
        opt_in: |b| b.host_key_algorithms("+ssh-rsa"),
        opt_in_words: ".host_key_algorithms(\"+ssh-rsa\")",
        agreed: "kex: host key algorithm: ssh-rsa",
    });
}

#[test]
fn hmac_sha1_only() {
    check(&Old {
        // A cipher with a MAC of its own would agree no MAC at all.
        config: &["Ciphers aes128-ctr", "MACs hmac-sha1"],
        host_keys: &[HostKeyType::Ed25519],
        family: "MAC",
        offer: "hmac-sha1",
        opt_in: |b| b.macs("+hmac-sha1"),
        opt_in_words: ".macs(\"+hmac-sha1\")",
        agreed: "MAC: hmac-sha1",
    });
}
