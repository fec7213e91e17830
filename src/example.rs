//! `labbook init --example`: a realistic notebook for a team exploring Mamba and hybrids.
use crate::error::{Error, Result};
use crate::model::{Fields, ItemId, Kind, NewItem, Relation};
use crate::store::{Store, insert_item, insert_link};

struct Paper {
    title: &'static str,
    authors: &'static str,
    year: i64,
    venue: Option<&'static str>,
    arxiv: &'static str,
    key: &'static str,
    tags: &'static [&'static str],
    body: &'static str,
}

const PAPERS: &[Paper] = &[
    Paper {
        title: "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
        authors: "Albert Gu, Tri Dao",
        year: 2023,
        venue: Some("COLM 2024"),
        arxiv: "2312.00752",
        key: "gu2023mamba",
        tags: &["ssm", "mamba"],
        body: "Input-dependent (selective) Δ, B, C make the SSM able to select what to remember.\n\n\
               - Hardware-aware parallel scan; linear in sequence length\n\
               - Selective copying and induction heads solved where LTI SSMs fail",
    },
    Paper {
        title: "Jamba: A Hybrid Transformer-Mamba Language Model",
        authors: "Opher Lieber, Barak Lenz, Hofit Bata, et al.",
        year: 2024,
        venue: None,
        arxiv: "2403.19887",
        key: "lieber2024jamba",
        tags: &["hybrid", "mamba"],
        body: "Interleaves one attention layer per eight layers with Mamba layers, plus MoE.",
    },
    Paper {
        title: "Attention Is All You Need",
        authors: "Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones, Aidan N. Gomez, Lukasz Kaiser, Illia Polosukhin",
        year: 2017,
        venue: Some("NeurIPS 2017"),
        arxiv: "1706.03762",
        key: "vaswani2017attention",
        tags: &["transformer", "attention"],
        body: "The Transformer: multi-head self-attention, no recurrence.",
    },
    Paper {
        title: "Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured State Space Duality",
        authors: "Tri Dao, Albert Gu",
        year: 2024,
        venue: Some("ICML 2024"),
        arxiv: "2405.21060",
        key: "dao2024transformers",
        tags: &["ssm", "mamba-2"],
        body: "Mamba-2: state space duality (SSD) links SSMs and linear attention; chunked matmul-based scan.",
    },
];

struct Idea {
    title: &'static str,
    status: &'static str,
    tags: &'static [&'static str],
    body: &'static str,
    papers: &'static [usize],
}

const IDEAS: &[Idea] = &[
    Idea {
        title: "Mamba+Transformer hybrid layers",
        status: "exploring",
        tags: &["hybrid"],
        body: "Where should attention layers go in a mostly-Mamba stack? Compare MMMA, MAMA and attn_every=8 \
               at equal parameter count on induction heads and char-LM.",
        papers: &[0, 1, 2],
    },
    Idea {
        title: "An improved softmax for attention layers",
        status: "proposed",
        tags: &["attention", "softmax"],
        body: "Try a softmax variant (off-by-one, scalable softmax with a learned scale, sigmoid \
               attention) in the attention layers; check length extrapolation. \
               Options: `[model] attn_softmax` (docs/engine.md, \"Research options\").",
        papers: &[2],
    },
    Idea {
        title: "Rewriting the convolution inside Mamba",
        status: "proposed",
        tags: &["mamba", "conv"],
        body: "The depthwise causal conv1d (kernel 4) before the SSM: larger kernels, dilations, or a gated conv. \
               Options: `[model] d_conv`, `conv_dilation`, `conv_kind = \"none\"`, `conv_bc = true` (Mamba-2's conv over B, C).",
        papers: &[0],
    },
    Idea {
        title: "Convolutions in the MLP",
        status: "proposed",
        tags: &["conv", "mlp"],
        body: "Add a short depthwise convolution inside the MLP blocks of the attention layers. \
               Option: `[model] mlp_conv = k`.",
        papers: &[2],
    },
    Idea {
        title: "Contrast: a convolutional Transformer state-space model",
        status: "proposed",
        tags: &["hybrid", "conv", "ssm"],
        body: "One block that combines convolution, attention and a selective SSM; builds on the ideas above. \
               Our reading: `kind = \"contrast\"`, a repeating CMA pattern (gated conv mixer, Mamba, attention).",
        papers: &[0, 3],
    },
    Idea {
        title: "Extra weights (bias) in attention",
        status: "proposed",
        tags: &["attention", "bias"],
        body: "A bias on the attention scores by distance: ALiBi's fixed slopes or a learned bias per head \
               (T5). Can it replace positional encodings and extrapolate? Option: `[model] attn_bias`.",
        papers: &[2],
    },
];

struct Experiment {
    title: &'static str,
    status: &'static str,
    hypothesis: &'static str,
    idea: usize,
    body: &'static str,
}

