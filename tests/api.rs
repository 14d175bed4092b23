//! Compile-time promises of the public API: thread safety and error traits.

use etl_ssh::{Credential, Error, ErrorKind, HostKey, KnownHost, Session, SessionBuilder};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Session>();
    assert_send_sync::<etl_ssh::ExecSession>();
    assert_send_sync::<etl_ssh::ExecOutput>();
    assert_send_sync::<etl_ssh::ExitStatus>();
    assert_send_sync::<etl_ssh::ExecChild>();
    assert_send_sync::<etl_ssh::ExecStdin>();
    assert_send_sync::<etl_ssh::ExecStdout>();
    assert_send_sync::<etl_ssh::ExecStderr>();
    assert_send_sync::<SessionBuilder>();
    assert_send_sync::<Credential>();
    assert_send_sync::<KnownHost>();
    assert_send_sync::<HostKey>();
    assert_send_sync::<Error>();
    assert_send_sync::<ErrorKind>();
    assert_send_sync::<etl_ssh::SftpSession>();
    assert_send_sync::<etl_ssh::SftpReader>();
    assert_send_sync::<etl_ssh::SftpWriter>();
    assert_send_sync::<etl_ssh::TransferOptions>();
    assert_send_sync::<etl_ssh::DirEntry>();
    assert_send_sync::<etl_ssh::Metadata>();
    assert_send_sync::<etl_ssh::Glob>();
    assert_send_sync::<etl_ssh::Tunnel>();
    assert_send_sync::<etl_ssh::testkit::TestServer>();
    assert_send_sync::<etl_ssh::testkit::TestServerBuilder>();
    assert_send_sync::<etl_ssh::testkit::Sshd>();
    assert_send_sync::<etl_ssh::testkit::SshdBuilder>();
    assert_send_sync::<etl_ssh::testkit::ShadowAging>();
}

#[test]
fn error_is_a_std_error_and_converts_to_io() {
    assert_error::<Error>();
    let err = KnownHost::fingerprint("not a fingerprint").expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    // `?` works from our error into io::Error and Box<dyn Error>.
    fn into_io() -> std::io::Result<()> {
        KnownHost::fingerprint("SHA256:short")?;
        Ok(())
    }
    fn into_box() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        KnownHost::fingerprint("SHA256:short")?;
        Ok(())
    }
    assert!(into_io().is_err());
    assert!(into_box().is_err());
}

#[test]
fn handles_clone_and_pins_parse_from_text() {
    fn assert_clone<T: Clone>() {}
    fn assert_text<T: std::str::FromStr<Err = Error> + std::fmt::Display>() {}
    assert_clone::<Session>();
    assert_clone::<etl_ssh::SftpSession>();
    assert_clone::<etl_ssh::ExecSession>();
    assert_text::<KnownHost>();
    assert_text::<HostKey>();
    assert_text::<etl_ssh::Glob>();
    // The secrecy version the credentials take, without a dependency.
    let _ = Credential::password("etl", etl_ssh::secrecy::SecretString::from("x"));
    let e: Error = std::io::Error::other("x").into();
    assert_eq!(e.kind(), ErrorKind::Io);
}
