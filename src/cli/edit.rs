use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use labbook::model::{ItemId, ItemPatch};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// The item to edit (T-n, P-n, I-n, E-n). With no other flag, opens it in `$EDITOR`.
    id: ItemId,
    /// New title.
    #[arg(long)]
    title: Option<String>,
    /// New Markdown body.
    #[arg(long)]
    body: Option<String>,
    /// Read the new body from a file (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "body")]
    body_file: Option<String>,
    /// New status (one of the kind's statuses; an unknown one is refused with the list).
    #[arg(long, short = 's')]
    status: Option<String>,
    /// Set a field, e.g. `--set assignee=bob`; an empty value clears it (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    sets: Vec<String>,
    #[command(flatten)]
    fields: super::add::FieldFlags,
}

pub fn cmd_edit(env: &Env, a: Args) -> Result<()> {
    let mut store = env.open()?;
    let item = store.get(a.id)?;
    let mut patch = ItemPatch {
        title: a.title,
        body: match a.body_file {
            Some(f) => Some(super::add::read_body_file(&f)?),
            None => a.body,
        },
        status: a.status,
        ..Default::default()
    };
    for (k, v) in super::add::field_pairs(&a.sets, &a.fields.named())? {
        patch.fields.push((k, Some(v).filter(|v| !v.is_empty())));
    }
    if patch.is_empty() {
        patch = edit_in_editor(&item)?;
    }
    let updated = store.update(a.id, &patch)?;
    if env.json {
        return super::output::json(&updated);
    }
    println!("{}  {}", updated.id, updated.title);
    Ok(())
}

/// Opens the item's text view in `$VISUAL`/`$EDITOR`. If the result does not parse,
/// the edited file is kept and its path is in the error, so no typing is lost.
/// Opens `path` in `$VISUAL`/`$EDITOR` (the TUI's `c` on a run: an edited copy of its
/// config). The file is kept whatever happens; an editor that fails is an error.
pub(crate) fn edit_file(path: &std::path::Path) -> std::result::Result<(), String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_string());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("labbook-edit")
        .arg(path)
        .status()
        .map_err(|e| format!("cannot start editor `{editor}`: {e}"))?;
    if !status.success() {
        return Err(format!(
            "editor `{editor}` exited with {status}; not started (the copy is {})",
            path.display()
        ));
    }
    Ok(())
}

pub(crate) fn edit_in_editor(item: &labbook::model::Item) -> Result<ItemPatch> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_string());
    let path = std::env::temp_dir().join(format!("labbook-{}-{}.md", item.id, std::process::id()));
    let original = labbook::editview::render(item);
    std::fs::write(&path, &original).with_context(|| format!("cannot write {}", path.display()))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("labbook-edit")
        .arg(&path)
        .status()
        .with_context(|| format!("cannot start editor `{editor}`"))?;
    if !status.success() {
        bail!(
            "editor `{editor}` exited with {status}; nothing changed (your text is in {})",
            path.display()
        );
    }
    let text = std::fs::read_to_string(&path)?;
    if text == original {
        let _ = std::fs::remove_file(&path);
        bail!("no changes");
    }
    match labbook::editview::parse(&text, item, &path.display().to_string()) {
        Ok(p) => {
            let _ = std::fs::remove_file(&path);
            Ok(p)
        }
        Err(e) => bail!(
            "{e} (nothing changed; your edit is kept in {})",
            path.display()
        ),
    }
}
