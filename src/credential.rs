//! [`Credential`]: who we are, and how each kind authenticates.

use std::fmt;
use std::path::{Path, PathBuf};

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
}

#[derive(Clone)]
enum Secret {
    KeyFile {
        path: PathBuf,
        passphrase: Option<SecretString>,
    },
    KeyPem {
        pem: SecretString,
        passphrase: Option<SecretString>,
    },
    Password(SecretString),
}

impl Credential {
    /// A private key file. The public key is derived from the private key,
    /// so no `.pub` file is needed.
    ///
    /// The file is read when connecting, not here.
    pub fn key_pair(user: impl Into<String>, private_key: impl AsRef<Path>) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::KeyFile {
                path: private_key.as_ref().to_path_buf(),
                passphrase: None,
            },
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
        Credential {
            user: user.into(),
            secret: Secret::KeyPem {
                pem: private_key,
                passphrase: None,
            },
        }
    }

    /// A user name and password.
    pub fn password(user: impl Into<String>, password: SecretString) -> Credential {
        Credential {
            user: user.into(),
            secret: Secret::Password(password),
        }
    }

    /// The passphrase of an encrypted private key. Has no effect on a
    /// password credential.
    pub fn with_passphrase(mut self, passphrase: SecretString) -> Credential {
        match &mut self.secret {
            Secret::KeyFile { passphrase: p, .. } | Secret::KeyPem { passphrase: p, .. } => {
                *p = Some(passphrase)
            }
            Secret::Password(_) => {}
        }
        self
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key file, for a credential made with [`Credential::key_pair`].
    pub fn key_path(&self) -> Option<&Path> {
        match &self.secret {
            Secret::KeyFile { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The SSH authentication method this credential uses: `publickey`
    /// or `password`.
    pub fn method(&self) -> &'static str {
        match self.secret {
            Secret::Password(_) => "password",
            _ => "publickey",
        }
    }

    /// Reads and checks a key credential before any connection is made:
    /// the file exists, the key parses, the passphrase opens it.
    pub(crate) fn load(&self) -> Result<Loaded> {
        match &self.secret {
            Secret::Password(p) => Ok(Loaded::Password(p.clone())),
            Secret::KeyFile { path, passphrase } => {
                let text = std::fs::read(path).map_err(|e| Error::KeyFile {
                    path: Some(path.clone()),
                    reason: "cannot be read".into(),
                    source: Some(Box::new(e)),
                })?;
                let text = Zeroizing::new(text);
                let text = std::str::from_utf8(&text).map_err(|_| Error::KeyFile {
                    path: Some(path.clone()),
                    reason: "is not a text key file (expected OpenSSH or PEM format)".into(),
                    source: None,
                })?;
                load_key(text, passphrase.as_ref(), Some(path))
            }
            Secret::KeyPem { pem, passphrase } => {
                load_key(pem.expose_secret(), passphrase.as_ref(), None)
            }
        }
    }
}

/// A credential ready to hand to libssh2.
pub(crate) enum Loaded {
    Password(SecretString),
    Key(LoadedKey),
}

/// A private key in a form libssh2 reads from memory.
pub(crate) struct LoadedKey {
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
}

impl LoadedKey {
    /// How to name this key in logs and errors.
    pub(crate) fn describe(&self) -> String {
        match (&self.fingerprint, &self.path) {
            (Some(fp), _) => format!("publickey {fp}"),
            (None, Some(path)) => format!("publickey {}", path.display()),
            (None, None) => "publickey (PEM key in memory)".to_string(),
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
    path: Option<&PathBuf>,
) -> Result<Loaded> {
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
        return Ok(Loaded::Key(LoadedKey {
            path: path.cloned(),
            private: Zeroizing::new(private.to_string()),
            passphrase: None,
            public: Some(line),
            fingerprint: Some(public.fingerprint(HashAlg::Sha256).to_string()),
        }));
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
        return Ok(Loaded::Key(LoadedKey {
            path: path.cloned(),
            private: Zeroizing::new(trimmed.to_string()),
            passphrase: if encrypted { passphrase.cloned() } else { None },
            public: None,
            fingerprint: None,
        }));
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
            Secret::KeyFile { path, passphrase } => d
                .field("key_file", path)
                .field("passphrase", &passphrase.as_ref().map(|_| "[REDACTED]")),
            Secret::KeyPem { passphrase, .. } => d
                .field("key_pem", &"[REDACTED]")
                .field("passphrase", &passphrase.as_ref().map(|_| "[REDACTED]")),
            Secret::Password(_) => d.field("password", &"[REDACTED]"),
        };
        d.finish()
    }
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loaded::Password(_) => f.write_str("Password([REDACTED])"),
            Loaded::Key(k) => f
                .debug_struct("LoadedKey")
                .field("path", &k.path)
                .field("fingerprint", &k.fingerprint)
                .finish_non_exhaustive(),
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