const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        title: "Selective copying: Mamba vs LTI ablation",
        status: "planned",
        hypothesis: "Selective Δ/B/C is what solves selective copying; the LTI ablation stays near chance.",
        idea: 0,
        body: "Configs: `configs/selective-copying-mamba.toml`, `configs/selective-copying-mamba-lti.toml`.",
    },
    Experiment {
        title: "Induction heads: length extrapolation of hybrids",
        status: "planned",
        hypothesis: "A mostly-Mamba hybrid keeps Mamba's extrapolation while attention layers speed up learning.",
        idea: 0,
        body: "Configs: `configs/induction-heads-mamba.toml`, `configs/induction-heads-transformer.toml`, `configs/induction-heads-hybrid.toml` (evaluated up to 64× the training length).",
    },
    Experiment {
        title: "Conv kernel size sweep inside Mamba",
        status: "planned",
        hypothesis: "Kernel 4 is not optimal for char-LM; 8 lowers bits/char at equal cost.",
        idea: 2,
        body: "`labbook run configs/ideas/mamba-conv.toml --sweep model.d_conv=2,4,8` and \
               `--sweep model.conv_dilation=1,2,4`, `--sweep model.conv_kind=depthwise,none`, `--sweep model.conv_bc=false,true`; on char-LM: `configs/char-lm-hybrid.toml --sweep model.d_conv=2,4,8`",
    },
    Experiment {
        title: "Softmax variants on induction heads",
        status: "planned",
        hypothesis: "Scalable softmax extrapolates to 16x the training length better than softmax.",
        idea: 1,
        body: "`labbook run configs/ideas/softmax-variants.toml --sweep model.attn_softmax=softmax,softmax1,ssmax,sigmoid`, \
               then `labbook report` on this experiment.",
    },
    Experiment {
        title: "Attention bias instead of positions",
        status: "planned",
        hypothesis: "ALiBi alone (no positional encoding) learns induction heads and extrapolates.",
        idea: 5,
        body: "`labbook run configs/ideas/attention-bias.toml --sweep model.attn_bias=none,alibi,learned`",
    },
    Experiment {
        title: "Convolutions in the MLP on selective copying",
        status: "planned",
        hypothesis: "A kernel-4 conv in the MLP helps a Transformer with selective copying.",
        idea: 3,
        body: "`labbook run configs/ideas/mlp-conv.toml --sweep model.mlp_conv=0,2,4`",
    },
    Experiment {
        title: "Contrast (CMA) vs a Mamba hybrid (MMA)",
        status: "planned",
        hypothesis: "Swapping one Mamba layer for a gated conv mixer costs nothing on selective copying.",
        idea: 4,
        body: "`labbook run configs/ideas/contrast.toml` and \
               `labbook run configs/ideas/contrast.toml --set model.kind=hybrid --set model.pattern=MMA`",
    },
];

struct Task {
    title: &'static str,
    status: &'static str,
    assignee: &'static str,
    priority: i64,
    experiment: Option<usize>,
    idea: Option<usize>,
}

const TASKS: &[Task] = &[
    Task {
        title: "Write configs for the selective copying reproduction",
        status: "doing",
        assignee: "alice",
        priority: 1,
        experiment: Some(0),
        idea: None,
    },
    Task {
        title: "Run induction-heads sweep on the GPU machine",
        status: "todo",
        assignee: "bob",
        priority: 1,
        experiment: Some(1),
        idea: None,
    },
    Task {
        title: "Implement dilated conv option in the Mamba block",
        status: "todo",
        assignee: "alice",
        priority: 2,
        experiment: Some(2),
        idea: None,
    },
    Task {
        title: "Read the Mamba-2 SSD paper and summarise chunked scan",
        status: "todo",
        assignee: "carol",
        priority: 3,
        experiment: None,
        idea: Some(4),
    },
];

