//! Item ↔ issue rendering: the body with its footer and hidden marker, labels, and the
//! projections the merge compares. Pure functions.
use std::collections::BTreeSet;

use crate::model::{Item, ItemId, Kind, LinkView, normalize_tag};

use super::merge::Proj;

/// GitHub's limit on issue and comment bodies, in characters.
pub const MAX_BODY: usize = 65_536;

/// Starts labbook's generated footer inside an issue body.
pub const FOOTER_START: &str = "<!-- labbook:footer -->";
const FOOTER_RULE: &str = "\n\n---\n";
const TRUNCATED: &str = "*(truncated: the full text is in labbook as ";

/// The hidden marker that identifies an item's issue: `<!-- labbook:T-12 -->`.
pub fn marker(id: ItemId) -> String {
    format!("<!-- labbook:{id} -->")
}

/// The item a body's marker names, if any.
pub fn parse_marker(body: &str) -> Option<ItemId> {
    let mut rest = body;
    while let Some(i) = rest.find("<!-- labbook:") {
        let after = &rest[i + "<!-- labbook:".len()..];
        if let Some(end) = after.find(" -->")
            && let Ok(id) = after[..end].parse::<ItemId>()
        {
            return Some(id);
        }
        rest = after;
    }
    None
}

/// The item named by the marker that ends `body` (trailing whitespace aside), as the
/// footer writes it; a marker anywhere else in the text does not count.
pub fn trailing_marker(body: &str) -> Option<ItemId> {
    let rest = body.trim_end().strip_suffix(" -->")?;
    let start = rest.rfind("<!-- labbook:")?;
    rest[start + "<!-- labbook:".len()..].parse().ok()
}

/// Marker of a comment posted from the notebook: `<!-- labbook:comment:42 -->`.
pub fn comment_marker(local_id: i64) -> String {
    format!("<!-- labbook:comment:{local_id} -->")
}

pub fn parse_comment_marker(body: &str) -> Option<i64> {
    let i = body.find("<!-- labbook:comment:")?;
    let after = &body[i + "<!-- labbook:comment:".len()..];
    after[..after.find(" -->")?].parse().ok()
}

/// The footer: links and kind-specific metadata, as Markdown.
pub fn footer(item: &Item, links: &[LinkView]) -> String {
    let mut lines = Vec::new();
    let f = &item.fields;
    match item.kind {
        Kind::Paper => {
            if let Some(a) = &f.authors {
                lines.push(format!("**Authors:** {a}"));
            }
            let mut pub_line = Vec::new();
            if let Some(v) = &f.venue {
                pub_line.push(v.clone());
            }
            if let Some(y) = f.year {
                pub_line.push(y.to_string());
            }
            if !pub_line.is_empty() {
                lines.push(format!("**Published:** {}", pub_line.join(" ")));
            }
            if let Some(a) = &f.arxiv_id {
                lines.push(format!("**arXiv:** [{a}](https://arxiv.org/abs/{a})"));
            }
            if let Some(d) = &f.doi {
                lines.push(format!("**DOI:** [{d}](https://doi.org/{d})"));
            }
            if let Some(u) = &f.url {
                lines.push(format!("**URL:** {u}"));
            }
            if let Some(k) = &f.bibtex_key {
                lines.push(format!("**BibTeX key:** `{k}`"));
            }
        }
        Kind::Experiment => {
            if let Some(h) = &f.hypothesis {
                lines.push(format!("**Hypothesis:** {h}"));
            }
            if let Some(c) = &f.conclusion {
                lines.push(format!("**Conclusion:** {c}"));
            }
        }
        Kind::Task => {
            if let Some(p) = f.priority {
                lines.push(format!("**Priority:** {p}"));
            }
            if let Some(d) = &f.due {
                lines.push(format!("**Due:** {d}"));
            }
        }
        Kind::Idea => {}
    }
    lines.push(format!("**Status:** {}", item.status));
    if !links.is_empty() {
        lines.push(String::new());
        lines.push("**Links**".into());
        for l in links {
            lines.push(format!("- {} {}: {}", l.label, l.other, l.other_title));
        }
    }
    lines.join("\n")
}

