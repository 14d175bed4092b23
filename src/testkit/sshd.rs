//! [`Sshd`]: OpenSSH's real `sshd` on 127.0.0.1 for tests, with its own
//! keys, config and log in a temporary folder; the one place the testkit
//! (and this crate's own tests) launch sshd.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::passwd::{self, IsolatedUser, ShadowAging};
use super::process::{self, find_program, is_root, Watched};
use super::{current_user, HostKeyType};
use crate::{Credential, Error, ErrorKind, KnownHost, Result, Session, SessionBuilder};

/// The address every test sshd listens on.
const HOST: &str = "127.0.0.1";
/// How long `start` waits for sshd to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports `start` tries when sshd cannot bind.
const START_ATTEMPTS: usize = 5;

/// Absolute path of `sshd`: on `PATH`, else in `/usr/sbin` or `/usr/local/sbin`.
pub(crate) fn sshd_path() -> Option<PathBuf> {
    find_program("sshd", &["/usr/sbin", "/usr/local/sbin"])
}

fn keygen_path() -> Result<PathBuf> {
    find_program("ssh-keygen", &["/usr/bin", "/usr/local/bin"]).ok_or_else(|| {
        Error::invalid(
            "testkit sshd",
            "ssh-keygen not found: install OpenSSH's client (Debian: openssh-client)",
        )
    })
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(format!("{what}: {e}"), e)
}

impl HostKeyType {
    /// The name in host key file names and `ssh-keygen -t`.
    fn short_name(self) -> &'static str {
        match self {
            HostKeyType::Ed25519 => "ed25519",
            HostKeyType::Ecdsa => "ecdsa",
            HostKeyType::Rsa => "rsa",
        }
    }

    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            HostKeyType::Ed25519 => &["-t", "ed25519"],
            HostKeyType::Ecdsa => &["-t", "ecdsa", "-b", "256"],
            HostKeyType::Rsa => &["-t", "rsa", "-b", "3072"],
        }
    }
}

/// Configures an [`Sshd`]. Obtain with [`Sshd::builder`].
///
/// The defaults are the least permissive config the tests need: public key
/// authentication only, for [`user`](Self::user) alone; root may log in
/// with a key only (`PermitRootLogin prohibit-password`); no agent or X11
/// forwarding.
#[derive(Clone, Debug)]
pub struct SshdBuilder {
    host_key_types: Vec<HostKeyType>,
    host_certificate: bool,
    authorized_keys: Vec<String>,
    user: Option<String>,
    password_authentication: bool,
    kbd_interactive_authentication: bool,
    shadow_aging: ShadowAging,
    sftp_start_dir: Option<PathBuf>,
    log_level: String,
    extra_config: Vec<String>,
}

impl Default for SshdBuilder {
    fn default() -> Self {
        SshdBuilder {
            host_key_types: vec![HostKeyType::Ed25519, HostKeyType::Ecdsa, HostKeyType::Rsa],
            host_certificate: false,
            authorized_keys: Vec::new(),
            user: None,
            password_authentication: false,
            kbd_interactive_authentication: false,
            shadow_aging: ShadowAging::default(),
            sftp_start_dir: None,
            log_level: "DEBUG3".into(),
            extra_config: Vec::new(),
        }
    }
}

impl SshdBuilder {
    /// Host key types to generate (with `ssh-keygen`) and offer. Defaults
    /// to all three; an empty list keeps the default.
    pub fn host_key_types(mut self, types: impl IntoIterator<Item = HostKeyType>) -> Self {
        let mut list: Vec<HostKeyType> = Vec::new();
        for t in types {
            if !list.contains(&t) {
                list.push(t);
            }
        }
        if !list.is_empty() {
            self.host_key_types = list;
        }
        self
    }

    /// Also offer host certificates: a host CA signs every host key
    /// (principal 127.0.0.1). See [`Sshd::ca_public_line`]. Defaults to
    /// `false`.
    pub fn host_certificate(mut self, on: bool) -> Self {
        self.host_certificate = on;
        self
    }

    /// Adds a line to `authorized_keys` (used for every user); it may carry
    /// options, e.g. `from="127.0.0.1" ssh-ed25519 AAAA...`.
    pub fn authorized_key(mut self, line: &str) -> Self {
        self.authorized_keys.push(line.trim_end().to_string());
        self
    }

