//! BibTeX in and out: papers from `.bib` files (parsed by the `biblatex` crate) and
//! entries for export.
use biblatex::{Bibliography, ChunksExt, Entry};
use serde::Serialize;

use crate::config::line_of;
use crate::error::{Error, Result};
use crate::model::{Fields, Item, ItemId, Kind, NewItem};
use crate::store::Store;

/// What an import did, entry by entry.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub added: Vec<(String, ItemId)>,
    /// (citation key, why it was skipped)
    pub skipped: Vec<(String, String)>,
}

/// Parses a `.bib` text into new paper items. Errors name the file and line: an entry
/// whose braces do not close is reported at its own first line, and a file without a
/// single entry is an error, not "0 added".
pub fn parse_papers(text: &str, file: &str) -> Result<Vec<NewItem>> {
    let parse_err = |line: usize, msg: String| Error::Parse {
        file: file.to_string(),
        line,
        msg,
    };
    if let Some(line) = unclosed_entry(text) {
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('{'))
            .map(|(_, rest)| rest.split(',').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        return Err(parse_err(
            line,
            format!("malformed BibTeX: the braces of entry `{key}` do not close (missing `}}`?)"),
        ));
    }
    let bib = Bibliography::parse(text).map_err(|e| {
        parse_err(
            line_of(text, e.span.start),
            format!("malformed BibTeX: {}", describe(&e.kind)),
        )
    })?;
    if bib.iter().next().is_none() {
        return Err(parse_err(
            1,
            "no BibTeX entries found (expected entries like `@article{key, title = {…}}`)".into(),
        ));
    }
    bib.iter()
        .map(|entry| {
            paper_from_entry(entry, raw_entry(text, &entry.key)).map_err(|msg| Error::Parse {
                file: file.to_string(),
                line: text
                    .find(&format!("{{{},", entry.key))
                    .map(|o| line_of(text, o))
                    .unwrap_or(1),
                msg: format!("entry `{}`: {msg}", entry.key),
            })
        })
        .collect()
}

fn describe(kind: &biblatex::ParseErrorKind) -> String {
    use biblatex::ParseErrorKind as K;
    match kind {
        K::UnexpectedEof => "the file ends inside an entry (missing `}`?)".into(),
        K::DuplicateKey(k) => format!("citation key `{k}` appears twice"),
        other => other.to_string(),
    }
}

fn field(entry: &Entry, name: &str) -> Option<String> {
    entry
        .get(name)
        .map(|c| c.format_verbatim())
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
}

/// The 1-based line of the first entry whose braces are still open when the next entry
/// starts (a line beginning with `@`) or the file ends.
fn unclosed_entry(text: &str) -> Option<usize> {
    let mut depth = 0i64;
    let mut start: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('@') {
            if depth > 0 {
                return start;
            }
            start = Some(i + 1);
            depth = 0;
        }
        let mut prev = ' ';
        for c in line.chars() {
            match c {
                '{' if prev != '\\' => depth += 1,
                '}' if prev != '\\' => depth -= 1,
                _ => {}
            }
            prev = c;
        }
    }
    (depth > 0).then_some(start).flatten()
}

/// The entry with citation key `key` exactly as the file writes it (from its `@` to its
/// closing brace), so an export gives it back unchanged (LaTeX in titles included).
fn raw_entry(text: &str, key: &str) -> Option<String> {
    let open = text.find(&format!("{{{key},"))?;
    let at = text[..open].rfind('@')?;
    let mut depth = 0i64;
    let mut prev = ' ';
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' if prev != '\\' => depth += 1,
            '}' if prev != '\\' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[at..open + i + 1].to_string());
                }
            }
            _ => {}
        }
        prev = c;
    }
    None
}

