//! The algorithms a session offers in the SSH handshake, in OpenSSH's
//! terms: [`AlgorithmFamily`], the lists this build of libssh2 has and the
//! defaults, and OpenSSH's list syntax (`+a,b` appends, `-a` removes, `^a`
//! puts first, `a,b` replaces), as `kex_assemble_names` in OpenSSH's
//! `kex-names.c` reads it.
//!
//! The list logic ([`assemble`], [`Legacy`]) is pure and unit-tested here;
//! what libssh2 has is asked once per process.

use std::fmt;
use std::sync::OnceLock;

use ssh2::MethodType;

/// A family of algorithms agreed in the SSH handshake, each set in
/// OpenSSH's list syntax with [`SessionBuilder::kex_algorithms`],
/// [`host_key_algorithms`](crate::SessionBuilder::host_key_algorithms),
/// [`ciphers`](crate::SessionBuilder::ciphers) and
/// [`macs`](crate::SessionBuilder::macs).
///
/// [`SessionBuilder::kex_algorithms`]: crate::SessionBuilder::kex_algorithms
///
/// ```
/// use etl_ssh::AlgorithmFamily;
///
/// let kex = AlgorithmFamily::Kex;
/// assert_eq!(kex.ssh_config_keyword(), "KexAlgorithms");
/// // SHA-1 key exchange is never offered unless asked for.
/// assert!(!kex.defaults().iter().any(|a| a.ends_with("-sha1")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlgorithmFamily {
    /// Key exchange (`KexAlgorithms`).
    Kex,
    /// Host key and signature algorithms (`HostKeyAlgorithms`).
    HostKey,
    /// Ciphers (`Ciphers`), the same list in both directions.
    Cipher,
    /// Message authentication codes (`MACs`), the same list in both
    /// directions.
    Mac,
}

/// The names libssh2 adds to every key exchange list by itself: they
/// announce extensions (RFC 8308, OpenSSH's strict key exchange), they
/// are not algorithms.
const KEX_PSEUDO: [&str; 4] = [
    "ext-info-c",
    "kex-strict-c-v00@openssh.com",
    "ext-info-s",
    "kex-strict-s-v00@openssh.com",
];

/// The CFLAGS that build libssh2 with the SHA-1 algorithms old servers
/// need (README, "Old servers").
pub(crate) const SHA1_CFLAGS: &str =
    "-DLIBSSH2_RSA_SHA1_ENABLE -DLIBSSH2_KEX_SHA1_ENABLE -DLIBSSH2_HMAC_SHA1_ENABLE";

/// A legacy algorithm libssh2 knows but leaves out unless built with the
/// macro that enables it; never offered by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Legacy {
    pub(crate) family: AlgorithmFamily,
    pub(crate) name: &'static str,
    /// The C macro that enables it in libssh2's build.
    pub(crate) flag: &'static str,
    /// A SHA-1 algorithm (the ones old servers need; see [`SHA1_CFLAGS`]).
    pub(crate) sha1: bool,
}

const fn legacy(
    family: AlgorithmFamily,
    name: &'static str,
    flag: &'static str,
    sha1: bool,
) -> Legacy {
    Legacy {
        family,
        name,
        flag,
        sha1,
    }
}

