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
