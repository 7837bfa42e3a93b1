//! TXT values as Route 53 reads and writes them: each record of a set is one `<Value>` in
//! presentation format, character-strings in double quotes (`"abc" "def"` is `abcdef`), at most
//! 255 bytes each, `"` and `\` escaped with a backslash and other special characters as
//! `\` and three octal digits (`\342\224\202`), as the Route 53 Developer Guide documents it.

use std::fmt::Write as _;

/// The longest character-string of a TXT record, in bytes.
const MAX_STRING: usize = 255;

/// `value` as one TXT record: quoted strings of at most 255 bytes.
pub(crate) fn quote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return "\"\"".into();
    }
    let mut quoted = String::with_capacity(bytes.len() + 2);
    for (i, chunk) in bytes.chunks(MAX_STRING).enumerate() {
        if i > 0 {
            quoted.push(' ');
        }
        quoted.push('"');
        for &byte in chunk {
            match byte {
                b'"' | b'\\' => {
                    quoted.push('\\');
                    quoted.push(char::from(byte));
                }
                0x20..=0x7e => quoted.push(char::from(byte)),
                _ => {
                    let _ = write!(quoted, "\\{byte:03o}");
                }
            }
        }
        quoted.push('"');
    }
    quoted
}

/// The text of a TXT record in Route 53's format: its quoted strings joined and unescaped.
/// `None` when it is not in that format (a bare value, an unterminated string, an octal code
/// over `\377`).
pub(crate) fn unquote(record: &str) -> Option<Vec<u8>> {
    let mut text = Vec::with_capacity(record.len());
    let mut bytes = record.bytes().peekable();
    loop {
        while bytes.next_if(u8::is_ascii_whitespace).is_some() {}
        match bytes.next() {
            None => return Some(text),
            Some(b'"') => {}
            Some(_) => return None,
        }
        loop {
            match bytes.next()? {
                b'"' => break,
                b'\\' => {
                    let escaped = bytes.next()?;
                    if (b'0'..=b'7').contains(&escaped) {
                        let mut code = u32::from(escaped - b'0');
                        for _ in 0..2 {
                            let digit = bytes.next().filter(|d| (b'0'..=b'7').contains(d))?;
                            code = code * 8 + u32::from(digit - b'0');
                        }
                        text.push(u8::try_from(code).ok()?);
                    } else {
                        text.push(escaped);
                    }
                }
                byte => text.push(byte),
            }
        }
    }
}

/// Whether a TXT record holds `value`: as quoted strings, however split or escaped, or bare
/// (as some tools wrote single words).
pub(crate) fn holds(record: &str, value: &str) -> bool {
    match unquote(record) {
        Some(text) => text == value.as_bytes(),
        None => record == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_escaped_and_split_at_255_bytes() {
        assert_eq!(
            quote("LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"),
            "\"LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM\""
        );
        assert_eq!(quote(r#"say "hi" \ bye"#), r#""say \"hi\" \\ bye""#);
        assert_eq!(quote("│ é\n"), r#""\342\224\202 \303\251\012""#);
        assert_eq!(quote(""), "\"\"");
        let long = "a".repeat(600);
        assert_eq!(
            quote(&long),
            format!("\"{}\" \"{}\" \"{}\"", "a".repeat(255), "a".repeat(255), "a".repeat(90))
        );
        let exactly = "b".repeat(255);
        assert_eq!(quote(&exactly), format!("\"{exactly}\""));
    }

    #[test]
    fn records_are_read_in_every_form_route53_writes() {
        assert_eq!(unquote(r#""token""#).as_deref(), Some(&b"token"[..]));
        assert_eq!(unquote(r#""tok" "en""#).as_deref(), Some(&b"token"[..]));
        assert_eq!(unquote(r#"  "a"   "b c"  "#).as_deref(), Some(&b"ab c"[..]));
        assert_eq!(
            unquote(r#""say \"hi\" \\ bye""#).as_deref(),
            Some(&br#"say "hi" \ bye"#[..])
        );
        assert_eq!(unquote(r#""\342\224\202\040x""#).as_deref(), Some("│ x".as_bytes()));
        assert_eq!(unquote(r#""\x""#).as_deref(), Some(&b"x"[..]));
        assert_eq!(unquote("").as_deref(), Some(&b""[..]));
        for bad in [
            "token",
            r#""open"#,
            r#""a" b"#,
            r#""\1""#,
            r#""\400""#,
            r#""\18x""#,
            r#""trailing\"#,
        ] {
            assert_eq!(unquote(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_record_holds_a_value_however_it_is_written() {
        for value in ["token", r#"say "hi" \ bye"#, "café", &"x".repeat(300)] {
            assert!(holds(&quote(value), value), "{value:?}");
        }
        assert!(holds(r#""tok" "en""#, "token"));
        assert!(holds(r#""caf\303\251""#, "café"));
        assert!(holds("token", "token"), "bare");
        assert!(!holds("\"token\"", "\"token\""));
        assert!(!holds("\"other\"", "token"));
        assert!(!holds("\"token\" \"x\"", "token"));
        assert!(!holds("tok en", "token"));
    }
}
