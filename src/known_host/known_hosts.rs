//! `known_hosts` lines and OpenSSH's host matching.

use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use ssh_key::known_hosts::HostPatterns;

use super::keys::parse_key_fields;
use super::{HostKey, DEFAULT_PORT, QUOTE_MAX};

// ---------------------------------------------------------------------------
// known_hosts lines

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    CertAuthority,
    Revoked,
}

#[derive(Debug)]
pub(super) struct KnownHostsEntry {
    pub(super) marker: Option<Marker>,
    pub(super) hosts: HostPatterns,
    pub(super) key: HostKey,
}

/// Splits off the next field separated by spaces or tabs.
pub(super) fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = rest.iter().position(|b| !is_blank(b))?;
    let tail = rest.get(start..)?;
    let end = tail.iter().position(is_blank).unwrap_or(tail.len());
    let (field, tail) = tail.split_at(end);
    *rest = tail;
    Some(field)
}

/// `Ok(None)` for a blank or comment line; `Err(reason)` for a malformed one.
///
/// The reason never quotes more than a few bytes of the line.
pub(super) fn parse_known_hosts_line(
    line: &[u8],
) -> std::result::Result<Option<KnownHostsEntry>, String> {
    let mut rest = line;
    let Some(mut first) = next_field(&mut rest) else {
        return Ok(None);
    };
    if first.starts_with(b"#") {
        return Ok(None);
    }
    let marker = if first.starts_with(b"@") {
        let marker = match first {
            b"@cert-authority" => Marker::CertAuthority,
            b"@revoked" => Marker::Revoked,
            other => return Err(format!("unknown marker `{}`", quote(other))),
        };
        first = next_field(&mut rest).ok_or("there is nothing after the marker")?;
        Some(marker)
    } else {
        None
    };
    let hosts = std::str::from_utf8(first)
        .ok()
        .and_then(|text| HostPatterns::from_str(text).ok())
        .ok_or_else(|| {
            if first.starts_with(b"|1|") {
                "malformed hashed host name".to_owned()
            } else {
                format!("malformed host names `{}`", quote(first))
            }
        })?;
    let kind = next_field(&mut rest).ok_or("there is no key after the host names")?;
    let data = next_field(&mut rest).ok_or("there is no key data after the key type")?;
    let key = parse_key_fields(kind, data)?;
    Ok(Some(KnownHostsEntry { marker, hosts, key }))
}

/// The name `known_hosts` lines are matched against, as OpenSSH's `put_host_port`
/// makes it: `host` for port 22, `[host]:port` otherwise; lower-cased.
pub(super) fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == DEFAULT_PORT {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

pub(super) fn hosts_match(hosts: &HostPatterns, lookup: &str) -> bool {
    match hosts {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(salt) else {
                return false;
            };
            mac.update(lookup.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => {
            // OpenSSH's match_pattern_list: any negated match excludes the line.
            let mut positive = false;
            for pattern in patterns {
                let (negated, pattern) = match pattern.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, pattern.as_str()),
                };
                if glob_match(pattern.as_bytes(), lookup.as_bytes()) {
                    if negated {
                        return false;
                    }
                    positive = true;
                }
            }
            positive
        }
    }
}

/// `*` matches any run of bytes, `?` exactly one; other bytes match
/// ASCII-case-insensitively (`text` is already lower-case). No backtracking
/// blow-up on long patterns.
pub(super) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    crate::openssh_match::match_pattern(&pattern.to_ascii_lowercase(), text)
}

/// A short, printable excerpt of user input for a message.
pub(super) fn quote(bytes: &[u8]) -> String {
    if bytes.len() <= QUOTE_MAX {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        let head = bytes.get(..QUOTE_MAX).unwrap_or_default();
        format!(
            "{}... ({} bytes)",
            String::from_utf8_lossy(head),
            bytes.len()
        )
    }
}
