//! [`SshConfig`]: sessions from `Host` aliases in an OpenSSH client config
//! file, resolved as `ssh` resolves them.
//!
//! A small parser of our own: the keywords a session uses are few, and the
//! parser crates we looked at had each got OpenSSH's first-match rule wrong
//! at some point. What is read: `Host` sections (patterns, `*`, `?`, `!`
//! negation), `HostName`, `Port`, `User`, `IdentityFile`, `ProxyJump`,
//! `HostKeyAlias`, `UserKnownHostsFile`, `GlobalKnownHostsFile`,
//! `ConnectTimeout`. For each keyword the first value obtained wins, except
//! `IdentityFile` and the known-hosts files, whose values accumulate in
//! order. `Match` sections and `Include` are not followed (a warning is
//! logged); other keywords are ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Credential, Error, KeyPair, KnownHost, Result, Session, SessionBuilder};

/// An OpenSSH client configuration (`~/.ssh/config` or another file).
///
/// ```no_run
/// use etl_ssh::SshConfig;
///
/// # fn main() -> Result<(), etl_ssh::Error> {
/// let config = SshConfig::from_file("/etc/etl/ssh_config")?;
/// let session = config.session_builder("partner-sftp")?.connect()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    /// Settings in file order, each tagged with the `Host` patterns of its section.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None` before the first `Host` line (applies to every host); for a
    /// `Match` section, an empty list (applies to none).
    patterns: Option<Vec<String>>,
    keyword: String,
    args: Vec<String>,
}

/// What [`SshConfig::resolve`] found for one alias.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostConfig {
    /// The alias as given.
    pub alias: String,
    /// The host to connect to: `HostName`, else the alias.
    pub host_name: String,
    /// `Port`, else 22.
    pub port: u16,
    /// `User`, if set.
    pub user: Option<String>,
    /// `IdentityFile`s in order, `~` and `%` tokens expanded.
    pub identity_files: Vec<PathBuf>,
    /// `ProxyJump`: `[user@]host[:port]`, or `None` (also for `none`).
    pub proxy_jump: Option<String>,
    /// `HostKeyAlias`, if set.
    pub host_key_alias: Option<String>,
    /// `UserKnownHostsFile`s, else `~/.ssh/known_hosts` and `~/.ssh/known_hosts2`.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`s, else `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`.
    pub global_known_hosts_files: Vec<PathBuf>,
    /// `ConnectTimeout`, if set.
    pub connect_timeout: Option<Duration>,
}