fn paper_from_entry(entry: &Entry, raw: Option<String>) -> std::result::Result<NewItem, String> {
    let title = field(entry, "title").ok_or("no title")?;
    let authors = entry
        .author()
        .ok()
        .map(|people| {
            people
                .iter()
                .map(|p| {
                    if p.given_name.is_empty() && p.name.eq_ignore_ascii_case("others") {
                        "et al.".to_string() // BibTeX's `and others`
                    } else if p.given_name.is_empty() {
                        p.name.clone()
                    } else {
                        format!("{} {}", p.given_name, p.name)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|a| !a.is_empty());
    let year = field(entry, "year")
        .or_else(|| field(entry, "date"))
        .and_then(|y| y.get(..4).and_then(|y| y.parse().ok()));
    let venue = field(entry, "journal")
        .or_else(|| field(entry, "journaltitle"))
        .or_else(|| field(entry, "booktitle"))
        .or_else(|| field(entry, "howpublished"))
        .filter(|v| !v.to_lowercase().starts_with("arxiv"));
    let url = field(entry, "url");
    let arxiv_id = field(entry, "eprint")
        .filter(|_| {
            field(entry, "archiveprefix")
                .or_else(|| field(entry, "eprinttype"))
                .is_none_or(|p| p.eq_ignore_ascii_case("arxiv"))
        })
        .or_else(|| field(entry, "journal").and_then(|j| find_arxiv_id(&j)))
        .or_else(|| url.as_deref().and_then(find_arxiv_id));
    // The file's own text: re-serialising through the parser escapes LaTeX (`\\alpha`
    // became `\\\\alpha`) and reorders fields.
    let bibtex = raw.unwrap_or_else(|| {
        entry
            .to_bibtex_string()
            .unwrap_or_else(|_| entry.to_biblatex_string())
    });
    let mut item = NewItem::new(Kind::Paper, title);
    item.fields = Fields {
        authors,
        year,
        venue,
        arxiv_id,
        doi: field(entry, "doi"),
        url,
        bibtex_key: Some(entry.key.clone()),
        bibtex: Some(bibtex),
        ..Default::default()
    };
    if let Some(abs) = field(entry, "abstract") {
        item.body = abs;
    }
    Ok(item)
}

/// Finds an arXiv identifier such as `2312.00752` in free text or a URL.
pub fn find_arxiv_id(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let start = ["arxiv.org/abs/", "arxiv.org/pdf/", "arxiv:"]
        .iter()
        .find_map(|p| lower.find(p).map(|i| i + p.len()))?;
    let id: String = text[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'v')
        .collect();
    let id = id.trim_end_matches('.');
    let core = id.split('v').next().unwrap_or("");
    let ok = core.len() >= 9 && core.as_bytes().get(4) == Some(&b'.');
    ok.then(|| core.to_string())
}

impl Store {
    /// Imports papers from BibTeX in one transaction, skipping any whose DOI, arXiv id
    /// or citation key is already in the notebook (or earlier in the same file).
    pub fn import_bibtex(&mut self, text: &str, file: &str) -> Result<ImportReport> {
        let papers = parse_papers(text, file)?;
        self.write(|tx, ctx| {
            let mut report = ImportReport::default();
            for paper in &papers {
                let f = &paper.fields;
                let key = f.bibtex_key.clone().unwrap_or_default();
                if let Some((id, why)) = crate::store::items::duplicate_paper(tx, f)? {
                    report.skipped.push((key, format!("same {why} as {id}")));
                    continue;
                }
                let item = crate::store::insert_item(tx, ctx, paper)?;
                report.added.push((key, item.id));
            }
            Ok(report)
        })
    }
}

/// A BibTeX entry for a paper: the imported entry if there is one, else one built from its fields.
pub fn entry_for(paper: &Item) -> String {
    if let Some(b) = &paper.fields.bibtex {
        return b.trim().to_string();
    }
    let f = &paper.fields;
    let key = f.bibtex_key.clone().unwrap_or_else(|| citation_key(paper));
    let esc = |s: &str| s.replace(['{', '}'], "");
    let mut lines = vec![format!("  title = {{{}}}", esc(&paper.title))];
    if let Some(a) = &f.authors {
        let names: Vec<&str> = a
            .split(", ")
            .map(|n| match n.trim() {
                "et al." | "et al" | "others" => "others",
                n => n,
            })
            .collect();
        lines.push(format!("  author = {{{}}}", esc(&names.join(" and "))));
    }
    if let Some(y) = f.year {
        lines.push(format!("  year = {{{y}}}"));
    }
    if let Some(v) = &f.venue {
        // `journal` is not a field of `@misc`; `howpublished` is.
        lines.push(format!("  howpublished = {{{}}}", esc(v)));
    }
    if let Some(d) = &f.doi {
        lines.push(format!("  doi = {{{d}}}"));
    }
    if let Some(a) = &f.arxiv_id {
        lines.push(format!("  eprint = {{{a}}}"));
        lines.push("  archiveprefix = {arXiv}".to_string());
    }
    if let Some(u) = &f.url {
        lines.push(format!("  url = {{{u}}}"));
    }
    format!("@misc{{{key},\n{}\n}}", lines.join(",\n"))
}

/// A citation key in the common `surnameYEARword` style.
pub fn citation_key(paper: &Item) -> String {
    if let Some(k) = &paper.fields.bibtex_key {
        return k.clone();
    }
    let surname = paper
        .fields
        .authors
        .as_deref()
        .and_then(|a| a.split(',').next())
        .and_then(|first| first.split_whitespace().last())
        .unwrap_or("anon");
    let word = paper
        .title
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| w.len() > 3)
        .unwrap_or("paper");
    let clean = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase()
    };
    format!(
        "{}{}{}",
        clean(surname),
        paper.fields.year.map(|y| y.to_string()).unwrap_or_default(),
        clean(word)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIB: &str = r#"
@article{gu2023mamba,
  title = {Mamba: Linear-Time Sequence Modeling with Selective State Spaces},
  author = {Gu, Albert and Dao, Tri},
  journal = {arXiv preprint arXiv:2312.00752},
  year = {2023}
}

@inproceedings{vaswani2017attention,
  title = {Attention Is All You Need},
  author = {Vaswani, Ashish and Shazeer, Noam},
  booktitle = {NeurIPS},
  year = {2017},
  doi = {10.5555/3295222.3295349}
}
"#;

    #[test]
    fn parses_fields() {
        let papers = parse_papers(BIB, "refs.bib").unwrap();
        assert_eq!(papers.len(), 2);
        let m = &papers[0];
        assert_eq!(
            m.title,
            "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
        );
        assert_eq!(m.fields.authors.as_deref(), Some("Albert Gu, Tri Dao"));
        assert_eq!(m.fields.arxiv_id.as_deref(), Some("2312.00752"));
        assert_eq!(m.fields.year, Some(2023));
        assert_eq!(m.fields.venue, None);
        assert_eq!(papers[1].fields.venue.as_deref(), Some("NeurIPS"));
        assert_eq!(
            papers[1].fields.doi.as_deref(),
            Some("10.5555/3295222.3295349")
        );
    }

    #[test]
    fn malformed_names_file_and_line() {
        let bad =
            "@article{ok,\n title = {A},\n year = {2020}\n}\n\n@article{broken,\n title = {B\n";
        let err = parse_papers(bad, "refs.bib").unwrap_err().to_string();
        assert!(err.starts_with("refs.bib:"), "{err}");
        assert!(err.contains("malformed BibTeX"), "{err}");
        let no_title = "@misc{k,\n year = {2020}\n}\n";
        let err = parse_papers(no_title, "x.bib").unwrap_err().to_string();
        assert!(err.starts_with("x.bib:1: entry `k`: no title"), "{err}");
    }

    #[test]
    fn arxiv_ids_are_found() {
        assert_eq!(
            find_arxiv_id("https://arxiv.org/abs/2403.19887v2").as_deref(),
            Some("2403.19887")
        );
        assert_eq!(
            find_arxiv_id("arXiv preprint arXiv:1706.03762").as_deref(),
            Some("1706.03762")
        );
        assert_eq!(find_arxiv_id("no id here"), None);
    }

    #[test]
    fn import_dedupes_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db"), "me").unwrap();
        let r = s.import_bibtex(BIB, "refs.bib").unwrap();
        assert_eq!(r.added.len(), 2);
        let again = s.import_bibtex(BIB, "refs.bib").unwrap();
        assert!(again.added.is_empty());
        assert_eq!(again.skipped.len(), 2);
        assert!(
            again.skipped[0].1.contains("arXiv 2312.00752"),
            "{:?}",
            again.skipped
        );
        // Export then re-import is a no-op: the entries round-trip.
        let papers = s.list(&Default::default()).unwrap();
        let exported: Vec<String> = papers.iter().map(entry_for).collect();
        let re = parse_papers(&exported.join("\n\n"), "export.bib").unwrap();
        assert_eq!(re.len(), 2);
        assert_eq!(re[0].title, papers[0].title);
    }
}
