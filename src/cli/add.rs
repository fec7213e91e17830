use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use labbook::model::{ItemId, Kind, NewItem};

use super::Env;

#[derive(ClapArgs)]
pub struct Args {
    /// task, paper, idea or experiment.
    kind: Kind,
    /// Title.
    title: String,
    /// Markdown body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the Markdown body from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    body_file: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag", short = 't')]
    tags: Vec<String>,
    /// Status (the kind's first status when not given; see `labbook add --help`).
    #[arg(long, short = 's')]
    status: Option<String>,
    /// Set a kind-specific field, e.g. `--set assignee=bob` (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    sets: Vec<String>,
    /// Link the new item to an existing one (usual relation for the two kinds).
    #[arg(long, value_name = "ID")]
    link: Vec<ItemId>,
    #[command(flatten)]
    fields: FieldFlags,
}

/// The item fields as flags, shared by `add` and `edit` (on `edit` an empty value clears
/// the field).
#[derive(ClapArgs)]
pub struct FieldFlags {
    /// Task assignee.
    #[arg(long)]
    assignee: Option<String>,
    /// Task priority, 1 (highest) to 5.
    #[arg(long)]
    priority: Option<String>,
    /// Task due date (YYYY-MM-DD).
    #[arg(long)]
    due: Option<String>,
    /// Paper authors.
    #[arg(long)]
    authors: Option<String>,
    /// Paper year (1000–2100).
    #[arg(long)]
    year: Option<String>,
    /// Paper venue.
    #[arg(long)]
    venue: Option<String>,
    /// Paper arXiv id.
    #[arg(long)]
    arxiv: Option<String>,
    /// Paper DOI.
    #[arg(long)]
    doi: Option<String>,
    /// Paper URL.
    #[arg(long)]
    url: Option<String>,
    /// Experiment hypothesis.
    #[arg(long)]
    hypothesis: Option<String>,
    /// Experiment conclusion.
    #[arg(long)]
    conclusion: Option<String>,
}

impl FieldFlags {
    /// The flags as (field name, value) pairs, for `field_pairs`.
    pub fn named(&self) -> [(&'static str, &Option<String>); 11] {
        [
            ("assignee", &self.assignee),
            ("priority", &self.priority),
            ("due", &self.due),
            ("authors", &self.authors),
            ("year", &self.year),
            ("venue", &self.venue),
            ("arxiv_id", &self.arxiv),
            ("doi", &self.doi),
            ("url", &self.url),
            ("hypothesis", &self.hypothesis),
            ("conclusion", &self.conclusion),
        ]
    }
}

/// `name=value` pairs from `--set` and the named flags, in one list.
pub fn field_pairs(
    sets: &[String],
    named: &[(&str, &Option<String>)],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("`--set {s}`: expected FIELD=VALUE"))?;
        out.push((k.trim().to_string(), v.to_string()));
    }
    for (k, v) in named {
        if let Some(v) = v {
            out.push((k.to_string(), v.clone()));
        }
    }
    Ok(out)
}

pub fn read_body_file(path: &str) -> Result<String> {
    if path == "-" {
        return Ok(std::io::read_to_string(std::io::stdin())?);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

pub fn cmd_add(env: &Env, a: Args) -> Result<()> {
    let mut new = NewItem::new(a.kind, a.title);
    new.body = match (&a.body, &a.body_file) {
        (Some(b), _) => b.clone(),
        (None, Some(f)) => read_body_file(f)?,
        _ => String::new(),
    };
    new.tags = a.tags;
    new.status = a.status;
    let pairs = field_pairs(&a.sets, &a.fields.named())?;
    for (k, v) in &pairs {
        new.fields.set(a.kind, k, Some(v))?;
    }
    let mut store = env.open()?;
    let links = a.link;
    // Validate link targets first so a bad ID leaves nothing behind.
    for l in &links {
        store.require(*l)?;
    }
    let item = store.write(|tx, ctx| {
        let item = labbook::store::insert_item(tx, ctx, &new)?;
        for l in &links {
            let rel = labbook::model::Relation::default_for(item.kind, l.kind);
            labbook::store::insert_link(tx, ctx, item.id, *l, rel)?;
        }
        Ok(item)
    })?;
    if env.json {
        return super::output::json(&item);
    }
    println!("{}  {}", item.id, item.title);
    Ok(())
}
