//! [`Glob`]: shell-style patterns for file names.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A shell-style pattern for file names: `*` (any run of characters), `?`
/// (one character), `[abc]`, `[a-z]`, `[!abc]` (one of, or none of, a set),
/// and `\` to take the next character literally. It matches a whole name,
/// never across `/`.
///
/// ```
/// use etl_ssh::Glob;
///
/// let csv = Glob::new("orders_*.csv")?;
/// assert!(csv.matches("orders_2026-11.csv"));
/// assert!(!csv.matches("orders_2026-11.csv.part"));
///
/// // From a configuration file: `FromStr`, and `Display` prints the pattern.
/// let from_config: Glob = "*.csv".parse()?;
/// assert_eq!(from_config.to_string(), "*.csv");
/// # Ok::<(), etl_ssh::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses `pattern`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for an unclosed `[` or a trailing `\`.
    pub fn new(pattern: impl Into<String>) -> Result<Glob> {
        let pattern = pattern.into();
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::Any),
                '\\' => match chars.next() {
                    Some(c) => tokens.push(Token::Char(c)),
                    None => return Err(Error::invalid("glob pattern", "ends with a lone '\\'")),
                },
                '[' => {
                    let negated = matches!(chars.peek(), Some('!') | Some('^'));
                    if negated {
                        chars.next();
                    }
                    let mut items = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(c) = chars.next() else {
                            return Err(Error::invalid(
                                "glob pattern",
                                format!("unclosed '[' in {pattern:?}"),
                            ));
                        };
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            chars.next().unwrap_or('\\')
                        } else {
                            c
                        };
                        let mut lookahead = chars.clone();
                        if lookahead.next() == Some('-')
                            && lookahead.peek().is_some_and(|&n| n != ']')
                        {
                            chars.next();
                            let hi = chars.next().unwrap_or(lo);
                            items.push((lo, hi));
                        } else {
                            items.push((lo, lo));
                        }
                    }
                    tokens.push(Token::Set { negated, items });
                }
                c => tokens.push(Token::Char(c)),
            }
        }
        Ok(Glob { pattern, tokens })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // Iterative matcher with backtracking to the last star: linear
        // space, no recursion.
        let (mut t, mut n) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, n));
                    t += 1;
                    continue;
                }
                Some(tok) if tok_matches(tok, name[n]) => {
                    t += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            }
        }
        self.tokens[t..].iter().all(|tok| *tok == Token::Star)
    }
}

impl FromStr for Glob {
    type Err = Error;

    /// As [`Glob::new`].
    ///
    /// # Errors
    ///
    /// As [`Glob::new`].
    fn from_str(pattern: &str) -> Result<Glob> {
        Glob::new(pattern)
    }
}

impl fmt::Display for Glob {
    /// The pattern as given, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

fn tok_matches(tok: &Token, c: char) -> bool {
    match tok {
        Token::Char(x) => *x == c,
        Token::Any => true,
        Token::Star => false,
        Token::Set { negated, items } => {
            items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).expect("pattern").matches(n)
    }

    #[test]
    fn glob_basics() {
        assert!(m("*.csv", "a.csv"));
        assert!(m("*.csv", ".csv"));
        assert!(!m("*.csv", "a.csv.part"));
        assert!(!m("*.csv", "a.tsv"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", ""));
        assert!(m("**x*", "abxcd"));
        assert!(m("[ab]*", "bz"));
        assert!(!m("[!ab]*", "bz"));
        assert!(m("[a-c]1", "b1"));
        assert!(m("[a-]", "-"));
        assert!(m("[]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("é*ß", "éxyzß"));
        assert!(m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaab"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn glob_rejects_malformed() {
        assert_eq!(
            Glob::new("[abc").expect_err("unclosed").kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Glob::new("abc\\").expect_err("trailing").kind(),
            ErrorKind::InvalidInput
        );
    }
}
