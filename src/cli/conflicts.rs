//! `labbook conflicts` and `labbook resolve`: fields changed both here and on GitHub.
use anyhow::{Context as _, Result, bail};
use clap::Args as ClapArgs;
use labbook::github::{Field, Resolution};
use labbook::model::ItemId;

use super::Env;

#[derive(ClapArgs)]
pub struct ConflictsArgs {}

pub fn cmd_conflicts(env: &Env, _a: ConflictsArgs) -> Result<()> {
    let store = env.open()?;
    let conflicts = store.conflicts()?;
    if env.json {
        return super::output::json(&conflicts);
    }
    if conflicts.is_empty() {
        println!("no conflicts");
        return Ok(());
    }
    for c in &conflicts {
        let issue = c.issue.map(|n| format!(" (#{n})")).unwrap_or_default();
        println!("{} {}{issue}: {}", c.item, c.title, c.field);
        println!("  base:   {}", one_line(&c.base));
        println!("  mine:   {}", one_line(&c.mine));
        println!("  theirs: {}", one_line(&c.theirs));
    }
    println!(
        "settle each with `labbook resolve ID FIELD --mine|--theirs|--edit`, then `labbook sync`"
    );
    Ok(())
}

fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    let more = if s.lines().count() > 1 { " …" } else { "" };
    format!("{first}{more}")
}

#[derive(ClapArgs)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["mine", "theirs", "edit"])))]
pub struct ResolveArgs {
    id: ItemId,
    /// title, body, state or assignee.
    field: String,
    /// Keep the notebook's value (the next sync writes it to GitHub).
    #[arg(long)]
    mine: bool,
    /// Take GitHub's value.
    #[arg(long)]
    theirs: bool,
    /// Write the value yourself in $VISUAL/$EDITOR (starts from yours).
    #[arg(long)]
    edit: bool,
}

pub fn cmd_resolve(env: &Env, a: ResolveArgs) -> Result<()> {
    let field: Field = a.field.parse()?;
    let mut store = env.open()?;
    let how = if a.mine {
        Resolution::Mine
    } else if a.theirs {
        Resolution::Theirs
    } else {
        let c = store
            .conflicts()?
            .into_iter()
            .find(|c| c.item == a.id && c.field == field)
            .with_context(|| format!("{} has no conflict on `{field}`", a.id))?;
        Resolution::Value(edit_value(a.id, field, &c.mine, &c.theirs)?)
    };
    store.resolve_conflict(a.id, field, how)?;
    println!("resolved {} {field}; `labbook sync` sends it", a.id);
    Ok(())
}

fn edit_value(id: ItemId, field: Field, mine: &str, theirs: &str) -> Result<String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_string());
    let path = std::env::temp_dir().join(format!("labbook-{id}-{field}-{}.md", std::process::id()));
    let theirs_block = theirs
        .lines()
        .map(|l| format!("# {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!(
        "{mine}\n# ---- everything from here down is ignored ----\n# GitHub's version:\n{theirs_block}\n"
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("labbook-resolve")
        .arg(&path)
        .status()
        .with_context(|| format!("cannot start editor `{editor}`"))?;
    if !status.success() {
        bail!("editor `{editor}` exited with {status}; nothing changed");
    }
    let edited = std::fs::read_to_string(&path)?;
    let _ = std::fs::remove_file(&path);
    let value = edited
        .split("\n# ---- everything from here down is ignored ----")
        .next()
        .unwrap_or("")
        .trim_end()
        .to_string();
    Ok(value)
}
