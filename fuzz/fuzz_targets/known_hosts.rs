//! `known_hosts` parsing and matching.
//!
//! Input: a header line `host [port [alias|- [key]]]`, then the content of a
//! `known_hosts` file. `key` picks one of four host keys (0: ed25519,
//! 1: ecdsa-sha2-nistp256, 2: ssh-rsa, 3: a type we do not know); the seed
//! corpus holds lines for each.
//!
//! Invariants, beyond "never panics":
//! - an accepted key's type is among the preferred key types, which hold no
//!   duplicates;
//! - a key is only ever refused as revoked when the content has `@revoked`;
//! - after a line listing the key for the host (plain where the name can be
//!   written plainly and the input's last byte is even, else hashed) the key
//!   is accepted, unless it was revoked before;
//! - after an `@revoked` line for it, the key is refused as revoked;
//! - the glob matcher agrees with a plain dynamic-programming matcher.
#![no_main]

use etl_ssh::fuzzing;
use etl_ssh::{ErrorKind, HostKey};
use libfuzzer_sys::fuzz_target;

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let len = u32::try_from(s.len()).expect("short field");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

fn key(which: u8) -> HostKey {
    let mut blob = Vec::new();
    match which % 4 {
        0 => {
            put_string(&mut blob, b"ssh-ed25519");
            put_string(&mut blob, &[7; 32]);
        }
        1 => {
            let mut point = vec![4u8];
            point.extend_from_slice(&[7; 64]);
            put_string(&mut blob, b"ecdsa-sha2-nistp256");
            put_string(&mut blob, b"nistp256");
            put_string(&mut blob, &point);
        }
        2 => {
            let mut n = vec![0u8, 0xc0];
            n.extend_from_slice(&[7; 255]);
            put_string(&mut blob, b"ssh-rsa");
            put_string(&mut blob, &[1, 0, 1]);
            put_string(&mut blob, &n);
        }
        _ => {
            put_string(&mut blob, b"x-fuzz@example.com");
            put_string(&mut blob, b"opaque");
        }
    }
    fuzzing::host_key_from_blob(&blob).expect("a well-formed test key")
}

/// Reference glob: `*` any run, `?` one byte, ASCII case-insensitive pattern.
fn glob_reference(pattern: &[u8], text: &[u8]) -> bool {
    // matches[j]: pattern[..i] matches text[..j].
    let mut matches = vec![false; text.len() + 1];
    matches[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match p {
                b'*' => matches[j] || (j > 0 && next[j - 1]),
                b'?' => j > 0 && matches[j - 1],
                c => j > 0 && matches[j - 1] && c.to_ascii_lowercase() == text[j - 1],
            };
        }
        matches = next;
    }
    matches[text.len()]
}

/// Can `name` be written as a plain (unhashed) host pattern that matches only itself?
fn plain_writable(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('|')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
}

fn check(
    content: &[u8],
    host: &str,
    port: u16,
    alias: Option<&str>,
    key: &HostKey,
) -> fuzzing::KnownHostsCheck {
    let result = fuzzing::known_hosts(content, host, port, alias, key);
    let types = &result.preferred_key_types;
    for (i, t) in types.iter().enumerate() {
        assert!(
            !types[..i].contains(t),
            "duplicate preferred type {t}: {types:?}"
        );
    }
    if result.check.is_ok() {
        assert!(
            types.iter().any(|t| t == key.algorithm()),
            "accepted {key} but {types:?} lacks its type"
        );
    }
    result
}

fn is_revoked(result: &fuzzing::KnownHostsCheck) -> bool {
    matches!(&result.check, Err(e) if e.kind() == ErrorKind::HostKeyRevoked)
}

fuzz_target!(|data: &[u8]| {
    let (header, content) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let header = String::from_utf8_lossy(header);
    let mut fields = header.split(' ');
    let host = fields.next().unwrap_or("");
    let port = fields.next().and_then(|p| p.parse().ok()).unwrap_or(22);
    let alias = fields.next().filter(|a| *a != "-");
    let which = fields.next().and_then(|k| k.parse().ok()).unwrap_or(0u8);
    let key = key(which);
    let lookup = fuzzing::lookup_name(host, port, alias);

    // The glob matcher, on the content's first field against the lookup name.
    let pattern = content
        .split(|&b| b == b' ' || b == b'\n')
        .next()
        .unwrap_or(b"");
    assert_eq!(
        fuzzing::glob_match(pattern, lookup.as_bytes()),
        glob_reference(pattern, lookup.as_bytes()),
        "glob {:?} vs {lookup:?}",
        String::from_utf8_lossy(pattern)
    );

    let before = check(content, host, port, alias, &key);
    if is_revoked(&before) {
        assert!(
            content.windows(8).any(|w| w == b"@revoked"),
            "revoked without an @revoked line: {:?}",
            before.check
        );
    }

    // A line listing the key for the host is accepted, unless revoked.
    let mut salt = [0u8; 20];
    for (s, b) in salt.iter_mut().zip(data.iter().rev()) {
        *s = *b;
    }
    // One listing per input, to keep executions cheap: plain where it can be
    // written plainly and the input's last byte is even, else hashed.
    let name = if plain_writable(&lookup) && data.last().is_some_and(|b| b % 2 == 0) {
        lookup.clone()
    } else {
        fuzzing::hashed_host(&lookup, &salt)
    };
    {
        let mut listed = content.to_vec();
        listed.extend_from_slice(format!("\n{name} {}\n", key.to_openssh()).as_bytes());
        let after = check(&listed, host, port, alias, &key);
        if is_revoked(&before) {
            assert!(
                is_revoked(&after),
                "a listing undid a revocation: {:?}",
                after.check
            );
        } else {
            assert!(
                after.check.is_ok(),
                "{name} lists {key} yet: {:?}",
                after.check
            );
        }

        listed.extend_from_slice(format!("@revoked {name} {}\n", key.to_openssh()).as_bytes());
        let revoked = check(&listed, host, port, alias, &key);
        assert!(
            is_revoked(&revoked),
            "@revoked {name} {key} yet: {:?}",
            revoked.check
        );
    }
});