/// The whole issue body: the item body, the footer, the marker; truncated with a pointer
/// to the notebook when over GitHub's limit.
pub fn issue_body(item: &Item, footer: &str) -> String {
    let tail = format!(
        "{FOOTER_RULE}{FOOTER_START}\n{}\n\n{}",
        truncate_chars(footer, MAX_BODY / 4),
        marker(item.id)
    );
    let body = item.body.trim_end();
    let tail_len = tail.chars().count();
    if body.chars().count() + tail_len <= MAX_BODY {
        return format!("{body}{tail}");
    }
    let pointer = format!("\n\n… {TRUNCATED}{})*", item.id);
    let keep = MAX_BODY - tail_len - pointer.chars().count();
    format!("{}{pointer}{tail}", truncate_chars(body, keep))
}

/// A comment body within GitHub's limit.
pub fn comment_body(text: &str, marker: &str, truncated_note: &str) -> String {
    let tail = format!("\n\n{marker}");
    if text.chars().count() + tail.chars().count() <= MAX_BODY {
        return format!("{text}{tail}");
    }
    let pointer = format!("\n\n… {TRUNCATED}{truncated_note})*");
    let keep = MAX_BODY - tail.chars().count() - pointer.chars().count();
    format!("{}{pointer}{tail}", truncate_chars(text, keep))
}

/// True when a body part carries labbook's truncation pointer.
pub fn is_truncated(body: &str) -> bool {
    body.contains(TRUNCATED)
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The user-written part of an issue body (footer and marker removed, CRLF normalised).
pub fn user_part(issue_body: &str) -> String {
    let body = issue_body.replace("\r\n", "\n");
    let cut = match body.find(FOOTER_START) {
        Some(i) => {
            let head = &body[..i];
            head.strip_suffix("---\n")
                .map(|h| h.trim_end())
                .unwrap_or(head)
                .to_string()
        }
        None => match parse_marker(&body) {
            Some(id) => body.replace(&marker(id), ""),
            None => body,
        },
    };
    cut.trim_end().to_string()
}

/// Labels as tags: normalised; labels that cannot be tags are dropped.
pub fn normalize_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    labels
        .into_iter()
        .filter_map(|l| normalize_tag(l).ok())
        .collect()
}

/// The notebook side of the merge.
pub fn local_proj(item: &Item, footer: &str) -> Proj {
    let mut labels: BTreeSet<String> = item.tags.iter().cloned().collect();
    labels.insert(item.kind.as_str().to_string());
    Proj {
        title: item.title.clone(),
        body: item.body.clone(),
        closed: item.kind.is_closed_status(&item.status),
        labels,
        assignee: if item.kind == Kind::Task {
            item.fields.assignee.clone()
        } else {
            None
        },
        footer: footer.to_string(),
    }
}

/// The GitHub side of the merge.
pub fn remote_proj(
    title: &str,
    body: Option<&str>,
    closed: bool,
    labels: &[String],
    assignee: Option<&str>,
    kind: Kind,
) -> Proj {
    Proj {
        title: title.to_string(),
        body: user_part(body.unwrap_or("")),
        closed,
        labels: normalize_labels(labels.iter().map(String::as_str)),
        assignee: if kind == Kind::Task {
            assignee.map(str::to_string)
        } else {
            None
        },
        footer: String::new(),
    }
}

/// Tags for the notebook from a label set: kind labels removed.
pub fn tags_from_labels(labels: &BTreeSet<String>) -> Vec<String> {
    labels
        .iter()
        .filter(|l| !Kind::ALL.iter().any(|k| k.as_str() == l.as_str()))
        .cloned()
        .collect()
}

/// The kind an imported issue becomes: the first kind its labels name, else task.
pub fn kind_from_labels(labels: &[String]) -> Kind {
    labels
        .iter()
        .find_map(|l| {
            Kind::ALL
                .into_iter()
                .find(|k| k.as_str().eq_ignore_ascii_case(l.trim()))
        })
        .unwrap_or(Kind::Task)
}

