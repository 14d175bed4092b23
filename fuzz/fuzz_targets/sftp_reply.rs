//! Server replies to the SFTP client's decoder: any bytes a server sends
//! (packets, attributes, names, status, a `statvfs@openssh.com` reply's
//! data) decode or are refused, never panic, and a decoded NAME reply
//! holds no more names than its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, names)) = etl_ssh::fuzzing::sftp_reply(data) {
        // Each name takes at least 12 bytes of the packet.
        assert!(names * 12 <= data.len(), "{names} names in {} bytes", data.len());
    }
    if etl_ssh::fuzzing::sftp_statvfs(data).is_ok() {
        assert!(data.len() >= 88, "eleven fields in {} bytes", data.len());
    }
    if let Ok((_, names)) = etl_ssh::fuzzing::sftp_version(data) {
        assert!(names.iter().map(|n| n.len() + 4).sum::<usize>() <= data.len());
    }
});
