//! [`Credential`]: who we are, and how each kind authenticates.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use ssh_key::{HashAlg, LineEnding, PrivateKey};
use zeroize::Zeroizing;

use crate::error::{code, ssh2_code};
use crate::{Error, Result};

/// Who we are on the partner's server: a user name and a secret.
///
/// Two kinds exist:
/// - a **key pair**, from a private key file ([`Credential::key_pair`]) or
///   held in memory ([`Credential::key_pair_pem`]), optionally encrypted
///   ([`Credential::with_passphrase`]). OpenSSH-format keys (also
///   passphrase-protected with bcrypt), PEM PKCS#1, SEC1 and PKCS#8 keys are
///   read; ed25519, ECDSA and RSA keys are supported, RSA signing with
///   `rsa-sha2-256`/`rsa-sha2-512` when the server offers them.
/// - a **password** ([`Credential::password`]). When the server offers only
///   `keyboard-interactive`, the password answers its password prompt.
///
/// Secrets are held in [`secrecy`] types and zeroized when dropped; `Debug`
/// prints `[REDACTED]` in their place, and nothing in this crate logs them.
/// libssh2 needs a secret as a C string when authenticating: the `ssh2`
/// crate copies it into a buffer of its own for that call, which it frees
/// without zeroizing. That copy is beyond this crate's reach.
///
/// ```
/// use etl_ssh::Credential;
/// use secrecy::SecretString;
///
/// let key = Credential::key_pair("etl", "/keys/id_ed25519")
///     .with_passphrase(SecretString::from("correct horse"));
/// let pass = Credential::password("etl", SecretString::from("s3cret"));
/// assert_eq!(key.user(), "etl");
/// assert!(!format!("{pass:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct Credential {
    user: String,
    secret: Secret,
    /// Whether extra parallel sessions may ask a keyboard-interactive
    /// responder again.
    extra_sessions: bool,
}

#[derive(Clone)]
enum Secret {
    /// Tried in order: the newest key first when rotating.
    Keys(Vec<KeyPair>),
    Password(SecretString),
    /// An ssh-agent: at this socket, or at `SSH_AUTH_SOCK`.
    Agent(Option<PathBuf>),
    KeyboardInteractive(Arc<Responder>),
    /// Several methods, one after another (multi-factor); never nested.
    All(Vec<Credential>),
}

/// Answers a keyboard-interactive round: the server's instructions and
/// prompts in, one answer per prompt out.
pub(crate) type Responder = dyn Fn(&str, &[AuthPrompt]) -> Vec<SecretString> + Send + Sync;

/// One prompt of a keyboard-interactive round, for
/// [`Credential::keyboard_interactive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPrompt {
    text: String,
    echo: bool,
}

impl AuthPrompt {
    pub(crate) fn new(text: impl Into<String>, echo: bool) -> AuthPrompt {
        AuthPrompt {
            text: text.into(),
            echo,
        }
    }

    /// What the server asks, e.g. `Password: ` or `Verification code: `.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the answer may be shown as typed (`false` for secrets).
    pub fn echo(&self) -> bool {
        self.echo
    }
}

/// One private key of a [`Credential`]: a file or text held in memory, an
/// optional passphrase, and a label that names it in logs and in
/// [`AuthMethod`](crate::AuthMethod).
///
/// A credential holds several when our key is being rotated: the new key
/// first, the old one after. Each connection tries them in order, and the
/// session says which one the partner accepted.
///
/// ```
/// use etl_ssh::{Credential, KeyPair};
///
/// let etl = Credential::key_pairs("etl", [
///     KeyPair::file("/keys/id_ed25519_2026").with_label("2026"),
///     KeyPair::file("/keys/id_ed25519_2024").with_label("2024"),
/// ]);
/// assert_eq!(etl.keys().len(), 2);
/// ```
#[derive(Clone)]
pub struct KeyPair {
    label: Option<String>,
    source: KeySource,
    passphrase: Option<SecretString>,
    certificate: Option<PathBuf>,
}

