//! Which of our keys does each partner accept? Run it while rotating our
//! key: every partner still on the old key is a support ticket to open.
//!
//! ```text
//! cargo run --example rotation_report -- PARTNERS NEW_KEY OLD_KEY [OLDER_KEY...]
//! ```
//!
//! `PARTNERS` is a text file, one partner a line: `name user host port pin`,
//! where `pin` is a `SHA256:` fingerprint or a `known_hosts` file. Blank
//! lines and `#` comments are skipped. The keys are tried newest first.

use std::time::Duration;

use etl_ssh::{AuthMethod, Credential, KeyPair, KnownHost, Session};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [partners, keys @ ..] = args.as_slice() else {
        return Err("usage: rotation_report PARTNERS NEW_KEY OLD_KEY [OLDER_KEY...]".into());
    };
    if keys.is_empty() {
        return Err("give at least one key, the newest first".into());
    }
    let newest = KeyPair::file(&keys[0]).label();
    let mut tickets = 0;
    for line in std::fs::read_to_string(partners)?.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let [name, user, host, port, pin] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            println!("{line:?}: expected `name user host port pin`");
            continue;
        };
        let pin = if pin.starts_with("SHA256:") {
            KnownHost::fingerprint(pin)?
        } else {
            KnownHost::known_hosts_file(pin)
        };
        let credential = Credential::key_pairs(user, keys.iter().map(KeyPair::file));
        let outcome = Session::builder(host)
            .port(port.parse()?)
            .credential(credential)
            .known_host(pin)
            .connect_timeout(Duration::from_secs(10))
            .connect();
        match outcome {
            Ok(session) => match session.auth_method() {
                AuthMethod::PublicKey { label, .. } if *label == newest => {
                    println!("{name:20} ok          accepts the new key {label}");
                }
                AuthMethod::PublicKey { label, .. } => {
                    tickets += 1;
                    println!("{name:20} TICKET      still accepts only {label}");
                }
                other => println!("{name:20} ?           authenticated with {other}"),
            },
            Err(e) => {
                tickets += 1;
                // Display is one line; the cause (refused, reset...) is the source.
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                println!("{name:20} ERROR       {text}");
            }
        }
    }
    println!("{tickets} partner(s) to follow up");
    Ok(())
}
