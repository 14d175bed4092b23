//! The one place that calls libssh2 directly: `posix-rename@openssh.com`,
//! which libssh2 implements (`libssh2_sftp_posix_rename_ex`) but neither
//! `ssh2` nor `libssh2-sys` 0.3.4 wraps or declares.
//!
//! `ssh2::Sftp` does not expose its `LIBSSH2_SFTP*`, so this module opens a
//! second SFTP channel of its own on the same session ([`RawSftp`]), used
//! for nothing but posix-rename. It is opened on the first rename that
//! needs it and shut down before the session goes.
//!
//! Callers hold the session's operation lock (`SessionInner::lock`) around
//! every function here, so the session is in blocking mode and no other
//! thread uses it.

#![allow(unsafe_code)] // the only module that calls libssh2 directly

use std::os::raw::{c_int, c_ulong};
use std::ptr::NonNull;

use libssh2_sys as raw;

extern "C" {
    // libssh2_sftp.h (libssh2 >= 1.11), compiled into the libssh2 that
    // libssh2-sys builds and links; libssh2-sys 0.3.4 does not declare it.
    fn libssh2_sftp_posix_rename_ex(
        sftp: *mut raw::LIBSSH2_SFTP,
        source_filename: *const std::os::raw::c_char,
        source_filename_len: usize,
        dest_filename: *const std::os::raw::c_char,
        dest_filename_len: usize,
    ) -> c_int;
}

/// What a failed raw call reports: libssh2's return code and, for an SFTP
/// status error (`LIBSSH2_ERROR_SFTP_PROTOCOL`), the server's status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawError {
    /// libssh2's return code (`LIBSSH2_ERROR_*`, negative).
    pub(crate) rc: i32,
    /// `SSH_FX_*` status, when `rc` is `LIBSSH2_ERROR_SFTP_PROTOCOL`.
    pub(crate) status: Option<u32>,
}

/// An SFTP channel opened with `libssh2_sftp_init` on a session we own.
#[derive(Debug)]
pub(crate) struct RawSftp {
    ptr: NonNull<raw::LIBSSH2_SFTP>,
}

// SAFETY (Send): the pointer is only used while the session's operation
// lock is held (see the module docs), which serialises all access to the
// libssh2 session it belongs to, whatever thread we are on.
unsafe impl Send for RawSftp {}

impl RawSftp {
    /// Opens an SFTP channel on `ssh`. The caller holds the operation lock.
    pub(crate) fn init(ssh: &ssh2::Session) -> Result<RawSftp, RawError> {
        let mut guard = ssh.raw();
        let sess: *mut raw::LIBSSH2_SESSION = &mut *guard;
        // SAFETY: `sess` is the live session `ssh` owns, and `guard` holds
        // ssh2's own session mutex for the duration of the call. The
        // returned pointer belongs to that session; it is shut down in
        // `shutdown` (called before the session is freed: the owner of a
        // `RawSftp` keeps an `Arc` of the session alive).
        let ptr = unsafe { raw::libssh2_sftp_init(sess) };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(RawSftp { ptr }),
            None => Err(RawError {
                // SAFETY: as above; reading the last error has no other effect.
                rc: unsafe { raw::libssh2_session_last_errno(sess) },
                status: None,
            }),
        }
    }

    /// `posix-rename@openssh.com`: renames `from` to `to`, replacing `to`
    /// atomically if it exists. When the server did not advertise the
    /// extension, fails with status 8 (`SSH_FX_OP_UNSUPPORTED`) without
    /// sending anything. The caller holds the operation lock.
    pub(crate) fn posix_rename(
        &self,
        ssh: &ssh2::Session,
        from: &[u8],
        to: &[u8],
    ) -> Result<(), RawError> {
        let _guard = ssh.raw();
        // SAFETY: `self.ptr` is a live SFTP channel of this session (see
        // `init`), the session mutex is held, and the two buffers are valid
        // for the lengths passed (libssh2 copies them into its packet and
        // does not keep them).
        let rc = unsafe {
            libssh2_sftp_posix_rename_ex(
                self.ptr.as_ptr(),
                from.as_ptr().cast(),
                from.len(),
                to.as_ptr().cast(),
                to.len(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let status = if rc == raw::LIBSSH2_ERROR_SFTP_PROTOCOL {
            // SAFETY: as above; reads the status of the last reply.
            let s: c_ulong = unsafe { raw::libssh2_sftp_last_error(self.ptr.as_ptr()) };
            Some(s as u32)
        } else {
            None
        };
        Err(RawError { rc, status })
    }

    /// Closes the channel. The caller holds the operation lock.
    pub(crate) fn shutdown(self, ssh: &ssh2::Session) {
        let _guard = ssh.raw();
        // SAFETY: `self.ptr` is a live SFTP channel of the session whose
        // mutex `_guard` holds; `self` is consumed, so it is never used again.
        let rc = unsafe { raw::libssh2_sftp_shutdown(self.ptr.as_ptr()) };
        if rc != 0 {
            log::debug!("sftp shutdown of the rename channel returned {rc}");
        }
    }
}
