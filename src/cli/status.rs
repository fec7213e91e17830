use anyhow::Result;

use super::Env;

/// With no subcommand: a short status of the notebook and what to do next.
pub fn cmd_status(env: &Env) -> Result<()> {
    let store = env.open()?;
    let counts = store.counts()?;
    let runs = store.list_runs(&Default::default())?;
    if env.json {
        let map: serde_json::Map<_, _> = counts
            .iter()
            .map(|(k, n)| (k.as_str().to_string(), (*n).into()))
            .collect();
        return super::output::json(
            &serde_json::json!({"db": store.path(), "items": map, "runs": runs.len()}),
        );
    }
    println!("labbook notebook {}", store.path().display());
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{n} {}", k.plural().to_lowercase()))
        .collect();
    println!("{} · {} runs", parts.join(" · "), runs.len());
    let sync = store.sync_summary()?;
    if sync.linked > 0 || sync.conflicts > 0 {
        let last = sync
            .last_sync
            .as_deref()
            .map(|t| format!(" · last sync {}", &t[..t.len().min(16)]))
            .unwrap_or_default();
        let conflicts = if sync.conflicts > 0 {
            format!(" · {} conflict(s): labbook conflicts", sync.conflicts)
        } else {
            String::new()
        };
        println!("GitHub: {} items synced{conflicts}{last}", sync.linked);
    }
    if total == 0 {
        println!("\nThe notebook is empty. Next steps:");
        println!("  labbook init --example          seed an example Mamba project");
        println!("  labbook add task \"Read Mamba\"   add your first item");
        println!("  labbook import bibtex refs.bib  import papers");
    } else {
        println!("\nTry: labbook list · labbook search QUERY · labbook show ID · labbook --help");
    }
    Ok(())
}
