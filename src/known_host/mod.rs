//! Host key pins: [`KnownHost`], [`HostKey`], and OpenSSH `known_hosts` matching.
//!
//! The server's host key is checked here, in Rust, rather than with libssh2's
//! known-hosts API: libssh2 ignores `@revoked`, lets a port-22 line match any
//! port and compares keys of other types. Matching follows OpenSSH
//! (`hostfile.c`, `match.c`): hashed `|1|` names, `[host]:port`, comma lists,
//! `*`/`?` patterns, `!` negation, `@revoked`, several keys per host, and a
//! line only ever matches the very key it lists.
//!
//! `ssh-key` supplies the host-field parser (hashed names) and checks the key
//! encodings of the types OpenSSH knows; lines are split into fields here,
//! because its `known_hosts::Entry` parser accepts only single spaces and cuts
//! every line at the first `#`.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::{Error, ErrorKind, Result};

mod certificate;
mod keys;
mod known_hosts;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use certificate::{certified_key, Presented};
use keys::{looks_like_key_type, parse_blob, parse_key_fields};
use known_hosts::{hosts_match, lookup_name, next_field, parse_known_hosts_line, quote, Marker};

/// Standard base64 that accepts input with or without `=` padding.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The port OpenSSH writes as a plain host name in `known_hosts`.
const DEFAULT_PORT: u16 = 22;

/// How to get the fingerprint we accept, for error messages.
const HOW_TO_FINGERPRINT: &str =
    "get it with `ssh-keygen -lf <public key file>` (or `ssh-keyscan <host> | ssh-keygen -lf -`)";

/// At most this many bytes of user input are quoted in messages.
const QUOTE_MAX: usize = 40;

/// A pin on the server's host key: who the server must be.
///
/// A session is given one or more pins; the server's host key is accepted if
/// any pin matches it and no `known_hosts` file marks it `@revoked`. There is
/// no pin that accepts any key.
///
/// - [`KnownHost::fingerprint`]: a `SHA256:...` fingerprint, as the partner
///   reads it to you from `ssh-keygen -lf`.
/// - [`KnownHost::public_key`]: a public key line, as in a `.pub` file.
/// - [`KnownHost::known_hosts_file`]: an OpenSSH `known_hosts` file, read
///   when connecting.
///
/// ```
/// use etl_ssh::KnownHost;
///
/// # fn main() -> Result<(), etl_ssh::Error> {
/// let pins = [
///     KnownHost::fingerprint("SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ")?,
///     KnownHost::public_key(
///         "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti partner",
///     )?,
///     KnownHost::known_hosts_file("/etc/etl/known_hosts"),
/// ];
/// # let _ = pins;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    pin: Pin,
}

#[derive(Clone, PartialEq, Eq)]
enum Pin {
    Fingerprint([u8; 32]),
    PublicKey(HostKey),
    KnownHostsFile(PathBuf),
    TrustOnFirstUse(PathBuf),
    CertAuthority(HostKey),
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Fingerprint(digest) => f
                .debug_tuple("Fingerprint")
                .field(&sha256_text(digest))
                .finish(),
            Pin::PublicKey(key) => f.debug_tuple("PublicKey").field(key).finish(),
            Pin::KnownHostsFile(path) => f.debug_tuple("KnownHostsFile").field(path).finish(),
            Pin::TrustOnFirstUse(path) => f.debug_tuple("TrustOnFirstUse").field(path).finish(),
            Pin::CertAuthority(key) => f.debug_tuple("CertAuthority").field(key).finish(),
        }
    }
}

impl KnownHost {
    /// A SHA256 fingerprint as OpenSSH prints it: `SHA256:` then 43 base64 characters.
    ///
    /// This is the second field of `ssh-keygen -lf` output. A trailing `=`
    /// is accepted; MD5 fingerprints are not.
    ///
    /// ```
    /// use etl_ssh::KnownHost;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let pin = KnownHost::fingerprint("SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ")?;
    /// # let _ = pin;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if the text
    /// is empty, has another prefix (`MD5:`, ...), is not 43 characters of
    /// standard base64 after `SHA256:`, or holds more than the fingerprint.
    pub fn fingerprint(fingerprint: impl AsRef<str>) -> Result<KnownHost> {
        parse_fingerprint(fingerprint.as_ref())
            .map(|digest| KnownHost {
                pin: Pin::Fingerprint(digest),
            })
            .map_err(|reason| Error::invalid("fingerprint", reason))
    }