/// libssh2 1.11's legacy algorithms (`kex.c`, `hostkey.c`, `mac.c`,
/// `crypt.c`, `crypto_config.h`).
pub(crate) const LEGACY: [Legacy; 17] = {
    use AlgorithmFamily::{Cipher, HostKey, Kex, Mac};
    [
        legacy(
            Kex,
            "diffie-hellman-group14-sha1",
            "LIBSSH2_KEX_SHA1_ENABLE",
            true,
        ),
        legacy(
            Kex,
            "diffie-hellman-group-exchange-sha1",
            "LIBSSH2_KEX_SHA1_ENABLE",
            true,
        ),
        legacy(
            Kex,
            "diffie-hellman-group1-sha1",
            "LIBSSH2_KEX_SHA1_ENABLE",
            true,
        ),
        legacy(HostKey, "ssh-rsa", "LIBSSH2_RSA_SHA1_ENABLE", true),
        legacy(
            HostKey,
            "ssh-rsa-cert-v01@openssh.com",
            "LIBSSH2_RSA_SHA1_ENABLE",
            true,
        ),
        legacy(HostKey, "ssh-dss", "LIBSSH2_DSA_ENABLE", true),
        legacy(Mac, "hmac-sha1", "LIBSSH2_HMAC_SHA1_ENABLE", true),
        legacy(
            Mac,
            "hmac-sha1-etm@openssh.com",
            "LIBSSH2_HMAC_SHA1_ENABLE",
            true,
        ),
        legacy(Mac, "hmac-sha1-96", "LIBSSH2_HMAC_SHA1_ENABLE", true),
        legacy(Mac, "hmac-md5", "LIBSSH2_MD5_ENABLE", false),
        legacy(Mac, "hmac-md5-96", "LIBSSH2_MD5_ENABLE", false),
        legacy(Mac, "hmac-ripemd160", "LIBSSH2_HMAC_RIPEMD_ENABLE", false),
        legacy(
            Mac,
            "hmac-ripemd160@openssh.com",
            "LIBSSH2_HMAC_RIPEMD_ENABLE",
            false,
        ),
        legacy(Cipher, "blowfish-cbc", "LIBSSH2_BLOWFISH_ENABLE", false),
        legacy(Cipher, "cast128-cbc", "LIBSSH2_CAST_ENABLE", false),
        legacy(Cipher, "arcfour128", "LIBSSH2_RC4_ENABLE", false),
        legacy(Cipher, "arcfour", "LIBSSH2_RC4_ENABLE", false),
    ]
};

/// The legacy algorithm named `name` in `family`, if it is one.
pub(crate) fn find_legacy(family: AlgorithmFamily, name: &str) -> Option<&'static Legacy> {
    LEGACY.iter().find(|l| l.family == family && l.name == name)
}

impl AlgorithmFamily {
    /// The four families, in the order the handshake agrees them.
    pub const ALL: [AlgorithmFamily; 4] = [
        AlgorithmFamily::Kex,
        AlgorithmFamily::HostKey,
        AlgorithmFamily::Cipher,
        AlgorithmFamily::Mac,
    ];

    /// The `ssh_config` keyword that sets this list: `KexAlgorithms`,
    /// `HostKeyAlgorithms`, `Ciphers`, `MACs`.
    pub fn ssh_config_keyword(self) -> &'static str {
        match self {
            AlgorithmFamily::Kex => "KexAlgorithms",
            AlgorithmFamily::HostKey => "HostKeyAlgorithms",
            AlgorithmFamily::Cipher => "Ciphers",
            AlgorithmFamily::Mac => "MACs",
        }
    }

    /// The [`SessionBuilder`](crate::SessionBuilder) setter of this list.
    pub(crate) fn setter(self) -> &'static str {
        match self {
            AlgorithmFamily::Kex => "kex_algorithms",
            AlgorithmFamily::HostKey => "host_key_algorithms",
            AlgorithmFamily::Cipher => "ciphers",
            AlgorithmFamily::Mac => "macs",
        }
    }

    /// Every algorithm of this family that this build of libssh2 has, in
    /// libssh2's order of preference. Key exchange lists leave out the
    /// extension markers libssh2 adds by itself (`ext-info-c`,
    /// `kex-strict-c-v00@openssh.com`).
    pub fn supported(self) -> Vec<String> {
        supported(self).to_vec()
    }

    /// What a session offers when not told otherwise: [`supported`](Self::supported)
    /// without the legacy algorithms (SHA-1 key exchange, `ssh-rsa` and
    /// `ssh-dss` signatures, `hmac-sha1`, MD5 and RIPEMD MACs, Blowfish,
    /// CAST and RC4), even in a build that has them. Host key lists hold
    /// the certificate algorithms too; a session offers those only when a
    /// certificate authority is pinned.
    pub fn defaults(self) -> Vec<String> {
        defaults(self).to_vec()
    }

    /// libssh2's method types for this family (both directions for
    /// ciphers and MACs).
    pub(crate) fn method_types(self) -> &'static [MethodType] {
        match self {
            AlgorithmFamily::Kex => &[MethodType::Kex],
            AlgorithmFamily::HostKey => &[MethodType::HostKey],
            AlgorithmFamily::Cipher => &[MethodType::CryptCs, MethodType::CryptSc],
            AlgorithmFamily::Mac => &[MethodType::MacCs, MethodType::MacSc],
        }
    }
}

