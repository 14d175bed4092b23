//! What the examples share: a verified session from command-line words.

// Each example uses part of this module.
#![allow(dead_code)]

use std::time::Duration;

use etl_ssh::{Credential, KnownHost, Session};
use secrecy::SecretString;

/// The words `HOST PORT USER KEY_FILE|password PIN`, for usage messages.
pub(crate) const CONNECT_ARGS: &str = "HOST PORT USER KEY_FILE|password PIN";

/// `HOST PORT USER KEY_FILE|password PIN` to a verified, authenticated
/// session. With `password` in place of a key file the password comes from
/// `ETL_SSH_PASSWORD`; a key's passphrase, if any, from
/// `ETL_SSH_PASSPHRASE`. The pin is a `SHA256:` fingerprint, a
/// `known_hosts` file, or an OpenSSH public key line.
pub(crate) fn connect(args: &[String]) -> Result<Session, Box<dyn std::error::Error>> {
    let [host, port, user, secret, pin] = args else {
        return Err(format!("expected {CONNECT_ARGS}").into());
    };
    let credential = if secret == "password" {
        let password = std::env::var("ETL_SSH_PASSWORD").map_err(|_| "set ETL_SSH_PASSWORD")?;
        Credential::password(user, SecretString::from(password))
    } else {
        let key = Credential::key_pair(user, secret);
        match std::env::var("ETL_SSH_PASSPHRASE") {
            Ok(p) => key.with_passphrase(SecretString::from(p)),
            Err(_) => key,
        }
    };
    let pin = if pin.starts_with("SHA256:") {
        KnownHost::fingerprint(pin)?
    } else if std::path::Path::new(pin).is_file() {
        KnownHost::known_hosts_file(pin)
    } else {
        KnownHost::public_key(pin)?
    };
    Ok(Session::builder(host)
        .port(port.parse()?)
        .credential(credential)
        .known_host(pin)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()?)
}
