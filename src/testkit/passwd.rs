//! Password authentication against OpenSSH without touching the machine's
//! accounts: the test sshd runs in a private mount namespace (`unshare
//! --mount --propagation private`) in which temporary `/etc/passwd` and
//! `/etc/shadow` files are bind-mounted over the real ones. The passwd
//! file is the real one plus one test user (a fresh random name and an
//! unused uid, home the server's folder, shell `/bin/sh`); the shadow file
//! holds that user's line only, with a SHA-512 crypt hash of a password
//! generated for that server. Outside the namespace nothing changes; the
//! namespace ends with sshd. Root only.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};

use super::process::{find_program, is_root};

/// Names of test users start with this (and never appear in the real
/// `/etc/passwd`: `.ci/run` checks).
pub(crate) const USER_PREFIX: &str = "etlpw";

/// Mounts the two files, then runs the rest of the arguments.
const MOUNT_AND_EXEC: &str = r#"mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/shadow || exit 97
shift 2
exec "$@"
"#;

/// The aging fields of the test user's `/etc/shadow` line (shadow(5)),
/// for tests of what PAM does with an expired or aging password. `None`
/// leaves a field empty (no limit), except [`ShadowAging::last_change`].
///
/// The default: changed today, no limits, so the password works.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShadowAging {
    /// Days since 1970-01-01 of the last password change. `None` writes
    /// today; `Some(0)` means the password must be changed at the next
    /// login (PAM reports it expired).
    pub last_change: Option<u64>,
    /// Minimum days between changes.
    pub min_days: Option<u64>,
    /// Maximum days a password is valid.
    pub max_days: Option<u64>,
    /// Days of warning before it expires.
    pub warn_days: Option<u64>,
    /// Days after expiry during which the password is still accepted.
    pub inactive_days: Option<u64>,
    /// Days since 1970-01-01 when the account expires.
    pub expire_date: Option<u64>,
}

impl ShadowAging {
    /// The password must be changed at the next login (last change 0).
    pub fn must_change_password() -> Self {
        ShadowAging {
            last_change: Some(0),
            ..ShadowAging::default()
        }
    }

    fn fields(&self) -> String {
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        let f = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{}:{}:{}:{}:{}:{}:",
            self.last_change.unwrap_or(today),
            f(self.min_days),
            f(self.max_days),
            f(self.warn_days),
            f(self.inactive_days),
            f(self.expire_date)
        )
    }
}

/// Why OpenSSH password tests cannot run here, or `None` when they can:
/// root, `unshare` and `mount` (util-linux), `openssl` (for the hash), and
/// a private mount namespace that can be made (checked once).
pub(crate) fn unavailable() -> Option<&'static str> {
    static WHY: OnceLock<Option<&'static str>> = OnceLock::new();
    *WHY.get_or_init(|| {
        if !is_root() {
            return Some("the tests do not run as root (a private mount namespace needs it)");
        }
        let Some(unshare) = find_program("unshare", &["/usr/bin", "/bin"]) else {
            return Some("`unshare` (util-linux) is not installed");
        };
        if find_program("mount", &["/usr/bin", "/bin"]).is_none() {
            return Some("`mount` (util-linux) is not installed");
        }
        if find_program("openssl", &["/usr/bin"]).is_none() {
            return Some("`openssl` (Debian: openssl) is not installed, for the password hash");
        }
        let works = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            None
        } else {
            Some("`unshare --mount` fails here (no CAP_SYS_ADMIN in this container?)")
        }
    })
}

/// A test user that exists only inside the test sshd's mount namespace.
#[derive(Debug)]
pub(crate) struct IsolatedUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) password: SecretString,
    passwd: PathBuf,
    shadow: PathBuf,
}

impl IsolatedUser {
    /// Writes `passwd` and `shadow` into `dir` (the user's home) for a new
    /// user with a random name, an unused uid and a random password.
    pub(crate) fn create(dir: &Path, aging: &ShadowAging) -> io::Result<IsolatedUser> {
        let real = fs::read_to_string("/etc/passwd")?;
        let taken: Vec<(&str, u32)> = real
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                Some((name, uid))
            })
            .collect();
        let mut rng = rand::rng();
        let name = loop {
            let tail = Alphanumeric
                .sample_string(&mut rng, 10)
                .to_ascii_lowercase();
            let name = format!("{USER_PREFIX}{tail}");
            if !taken.iter().any(|(n, _)| *n == name) {
                break name;
            }
        };
        let uid = loop {
            let uid = rand::random_range(1_000_000..2_000_000_000);
            if !taken.iter().any(|(_, u)| *u == uid) {
                break uid;
            }
        };
        let password = SecretString::from(Alphanumeric.sample_string(&mut rng, 32));
        let hash = sha512_crypt(&password)?;

        let mut passwd_text = real;
        if !passwd_text.is_empty() && !passwd_text.ends_with('\n') {
            passwd_text.push('\n');
        }
        // gid 65534 (nogroup): no group needs to exist for the user.
        passwd_text.push_str(&format!(
            "{name}:x:{uid}:65534:etl-ssh testkit user:{}:/bin/sh\n",
            dir.display()
        ));
        let passwd = dir.join("passwd");
        write_private(&passwd, passwd_text.as_bytes(), 0o644)?;
        let shadow = dir.join("shadow");
        let line = format!("{name}:{hash}:{}\n", aging.fields());
        write_private(&shadow, line.as_bytes(), 0o600)?;
        Ok(IsolatedUser {
            name,
            uid,
            password,
            passwd,
            shadow,
        })
    }

    /// `program args` wrapped to run in a private mount namespace with this
    /// user's `passwd` and `shadow` in place: `(unshare, its arguments)`.
    pub(crate) fn wrap(
        &self,
        program: &Path,
        args: &[OsString],
    ) -> io::Result<(PathBuf, Vec<OsString>)> {
        let unshare = find_program("unshare", &["/usr/bin", "/bin"])
            .ok_or_else(|| io::Error::other("unshare not found"))?;
        let mut all: Vec<OsString> = [
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            MOUNT_AND_EXEC,
            "etl-ssh-namespace",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        all.push(self.passwd.clone().into_os_string());
        all.push(self.shadow.clone().into_os_string());
        all.push(program.as_os_str().to_owned());
        all.extend(args.iter().cloned());
        Ok((unshare, all))
    }
}

/// Creates `path` with `mode` from the start (never readable by others
/// in between) and writes `data`.
fn write_private(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(data)
}

/// SHA-512 crypt (`$6$...`) of `password`, by `openssl passwd -6 -stdin`
/// (the password goes through a pipe, never the command line).
fn sha512_crypt(password: &SecretString) -> io::Result<String> {
    let openssl = find_program("openssl", &["/usr/bin"])
        .ok_or_else(|| io::Error::other("openssl not found"))?;
    let mut child = Command::new(openssl)
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(password.expose_secret().as_bytes())?;
        stdin.write_all(b"\n")?;
    }
    let out = child.wait_with_output()?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !hash.starts_with("$6$") || hash.contains(':') {
        return Err(io::Error::other(format!(
            "openssl passwd -6 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_fields_default_to_today_and_no_limits() {
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        assert_eq!(ShadowAging::default().fields(), format!("{today}::::::"));
        assert_eq!(ShadowAging::must_change_password().fields(), "0::::::");
        let aging = ShadowAging {
            last_change: Some(19_000),
            max_days: Some(90),
            warn_days: Some(7),
            expire_date: Some(20_000),
            ..ShadowAging::default()
        };
        assert_eq!(aging.fields(), "19000::90:7::20000:");
    }
}