impl SshConfig {
    /// Reads a config file.
    ///
    /// The file must be owned by the user we run as or by root, and not be
    /// writable by group or others: the rule OpenSSH applies to
    /// `~/.ssh/config` (`readconf.c`), applied here to every file read, since
    /// a job's config file is its `~/.ssh/config`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) and other I/O
    /// kinds when the file cannot be read;
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied)
    /// ([`Error::InsecureFile`], naming the file and the `chmod go-w` or
    /// `chown` that fixes it) when it is writable by group or others or
    /// owned by another user. Malformed lines are skipped with a warning, as
    /// `ssh` would refuse them but a job should not stop for a line about
    /// another host.
    pub fn from_file(path: impl AsRef<Path>) -> Result<SshConfig> {
        use std::io::Read as _;
        use std::os::unix::fs::MetadataExt as _;
        let path = path.as_ref();
        let unreadable = |e| Error::io(format!("cannot read ssh config {}", path.display()), e);
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        check_config_owner_and_mode(path, meta.uid(), meta.mode())?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(unreadable)?;
        Ok(SshConfig::parse(&text))
    }

    /// The user's `~/.ssh/config`; an empty config when there is none.
    ///
    /// # Errors
    ///
    /// As [`SshConfig::from_file`], except that a missing file is no error.
    pub fn user_default() -> Result<SshConfig> {
        let path = home().join(".ssh").join("config");
        if path.exists() {
            SshConfig::from_file(path)
        } else {
            Ok(SshConfig::default())
        }
    }

    /// Parses config text.
    pub fn parse(text: &str) -> SshConfig {
        let mut entries = Vec::new();
        let mut patterns: Option<Vec<String>> = None;
        for (number, line) in text.lines().enumerate() {
            let Some((keyword, args)) = split_line(line) else {
                continue;
            };
            match keyword.as_str() {
                "host" => patterns = Some(args),
                "match" => {
                    log::warn!(
                        "ssh config line {}: `Match` sections are not supported; skipped",
                        number + 1
                    );
                    patterns = Some(Vec::new());
                }
                "include" => {
                    log::warn!("ssh config line {}: `Include` is not followed", number + 1)
                }
                _ if args.is_empty() => log::warn!(
                    "ssh config line {}: `{keyword}` has no value; skipped",
                    number + 1
                ),
                _ => entries.push(Entry {
                    patterns: patterns.clone(),
                    keyword,
                    args,
                }),
            }
        }
        SshConfig { entries }
    }

    /// Resolves `alias` as `ssh alias` would (`ssh -G alias` shows the same
    /// values for the keywords read here).
    pub fn resolve(&self, alias: &str) -> HostConfig {
        let applies = |e: &&Entry| match &e.patterns {
            None => true,
            Some(p) => host_matches(p, alias),
        };
        let first = |keyword: &str| {
            self.entries
                .iter()
                .filter(applies)
                .find(|e| e.keyword == keyword)
                .map(|e| e.args.clone())
        };
        let all = |keyword: &str| -> Vec<String> {
            self.entries
                .iter()
                .filter(applies)
                .filter(|e| e.keyword == keyword)
                .flat_map(|e| e.args.clone())
                .collect()
        };
        let host_name = first("hostname")
            .and_then(|a| a.into_iter().next())
            .map_or_else(|| alias.to_string(), |h| expand(&h, alias, None));
        let user = first("user").and_then(|a| a.into_iter().next());
        let port = first("port")
            .and_then(|a| a.into_iter().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(22);
        let path_list = |keyword: &str, defaults: &[PathBuf]| -> Vec<PathBuf> {
            match first(keyword) {
                Some(files) if files.iter().any(|f| f.eq_ignore_ascii_case("none")) => Vec::new(),
                Some(files) => files
                    .iter()
                    .map(|f| PathBuf::from(expand(f, &host_name, user.as_deref())))
                    .collect(),
                None => defaults.to_vec(),
            }
        };
        let ssh_dir = home().join(".ssh");
        HostConfig {
            alias: alias.to_string(),
            port,
            identity_files: all("identityfile")
                .iter()
                .map(|f| PathBuf::from(expand(f, &host_name, user.as_deref())))
                .collect(),
            proxy_jump: first("proxyjump")
                .and_then(|a| a.into_iter().next())
                .filter(|j| !j.eq_ignore_ascii_case("none")),
            host_key_alias: first("hostkeyalias").and_then(|a| a.into_iter().next()),
            user_known_hosts_files: path_list(
                "userknownhostsfile",
                &[ssh_dir.join("known_hosts"), ssh_dir.join("known_hosts2")],
            ),
            global_known_hosts_files: path_list(
                "globalknownhostsfile",
                &[
                    PathBuf::from("/etc/ssh/ssh_known_hosts"),
                    PathBuf::from("/etc/ssh/ssh_known_hosts2"),
                ],
            ),
            connect_timeout: first("connecttimeout")
                .and_then(|a| a.into_iter().next())
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs),
            user,
            host_name,
        }
    }

    /// A [`SessionBuilder`] for `alias`: host name, port, user, identity
    /// files (the ones that exist, tried in order; OpenSSH's default key
    /// files when none is named), known-hosts files (the ones that exist),
    /// host key alias, connect timeout, and the `ProxyJump` hop, which is
    /// itself resolved through this config and connected first.
    ///
    /// Give another credential or more pins on the returned builder as for
    /// any other (an encrypted key needs
    /// [`SessionBuilder::credential`] with a passphrase).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when the
    /// `ProxyJump` value is malformed or loops back on itself.
    pub fn session_builder(&self, alias: &str) -> Result<SessionBuilder> {
        self.builder_for(alias, &mut Vec::new())
    }

    fn builder_for(&self, alias: &str, seen: &mut Vec<String>) -> Result<SessionBuilder> {
        if seen.iter().any(|s| s == alias) {
            return Err(Error::invalid(
                "ssh config",
                format!("ProxyJump loops back to {alias}"),
            ));
        }
        seen.push(alias.to_string());
        let host = self.resolve(alias);
        let user = host.user.clone().unwrap_or_else(local_user);
        let identity_files = if host.identity_files.is_empty() {
            // OpenSSH's default identities, in its order, that libssh2 can use.
            ["id_rsa", "id_ecdsa", "id_ed25519"]
                .iter()
                .map(|f| home().join(".ssh").join(f))
                .collect()
        } else {
            host.identity_files.clone()
        };
        let keys: Vec<KeyPair> = identity_files
            .iter()
            .filter(|f| f.is_file())
            .map(KeyPair::file)
            .collect();
        let mut builder = Session::builder(&host.host_name)
            .port(host.port)
            .credential(Credential::key_pairs(user, keys));
        for file in host
            .user_known_hosts_files
            .iter()
            .chain(&host.global_known_hosts_files)
            .filter(|f| f.is_file())
        {
            builder = builder.known_host(KnownHost::known_hosts_file(file));
        }
        if let Some(alias) = &host.host_key_alias {
            builder = builder.host_key_alias(alias);
        }
        if let Some(timeout) = host.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(jump) = &host.proxy_jump {
            // Only the first hop of a chain is ours to open; the others are
            // resolved by that hop's own config entry, as ssh does.
            let first_hop = jump.split(',').next().unwrap_or_default();
            let (jump_user, rest) = match first_hop.rsplit_once('@') {
                Some((u, r)) => (Some(u), r),
                None => (None, first_hop),
            };
            let (jump_alias, jump_port) = split_host_port(rest).ok_or_else(|| {
                Error::invalid("ssh config", format!("ProxyJump `{jump}` is malformed"))
            })?;
            let mut hop = self.builder_for(jump_alias, seen)?;
            if let Some(port) = jump_port {
                hop = hop.port(port);
            }
            if let Some(user) = jump_user {
                hop = hop.user(user);
            }
            builder = builder.jump_via(hop);
        }
        Ok(builder)
    }
}

