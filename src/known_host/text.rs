//! Pins and host keys as text, for configuration files: `FromStr` and
//! `Display` of [`KnownHost`] and `FromStr` of [`HostKey`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::keys::looks_like_key_type;
use super::{sha256_text, HostKey, KnownHost, Pin};
use crate::{Error, Result};

/// The prefix of a `known_hosts` file pin in text form.
const KNOWN_HOSTS: &str = "known_hosts:";
/// The prefix of a trust-on-first-use pin in text form.
const TOFU: &str = "trust-on-first-use:";
/// The prefix of a certificate authority pin in text form (the marker of
/// its `known_hosts` line).
const CA: &str = "@cert-authority ";

/// The accepted forms, for error messages.
const FORMS: &str = "a pin is `SHA256:` and 43 base64 characters, a public key line \
                     `type base64 [comment]`, `@cert-authority type base64`, \
                     `known_hosts:PATH` (or an absolute path) or `trust-on-first-use:PATH`";

impl FromStr for KnownHost {
    type Err = Error;

    /// Reads a pin as a configuration file gives it (leading and trailing
    /// blanks are ignored):
    ///
    /// | text | pin |
    /// |---|---|
    /// | `SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s` | [`KnownHost::fingerprint`] |
    /// | `ssh-ed25519 AAAAC3Nz... [comment]` | [`KnownHost::public_key`] |
    /// | `known_hosts:/etc/etl/known_hosts`, or `/etc/etl/known_hosts` (any absolute path) | [`KnownHost::known_hosts_file`] |
    /// | `trust-on-first-use:/var/lib/etl/known_hosts` | [`KnownHost::trust_on_first_use`] |
    /// | `@cert-authority ssh-ed25519 AAAAC3Nz...` | [`KnownHost::cert_authority`] |
    ///
    /// [`Display`](fmt::Display) writes these forms back (a public key
    /// without its comment, a file always with its prefix), so a pin
    /// survives a round trip through a file.
    ///
    /// ```
    /// use etl_ssh::KnownHost;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let pin: KnownHost = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".parse()?;
    /// assert_eq!(pin, KnownHost::fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")?);
    /// let file: KnownHost = "/etc/etl/known_hosts".parse()?;
    /// assert_eq!(file.to_string(), "known_hosts:/etc/etl/known_hosts");
    /// assert_eq!(file.to_string().parse::<KnownHost>()?, file);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput): as
    /// [`KnownHost::fingerprint`] for text that reads as a fingerprint (an
    /// MD5 one is refused with the command that prints the SHA256 one), as
    /// [`HostKey::from_openssh`] for a key line, and for an empty path or
    /// text of none of these forms.
    fn from_str(text: &str) -> Result<KnownHost> {
        let text = text.trim();
        let file = |rest: &str, what: &str| {
            let rest = rest.trim();
            if rest.is_empty() {
                Err(Error::invalid(
                    "host key pin",
                    format!("`{what}` is not followed by a path"),
                ))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        if let Some(rest) = strip_prefix_ignore_case(text, KNOWN_HOSTS) {
            return file(rest, KNOWN_HOSTS).map(KnownHost::known_hosts_file);
        }
        if let Some(rest) = strip_prefix_ignore_case(text, TOFU) {
            return file(rest, TOFU).map(KnownHost::trust_on_first_use);
        }
        if let Some(rest) = strip_prefix_ignore_case(text, CA) {
            return KnownHost::cert_authority(rest.trim());
        }
        if text.starts_with('/') {
            return Ok(KnownHost::known_hosts_file(text));
        }
        if text.contains([' ', '\t']) || looks_like_key_type(text.as_bytes()) {
            return KnownHost::public_key(text);
        }
        if text.contains(':') {
            return KnownHost::fingerprint(text);
        }
        Err(Error::invalid(
            "host key pin",
            if text.is_empty() {
                format!("it is empty; {FORMS}")
            } else {
                format!("`{}` is none of the accepted forms; {FORMS}", short(text))
            },
        ))
    }
}

impl fmt::Display for KnownHost {
    /// The text form [`FromStr`] reads: `SHA256:...`, `type base64`,
    /// `@cert-authority type base64`, `known_hosts:PATH` or
    /// `trust-on-first-use:PATH` (a path that is not UTF-8 is written
    /// lossily).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pin {
            Pin::Fingerprint(digest) => f.write_str(&sha256_text(digest)),
            Pin::PublicKey(key) => f.write_str(&key.to_openssh()),
            Pin::KnownHostsFile(path) => write!(f, "{KNOWN_HOSTS}{}", path.display()),
            Pin::TrustOnFirstUse(path) => write!(f, "{TOFU}{}", path.display()),
            Pin::CertAuthority(key) => write!(f, "{CA}{}", key.to_openssh()),
        }
    }
}

