//! [`SshConfig`]: sessions from `Host` aliases in an OpenSSH client config
//! file, resolved as `ssh` resolves them (`ssh -G` prints the same values
//! for the keywords read here; the tests compare).
//!
//! A small parser of our own (`ssh_config/parse.rs`): the keywords a
//! session uses are few, and the parser crates we looked at had each got
//! OpenSSH's first-match rule wrong at some point. What is read: `Host`
//! blocks (patterns, `*`, `?`, `!` negation), `Match` blocks (`all`,
//! `host`, `originalhost`, `localuser`; other criteria are refused with an
//! error), `Include` (globs; relative paths from `~/.ssh`; each included
//! file within the block it is included from), `HostName`, `Port`, `User`,
//! `IdentityFile`, `CertificateFile`, `IdentitiesOnly`, `IdentityAgent`,
//! `ProxyJump` (chains in OpenSSH's order), `ProxyCommand` (refused when a
//! session is built: this crate runs no command to reach a server),
//! `HostKeyAlias`, `UserKnownHostsFile`, `GlobalKnownHostsFile`,
//! `ConnectTimeout`, `ServerAliveInterval`, `BindAddress`, and the
//! algorithm lists `KexAlgorithms`, `HostKeyAlgorithms`, `Ciphers`, `MACs`
//! (OpenSSH's syntax, applied to this crate's defaults as
//! [`SessionBuilder::kex_algorithms`] describes). For each keyword the
//! first value obtained wins, except `IdentityFile`, `CertificateFile` and
//! the known-hosts files, whose values accumulate in order. A value
//! OpenSSH refuses (a `Port` that is not a port number) is an error, as
//! in `ssh`; other keywords are ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Credential, Error, KeyPair, KnownHost, Result, Session, SessionBuilder};

mod parse;

