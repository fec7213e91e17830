use anyhow::Result;
use clap::Args as ClapArgs;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Seed a realistic example notebook (Mamba papers, hybrid ideas, experiments, tasks)
    /// and write the example run configs to `configs/` (existing files are left alone).
    #[arg(long)]
    example: bool,
}

pub fn cmd_init(env: &Env, args: Args) -> Result<()> {
    let existed = env.db_path.exists();
    let mut store = env.open()?;
    super::announced_creation();
    let seeded = if args.example {
        labbook::example::seed(&mut store)?.len()
    } else {
        0
    };
    let written = if args.example {
        let dir = env
            .db_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .join("configs");
        labbook::example::write_configs(&dir)?
    } else {
        Vec::new()
    };
    if env.json {
        return super::output::json(&serde_json::json!({
            "db": store.path(), "created": !existed, "seeded_items": seeded,
            "configs_written": written,
        }));
    }
    let verb = if existed { "Using existing" } else { "Created" };
    println!("{verb} notebook {}", store.path().display());
    if !written.is_empty() {
        println!(
            "Wrote {} example run configs to configs/ (existing files are left alone).",
            written.len()
        );
    }
    if seeded > 0 {
        println!("Seeded {seeded} example items. Try `labbook list` or `labbook show I-1`.");
    } else {
        println!("Next: `labbook add task \"...\"` or `labbook import bibtex refs.bib`.");
    }
    Ok(())
}
