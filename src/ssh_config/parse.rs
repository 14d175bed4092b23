//! Reading an OpenSSH client config as `readconf.c` does: lines, `Host`
//! and `Match` blocks, `Include` (globs, relative to `~/.ssh`, each file
//! within the block it is included from), and the values OpenSSH refuses
//! wherever they stand (a `Port` that is not a port number, say).

use std::path::{Path, PathBuf};

use crate::openssh_match::match_pattern;
use crate::{Error, Result};

/// OpenSSH's `READCONF_MAX_DEPTH`.
const MAX_DEPTH: usize = 16;

/// One setting, with the conditions under which it applies (all must
/// hold).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) conditions: Vec<Condition>,
    pub(super) keyword: String,
    pub(super) args: Vec<String>,
}

/// A block a setting stands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    /// `Host` patterns, matched against the alias as given.
    Host(Vec<String>),
    /// `Match` criteria, all of which must hold.
    Match(Vec<Criterion>),
}

/// One criterion of a `Match` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Criterion {
    /// `all`.
    All,
    /// `host`: the host name as resolved so far (after `HostName`).
    Host { negated: bool, patterns: String },
    /// `originalhost`: the alias as given.
    OriginalHost { negated: bool, patterns: String },
    /// `localuser`: the user running the job.
    LocalUser { negated: bool, patterns: String },
}

/// What a condition is tested against.
pub(super) struct Subject<'a> {
    /// The alias as given.
    pub(super) alias: &'a str,
    /// The host name as resolved so far.
    pub(super) host_name: &'a str,
    pub(super) local_user: &'a str,
}

impl Condition {
    pub(super) fn holds(&self, subject: &Subject<'_>) -> bool {
        match self {
            Condition::Host(patterns) => host_matches(patterns, subject.alias),
            Condition::Match(criteria) => criteria.iter().all(|c| c.holds(subject)),
        }
    }
}

impl Criterion {
    fn holds(&self, subject: &Subject<'_>) -> bool {
        let (negated, patterns, text) = match self {
            Criterion::All => return true,
            Criterion::Host { negated, patterns } => (*negated, patterns, subject.host_name),
            Criterion::OriginalHost { negated, patterns } => (*negated, patterns, subject.alias),
            Criterion::LocalUser { negated, patterns } => (*negated, patterns, subject.local_user),
        };
        let list: Vec<String> = patterns.split(',').map(str::to_string).collect();
        host_matches(&list, text) != negated
    }
}

/// OpenSSH's `match_pattern_list` on a lower-cased name: any negated
/// match excludes; else any match.
pub(super) fn host_matches(patterns: &[String], name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut matched = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        if match_pattern(pattern.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Reads config `text` (named `origin` in errors); `Include`d files are
/// read relative to `home`'s `.ssh` folder.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the
/// file and line of a value OpenSSH refuses, a `Match` criterion this
/// crate does not evaluate, or includes nested too deep; the errors of
/// [`SshConfig::from_file`](super::SshConfig::from_file) for an included
/// file that cannot be read.
pub(super) fn parse(text: &str, origin: &str, home: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    parse_into(text, origin, home, 0, &[], &mut entries)?;
    Ok(entries)
}

fn parse_into(
    text: &str,
    origin: &str,
    home: &Path,
    depth: usize,
    outer: &[Condition],
    out: &mut Vec<Entry>,
) -> Result<()> {
    // An included file starts in its includer's block; its own `Host` and
    // `Match` lines do not reach back into the includer.
    let mut block: Option<Condition> = None;
    for (index, line) in text.lines().enumerate() {
        let at = format!("{origin}:{}", index + 1);
        let Some((keyword, args)) = split_line(line) else {
            continue;
        };
        let conditions =
            || -> Vec<Condition> { outer.iter().cloned().chain(block.clone()).collect() };
        match keyword.as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(bad(&at, "`Host` has no pattern"));
                }
                block = Some(Condition::Host(args));
            }
            "match" => block = Some(Condition::Match(parse_match(&args, &at)?)),
            "include" => {
                if depth >= MAX_DEPTH {
                    return Err(bad(
                        &at,
                        format!("includes nest deeper than {MAX_DEPTH} files (a loop?)"),
                    ));
                }
                if args.is_empty() {
                    return Err(bad(&at, "`Include` names no file"));
                }
                let conditions = conditions();
                for arg in &args {
                    for path in include_paths(arg, home) {
                        let text = super::read_config_file(&path)?;
                        let name = path.display().to_string();
                        parse_into(&text, &name, home, depth + 1, &conditions, out)?;
                    }
                }
            }
            _ => {
                check_value(&keyword, &args, &at)?;
                out.push(Entry {
                    conditions: conditions(),
                    keyword,
                    args,
                });
            }
        }
    }
    Ok(())
}

