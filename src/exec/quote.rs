//! Quoting for a POSIX shell: how a remote command line is built from
//! arguments so that no argument can change the command.

/// Quotes one argument for a POSIX shell (`sh`, `bash`, `dash`, `ksh`,
/// `zsh`): the shell that sshd runs the command with (`$SHELL -c`) reads it
/// back as exactly this one word.
///
/// Arguments made only of letters, digits and `_ @ % + = : , . / -` are
/// returned as they are (so command lines stay readable in logs); anything
/// else is put in single quotes, an embedded `'` becoming `'\''`. Inside
/// single quotes a POSIX shell gives no character a special meaning: spaces,
/// `$`, backticks, `\`, `*`, `;`, newlines and the like stay literal. An
/// empty argument becomes `''`.
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
/// ```
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain {
        return arg.to_string();
    }
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
/// ```
/// use etl_ssh::quote_args;
///
/// assert_eq!(
///     quote_args(["sha256sum", "/inbox/a file; rm -rf ~"]),
///     "sha256sum '/inbox/a file; rm -rf ~'"
/// );
/// ```
pub fn quote_args<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    args.into_iter()
        .map(|a| quote(a.as_ref()))
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