    /// The account that may log in with a key (`AllowUsers`, beside the
    /// password user when there is one). Defaults to the user running the
    /// tests. It must be a real account.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// `PasswordAuthentication`. Defaults to `false`. When on, the server
    /// runs isolated with a test user of its own (see [`Sshd::password_user`]),
    /// which needs root: [`start`](Self::start) fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind) where it cannot
    /// (see [`Sshd::check_passwords_available`]).
    pub fn password_authentication(mut self, on: bool) -> Self {
        self.password_authentication = on;
        self
    }

    /// `KbdInteractiveAuthentication` (PAM asks for the test user's
    /// password). Defaults to `false`; isolated as
    /// [`password_authentication`](Self::password_authentication).
    pub fn kbd_interactive_authentication(mut self, on: bool) -> Self {
        self.kbd_interactive_authentication = on;
        self
    }

    /// The aging fields of the test user's shadow line, for tests of an
    /// expired or aging password. Defaults to [`ShadowAging::default`]
    /// (the password works).
    pub fn shadow_aging(mut self, aging: ShadowAging) -> Self {
        self.shadow_aging = aging;
        self
    }

    /// The folder SFTP sessions start in (`internal-sftp -d`). Defaults to
    /// the user's home.
    pub fn sftp_start_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.sftp_start_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// sshd's `LogLevel`. Defaults to `DEBUG3`.
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    /// Any additional `sshd_config` line. Lines are written *before* the
    /// harness defaults (sshd keeps the first value of most keywords, so
    /// e.g. `LogLevel INFO` overrides the default), except that a `Match`
    /// line and everything after it go at the end of the file. A
    /// `Subsystem` line replaces the default `Subsystem sftp internal-sftp`.
    pub fn extra_config(mut self, line: &str) -> Self {
        self.extra_config.push(line.to_string());
        self
    }

    fn wants_passwords(&self) -> bool {
        self.password_authentication || self.kbd_interactive_authentication
    }

    /// Generates keys and config, starts sshd (under its watchdog, see the
    /// [testkit docs](super#what-each-backend-serves-and-to-whom)) and waits
    /// until it listens.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind) when `sshd` or
    /// `ssh-keygen` is not found; [`ErrorKind::Unsupported`](crate::ErrorKind)
    /// for password or keyboard-interactive authentication where the
    /// isolation they need is not available; [`ErrorKind::Io`](crate::ErrorKind)
    /// when a file, key or process cannot be made, or sshd does not start
    /// (the message carries its log).
    pub fn start(self) -> Result<Sshd> {
        Sshd::start(self)
    }
}

/// A host key the server offers.
#[derive(Clone, Debug)]
struct HostKeyFiles {
    kind: HostKeyType,
    line: String,
    fingerprint: String,
}

/// OpenSSH's `sshd` on 127.0.0.1 for tests; stopped, and its folder
/// removed, on drop (and by its watchdog if this process dies first).
///
/// Every server gets its own temporary folder with freshly generated host
/// keys, `sshd_config`, `authorized_keys` and log, and listens on a free
/// port of 127.0.0.1. The system's sshd service is never used.
///
/// ```no_run
/// use etl_ssh::testkit::{HostKeyType, Sshd};
///
/// # fn main() -> Result<(), etl_ssh::Error> {
/// let server = Sshd::builder()
///     .host_key_types([HostKeyType::Ed25519])
///     .authorized_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti test")
///     .start()?;
/// println!("sshd on {} with {}", server.addr(), server.host_key_fingerprint(HostKeyType::Ed25519));
/// # Ok(())
/// # }
/// ```
pub struct Sshd {
    // Dropped first: stops sshd (its watchdog removes the folder).
    process: Watched,
    port: u16,
    user: String,
    password_user: Option<IsolatedUser>,
    host_keys: Vec<HostKeyFiles>,
    ca_line: Option<String>,
    ready_log_len: usize,
    dir: tempfile::TempDir,
}

impl fmt::Debug for Sshd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sshd")
            .field("addr", &self.addr())
            .field("pid", &self.process.pid())
            .field("user", &self.user)
            .field(
                "password_user",
                &self.password_user.as_ref().map(|u| &u.name),
            )
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("run {what}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::io(
        format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        io::Error::other(format!("{what} failed")),
    ))
}

fn public_line_of(pub_path: &Path) -> Result<(String, String)> {
    let line = fs::read_to_string(pub_path)
        .map_err(io_err(format!("read {}", pub_path.display())))?
        .trim_end()
        .to_string();
    let key = russh::keys::PublicKey::from_openssh(&line)
        .map_err(|e| Error::invalid("testkit host key", format!("{line:?} does not parse: {e}")))?;
    let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
    Ok((line, fingerprint))
}

