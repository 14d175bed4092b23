//! Quoting for a POSIX shell: how a remote command line is built from
//! arguments so that no argument can change the command.

/// Quotes one argument for a POSIX shell (`sh`, `bash`, `dash`, `ksh`,
/// `zsh`): the shell that sshd runs the command with (`$SHELL -c`) reads it
/// back as exactly this one word.
///
/// Arguments made only of letters, digits and `_ @ % + = : , . / -`, and
/// not starting with `=` (zsh expands `=name` to a program's path), are
/// returned as they are (so command lines stay readable in logs); anything
/// else is put in single quotes, an embedded `'` becoming `'\''`. Inside
/// single quotes a POSIX shell gives no character a special meaning: spaces,
/// `$`, backticks, `\`, `*`, `;`, newlines and the like stay literal. An
/// empty argument becomes `''`.
///
/// A NUL byte cannot be passed to any program (arguments are C strings), so
/// no quoting can carry it: it is kept as it is, inside the quotes, and
/// [`ExecSession::run`](crate::ExecSession::run) refuses a command line that
/// holds one with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput).
///
/// Not for a Windows server (`cmd.exe` does not know single quotes) nor for
/// a login shell that is not POSIX (`csh`/`tcsh` treat `!` and newlines
/// specially even in single quotes).
///
/// ```
/// use etl_ssh::quote;
///
/// assert_eq!(quote("/inbox/orders.csv"), "/inbox/orders.csv");
/// assert_eq!(quote("it's $HOME"), r#"'it'\''s $HOME'"#);
/// assert_eq!(quote(""), "''");
/// assert_eq!(quote("=ls"), "'=ls'");
/// ```
pub fn quote(arg: &str) -> String {
    if is_plain(arg) {
        return arg.to_string();
    }
    single_quote(arg)
}

/// Left unquoted: no shell gives these words a meaning as arguments.
fn is_plain(arg: &str) -> bool {
    !arg.is_empty()
        && !arg.starts_with('=')
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b))
}

/// Words a shell reads as syntax, not as a program, in command position
/// (POSIX, plus bash's, ksh's and zsh's own) that [`is_plain`] lets through.
const RESERVED_WORDS: &[&str] = &[
    "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for", "foreach", "function",
    "if", "in", "repeat", "select", "then", "time", "until", "while",
];

/// Would the shell read this plain word, in command position, as something
/// else than a program name: a reserved word, or `NAME=value` (an assignment)?
fn is_syntax_as_program(arg: &str) -> bool {
    RESERVED_WORDS.contains(&arg) || arg.contains('=')
}

fn single_quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Joins arguments into one command line, each [`quote`]d: the program
/// first, then its arguments.
///
/// The program is also quoted where the shell would otherwise not run it as
/// a program: a reserved word (`if`, `time`, ...) or a word with `=` (which
/// would be an assignment, and the next argument would run instead).
///
/// ```
/// use etl_ssh::quote_args;
///
/// assert_eq!(
///     quote_args(["sha256sum", "/inbox/a file; rm -rf ~"]),
///     "sha256sum '/inbox/a file; rm -rf ~'"
/// );
/// assert_eq!(quote_args(["A=1", "rm", "x"]), "'A=1' rm x");
/// ```
pub fn quote_args<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let a = a.as_ref();
            if i == 0 && is_plain(a) && is_syntax_as_program(a) {
                single_quote(a)
            } else {
                quote(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_as_they_are() {
        for w in ["ls", "-la", "/inbox/2026/a.csv", "a=b", "user@host:x,y%z+1"] {
            assert_eq!(quote(w), w);
        }
    }

    #[test]
    fn everything_else_is_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$(id)`id`"), "'$(id)`id`'");
        assert_eq!(quote("'"), r"''\'''");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(quote("*"), "'*'");
        assert_eq!(quote("é"), "'é'");
    }

    #[test]
    fn quote_args_joins_with_spaces() {
        assert_eq!(
            quote_args(["printf", "%s\\n", "a b"]),
            r"printf '%s\n' 'a b'"
        );
        assert_eq!(quote_args(Vec::<String>::new()), "");
    }

    /// Fuzzing finding: zsh expands an unquoted `=name` to the path of
    /// `name` (or fails), so `=ls` was not read back as `=ls` there.
    #[test]
    fn leading_equals_is_quoted() {
        assert_eq!(quote("=ls"), "'=ls'");
        assert_eq!(quote("="), "'='");
        assert_eq!(quote("a=b"), "a=b");
    }

    /// Fuzzing finding: an unquoted `A=1` in command position is an
    /// assignment, and the shell ran the next argument as the program.
    #[test]
    fn program_is_never_an_assignment_or_reserved_word() {
        assert_eq!(quote_args(["A=1", "printf", "ran"]), "'A=1' printf ran");
        assert_eq!(quote_args(["if", "true"]), "'if' true");
        assert_eq!(quote_args(["time", "ls"]), "'time' ls");
        assert_eq!(quote_args(["ls", "if", "A=1"]), "ls if A=1");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(quote_args(["A=1", "printf", "ran"]))
            .output()
            .expect("run sh");
        assert_eq!(out.stdout, b"", "the shell ran printf: {out:?}");
        assert_eq!(out.status.code(), Some(127), "{out:?}");
    }

    /// NUL cannot be carried by any quoting: it is kept for `run` to refuse.
    #[test]
    fn nul_is_kept_as_it_is() {
        assert_eq!(quote("a\0b"), "'a\0b'");
    }

    /// The local `sh` reads each quoted word back unchanged.
    #[test]
    fn local_sh_round_trip() {
        let nasty = [
            "plain",
            "with space",
            "it's",
            "''",
            "$HOME",
            "`id`",
            "$(id)",
            "a\nb",
            "back\\slash",
            ";&|<>(){}[]*?!#~",
            "\"double\"",
            "-n",
            "",
            "tab\there",
            "=ls",
            "if",
            "A=1",
        ];
        let script = format!(
            "for a in {}; do printf '%s\\0' \"$a\"; done",
            quote_args(nasty)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{out:?}");
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        let want: Vec<&[u8]> = nasty
            .iter()
            .map(|s| s.as_bytes())
            .chain(std::iter::once(&b""[..]))
            .collect();
        assert_eq!(got, want);
    }
}
