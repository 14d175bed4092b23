//! Checking a transferred file beyond its size
//! ([`TransferOptions::verify_checksum`]): the SHA-256 of our copy against
//! the server's, which the server computes where it can. SFTP version 3
//! has no hash request and OpenSSH's `sftp-server` offers none, so the
//! server's hash comes from a command on the same session (`sha256sum`,
//! else `shasum -a 256`) when the account may run commands; otherwise the
//! delivery says the file could not be verified, and why.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use log::{debug, warn};
use sha2::{Digest, Sha256};

use crate::conn::Dialer;
use crate::exec::ExecSession;
use crate::sftp::path::shown;
use crate::{Error, ErrorKind, Result};

/// What a checksum check found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checksum {
    /// Not asked for ([`TransferOptions::verify_checksum`] is off).
    ///
    /// [`TransferOptions::verify_checksum`]: super::TransferOptions::verify_checksum
    NotAsked,
    /// Both sides have this SHA-256 (hex).
    Sha256(String),
    /// The server could not compute a hash: why, in words.
    NotVerifiable(String),
}

/// The SHA-256 (hex) of a local file.
pub(crate) fn local_sha256(path: &Path) -> Result<String> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 (hex) of the remote file `path`, computed by the server
/// through a command; `Err` with the reason in words when it cannot be.
fn remote_sha256(dialer: &Arc<dyn Dialer>, path: &[u8]) -> std::result::Result<String, String> {
    let Ok(path) = std::str::from_utf8(path) else {
        return Err("its name is not UTF-8, which a command line cannot carry".into());
    };
    let exec = ExecSession::new(Arc::clone(dialer));
    let mut last = String::new();
    for program in [&["sha256sum", "--"][..], &["shasum", "-a", "256", "--"]] {
        let args: Vec<&str> = program.iter().copied().chain([path]).collect();
        match exec.run_args(&args) {
            Ok(out) if out.success() => {
                let text = String::from_utf8_lossy(out.stdout());
                let hash = text.split_whitespace().next().unwrap_or("");
                if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(hash.to_ascii_lowercase());
                }
                last = format!("`{}` printed no hash", program[0]);
            }
            Ok(out) => {
                last = format!(
                    "`{}` failed ({}): {}",
                    program[0],
                    out.status(),
                    String::from_utf8_lossy(out.stderr()).trim()
                );
            }
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                return Err(format!("the account does not run commands ({e})"));
            }
            Err(e) => return Err(format!("the hash command failed: {e}")),
        }
        debug!("{last}");
    }
    Err(last)
}

/// Compares the SHA-256 of `local` with the server's of `remote` (a
/// temporary name, or the target): the check for the delivery, or an
/// error for a difference, naming `shown_as` (the target).
pub(crate) fn verify(
    dialer: &Arc<dyn Dialer>,
    local: &Path,
    remote: &[u8],
    target: &str,
    shown_as: &[u8],
) -> Result<Checksum> {
    let ours = local_sha256(local)?;
    match remote_sha256(dialer, remote) {
        Ok(theirs) if theirs == ours => Ok(Checksum::Sha256(ours)),
        Ok(theirs) => Err(crate::sftp::channel::sftp_error(
            ErrorKind::Other,
            "checksum",
            target,
            shown_as,
            format!(
                "the SHA-256 of the copy differs: {} here, {theirs} on the server ({})",
                ours,
                shown(remote)
            ),
        )),
        Err(why) => {
            warn!(
                "{target}: {} cannot be verified beyond its size: {why}",
                shown(shown_as)
            );
            Ok(Checksum::NotVerifiable(why))
        }
    }
}