impl fmt::Display for AlgorithmFamily {
    /// `key exchange`, `host key`, `cipher`, `MAC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlgorithmFamily::Kex => "key exchange",
            AlgorithmFamily::HostKey => "host key",
            AlgorithmFamily::Cipher => "cipher",
            AlgorithmFamily::Mac => "MAC",
        })
    }
}

/// Whether this build of libssh2 has the SHA-1 algorithms old servers
/// need: `diffie-hellman-group14-sha1` (and the other SHA-1 key
/// exchanges), `ssh-rsa` host keys and `hmac-sha1`. The bundled libssh2
/// has them only when built with
/// `CFLAGS="-DLIBSSH2_RSA_SHA1_ENABLE -DLIBSSH2_KEX_SHA1_ENABLE -DLIBSSH2_HMAC_SHA1_ENABLE"`
/// (README, "Old servers"). Even then a session offers them only when
/// asked, e.g. with `.kex_algorithms("+diffie-hellman-group14-sha1")`.
///
/// ```
/// if !etl_ssh::has_sha1_algorithms() {
///     println!("this build cannot reach servers that offer only SHA-1 algorithms");
/// }
/// ```
pub fn has_sha1_algorithms() -> bool {
    let has = |family, name: &str| supported(family).iter().any(|a| a == name);
    has(AlgorithmFamily::Kex, "diffie-hellman-group14-sha1")
        && has(AlgorithmFamily::HostKey, "ssh-rsa")
        && has(AlgorithmFamily::Mac, "hmac-sha1")
}

/// What libssh2 has, asked once per process.
fn supported(family: AlgorithmFamily) -> &'static [String] {
    static LISTS: OnceLock<[Vec<String>; 4]> = OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        let session = ssh2::Session::new().ok();
        AlgorithmFamily::ALL.map(|family| {
            let Some(session) = &session else {
                return Vec::new();
            };
            let Some(&method) = family.method_types().first() else {
                return Vec::new();
            };
            session
                .supported_algs(method)
                .unwrap_or_default()
                .into_iter()
                .filter(|a| !is_kex_pseudo(a))
                .map(str::to_string)
                .collect()
        })
    });
    &lists[index(family)]
}

fn defaults(family: AlgorithmFamily) -> &'static [String] {
    static LISTS: OnceLock<[Vec<String>; 4]> = OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        AlgorithmFamily::ALL.map(|family| {
            supported(family)
                .iter()
                .filter(|a| find_legacy(family, a).is_none())
                .cloned()
                .collect()
        })
    });
    &lists[index(family)]
}

fn index(family: AlgorithmFamily) -> usize {
    match family {
        AlgorithmFamily::Kex => 0,
        AlgorithmFamily::HostKey => 1,
        AlgorithmFamily::Cipher => 2,
        AlgorithmFamily::Mac => 3,
    }
}

/// The algorithm lists of a session: what was asked for, per family, in
/// OpenSSH's syntax, applied in order to the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Algorithms {
    specs: [Vec<String>; 4],
}

/// One family's list, ready to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    /// The names, in order of preference.
    pub(crate) names: Vec<String>,
    /// Whether the caller chose the order (a replacing list or `^`): then
    /// the pinned host key types are not moved first.
    pub(crate) explicit_order: bool,
}

impl Algorithms {
    /// Adds a list in OpenSSH's syntax for `family`, applied after the
    /// ones given before.
    pub(crate) fn push(&mut self, family: AlgorithmFamily, spec: &str) {
        self.specs[index(family)].push(spec.to_string());
    }

