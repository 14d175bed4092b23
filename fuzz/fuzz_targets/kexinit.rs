//! A server's KEXINIT, as a failed handshake reads it on its probe
//! connection to name the server's offer.
//!
//! Invariants, beyond "never panics":
//! - every name that comes out is printable ASCII without a comma, and
//!   none is empty;
//! - the key exchange list holds no extension marker;
//! - the lists, encoded again into a KEXINIT, parse to the same lists.
#![no_main]

use etl_ssh::fuzzing;
use libfuzzer_sys::fuzz_target;

const MARKERS: [&str; 4] = [
    "ext-info-c",
    "kex-strict-c-v00@openssh.com",
    "ext-info-s",
    "kex-strict-s-v00@openssh.com",
];

fn encode(lists: &[Vec<String>; 6]) -> Vec<u8> {
    let mut out = vec![20u8];
    out.extend_from_slice(&[0u8; 16]);
    let empty: Vec<String> = Vec::new();
    for list in lists.iter().chain([&empty, &empty, &empty, &empty]) {
        let text = list.join(",");
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&[0u8; 5]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(lists) = fuzzing::kexinit(data) else {
        return;
    };
    for name in lists.iter().flatten() {
        assert!(!name.is_empty());
        assert!(name.bytes().all(|b| b.is_ascii_graphic() && b != b','), "{name:?}");
    }
    assert!(!lists[0].iter().any(|n| MARKERS.contains(&n.as_str())));
    let again = fuzzing::kexinit(&encode(&lists)).expect("re-encoded lists parse");
    assert_eq!(again, lists);
});