/// Seeds the example notebook in one transaction. Refuses a notebook that already has items.
pub fn seed(store: &mut Store) -> Result<Vec<ItemId>> {
    let existing = store.item_count()?;
    if existing > 0 {
        return Err(Error::Invalid(format!(
            "{}: the notebook already has {existing} items; --example only seeds an empty notebook",
            store.path().display()
        )));
    }
    store.write(|tx, ctx| {
        let mut created = Vec::new();
        let mut add = |new: NewItem| -> Result<ItemId> {
            let id = insert_item(tx, ctx, &new)?.id;
            created.push(id);
            Ok(id)
        };
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut papers = Vec::new();
        for p in PAPERS {
            let mut n = NewItem::new(Kind::Paper, p.title);
            n.body = p.body.to_string();
            n.tags = tags(p.tags);
            n.status = Some(
                if p.arxiv == "2312.00752" {
                    "read"
                } else {
                    "to-read"
                }
                .into(),
            );
            n.fields = Fields {
                authors: Some(p.authors.into()),
                year: Some(p.year),
                venue: p.venue.map(Into::into),
                arxiv_id: Some(p.arxiv.into()),
                url: Some(format!("https://arxiv.org/abs/{}", p.arxiv)),
                bibtex_key: Some(p.key.into()),
                ..Default::default()
            };
            papers.push(add(n)?);
        }
        let mut ideas = Vec::new();
        for i in IDEAS {
            let mut n = NewItem::new(Kind::Idea, i.title);
            n.body = i.body.to_string();
            n.status = Some(i.status.into());
            n.tags = tags(i.tags);
            ideas.push(add(n)?);
        }
        let mut exps = Vec::new();
        for e in EXPERIMENTS {
            let mut n = NewItem::new(Kind::Experiment, e.title);
            n.body = e.body.to_string();
            n.status = Some(e.status.into());
            n.fields.hypothesis = Some(e.hypothesis.into());
            exps.push(add(n)?);
        }
        let mut tasks = Vec::new();
        for t in TASKS {
            let mut n = NewItem::new(Kind::Task, t.title);
            n.status = Some(t.status.into());
            n.fields.assignee = Some(t.assignee.into());
            n.fields.priority = Some(t.priority);
            tasks.push(add(n)?);
        }
        for (i, idea) in IDEAS.iter().enumerate() {
            for &p in idea.papers {
                insert_link(tx, ctx, ideas[i], papers[p], Relation::MotivatedBy)?;
            }
        }
        insert_link(tx, ctx, ideas[4], ideas[0], Relation::BuildsOn)?;
        insert_link(tx, ctx, ideas[4], ideas[3], Relation::BuildsOn)?;
        insert_link(tx, ctx, papers[1], papers[0], Relation::Cites)?;
        insert_link(tx, ctx, papers[3], papers[0], Relation::Cites)?;
        for (i, e) in EXPERIMENTS.iter().enumerate() {
            insert_link(tx, ctx, exps[i], ideas[e.idea], Relation::Tests)?;
        }
        for (i, t) in TASKS.iter().enumerate() {
            if let Some(e) = t.experiment {
                insert_link(tx, ctx, tasks[i], exps[e], Relation::For)?;
            }
            if let Some(idea) = t.idea {
                insert_link(tx, ctx, tasks[i], ideas[idea], Relation::For)?;
            }
        }
        Ok(created)
    })
}

/// The example run configs `init --example` writes (the repo's `configs/`, embedded).
pub const CONFIGS: [(&str, &str); 12] = [
    ("smoke.toml", include_str!("../configs/smoke.toml")),
    (
        "selective-copying-mamba.toml",
        include_str!("../configs/selective-copying-mamba.toml"),
    ),
    (
        "selective-copying-mamba-lti.toml",
        include_str!("../configs/selective-copying-mamba-lti.toml"),
    ),
    (
        "induction-heads-mamba.toml",
        include_str!("../configs/induction-heads-mamba.toml"),
    ),
    (
        "induction-heads-transformer.toml",
        include_str!("../configs/induction-heads-transformer.toml"),
    ),
    (
        "induction-heads-hybrid.toml",
        include_str!("../configs/induction-heads-hybrid.toml"),
    ),
    (
        "char-lm-hybrid.toml",
        include_str!("../configs/char-lm-hybrid.toml"),
    ),
    (
        "ideas/softmax-variants.toml",
        include_str!("../configs/ideas/softmax-variants.toml"),
    ),
    (
        "ideas/attention-bias.toml",
        include_str!("../configs/ideas/attention-bias.toml"),
    ),
    (
        "ideas/mamba-conv.toml",
        include_str!("../configs/ideas/mamba-conv.toml"),
    ),
    (
        "ideas/mlp-conv.toml",
        include_str!("../configs/ideas/mlp-conv.toml"),
    ),
    (
        "ideas/contrast.toml",
        include_str!("../configs/ideas/contrast.toml"),
    ),
];

/// Writes the example run configs into `dir` (created if needed), never replacing a file
/// that is there. Returns the files written.
pub fn write_configs(dir: &std::path::Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let mut written = Vec::new();
    for (name, text) in CONFIGS {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| crate::Error::io(parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| crate::Error::io(&path, e))?;
        written.push(name.to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_linked_notebook_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db"), "me").unwrap();
        let ids = seed(&mut s).unwrap();
        assert_eq!(
            ids.len(),
            PAPERS.len() + IDEAS.len() + EXPERIMENTS.len() + TASKS.len()
        );
        let mamba = s.search("selective state spaces", None, 5).unwrap();
        assert_eq!(mamba[0].id.to_string(), "P-1");
        let links = s.links_of(mamba[0].id).unwrap();
        assert!(links.iter().any(|l| l.label == "motivates"));
        assert!(seed(&mut s).is_err(), "seeding twice is refused");
    }
}
