//! Text that came from elsewhere (GitHub issues and comments, results blocks) or that is
//! about to reach a terminal: C0 and C1 control characters are removed, so an issue title
//! cannot clear the screen or write the clipboard (OSC 52) when it is printed.
use std::borrow::Cow;

/// C0 controls, DEL and the C1 range (which terminals also read as escape introducers).
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// One line of untrusted text (a title, a login, a label): tabs and line breaks become
/// spaces, every other control character is dropped.
pub fn untrusted_line(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if is_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// Untrusted multi-line text (a body, a comment): CRLF becomes LF; newline and tab are
/// kept, every other control character is dropped.
pub fn untrusted_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !is_control(c))
        .collect()
}

/// `text` as it may be printed to a terminal: newline and tab kept, every other control
/// character shown as U+FFFD. Borrowed when there is nothing to replace (the usual case).
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c != '\n' && c != '\t' && is_control(c))
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c != '\n' && c != '\t' && is_control(c) {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: &str = "Evil \u{1b}]52;c;ZXZpbA==\u{7}title \u{1b}[2J\u{9b}31m\r\nnext\tcol";

    #[test]
    fn escapes_are_removed_from_untrusted_text() {
        let line = untrusted_line(EVIL);
        assert!(!line.chars().any(is_control), "{line:?}");
        assert_eq!(line, "Evil ]52;c;ZXZpbA==title [2J31m  next col");
        let body = untrusted_text(EVIL);
        assert!(body.contains("\nnext\tcol"), "{body:?}");
        assert!(!body.contains('\u{1b}') && !body.contains('\r') && !body.contains('\u{9b}'));
    }

    #[test]
    fn the_terminal_never_sees_a_control_character() {
        let shown = for_terminal(EVIL);
        assert!(
            !shown
                .chars()
                .any(|c| c != '\n' && c != '\t' && is_control(c)),
            "{shown:?}"
        );
        assert_eq!(shown.matches('\u{fffd}').count(), 5);
        assert!(matches!(for_terminal("plain\ttext\n"), Cow::Borrowed(_)));
    }
}