/// `host`, `host:port` or `[v6]:port`.
/// OpenSSH's check on the user's config file (`readconf.c`): owned by us or
/// by root, and `mode & 022 == 0`.
fn check_config_owner_and_mode(path: &Path, owner: u32, mode: u32) -> Result<()> {
    let us = rustix::process::getuid().as_raw();
    let bad_owner = owner != 0 && owner != us;
    let writable = mode & 0o022 != 0;
    if !bad_owner && !writable {
        return Ok(());
    }
    let file = path.display();
    let mut reasons = Vec::new();
    let mut fixes = Vec::new();
    if bad_owner {
        reasons.push(format!(
            "it is owned by uid {owner}, neither us (uid {us}) nor root"
        ));
        fixes.push(format!("chown {us} {file}"));
    }
    if writable {
        reasons.push(format!(
            "its mode {:04o} lets group or others write it",
            mode & 0o7777
        ));
        fixes.push(format!("chmod go-w {file}"));
    }
    Err(Error::InsecureFile {
        what: "ssh config",
        path: path.to_path_buf(),
        reason: format!("{} (OpenSSH refuses it too)", reasons.join(", and ")),
        fix: fixes.join(" && "),
    })
}

fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match text.split_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None if text.is_empty() => None,
        None => Some((text, None)),
    }
}

/// Keyword (lower-cased) and arguments of a config line; `None` for blank
/// lines and comments. Arguments may be double-quoted; `keyword=value` is
/// allowed.
fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let split = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(split);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                arg.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }
    Some((keyword.to_ascii_lowercase(), args))
}

