//! Why a handshake found no common algorithm: the server's offer, read
//! from its `SSH_MSG_KEXINIT` on a short probe connection (the message is
//! sent in the clear, right after the identification lines), set against
//! ours family by family, as the handshake agrees them (RFC 4253 §7.1:
//! the first of the client's names that the server also has).
//!
//! libssh2 reports only "Unable to exchange encryption keys"; it keeps the
//! server's KEXINIT to itself.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::SessionBuilder;
use crate::algorithms::{build_recipe, find_legacy, is_kex_pseudo, AlgorithmFamily, Offers};
use crate::conn::Transport;
use crate::Error;

/// `SSH_MSG_KEXINIT`.
const MSG_KEXINIT: u8 = 20;
/// What the probe says it is.
const PROBE_ID: &[u8] = b"SSH-2.0-etl_ssh_probe\r\n";
/// The longest identification section (lines before `SSH-`) and packet
/// the probe reads: a real KEXINIT is a few kilobytes.
const MAX_PREAMBLE: usize = 64 * 1024;
const MAX_PACKET: usize = 256 * 1024;

/// The name-lists of a KEXINIT (RFC 4253 §7.1), each in the sender's
/// order of preference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KexInit {
    pub(crate) kex: Vec<String>,
    pub(crate) host_key: Vec<String>,
    pub(crate) cipher_cs: Vec<String>,
    pub(crate) cipher_sc: Vec<String>,
    pub(crate) mac_cs: Vec<String>,
    pub(crate) mac_sc: Vec<String>,
}

/// Reads the payload of a KEXINIT: byte 20, a 16-byte cookie, then ten
/// name-lists (kex, host key, ciphers both ways, MACs both ways,
/// compression both ways, languages both ways), a boolean and a
/// reserved word. Only the first six lists are kept.
///
/// # Errors
///
/// What is wrong, for a payload that is not a well-formed KEXINIT.
pub(crate) fn parse_kexinit(payload: &[u8]) -> std::result::Result<KexInit, String> {
    let Some((&MSG_KEXINIT, rest)) = payload.split_first() else {
        return Err(match payload.first() {
            Some(t) => format!("the first message is type {t}, not KEXINIT"),
            None => "the first message is empty".to_string(),
        });
    };
    let mut rest = rest.get(16..).ok_or("the KEXINIT ends inside its cookie")?;
    let mut lists = Vec::with_capacity(10);
    for index in 0..10 {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("the KEXINIT ends before name-list {index}"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len > tail.len() {
            return Err(format!("name-list {index} runs past the KEXINIT"));
        }
        let (list, tail) = tail.split_at(len);
        rest = tail;
        let text =
            std::str::from_utf8(list).map_err(|_| format!("name-list {index} is not ASCII"))?;
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("name-list {index} holds control characters"));
        }
        lists.push(
            text.split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect::<Vec<String>>(),
        );
    }
    let mut lists = lists.into_iter();
    let mut next = || lists.next().unwrap_or_default();
    Ok(KexInit {
        kex: next().into_iter().filter(|n| !is_kex_pseudo(n)).collect(),
        host_key: next(),
        cipher_cs: next(),
        cipher_sc: next(),
        mac_cs: next(),
        mac_sc: next(),
    })
}

/// The family whose lists have nothing in common, as the handshake meets
/// them: key exchange, host key, then ciphers and MACs each way (no MAC
/// is agreed with a cipher that carries its own, as AES-GCM and
/// ChaCha20-Poly1305 do). With our list and theirs; `None` when every
/// family agrees.
pub(crate) fn failed_family(
    ours: &OfferedLists,
    theirs: &KexInit,
) -> Option<(AlgorithmFamily, Vec<String>, Vec<String>)> {
    let agree = |ours: &[String], theirs: &[String]| -> Option<String> {
        ours.iter().find(|o| theirs.contains(o)).cloned()
    };
    let fail =
        |family, ours: &[String], theirs: &[String]| Some((family, ours.to_vec(), theirs.to_vec()));
    if agree(&ours.kex, &theirs.kex).is_none() {
        return fail(AlgorithmFamily::Kex, &ours.kex, &theirs.kex);
    }
    if agree(&ours.host_key, &theirs.host_key).is_none() {
        return fail(AlgorithmFamily::HostKey, &ours.host_key, &theirs.host_key);
    }
    let directions = [
        (&theirs.cipher_cs, &theirs.mac_cs),
        (&theirs.cipher_sc, &theirs.mac_sc),
    ];
    for (ciphers, macs) in directions {
        let Some(cipher) = agree(&ours.cipher, ciphers) else {
            return fail(AlgorithmFamily::Cipher, &ours.cipher, ciphers);
        };
        if !is_aead(&cipher) && agree(&ours.mac, macs).is_none() {
            return fail(AlgorithmFamily::Mac, &ours.mac, macs);
        }
    }
    None
}