use parse::{parse_hop, Entry, Subject};

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
    /// Settings in file order (included files in place), each with the
    /// blocks it stands in.
    entries: Vec<Entry>,
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
    /// `CertificateFile`s in order, `~` and `%` tokens expanded.
    pub certificate_files: Vec<PathBuf>,
    /// `IdentitiesOnly`: only the identity files, never an agent's keys.
    pub identities_only: bool,
    /// `IdentityAgent`, as written (a socket path, `SSH_AUTH_SOCK` or
    /// `none`), if set.
    pub identity_agent: Option<String>,
    /// `ProxyJump` as written: hops `[user@]host[:port]` separated by
    /// commas (the last is the one that reaches the server), or `None`
    /// (also for `none`, or when a `ProxyCommand` came first).
    pub proxy_jump: Option<String>,
    /// `ProxyCommand`, when it came before any `ProxyJump` and is not
    /// `none`. [`SshConfig::session_builder`] refuses it.
    pub proxy_command: Option<String>,
    /// `HostKeyAlias`, if set.
    pub host_key_alias: Option<String>,
    /// `UserKnownHostsFile`s, else `~/.ssh/known_hosts` and `~/.ssh/known_hosts2`.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`s, else `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`.
    pub global_known_hosts_files: Vec<PathBuf>,
    /// `ConnectTimeout`, if set (and not `none`).
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval`, if set (zero: no keepalives).
    pub server_alive_interval: Option<Duration>,
    /// `BindAddress`, as written, if set.
    pub bind_address: Option<String>,
    /// `KexAlgorithms`, as written (OpenSSH's list syntax), if set.
    pub kex_algorithms: Option<String>,
    /// `HostKeyAlgorithms`, as written, if set.
    pub host_key_algorithms: Option<String>,
    /// `Ciphers`, as written, if set.
    pub ciphers: Option<String>,
    /// `MACs`, as written, if set.
    pub macs: Option<String>,
}

/// Reads a config file after OpenSSH's owner and mode check.
fn read_config_file(path: &Path) -> Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let unreadable = |e| Error::io(format!("cannot read ssh config {}", path.display()), e);
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    check_config_owner_and_mode(path, meta.uid(), meta.mode())?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(unreadable)?;
    Ok(text)
}

impl SshConfig {
    /// Reads a config file, and the files it includes.
    ///
    /// Each file must be owned by the user we run as or by root, and not
    /// be writable by group or others: the rule OpenSSH applies to
    /// `~/.ssh/config` and its includes (`readconf.c`), applied here to
    /// every file read, since a job's config file is its `~/.ssh/config`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) and other I/O
    /// kinds when a file cannot be read;
    /// [`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied)
    /// ([`Error::InsecureFile`], naming the file and the `chmod go-w` or
    /// `chown` that fixes it) when it is writable by group or others or
    /// owned by another user; [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput),
    /// naming the file and line, for a value `ssh` refuses too (a `Port`
    /// that is not a port number, a `ProxyJump` that is not a list of
    /// hops) and for a `Match` criterion this crate does not evaluate.
    pub fn from_file(path: impl AsRef<Path>) -> Result<SshConfig> {
        let path = path.as_ref();
        let text = read_config_file(path)?;
        SshConfig::parse_named(&text, &path.display().to_string())
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

    /// Parses config text (an `Include` with a relative path reads from
    /// `~/.ssh`).
    ///
    /// # Errors
    ///
    /// As [`SshConfig::from_file`].
    pub fn parse(text: &str) -> Result<SshConfig> {
        SshConfig::parse_named(text, "ssh config")
    }

    fn parse_named(text: &str, origin: &str) -> Result<SshConfig> {
        Ok(SshConfig {
            entries: parse::parse(text, origin, &home())?,
        })
    }

    /// Resolves `alias` as `ssh alias` would (`ssh -G alias` shows the same
    /// values for the keywords read here): the entries are read in order,
    /// each applying when its `Host` and `Match` blocks hold (`Match host`
    /// against the host name as set so far), and the first value of each
    /// keyword wins.
    ///
    /// # Errors
    ///
    /// None today (the values were checked when the file was read); the
    /// `Result` leaves room for criteria that can fail when evaluated.
    pub fn resolve(&self, alias: &str) -> Result<HostConfig> {
        let local = local_user();
        let mut first: Vec<(&str, &Entry)> = Vec::new();
        let mut lists: Vec<&Entry> = Vec::new();
        let mut host_name = alias.to_string();
        for entry in &self.entries {
            let subject = Subject {
                alias,
                host_name: &host_name,
                local_user: &local,
            };
            if !entry.conditions.iter().all(|c| c.holds(&subject)) {
                continue;
            }
            let keyword = entry.keyword.as_str();
            if matches!(keyword, "identityfile" | "certificatefile") {
                lists.push(entry);
            } else if !first.iter().any(|(k, _)| *k == keyword) {
                // ProxyJump and ProxyCommand: whichever comes first.
                let proxy = matches!(keyword, "proxyjump" | "proxycommand");
                if !(proxy
                    && first
                        .iter()
                        .any(|(k, _)| matches!(*k, "proxyjump" | "proxycommand")))
                {
                    first.push((keyword, entry));
                }
                if keyword == "hostname" {
                    if let Some(name) = entry.args.first() {
                        host_name = expand(name, alias, None);
                    }
                }
            }
        }
        let value = |keyword: &str| -> Option<String> {
            first
                .iter()
                .find(|(k, _)| *k == keyword)
                .and_then(|(_, e)| e.args.first().cloned())
        };
        let values = |keyword: &str| -> Option<Vec<String>> {
            first
                .iter()
                .find(|(k, _)| *k == keyword)
                .map(|(_, e)| e.args.clone())
        };
        let user = value("user");
        let expanded = |f: &String| PathBuf::from(expand(f, &host_name, user.as_deref()));
        let list = |keyword: &str| -> Vec<PathBuf> {
            lists
                .iter()
                .filter(|e| e.keyword == keyword)
                .flat_map(|e| e.args.iter().map(expanded))
                .collect()
        };
        let path_list = |keyword: &str, defaults: &[PathBuf]| -> Vec<PathBuf> {
            match values(keyword) {
                Some(files) if files.iter().any(|f| f.eq_ignore_ascii_case("none")) => Vec::new(),
                Some(files) => files.iter().map(expanded).collect(),
                None => defaults.to_vec(),
            }
        };
        let seconds = |keyword: &str| {
            value(keyword)
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs)
        };
        let ssh_dir = home().join(".ssh");
        Ok(HostConfig {
            alias: alias.to_string(),
            port: value("port").and_then(|p| p.parse().ok()).unwrap_or(22),
            identity_files: list("identityfile"),
            certificate_files: list("certificatefile"),
            identities_only: value("identitiesonly").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            identity_agent: value("identityagent"),
            proxy_jump: value("proxyjump").filter(|j| !j.eq_ignore_ascii_case("none")),
            proxy_command: values("proxycommand")
                .map(|args| args.join(" "))
                .filter(|c| !c.eq_ignore_ascii_case("none")),
            host_key_alias: value("hostkeyalias"),
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
            connect_timeout: seconds("connecttimeout"),
            server_alive_interval: seconds("serveraliveinterval"),
            bind_address: value("bindaddress"),
            kex_algorithms: value("kexalgorithms"),
            host_key_algorithms: value("hostkeyalgorithms"),
            ciphers: value("ciphers"),
            macs: value("macs"),
            user,
            host_name,
        })
    }

    /// A [`SessionBuilder`] for `alias`: host name, port, user, identity
    /// files (the ones that exist, tried in order; OpenSSH's default key
    /// files when none is named) with their certificates
    /// (`CertificateFile`, matched to the identity whose key it
    /// certifies), or the ssh-agent (`IdentityAgent`, else
    /// `SSH_AUTH_SOCK`) when no identity file exists and `IdentitiesOnly`
    /// is off; known-hosts files (the ones that exist), host key alias,
    /// connect timeout, keepalive interval (`ServerAliveInterval`), source
    /// address (`BindAddress`), the algorithm lists, and the `ProxyJump`
    /// chain: for `ProxyJump a,b` the session goes through `b`, reached
    /// through `a`, as OpenSSH's `parse_jump` reads it; each hop is itself
    /// resolved through this config.
    ///
    /// Give another credential or more pins on the returned builder as for
    /// any other (an encrypted key needs
    /// [`SessionBuilder::credential`] with a passphrase).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) for a
    /// `ProxyCommand` (this crate runs no command to reach a server: use
    /// `ProxyJump`, or [`SessionBuilder::http_proxy`] for an HTTP proxy);
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when a
    /// `ProxyJump` loops back on itself or `BindAddress` is not an IP
    /// address.
    pub fn session_builder(&self, alias: &str) -> Result<SessionBuilder> {
        self.builder_for(alias, None, &mut Vec::new())
    }

    /// The builder for `alias`; `jump`, when given, replaces the alias's
    /// own `ProxyJump` (as `ssh -J` does for the hops of a chain).
    fn builder_for(
        &self,
        alias: &str,
        jump: Option<&str>,
        seen: &mut Vec<String>,
    ) -> Result<SessionBuilder> {
        if seen.iter().any(|s| s == alias) {
            return Err(Error::invalid(
                "ssh config",
                format!("ProxyJump loops back to {alias}"),
            ));
        }
        seen.push(alias.to_string());
        let host = self.resolve(alias)?;
        let jump = match jump {
            Some(chain) => Some(chain.to_string()),
            None => {
                if let Some(command) = &host.proxy_command {
                    return Err(Error::Ssh {
                        kind: crate::ErrorKind::Unsupported,
                        context: format!(
                            "ssh config: {alias} has `ProxyCommand {command}`, which etl-ssh \
                             does not run (it runs no command to reach a server); use \
                             ProxyJump for a bastion, or SessionBuilder::http_proxy for an \
                             HTTP proxy"
                        ),
                        source: None,
                    });
                }
                host.proxy_jump.clone()
            }
        };
        let mut builder = Session::builder(&host.host_name)
            .port(host.port)
            .credential(credential_for(&host)?);
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
        if let Some(interval) = host.server_alive_interval {
            builder = builder.keepalive(interval);
        }
        if let Some(address) = &host.bind_address {
            let ip: IpAddr = address.parse().map_err(|_| {
                Error::invalid(
                    "ssh config",
                    format!(
                        "{alias}: BindAddress `{address}` is not an IP address (etl-ssh binds \
                         to an address, not a name)"
                    ),
                )
            })?;
            builder = builder.bind_address(ip);
        }
        if let Some(list) = &host.kex_algorithms {
            builder = builder.kex_algorithms(list);
        }
        if let Some(list) = &host.host_key_algorithms {
            builder = builder.host_key_algorithms(list);
        }
        if let Some(list) = &host.ciphers {
            builder = builder.ciphers(list);
        }
        if let Some(list) = &host.macs {
            builder = builder.macs(list);
        }
        if let Some(chain) = jump {
            // OpenSSH's parse_jump: the last hop reaches the server; the
            // hops before it are that hop's own ProxyJump.
            let (before, last) = match chain.rsplit_once(',') {
                Some((before, last)) => (Some(before), last),
                None => (None, chain.as_str()),
            };
            let hop = parse_hop(last).map_err(|why| {
                Error::invalid("ssh config", format!("{alias}: ProxyJump `{chain}`: {why}"))
            })?;
            let mut via = self.builder_for(&hop.host, before, seen)?;
            if let Some(port) = hop.port {
                via = via.port(port);
            }
            if let Some(user) = hop.user {
                via = via.user(user);
            }
            builder = builder.jump_via(via);
        }
        Ok(builder)
    }
}