#[derive(Clone)]
enum KeySource {
    File(PathBuf),
    Memory(SecretString),
}

impl KeyPair {
    /// A private key file, read when connecting. The public key is derived
    /// from it: no `.pub` file is needed to authenticate.
    ///
    /// As OpenSSH, a key file owned by the user we run as that group or
    /// others can access (mode & 077 not 0, e.g. 0644) is refused with
    /// [`ErrorKind::KeyFile`](crate::ErrorKind::KeyFile), naming the file and
    /// the `chmod 600` that fixes it; a file owned by another user is not
    /// checked.
    pub fn file(path: impl AsRef<Path>) -> KeyPair {
        KeyPair {
            label: None,
            source: KeySource::File(path.as_ref().to_path_buf()),
            passphrase: None,
            certificate: None,
        }
    }

    /// A private key held in memory, in OpenSSH or PEM format.
    pub fn pem(private_key: SecretString) -> KeyPair {
        KeyPair {
            label: None,
            source: KeySource::Memory(private_key),
            passphrase: None,
            certificate: None,
        }
    }

    /// An OpenSSH user certificate for this key (`id_ed25519-cert.pub`),
    /// for servers that trust a CA (`TrustedUserCAKeys`) instead of listing
    /// keys. For a key file, `<key>-cert.pub` beside it is used without
    /// asking when it exists.
    pub fn with_certificate(mut self, certificate: impl AsRef<Path>) -> KeyPair {
        self.certificate = Some(certificate.as_ref().to_path_buf());
        self
    }

    /// The certificate to offer: as set, else `<key>-cert.pub` if present.
    fn certificate_path(&self) -> Option<PathBuf> {
        if let Some(cert) = &self.certificate {
            return Some(cert.clone());
        }
        let mut beside = self.path()?.as_os_str().to_owned();
        beside.push("-cert.pub");
        let beside = PathBuf::from(beside);
        beside.is_file().then_some(beside)
    }

    /// The passphrase of an encrypted key.
    pub fn with_passphrase(mut self, passphrase: SecretString) -> KeyPair {
        self.passphrase = Some(passphrase);
        self
    }

    /// A name for this key in logs and reports ("2026", "old"...).
    pub fn with_label(mut self, label: impl Into<String>) -> KeyPair {
        self.label = Some(label.into());
        self
    }

    /// The label: as set, else the file name, else `in-memory key`.
    pub fn label(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        match &self.source {
            KeySource::File(path) => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            KeySource::Memory(_) => "in-memory key".to_string(),
        }
    }