/// Whether a cipher carries its own integrity check, so that no MAC is
/// agreed with it.
fn is_aead(cipher: &str) -> bool {
    cipher == "chacha20-poly1305@openssh.com" || cipher.ends_with("-gcm@openssh.com")
}

/// The lists we sent, per family (the host key list as ordered for the
/// pins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OfferedLists {
    pub(crate) kex: Vec<String>,
    pub(crate) host_key: Vec<String>,
    pub(crate) cipher: Vec<String>,
    pub(crate) mac: Vec<String>,
}

impl OfferedLists {
    pub(crate) fn new(offers: &Offers, host_keys: &[String]) -> OfferedLists {
        OfferedLists {
            kex: offers.kex.names.clone(),
            host_key: host_keys.to_vec(),
            cipher: offers.cipher.names.clone(),
            mac: offers.mac.names.clone(),
        }
    }

    fn get(&self, family: AlgorithmFamily) -> &[String] {
        match family {
            AlgorithmFamily::Kex => &self.kex,
            AlgorithmFamily::HostKey => &self.host_key,
            AlgorithmFamily::Cipher => &self.cipher,
            AlgorithmFamily::Mac => &self.mac,
        }
    }
}

/// What to do about a server whose `family` offer is `theirs`: opt in to
/// its legacy algorithms (and build libssh2 with them where this build
/// lacks them); empty when the offer is not all legacy.
pub(crate) fn advice(family: AlgorithmFamily, theirs: &[String]) -> String {
    let legacy: Vec<_> = theirs
        .iter()
        .filter_map(|n| find_legacy(family, n))
        .collect();
    let Some(first) = legacy.first() else {
        return String::new();
    };
    if legacy.len() < theirs.len() {
        return String::new();
    }
    let kind = if legacy.iter().all(|l| l.sha1) {
        "only SHA-1 algorithms, which are off by default"
    } else {
        "only legacy algorithms, which are off by default"
    };
    let supported = family.supported();
    let built = supported.iter().any(|s| s == first.name);
    let build = if built {
        String::new()
    } else {
        format!(
            ", in a build whose libssh2 has it: this one lacks it (build etl-ssh with \
             {}; README, \"Old servers\")",
            build_recipe(&legacy)
        )
    };
    format!(
        "; the server offers {kind}: ask the partner to upgrade, or opt in with \
         .{}(\"+{}\") (ssh_config: {} +{}){build}",
        family.setter(),
        first.name,
        family.ssh_config_keyword(),
        first.name,
    )
}

impl SessionBuilder {
    /// The error for a handshake that found no common algorithm: a probe
    /// connection reads the server's offer, and the family that failed is
    /// named with both lists.
    pub(super) fn negotiation_error(
        &self,
        ours: &OfferedLists,
        source: ssh2::Error,
        jump: Option<&std::sync::Arc<super::SessionInner>>,
    ) -> Error {
        let probe = self
            .transport(jump)
            .map_err(|e| e.to_string())
            .and_then(|(stream, _, _)| {
                read_server_kexinit(stream, self.connect_timeout).map_err(|e| e.to_string())
            });
        let unknown = |why: String| {
            let lists: Vec<String> = AlgorithmFamily::ALL
                .iter()
                .map(|f| format!("{f} {}", ours.get(*f).join(",")))
                .collect();
            (
                None,
                Vec::new(),
                Vec::new(),
                format!("; we offer {}; {why}", lists.join("; ")),
            )
        };
        let (family, ours, theirs, note) = match probe {
            Ok(theirs) => match failed_family(ours, &theirs) {
                Some((family, ours, theirs)) => {
                    let note = advice(family, &theirs);
                    (Some(family), ours, theirs, note)
                }
                None => unknown(format!(
                    "the server offers key exchange {}; host key {}; ciphers {}; MACs {}: \
                     each meets ours",
                    theirs.kex.join(","),
                    theirs.host_key.join(","),
                    theirs.cipher_cs.join(","),
                    theirs.mac_cs.join(",")
                )),
            },
            Err(why) => unknown(format!(
                "the server's offer could not be read on a second connection: {why}"
            )),
        };
        Error::Negotiation {
            host: self.host.clone(),
            port: self.port,
            family,
            ours,
            theirs,
            note,
            source: Some(Box::new(source)),
        }
    }
}

