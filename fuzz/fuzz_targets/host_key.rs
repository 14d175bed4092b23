//! Fingerprint and public key parsing: `KnownHost::fingerprint`,
//! `HostKey::from_openssh` (a `.pub` line) and the SSH wire blob a server
//! sends (as a plain key, and as a handshake reads it: a plain key or a
//! host certificate), on every input.
//!
//! Invariants, beyond "never panics":
//! - a fingerprint that parses prints back as `SHA256:` and the same 43
//!   characters, and that text parses to itself;
//! - a key that parses prints back (`to_openssh`) to a line that parses to
//!   an equal key, its blob parses to an equal key, and its fingerprint
//!   parses;
//! - error messages stay short whatever the input (they quote at most a
//!   few bytes of it).
#![no_main]

use etl_ssh::fuzzing;
use etl_ssh::{ErrorKind, HostKey, KnownHost};
use libfuzzer_sys::fuzz_target;

/// Longest error message we accept: messages quote at most 40 bytes of input.
const MESSAGE_MAX: usize = 600;

fn short_error(error: &etl_ssh::Error) {
    let message = error.to_string();
    assert!(
        message.len() <= MESSAGE_MAX,
        "{} bytes: {message}",
        message.len()
    );
}

fn key_round_trips(key: &HostKey) {
    let line = key.to_openssh();
    let again = HostKey::from_openssh(&line).expect("to_openssh parses");
    assert_eq!(&again, key, "{line}");
    assert_eq!(again.as_bytes(), key.as_bytes());
    let from_blob = fuzzing::host_key_from_blob(key.as_bytes()).expect("its blob parses");
    assert_eq!(&from_blob, key);
    assert_eq!(from_blob.algorithm(), key.algorithm());
    let fingerprint = key.fingerprint();
    assert_eq!(
        fuzzing::fingerprint(&fingerprint).expect("its fingerprint parses"),
        fingerprint
    );
    assert!(key.to_string().ends_with(&fingerprint));
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // Fingerprints.
    match fuzzing::fingerprint(&text) {
        Ok(canonical) => {
            assert!(KnownHost::fingerprint(&*text).is_ok());
            assert_eq!(canonical.len(), "SHA256:".len() + 43, "{canonical}");
            let body = text.trim().split_once(':').expect("a prefix").1;
            let body = body.strip_suffix('=').unwrap_or(body);
            assert_eq!(&canonical["SHA256:".len()..], body);
            assert_eq!(
                fuzzing::fingerprint(&canonical).ok(),
                Some(canonical.clone())
            );
        }
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
            assert!(KnownHost::fingerprint(&*text).is_err());
            short_error(&error);
        }
    }

    // A public key line.
    match HostKey::from_openssh(&*text) {
        Ok(key) => {
            assert!(KnownHost::public_key(&*text).is_ok());
            key_round_trips(&key);
        }
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
            short_error(&error);
        }
    }

    // The wire blob, as a server sends it.
    match fuzzing::host_key_from_blob(data) {
        Ok(key) => key_round_trips(&key),
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Protocol);
            short_error(&error);
        }
    }

    // The same blob as a handshake reads it: a plain key or a host
    // certificate (whose key inside must be a well-formed key).
    match fuzzing::presented_host_key(data) {
        Ok(key) => key_round_trips(&key),
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::Protocol);
            short_error(&error);
        }
    }
});