/// The credential for a resolved host: its identity files (with their
/// certificates), or the agent when none exists and the config allows it.
fn credential_for(host: &HostConfig) -> Result<Credential> {
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
    let mut keys: Vec<KeyPair> = identity_files
        .iter()
        .filter(|f| f.is_file())
        .map(KeyPair::file)
        .collect();
    if keys.is_empty() && !host.identities_only {
        let agent = match host.identity_agent.as_deref() {
            Some(a) if a.eq_ignore_ascii_case("none") => None,
            Some("SSH_AUTH_SOCK") | None => std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(|_| Credential::agent(&user)),
            Some(path) => Some(Credential::agent_at(
                &user,
                expand(path, &host.host_name, host.user.as_deref()),
            )),
        };
        if let Some(agent) = agent {
            return Ok(agent);
        }
    }
    for cert in &host.certificate_files {
        let Some(certified) = certified_key(cert) else {
            log::warn!(
                "ssh config: CertificateFile {} cannot be read as a certificate; not offered",
                cert.display()
            );
            continue;
        };
        match keys
            .iter()
            .position(|k| k.public_key().is_ok_and(|line| same_key(&line, &certified)))
        {
            Some(index) => keys[index] = keys[index].clone().with_certificate(cert),
            None => log::warn!(
                "ssh config: CertificateFile {} certifies none of the identity files; not \
                 offered",
                cert.display()
            ),
        }
    }
    Ok(Credential::key_pairs(user, keys))
}