    /// The list to offer for `family`: the defaults with every spec
    /// applied in turn.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a
    /// name no libssh2 knows or a list that leaves nothing;
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) for a
    /// legacy algorithm this build lacks (the message names the C macro
    /// that adds it).
    pub(crate) fn offer(&self, family: AlgorithmFamily) -> crate::Result<Offer> {
        let supported = supported(family);
        let mut known: Vec<String> = supported.to_vec();
        known.extend(
            LEGACY
                .iter()
                .filter(|l| l.family == family && !supported.iter().any(|s| s == l.name))
                .map(|l| l.name.to_string()),
        );
        let mut names = defaults(family).to_vec();
        let mut explicit_order = false;
        for spec in &self.specs[index(family)] {
            names = assemble(spec, &names, &known).map_err(|reason| {
                crate::Error::invalid(
                    "algorithm list",
                    format!(
                        "{family} algorithms `{spec}` ({}, ssh_config {}): {reason}",
                        family.setter(),
                        family.ssh_config_keyword()
                    ),
                )
            })?;
            explicit_order = !spec.starts_with(['+', '-']);
        }
        let missing: Vec<&Legacy> = names
            .iter()
            .filter(|n| !supported.contains(n))
            .filter_map(|n| find_legacy(family, n))
            .collect();
        if !missing.is_empty() {
            return Err(not_in_this_build(family, &missing));
        }
        Ok(Offer {
            names,
            explicit_order,
        })
    }
}

/// What a session offers in the handshake, one list per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offers {
    pub(crate) kex: Offer,
    pub(crate) host_key: Offer,
    pub(crate) cipher: Offer,
    pub(crate) mac: Offer,
}

impl Offers {
    /// Every family's list (see [`Algorithms::offer`]).
    ///
    /// # Errors
    ///
    /// As [`Algorithms::offer`].
    pub(crate) fn resolve(algorithms: &Algorithms) -> crate::Result<Offers> {
        Ok(Offers {
            kex: algorithms.offer(AlgorithmFamily::Kex)?,
            host_key: algorithms.offer(AlgorithmFamily::HostKey)?,
            cipher: algorithms.offer(AlgorithmFamily::Cipher)?,
            mac: algorithms.offer(AlgorithmFamily::Mac)?,
        })
    }

    /// The list of `family`.
    pub(crate) fn get(&self, family: AlgorithmFamily) -> &Offer {
        match family {
            AlgorithmFamily::Kex => &self.kex,
            AlgorithmFamily::HostKey => &self.host_key,
            AlgorithmFamily::Cipher => &self.cipher,
            AlgorithmFamily::Mac => &self.mac,
        }
    }

    /// Sets libssh2's preferences of `ssh` before the handshake: these
    /// lists, with `host_keys` (the host key list as ordered for the pins)
    /// in place of the host key offer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) when
    /// libssh2 takes none of a list.
    pub(crate) fn apply(&self, ssh: &ssh2::Session, host_keys: &[String]) -> crate::Result<()> {
        for family in AlgorithmFamily::ALL {
            let list = match family {
                AlgorithmFamily::HostKey => host_keys.join(","),
                other => self.get(other).names.join(","),
            };
            log::debug!("{family} algorithms offered: {list}");
            for &method in family.method_types() {
                ssh.method_pref(method, &list).map_err(|e| {
                    crate::Error::ssh(format!("cannot offer the {family} algorithms {list}"), e)
                })?;
            }
        }
        Ok(())
    }
}

/// The error for legacy algorithms asked for that this build lacks.
pub(crate) fn not_in_this_build(family: AlgorithmFamily, missing: &[&Legacy]) -> crate::Error {
    let names: Vec<&str> = missing.iter().map(|l| l.name).collect();
    crate::Error::Ssh {
        kind: crate::ErrorKind::Unsupported,
        context: format!(
            "{family} algorithm {} is not in this build of libssh2 (it needs {}): \
             build etl-ssh with {} (README, \"Old servers\")",
            names.join(", "),
            flags(missing).join(" "),
            build_recipe(missing)
        ),
        source: None,
    }
}

/// `CFLAGS="..."` that adds `legacy` to libssh2's build: the three SHA-1
/// macros for SHA-1 algorithms, else the macros they need.
pub(crate) fn build_recipe(legacy: &[&Legacy]) -> String {
    if legacy.iter().all(|l| l.sha1) {
        format!("CFLAGS=\"{SHA1_CFLAGS}\"")
    } else {
        format!("CFLAGS=\"{}\"", flags(legacy).join(" "))
    }
}

fn flags(legacy: &[&Legacy]) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    for l in legacy {
        let flag = format!("-D{}", l.flag);
        if !flags.contains(&flag) {
            flags.push(flag);
        }
    }
    flags
}

