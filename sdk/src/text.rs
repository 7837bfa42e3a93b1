//! Text for channels and messages: cutting to a provider's limit, and the start of a body for an
//! error message.
//!
//! ```
//! use certctl_sdk::text;
//!
//! // Slack's header block holds 150 characters.
//! let header = text::truncate(&"x".repeat(300), 150);
//! assert_eq!(header.chars().count(), 150);
//! assert!(header.ends_with('…'));
//!
//! assert_eq!(text::snippet("{\n  \"error\": \"bad token\"\n}"), "{ \"error\": \"bad token\" }");
//! ```

/// How many characters of a body [`snippet`] keeps.
const SNIPPET: usize = 200;

/// `text` if it has at most `max` characters; otherwise its first `max - 1` characters and `…`,
/// so that the result has exactly `max` (for a `max` of at least 1). Counts characters (Unicode
/// scalar values), which is how chat and pager APIs state their limits, and never cuts one in
/// half.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The start of a response body on one line, for an error message: runs of whitespace (line
/// breaks included) become one space, and after 200 characters the rest becomes `...`. This is
/// how [`http::status_error`](crate::http::status_error) quotes a body; use it when a plugin
/// words its own message about an answer.
pub fn snippet(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= SNIPPET {
        one_line
    } else {
        let cut: String = one_line.chars().take(SNIPPET).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_characters_with_an_ellipsis() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("eleven chars", 10), "eleven ch…");
        assert_eq!(truncate("ééééé", 3), "éé…", "characters, not bytes");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("abc", 0), "…");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn snippets_are_one_line_and_cut_after_200_characters() {
        assert_eq!(snippet("  invalid_payload \r\n\tmore  "), "invalid_payload more");
        assert_eq!(snippet(""), "");
        let exact = "y".repeat(200);
        assert_eq!(snippet(&exact), exact);
        let long = "z ".repeat(500);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), 203);
        assert!(cut.starts_with("z z") && cut.ends_with("..."), "{cut}");
    }
}
