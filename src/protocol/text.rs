//! What of a client's text may go back out: into a reply, an error message or a log.
//!
//! A browser can send a megabyte where a name is expected. Replies carry a field back
//! only when it is short; error messages and logs quote at most a short, escaped
//! prefix, so a flood of bad input can neither grow replies nor forge log lines.

/// Characters of a client's text quoted in an error message or a log line, at most.
pub const QUOTE_CHARS: usize = 64;
/// Bytes of a client's field echoed back in a reply (a refused PEERID, say), at most.
pub const MAX_ECHO: usize = 1024;

/// `text` for an error message or a log: escaped (no control character survives),
/// quoted, cut to [`QUOTE_CHARS`] characters with its full length said when cut.
pub fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let prefix: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_none() {
        format!("{prefix:?}")
    } else {
        format!("{prefix:?}… ({} bytes)", text.len())
    }
}

/// A client's field as a reply carries it back: whole when at most [`MAX_ECHO`] bytes,
/// else cut at a character boundary and marked with `…`.
pub fn echo(text: String) -> String {
    if text.len() <= MAX_ECHO {
        return text;
    }
    let mut end = MAX_ECHO;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_escaped() {
        assert_eq!(quote("/chat/1"), "\"/chat/1\"");
        let forged = "x\n2026-01-01 INFO forged\u{1b}[31m";
        let quoted = quote(forged);
        assert!(!quoted.chars().any(char::is_control), "{quoted}");
        let long = "é".repeat(1 << 20);
        let quoted = quote(&long);
        assert!(quoted.len() < 4 * QUOTE_CHARS + 32, "{}", quoted.len());
        assert!(quoted.ends_with(&format!("({} bytes)", long.len())), "{quoted}");
    }

    #[test]
    fn echoes_are_bounded() {
        assert_eq!(echo("abc".into()), "abc");
        let long = "é".repeat(MAX_ECHO);
        let echoed = echo(long);
        assert!(echoed.len() <= MAX_ECHO + '…'.len_utf8(), "{}", echoed.len());
        assert!(echoed.ends_with('…'));
    }
}
