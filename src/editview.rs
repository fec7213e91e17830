//! The text view of an item that `labbook edit` hands to `$EDITOR`: TOML front
//! matter between `+++` lines, then the Markdown body. Parsing it back yields a patch.
use crate::config::line_of;
use crate::error::{Error, Result};
use crate::model::{Item, ItemPatch, fields_for};

const FENCE: &str = "+++";

/// Renders an item for editing.
pub fn render(item: &Item) -> String {
    let mut t = toml::Table::new();
    t.insert("title".into(), item.title.clone().into());
    t.insert("status".into(), item.status.clone().into());
    t.insert(
        "tags".into(),
        toml::Value::Array(item.tags.iter().map(|s| s.clone().into()).collect()),
    );
    for name in fields_for(item.kind) {
        let value = item.fields.get(name).unwrap_or_default();
        let v: toml::Value = match *name {
            "priority" | "year" => match value.parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => value.into(),
            },
            _ => value.into(),
        };
        t.insert(name.to_string(), v);
    }
    let front = toml::to_string(&t).expect("a table of strings serialises");
    format!(
        "{FENCE}\n# {} — edit the fields and the Markdown body below, save and quit.\n# Allowed status: {}. Empty strings clear a field.\n{front}{FENCE}\n{}",
        item.id,
        item.kind.statuses().join(", "),
        item.body
    )
}

/// Parses an edited view into the patch that turns `item` into it. Errors name `file` and the line.
pub fn parse(text: &str, item: &Item, file: &str) -> Result<ItemPatch> {
    let err = |line: usize, msg: String| Error::Parse {
        file: file.to_string(),
        line,
        msg,
    };
    let rest = text
        .strip_prefix(FENCE)
        .and_then(|r| r.strip_prefix('\n').or_else(|| r.strip_prefix("\r\n")))
        .ok_or_else(|| err(1, format!("expected the first line to be `{FENCE}`")))?;
    let front_start = text.len() - rest.len();
    let close = rest
        .find(&format!("\n{FENCE}"))
        .ok_or_else(|| err(1, format!("no closing `{FENCE}` line after the fields")))?;
    let front = &rest[..close + 1];
    let after = &rest[close + 1 + FENCE.len()..];
    let body = after
        .strip_prefix("\r\n")
        .or_else(|| after.strip_prefix('\n'))
        .unwrap_or(after);
    let table: toml::Table = toml::from_str(front).map_err(|e| {
        let line = e
            .span()
            .map(|s| line_of(text, front_start + s.start))
            .unwrap_or(1);
        err(line, e.message().to_string())
    })?;
    let key_line = |key: &str| {
        front
            .lines()
            .position(|l| l.trim_start().starts_with(key))
            .map(|i| i + 2)
            .unwrap_or(1)
    };
    let mut patch = ItemPatch {
        body: Some(body.to_string()),
        ..Default::default()
    };
    for (key, value) in &table {
        let as_text = |v: &toml::Value| -> Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(n) => Ok(n.to_string()),
                other => Err(err(
                    key_line(key),
                    format!("`{key}` must be a string, not {}", other.type_str()),
                )),
            }
        };
        match key.as_str() {
            "title" => patch.title = Some(as_text(value)?),
            "status" => {
                let s = as_text(value)?;
                item.kind
                    .check_status(&s)
                    .map_err(|e| err(key_line(key), e.to_string()))?;
                patch.status = Some(s);
            }
            "tags" => {
                let arr = value.as_array().ok_or_else(|| {
                    err(
                        key_line(key),
                        "`tags` must be a list like [\"a\", \"b\"]".into(),
                    )
                })?;
                patch.tags = Some(arr.iter().map(as_text).collect::<Result<Vec<_>>>()?);
            }
            name if fields_for(item.kind).contains(&name) => {
                let v = as_text(value)?;
                let mut probe = item.fields.clone();
                probe
                    .set(item.kind, name, Some(&v))
                    .map_err(|e| err(key_line(key), e.to_string()))?;
                patch
                    .fields
                    .push((name.to_string(), Some(v).filter(|v| !v.is_empty())));
            }
            other => {
                return Err(err(
                    key_line(other),
                    format!("{} has no field `{other}`", item.kind.with_article()),
                ));
            }
        }
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ItemId, Kind};

    fn task() -> Item {
        Item {
            id: ItemId {
                kind: Kind::Task,
                num: 3,
            },
            rowid: 1,
            kind: Kind::Task,
            title: "Port \"scan\" to CUDA".into(),
            body: "Body with +++ inside\nand lines".into(),
            status: "todo".into(),
            tags: vec!["cuda".into()],
            author: "a".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            archived: false,
            fields: Default::default(),
        }
    }

    #[test]
    fn unchanged_view_roundtrips() {
        let t = task();
        let view = render(&t);
        let p = parse(&view, &t, "edit.md").unwrap();
        assert_eq!(p.title.as_deref(), Some(t.title.as_str()));
        assert_eq!(p.body.as_deref(), Some(t.body.as_str()));
        assert_eq!(p.tags, Some(vec!["cuda".to_string()]));
        assert!(p.fields.iter().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn edits_become_a_patch_and_errors_name_the_line() {
        let t = task();
        let view = render(&t).replace("status = \"todo\"", "status = \"doing\"");
        let view = view.replace("priority = \"\"", "priority = 1");
        let p = parse(&view, &t, "edit.md").unwrap();
        assert_eq!(p.status.as_deref(), Some("doing"));
        assert!(
            p.fields
                .contains(&("priority".to_string(), Some("1".to_string())))
        );

        let bad = render(&t).replace("status = \"todo\"", "status = \"adopted\"");
        let e = parse(&bad, &t, "edit.md").unwrap_err().to_string();
        let line = bad.lines().position(|l| l.starts_with("status")).unwrap() + 1;
        assert!(e.starts_with(&format!("edit.md:{line}:")), "{e}");

        let unknown = render(&t).replace("status =", "year = 2020\nstatus =");
        let e = parse(&unknown, &t, "edit.md").unwrap_err().to_string();
        assert!(e.contains("no field `year`"), "{e}");
    }
}
