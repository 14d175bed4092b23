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
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use ssh_key::known_hosts::HostPatterns;

use crate::{Error, ErrorKind, Result};

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
    /// `@cert-authority` lines are ignored: host certificates are not
    /// supported. A malformed line is skipped with a warning in the log.
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
    /// [`host_key_alias`](crate::SessionBuilder::host_key_alias).
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
    /// Where to record a first-seen key, for trust on first use.
    record_to: Option<PathBuf>,
}

#[derive(Debug)]
enum Accept {
    Fingerprint([u8; 32]),
    Key(SourcedKey),
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
        let lookup = match alias {
            Some(alias) => alias.to_ascii_lowercase(),
            None => lookup_name(host, port),
        };
        let mut policy = HostKeyPolicy {
            host: host.to_owned(),
            port,
            accept: Vec::new(),
            revoked: Vec::new(),
            lookup: lookup.clone(),
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
                        policy.load_file(path, &lookup)?;
                    }
                }
                Pin::TrustOnFirstUse(path) => {
                    if !files_read.contains(&path.as_path()) && path.exists() {
                        files_read.push(path);
                        policy.load_file(path, &lookup)?;
                    }
                    policy.record_to.get_or_insert_with(|| path.clone());
                }
            }
        }
        Ok(policy)
    }

    fn load_file(&mut self, path: &Path, lookup: &str) -> Result<()> {
        let data = std::fs::read(path).map_err(|source| Error::KnownHostsFile {
            path: path.to_path_buf(),
            source,
        })?;
        let (mut accepted, mut revoked) = (0usize, 0usize);
        for (index, line) in data.split(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let entry = match parse_known_hosts_line(line) {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(reason) => {
                    log::warn!(
                        "{}:{number}: skipping malformed known_hosts line: {reason}",
                        path.display()
                    );
                    continue;
                }
            };
            if !hosts_match(&entry.hosts, lookup) {
                continue;
            }
            let source = format!("{}:{number}", path.display());
            match entry.marker {
                Some(Marker::CertAuthority) => log::debug!(
                    "{source}: ignoring @cert-authority line for {lookup}: host certificates \
                     are not supported (libssh2 cannot verify them)"
                ),
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
            "known_hosts {}: {accepted} key(s) and {revoked} revoked key(s) apply to {lookup}",
            path.display()
        );
        Ok(())
    }

    fn is_revoked(&self, key: &HostKey) -> Option<&SourcedKey> {
        self.revoked.iter().find(|r| r.key == *key)
    }

    /// Trust on first use: appends `seen` under the lookup name.
    fn record_first_use(&self, path: &Path, seen: &HostKey) -> Result<()> {
        use std::io::Write as _;
        let line = format!("{} {}\n", self.lookup, seen.to_openssh());
        let write_error = |source| Error::KnownHostsFile {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(write_error)?;
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
        if let Some(revoked) = self.is_revoked(seen) {
            return Err(Error::HostKeyRevoked {
                host: self.host.clone(),
                port: self.port,
                key_type: seen.algorithm().to_owned(),
                seen: seen.fingerprint(),
                revoked_by: revoked.source.clone(),
            });
        }
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

// ---------------------------------------------------------------------------
// Public keys

/// Parses the key type and base64 fields of a public key or `known_hosts` line.
fn parse_key_fields(kind: &[u8], data: &[u8]) -> std::result::Result<HostKey, String> {
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

fn looks_like_key_type(field: &[u8]) -> bool {
    ["ssh-", "ecdsa-", "sk-", "rsa-"]
        .iter()
        .any(|p| field.starts_with(p.as_bytes()))
}

/// RFC 4251 §6: printable US-ASCII, no comma, at most 64 characters.
fn valid_algorithm_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

/// Reads one SSH `string` (u32 big-endian length, then the bytes).
fn read_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
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
fn parse_blob(blob: &[u8]) -> std::result::Result<HostKey, String> {
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
            "{algorithm} is a certificate, not a plain public key; host certificates are \
             not supported: use the host's own key"
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

fn is_known_algorithm(algorithm: &str) -> bool {
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

// ---------------------------------------------------------------------------
// known_hosts lines

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    CertAuthority,
    Revoked,
}

#[derive(Debug)]
struct KnownHostsEntry {
    marker: Option<Marker>,
    hosts: HostPatterns,
    key: HostKey,
}

/// Splits off the next field separated by spaces or tabs.
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
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
fn parse_known_hosts_line(line: &[u8]) -> std::result::Result<Option<KnownHostsEntry>, String> {
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
fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == DEFAULT_PORT {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

fn hosts_match(hosts: &HostPatterns, lookup: &str) -> bool {
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
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.to_ascii_lowercase() == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|tail| tail.iter().all(|&c| c == b'*'))
}

/// A short, printable excerpt of user input for a message.
fn quote(bytes: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs;
    use std::io::Write as _;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, Once};

    // -- helpers ----------------------------------------------------------

    fn put_string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&u32::try_from(s.len()).expect("short").to_be_bytes());
        out.extend_from_slice(s);
    }

    fn blob(fields: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            put_string(&mut out, f);
        }
        out
    }

    /// Synthetic keys: well-formed encodings, distinct per seed.
    fn ed25519(seed: u8) -> HostKey {
        HostKey::from_blob(&blob(&[b"ssh-ed25519", &[seed; 32]])).expect("ed25519 blob")
    }

    fn ecdsa(seed: u8) -> HostKey {
        let mut point = vec![4u8];
        point.extend_from_slice(&[seed; 64]);
        HostKey::from_blob(&blob(&[b"ecdsa-sha2-nistp256", b"nistp256", &point]))
            .expect("ecdsa blob")
    }

    fn rsa(seed: u8) -> HostKey {
        let mut n = vec![0u8, 0xc0];
        n.extend_from_slice(&[seed; 255]);
        HostKey::from_blob(&blob(&[b"ssh-rsa", &[1, 0, 1], &n])).expect("rsa blob")
    }

    fn known_hosts(content: &str) -> tempfile::NamedTempFile {
        known_hosts_bytes(content.as_bytes())
    }

    fn known_hosts_bytes(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content).expect("write known_hosts");
        file.flush().expect("flush");
        file
    }

    fn load(file: &tempfile::NamedTempFile, host: &str, port: u16) -> HostKeyPolicy {
        HostKeyPolicy::load(
            &[KnownHost::known_hosts_file(file.path())],
            host,
            port,
            None,
        )
        .expect("load known_hosts")
    }

    /// Does a known_hosts file with `content` accept `key` for host/port?
    fn accepts(content: &str, host: &str, port: u16, key: &HostKey) -> bool {
        let file = known_hosts(content);
        load(&file, host, port).check(key).is_ok()
    }

    fn kind_of(result: Result<()>) -> ErrorKind {
        result.expect_err("an error").kind()
    }

    fn ssh_keygen(args: &[&str], path: &Path) -> String {
        let out = Command::new("ssh-keygen")
            .args(args)
            .arg(path)
            .output()
            .expect("run ssh-keygen");
        assert!(out.status.success(), "ssh-keygen {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Generates a real key pair; returns the .pub line and the .pub path.
    fn real_key(dir: &Path, kind: &str) -> (String, PathBuf) {
        let path = dir.join(format!("id_{kind}"));
        let mut args = vec!["-q", "-t", kind, "-N", "", "-C", "etl test key"];
        if kind == "rsa" {
            args.extend(["-b", "2048"]);
        }
        args.push("-f");
        ssh_keygen(&args, &path);
        let pub_path = dir.join(format!("id_{kind}.pub"));
        let line = fs::read_to_string(&pub_path).expect("read .pub");
        (line.trim_end().to_owned(), pub_path)
    }

    /// Records log lines, so tests can check what the warnings say.
    struct Capture;
    static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static CAPTURING: AtomicBool = AtomicBool::new(false);
    static CAPTURE: Capture = Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let line = format!("{} {}", record.level(), record.args());
            CAPTURED.lock().expect("log lock").push(line);
        }
        fn flush(&self) {}
    }

    /// Installs the capturing logger, unless another one is installed.
    fn capture_logs() {
        static INIT: Once = Once::new();
        INIT.call_once(|| {
            if log::set_logger(&CAPTURE).is_ok() {
                log::set_max_level(log::LevelFilter::Trace);
                CAPTURING.store(true, Ordering::SeqCst);
            }
        });
    }

    /// Log lines mentioning `needle`, or `None` if another logger is installed.
    fn logs_about(needle: &str) -> Option<Vec<String>> {
        capture_logs();
        if !CAPTURING.load(Ordering::SeqCst) {
            return None;
        }
        let logs = CAPTURED.lock().expect("log lock");
        Some(
            logs.iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect(),
        )
    }

    // -- fingerprints -----------------------------------------------------

    #[test]
    fn fingerprint_parses_ssh_keygen_form() {
        let key = ed25519(1);
        let pin = KnownHost::fingerprint(key.fingerprint()).expect("valid fingerprint");
        assert_eq!(pin.pin, Pin::Fingerprint(key.digest()));
        // Surrounding whitespace, as pasted, is fine.
        let pin = KnownHost::fingerprint(format!("  {}\n", key.fingerprint())).expect("trimmed");
        assert_eq!(pin.pin, Pin::Fingerprint(key.digest()));
    }

    #[test]
    fn fingerprint_accepts_padding() {
        let key = ed25519(2);
        let padded = format!("{}=", key.fingerprint());
        let pin = KnownHost::fingerprint(&padded).expect("padded fingerprint");
        assert_eq!(pin.pin, Pin::Fingerprint(key.digest()));
    }

    #[test]
    fn fingerprint_rejects_md5_with_a_hint() {
        for md5 in [
            "MD5:ae:6f:ba:1b:70:2c:ae:c7:5c:ab:6e:4d:5e:d4:c7:23",
            "ae:6f:ba:1b:70:2c:ae:c7:5c:ab:6e:4d:5e:d4:c7:23",
            "MD5:16:27:ac",
        ] {
            let err = KnownHost::fingerprint(md5).expect_err("MD5 refused");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            let text = err.to_string();
            assert!(text.contains("MD5"), "{text}");
            assert!(text.contains("ssh-keygen -lf"), "{text}");
        }
    }

    #[test]
    fn fingerprint_rejects_other_prefixes() {
        let body = ed25519(3).fingerprint().replace("SHA256:", "");
        for bad in [
            format!("SHA1:{body}"),
            format!("SHA512:{body}"),
            body.clone(),
        ] {
            let err = KnownHost::fingerprint(&bad).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains("SHA256:"), "{err}");
        }
    }

    #[test]
    fn fingerprint_rejects_wrong_length() {
        let fp = ed25519(4).fingerprint();
        for bad in [
            &fp[..fp.len() - 1],
            &format!("{fp}A"),
            "SHA256:",
            "SHA256:abc",
            &format!("{fp}=="),
        ] {
            let err = KnownHost::fingerprint(bad).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains("43"), "{err}");
        }
    }

    #[test]
    fn fingerprint_rejects_bad_base64() {
        let fp = ed25519(5).fingerprint();
        let bang = format!("{}!", &fp[..fp.len() - 1]);
        let url_safe = format!("SHA256:{}", "-_".repeat(21) + "A");
        // 43 characters whose last carries bits beyond the 32 bytes.
        let trailing_bits = format!("SHA256:{}", "A".repeat(42) + "B");
        for bad in [bang, url_safe, trailing_bits] {
            let err = KnownHost::fingerprint(&bad).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains("base64"), "{err}");
        }
    }

    #[test]
    fn fingerprint_rejects_empty_and_whole_output_lines() {
        for bad in ["", "   "] {
            let err = KnownHost::fingerprint(bad).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains("empty"), "{err}");
        }
        let line = format!("256 {} root@host (ED25519)", ed25519(6).fingerprint());
        let err = KnownHost::fingerprint(line).expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("spaces"), "{err}");
    }

    // -- public key lines -------------------------------------------------

    #[test]
    fn public_key_parses_real_keys_with_and_without_comment() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (kind, algorithm) in [
            ("ed25519", "ssh-ed25519"),
            ("ecdsa", "ecdsa-sha2-nistp256"),
            ("rsa", "ssh-rsa"),
        ] {
            let (line, _) = real_key(dir.path(), kind);
            let key = HostKey::from_openssh(&line).expect("with comment");
            assert_eq!(key.algorithm(), algorithm);
            let bare: Vec<&str> = line.split(' ').take(2).collect();
            let bare = bare.join(" ");
            assert_eq!(key.to_openssh(), bare);
            assert_eq!(HostKey::from_openssh(&bare).expect("without comment"), key);
            let pin = KnownHost::public_key(&line).expect("pin");
            assert_eq!(pin, KnownHost::from(key.clone()));
            // Tabs and runs of spaces separate fields too, as OpenSSH allows.
            let spaced = format!(
                "  {}\t\t{}   trailing comment  ",
                key.algorithm(),
                &bare[algorithm.len() + 1..]
            );
            assert_eq!(HostKey::from_openssh(spaced).expect("spaced"), key);
        }
    }

    #[test]
    fn public_key_ecdsa_curves() {
        let dir = tempfile::tempdir().expect("temp dir");
        for bits in ["384", "521"] {
            let path = dir.path().join(format!("id_ecdsa{bits}"));
            ssh_keygen(&["-q", "-t", "ecdsa", "-b", bits, "-N", "", "-f"], &path);
            let line = fs::read_to_string(dir.path().join(format!("id_ecdsa{bits}.pub")))
                .expect("read .pub");
            let key = HostKey::from_openssh(line.trim_end()).expect("ecdsa key");
            assert_eq!(key.algorithm(), format!("ecdsa-sha2-nistp{bits}"));
        }
    }

    #[test]
    fn public_key_rejects_type_mismatch() {
        let ed = ed25519(7).to_openssh();
        let data = ed.split(' ').nth(1).expect("data");
        for kind in ["ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed448"] {
            let err = KnownHost::public_key(format!("{kind} {data} c")).expect_err("mismatch");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains("ssh-ed25519"), "{err}");
        }
        // An ecdsa-sha2-nistp256 blob that claims another curve.
        let mut point = vec![4u8];
        point.extend_from_slice(&[9; 64]);
        let forged = blob(&[b"ecdsa-sha2-nistp256", b"nistp384", &point]);
        let line = format!("ecdsa-sha2-nistp256 {}", STANDARD.encode(forged));
        assert_eq!(
            HostKey::from_openssh(line).expect_err("bad curve").kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn public_key_accepts_rsa_signature_names_as_type() {
        let key = rsa(1);
        let data = STANDARD.encode(key.as_bytes());
        let parsed = HostKey::from_openssh(format!("rsa-sha2-512 {data}")).expect("alias");
        assert_eq!(parsed, key);
        assert_eq!(parsed.algorithm(), "ssh-rsa");
    }

    #[test]
    fn public_key_rejects_garbage() {
        let ed = ed25519(8).to_openssh();
        let data = ed.split(' ').nth(1).expect("data");
        let truncated = &data[..data.len() - 8];
        let cases = [
            "".to_owned(),
            "   ".to_owned(),
            "ssh-ed25519".to_owned(),
            "ssh-ed25519 !!!not-base64!!!".to_owned(),
            "hello world".to_owned(),
            format!("ssh-ed25519 {truncated}"),
            "ssh-ed25519 AAAA".to_owned(),
            format!("ssh-ed25519 {data}{data}"),
            format!("ssh-ed25519 {}", "Z".repeat(100_000)),
        ];
        for line in &cases {
            let err = KnownHost::public_key(line).expect_err("garbage refused");
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{:.60}", line);
            assert!(
                err.to_string().len() < 400,
                "message quotes too much: {err}"
            );
        }
    }

    #[test]
    fn public_key_hints_at_known_hosts_lines() {
        let err =
            KnownHost::public_key(format!("sftp.partner.example {}", ed25519(9).to_openssh()))
                .expect_err("known_hosts line refused");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("known_hosts"), "{err}");
    }

    #[test]
    fn public_key_rejects_certificates() {
        let cert = blob(&[b"ssh-ed25519-cert-v01@openssh.com", &[0; 32], &[1; 32]]);
        let line = format!("ssh-ed25519-cert-v01@openssh.com {}", STANDARD.encode(cert));
        let err = HostKey::from_openssh(line).expect_err("certificate refused");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    // -- HostKey from the wire ---------------------------------------------

    #[test]
    fn from_blob_fingerprint_matches_ssh_keygen() {
        let dir = tempfile::tempdir().expect("temp dir");
        for kind in ["ed25519", "ecdsa", "rsa"] {
            let (line, pub_path) = real_key(dir.path(), kind);
            let data = line.split(' ').nth(1).expect("data");
            let wire = STANDARD.decode(data).expect("base64");
            let key = HostKey::from_blob(&wire).expect("from_blob");
            let printed = ssh_keygen(&["-lf"], &pub_path);
            let expected = printed
                .split_whitespace()
                .nth(1)
                .expect("fingerprint field");
            assert_eq!(key.fingerprint(), expected, "{kind}");
            assert_eq!(key.to_string(), format!("{} {expected}", key.algorithm()));
            assert_eq!(key.as_bytes(), wire.as_slice());
            assert_eq!(
                key.to_openssh(),
                line.split(' ').take(2).collect::<Vec<_>>().join(" ")
            );
            // The fingerprint pin built from it accepts it.
            let policy = HostKeyPolicy::load(
                &[KnownHost::fingerprint(expected).expect("pin")],
                "h",
                22,
                None,
            )
            .expect("load");
            policy.check(&key).expect("fingerprint pin accepts");
        }
    }

    #[test]
    fn from_blob_rejects_garbled_blobs_as_protocol_errors() {
        let mut trailing = blob(&[b"ssh-ed25519", &[1; 32]]);
        trailing.push(0);
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0, 0, 0],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 50, b's', b's', b'h'],
            blob(&[b"ssh-ed25519"]),
            blob(&[b"ssh ed25519", &[1; 32]]),
            blob(&[b"ssh-ed25519", &[1; 31]]),
            trailing,
            blob(&[b"ssh-rsa", &[1, 0, 1]]),
            blob(&[b"ssh-rsa", &[0, 1], &[0x80; 64]]),
            blob(&[b"ecdsa-sha2-nistp256", b"nistp256", &[4; 10]]),
            blob(&[b"some-new-type@example.com"]),
            b"\xff\xff\xff\xffgarbage".to_vec(),
        ];
        for case in &cases {
            let err = HostKey::from_blob(case).expect_err("garbled blob refused");
            assert_eq!(err.kind(), ErrorKind::Protocol, "{case:?}");
            assert!(err.to_string().contains("malformed host key"), "{err}");
        }
    }

    #[test]
    fn from_blob_keeps_unknown_types_opaque() {
        let key = HostKey::from_blob(&blob(&[b"some-new-type@example.com", b"x", b"y"]))
            .expect("opaque key");
        assert_eq!(key.algorithm(), "some-new-type@example.com");
        let sk = HostKey::from_blob(&blob(&[b"sk-ssh-ed25519@openssh.com", &[3; 32], b"ssh:"]))
            .expect("sk key");
        assert_eq!(sk.algorithm(), "sk-ssh-ed25519@openssh.com");
    }

    #[test]
    fn debug_shows_fingerprints_not_bytes() {
        let key = ed25519(10);
        let text = format!("{:?}", KnownHost::from(key.clone()));
        assert!(text.contains(&key.fingerprint()), "{text}");
        let text = format!(
            "{:?}",
            KnownHost::fingerprint(key.fingerprint()).expect("pin")
        );
        assert!(text.contains(&key.fingerprint()), "{text}");
    }

    // -- known_hosts matching ----------------------------------------------

    #[test]
    fn lookup_name_follows_put_host_port() {
        assert_eq!(lookup_name("Host.Example", 22), "host.example");
        assert_eq!(lookup_name("host.example", 2222), "[host.example]:2222");
        assert_eq!(lookup_name("::1", 22), "::1");
        assert_eq!(lookup_name("::1", 830), "[::1]:830");
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"*.example.com", b"sftp.example.com"));
        assert!(!glob_match(b"*.example.com", b"example.com"));
        assert!(glob_match(b"sftp?.example.com", b"sftp1.example.com"));
        assert!(!glob_match(b"sftp?.example.com", b"sftp.example.com"));
        assert!(!glob_match(b"sftp?.example.com", b"sftp12.example.com"));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
        assert!(glob_match(b"SFTP.*", b"sftp.x"));
        assert!(glob_match(b"[*.example.net]:999", b"[a.example.net]:999"));
        assert!(!glob_match(b"[*.example.net]:999", b"[a.example.net]:9999"));
        // Linear enough for long patterns.
        let long = "*a".repeat(5_000);
        assert!(!glob_match(long.as_bytes(), "a".repeat(255).as_bytes()));
    }

    #[test]
    fn plain_host_line_is_for_port_22_only() {
        let key = ed25519(11);
        let content = format!("sftp.partner.example {}\n", key.to_openssh());
        assert!(accepts(&content, "sftp.partner.example", 22, &key));
        let file = known_hosts(&content);
        assert_eq!(
            kind_of(load(&file, "sftp.partner.example", 2222).check(&key)),
            ErrorKind::HostKeyUnknown
        );
        assert_eq!(
            kind_of(load(&file, "other.example", 22).check(&key)),
            ErrorKind::HostKeyUnknown
        );
    }

    #[test]
    fn bracketed_port_line_is_for_that_port_only() {
        let key = ed25519(12);
        let content = format!("[sftp.partner.example]:2222 {}\n", key.to_openssh());
        assert!(accepts(&content, "sftp.partner.example", 2222, &key));
        let file = known_hosts(&content);
        assert_eq!(
            kind_of(load(&file, "sftp.partner.example", 22).check(&key)),
            ErrorKind::HostKeyUnknown
        );
        assert_eq!(
            kind_of(load(&file, "sftp.partner.example", 2223).check(&key)),
            ErrorKind::HostKeyUnknown
        );
        // OpenSSH never looks up `[host]:22`.
        let content = format!("[sftp.partner.example]:22 {}\n", key.to_openssh());
        assert!(!accepts(&content, "sftp.partner.example", 22, &key));
    }

    #[test]
    fn comma_lists() {
        let key = ed25519(13);
        let content = format!(
            "a.example,sftp.partner.example,[sftp.partner.example]:2222,10.0.0.7 {}\n",
            key.to_openssh()
        );
        for (host, port) in [
            ("a.example", 22),
            ("sftp.partner.example", 22),
            ("sftp.partner.example", 2222),
            ("10.0.0.7", 22),
        ] {
            assert!(accepts(&content, host, port, &key), "{host}:{port}");
        }
        assert!(!accepts(&content, "b.example", 22, &key));
        assert!(!accepts(&content, "a.example", 2222, &key));
    }

    #[test]
    fn wildcard_patterns() {
        let key = ed25519(14);
        let content = format!(
            "*.partner.example,sftp?.other.example,[*.ports.example]:*  {}\n",
            key.to_openssh()
        );
        assert!(accepts(&content, "sftp.partner.example", 22, &key));
        assert!(accepts(&content, "sftp1.other.example", 22, &key));
        assert!(accepts(&content, "x.ports.example", 830, &key));
        assert!(!accepts(&content, "partner.example", 22, &key));
        assert!(!accepts(&content, "sftp.partner.example", 2222, &key));
        assert!(!accepts(&content, "sftp12.other.example", 22, &key));
        assert!(!accepts(&content, "x.ports.example", 22, &key));
    }

    #[test]
    fn negation_excludes_the_line() {
        let key = ed25519(15);
        let line = key.to_openssh();
        // The negation wins wherever it stands in the list.
        for hosts in [
            "*.partner.example,!test.partner.example",
            "!test.partner.example,*.partner.example",
            "test.partner.example,!test.partner.example",
        ] {
            let content = format!("{hosts} {line}\n");
            assert!(
                !accepts(&content, "test.partner.example", 22, &key),
                "{hosts}"
            );
        }
        let content = format!("*.partner.example,!test.partner.example {line}\n");
        assert!(accepts(&content, "sftp.partner.example", 22, &key));
        // A negation alone accepts nothing.
        let content = format!("!test.partner.example {line}\n");
        assert!(!accepts(&content, "sftp.partner.example", 22, &key));
        // A negated wildcard.
        let content = format!("*,!*.internal {line}\n");
        assert!(accepts(&content, "sftp.partner.example", 22, &key));
        assert!(!accepts(&content, "db.internal", 22, &key));
    }

    #[test]
    fn names_are_case_insensitive() {
        let key = ed25519(16);
        let content = format!(
            "SFTP.Partner.Example,[*.UPPER.example]:2222 {}\n",
            key.to_openssh()
        );
        assert!(accepts(&content, "sftp.partner.example", 22, &key));
        assert!(accepts(&content, "Sftp.PARTNER.example", 22, &key));
        assert!(accepts(&content, "A.upper.EXAMPLE", 2222, &key));
    }

    #[test]
    fn hashed_names_from_ssh_keygen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("known_hosts");
        let (k22, k2222, other) = (ed25519(17), ecdsa(17), ed25519(18));
        fs::write(
            &path,
            format!(
                "sftp.partner.example {}\n[sftp.partner.example]:2222 {}\nother.example {}\n",
                k22.to_openssh(),
                k2222.to_openssh(),
                other.to_openssh()
            ),
        )
        .expect("write");
        ssh_keygen(&["-q", "-H", "-f"], &path);
        let hashed = fs::read_to_string(&path).expect("read hashed");
        assert!(
            !hashed.contains("partner"),
            "ssh-keygen -H left names: {hashed}"
        );
        assert_eq!(
            hashed.lines().filter(|l| l.starts_with("|1|")).count(),
            3,
            "{hashed}"
        );

        let pins = [KnownHost::known_hosts_file(&path)];
        let policy = HostKeyPolicy::load(&pins, "sftp.partner.example", 22, None).expect("load");
        policy.check(&k22).expect("hashed port-22 line");
        assert_eq!(kind_of(policy.check(&k2222)), ErrorKind::HostKeyMismatch);
        assert_eq!(kind_of(policy.check(&other)), ErrorKind::HostKeyMismatch);

        let policy = HostKeyPolicy::load(&pins, "SFTP.partner.example", 2222, None).expect("load");
        policy.check(&k2222).expect("hashed [host]:2222 line");
        assert_eq!(kind_of(policy.check(&k22)), ErrorKind::HostKeyMismatch);

        let policy = HostKeyPolicy::load(&pins, "nobody.example", 22, None).expect("load");
        assert_eq!(kind_of(policy.check(&k22)), ErrorKind::HostKeyUnknown);
    }

    #[test]
    fn hashed_names_computed_independently() {
        // HMAC-SHA1(key = salt, message = lookup name), by hand from SHA-1:
        // H((K ^ opad) || H((K ^ ipad) || m)), so the check does not rest on
        // the same `hmac` code path as the implementation.
        fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
            let mut block = [0u8; 64];
            block[..key.len()].copy_from_slice(key);
            let inner_key: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
            let outer_key: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha1::new()
                .chain_update(&inner_key)
                .chain_update(message)
                .finalize();
            Sha1::new()
                .chain_update(&outer_key)
                .chain_update(inner)
                .finalize()
                .into()
        }
        let salt: Vec<u8> = (0u8..20)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let key = rsa(19);
        let mut content = String::new();
        for name in ["sftp.partner.example", "[sftp.partner.example]:2222"] {
            content.push_str(&format!(
                "|1|{}|{} {}\n",
                STANDARD.encode(&salt),
                STANDARD.encode(hmac_sha1(&salt, name.as_bytes())),
                key.to_openssh()
            ));
        }
        let file = known_hosts(&content);
        load(&file, "sftp.partner.example", 22)
            .check(&key)
            .expect("port 22");
        load(&file, "Sftp.Partner.Example", 2222)
            .check(&key)
            .expect("port 2222");
        assert_eq!(
            kind_of(load(&file, "sftp.partner.example", 2200).check(&key)),
            ErrorKind::HostKeyUnknown
        );
        // Cross-check the hand-made HMAC with the one the code uses.
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&salt).expect("hmac key");
        mac.update(b"sftp.partner.example");
        let via_crate: [u8; 20] = mac.finalize().into_bytes().into();
        assert_eq!(via_crate, hmac_sha1(&salt, b"sftp.partner.example"));
    }

    #[test]
    fn revoked_beats_every_acceptance() {
        let key = ed25519(20);
        let good = ed25519(21);
        let file = known_hosts(&format!(
            "sftp.partner.example {k}\n\
             sftp.partner.example {g}\n\
             @revoked * {k}\n",
            k = key.to_openssh(),
            g = good.to_openssh()
        ));
        let pins = [
            KnownHost::fingerprint(key.fingerprint()).expect("fingerprint pin"),
            KnownHost::from(key.clone()),
            KnownHost::known_hosts_file(file.path()),
        ];
        let policy = HostKeyPolicy::load(&pins, "sftp.partner.example", 22, None).expect("load");
        let err = policy.check(&key).expect_err("revoked");
        assert_eq!(err.kind(), ErrorKind::HostKeyRevoked);
        match &err {
            Error::HostKeyRevoked {
                host,
                port,
                key_type,
                seen,
                revoked_by,
                ..
            } => {
                assert_eq!(host, "sftp.partner.example");
                assert_eq!(*port, 22);
                assert_eq!(key_type, "ssh-ed25519");
                assert_eq!(seen, &key.fingerprint());
                assert_eq!(revoked_by, &format!("{}:3", file.path().display()));
            }
            other => panic!("unexpected {other:?}"),
        }
        policy.check(&good).expect("other key still accepted");
        // The revoked key's type is still preferred: `good` has it too.
        assert_eq!(policy.preferred_key_types(), ["ssh-ed25519"]);
    }

    #[test]
    fn revoked_applies_only_to_matching_hosts_and_the_same_key() {
        let key = ed25519(22);
        let content = format!(
            "sftp.partner.example {k}\n@revoked other.example {k}\n@revoked sftp.partner.example {e}\n",
            k = key.to_openssh(),
            e = ecdsa(22).to_openssh()
        );
        assert!(accepts(&content, "sftp.partner.example", 22, &key));
        // The same file refuses the key for the host whose line revokes it.
        let file = known_hosts(&content);
        assert_eq!(
            kind_of(load(&file, "other.example", 22).check(&key)),
            ErrorKind::HostKeyRevoked
        );
    }

    #[test]
    fn cert_authority_lines_are_ignored() {
        let ca = ed25519(23);
        let content = format!("@cert-authority *.partner.example {}\n", ca.to_openssh());
        let file = known_hosts(&content);
        let policy = load(&file, "sftp.partner.example", 22);
        assert_eq!(kind_of(policy.check(&ca)), ErrorKind::HostKeyUnknown);
        assert!(policy.preferred_key_types().is_empty());
    }

    #[test]
    fn several_keys_per_host_are_type_aware() {
        let (ed, ec, rs) = (ed25519(24), ecdsa(24), rsa(24));
        let file = known_hosts(&format!(
            "sftp.partner.example {}\nsftp.partner.example {}\nsftp.partner.example {}\n",
            ec.to_openssh(),
            ed.to_openssh(),
            rs.to_openssh()
        ));
        let policy = load(&file, "sftp.partner.example", 22);
        for key in [&ed, &ec, &rs] {
            policy.check(key).expect("listed key accepted");
        }
        assert_eq!(
            policy.preferred_key_types(),
            ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
        );
        // Another key of a listed type is a mismatch, not unknown.
        assert_eq!(
            kind_of(policy.check(&ed25519(25))),
            ErrorKind::HostKeyMismatch
        );
        // A line never matches a key of another type.
        let file = known_hosts(&format!("h {}\n", ecdsa(26).to_openssh()));
        assert_eq!(
            kind_of(load(&file, "h", 22).check(&ed25519(26))),
            ErrorKind::HostKeyMismatch
        );
    }

    #[test]
    fn real_keys_in_known_hosts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut content = String::new();
        let mut keys = Vec::new();
        for kind in ["ed25519", "ecdsa", "rsa"] {
            let (line, _) = real_key(dir.path(), kind);
            content.push_str(&format!("sftp.partner.example {line}\n"));
            keys.push(HostKey::from_openssh(&line).expect("real key"));
        }
        let file = known_hosts(&content);
        let policy = load(&file, "sftp.partner.example", 22);
        for key in &keys {
            policy.check(key).expect("real key accepted");
        }
    }

    #[test]
    fn malformed_lines_are_skipped_and_good_lines_kept() {
        capture_logs();
        let good = ed25519(27);
        let late = ecdsa(27);
        let mismatched = format!("ssh-rsa {}", &good.to_openssh()["ssh-ed25519 ".len()..]);
        let garbage_100k: String = (0..100_000)
            .map(|i| (b'!' + (i % 90) as u8) as char)
            .collect();
        let huge_comment = format!(
            "sftp.partner.example {} {}",
            late.to_openssh(),
            "c".repeat(200_000)
        );
        let content = [
            "# a comment".to_owned(),                                             // 1
            String::new(),                                                        // 2
            "   \t ".to_owned(),                                                  // 3
            "garbage".to_owned(),                                                 // 4
            "sftp.partner.example ssh-ed25519 ***not-base64***".to_owned(),       // 5
            garbage_100k,                                                         // 6
            format!("sftp.partner.example {mismatched}"),                         // 7
            format!("@bogus sftp.partner.example {}", good.to_openssh()),         // 8
            "|1|bad|hash ssh-ed25519 AAAA".to_owned(),                            // 9
            "sftp.partner.example ssh-ed25519".to_owned(),                        // 10
            format!("  sftp.partner.example\t{}  # trailing", good.to_openssh()), // 11
            huge_comment,                                                         // 12
            "@revoked".to_owned(),                                                // 13
        ]
        .join("\r\n");
        let file = known_hosts(&content);
        let policy = load(&file, "sftp.partner.example", 22);
        policy.check(&good).expect("good line kept");
        policy.check(&late).expect("line with a huge comment kept");
        assert_eq!(policy.accept.len(), 2, "{:?}", policy.accept);

        if let Some(warnings) = logs_about(&file.path().display().to_string()) {
            let warnings: Vec<&String> =
                warnings.iter().filter(|l| l.starts_with("WARN")).collect();
            let numbers: Vec<String> = warnings
                .iter()
                .filter_map(|w| w.split(':').nth(1).map(str::to_owned))
                .collect();
            assert_eq!(
                numbers,
                ["4", "5", "6", "7", "8", "9", "10", "13"],
                "{warnings:?}"
            );
            for w in &warnings {
                assert!(w.len() < 400, "warning quotes too much: {w:.500}");
            }
        }
    }

    #[test]
    fn non_utf8_bytes_outside_the_fields_are_harmless() {
        let key = ed25519(28);
        let mut content = format!("h {} caf", key.to_openssh()).into_bytes();
        content.extend_from_slice(b"\xe9 \xff\n# \xfe\n");
        content.extend_from_slice(b"h\xff ssh-ed25519 AAAA\n");
        let file = known_hosts_bytes(&content);
        load(&file, "h", 22).check(&key).expect("accepted");
    }

    #[test]
    fn missing_file_is_not_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("no_such_known_hosts");
        let err = HostKeyPolicy::load(&[KnownHost::known_hosts_file(&path)], "h", 22, None)
            .expect_err("missing file");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        match err {
            Error::KnownHostsFile { path: p, .. } => assert_eq!(p, path),
            other => panic!("unexpected {other:?}"),
        }
        // A directory cannot be read either.
        let err = HostKeyPolicy::load(&[KnownHost::known_hosts_file(dir.path())], "h", 22, None)
            .expect_err("directory");
        assert!(matches!(err, Error::KnownHostsFile { .. }), "{err:?}");
    }

    #[test]
    fn unknown_host_is_host_key_unknown() {
        let key = ed25519(29);
        let file = known_hosts(&format!("other.example {}\n", key.to_openssh()));
        let err = load(&file, "sftp.partner.example", 2222)
            .check(&key)
            .expect_err("unknown");
        match &err {
            Error::HostKeyUnknown {
                host,
                port,
                key_type,
                seen,
                ..
            } => {
                assert_eq!((host.as_str(), *port), ("sftp.partner.example", 2222));
                assert_eq!(key_type, "ssh-ed25519");
                assert_eq!(seen, &key.fingerprint());
            }
            other => panic!("unexpected {other:?}"),
        }
        let empty = HostKeyPolicy::load(&[], "h", 22, None).expect("no pins");
        assert_eq!(kind_of(empty.check(&key)), ErrorKind::HostKeyUnknown);
    }

    #[test]
    fn mismatch_lists_every_applicable_pin() {
        let seen = ed25519(30);
        let (fp, pinned, first, second) = (ed25519(31), rsa(31), ecdsa(31), ed25519(32));
        let file = known_hosts(&format!(
            "# header\nsftp.partner.example {}\nother.example {}\n*.partner.example {}\n",
            first.to_openssh(),
            seen.to_openssh(),
            second.to_openssh()
        ));
        let pins = [
            KnownHost::fingerprint(fp.fingerprint()).expect("fp"),
            KnownHost::known_hosts_file(file.path()),
            KnownHost::public_key(pinned.to_openssh()).expect("key pin"),
            KnownHost::known_hosts_file(file.path()), // read once only
        ];
        let policy = HostKeyPolicy::load(&pins, "Sftp.Partner.Example", 22, None).expect("load");
        let err = policy.check(&seen).expect_err("mismatch");
        let path = file.path().display();
        match &err {
            Error::HostKeyMismatch {
                host,
                port,
                key_type,
                seen: seen_fp,
                expected,
                ..
            } => {
                assert_eq!((host.as_str(), *port), ("Sftp.Partner.Example", 22));
                assert_eq!(key_type, "ssh-ed25519");
                assert_eq!(seen_fp, &seen.fingerprint());
                assert_eq!(
                    expected,
                    &[
                        format!("{} (fingerprint pin)", fp.fingerprint()),
                        format!("{} (ecdsa-sha2-nistp256, {path}:2)", first.fingerprint()),
                        format!("{} (ssh-ed25519, {path}:4)", second.fingerprint()),
                        format!("{} (ssh-rsa, public key pin)", pinned.fingerprint()),
                    ]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains(&seen.fingerprint()), "{err}");
        assert_eq!(
            policy.preferred_key_types(),
            ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
        );
    }

    #[test]
    fn any_pin_accepts() {
        let key = ecdsa(33);
        let file = known_hosts(&format!("h {}\n", ed25519(33).to_openssh()));
        for pin in [
            KnownHost::fingerprint(key.fingerprint()).expect("fp"),
            KnownHost::from(key.clone()),
        ] {
            let pins = [KnownHost::known_hosts_file(file.path()), pin];
            HostKeyPolicy::load(&pins, "h", 22, None)
                .expect("load")
                .check(&key)
                .expect("accepted by the second pin");
        }
    }

    #[test]
    fn preferred_key_types_skip_revoked_and_fingerprints() {
        let (ed, ec, rs) = (ed25519(34), ecdsa(34), rsa(34));
        let file = known_hosts(&format!(
            "h {}\nh {}\n@revoked h {}\n",
            rs.to_openssh(),
            ec.to_openssh(),
            rs.to_openssh()
        ));
        let pins = [
            KnownHost::fingerprint(ed25519(35).fingerprint()).expect("fp"),
            KnownHost::from(ed.clone()),
            KnownHost::known_hosts_file(file.path()),
            KnownHost::from(ed25519(36)),
        ];
        let policy = HostKeyPolicy::load(&pins, "h", 22, None).expect("load");
        assert_eq!(
            policy.preferred_key_types(),
            ["ssh-ed25519", "ecdsa-sha2-nistp256"]
        );
        assert_eq!(kind_of(policy.check(&rs)), ErrorKind::HostKeyRevoked);
    }

    #[test]
    fn host_key_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<HostKey>();
        assert_send_sync::<KnownHost>();
        assert_send_sync::<HostKeyPolicy>();
    }
}