/// Applies one list in OpenSSH's syntax to `current` (OpenSSH's
/// `kex_assemble_names`): `+a,b` appends to it, `-a,b` removes from it,
/// `^a,b` puts in front of it, `a,b` replaces it. Names may be patterns
/// (`*`, `?`), matched against `known`; a plain name must be one of
/// `known`, except in a `-` list. Duplicates are dropped (the first
/// stays).
///
/// # Errors
///
/// The reason, for a name not in `known`, a `!` pattern, or a result
/// with nothing in it.
pub(crate) fn assemble(
    spec: &str,
    current: &[String],
    known: &[String],
) -> std::result::Result<Vec<String>, String> {
    let spec = spec.trim();
    let (mode, list) = match spec.chars().next() {
        Some(c @ ('+' | '-' | '^')) => (c, &spec[1..]),
        _ => (' ', spec),
    };
    let patterns: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.is_empty() {
        return Err("the list is empty".to_string());
    }
    if let Some(bad) = patterns.iter().find(|p| p.starts_with('!')) {
        return Err(format!("`{bad}`: negated patterns are not allowed here"));
    }
    if mode == '-' {
        let kept: Vec<String> = current
            .iter()
            .filter(|name| !patterns.iter().any(|p| wildcard_match(p, name)))
            .cloned()
            .collect();
        if kept.is_empty() {
            return Err("removing these leaves nothing to offer".to_string());
        }
        return Ok(kept);
    }
    let mut expanded: Vec<String> = Vec::new();
    for pattern in &patterns {
        let matching: Vec<&String> = known
            .iter()
            .filter(|name| wildcard_match(pattern, name))
            .collect();
        if matching.is_empty() && !pattern.contains(['*', '?']) {
            return Err(format!(
                "unknown algorithm `{pattern}`; known: {}",
                known.join(",")
            ));
        }
        push_unique(&mut expanded, matching.into_iter().cloned());
    }
    let mut out = Vec::new();
    match mode {
        '+' => {
            push_unique(&mut out, current.iter().cloned());
            push_unique(&mut out, expanded);
        }
        '^' => {
            push_unique(&mut out, expanded);
            push_unique(&mut out, current.iter().cloned());
        }
        _ => push_unique(&mut out, expanded),
    }
    if out.is_empty() {
        return Err("no known algorithm matches".to_string());
    }
    Ok(out)
}

fn push_unique(out: &mut Vec<String>, names: impl IntoIterator<Item = String>) {
    for name in names {
        if !out.contains(&name) {
            out.push(name);
        }
    }
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    crate::openssh_match::match_pattern(pattern.as_bytes(), name.as_bytes())
}