    /// An OpenSSH public key line: `type base64 [comment]`.
    ///
    /// This is the content of the server's `/etc/ssh/ssh_host_*_key.pub`, or
    /// one line of `ssh-keyscan` output without the host name.
    ///
    /// ```
    /// use etl_ssh::KnownHost;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let pin = KnownHost::public_key(
    ///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti partner",
    /// )?;
    /// # let _ = pin;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) as for
    /// [`HostKey::from_openssh`].
    pub fn public_key(line: impl AsRef<str>) -> Result<KnownHost> {
        HostKey::from_openssh(line).map(KnownHost::from)
    }

    /// An OpenSSH `known_hosts` file, read when connecting.
    ///
    /// The file is read once per connection and matched as OpenSSH matches
    /// it: hashed `|1|` names, `[host]:port` (a plain `host` line is for
    /// port 22 only), comma lists, `*` and `?` patterns, `!` negation,
    /// case-insensitive names, several keys per host, and `@revoked`, which
    /// refuses a key even if another line or another pin accepts it.
    /// `@cert-authority` lines pin a certificate authority for the hosts
    /// they name (see [`KnownHost::cert_authority`]); `@revoked` also
    /// refuses a CA key. A malformed line is skipped with a warning in the
    /// log.
    ///
    /// ```
    /// use etl_ssh::KnownHost;
    ///
    /// let pin = KnownHost::known_hosts_file("/etc/etl/known_hosts");
    /// # let _ = pin;
    /// ```
    pub fn known_hosts_file(path: impl AsRef<Path>) -> KnownHost {
        KnownHost {
            pin: Pin::KnownHostsFile(path.as_ref().to_path_buf()),
        }
    }
}

impl KnownHost {
    /// A certificate authority's public key (`type base64 [comment]`):
    /// the server must present an OpenSSH host certificate signed by it,
    /// as an `@cert-authority` line in `known_hosts` says for the hosts it
    /// names (this pin applies to whatever host the session connects to).
    ///
    /// The certificate is checked before any authentication: signed by
    /// this CA (and the CA not `@revoked` in a `known_hosts` pin), a host
    /// certificate, naming the host among its principals (or the
    /// [`host_key_alias`](crate::SessionBuilder::host_key_alias) when one
    /// is set; a principal may be a `*` pattern; a certificate without
    /// principals is valid for any host, as OpenSSH takes it), and within
    /// its validity window. The handshake asks for certificate algorithms
    /// first when a CA applies; a server that presents a plain key instead
    /// is refused unless another pin accepts that key.
    ///
    /// ```
    /// use etl_ssh::KnownHost;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let ca = KnownHost::cert_authority(
    ///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti partner-host-ca",
    /// )?;
    /// # let _ = ca;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) as for
    /// [`HostKey::from_openssh`].
    pub fn cert_authority(line: impl AsRef<str>) -> Result<KnownHost> {
        HostKey::from_openssh(line).map(|key| KnownHost {
            pin: Pin::CertAuthority(key),
        })
    }

