//! Host and client keys generated at run time (never written anywhere but
//! the server's temporary folder).

use std::fs;
use std::io;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};

use super::HostKeyType;

/// A generated key: the private key and its public line.
pub(crate) struct GeneratedKey {
    pub(crate) private: PrivateKey,
    pub(crate) public_line: String,
    pub(crate) fingerprint: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("public_line", &self.public_line)
            .finish_non_exhaustive()
    }
}

fn algorithm(ty: HostKeyType) -> Algorithm {
    match ty {
        HostKeyType::Ed25519 => Algorithm::Ed25519,
        HostKeyType::Ecdsa => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        HostKeyType::Rsa => Algorithm::Rsa { hash: None },
    }
}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// A fresh key of `ty` with `comment`.
pub(crate) fn generate(ty: HostKeyType, comment: &str) -> io::Result<GeneratedKey> {
    let mut private = PrivateKey::random(&mut rand::rng(), algorithm(ty))
        .map_err(|e| other("generate key", e))?;
    private.set_comment(comment);
    let public_line = private
        .public_key()
        .to_openssh()
        .map_err(|e| other("encode public key", e))?;
    let fingerprint = private
        .public_key()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    Ok(GeneratedKey {
        private,
        public_line,
        fingerprint,
    })
}

/// Writes the private key (OpenSSH format, mode 0600) to `path` and its
/// public line to `path.pub`.
pub(crate) fn write(key: &GeneratedKey, path: &Path) -> io::Result<()> {
    let pem = key
        .private
        .to_openssh(LineEnding::LF)
        .map_err(|e| other("encode private key", e))?;
    // 0600 from the start: never readable by others, even for a moment.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(pem.as_bytes())?;
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    fs::write(public, format!("{}\n", key.public_line))?;
    Ok(())
}
