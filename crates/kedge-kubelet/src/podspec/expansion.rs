//! `$(VAR)` expansion as upstream's forked `expansion.Expand`
//! (`third_party/forked/golang/expansion`): `$$` is an escaped `$`, a
//! reference whose name the mapping does not know is left as written, an
//! unterminated `$(` is kept literally.

/// Expands `$(NAME)` references in `input` with `lookup`; unknown names stay
/// as `$(NAME)`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos + 1..];
        if after.is_empty() {
            // A trailing `$` is kept as is.
            break;
        }
        out.push_str(&rest[..pos]);
        let first = after.chars().next().unwrap_or('$');
        match first {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            c => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    /// The table of upstream's `TestMapReference`/`TestMapping`
    /// (expansion_test.go), with its context.
    #[test]
    fn upstream_table() {
        let ctx = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ];
        let lookup = |n: &str| {
            ctx.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("foo$(VAR_A)bar$(VAR_B)baz$(VAR_C)", "fooAbarBbazC"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(VAR_EMPTY)", ""),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("$$$$$$$$(VAR_A)", "$$$$(VAR_A)"),
            ("$$$$$$$$(VAR_A)$$", "$$$$(VAR_A)$"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A)$(VAR_B", "A$(VAR_B"),
            ("$(VAR_A", "$(VAR_A"),
            ("$", "$"),
            ("$$", "$"),
            ("$$$", "$$"),
            ("$()", "$()"),
            ("$(", "$("),
            ("$$$(", "$$("),
            ("$VAR_A", "$VAR_A"),
            ("$$VAR_A", "$VAR_A"),
            ("$$$VAR_A", "$$VAR_A"),
            ("foo$", "foo$"),
            ("$ü", "$ü"),
            ("", ""),
            ("no refs", "no refs"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup), want, "input {input:?}");
        }
    }
}