/// Connects the identification exchange on `stream` and reads the
/// server's first binary packet, its KEXINIT, within `timeout`.
fn read_server_kexinit(stream: Transport, timeout: Duration) -> io::Result<KexInit> {
    let deadline = Instant::now() + timeout;
    let mut stream = Probe { stream, deadline };
    stream.write_all(PROBE_ID)?;
    // Lines before the identification line are allowed (RFC 4253 §4.2).
    let mut line = Vec::new();
    let mut seen = 0usize;
    loop {
        let byte = stream.byte()?;
        seen += 1;
        if seen > MAX_PREAMBLE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no SSH identification line in the first 64 KiB",
            ));
        }
        line.push(byte);
        if byte == b'\n' {
            if line.starts_with(b"SSH-") {
                break;
            }
            line.clear();
        }
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head)?;
    let [a, b, c, d, padding] = head;
    let length = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
    if !(5..=MAX_PACKET).contains(&length) || usize::from(padding) >= length {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the server's first packet has a bad length ({length})"),
        ));
    }
    let mut body = vec![0u8; length - 1];
    stream.read_exact(&mut body)?;
    body.truncate(length - 1 - usize::from(padding));
    parse_kexinit(&body).map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))
}

/// The probe's socket, each read and write bounded by one deadline.
struct Probe {
    stream: Transport,
    deadline: Instant,
}

impl Probe {
    fn remaining(&self) -> io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::TimedOut, "the server did not answer in time")
            })
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut byte = [0u8; 1];
        self.read_exact(&mut byte)?;
        Ok(byte[0])
    }
}