fn keyword(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn render_config(b: &SshdBuilder, dir: &Path, port: u16, users: &[&str]) -> String {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    for line in &b.extra_config {
        if !tail.is_empty() || keyword(line) == "match" {
            tail.push(line.as_str());
        } else {
            head.push(line.as_str());
        }
    }
    let yn = |v: bool| if v { "yes" } else { "no" };
    let mut c = String::from("# Generated by etl_ssh::testkit::Sshd for one test server.\n");
    // First, so that its values win (sshd keeps the first of most keywords):
    // Sshd::refuse_auth writes `DenyUsers *` there.
    c.push_str(&format!("Include {}\n", dir.join("refuse.conf").display()));
    for line in &head {
        c.push_str(line);
        c.push('\n');
    }
    c.push_str(&format!("ListenAddress {HOST}\nPort {port}\n"));
    for ty in &b.host_key_types {
        let key = dir.join(format!("ssh_host_{}_key", ty.short_name()));
        c.push_str(&format!("HostKey {}\n", key.display()));
    }
    if b.host_certificate {
        for ty in &b.host_key_types {
            let cert = dir.join(format!("ssh_host_{}_key-cert.pub", ty.short_name()));
            c.push_str(&format!("HostCertificate {}\n", cert.display()));
        }
    }
    c.push_str(&format!("PidFile {}\n", dir.join("sshd.pid").display()));
    c.push_str(&format!(
        "AuthorizedKeysFile {}\n",
        dir.join("authorized_keys").display()
    ));
    c.push_str(&format!("AllowUsers {}\n", users.join(" ")));
    c.push_str("StrictModes no\n");
    c.push_str("PermitRootLogin prohibit-password\n");
    c.push_str("PubkeyAuthentication yes\n");
    c.push_str(&format!(
        "PasswordAuthentication {}\n",
        yn(b.password_authentication)
    ));
    c.push_str(&format!(
        "KbdInteractiveAuthentication {}\n",
        yn(b.kbd_interactive_authentication)
    ));
    c.push_str(&format!("UsePAM {}\n", yn(b.wants_passwords())));
    c.push_str("PermitEmptyPasswords no\nAllowAgentForwarding no\nX11Forwarding no\n");
    c.push_str("PermitUserEnvironment no\nPermitTunnel no\n");
    if !head.iter().chain(&tail).any(|l| keyword(l) == "subsystem") {
        match &b.sftp_start_dir {
            Some(d) => c.push_str(&format!(
                "Subsystem sftp internal-sftp -d {}\n",
                d.display()
            )),
            None => c.push_str("Subsystem sftp internal-sftp\n"),
        }
    }
    c.push_str(&format!("LogLevel {}\n", b.log_level));
    c.push_str("MaxStartups 100\nMaxSessions 100\nUseDNS no\n");
    c.push_str("PrintMotd no\nPrintLastLog no\n");
    for line in &tail {
        c.push_str(line);
        c.push('\n');
    }
    c
}

fn free_port() -> Result<u16> {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_err("find a free port on 127.0.0.1"))
}

enum Failure {
    Bind,
    Other(String),
}

impl Sshd {
    /// A builder with the defaults (all host key types, keys only).
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// True when `sshd` is found (on `PATH`, or in `/usr/sbin` or
    /// `/usr/local/sbin`).
    pub fn is_available() -> bool {
        sshd_path().is_some()
    }

    /// Whether servers with password or keyboard-interactive authentication
    /// can run here: they need root, `unshare` and `mount` (util-linux) and
    /// `openssl`, for the private mount namespace in which the test user
    /// exists (see the [testkit docs](super#what-each-backend-serves-and-to-whom)).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`](crate::ErrorKind), saying what is missing.
    pub fn check_passwords_available() -> Result<()> {
        match passwd::unavailable() {
            None => Ok(()),
            Some(why) => Err(Error::Ssh {
                kind: ErrorKind::Unsupported,
                context: format!(
                    "OpenSSH password authentication cannot be tested here: {why}; \
                     the testkit never adds an account to the machine"
                ),
                source: None,
            }),
        }
    }

