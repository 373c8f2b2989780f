//! Text that came from a plugin or a record, made safe to keep and to
//! print: bounded in length, control characters escaped.

use std::borrow::Cow;

/// Longest rejection reason kept, in bytes: a longer one is cut at a
/// character boundary and ends with [`bounded`]'s note of what was cut.
pub const MAX_REASON_BYTES: usize = 4096;

/// Longest plugin log message printed, in bytes.
pub const MAX_LOG_BYTES: usize = 4096;

/// `text` cut to at most `max` bytes (plus a short note saying how many
/// bytes were cut), at a character boundary.
pub fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // A fresh, small allocation: truncating in place would keep the large
    // one, and shrinking it would leave holes too small for the next.
    let note = format!("… ({} bytes cut)", text.len() - end);
    let mut kept = String::with_capacity(end + note.len());
    kept.push_str(&text[..end]);
    kept.push_str(&note);
    kept
}

/// `text` with control characters (newlines, escape sequences) escaped as
/// Rust escapes, so it cannot forge or colour log lines.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("mysql://root:secret@h:3306/db"),
            "mysql://root:***@h:3306/db"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("short".into(), 10), "short");
        let cut = bounded("ééééé".into(), 3);
        assert_eq!(cut, "é… (8 bytes cut)");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("1.0"), "1.0");
        assert_eq!(
            printable("1.0\nERROR forged\x1b[31m"),
            "1.0\\nERROR forged\\u{1b}[31m"
        );
    }
}