/// OpenSSH's `Host` matching: any negated match excludes; else any match.
fn host_matches(patterns: &[String], alias: &str) -> bool {
    let alias = alias.to_ascii_lowercase();
    let mut matched = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        if glob(&pattern.to_ascii_lowercase(), &alias) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `*` and `?` globbing.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star) = (0, 0, None);
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Expands `~/` and the tokens `%h` (host name), `%r` (remote user), `%u`
/// (local user), `%d` (home directory) and `%%`.
fn expand(value: &str, host: &str, remote_user: Option<&str>) -> String {
    let home = home();
    let value = match value.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", home.display()),
        None => value.to_string(),
    };
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(&remote_user.map_or_else(local_user, str::to_string)),
            Some('u') => out.push_str(&local_user()),
            Some('d') => out.push_str(&home.display().to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_owner_and_mode_as_openssh_checks_them() {
        let us = rustix::process::getuid().as_raw();
        let path = Path::new("/etc/etl/ssh_config");
        for (owner, mode) in [(us, 0o100644), (us, 0o600), (0, 0o644), (0, 0o444)] {
            assert!(
                check_config_owner_and_mode(path, owner, mode).is_ok(),
                "{owner} {mode:o}"
            );
        }
        for (mode, bits) in [(0o100664, "0664"), (0o646, "0646"), (0o620, "0620")] {
            let err = check_config_owner_and_mode(path, us, mode).expect_err("writable");
            assert_eq!(err.kind(), crate::ErrorKind::PermissionDenied);
            let text = err.to_string();
            assert!(text.contains(bits), "{text}");
            assert!(text.contains("chmod go-w /etc/etl/ssh_config"), "{text}");
        }
        let stranger = if us == 4_000_000_001 {
            4_000_000_002
        } else {
            4_000_000_001
        };
        let err = check_config_owner_and_mode(path, stranger, 0o666).expect_err("owner");
        let text = err.to_string();
        assert!(text.contains(&format!("owned by uid {stranger}")), "{text}");
        assert!(
            text.contains(&format!("chown {us} /etc/etl/ssh_config && chmod go-w")),
            "{text}"
        );
    }

    const CONFIG: &str = r#"
# defaults at the end, specific hosts first, as ssh_config(5) advises
Host partner-sftp
    HostName sftp.partner.example
    Port 2222
    User etl
    IdentityFile ~/keys/new
    IdentityFile=~/keys/old
    HostKeyAlias partner
    ProxyJump bastion

Host *.partner.example !legacy.partner.example
    User partner-user
    ConnectTimeout 7

Host "quoted host"
    Port 2200

Host *
    User fallback
    Port 2022
    UserKnownHostsFile /etc/etl/known_hosts "/etc/etl/other hosts"
"#;

    #[test]
    fn first_value_wins_and_identities_accumulate() {
        let config = SshConfig::parse(CONFIG);
        let h = config.resolve("partner-sftp");
        assert_eq!(h.host_name, "sftp.partner.example");
        assert_eq!(h.port, 2222);
        assert_eq!(h.user.as_deref(), Some("etl"));
        assert_eq!(h.identity_files.len(), 2);
        assert!(h.identity_files[0].ends_with("keys/new"));
        assert!(h.identity_files[1].ends_with("keys/old"));
        assert_eq!(h.host_key_alias.as_deref(), Some("partner"));
        assert_eq!(h.proxy_jump.as_deref(), Some("bastion"));
        assert_eq!(
            h.user_known_hosts_files,
            [
                PathBuf::from("/etc/etl/known_hosts"),
                PathBuf::from("/etc/etl/other hosts")
            ]
        );
    }

    #[test]
    fn patterns_negation_and_defaults() {
        let config = SshConfig::parse(CONFIG);
        let h = config.resolve("db.partner.example");
        assert_eq!(h.user.as_deref(), Some("partner-user"));
        assert_eq!(h.port, 2022);
        assert_eq!(h.connect_timeout, Some(Duration::from_secs(7)));
        let h = config.resolve("legacy.partner.example");
        assert_eq!(h.user.as_deref(), Some("fallback"));
        assert_eq!(h.connect_timeout, None);
        let h = config.resolve("unknown");
        assert_eq!(h.host_name, "unknown");
        assert!(h.proxy_jump.is_none());
    }

    #[test]
    fn split_line_handles_equals_and_quotes() {
        assert_eq!(
            split_line("  IdentityFile=\"/a b/c\"  "),
            Some(("identityfile".into(), vec!["/a b/c".into()]))
        );
        assert_eq!(
            split_line("Host a b"),
            Some(("host".into(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(split_line("# comment"), None);
        assert_eq!(split_line("   "), None);
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("bastion"), Some(("bastion", None)));
        assert_eq!(
            split_host_port("bastion:2222"),
            Some(("bastion", Some(2222)))
        );
        assert_eq!(split_host_port("[::1]:22"), Some(("::1", Some(22))));
        assert_eq!(split_host_port("bastion:x"), None);
        assert_eq!(split_host_port(""), None);
    }

    #[test]
    fn tokens_expand() {
        assert_eq!(
            expand("/k/%h-%r", "h.example", Some("etl")),
            "/k/h.example-etl"
        );
        assert_eq!(expand("100%%", "h", None), "100%");
    }

    #[test]
    fn proxy_jump_loop_is_an_error() {
        let config = SshConfig::parse("Host a\n ProxyJump b\nHost b\n ProxyJump a\n");
        let err = config.session_builder("a").expect_err("loop");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    }
}
