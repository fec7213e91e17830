//! Search for text the word index cannot see. FTS5's `unicode61` tokenizer splits words at
//! spaces and punctuation, so a run of Chinese or Japanese is one long token ("日本語テスト"
//! is not found by "日本語") and emoji are separators that are not indexed at all. A query
//! with such characters is matched as substrings instead: every whitespace-separated piece
//! must occur somewhere in the item's text (ASCII case ignored). This scans the notebook
//! (newest first, stopping after `limit` hits), which is fine at notebook sizes; ranking puts
//! items whose title contains a piece first.

/// Whether `query` needs substring matching: it has a character of a script written without
/// spaces between words (Han, kana, Hangul, Thai, Lao, Khmer, Myanmar) or a pictographic
/// symbol (emoji, arrows, dingbats).
pub fn wanted(query: &str) -> bool {
    query.chars().any(|c| unspaced_script(c) || pictograph(c))
}

fn unspaced_script(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF          // Thai, Lao
        | 0x1000..=0x109F        // Myanmar
        | 0x1100..=0x11FF        // Hangul Jamo
        | 0x1780..=0x17FF        // Khmer
        | 0x3040..=0x30FF        // Hiragana, Katakana
        | 0x3130..=0x318F        // Hangul compatibility Jamo
        | 0x31F0..=0x31FF        // Katakana extensions
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xAC00..=0xD7AF        // Hangul syllables
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0xFF66..=0xFF9F        // half-width katakana
        | 0x20000..=0x3134F) // CJK extensions B–G
}

fn pictograph(c: char) -> bool {
    !c.is_alphanumeric()
        && matches!(c as u32,
            0x2190..=0x21FF      // arrows
            | 0x2300..=0x23FF    // technical (⌛, ⏰)
            | 0x2600..=0x27BF    // symbols, dingbats
            | 0x2B00..=0x2BFF    // arrows, stars
            | 0x1F000..=0x1FAFF) // emoji
}

/// The pieces every item must contain: the query split at whitespace, a trailing `*` (prefix
/// syntax of word search) dropped, ASCII lower-cased, duplicates once.
pub fn pieces(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in query.split_whitespace() {
        let piece = piece.trim_end_matches('*').to_ascii_lowercase();
        if !piece.is_empty() && !out.contains(&piece) {
            out.push(piece);
        }
    }
    out
}

/// The query: kind filter `?1`, limit `?2`, and one `instr` per piece (`?3`, `?4`, …) over the
/// item's columns joined by newlines.
pub fn sql(pieces: usize) -> String {
    let text = "lower(f.title || char(10) || f.body || char(10) || f.comments || char(10) \
                || f.authors || char(10) || f.tags)";
    let conditions: Vec<String> = (0..pieces)
        .map(|i| format!("instr({text}, ?{}) > 0", i + 3))
        .collect();
    format!(
        "SELECT i.kind, i.num, i.status, f.title, f.body, f.comments, f.authors, f.tags
         FROM item_fts f JOIN items i ON i.id = f.rowid
         WHERE i.archived = 0 AND (?1 IS NULL OR i.kind = ?1) AND {}
         ORDER BY f.rowid DESC LIMIT ?2",
        conditions.join(" AND ")
    )
}

/// A score in FTS5's sense (lower is better): pieces found in the title count ten times.
pub fn score(columns: &[&str; 5], pieces: &[String]) -> f64 {
    let title = columns[0].to_ascii_lowercase();
    let in_title = pieces.iter().filter(|p| title.contains(p.as_str())).count();
    -((10 * in_title + pieces.len()) as f64)
}

/// About `width` characters around the first piece found (body first, then title, comments,
/// authors, tags), the piece in `[brackets]`.
pub fn snippet(columns: &[&str; 5], pieces: &[String], width: usize) -> String {
    for col in [1, 0, 2, 3, 4] {
        let text = columns[col];
        let lower = text.to_ascii_lowercase();
        let Some((at, piece)) = pieces
            .iter()
            .filter_map(|p| lower.find(p.as_str()).map(|at| (at, p)))
            .min_by_key(|(at, _)| *at)
        else {
            continue;
        };
        let end = at + piece.len();
        let before: String = text[..at].chars().rev().take(width / 2).collect();
        let before: String = before.chars().rev().collect();
        let after: String = text[end..].chars().take(width / 2).collect();
        let lead = if before.len() < at { "…" } else { "" };
        let tail = if after.len() < text.len() - end {
            "…"
        } else {
            ""
        };
        return format!("{lead}{before}[{}]{after}{tail}", &text[at..end]);
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspaced_scripts_and_emoji_want_substrings() {
        for q in [
            "日本語",
            "テスト",
            "한국어",
            "ภาษาไทย",
            "🚀",
            "mamba 🚀",
            "✅ done",
        ] {
            assert!(wanted(q), "{q}");
        }
        for q in ["mamba", "état de l'art", "Ünïcode", "a—b “quoted”", "x*"] {
            assert!(!wanted(q), "{q}");
        }
    }

    #[test]
    fn pieces_split_at_whitespace() {
        assert_eq!(pieces(" 日本語  Mamba* 日本語 "), ["日本語", "mamba"]);
    }

    #[test]
    fn snippets_bracket_the_first_piece() {
        let cols = ["title", "これは日本語テストです", "", "", ""];
        assert_eq!(
            snippet(&cols, &pieces("日本語"), 6),
            "これは[日本語]テスト…"
        );
        let cols = ["Launch 🚀 today", "", "", "", ""];
        assert_eq!(snippet(&cols, &pieces("🚀"), 40), "Launch [🚀] today");
    }
}