    /// Trust on first use, recorded in an OpenSSH `known_hosts` file: an
    /// explicit choice, never a default.
    ///
    /// When the file has no line for the host (or the file does not exist
    /// yet), the key the server presents is accepted, appended to the file
    /// as `name type base64`, and a warning is logged. From then on the file
    /// is enforced like [`KnownHost::known_hosts_file`]: a changed key is a
    /// [`HostKeyMismatch`](crate::ErrorKind::HostKeyMismatch).
    ///
    /// The name recorded is the one pins are looked up under: the host
    /// (`[host]:port` for a port other than 22), or the
    /// [`host_key_alias`](crate::SessionBuilder::host_key_alias). A name
    /// that cannot stand alone as a `known_hosts` host field (whitespace,
    /// control characters, `,` `*` `?` `!`, a leading `@` `#` `|`) is
    /// refused with [`InvalidInput`](crate::ErrorKind::InvalidInput) naming
    /// the option it came from.
    ///
    /// Recording is safe against concurrent first connections: the file is
    /// locked (`flock`, waited for at most 10 s, then
    /// [`Timeout`](crate::ErrorKind::Timeout)) and read again under the
    /// lock; when another connection recorded a key for the name
    /// meanwhile, nothing is appended and the key seen must match that one
    /// ([`HostKeyMismatch`](crate::ErrorKind::HostKeyMismatch) naming both
    /// fingerprints otherwise). A file that does not end in a newline gets
    /// one before the new line. A new file is created with mode 0600, and
    /// its folder, when missing, with mode 0700.
    ///
    /// Use it only where the first connection is known to reach the right
    /// server (say, inside the partner's network on the day of set-up): it
    /// accepts whatever key answers first.
    ///
    /// ```
    /// use etl_ssh::KnownHost;
    ///
    /// let pin = KnownHost::trust_on_first_use("/var/lib/etl/known_hosts");
    /// # let _ = pin;
    /// ```
    pub fn trust_on_first_use(path: impl AsRef<Path>) -> KnownHost {
        KnownHost {
            pin: Pin::TrustOnFirstUse(path.as_ref().to_path_buf()),
        }
    }
}

impl From<HostKey> for KnownHost {
    /// Pins exactly this key, as [`KnownHost::public_key`] does.
    fn from(key: HostKey) -> KnownHost {
        KnownHost {
            pin: Pin::PublicKey(key),
        }
    }
}

/// A server's public host key.
///
/// Made from the key a server presents in the handshake, or from a public key
/// line with [`HostKey::from_openssh`]. Two keys are equal when their whole
/// encodings are: a key of another type is never equal.
///
/// `Display` prints the type and the fingerprint, `ssh-ed25519 SHA256:...`.
///
/// ```
/// use etl_ssh::HostKey;
///
/// # fn main() -> Result<(), etl_ssh::Error> {
/// let key = HostKey::from_openssh(
///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti partner",
/// )?;
/// assert_eq!(key.algorithm(), "ssh-ed25519");
/// assert_eq!(key.fingerprint(), "SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ");
/// assert_eq!(
///     key.to_string(),
///     "ssh-ed25519 SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ"
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    algorithm: String,
    blob: Vec<u8>,
}

impl HostKey {
    /// Builds from the SSH wire encoding (the blob libssh2 returns).
    ///
    /// A blob that is empty or garbled is a protocol error: it came from the server.
    pub(crate) fn from_blob(blob: &[u8]) -> Result<HostKey> {
        parse_blob(blob).map_err(|reason| Error::Ssh {
            kind: ErrorKind::Protocol,
            context: format!("the server sent a malformed host key: {reason}"),
            source: None,
        })
    }

    /// Parses an OpenSSH public key line: `type base64 [comment]`.
    ///
    /// The fields may be separated by spaces or tabs; the comment is ignored.
    ///
    /// ```
    /// use etl_ssh::HostKey;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let key = HostKey::from_openssh(
    ///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti",
    /// )?;
    /// assert_eq!(key.algorithm(), "ssh-ed25519");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if the line
    /// is empty, lacks the key data, the key data is not base64 or not a
    /// well-formed key, or its type differs from the type field; also for a
    /// certificate, which cannot be pinned.
    pub fn from_openssh(line: impl AsRef<str>) -> Result<HostKey> {
        const WHAT: &str = "public key line";
        let mut rest = line.as_ref().as_bytes();
        let Some(kind) = next_field(&mut rest) else {
            return Err(Error::invalid(
                WHAT,
                "it is empty; expected `type base64 [comment]`, as in a .pub file",
            ));
        };
        let Some(data) = next_field(&mut rest) else {
            return Err(Error::invalid(
                WHAT,
                format!(
                    "there is no key data after `{}`; expected `type base64 [comment]`",
                    quote(kind)
                ),
            ));
        };
        parse_key_fields(kind, data).map_err(|reason| {
            if looks_like_key_type(data) {
                Error::invalid(
                    WHAT,
                    format!(
                        "{reason}; this looks like a known_hosts line: give only \
                         `type base64 [comment]`, or use KnownHost::known_hosts_file"
                    ),
                )
            } else {
                Error::invalid(WHAT, reason)
            }
        })
    }

