//! Shell quoting: `quote` and `quote_args`.
//!
//! The input, as UTF-8 (invalid bytes become U+FFFD), is quoted whole, and
//! split on U+001F (unit separator) into the arguments of `quote_args`.
//! Each command line is read back by a small model of POSIX `sh` word
//! splitting that panics on anything that would be split, expanded or
//! given a meaning (unquoted `$`, `` ` ``, `"`, `*`, `~`, `;`, blanks inside
//! a word, non-ASCII, ...), and must give back exactly the arguments.
//! Beyond POSIX `sh`, the model refuses a word that starts with an unquoted
//! `=` (zsh's `=command` expansion) and, in command position, an unquoted
//! reserved word or `NAME=value` (an assignment, not a command).
//!
//! A NUL byte cannot reach any command (argv strings end at NUL); `quote`
//! keeps it as it is, so the command line still holds it and
//! `ExecSession::run` refuses it with `InvalidInput`. The model checks that
//! NUL is kept, never dropped or changed.
#![no_main]

use etl_ssh::{quote, quote_args};
use libfuzzer_sys::fuzz_target;

const RESERVED: &[&str] = &[
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then",
    "until", "while", "function", "select", "[[", "]]", "time", "coproc", "foreach", "repeat",
];

/// Characters a POSIX shell leaves alone in an unquoted word (not at its start for `=`).
fn unquoted_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Word {
    text: String,
    /// Nothing in it was quoted or escaped.
    bare: bool,
}

/// Splits a command line as a POSIX shell would, refusing what we do not model.
fn words(line: &str) -> Vec<String> {
    let mut out: Vec<Word> = Vec::new();
    let mut current: Option<Word> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if let Some(word) = current.take() {
                    out.push(word);
                }
            }
            '\'' => {
                let word = current.get_or_insert(Word {
                    text: String::new(),
                    bare: true,
                });
                word.bare = false;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.text.push(c),
                        None => panic!("unterminated single quote in {line:?}"),
                    }
                }
            }
            '\\' => {
                let word = current.get_or_insert(Word {
                    text: String::new(),
                    bare: true,
                });
                word.bare = false;
                match chars.next() {
                    Some('\n') => panic!("line continuation in {line:?}"),
                    Some(c) => word.text.push(c),
                    None => panic!("trailing backslash in {line:?}"),
                }
            }
            c if unquoted_ok(c) => {
                let word = current.get_or_insert(Word {
                    text: String::new(),
                    bare: true,
                });
                if word.text.is_empty() && word.bare && c == '=' {
                    panic!("a word starts with an unquoted `=` (zsh expands it) in {line:?}");
                }
                word.text.push(c);
            }
            c => panic!("unquoted {c:?} in {line:?}"),
        }
    }
    out.extend(current);
    if let Some(first) = out.first().filter(|w| w.bare) {
        assert!(
            !RESERVED.contains(&first.text.as_str()),
            "reserved word {:?} in command position in {line:?}",
            first.text
        );
        assert!(
            !is_assignment(&first.text),
            "assignment {:?} in command position in {line:?}",
            first.text
        );
    }
    out.into_iter().map(|w| w.text).collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    let quoted = quote(&text);
    // One argument: not in command position, so a leading reserved word or
    // assignment is fine; check the word alone.
    let mut got = words(&format!("x {quoted}"));
    assert_eq!(got.remove(0), "x");
    assert_eq!(got, [&*text], "quote({text:?}) = {quoted:?}");
    assert_eq!(
        quoted.matches('\0').count(),
        text.matches('\0').count(),
        "NUL bytes changed: {quoted:?}"
    );

    let args: Vec<&str> = text.split('\u{1f}').collect();
    let line = quote_args(&args);
    assert_eq!(words(&line), args, "quote_args({args:?}) = {line:?}");
});