    /// The key file, if the key is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            KeySource::File(path) => Some(path),
            KeySource::Memory(_) => None,
        }
    }

    /// The public key as an OpenSSH line, `type base64 label`: what a
    /// partner adds to `authorized_keys`. No passphrase is needed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeyFile`](crate::ErrorKind::KeyFile) when the key cannot
    /// be read, or when it is a PEM key without a `.pub` file beside it
    /// (the public half of a PEM key is not stored in the clear).
    pub fn public_key(&self) -> Result<String> {
        let public = self.public()?;
        let line = public.to_openssh().map_err(|e| Error::KeyFile {
            path: self.path().map(Path::to_path_buf),
            reason: "its public key cannot be encoded".into(),
            source: Some(Box::new(e)),
        })?;
        Ok(format!("{line} {}", self.label()))
    }

    /// The SHA256 fingerprint of the public key, as `ssh-keygen -lf` prints
    /// it: what a partner checks against their `authorized_keys`.
    ///
    /// # Errors
    ///
    /// As [`KeyPair::public_key`].
    pub fn fingerprint(&self) -> Result<String> {
        Ok(self.public()?.fingerprint(HashAlg::Sha256).to_string())
    }

    fn public(&self) -> Result<ssh_key::PublicKey> {
        let path = self.path().map(Path::to_path_buf);
        let text = self.text()?;
        let trimmed = text.trim_start();
        let key_error = |reason: &str, source: Option<crate::BoxError>| Error::KeyFile {
            path: path.clone(),
            reason: reason.to_string(),
            source,
        };
        if trimmed.starts_with(OPENSSH_BEGIN) {
            // The public half of an OpenSSH key is stored in the clear.
            return PrivateKey::from_openssh(trimmed)
                .map(|k| k.public_key().clone())
                .map_err(|e| key_error("is not a valid OpenSSH private key", Some(Box::new(e))));
        }
        let Some(path) = self.path() else {
            return Err(key_error(
                "is a PEM key held in memory: its public key cannot be derived here",
                None,
            ));
        };
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let line = std::fs::read_to_string(&pub_path).map_err(|e| {
            key_error(
                "is a PEM key and has no readable .pub file beside it \
                 (make one with `ssh-keygen -y -f KEY > KEY.pub`)",
                Some(Box::new(e)),
            )
        })?;
        ssh_key::PublicKey::from_openssh(line.trim())
            .map_err(|e| key_error("has a .pub file that does not parse", Some(Box::new(e))))
    }

    /// The key text, read from the file if need be.
    fn text(&self) -> Result<Zeroizing<String>> {
        match &self.source {
            KeySource::Memory(pem) => Ok(Zeroizing::new(pem.expose_secret().to_string())),
            KeySource::File(path) => {
                let bytes = Zeroizing::new(read_private_key_file(path)?);
                let text = std::str::from_utf8(&bytes).map_err(|_| Error::KeyFile {
                    path: Some(path.clone()),
                    reason: "is not a text key file (expected OpenSSH or PEM format)".into(),
                    source: None,
                })?;
                Ok(Zeroizing::new(text.to_string()))
            }
        }
    }

    fn load(&self) -> Result<LoadedKey> {
        let text = self.text()?;
        let mut key = load_key(&text, self.passphrase.as_ref(), self.path(), self.label())?;
        if let Some(cert) = self.certificate_path() {
            let line = std::fs::read_to_string(&cert).map_err(|e| Error::KeyFile {
                path: Some(cert.clone()),
                reason: "certificate cannot be read".into(),
                source: Some(Box::new(e)),
            })?;
            let line = line.trim();
            let is_cert = line
                .split_whitespace()
                .next()
                .is_some_and(|t| t.ends_with("-cert-v01@openssh.com"));
            if !is_cert {
                return Err(Error::KeyFile {
                    path: Some(cert),
                    reason: "is not an OpenSSH certificate (`...-cert-v01@openssh.com` line)"
                        .into(),
                    source: None,
                });
            }
            // libssh2 offers a certificate when it is given as the public key.
            key.public = Some(line.to_string());
            key.certificate = Some(cert);
        }
        Ok(key)
    }
}

impl Credential {
    /// A private key file. The public key is derived from the private key,
    /// so no `.pub` file is needed.
    ///
    /// The file is read when connecting, not here; it must not be
    /// accessible by group or others (see [`KeyPair::file`]).
    pub fn key_pair(user: impl Into<String>, private_key: impl AsRef<Path>) -> Credential {
        Credential::key_pairs(user, [KeyPair::file(private_key)])
    }