    /// Key type name: `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// `SHA256:...` fingerprint as OpenSSH prints it.
    ///
    /// The SHA-256 digest of the key's wire encoding in base64 without
    /// padding, exactly as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        sha256_text(&self.digest())
    }

    /// The OpenSSH public key line, `type base64`, ready for a pin or `known_hosts`.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm, STANDARD.encode(&self.blob))
    }

    /// The key's SSH wire encoding, as the server sent it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.blob
    }

    fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.blob).into()
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.fingerprint())
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey")
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// The pins that apply to one host and port, loaded once per connection.
#[derive(Debug)]
pub(crate) struct HostKeyPolicy {
    /// The host as given, for error messages.
    host: String,
    port: u16,
    /// Everything that accepts a key, in pin order (and file order within a file).
    accept: Vec<Accept>,
    /// Applicable `@revoked` lines.
    revoked: Vec<SourcedKey>,
    /// The name `known_hosts` lines are matched against.
    lookup: String,
    /// Where [`Self::lookup`] came from, for errors: `"host_key_alias"` or `"host"`.
    lookup_from: &'static str,
    /// The name a host certificate must list: the alias, else the host.
    principal: String,
    /// Where to record a first-seen key, for trust on first use.
    record_to: Option<PathBuf>,
}

#[derive(Debug)]
enum Accept {
    Fingerprint([u8; 32]),
    Key(SourcedKey),
    /// A certificate signed by this CA key.
    CertAuthority(SourcedKey),
}

impl Accept {
    /// As listed in a mismatch error.
    fn describe(&self) -> String {
        match self {
            Accept::Fingerprint(digest) => format!("{} (fingerprint pin)", sha256_text(digest)),
            Accept::Key(k) => format!(
                "{} ({}, {})",
                k.key.fingerprint(),
                k.key.algorithm(),
                k.source
            ),
            Accept::CertAuthority(ca) => format!(
                "a host certificate signed by CA {} ({}, {})",
                ca.key.fingerprint(),
                ca.key.algorithm(),
                ca.source
            ),
        }
    }
}

/// A key and where it came from: `path:line` or `public key pin`.
#[derive(Debug)]
struct SourcedKey {
    key: HostKey,
    source: String,
}

impl HostKeyPolicy {
    /// Reads the `known_hosts` files among `pins` and keeps what applies to `host`/`port`.
    ///
    /// Each file is read once, even if given in several pins.
    ///
    /// # Errors
    ///
    /// [`Error::KnownHostsFile`] if a file cannot be read.
    pub(crate) fn load(
        pins: &[KnownHost],
        host: &str,
        port: u16,
        alias: Option<&str>,
    ) -> Result<HostKeyPolicy> {
        // OpenSSH's HostKeyAlias replaces the whole name, port included.
        let (lookup, lookup_from) = match alias {
            Some(alias) => (alias.to_ascii_lowercase(), "host_key_alias"),
            None => (lookup_name(host, port), "host"),
        };
        let mut policy = HostKeyPolicy {
            host: host.to_owned(),
            port,
            accept: Vec::new(),
            revoked: Vec::new(),
            lookup,
            lookup_from,
            principal: alias.unwrap_or(host).to_owned(),
            record_to: None,
        };
        let mut files_read: Vec<&Path> = Vec::new();
        for pin in pins {
            match &pin.pin {
                Pin::Fingerprint(digest) => policy.accept.push(Accept::Fingerprint(*digest)),
                Pin::PublicKey(key) => policy.accept.push(Accept::Key(SourcedKey {
                    key: key.clone(),
                    source: "public key pin".to_owned(),
                })),
                Pin::KnownHostsFile(path) => {
                    if !files_read.contains(&path.as_path()) {
                        files_read.push(path);
                        policy.load_file(path)?;
                    }
                }
                Pin::CertAuthority(key) => policy.accept.push(Accept::CertAuthority(SourcedKey {
                    key: key.clone(),
                    source: "cert_authority pin".to_owned(),
                })),
                Pin::TrustOnFirstUse(path) => {
                    if !files_read.contains(&path.as_path()) && path.exists() {
                        files_read.push(path);
                        policy.load_file(path)?;
                    }
                    policy.record_to.get_or_insert_with(|| path.clone());
                }
            }
        }
        Ok(policy)
    }