    fn start(config: SshdBuilder) -> Result<Sshd> {
        let sshd = sshd_path().ok_or_else(|| {
            Error::invalid(
                "testkit backend",
                "sshd not found on PATH nor in /usr/sbin: install OpenSSH's server \
                 (Debian: openssh-server) or use Backend::Embedded",
            )
        })?;
        if config.wants_passwords() {
            Sshd::check_passwords_available()?;
        }
        let keygen = keygen_path()?;
        let dir = process::temp_dir("etl-ssh-sshd-").map_err(io_err("create sshd's folder"))?;
        let d = dir.path();
        {
            use std::os::unix::fs::PermissionsExt;
            // The per-user sshd child reads authorized_keys as that user.
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod sshd's folder"))?;
        }

        let mut host_keys = Vec::new();
        for &ty in &config.host_key_types {
            let key = d.join(format!("ssh_host_{}_key", ty.short_name()));
            run_ok(
                Command::new(&keygen)
                    .arg("-q")
                    .args(ty.keygen_args())
                    .args(["-N", "", "-C"])
                    .arg(format!("etl-ssh-test-host-{}", ty.short_name()))
                    .arg("-f")
                    .arg(&key),
                "ssh-keygen (host key)",
            )?;
            let (line, fingerprint) =
                public_line_of(&d.join(format!("ssh_host_{}_key.pub", ty.short_name())))?;
            host_keys.push(HostKeyFiles {
                kind: ty,
                line,
                fingerprint,
            });
        }
        let mut ca_line = None;
        if config.host_certificate {
            let ca = d.join("host_ca");
            run_ok(
                Command::new(&keygen)
                    .args([
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "etl-ssh-test-host-ca",
                        "-f",
                    ])
                    .arg(&ca),
                "ssh-keygen (host CA)",
            )?;
            for ty in &config.host_key_types {
                run_ok(
                    Command::new(&keygen)
                        .arg("-q")
                        .arg("-s")
                        .arg(&ca)
                        .args(["-I", "etl-ssh-test-host", "-h", "-n", HOST])
                        .arg(d.join(format!("ssh_host_{}_key.pub", ty.short_name()))),
                    "ssh-keygen (sign host key)",
                )?;
            }
            ca_line = Some(public_line_of(&d.join("host_ca.pub"))?.0);
        }

        let mut ak = String::new();
        for line in &config.authorized_keys {
            ak.push_str(line);
            ak.push('\n');
        }
        fs::write(d.join("authorized_keys"), ak).map_err(io_err("write authorized_keys"))?;
        fs::write(d.join("refuse.conf"), "").map_err(io_err("write refuse.conf"))?;

        let password_user = if config.wants_passwords() {
            Some(
                IsolatedUser::create(d, &config.shadow_aging)
                    .map_err(io_err("make the isolated test user"))?,
            )
        } else {
            None
        };
        let user = config.user.clone().unwrap_or_else(current_user);
        let mut users = vec![user.as_str()];
        if let Some(p) = &password_user {
            users.push(&p.name);
        }

        // Privilege separation directory (sshd refuses to start without it).
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() && is_root() {
            fs::create_dir_all(privsep).map_err(io_err("create /run/sshd"))?;
        }

        let config_path = d.join("sshd_config");
        let log_path = d.join("sshd.log");
        let output_path = d.join("sshd.stderr");
        let mut last_failure = String::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_port()?;
            fs::write(&config_path, render_config(&config, d, port, &users))
                .map_err(io_err("write sshd_config"))?;
            if attempt == 0 {
                let out = Command::new(&sshd)
                    .arg("-t")
                    .arg("-f")
                    .arg(&config_path)
                    .stdin(Stdio::null())
                    .output()
                    .map_err(io_err("run sshd -t"))?;
                if !out.status.success() {
                    return Err(Error::io(
                        format!(
                            "sshd -t rejected the test config: {}{}\n--- sshd_config ---\n{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr),
                            read_lossy(&config_path)
                        ),
                        io::Error::other("sshd -t failed"),
                    ));
                }
            }
            let _ = fs::remove_file(&log_path);
            let output = File::create(&output_path).map_err(io_err("create sshd.stderr"))?;
            let args: Vec<OsString> = vec![
                "-D".into(),
                "-f".into(),
                config_path.clone().into_os_string(),
                "-E".into(),
                log_path.clone().into_os_string(),
            ];
            let (program, args) = match &password_user {
                Some(u) => u
                    .wrap(&sshd, &args)
                    .map_err(io_err("prepare the mount namespace"))?,
                None => (sshd.clone(), args),
            };
            let process = Watched::spawn(&program, &args, Some(d), output)
                .map_err(io_err(format!("start {}", sshd.display())))?;
            match wait_listening(&process, port, &log_path) {
                Ok(()) => {
                    let ready_log_len = read_lossy(&log_path).len();
                    return Ok(Sshd {
                        process,
                        port,
                        user,
                        password_user,
                        host_keys,
                        ca_line,
                        ready_log_len,
                        dir,
                    });
                }
                Err(failure) => {
                    // Stopped before the watchdog removes the folder: read first.
                    let log = read_lossy(&log_path);
                    let output = read_lossy(&output_path);
                    process.stop_keeping_folder();
                    match failure {
                        Failure::Bind => last_failure = log,
                        Failure::Other(why) => {
                            return Err(Error::io(
                                format!(
                                    "test sshd did not start: {why}\n--- sshd log ---\n{log}\n\
                                     --- sshd output ---\n{output}"
                                ),
                                io::Error::other(why),
                            ))
                        }
                    }
                }
            }
        }
        Err(Error::io(
            format!(
                "test sshd did not start: no free port in {START_ATTEMPTS} attempts; \
                 last log:\n{last_failure}"
            ),
            io::Error::other("no free port"),
        ))
    }

    /// `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's temporary folder (keys, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the listening sshd.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The account that may log in with a key (see [`SshdBuilder::user`]).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The generated `sshd_config`.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("sshd_config")
    }

    /// The text of the generated `sshd_config`.
    pub fn config_text(&self) -> String {
        read_lossy(&self.config_path())
    }

    fn host_key(&self, ty: HostKeyType) -> &HostKeyFiles {
        self.host_keys
            .iter()
            .find(|k| k.kind == ty)
            .unwrap_or_else(|| panic!("host key type {ty:?} not configured on this Sshd"))
    }

    /// The private host key file of a type the server offers.
    ///
    /// # Panics
    ///
    /// When `ty` is not among [`SshdBuilder::host_key_types`] (as do the
    /// other host key accessors).
    pub fn host_key_path(&self, ty: HostKeyType) -> PathBuf {
        self.host_key(ty);
        self.dir().join(format!("ssh_host_{}_key", ty.short_name()))
    }

    /// The host key's public line, e.g.
    /// `"ssh-ed25519 AAAA... etl-ssh-test-host-ed25519"`.
    ///
    /// # Panics
    ///
    /// As [`Sshd::host_key_path`].
    pub fn host_key_public_line(&self, ty: HostKeyType) -> &str {
        &self.host_key(ty).line
    }

    /// The host key's `SHA256:...` fingerprint.
    ///
    /// # Panics
    ///
    /// As [`Sshd::host_key_path`].
    pub fn host_key_fingerprint(&self, ty: HostKeyType) -> &str {
        &self.host_key(ty).fingerprint
    }

    /// A `known_hosts` line for this server and host key:
    /// `"[127.0.0.1]:PORT ssh-ed25519 AAAA..."`.
    ///
    /// # Panics
    ///
    /// As [`Sshd::host_key_path`].
    pub fn known_hosts_line(&self, ty: HostKeyType) -> String {
        let mut parts = self.host_key_public_line(ty).split_whitespace();
        let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("[{HOST}]:{} {alg} {b64}", self.port)
    }

    /// The host CA's public line.
    ///
    /// # Panics
    ///
    /// When [`SshdBuilder::host_certificate`] was not set.
    pub fn ca_public_line(&self) -> &str {
        self.ca_line
            .as_deref()
            .unwrap_or_else(|| panic!("host_certificate(true) was not set on the builder"))
    }

    /// `"@cert-authority [127.0.0.1]:PORT ssh-ed25519 AAAA..."` for `known_hosts`.
    ///
    /// # Panics
    ///
    /// As [`Sshd::ca_public_line`].
    pub fn ca_known_hosts_line(&self) -> String {
        let mut parts = self.ca_public_line().split_whitespace();
        let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("@cert-authority [{HOST}]:{} {alg} {b64}", self.port)
    }

    /// The host certificate of a host key type:
    /// `"ssh-ed25519-cert-v01@openssh.com ..."`.
    ///
    /// # Panics
    ///
    /// As [`Sshd::ca_public_line`] and [`Sshd::host_key_path`].
    pub fn host_certificate_line(&self, ty: HostKeyType) -> String {
        self.ca_public_line();
        self.host_key(ty);
        read_lossy(
            &self
                .dir()
                .join(format!("ssh_host_{}_key-cert.pub", ty.short_name())),
        )
        .trim_end()
        .to_string()
    }

    /// The sshd log file (see [`SshdBuilder::log_level`]).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("sshd.log")
    }

    /// The whole sshd log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The log written after [`SshdBuilder::start`] returned (without the
    /// start-up lines and the readiness probe).
    pub fn log_since_ready(&self) -> String {
        self.log()
            .get(self.ready_log_len..)
            .unwrap_or_default()
            .to_string()
    }

    /// Polls the log until it contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// The `authorized_keys` file (used for every user).
    pub fn authorized_keys_path(&self) -> PathBuf {
        self.dir().join("authorized_keys")
    }

    /// Appends a line to `authorized_keys`; sshd reads it per connection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind) when the file cannot be written.
    pub fn add_authorized_key(&self, line: &str) -> Result<()> {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.authorized_keys_path())
            .map_err(io_err("open authorized_keys"))?;
        writeln!(f, "{}", line.trim_end()).map_err(io_err("append to authorized_keys"))
    }

    /// The test user for password and keyboard-interactive authentication:
    /// a random name that exists only inside this server's mount namespace,
    /// `None` unless the builder asked for passwords.
    pub fn password_user(&self) -> Option<&str> {
        self.password_user.as_ref().map(|u| u.name.as_str())
    }

    /// The uid of [`Sshd::password_user`] (an unused one, chosen at random).
    pub fn password_uid(&self) -> Option<u32> {
        self.password_user.as_ref().map(|u| u.uid)
    }

    /// The password of [`Sshd::password_user`], generated for this server.
    pub fn password(&self) -> Option<&SecretString> {
        self.password_user.as_ref().map(|u| &u.password)
    }

    /// [`Sshd::password_user`] with [`Sshd::password`].
    pub fn password_credential(&self) -> Option<Credential> {
        self.password_user
            .as_ref()
            .map(|u| Credential::password(&u.name, u.password.clone()))
    }

    /// Makes sshd refuse (`true`) or accept again (`false`) every
    /// authentication: `DenyUsers *`, then a configuration reload (SIGHUP),
    /// waited for.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind) when sshd cannot be reloaded.
    pub fn refuse_auth(&self, refuse: bool) -> Result<()> {
        let text = if refuse { "DenyUsers *\n" } else { "" };
        fs::write(self.dir().join("refuse.conf"), text).map_err(io_err("write refuse.conf"))?;
        let needle = format!("Server listening on {HOST} port {}.", self.port);
        let before = self.log().matches(&needle).count();
        process::signal(self.pid(), "HUP").map_err(io_err("reload test sshd"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        while self.log().matches(&needle).count() <= before {
            if Instant::now() >= deadline || self.process.has_exited() {
                return Err(Error::io(
                    format!("reload test sshd: it did not listen again:\n{}", self.log()),
                    io::Error::other("sshd did not listen again"),
                ));
            }
            sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A session builder aimed at this server, pinned by its first host key,
    /// with a 10 s connect timeout, a 20 s operation timeout and no
    /// credential; set what the test needs before `connect()`.
    pub fn session_builder(&self) -> SessionBuilder {
        let mut builder = Session::builder(self.host())
            .port(self.port())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20));
        if let Some(pin) = self
            .host_keys
            .first()
            .and_then(|k| KnownHost::public_key(&k.line).ok())
        {
            builder = builder.known_host(pin);
        }
        builder
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Captured by libtest and shown with the failing test's output.
            eprintln!(
                "--- sshd log ({}) ---\n{}--- end of sshd log ---",
                self.log_path().display(),
                self.log()
            );
        }
        self.process.stop();
    }
}

fn wait_listening(
    process: &Watched,
    port: u16,
    log_path: &Path,
) -> std::result::Result<(), Failure> {
    let listening = format!("Server listening on {HOST} port {port}.");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if process.has_exited() {
            let log = read_lossy(log_path);
            if log.contains("Address already in use") || log.contains("Cannot bind any address") {
                return Err(Failure::Bind);
            }
            return Err(Failure::Other("sshd exited early".into()));
        }
        if read_lossy(log_path).contains(&listening) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if let Ok(probe) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                // Let sshd log the probe's close before tests read the log.
                let probe_port = probe.local_addr().map(|a| a.port()).unwrap_or(0);
                drop(probe);
                let closed = format!("Connection closed by {HOST} port {probe_port}");
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && !read_lossy(log_path).contains(&closed) {
                    sleep(Duration::from_millis(10));
                }
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Other(format!(
                "not listening on {HOST}:{port} after {START_TIMEOUT:?}"
            )));
        }
        sleep(Duration::from_millis(20));
    }
}
