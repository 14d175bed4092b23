//! OpenSSH's `match_pattern` (`match.c`): the `*` and `?` wildcards of
//! host patterns and algorithm lists.

/// Whether `text` matches `pattern`: `*` matches any run of bytes
/// (none included), `?` exactly one; every other byte matches itself
/// (callers lower-case both sides where OpenSSH ignores case). Linear in
/// practice: no backtracking blow-up on long patterns.
pub(crate) fn match_pattern(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|tail| tail.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::match_pattern;

    #[test]
    fn wildcards() {
        assert!(match_pattern(b"*", b""));
        assert!(match_pattern(b"", b""));
        assert!(!match_pattern(b"", b"a"));
        assert!(match_pattern(b"hmac-sha1*", b"hmac-sha1-etm@openssh.com"));
        assert!(!match_pattern(b"hmac-sha1", b"hmac-sha1-96"));
        assert!(match_pattern(b"*-sha1", b"diffie-hellman-group14-sha1"));
        assert!(!match_pattern(b"*-sha1", b"diffie-hellman-group14-sha256"));
        assert!(match_pattern(b"*.partner.example", b"db.partner.example"));
        assert!(match_pattern(b"db?", b"db1"));
        assert!(!match_pattern(b"db?", b"db"));
        assert!(match_pattern(b"a*b*c", b"axxbyyc"));
        assert!(!match_pattern(b"A", b"a"), "case-sensitive");
    }
}