/// Whether `name` is an extension marker of a key exchange list, not an
/// algorithm.
pub(crate) fn is_kex_pseudo(name: &str) -> bool {
    KEX_PSEUDO.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const KNOWN: [&str; 5] = ["a-sha256", "b-sha512", "c-sha1", "d-sha1", "e"];

    #[test]
    fn append_remove_prepend_replace() {
        let known = v(&KNOWN);
        let current = v(&["a-sha256", "b-sha512"]);
        assert_eq!(
            assemble("+c-sha1", &current, &known),
            Ok(v(&["a-sha256", "b-sha512", "c-sha1"]))
        );
        assert_eq!(
            assemble("-a-sha256", &current, &known),
            Ok(v(&["b-sha512"]))
        );
        assert_eq!(
            assemble("^c-sha1,b-sha512", &current, &known),
            Ok(v(&["c-sha1", "b-sha512", "a-sha256"]))
        );
        assert_eq!(
            assemble("e, c-sha1", &current, &known),
            Ok(v(&["e", "c-sha1"]))
        );
    }

    #[test]
    fn patterns_expand_against_the_known_names() {
        let known = v(&KNOWN);
        let current = v(&["a-sha256"]);
        assert_eq!(
            assemble("+*-sha1", &current, &known),
            Ok(v(&["a-sha256", "c-sha1", "d-sha1"]))
        );
        assert_eq!(
            assemble("-*sha*", &v(&["a-sha256", "e"]), &known),
            Ok(v(&["e"]))
        );
        assert_eq!(
            assemble("?-sha1", &current, &known),
            Ok(v(&["c-sha1", "d-sha1"]))
        );
    }

    #[test]
    fn duplicates_keep_the_first() {
        let known = v(&KNOWN);
        assert_eq!(
            assemble("+a-sha256,e", &v(&["a-sha256"]), &known),
            Ok(v(&["a-sha256", "e"]))
        );
        assert_eq!(assemble("e,e", &[], &known), Ok(v(&["e"])));
    }

    #[test]
    fn bad_lists_say_why() {
        let known = v(&KNOWN);
        let current = v(&["a-sha256"]);
        let err = assemble("+nope", &current, &known).unwrap_err();
        assert!(err.contains("unknown algorithm `nope`"), "{err}");
        assert!(err.contains("a-sha256,b-sha512"), "{err}");
        assert!(assemble("", &current, &known)
            .unwrap_err()
            .contains("empty"));
        assert!(assemble("+", &current, &known)
            .unwrap_err()
            .contains("empty"));
        assert!(assemble("!e", &current, &known)
            .unwrap_err()
            .contains("negated"));
        assert!(assemble("-a-sha256", &current, &known)
            .unwrap_err()
            .contains("leaves nothing"));
        assert!(assemble("x*", &current, &known)
            .unwrap_err()
            .contains("no known algorithm"));
        // Removing a name that is not there is fine, as in OpenSSH.
        assert_eq!(assemble("-nope", &current, &known), Ok(current.clone()));
    }

    #[test]
    fn defaults_hold_no_legacy_algorithm_even_in_a_sha1_build() {
        for family in AlgorithmFamily::ALL {
            let defaults = family.defaults();
            assert!(!defaults.is_empty(), "{family}");
            for name in &defaults {
                assert!(find_legacy(family, name).is_none(), "{family}: {name}");
                assert!(!name.contains("sha1") && !name.contains("md5"), "{name}");
                assert!(!is_kex_pseudo(name), "{name}");
            }
            for name in &defaults {
                assert!(family.supported().contains(name), "{name}");
            }
        }
        assert!(!AlgorithmFamily::HostKey
            .defaults()
            .contains(&"ssh-rsa".to_string()));
    }

    #[test]
    fn the_sha1_opt_in_needs_the_build() {
        let mut algorithms = Algorithms::default();
        algorithms.push(AlgorithmFamily::Kex, "+diffie-hellman-group14-sha1");
        let result = algorithms.offer(AlgorithmFamily::Kex);
        if has_sha1_algorithms() {
            let offer = result.expect("offer");
            assert_eq!(
                offer.names.last().map(String::as_str),
                Some("diffie-hellman-group14-sha1")
            );
            assert!(!offer.explicit_order);
        } else {
            let err = result.expect_err("not in this build");
            assert_eq!(err.kind(), crate::ErrorKind::Unsupported);
            let text = err.to_string();
            assert!(text.contains("diffie-hellman-group14-sha1"), "{text}");
            assert!(text.contains("-DLIBSSH2_KEX_SHA1_ENABLE"), "{text}");
            assert!(text.contains(SHA1_CFLAGS), "{text}");
            assert!(text.contains("Old servers"), "{text}");
        }
    }

    #[test]
    fn specs_apply_in_turn_and_name_the_setter() {
        let mut algorithms = Algorithms::default();
        algorithms.push(AlgorithmFamily::Cipher, "aes256-ctr,aes128-ctr");
        algorithms.push(AlgorithmFamily::Cipher, "-aes128-ctr");
        let offer = algorithms.offer(AlgorithmFamily::Cipher).expect("offer");
        assert_eq!(offer.names, v(&["aes256-ctr"]));
        assert!(!offer.explicit_order, "the last spec was a removal");

        let mut bad = Algorithms::default();
        bad.push(AlgorithmFamily::Mac, "hmac-sha9");
        let err = bad.offer(AlgorithmFamily::Mac).expect_err("unknown");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        let text = err.to_string();
        assert!(text.contains("macs"), "{text}");
        assert!(text.contains("MACs"), "{text}");
        assert!(text.contains("hmac-sha9"), "{text}");
    }
}
