//! Prints our public key line and its SHA256 fingerprint: the two things a
//! partner asks for when they add our key to their `authorized_keys`.
//!
//! ```text
//! cargo run --example fingerprint -- ~/.ssh/id_ed25519 [LABEL]
//! ```
//!
//! No passphrase is needed: an OpenSSH key stores its public half in the
//! clear (a PEM key needs its `.pub` file beside it).

use etl_ssh::KeyPair;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: fingerprint PRIVATE_KEY_FILE [LABEL]")?;
    let mut key = KeyPair::file(&path);
    if let Some(label) = args.next() {
        key = key.with_label(label);
    }
    println!("public key:  {}", key.public_key()?);
    println!("fingerprint: {}", key.fingerprint()?);
    Ok(())
}