impl Read for Probe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = Some(self.remaining()?);
        match &mut self.stream {
            Transport::Tcp(s) => {
                s.set_read_timeout(wait)?;
                s.read(buf)
            }
            Transport::Tunnel(s) => {
                s.set_read_timeout(wait)?;
                s.read(buf)
            }
        }
    }
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let wait = Some(self.remaining()?);
        match &mut self.stream {
            Transport::Tcp(s) => {
                s.set_write_timeout(wait)?;
                s.write(buf)
            }
            Transport::Tunnel(s) => {
                s.set_write_timeout(wait)?;
                s.write(buf)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &str) -> Vec<String> {
        names
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// A KEXINIT payload with these ten name-lists.
    fn kexinit(lists: [&str; 10]) -> Vec<u8> {
        let mut out = vec![MSG_KEXINIT];
        out.extend_from_slice(&[7u8; 16]);
        for list in lists {
            out.extend_from_slice(&u32::try_from(list.len()).expect("short").to_be_bytes());
            out.extend_from_slice(list.as_bytes());
        }
        out.extend_from_slice(&[0, 0, 0, 0, 0]);
        out
    }

    fn server(kex: &str, host_key: &str, cipher: &str, mac: &str) -> Vec<u8> {
        kexinit([
            kex, host_key, cipher, cipher, mac, mac, "none", "none", "", "",
        ])
    }

    fn ours() -> OfferedLists {
        OfferedLists {
            kex: v("curve25519-sha256,diffie-hellman-group14-sha256"),
            host_key: v("ssh-ed25519,rsa-sha2-512"),
            cipher: v("chacha20-poly1305@openssh.com,aes128-ctr"),
            mac: v("hmac-sha2-256"),
        }
    }

    #[test]
    fn parses_the_lists_and_drops_extension_markers() {
        let parsed = parse_kexinit(&server(
            "diffie-hellman-group14-sha1,kex-strict-s-v00@openssh.com,ext-info-s",
            "ssh-rsa",
            "aes128-ctr,aes256-ctr",
            "hmac-sha1",
        ))
        .expect("parses");
        assert_eq!(parsed.kex, v("diffie-hellman-group14-sha1"));
        assert_eq!(parsed.host_key, v("ssh-rsa"));
        assert_eq!(parsed.cipher_sc, v("aes128-ctr,aes256-ctr"));
        assert_eq!(parsed.mac_sc, v("hmac-sha1"));
    }

    #[test]
    fn malformed_kexinits_say_why() {
        assert!(parse_kexinit(&[]).unwrap_err().contains("empty"));
        assert!(parse_kexinit(&[21, 0]).unwrap_err().contains("type 21"));
        assert!(parse_kexinit(&[20, 1, 2]).unwrap_err().contains("cookie"));
        let mut cut = server("a", "b", "c", "d");
        cut.truncate(30);
        assert!(parse_kexinit(&cut).is_err());
        let mut long = vec![MSG_KEXINIT];
        long.extend_from_slice(&[0; 16]);
        long.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_kexinit(&long).unwrap_err().contains("runs past"));
        let control = kexinit(["a\u{1b}[2J", "", "", "", "", "", "", "", "", ""]);
        assert!(parse_kexinit(&control).unwrap_err().contains("control"));
    }

    #[test]
    fn names_the_family_that_meets_nothing() {
        let theirs = |kex, hk, c, m| parse_kexinit(&server(kex, hk, c, m)).expect("parses");
        let family = |t: &KexInit| failed_family(&ours(), t).map(|f| f.0);
        assert_eq!(
            family(&theirs(
                "diffie-hellman-group14-sha1",
                "ssh-ed25519",
                "aes128-ctr",
                "hmac-sha2-256"
            )),
            Some(AlgorithmFamily::Kex)
        );
        assert_eq!(
            family(&theirs(
                "curve25519-sha256",
                "ssh-rsa",
                "aes128-ctr",
                "hmac-sha2-256"
            )),
            Some(AlgorithmFamily::HostKey)
        );
        assert_eq!(
            family(&theirs(
                "curve25519-sha256",
                "ssh-ed25519",
                "3des-cbc",
                "hmac-sha2-256"
            )),
            Some(AlgorithmFamily::Cipher)
        );
        let (f, ours_mac, theirs_mac) = failed_family(
            &ours(),
            &theirs(
                "curve25519-sha256",
                "ssh-ed25519",
                "aes128-ctr",
                "hmac-sha1",
            ),
        )
        .expect("mac");
        assert_eq!(f, AlgorithmFamily::Mac);
        assert_eq!(ours_mac, v("hmac-sha2-256"));
        assert_eq!(theirs_mac, v("hmac-sha1"));
        // An AEAD cipher agrees no MAC.
        assert_eq!(
            family(&theirs(
                "curve25519-sha256",
                "ssh-ed25519",
                "chacha20-poly1305@openssh.com",
                "hmac-sha1"
            )),
            None
        );
    }

    #[test]
    fn advice_for_a_sha1_only_offer() {
        let text = advice(
            AlgorithmFamily::Kex,
            &v("diffie-hellman-group14-sha1,diffie-hellman-group1-sha1"),
        );
        assert!(
            text.contains(".kex_algorithms(\"+diffie-hellman-group14-sha1\")"),
            "{text}"
        );
        assert!(
            text.contains("KexAlgorithms +diffie-hellman-group14-sha1"),
            "{text}"
        );
        assert!(text.contains("only SHA-1"), "{text}");
        assert_eq!(
            text.contains("Old servers"),
            !crate::has_sha1_algorithms(),
            "{text}"
        );
        let mac = advice(AlgorithmFamily::Mac, &v("hmac-md5"));
        assert!(mac.contains("LIBSSH2_MD5_ENABLE"), "{mac}");
        assert!(mac.contains("only legacy"), "{mac}");
        assert_eq!(
            advice(AlgorithmFamily::Mac, &v("hmac-sha1,umac-64@openssh.com")),
            ""
        );
        assert_eq!(advice(AlgorithmFamily::Cipher, &v("aes128-ctr")), "");
    }

    #[test]
    fn the_error_names_both_offers() {
        let err = Error::Negotiation {
            host: "old.partner.example".into(),
            port: 2222,
            family: Some(AlgorithmFamily::Kex),
            ours: v("curve25519-sha256"),
            theirs: v("diffie-hellman-group14-sha1"),
            note: advice(AlgorithmFamily::Kex, &v("diffie-hellman-group14-sha1")),
            source: None,
        };
        assert_eq!(err.kind(), crate::ErrorKind::Protocol);
        let text = err.to_string();
        for words in [
            "no common key exchange algorithm with old.partner.example:2222",
            "the server offers diffie-hellman-group14-sha1",
            "we offer curve25519-sha256",
            "+diffie-hellman-group14-sha1",
        ] {
            assert!(text.contains(words), "{text:?} lacks {words:?}");
        }
    }
}