fn bad(at: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid("ssh config", format!("{at}: {reason}"))
}

/// The criteria of a `Match` line.
fn parse_match(args: &[String], at: &str) -> Result<Vec<Criterion>> {
    let mut words = args.iter().flat_map(|a| match a.split_once('=') {
        // `host=name` (OpenSSH 9.8+) is `host name`.
        Some((k, v)) => vec![k.to_string(), v.to_string()],
        None => vec![a.clone()],
    });
    let mut criteria = Vec::new();
    while let Some(word) = words.next() {
        let lower = word.to_ascii_lowercase();
        let (negated, name) = match lower.strip_prefix('!') {
            Some(name) => (true, name.to_string()),
            None => (false, lower.clone()),
        };
        if name == "all" {
            if negated || args.len() > 1 {
                return Err(bad(at, "`Match all` stands alone"));
            }
            criteria.push(Criterion::All);
            continue;
        }
        let make: fn(bool, String) -> Criterion = match name.as_str() {
            "host" => |negated, patterns| Criterion::Host { negated, patterns },
            "originalhost" => |negated, patterns| Criterion::OriginalHost { negated, patterns },
            "localuser" => |negated, patterns| Criterion::LocalUser { negated, patterns },
            "canonical" | "final" | "exec" | "localnetwork" | "user" | "tagged" | "version"
            | "sessiontype" | "command" => {
                return Err(bad(
                    at,
                    format!(
                        "`Match {name}` is not supported by etl-ssh (supported: all, host, \
                         originalhost, localuser); rewrite the block with `Host` or \
                         `Match host`, or give the setting on the SessionBuilder"
                    ),
                ))
            }
            _ => return Err(bad(at, format!("`Match {word}` is not a Match criterion"))),
        };
        let patterns = words
            .next()
            .ok_or_else(|| bad(at, format!("`Match {name}` has no pattern")))?;
        criteria.push(make(negated, patterns));
    }
    if criteria.is_empty() {
        return Err(bad(at, "`Match` has no criterion"));
    }
    Ok(criteria)
}