    /// Several keys, tried in order on each connection: when rotating our
    /// key, the new one first and the old one after. The session reports
    /// which was accepted ([`Session::auth_method`](crate::Session::auth_method)),
    /// and a warning is logged when it was not the first: that partner
    /// still accepts only the old key.
    ///
    /// Each refused key counts against the server's `MaxAuthTries`
    /// (OpenSSH's default is 6).
    pub fn key_pairs(
        user: impl Into<String>,
        keys: impl IntoIterator<Item = KeyPair>,
    ) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::Keys(keys.into_iter().collect()),
            extra_sessions: false,
        }
    }

    /// A private key held in memory, in OpenSSH or PEM format (the text of a
    /// key file). Useful when the key comes from a secret store rather than
    /// a file.
    ///
    /// ```
    /// use etl_ssh::Credential;
    /// use secrecy::SecretString;
    ///
    /// # let pem_from_vault = String::new();
    /// let key = Credential::key_pair_pem("etl", SecretString::from(pem_from_vault));
    /// ```
    pub fn key_pair_pem(user: impl Into<String>, private_key: SecretString) -> Credential {
        Credential::key_pairs(user, [KeyPair::pem(private_key)])
    }

    /// A user name and password.
    pub fn password(user: impl Into<String>, password: SecretString) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::Password(password),
            extra_sessions: false,
        }
    }

    /// The passphrase of an encrypted private key: given to every key of
    /// the credential that has none of its own. Has no effect on a password
    /// credential.
    pub fn with_passphrase(mut self, passphrase: SecretString) -> Credential {
        match &mut self.secret {
            Secret::Keys(keys) => {
                for key in keys.iter_mut().filter(|k| k.passphrase.is_none()) {
                    key.passphrase = Some(passphrase.clone());
                }
            }
            Secret::All(steps) => {
                for step in steps.iter_mut() {
                    *step = step.clone().with_passphrase(passphrase.clone());
                }
            }
            _ => {}
        }
        self
    }

    /// The keys held by an ssh-agent, at the socket `SSH_AUTH_SOCK` names.
    /// Every identity the agent holds is tried in turn (not only the first,
    /// as libssh2's own agent authentication does).
    pub fn agent(user: impl Into<String>) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::Agent(None),
            extra_sessions: false,
        }
    }

    /// The keys held by the ssh-agent listening at `socket`.
    pub fn agent_at(user: impl Into<String>, socket: impl AsRef<Path>) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::Agent(Some(socket.as_ref().to_path_buf())),
            extra_sessions: false,
        }
    }

    /// Keyboard-interactive authentication answered by `responder`: for
    /// servers that ask more than a password (a one-time code, a PIN). It
    /// gets the server's instructions and prompts of each round and returns
    /// one answer per prompt.
    ///
    /// ```
    /// use etl_ssh::Credential;
    /// use secrecy::SecretString;
    ///
    /// let cred = Credential::keyboard_interactive("etl", |_instructions, prompts| {
    ///     prompts
    ///         .iter()
    ///         .map(|p| match p.text() {
    ///             t if t.contains("assword") => SecretString::from("from the vault"),
    ///             _ => SecretString::from(""),
    ///         })
    ///         .collect()
    /// });
    /// ```
    pub fn keyboard_interactive(
        user: impl Into<String>,
        responder: impl Fn(&str, &[AuthPrompt]) -> Vec<SecretString> + Send + Sync + 'static,
    ) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::KeyboardInteractive(Arc::new(responder)),
            extra_sessions: false,
        }
    }

    /// Several credentials offered one after another, for servers that
    /// ask for more than one method (OpenSSH's `AuthenticationMethods
    /// publickey,password` or `publickey,keyboard-interactive`): each but
    /// the last must be accepted as one factor ("partial success"), and
    /// the next is offered on the same connection. Give them in the order
    /// the server asks for them. The user is the first credential's; all
    /// must name the same one. A `Credential::all` inside another is
    /// flattened.
    ///
    /// [`Session::auth_factors`](crate::Session::auth_factors) lists what
    /// was accepted; when the server refuses a later factor, the
    /// [`ErrorKind::Auth`](crate::ErrorKind::Auth) error says which were
    /// accepted first ("the server accepted publickey ... (partial
    /// success), then refused password").
    ///
    /// ```
    /// use etl_ssh::Credential;
    /// use secrecy::SecretString;
    ///
    /// let both = Credential::all([
    ///     Credential::key_pair("etl", "/keys/id_ed25519"),
    ///     Credential::password("etl", SecretString::from("from the vault")),
    /// ]);
    /// assert_eq!(both.user(), "etl");
    /// assert_eq!(both.keys().len(), 1);
    /// ```
    pub fn all(credentials: impl IntoIterator<Item = Credential>) -> Credential {
        let mut steps = Vec::new();
        let mut extra_sessions = false;
        for credential in credentials {
            extra_sessions |= credential.extra_sessions;
            match credential.secret {
                Secret::All(inner) => steps.extend(inner),
                _ => steps.push(credential),
            }
        }
        Credential {
            user: steps.first().map(|c| c.user.clone()).unwrap_or_default(),
            secret: Secret::All(steps),
            extra_sessions,
        }
    }

    /// Whether the extra sessions of parallel transfers
    /// ([`Session::connect_another`](crate::Session::connect_another))
    /// may authenticate with this credential's keyboard-interactive
    /// responder ([`Credential::keyboard_interactive`]) too. Defaults to
    /// `false`: the responder is asked once per connection the caller
    /// makes (and for a reconnection a server forces), never for extra
    /// sessions, since a one-time code would be spent or an account
    /// locked; parallel transfers then run on one session. Set it for a
    /// responder that can answer any number of times.
    pub fn with_extra_sessions(mut self, allow: bool) -> Credential {
        self.extra_sessions = allow;
        self
    }

    /// Whether a connection with this credential would ask a
    /// keyboard-interactive responder that may not be asked for an extra
    /// session.
    pub(crate) fn responder_forbids_extra_sessions(&self) -> bool {
        let asks = match &self.secret {
            Secret::KeyboardInteractive(_) => true,
            Secret::All(steps) => steps
                .iter()
                .any(|s| matches!(s.secret, Secret::KeyboardInteractive(_))),
            _ => false,
        };
        asks && !self.extra_sessions
    }

    /// The keys of a key credential, in the order they are tried; empty for
    /// a password.
    pub fn keys(&self) -> &[KeyPair] {
        match &self.secret {
            Secret::Keys(keys) => keys,
            Secret::All(steps) => steps
                .iter()
                .map(Credential::keys)
                .find(|k| !k.is_empty())
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The first key's public key line, for the partner's `authorized_keys`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a
    /// password credential; otherwise as [`KeyPair::public_key`].
    pub fn public_key(&self) -> Result<String> {
        self.first_key()?.public_key()
    }

    /// The first key's SHA256 fingerprint.
    ///
    /// # Errors
    ///
    /// As [`Credential::public_key`].
    pub fn fingerprint(&self) -> Result<String> {
        self.first_key()?.fingerprint()
    }

    fn first_key(&self) -> Result<&KeyPair> {
        self.keys()
            .first()
            .ok_or_else(|| Error::invalid("credential", "a password credential has no public key"))
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key file, for a credential made with [`Credential::key_pair`].
    pub fn key_path(&self) -> Option<&Path> {
        self.keys().first().and_then(KeyPair::path)
    }

    /// The SSH authentication method this credential offers first, as the
    /// [`AuthMethod`](crate::AuthMethod) a session reports once accepted:
    /// for keys, [`AuthMethod::PublicKey`](crate::AuthMethod::PublicKey)
    /// with the first key's label (`ssh-agent` for an agent) and no
    /// fingerprint (a key file is read when connecting, not here). A
    /// password may end up answering a keyboard-interactive prompt instead
    /// ([`Session::auth_method`](crate::Session::auth_method) says).
    /// `to_string()` gives the SSH name's form (`publickey id_ed25519`,
    /// `password`).
    ///
    /// ```
    /// use etl_ssh::{AuthMethod, Credential};
    /// use etl_ssh::secrecy::SecretString;
    ///
    /// let pass = Credential::password("etl", SecretString::from("s3cret"));
    /// assert_eq!(pass.method(), AuthMethod::Password);
    /// let key = Credential::key_pair("etl", "/keys/id_ed25519");
    /// assert!(matches!(key.method(), AuthMethod::PublicKey { label, .. } if label == "id_ed25519"));
    /// ```
    pub fn method(&self) -> crate::AuthMethod {
        match &self.secret {
            Secret::Password(_) => crate::AuthMethod::Password,
            Secret::KeyboardInteractive(_) => crate::AuthMethod::KeyboardInteractive,
            Secret::Keys(keys) => crate::AuthMethod::public_key(
                None,
                keys.first().map_or_else(String::new, KeyPair::label),
            ),
            Secret::Agent(_) => crate::AuthMethod::public_key(None, "ssh-agent".to_string()),
            // The first factor; `Session::auth_factors` lists all accepted.
            Secret::All(steps) => steps
                .first()
                .map_or(crate::AuthMethod::None, Credential::method),
        }
    }

    /// Reads and checks a key credential before any connection is made:
    /// the file exists, the key parses, the passphrase opens it.
    pub(crate) fn load(&self) -> Result<Loaded> {
        match &self.secret {
            Secret::Password(p) => Ok(Loaded::Password(p.clone())),
            Secret::Agent(socket) => Ok(Loaded::Agent(socket.clone())),
            Secret::KeyboardInteractive(r) => Ok(Loaded::KeyboardInteractive(Arc::clone(r))),
            Secret::Keys(keys) if keys.is_empty() => Err(Error::invalid(
                "credential",
                "Credential::key_pairs was given no key",
            )),
            Secret::Keys(keys) => keys
                .iter()
                .map(KeyPair::load)
                .collect::<Result<_>>()
                .map(Loaded::Keys),
            Secret::All(steps) => {
                if steps.is_empty() {
                    return Err(Error::invalid(
                        "credential",
                        "Credential::all was given no credential",
                    ));
                }
                if let Some(other) = steps.iter().find(|s| s.user != self.user) {
                    return Err(Error::invalid(
                        "credential",
                        format!(
                            "the credentials of Credential::all name different users ({} and \
                             {}): SSH authenticates one user per connection",
                            self.user, other.user
                        ),
                    ));
                }
                steps
                    .iter()
                    .map(Credential::load)
                    .collect::<Result<_>>()
                    .map(Loaded::All)
            }
        }
    }
}

/// A credential ready to hand to libssh2.
pub(crate) enum Loaded {
    Password(SecretString),
    Keys(Vec<LoadedKey>),
    Agent(Option<PathBuf>),
    KeyboardInteractive(Arc<Responder>),
    /// One after another (multi-factor).
    All(Vec<Loaded>),
}

/// A private key in a form libssh2 reads from memory.
pub(crate) struct LoadedKey {
    /// The key's label.
    pub(crate) label: String,
    /// Where the key came from, for errors.
    pub(crate) path: Option<PathBuf>,
    /// The private key text libssh2 gets: OpenSSH keys decrypted here,
    /// PEM keys as given.
    pub(crate) private: Zeroizing<String>,
    /// Passphrase still needed by libssh2 (PEM keys only).
    pub(crate) passphrase: Option<SecretString>,
    /// `type base64` public key line, when we could derive it.
    pub(crate) public: Option<String>,
    /// SHA256 fingerprint of the public key, when known.
    pub(crate) fingerprint: Option<String>,
    /// The certificate offered in place of the plain public key.
    pub(crate) certificate: Option<PathBuf>,
}

impl LoadedKey {
    /// How to name this key in logs and errors.
    pub(crate) fn describe(&self) -> String {
        let cert = if self.certificate.is_some() {
            " (certificate)"
        } else {
            ""
        };
        match &self.fingerprint {
            Some(fp) => format!("publickey {} {fp}{cert}", self.label),
            None => format!("publickey {}{cert}", self.label),
        }
    }

    /// Maps a libssh2 failure of public key authentication with this key.
    pub(crate) fn auth_error(&self, err: &ssh2::Error) -> Option<Error> {
        // libssh2 reports a PEM key it cannot open under several codes
        // (FILE, KEYFILE_AUTH_FAILED, METHOD_NOT_SUPPORTED): when a
        // passphrase was involved, the passphrase is the likely culprit.
        let key_problem = matches!(
            ssh2_code(err),
            code::FILE | code::KEYFILE_AUTH_FAILED | code::METHOD_NOT_SUPPORTED
        );
        if !key_problem {
            return None;
        }
        Some(if self.passphrase.is_some() {
            Error::Passphrase {
                path: self.path.clone(),
                missing: false,
            }
        } else {
            Error::KeyFile {
                path: self.path.clone(),
                reason: format!("libssh2 could not use this key ({})", err.message()),
                source: None,
            }
        })
    }
}

/// Reads a private key file after OpenSSH's check (`sshkey_perm_ok`): a
/// key file owned by the user we run as must not be accessible to group or
/// others (mode & 077 == 0). A file owned by another user (root's key read
/// by a service account) is not checked, as OpenSSH does not check it.
fn read_private_key_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let unreadable = |e: std::io::Error| Error::KeyFile {
        path: Some(path.to_path_buf()),
        reason: "cannot be read".into(),
        source: Some(Box::new(e)),
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    let mode = meta.mode() & 0o777;
    if meta.is_file() && meta.uid() == rustix::process::getuid().as_raw() && mode & 0o077 != 0 {
        return Err(Error::KeyFile {
            path: Some(path.to_path_buf()),
            reason: format!(
                "has permissions {mode:04o}, which are too open: a private key must not be \
                 accessible by group or others (OpenSSH refuses it too: UNPROTECTED PRIVATE \
                 KEY FILE); fix with `chmod 600 {}`",
                path.display()
            ),
            source: None,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(1 << 20));
    file.read_to_end(&mut bytes).map_err(unreadable)?;
    Ok(bytes)
}

const OPENSSH_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const PEM_BEGINS: [&str; 5] = [
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----",
    "-----BEGIN DSA PRIVATE KEY-----",
];

fn load_key(
    text: &str,
    passphrase: Option<&SecretString>,
    path: Option<&Path>,
    label: String,
) -> Result<LoadedKey> {
    let path = path.map(Path::to_path_buf);
    let path = path.as_ref();
    let key_error = |reason: String| Error::KeyFile {
        path: path.cloned(),
        reason,
        source: None,
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with(OPENSSH_BEGIN) {
        let key = PrivateKey::from_openssh(trimmed).map_err(|e| Error::KeyFile {
            path: path.cloned(),
            reason: "is not a valid OpenSSH private key".into(),
            source: Some(Box::new(e)),
        })?;
        let key = if key.is_encrypted() {
            let Some(pass) = passphrase else {
                return Err(Error::Passphrase {
                    path: path.cloned(),
                    missing: true,
                });
            };
            key.decrypt(pass.expose_secret().as_bytes())
                .map_err(|e| match e {
                    // The two check integers disagree: the passphrase was wrong.
                    ssh_key::Error::Crypto => Error::Passphrase {
                        path: path.cloned(),
                        missing: false,
                    },
                    other => Error::KeyFile {
                        path: path.cloned(),
                        reason: "cannot be decrypted".into(),
                        source: Some(Box::new(other)),
                    },
                })?
        } else {
            key
        };
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| key_error(format!("cannot be re-encoded ({e})")))?;
        let public = key.public_key();
        let line = public
            .to_openssh()
            .map_err(|e| key_error(format!("public key cannot be encoded ({e})")))?;
        return Ok(LoadedKey {
            label,
            path: path.cloned(),
            private: Zeroizing::new(private.to_string()),
            passphrase: None,
            public: Some(line),
            fingerprint: Some(public.fingerprint(HashAlg::Sha256).to_string()),
            certificate: None,
        });
    }
    if PEM_BEGINS.iter().any(|b| trimmed.starts_with(b)) {
        let encrypted = trimmed.contains("Proc-Type: 4,ENCRYPTED")
            || trimmed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----");
        if encrypted && passphrase.is_none() {
            return Err(Error::Passphrase {
                path: path.cloned(),
                missing: true,
            });
        }
        return Ok(LoadedKey {
            label,
            path: path.cloned(),
            private: Zeroizing::new(trimmed.to_string()),
            passphrase: if encrypted { passphrase.cloned() } else { None },
            public: None,
            fingerprint: None,
            certificate: None,
        });
    }
    if trimmed.starts_with("PuTTY-User-Key-File") {
        return Err(key_error(
            "is in PuTTY .ppk format: convert it with `puttygen KEY.ppk -O private-openssh -o KEY`"
                .into(),
        ));
    }
    if trimmed.starts_with("ssh-") || trimmed.starts_with("ecdsa-") {
        return Err(key_error(
            "is a public key: give the private key file (the one without .pub)".into(),
        ));
    }
    Err(key_error(
        "is not a private key (expected OpenSSH or PEM format)".into(),
    ))
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Credential");
        d.field("user", &self.user);
        match &self.secret {
            Secret::Keys(keys) => d.field("keys", keys),
            Secret::Password(_) => d.field("password", &"[REDACTED]"),
            Secret::Agent(socket) => d.field("agent", socket),
            Secret::KeyboardInteractive(_) => d.field("keyboard_interactive", &"<responder>"),
            Secret::All(steps) => d.field("all", steps),
        };
        d.finish()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("KeyPair");
        d.field("label", &self.label());
        match &self.source {
            KeySource::File(path) => d.field("file", path),
            KeySource::Memory(_) => d.field("pem", &"[REDACTED]"),
        };
        d.field(
            "passphrase",
            &self.passphrase.as_ref().map(|_| "[REDACTED]"),
        )
        .field("certificate", &self.certificate)
        .finish()
    }
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loaded::Password(_) => f.write_str("Password([REDACTED])"),
            Loaded::Agent(socket) => f.debug_tuple("Agent").field(socket).finish(),
            Loaded::KeyboardInteractive(_) => f.write_str("KeyboardInteractive"),
            Loaded::Keys(keys) => f
                .debug_list()
                .entries(keys.iter().map(|k| (&k.label, &k.fingerprint)))
                .finish(),
            Loaded::All(steps) => f.debug_tuple("All").field(steps).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn debug_redacts_every_secret() {
        let creds = [
            Credential::password("u", SecretString::from("hunter2-password")),
            Credential::key_pair("u", "/k/id").with_passphrase(SecretString::from("hunter2-pass")),
            Credential::key_pair_pem("u", SecretString::from("hunter2-pem-body"))
                .with_passphrase(SecretString::from("hunter2-pass")),
        ];
        for c in &creds {
            let text = format!("{c:?} {c:#?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("REDACTED"), "{text}");
        }
    }

    #[test]
    fn missing_file_names_path() {
        let err = Credential::key_pair("u", "/nonexistent/etl-ssh/id_ed25519")
            .load()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KeyFile);
        assert!(
            err.to_string().contains("/nonexistent/etl-ssh/id_ed25519"),
            "{err}"
        );
    }

    #[test]
    fn public_key_given_as_private_key_is_explained() {
        let err = Credential::key_pair_pem("u", SecretString::from("ssh-ed25519 AAAA x"))
            .load()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KeyFile);
        assert!(err.to_string().contains("is a public key"), "{err}");
    }

    #[test]
    fn encrypted_pem_without_passphrase_is_a_passphrase_error() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = Credential::key_pair_pem("u", SecretString::from(pem))
            .load()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Passphrase);
    }

    #[test]
    fn garbled_openssh_key_is_a_key_file_error() {
        let pem =
            format!("{OPENSSH_BEGIN}\nnot base64 at all!\n-----END OPENSSH PRIVATE KEY-----\n");
        let err = Credential::key_pair_pem("u", SecretString::from(pem))
            .load()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::KeyFile);
    }
}