    fn load_file(&mut self, path: &Path) -> Result<()> {
        let data = std::fs::read(path).map_err(|source| Error::KnownHostsFile {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_known_hosts(&data, &path.display().to_string());
        Ok(())
    }

    /// Keeps the lines of `known_hosts` content that apply to the lookup name.
    ///
    /// `origin` names the content in sources and log messages (the file's path).
    /// Malformed lines are skipped with a warning, as for a file.
    pub(crate) fn load_known_hosts(&mut self, data: &[u8], origin: &str) {
        let lookup = self.lookup.clone();
        let lookup = lookup.as_str();
        let (mut accepted, mut revoked, mut authorities) = (0usize, 0usize, 0usize);
        for (index, line) in data.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let entry = match parse_known_hosts_line(line) {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(reason) => {
                    log::warn!("{origin}:{number}: skipping malformed known_hosts line: {reason}");
                    continue;
                }
            };
            if !hosts_match(&entry.hosts, lookup) {
                continue;
            }
            let source = format!("{origin}:{number}");
            match entry.marker {
                Some(Marker::CertAuthority) => {
                    authorities += 1;
                    self.accept.push(Accept::CertAuthority(SourcedKey {
                        key: entry.key,
                        source: format!("{source} @cert-authority"),
                    }));
                }
                Some(Marker::Revoked) => {
                    revoked += 1;
                    self.revoked.push(SourcedKey {
                        key: entry.key,
                        source,
                    });
                }
                None => {
                    accepted += 1;
                    self.accept.push(Accept::Key(SourcedKey {
                        key: entry.key,
                        source,
                    }));
                }
            }
        }
        log::debug!(
            "known_hosts {origin}: {accepted} key(s), {authorities} certificate authorities and \
             {revoked} revoked key(s) apply to {lookup}"
        );
    }

    fn is_revoked(&self, key: &HostKey) -> Option<&SourcedKey> {
        self.revoked.iter().find(|r| r.key == *key)
    }

    /// [`Error::HostKeyRevoked`] when an applicable `@revoked` line lists `key`.
    fn not_revoked(&self, key: &HostKey) -> Result<()> {
        match self.is_revoked(key) {
            None => Ok(()),
            Some(revoked) => Err(Error::HostKeyRevoked {
                host: self.host.clone(),
                port: self.port,
                key_type: key.algorithm().to_owned(),
                seen: key.fingerprint(),
                revoked_by: revoked.source.clone(),
            }),
        }
    }

    /// Trust on first use: appends `seen` under the lookup name.
    ///
    /// Under an exclusive lock on the file (`flock`, waited for at most
    /// [`RECORD_LOCK_WAIT`]), the file is read again: when a key for the
    /// name is there now (another connection recorded one meanwhile),
    /// nothing is appended and `seen` is checked against it like any pin.
    /// Otherwise the line goes at the end, after a newline if the file does
    /// not end in one. A new file is created 0600, a new folder 0700.
    fn record_first_use(&self, path: &Path, seen: &HostKey) -> Result<()> {
        use std::io::{Read as _, Seek as _, Write as _};
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

        check_recordable_name(&self.lookup, self.lookup_from)?;
        let write_error = |source: std::io::Error| {
            Error::io(
                format!(
                    "cannot record the host key of {}:{} in known_hosts file {}: {source}",
                    self.host,
                    self.port,
                    path.display()
                ),
                source,
            )
        };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !folder.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(folder)
                    .map_err(write_error)?;
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(write_error)?;
        lock_exclusive(&file, path)?;
        let mut data = Vec::new();
        file.rewind().map_err(write_error)?;
        file.read_to_end(&mut data).map_err(write_error)?;

        let mut now = HostKeyPolicy {
            host: self.host.clone(),
            port: self.port,
            accept: Vec::new(),
            revoked: Vec::new(),
            lookup: self.lookup.clone(),
            lookup_from: self.lookup_from,
            principal: self.principal.clone(),
            record_to: None,
        };
        now.load_known_hosts(&data, &path.display().to_string());
        if !now.accept.is_empty() || now.is_revoked(seen).is_some() {
            log::info!(
                "{} now lists a key for {}: another connection recorded it first; \
                 checking {seen} against it",
                path.display(),
                self.lookup
            );
            return now.check(seen);
        }

        let mut line = String::new();
        if data.last().is_some_and(|&b| b != b'\n') {
            // Else the previous line and ours would merge into one broken line.
            line.push('\n');
        }
        line.push_str(&format!("{} {}\n", self.lookup, seen.to_openssh()));
        file.write_all(line.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        log::warn!(
            "trusting the host key of {}:{} on first use: {seen}, recorded as {} in {}",
            self.host,
            self.port,
            self.lookup,
            path.display()
        );
        Ok(())
    }

    /// Key types to prefer in the handshake, in pin order, without duplicates.
    ///
    /// The types of public key pins and of applicable `known_hosts` keys that are
    /// not revoked; fingerprint pins carry no type. A key type name, so an RSA
    /// key gives `ssh-rsa` (negotiated as `rsa-sha2-512`/`rsa-sha2-256`).
    pub(crate) fn preferred_key_types(&self) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for accept in &self.accept {
            if let Accept::Key(k) = accept {
                let algorithm = k.key.algorithm();
                if self.is_revoked(&k.key).is_none() && !types.iter().any(|t| t == algorithm) {
                    types.push(algorithm.to_owned());
                }
            }
        }
        types
    }

    /// Ok when `seen` matches a pin and is not revoked.
    ///
    /// # Errors
    ///
    /// [`Error::HostKeyRevoked`] if an applicable `@revoked` line lists `seen`,
    /// whatever else accepts it; [`Error::HostKeyUnknown`] if no pin applies to
    /// this host; [`Error::HostKeyMismatch`] if pins apply but none matches.
    pub(crate) fn check(&self, seen: &HostKey) -> Result<()> {
        self.not_revoked(seen)?;
        let digest = seen.digest();
        for accept in &self.accept {
            let matched_by = match accept {
                Accept::Fingerprint(pinned) if *pinned == digest => "a fingerprint pin",
                Accept::Key(k) if k.key == *seen => k.source.as_str(),
                _ => continue,
            };
            log::debug!(
                "host key of {}:{} ({seen}) accepted: matches {matched_by}",
                self.host,
                self.port
            );
            return Ok(());
        }
        if let (true, Some(path)) = (self.accept.is_empty(), &self.record_to) {
            return self.record_first_use(path, seen);
        }
        if self.accept.is_empty() {
            return Err(Error::HostKeyUnknown {
                host: self.host.clone(),
                port: self.port,
                key_type: seen.algorithm().to_owned(),
                seen: seen.fingerprint(),
            });
        }
        Err(Error::HostKeyMismatch {
            host: self.host.clone(),
            port: self.port,
            key_type: seen.algorithm().to_owned(),
            seen: seen.fingerprint(),
            expected: self.accept.iter().map(Accept::describe).collect(),
        })
    }
}

/// How long trust on first use waits for another process's lock on the
/// `known_hosts` file before giving up.
const RECORD_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes an exclusive `flock` on `file`, waiting at most [`RECORD_LOCK_WAIT`].
fn lock_exclusive(file: &std::fs::File, path: &Path) -> Result<()> {
    use rustix::fs::{flock, FlockOperation};
    let deadline = std::time::Instant::now() + RECORD_LOCK_WAIT;
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {}
            Err(e) => {
                return Err(Error::io(
                    format!("cannot lock known_hosts file {}: {e}", path.display()),
                    e.into(),
                ))
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                operation: format!(
                    "waiting for another process's lock on known_hosts file {}",
                    path.display()
                ),
                timeout: RECORD_LOCK_WAIT,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Refuses a name that cannot be written as one plain `known_hosts` host
/// field: it would break the line, or be read back as a pattern, a marker,
/// a comment or a hashed name, and so pin the key for other hosts too.
fn check_recordable_name(name: &str, from: &'static str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace or a control character")
    } else if name.contains([',', '*', '?', '!']) {
        Some("it contains `,`, `*`, `?` or `!`, which known_hosts reads as a pattern")
    } else if name.starts_with(['@', '#', '|']) {
        Some("it starts with `@`, `#` or `|`, which known_hosts reads as a marker, a comment or a hashed name")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::invalid(
            from,
            format!(
                "{name:?} cannot be recorded in known_hosts for trust on first use: {why}; \
                 use a plain host name"
            ),
        )),
    }
}

// ---------------------------------------------------------------------------
// Hooks for `crate::fuzzing`, which cannot see the private submodules.

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_lookup_name(host: &str, port: u16) -> String {
    lookup_name(host, port)
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_glob_match(pattern: &[u8], text: &[u8]) -> bool {
    known_hosts::glob_match(pattern, text)
}

/// Parses a fingerprint as [`KnownHost::fingerprint`] does and prints it back.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_canonical_fingerprint(text: &str) -> Result<String> {
    parse_fingerprint(text)
        .map(|digest| sha256_text(&digest))
        .map_err(|reason| Error::invalid("fingerprint", reason))
}

// ---------------------------------------------------------------------------
// Fingerprints

fn sha256_text(digest: &[u8; 32]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
}

fn parse_fingerprint(text: &str) -> std::result::Result<[u8; 32], String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!(
            "it is empty; expected `SHA256:` and 43 base64 characters; {HOW_TO_FINGERPRINT}"
        ));
    }
    if text.contains(char::is_whitespace) {
        return Err(
            "it contains spaces; give only the `SHA256:...` field of the `ssh-keygen -lf` output"
                .to_owned(),
        );
    }
    let Some((prefix, body)) = text.split_once(':') else {
        return Err(format!(
            "it does not start with `SHA256:`; {HOW_TO_FINGERPRINT}"
        ));
    };
    if !prefix.eq_ignore_ascii_case("SHA256") {
        if prefix.eq_ignore_ascii_case("MD5") || looks_like_md5_hex(text) {
            return Err(
                "MD5 fingerprints are not accepted; get the SHA256 one with \
                 `ssh-keygen -lf <public key file>` (or `ssh-keyscan <host> | ssh-keygen -lf -`)"
                    .to_owned(),
            );
        }
        return Err(format!(
            "`{}:` fingerprints are not accepted, only `SHA256:`; {HOW_TO_FINGERPRINT}",
            quote(prefix.as_bytes())
        ));
    }
    let body = body.strip_suffix('=').unwrap_or(body);
    if body.len() != 43 {
        return Err(format!(
            "expected 43 base64 characters after `SHA256:`, got {}",
            body.chars().count()
        ));
    }
    BASE64_ANY_PADDING
        .decode(body)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            "the part after `SHA256:` is not valid base64 (standard alphabet, \
             as `ssh-keygen -lf` prints it)"
                .to_owned()
        })
}

/// Old OpenSSH printed MD5 fingerprints without a prefix: `16:27:ac:...`.
fn looks_like_md5_hex(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 16
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}
