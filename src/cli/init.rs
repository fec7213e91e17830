use anyhow::Result;
use clap::Args as ClapArgs;

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// Seed a realistic example notebook (Mamba papers, hybrid ideas, experiments, tasks).
    #[arg(long)]
    example: bool,
}

pub fn cmd_init(env: &Env, args: Args) -> Result<()> {
    let existed = env.db_path.exists();
    let mut store = env.open()?;
    let seeded = if args.example {
        labbook::example::seed(&mut store)?.len()
    } else {
        0
    };
    if env.json {
        return super::output::json(&serde_json::json!({
            "db": store.path(), "created": !existed, "seeded_items": seeded,
        }));
    }
    let verb = if existed { "Using existing" } else { "Created" };
    println!("{verb} notebook {}", store.path().display());
    if seeded > 0 {
        println!("Seeded {seeded} example items. Try `labbook list` or `labbook show I-1`.");
    } else {
        println!("Next: `labbook add task \"...\"` or `labbook import bibtex refs.bib`.");
    }
    Ok(())
}
