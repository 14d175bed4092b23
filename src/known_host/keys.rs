//! Public key encodings: the `type base64` fields of a key line and the
//! SSH wire blob.

use base64::Engine as _;

use super::known_hosts::quote;
use super::{HostKey, BASE64_ANY_PADDING};

// ---------------------------------------------------------------------------
// Public keys

/// Parses the key type and base64 fields of a public key or `known_hosts` line.
pub(super) fn parse_key_fields(kind: &[u8], data: &[u8]) -> std::result::Result<HostKey, String> {
    let kind = std::str::from_utf8(kind)
        .ok()
        .filter(|k| valid_algorithm_name(k))
        .ok_or_else(|| format!("`{}` is not a key type", quote(kind)))?;
    let blob = BASE64_ANY_PADDING
        .decode(data)
        .map_err(|_| format!("the {kind} key data is not valid base64"))?;
    let key = parse_blob(&blob)?;
    // OpenSSH reads a line by key type, and RSA signature names are the same type.
    let same_type = key.algorithm == kind
        || (key.algorithm == "ssh-rsa" && matches!(kind, "rsa-sha2-256" | "rsa-sha2-512"));
    if !same_type {
        return Err(format!(
            "the key type field says {kind} but the key data is {}",
            key.algorithm
        ));
    }
    Ok(key)
}

pub(super) fn looks_like_key_type(field: &[u8]) -> bool {
    ["ssh-", "ecdsa-", "sk-", "rsa-"]
        .iter()
        .any(|p| field.starts_with(p.as_bytes()))
}

/// RFC 4251 §6: printable US-ASCII, no comma, at most 64 characters.
pub(super) fn valid_algorithm_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// Reads one SSH `string` (u32 big-endian length, then the bytes).
pub(super) fn read_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = buf.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if len > rest.len() {
        return None;
    }
    let (string, rest) = rest.split_at(len);
    *buf = rest;
    Some(string)
}

/// Checks a key's wire encoding and takes its type name from it.
pub(super) fn parse_blob(blob: &[u8]) -> std::result::Result<HostKey, String> {
    if blob.is_empty() {
        return Err("the key data is empty".to_owned());
    }
    let mut rest = blob;
    let algorithm = read_string(&mut rest)
        .and_then(|name| std::str::from_utf8(name).ok())
        .filter(|name| valid_algorithm_name(name))
        .ok_or("the key data does not start with a key type name")?;
    if algorithm.contains("-cert-v0") {
        return Err(format!(
            "{algorithm} is a certificate, not a plain public key: pin the key of the CA \
             that signed it (KnownHost::cert_authority, or an @cert-authority line in \
             known_hosts), or the host's own key"
        ));
    }
    if is_known_algorithm(algorithm) {
        // ssh-key decodes every type OpenSSH knows and checks its fields.
        ssh_key::PublicKey::from_bytes(blob)
            .map_err(|e| format!("malformed {algorithm} key data ({e})"))?;
    } else if rest.is_empty() {
        // A type we do not know: kept opaque, compared byte for byte.
        return Err(format!("the {algorithm} key data is truncated"));
    }
    Ok(HostKey {
        algorithm: algorithm.to_owned(),
        blob: blob.to_vec(),
    })
}

pub(super) fn is_known_algorithm(algorithm: &str) -> bool {
    matches!(
        algorithm,
        "ssh-ed25519"
            | "sk-ssh-ed25519@openssh.com"
            | "ecdsa-sha2-nistp256"
            | "ecdsa-sha2-nistp384"
            | "ecdsa-sha2-nistp521"
            | "sk-ecdsa-sha2-nistp256@openssh.com"
            | "ssh-rsa"
            | "ssh-dss"
    )
}
