//! Entry points for the cargo-fuzz targets in `fuzz/`: **not a stable API**.
//!
//! Compiled only with the `fuzzing` feature. These thin functions reach the
//! crate-private `known_hosts` parser and matcher through the very code paths
//! a connection uses; they may change or go away in any release.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::known_host::{self, HostKeyPolicy};
use crate::{HostKey, Result};

/// What a `known_hosts` content decides about one key.
#[derive(Debug)]
pub struct KnownHostsCheck {
    /// The result of the host-key check, as a connection would get it.
    pub check: Result<()>,
    /// The key types the handshake would offer first, in order.
    pub preferred_key_types: Vec<String>,
}

/// Loads `known_hosts` content from memory for `host`/`port` (or `alias`),
/// as a [`KnownHost::known_hosts_file`](crate::KnownHost::known_hosts_file)
/// pin would, and checks `key` against it.
pub fn known_hosts(
    content: &[u8],
    host: &str,
    port: u16,
    alias: Option<&str>,
    key: &HostKey,
) -> KnownHostsCheck {
    let policy = match HostKeyPolicy::load(&[], host, port, alias) {
        Ok(mut policy) => {
            policy.load_known_hosts(content, "fuzz");
            policy
        }
        // Loading without file pins reads nothing, so it cannot fail.
        Err(error) => {
            return KnownHostsCheck {
                check: Err(error),
                preferred_key_types: Vec::new(),
            }
        }
    };
    KnownHostsCheck {
        check: policy.check(key),
        preferred_key_types: policy.preferred_key_types(),
    }
}

/// The name `known_hosts` lines are matched against: `host` for port 22,
/// `[host]:port` otherwise, lower-cased (or the lower-cased alias).
pub fn lookup_name(host: &str, port: u16, alias: Option<&str>) -> String {
    match alias {
        Some(alias) => alias.to_ascii_lowercase(),
        None => known_host::fuzz_lookup_name(host, port),
    }
}

/// A hashed host field, `|1|salt|hash`, as `ssh-keygen -H` writes it for `name`.
pub fn hashed_host(name: &str, salt: &[u8; 20]) -> String {
    let hash = match <Hmac<Sha1> as Mac>::new_from_slice(salt) {
        Ok(mut mac) => {
            mac.update(name.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes a key of any length.
        Err(_) => Vec::new(),
    };
    format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(hash))
}

/// The `known_hosts` glob matcher: `*`, `?`, ASCII case-insensitive in
/// `pattern`; `text` is expected lower-case.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    known_host::fuzz_glob_match(pattern, text)
}

/// Parses a `SHA256:` fingerprint and prints it back as OpenSSH does.
///
/// # Errors
///
/// As [`KnownHost::fingerprint`](crate::KnownHost::fingerprint).
pub fn fingerprint(text: &str) -> Result<String> {
    known_host::fuzz_canonical_fingerprint(text)
}

/// Builds a host key from its SSH wire encoding, as from a server.
///
/// # Errors
///
/// A protocol error if the blob is empty or garbled.
pub fn host_key_from_blob(blob: &[u8]) -> Result<HostKey> {
    HostKey::from_blob(blob)
}

/// The key a server's host key blob carries, as the handshake reads it:
/// a plain key, or the key inside an OpenSSH host certificate.
///
/// # Errors
///
/// A protocol error if the blob is neither.
pub fn presented_host_key(blob: &[u8]) -> Result<HostKey> {
    known_host::Presented::from_blob(blob).map(|p| p.key().clone())
}

/// What the SFTP client makes of a packet body from a server: the decoded
/// reply's request id and how many names it holds (0 for other replies),
/// or why it was refused. The decoder must never panic nor allocate more
/// than the packet pays for, whatever the bytes.
pub fn sftp_reply(body: &[u8]) -> std::result::Result<(u32, usize), String> {
    crate::sftp::decode_reply(body)
        .map(|(id, reply)| match reply {
            crate::sftp::proto::Reply::Name(names) => (id, names.len()),
            _ => (id, 0),
        })
        .map_err(|e| e.to_string())
}

/// What the SFTP client makes of a VERSION packet body: the version and
/// the extension names, or why it was refused.
pub fn sftp_version(body: &[u8]) -> std::result::Result<(u32, Vec<Vec<u8>>), String> {
    crate::sftp::decode_version(body)
        .map(|v| {
            (
                v.version,
                v.extensions.into_iter().map(|(n, _)| n).collect(),
            )
        })
        .map_err(|e| e.to_string())
}

/// What the SFTP client makes of the data of a `statvfs@openssh.com`
/// reply: the fragment size and the available fragments, or why it was
/// refused.
pub fn sftp_statvfs(data: &[u8]) -> std::result::Result<(u64, u64), String> {
    crate::sftp::proto::decode_statvfs(data)
        .map(|s| (s.frsize, s.bavail))
        .map_err(|e| e.to_string())
}

/// The name-lists of a server's KEXINIT payload, as a failed handshake
/// reads them (key exchange without its extension markers, host key,
/// ciphers and MACs each way), or why it was refused.
pub fn kexinit(payload: &[u8]) -> std::result::Result<[Vec<String>; 6], String> {
    crate::session::fuzz_parse_kexinit(payload).map(|k| {
        [
            k.kex,
            k.host_key,
            k.cipher_cs,
            k.cipher_sc,
            k.mac_cs,
            k.mac_sc,
        ]
    })
}
