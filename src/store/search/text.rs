//! Query words and document tokens, folded the way the FTS5 index folds them
//! (`unicode61 remove_diacritics 2`: letters and digits form tokens, case and
//! diacritics are ignored), so ranking and snippets count the same words FTS5 matched.
use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

/// One word of a query; `prefix` when the user ended it with `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub word: String,
    pub prefix: bool,
}

impl Term {
    pub fn matches(&self, token: &str) -> bool {
        if self.prefix {
            token.starts_with(&self.word)
        } else {
            token == self.word
        }
    }

    /// The term as an FTS5 phrase; quoting neutralises FTS syntax in what the user typed.
    pub fn fts(&self) -> String {
        let quoted = format!("\"{}\"", self.word.replace('"', "\"\""));
        if self.prefix { quoted + "*" } else { quoted }
    }
}

/// Splits what a user typed into terms: every word must match, as a whole word unless it
/// ends with `*`. Anything that is not a letter or digit separates words, so FTS5 operators
/// and quotes are plain text. Repeated terms are kept once.
pub fn parse_query(input: &str) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    for (start, end) in token_spans(input) {
        let prefix = input[end..].starts_with('*');
        let term = Term {
            word: fold(&input[start..end]),
            prefix,
        };
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    terms
}

/// The FTS5 MATCH expression for `terms` (all must match), or `None` for no terms.
pub fn fts_expression(terms: &[Term]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    Some(terms.iter().map(Term::fts).collect::<Vec<_>>().join(" "))
}

/// Search-as-you-type: the last word, still being typed, also matches as a prefix.
pub fn as_you_type(input: &str) -> String {
    match input.chars().last() {
        Some(c) if c.is_alphanumeric() => format!("{input}*"),
        _ => input.to_string(),
    }
}

/// Byte ranges of the tokens of `text`.
pub fn token_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut spans = Vec::new();
    for_each_token(text, |s, e, _| spans.push((s, e)));
    spans.into_iter()
}

/// Calls `f(start, end, ascii)` for the byte range of every token of `text`. Ranking
/// tokenizes every candidate, so this is a plain loop where ASCII goes a byte at a time
/// and only other characters are decoded.
#[inline]
pub fn for_each_token(text: &str, mut f: impl FnMut(usize, usize, bool)) {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut start = None;
    let mut ascii = true;
    while pos < bytes.len() {
        let b = bytes[pos];
        let (len, word) = if b < 0x80 {
            (1, b.is_ascii_alphanumeric())
        } else {
            let c = text[pos..].chars().next().expect("char boundary");
            (c.len_utf8(), c.is_alphanumeric())
        };
        match (word, start) {
            (true, None) => {
                start = Some(pos);
                ascii = len == 1;
            }
            (true, Some(_)) => ascii &= len == 1,
            (false, Some(s)) => {
                f(s, pos, ascii);
                start = None;
            }
            (false, None) => {}
        }
        pos += len;
    }
    if let Some(s) = start {
        f(s, bytes.len(), ascii);
    }
}

/// Lower case without diacritics ("Mamba" and "mámba" fold to "mamba").
pub fn fold(token: &str) -> String {
    if token.is_ascii() {
        return token.to_ascii_lowercase();
    }
    token
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<(String, bool)> {
        parse_query(input)
            .into_iter()
            .map(|t| (t.word, t.prefix))
            .collect()
    }

    #[test]
    fn queries_are_words_with_optional_prefix_star() {
        assert_eq!(
            words("Selective scan*"),
            vec![("selective".into(), false), ("scan".into(), true)]
        );
        // FTS5 syntax is just text; repeated words count once.
        assert_eq!(
            words("a\"b OR c* a"),
            vec![
                ("a".into(), false),
                ("b".into(), false),
                ("or".into(), false),
                ("c".into(), true)
            ]
        );
        assert!(parse_query(" -- * ").is_empty());
        assert_eq!(
            fts_expression(&parse_query("mamba kern*")).unwrap(),
            "\"mamba\" \"kern\"*"
        );
        assert_eq!(fts_expression(&[]), None);
    }

    #[test]
    fn folding_ignores_case_and_diacritics() {
        assert_eq!(fold("MÁMBA"), "mamba");
        assert_eq!(fold("Schrödinger"), "schrodinger");
        assert_eq!(fold("état"), "etat");
        assert_eq!(fold("日本"), "日本");
    }

    #[test]
    fn tokens_split_on_anything_but_letters_and_digits() {
        let text = "S6 (selective), état_de-l'art 2312.00752";
        let toks: Vec<&str> = token_spans(text).map(|(s, e)| &text[s..e]).collect();
        assert_eq!(
            toks,
            vec!["S6", "selective", "état", "de", "l", "art", "2312", "00752"]
        );
        assert_eq!(token_spans("  ").count(), 0);
    }

    #[test]
    fn as_you_type_makes_the_last_word_a_prefix() {
        assert_eq!(as_you_type("selective sc"), "selective sc*");
        assert_eq!(as_you_type("selective "), "selective ");
        assert_eq!(as_you_type(""), "");
    }
}