/// Label names to send: the wanted set, keeping the remote spelling of labels that
/// normalise to a wanted tag (so "Good First Issue" is not renamed).
pub fn labels_to_send(wanted: &BTreeSet<String>, remote_names: &[String]) -> Vec<String> {
    wanted
        .iter()
        .map(|w| {
            remote_names
                .iter()
                .find(|r| normalize_tag(r).ok().as_ref() == Some(w))
                .cloned()
                .unwrap_or_else(|| w.clone())
        })
        .collect()
}

/// The status an item takes when its issue is closed/reopened on GitHub.
pub fn status_for(kind: Kind, current: &str, closed: bool) -> String {
    if kind.is_closed_status(current) == closed {
        current.to_string()
    } else if closed {
        kind.statuses()[2].to_string()
    } else {
        kind.default_status().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Fields;

    fn item(body: &str) -> Item {
        Item {
            id: "P-3".parse().unwrap(),
            rowid: 1,
            kind: Kind::Paper,
            title: "Mamba".into(),
            body: body.into(),
            status: "reading".into(),
            tags: vec!["ssm".into()],
            author: "a".into(),
            created_at: String::new(),
            updated_at: String::new(),
            archived: false,
            fields: Fields {
                arxiv_id: Some("2312.00752".into()),
                year: Some(2023),
                ..Default::default()
            },
        }
    }

    #[test]
    fn body_roundtrips_through_the_footer() {
        let it = item("Selective scan.\n\nMore.\n");
        let f = footer(&it, &[]);
        assert!(f.contains("arxiv.org/abs/2312.00752"), "{f}");
        let body = issue_body(&it, &f);
        assert!(body.ends_with("<!-- labbook:P-3 -->"));
        assert_eq!(parse_marker(&body), Some(it.id));
        assert_eq!(user_part(&body), "Selective scan.\n\nMore.");
        // A GitHub web edit turns \n into \r\n; still the same text.
        assert_eq!(user_part(&body.replace('\n', "\r\n")), user_part(&body));
        assert_eq!(user_part("plain"), "plain");
        assert_eq!(parse_marker("no marker <!-- labbook:nope -->"), None);
        assert_eq!(trailing_marker(&body), Some(it.id));
        assert_eq!(trailing_marker(&format!("{body}\n\n")), Some(it.id));
        // A marker quoted in the text, with something after it, is not the footer's.
        assert_eq!(trailing_marker("see <!-- labbook:P-1 --> here"), None);
        assert_eq!(
            trailing_marker("x <!-- labbook:P-1 -->"),
            Some("P-1".parse().unwrap())
        );
        assert_eq!(trailing_marker("x <!-- labbook:comment:3 -->"), None);
    }

    #[test]
    fn long_bodies_are_truncated_with_a_pointer() {
        let it = item(&"é".repeat(70_000));
        let body = issue_body(&it, &footer(&it, &[]));
        assert!(body.chars().count() <= MAX_BODY);
        assert!(is_truncated(&user_part(&body)));
        assert!(body.contains("labbook as P-3"));
        assert_eq!(parse_marker(&body), Some(it.id));
        let c = comment_body(&"x".repeat(70_000), &comment_marker(4), "a comment on P-3");
        assert!(c.chars().count() <= MAX_BODY);
        assert_eq!(parse_comment_marker(&c), Some(4));
    }

    #[test]
    fn labels_and_status_map() {
        let labels = vec!["Idea".to_string(), "Good First Issue".to_string()];
        assert_eq!(kind_from_labels(&labels), Kind::Idea);
        assert_eq!(kind_from_labels(&[]), Kind::Task);
        let set = normalize_labels(labels.iter().map(String::as_str));
        assert_eq!(tags_from_labels(&set), vec!["good-first-issue"]);
        assert_eq!(labels_to_send(&set, &labels), labels_sorted(&labels));
        assert_eq!(status_for(Kind::Task, "doing", true), "done");
        assert_eq!(status_for(Kind::Task, "dropped", true), "dropped");
        assert_eq!(status_for(Kind::Task, "done", false), "todo");
        assert_eq!(status_for(Kind::Task, "doing", false), "doing");
    }

    fn labels_sorted(l: &[String]) -> Vec<String> {
        let mut v: Vec<_> = l.to_vec();
        v.sort_by_key(|s| s.to_lowercase());
        v
    }
}
