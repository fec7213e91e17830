//! Shared text/JSON output for commands.
use std::io::Write;

use anyhow::Result;
use labbook::model::Item;
use serde::Serialize;

/// Writes `args` to stdout with control characters shown as U+FFFD (newline and tab
/// kept); exits quietly when stdout was closed (`labbook … | head`).
pub fn print_clean(args: std::fmt::Arguments) {
    let text = args.to_string();
    let clean = labbook::sanitize::for_terminal(&text);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(clean.as_bytes()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        panic!("failed printing to stdout: {e}");
    }
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // An I/O failure (a closed pipe) stays an io::Error, so `main` can end quietly on it.
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => anyhow::Error::from(std::io::Error::from(kind)),
        None => anyhow::Error::from(e),
    })?;
    writeln!(out)?;
    Ok(())
}

/// A report as aligned `key  value` lines for people (nested objects as `outer.inner`,
/// numbers to 4 significant decimals); `--json` prints the same report as JSON.
pub fn summary<T: Serialize + ?Sized>(title: &str, value: &T) -> Result<()> {
    let value = serde_json::to_value(value)?;
    let rows: Vec<(String, String)> = labbook::compare::dotted_leaves(&value)
        .into_iter()
        .map(|(key, leaf)| {
            let text = match leaf {
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => i.to_string(),
                    (None, Some(f)) if f.abs() >= 100.0 => format!("{f:.1}"),
                    (None, Some(f)) => format!("{f:.4}"),
                    _ => n.to_string(),
                },
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key, text)
        })
        .collect();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    print_clean(format_args!("{title}\n"));
    for (k, v) in rows {
        print_clean(format_args!("  {k:<width$}  {v}\n"));
    }
    Ok(())
}

/// Prints items as an aligned table: ID, status, title, tags.
pub fn item_table(items: &[Item]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let id_w = items
        .iter()
        .map(|i| i.id.to_string().len())
        .max()
        .unwrap_or(2);
    let st_w = items.iter().map(|i| i.status.len()).max().unwrap_or(6);
    for i in items {
        let tags = if i.tags.is_empty() {
            String::new()
        } else {
            format!("  #{}", i.tags.join(" #"))
        };
        let archived = if i.archived { "  (archived)" } else { "" };
        let line = format!(
            "{:<id_w$}  {:<st_w$}  {}{tags}{archived}",
            i.id.to_string(),
            i.status,
            i.title
        );
        writeln!(out, "{}", labbook::sanitize::for_terminal(&line))?;
    }
    Ok(())
}
