//! Unit tests of pins, fingerprints and `known_hosts` matching.

use super::known_hosts::*;
use super::*;
use hmac::{Hmac, Mac};
use sha1::Sha1;

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
    HostKey::from_blob(&blob(&[b"ecdsa-sha2-nistp256", b"nistp256", &point])).expect("ecdsa blob")
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
        let line =
            fs::read_to_string(dir.path().join(format!("id_ecdsa{bits}.pub"))).expect("read .pub");
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
    let err = KnownHost::public_key(format!("sftp.partner.example {}", ed25519(9).to_openssh()))
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
    let key =
        HostKey::from_blob(&blob(&[b"some-new-type@example.com", b"x", b"y"])).expect("opaque key");
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
        let warnings: Vec<&String> = warnings.iter().filter(|l| l.starts_with("WARN")).collect();
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

#[test]
fn recordable_names_are_one_plain_host_field() {
    for ok in [
        "partner",
        "sftp.partner.example",
        "[127.0.0.1]:2222",
        "[::1]:22",
    ] {
        assert!(super::check_recordable_name(ok, "host").is_ok(), "{ok}");
    }
    for (bad, words) in [
        ("", "empty"),
        ("two words", "whitespace"),
        ("tab\tname", "whitespace"),
        ("bell\u{7}", "control"),
        ("*.example", "pattern"),
        ("a,b", "pattern"),
        ("!negated", "pattern"),
        ("@revoked", "marker"),
        ("#comment", "comment"),
        ("|1|hashed", "hashed"),
    ] {
        let err = super::check_recordable_name(bad, "host_key_alias").expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let text = err.to_string();
        assert!(text.contains("host_key_alias"), "{text}");
        assert!(text.contains(words), "{bad:?}: {text}");
        assert!(!text.contains('\t') && !text.contains('\u{7}'), "{text:?}");
    }
}