/// Refuses what OpenSSH refuses wherever it stands: numbers that are not
/// numbers, a port that is not a port, a `ProxyJump` that is not a list
/// of hops.
fn check_value(keyword: &str, args: &[String], at: &str) -> Result<()> {
    let Some(value) = args.first() else {
        return Err(bad(at, format!("`{keyword}` has no value")));
    };
    match keyword {
        "port" if !value.parse::<u16>().is_ok_and(|p| p > 0) => {
            return Err(bad(
                at,
                format!("Port `{value}` is not a port number (1 to 65535)"),
            ));
        }
        "connecttimeout" | "serveraliveinterval" => {
            let none = keyword == "connecttimeout" && value.eq_ignore_ascii_case("none");
            if !none && value.parse::<u32>().is_err() {
                return Err(bad(at, format!("`{value}` is not a number of seconds")));
            }
        }
        "identitiesonly" if !["yes", "no"].contains(&value.to_ascii_lowercase().as_str()) => {
            return Err(bad(
                at,
                format!("IdentitiesOnly `{value}` is not yes or no"),
            ));
        }
        "proxyjump" if !value.eq_ignore_ascii_case("none") => {
            for hop in value.split(',') {
                parse_hop(hop).map_err(|why| bad(at, format!("ProxyJump `{value}`: {why}")))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One `ProxyJump` hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`
/// (as OpenSSH's `parse_ssh_uri` and `parse_user_host_port` read them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hop {
    pub(super) user: Option<String>,
    pub(super) host: String,
    pub(super) port: Option<u16>,
}

pub(super) fn parse_hop(text: &str) -> std::result::Result<Hop, String> {
    let text = text.trim();
    let rest = text.strip_prefix("ssh://").unwrap_or(text);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (user, rest) = match rest.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
        Some(_) => return Err(format!("`{text}` has an empty user")),
        None => (None, rest),
    };
    let (host, port) =
        split_host_port(rest).ok_or_else(|| format!("`{text}` is not [user@]host[:port]"))?;
    Ok(Hop {
        user,
        host: host.to_string(),
        port,
    })
}

/// `host`, `host:port` or `[v6]:port`.
pub(super) fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok().filter(|p| *p > 0)?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match text.split_once(':') {
        Some((host, port)) if !host.is_empty() => {
            Some((host, Some(port.parse().ok().filter(|p| *p > 0)?)))
        }
        Some(_) => None,
        None if text.is_empty() => None,
        None => Some((text, None)),
    }
}

/// The files an `Include` argument names: `~/` expanded, a relative path
/// taken from `~/.ssh`, `*` and `?` expanded in each component, in
/// lexical order (as glob(3)); none is no error.
pub(super) fn include_paths(arg: &str, home: &Path) -> Vec<PathBuf> {
    let path = match arg.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if Path::new(arg).is_absolute() => PathBuf::from(arg),
        None => home.join(".ssh").join(arg),
    };
    let mut found = vec![PathBuf::from("/")];
    for component in path.components().skip(1) {
        let name = component.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for dir in &found {
            if !name.contains(['*', '?']) {
                next.push(dir.join(&*name));
                continue;
            }
            let Ok(listing) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in listing.flatten() {
                let file = entry.file_name();
                let file = file.to_string_lossy();
                // As glob(3): a leading dot is matched only by a dot.
                if file.starts_with('.') && !name.starts_with('.') {
                    continue;
                }
                if match_pattern(name.as_bytes(), file.as_bytes()) {
                    next.push(dir.join(&*file));
                }
            }
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found.sort();
    found
}

/// Keyword (lower-cased) and arguments of a config line; `None` for blank
/// lines and comments. Arguments may be double-quoted; `keyword=value` is
/// allowed; a `#` after the arguments starts a comment.
pub(super) fn split_line(line: &str) -> Option<(String, Vec<String>)> {
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
        if c == '#' {
            break;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn split_line_handles_equals_quotes_and_comments() {
        assert_eq!(
            split_line("  IdentityFile=\"/a b/c\"  "),
            Some(("identityfile".into(), vec!["/a b/c".into()]))
        );
        assert_eq!(
            split_line("Host a b # the partners"),
            Some(("host".into(), vec!["a".into(), "b".into()]))
        );
        assert_eq!(split_line("# comment"), None);
        assert_eq!(split_line("   "), None);
    }

    #[test]
    fn hops_and_host_port_forms() {
        assert_eq!(split_host_port("bastion"), Some(("bastion", None)));
        assert_eq!(
            split_host_port("bastion:2222"),
            Some(("bastion", Some(2222)))
        );
        assert_eq!(split_host_port("[::1]:22"), Some(("::1", Some(22))));
        assert_eq!(split_host_port("bastion:x"), None);
        assert_eq!(split_host_port("bastion:0"), None);
        assert_eq!(split_host_port(""), None);
        assert_eq!(
            parse_hop("ssh://jumper@bastion:2200"),
            Ok(Hop {
                user: Some("jumper".into()),
                host: "bastion".into(),
                port: Some(2200)
            })
        );
        assert!(parse_hop("@bastion").is_err());
    }

    #[test]
    fn bad_values_name_the_line() {
        let home = home();
        for (text, words) in [
            (
                "Host a\n  Port 22x\n",
                "config:2: Port `22x` is not a port number",
            ),
            ("Port 70000\n", "config:1: Port `70000`"),
            ("ConnectTimeout soon\n", "is not a number of seconds"),
            ("ProxyJump a,b:x\n", "ProxyJump `a,b:x`"),
            (
                "Match exec true\n  User x\n",
                "`Match exec` is not supported",
            ),
            ("Match all host a\n", "`Match all` stands alone"),
            ("Match host\n", "`Match host` has no pattern"),
            ("Host\n", "`Host` has no pattern"),
            ("IdentitiesOnly maybe\n", "not yes or no"),
        ] {
            let err = parse(text, "config", home.path()).expect_err(text);
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(words), "{err} lacks {words:?}");
        }
    }

    #[test]
    fn include_paths_expand_relative_to_dot_ssh() {
        let home = home();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).expect("mkdir");
        for name in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            std::fs::write(ssh.join("conf.d").join(name), "").expect("write");
        }
        let found = include_paths("conf.d/*.conf", home.path());
        assert_eq!(
            found,
            [ssh.join("conf.d/a.conf"), ssh.join("conf.d/b.conf")],
            "sorted, no dot files"
        );
        assert_eq!(
            include_paths("~/.ssh/conf.d/c.*", home.path()),
            [ssh.join("conf.d/c.txt")]
        );
        assert!(include_paths("conf.d/none-*", home.path()).is_empty());
    }

    #[test]
    fn match_criteria() {
        let subject = Subject {
            alias: "partner",
            host_name: "sftp.partner.example",
            local_user: "etl",
        };
        let holds = |line: &str| {
            let (_, args) = split_line(line).expect("line");
            Condition::Match(parse_match(&args, "t").expect("criteria")).holds(&subject)
        };
        assert!(holds("Match all"));
        assert!(holds("Match host *.partner.example"));
        assert!(!holds("Match host partner"));
        assert!(holds("Match originalhost partner"));
        assert!(holds("Match host=*.example originalhost=part*"));
        assert!(!holds("Match !host *.partner.example"));
        assert!(holds("Match localuser etl,root"));
        assert!(!holds("Match host *.example,!sftp.*"));
    }
}