impl FromStr for HostKey {
    type Err = Error;

    /// An OpenSSH public key line, as [`HostKey::from_openssh`] reads it.
    /// [`HostKey::to_openssh`] writes it back; `Display` prints the type
    /// and fingerprint, for people, and is not read back.
    ///
    /// ```
    /// use etl_ssh::HostKey;
    ///
    /// # fn main() -> Result<(), etl_ssh::Error> {
    /// let key: HostKey =
    ///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti"
    ///         .parse()?;
    /// assert_eq!(key.to_openssh().parse::<HostKey>()?, key);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`HostKey::from_openssh`].
    fn from_str(line: &str) -> Result<HostKey> {
        HostKey::from_openssh(line)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// At most 40 characters of user input, for a message.
fn short(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const FP: &str = "SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ";
    const LINE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";

    fn parse(text: &str) -> Result<KnownHost> {
        text.parse()
    }

    #[test]
    fn each_form_parses_and_prints_back() {
        let cases = [
            (FP.to_string(), FP.to_string()),
            (format!("  {FP}\n"), FP.to_string()),
            (format!("{LINE} partner"), LINE.to_string()),
            (format!("{LINE}\tpartner"), LINE.to_string()),
            (
                "/etc/etl/known_hosts".to_string(),
                "known_hosts:/etc/etl/known_hosts".to_string(),
            ),
            (
                "known_hosts:etc/known_hosts".to_string(),
                "known_hosts:etc/known_hosts".to_string(),
            ),
            (
                "Known_Hosts: /a b/known_hosts".to_string(),
                "known_hosts:/a b/known_hosts".to_string(),
            ),
            (
                "trust-on-first-use:/var/lib/etl/kh".to_string(),
                "trust-on-first-use:/var/lib/etl/kh".to_string(),
            ),
            (
                format!("@Cert-Authority  {LINE} ca"),
                format!("@cert-authority {LINE}"),
            ),
        ];
        for (text, shown) in cases {
            let pin = parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(pin.to_string(), shown, "{text:?}");
            assert_eq!(parse(&pin.to_string()).expect("round trip"), pin);
        }
        assert_eq!(
            parse(FP).expect("fp"),
            KnownHost::fingerprint(FP).expect("fp")
        );
        assert_eq!(
            parse(LINE).expect("line"),
            KnownHost::public_key(LINE).expect("line")
        );
        assert_eq!(
            parse("/k").expect("path"),
            KnownHost::known_hosts_file("/k")
        );
        assert_eq!(
            parse("trust-on-first-use:/k").expect("tofu"),
            KnownHost::trust_on_first_use("/k")
        );
        assert_eq!(
            parse(&format!("@cert-authority {LINE}")).expect("ca"),
            KnownHost::cert_authority(LINE).expect("ca")
        );
    }

    #[test]
    fn bad_pins_say_what_is_accepted() {
        for (text, words) in [
            ("", "it is empty"),
            ("partner-key", "none of the accepted forms"),
            ("known_hosts:", "not followed by a path"),
            ("trust-on-first-use:  ", "not followed by a path"),
            ("MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "MD5"),
            ("SHA256:short", "43 base64"),
            ("ssh-ed25519 notbase64!", "base64"),
        ] {
            let err = parse(text).expect_err(text);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text:?}");
            assert!(err.to_string().contains(words), "{text:?}: {err}");
        }
        let err = parse("partner-key").expect_err("garbage");
        assert!(err.to_string().contains("known_hosts:PATH"), "{err}");
    }

    #[test]
    fn host_key_from_str_is_from_openssh() {
        let key: HostKey = format!("{LINE} comment").parse().expect("key");
        assert_eq!(key, HostKey::from_openssh(LINE).expect("key"));
        assert_eq!(key.to_openssh().parse::<HostKey>().expect("again"), key);
        assert_eq!(
            "".parse::<HostKey>().expect_err("empty").kind(),
            ErrorKind::InvalidInput
        );
    }
}