/// The key a certificate file (`...-cert.pub`) certifies, as `type base64`.
fn certified_key(path: &Path) -> Option<String> {
    let line = std::fs::read_to_string(path).ok()?;
    let mut fields = line.split_whitespace();
    let (_, data) = (fields.next()?, fields.next()?);
    crate::known_host::certified_key(data)
}

/// Whether two `type base64 [comment]` lines hold the same key.
fn same_key(a: &str, b: &str) -> bool {
    let key = |line: &str| {
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    key(a) == key(b)
}

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
        let config = SshConfig::parse(CONFIG).expect("parses");
        let h = config.resolve("partner-sftp").expect("resolves");
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
        let config = SshConfig::parse(CONFIG).expect("parses");
        let h = config.resolve("db.partner.example").expect("resolves");
        assert_eq!(h.user.as_deref(), Some("partner-user"));
        assert_eq!(h.port, 2022);
        assert_eq!(h.connect_timeout, Some(Duration::from_secs(7)));
        let h = config.resolve("legacy.partner.example").expect("resolves");
        assert_eq!(h.user.as_deref(), Some("fallback"));
        assert_eq!(h.connect_timeout, None);
        let h = config.resolve("unknown").expect("resolves");
        assert_eq!(h.host_name, "unknown");
        assert!(h.proxy_jump.is_none());
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
        let config =
            SshConfig::parse("Host a\n ProxyJump b\nHost b\n ProxyJump a\n").expect("parses");
        let err = config.session_builder("a").expect_err("loop");
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    }
}
