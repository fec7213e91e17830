//! Run configuration: a TOML file with `[model]`, `[task]` and `[train]` sections.
//!
//! Every error names the offending key (`section.key`) and, when the text is known, its line.
use std::{fmt, path::Path};

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::model::{AttnBias, AttnSoftmax, LmConfig, MambaConv, Positional, pattern_attn_every};
pub use crate::tasks::{TaskKind, TaskSection};

mod train;
mod validate;
pub use train::{StateInit, TrainSection};

/// Which model family a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Stack of Mamba (S6) blocks.
    Mamba,
    /// Mamba with input-independent Δ, B, C (S4-style LTI ablation).
    MambaLti,
    /// Stack of attention + MLP blocks.
    Transformer,
    /// Mamba and attention blocks mixed by `pattern` or `attn_every`.
    Hybrid,
    /// "Contrast", the team's convolutional Transformer state-space model: a repeating `CMA`
    /// pattern (conv mixer, Mamba, attention), cut to `n_layers`.
    Contrast,
}

/// Positional information (`none | absolute | rope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PositionalKind {
    /// No positional information.
    #[default]
    None,
    /// Sinusoidal absolute embeddings.
    Absolute,
    /// Rotary embeddings in attention layers.
    Rope,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model family.
    pub kind: ModelKind,
    /// Width.
    pub d_model: usize,
    /// Number of residual blocks.
    pub n_layers: usize,
    /// Hybrid only: one letter per layer, `M` (Mamba), `A` (attention) or `C` (gated conv
    /// mixer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Hybrid only: every k-th layer is attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_every: Option<usize>,
    /// SSM state size N.
    #[serde(default = "default_d_state")]
    pub d_state: usize,
    /// Mamba expansion factor.
    #[serde(default = "default_expand")]
    pub expand: usize,
    /// Mamba conv kernel.
    #[serde(default = "default_d_conv")]
    pub d_conv: usize,
    /// Distance between the Mamba conv's taps (1: contiguous).
    #[serde(default = "default_dilation", skip_serializing_if = "is_one")]
    pub conv_dilation: usize,
    /// What runs on the Mamba scan's input before SiLU: `depthwise` (Mamba's conv) or `none`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub conv_kind: ConvKind,
    /// Also run the short causal conv (and SiLU) over the Mamba mixer's B and C, as Mamba-2.
    #[serde(default, skip_serializing_if = "is_default")]
    pub conv_bc: bool,
    /// Mamba Δ rank; default ceil(d_model / 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dt_rank: Option<usize>,
    /// Attention heads.
    #[serde(default = "default_n_heads")]
    pub n_heads: usize,
    /// Attention MLP ratio.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    /// Positional information.
    #[serde(default)]
    pub positional: PositionalKind,
    /// How attention scores become weights.
    #[serde(default, skip_serializing_if = "is_default")]
    pub attn_softmax: AttnSoftmaxKind,
    /// A bias added to attention scores by distance.
    #[serde(default, skip_serializing_if = "is_default")]
    pub attn_bias: AttnBiasKind,
    /// Kernel of a depthwise causal conv between the MLP layers of attention blocks; 0 = off.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mlp_conv: usize,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `[model] attn_softmax` (see `fused::AttnSoftmax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttnSoftmaxKind {
    /// Softmax.
    #[default]
    Softmax,
    /// Softmax with an extra 1 in the denominator.
    Softmax1,
    /// Scalable softmax: logits times a learned `s_h · ln n`.
    Ssmax,
    /// Sigmoid attention with a `−ln n` bias.
    Sigmoid,
}

/// `[model] conv_kind` (see `model::MambaConv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConvKind {
    /// Mamba's depthwise causal conv of kernel `d_conv`.
    #[default]
    Depthwise,
    /// No conv: the scan's input is `silu(x)`.
    None,
}

/// `[model] attn_bias` (see `fused::AttnBias`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttnBiasKind {
    /// No bias.
    #[default]
    None,
    /// ALiBi's fixed slopes per head.
    Alibi,
    /// A learned bias per head and distance bucket.
    Learned,
}

fn default_d_state() -> usize {
    crate::model::defaults::D_STATE
}
fn default_expand() -> usize {
    crate::model::defaults::EXPAND
}
fn default_dilation() -> usize {
    1
}
fn is_one(v: &usize) -> bool {
    *v == 1
}
fn default_d_conv() -> usize {
    crate::model::defaults::D_CONV
}
fn default_n_heads() -> usize {
    crate::model::defaults::N_HEADS
}
fn default_mlp_ratio() -> usize {
    crate::model::defaults::MLP_RATIO
}
/// A whole run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `[model]`.
    pub model: ModelSection,
    /// `[task]`.
    pub task: TaskSection,
    /// `[train]`.
    pub train: TrainSection,
}

/// A configuration problem, naming the source, the line when known, and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// File name or `--set`.
    pub origin: String,
    /// 1-based line, when the error points into a text.
    pub line: Option<usize>,
    /// `section.key` when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A check made outside any file (a bench flag, a backend's ability) has no origin.
        let located = !self.origin.is_empty() || self.line.is_some();
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if located {
            f.write_str(": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    pub(crate) fn key(key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            origin: String::new(),
            line: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// `section.key` for the key written on `line` (1-based), using the nearest `[section]` above.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let key = here.split('=').next()?.trim();
    if key.is_empty() || key.starts_with('[') || !here.contains('=') {
        return None;
    }
    let section = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match section {
        Some(s) => format!("{s}.{key}"),
        None => key.to_string(),
    })
}

/// 1-based line of `key = …` inside `[section]`, or of the `[section]` header when the key is
/// absent.
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.split_once('.')?;
    let mut in_section = false;
    let mut header = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.starts_with('[') {
            in_section = l.trim_matches(|c| c == '[' || c == ']').trim() == section;
            if in_section {
                header = Some(i + 1);
            }
            continue;
        }
        if in_section && l.split('=').next().map(str::trim) == Some(key) && l.contains('=') {
            return Some(i + 1);
        }
    }
    header
}

fn backtick_word(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// `[task]` of `text` and `tokens` runs, before any file is opened (the files themselves
/// are checked by `Task::open` when training starts, and by `labbook run` before it queues).
fn validate_files_task(t: &crate::tasks::TaskSection) -> Result<(), ConfigError> {
    let kind = t.kind;
    if t.path.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return Err(ConfigError::key(
            "task.path",
            format!("kind = \"{kind}\" needs the data file, directory or glob"),
        ));
    }
    if !(0.0..1.0).contains(&t.val_fraction) || (t.val_path.is_none() && t.val_fraction == 0.0) {
        return Err(ConfigError::key(
            "task.val_fraction",
            "must be in (0, 1) (or give task.val_path)",
        ));
    }
    match kind {
        TaskKind::Text if t.dtype.is_some() => Err(ConfigError::key(
            "task.dtype",
            "text is read with a tokenizer (bytes or chars); dtype is for kind = \"tokens\"",
        )),
        TaskKind::Tokens if t.tokenizer.is_some() => Err(ConfigError::key(
            "task.tokenizer",
            "token files are already tokenized; tokenizer is for kind = \"text\"",
        )),
        TaskKind::Tokens if t.dtype.is_none() => Err(ConfigError::key(
            "task.dtype",
            "kind = \"tokens\" needs dtype = \"u16\" or \"u32\"",
        )),
        TaskKind::Tokens if t.vocab_size < 2 => Err(ConfigError::key(
            "task.vocab_size",
            "kind = \"tokens\" needs the vocabulary size of the token files",
        )),
        _ if t.seq_len < 1 => Err(ConfigError::key("task.seq_len", "must be at least 1")),
        _ => Ok(()),
    }
}

impl RunConfig {
    /// Parses and validates a TOML text; `source` names it in errors (usually the path).
    pub fn parse(text: &str, source: &str) -> Result<RunConfig, ConfigError> {
        let cfg: RunConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let message = e.message().trim().to_string();
            let mut key = line.and_then(|l| key_at_line(text, l));
            if key.is_none()
                || message.starts_with("unknown field")
                || message.starts_with("missing field")
            {
                // Name the field from the message; the span points at the key or its table.
                if let Some(word) = backtick_word(&message) {
                    let section = line
                        .and_then(|l| {
                            text.lines()
                                .take(l)
                                .collect::<Vec<_>>()
                                .into_iter()
                                .rev()
                                .find_map(|x| {
                                    let x = x.trim();
                                    (x.starts_with('[') && x.ends_with(']')).then(|| {
                                        x.trim_matches(|c| c == '[' || c == ']').trim().to_string()
                                    })
                                })
                        })
                        .filter(|s| ["model", "task", "train"].contains(&s.as_str()) && s != word);
                    key = Some(match section {
                        Some(s) => format!("{s}.{word}"),
                        None => word.to_string(),
                    });
                }
            }
            ConfigError {
                origin: source.to_string(),
                line,
                key,
                message,
            }
        })?;
        cfg.validate().map_err(|mut e| {
            e.origin = source.to_string();
            e.line = e.key.as_deref().and_then(|k| find_key_line(text, k));
            e
        })?;
        Ok(cfg)
    }

    /// Reads and parses a file.
    pub fn from_file(path: &Path) -> Result<RunConfig, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Applies one `--set section.key=value` override, then re-validates (see [`Self::set_all`]).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.set_all(&[(key, value)]).map(|_| ())
    }

    /// Applies `--set section.key=value` overrides in order, then validates once, so
    /// cross-field rules see the final values whatever the order (`model.pattern` with
    /// `model.n_layers`, `train.steps` with `train.warmup_steps`). `value` is parsed as a
    /// TOML value (`8`, `1e-3`, `[256, 1024]`, `"rope"`); a bare word is taken as a string.
    ///
    /// Two overrides imply a third when it is not given too: `model.pattern` sets
    /// `model.n_layers` to the pattern's length, and a `train.steps` below the config's
    /// warm-up shortens `train.warmup_steps` to a tenth of the steps. Returns one warning
    /// per such change. On any error the config is left unchanged.
    pub fn set_all(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<String>, ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            origin: "--set".to_string(),
            line: None,
            key: Some(key.to_string()),
            message,
        };
        let mut root = toml::Table::try_from(&*self).map_err(|e| err("", e.to_string()))?;
        for &(key, value) in pairs {
            let (section, field) = key
                .split_once('.')
                .ok_or_else(|| err(key, "expected `section.key`, e.g. `train.lr`".to_string()))?;
            let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            root.get_mut(section)
                .and_then(|v| v.as_table_mut())
                .ok_or_else(|| {
                    err(
                        key,
                        format!("unknown section `{section}` (expected model, task or train)"),
                    )
                })?
                .insert(field.to_string(), parsed);
            // Type errors and unknown keys are reported against the override that made them.
            toml::Value::Table(root.clone())
                .try_into::<RunConfig>()
                .map_err(|e| err(key, e.message().trim().to_string()))?;
        }
        let given = |k: &str| pairs.iter().any(|(key, _)| *key == k);
        let mut next: RunConfig = toml::Value::Table(root)
            .try_into()
            .map_err(|e: toml::de::Error| err("", e.message().trim().to_string()))?;
        let mut warnings = Vec::new();
        if given("model.pattern")
            && !given("model.n_layers")
            && let Some(p) = &next.model.pattern
        {
            next.model.n_layers = p.chars().count();
        }
        if given("train.steps")
            && !given("train.warmup_steps")
            && next.train.warmup_steps > next.train.steps
        {
            let shorter = next.train.steps / 10;
            warnings.push(format!(
                "train.steps = {} is shorter than the config's warm-up ({} steps): warmup_steps shortened to {shorter}",
                next.train.steps, next.train.warmup_steps
            ));
            next.train.warmup_steps = shorter;
        }
        next.validate().map_err(|mut e| {
            e.origin = "--set".to_string();
            e
        })?;
        *self = next;
        Ok(warnings)
    }

    /// The configuration as TOML (the run's snapshot).
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a RunConfig always serialises")
    }

    /// The layer pattern, one letter per layer.
    pub fn layer_pattern(&self) -> String {
        let m = &self.model;
        match m.kind {
            ModelKind::Mamba | ModelKind::MambaLti => "M".repeat(m.n_layers),
            ModelKind::Transformer => "A".repeat(m.n_layers),
            ModelKind::Contrast => "CMA".chars().cycle().take(m.n_layers).collect(),
            ModelKind::Hybrid => match (&m.pattern, m.attn_every) {
                (Some(p), _) => p.to_uppercase(),
                (None, Some(k)) => pattern_attn_every(m.n_layers, k),
                (None, None) => "M".repeat(m.n_layers),
            },
        }
    }

    /// The model configuration this run builds.
    pub fn lm_config(&self) -> LmConfig {
        let m = &self.model;
        LmConfig::new(self.task.vocab_size, m.d_model, self.layer_pattern())
            .with_d_state(m.d_state)
            .with_expand(m.expand)
            .with_d_conv(m.d_conv)
            .with_conv_dilation(m.conv_dilation)
            .with_conv_kind(match m.conv_kind {
                ConvKind::Depthwise => MambaConv::Depthwise,
                ConvKind::None => MambaConv::None,
            })
            .with_conv_bc(m.conv_bc)
            .with_dt_rank(m.dt_rank)
            .with_lti(m.kind == ModelKind::MambaLti)
            .with_n_heads(m.n_heads)
            .with_mlp_ratio(m.mlp_ratio)
            .with_positional(match m.positional {
                PositionalKind::None => Positional::None,
                PositionalKind::Absolute => Positional::Absolute,
                PositionalKind::Rope => Positional::Rope,
            })
            .with_attn_softmax(match m.attn_softmax {
                AttnSoftmaxKind::Softmax => AttnSoftmax::Softmax,
                AttnSoftmaxKind::Softmax1 => AttnSoftmax::Softmax1,
                AttnSoftmaxKind::Ssmax => AttnSoftmax::Ssmax,
                AttnSoftmaxKind::Sigmoid => AttnSoftmax::Sigmoid,
            })
            .with_mlp_conv(m.mlp_conv)
            .with_attn_bias(match m.attn_bias {
                AttnBiasKind::None => AttnBias::None,
                AttnBiasKind::Alibi => AttnBias::Alibi,
                AttnBiasKind::Learned => AttnBias::Learned,
            })
    }

    /// Evaluation lengths (`[seq_len]` when none are given).
    pub fn eval_lens(&self) -> Vec<usize> {
        if self.task.eval_seq_lens.is_empty() {
            vec![self.task.seq_len]
        } else {
            self.task.eval_seq_lens.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_kinds_display_as_configs_name_them() {
        for kind in [
            TaskKind::SelectiveCopying,
            TaskKind::InductionHeads,
            TaskKind::CharLm,
        ] {
            let parsed: TaskKind = serde_json::from_value(kind.to_string().into()).unwrap();
            assert_eq!(parsed, kind);
        }
    }

    const GOOD: &str = r#"
[model]
kind = "hybrid"
d_model = 64
n_layers = 4
pattern = "MMMA"
d_state = 16
n_heads = 4
positional = "rope"

[task]
kind = "induction-heads"
vocab_size = 16
seq_len = 256
eval_seq_lens = [256, 1024, 4096]

[train]
steps = 2000
batch_size = 8
lr = 1e-3
warmup_steps = 100
grad_clip = 1.0
eval_every = 200
seed = 0
backend = "cpu"
"#;

    #[test]
    fn parses_the_documented_example() {
        let cfg = RunConfig::parse(GOOD, "x.toml").unwrap();
        assert_eq!(cfg.layer_pattern(), "MMMA");
        assert_eq!(cfg.model.positional, PositionalKind::Rope);
        assert_eq!(cfg.eval_lens(), vec![256, 1024, 4096]);
        let again = RunConfig::parse(&cfg.to_toml_string(), "snapshot").unwrap();
        assert_eq!(cfg, again);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace("d_state = 16", "d_stat = 16");
        let e = RunConfig::parse(&text, "x.toml").unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(e.key.as_deref(), Some("model.d_stat"), "{e}");
        assert!(e.to_string().starts_with("x.toml:7: `model.d_stat`"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = GOOD.replace("batch_size = 8", "batch_size = \"eight\"");
        let e = RunConfig::parse(&text, "x.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("train.batch_size"), "{e}");
        assert_eq!(e.line, Some(19), "{e}");
    }

    #[test]
    fn pattern_length_mismatch_is_reported_at_its_line() {
        let text = GOOD.replace("\"MMMA\"", "\"MMA\"");
        let e = RunConfig::parse(&text, "x.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("model.pattern"));
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("n_layers = 4"), "{e}");
    }

    #[test]
    fn heads_must_divide_width() {
        let text = GOOD.replace("n_heads = 4", "n_heads = 5");
        let e = RunConfig::parse(&text, "x.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("model.n_heads"));
        assert_eq!(e.line, Some(8));
    }

    #[test]
    fn bad_backend_and_kind_are_reported() {
        let e = RunConfig::parse(&GOOD.replace("\"cpu\"", "\"gpu\""), "x.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("train.backend"), "{e}");
        assert!(e.message.contains("gpu"), "{e}");
        let e = RunConfig::parse(&GOOD.replace("\"hybrid\"", "\"rnn\""), "x.toml").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("model.kind"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn set_overrides_and_revalidates() {
        let mut cfg = RunConfig::parse(GOOD, "x.toml").unwrap();
        cfg.set("train.lr", "3e-4").unwrap();
        assert_eq!(cfg.train.lr, 3e-4);
        cfg.set("model.positional", "absolute").unwrap();
        assert_eq!(cfg.model.positional, PositionalKind::Absolute);
        cfg.set("task.eval_seq_lens", "[256, 512]").unwrap();
        assert_eq!(cfg.task.eval_seq_lens, vec![256, 512]);
        let before = cfg.clone();
        let e = cfg.set("model.n_layers", "3").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("model.pattern"), "{e}");
        assert_eq!(cfg, before, "a failed --set leaves the config unchanged");
        let e = cfg.set("train.nope", "1").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(cfg.set("lr", "1").is_err());
    }

    #[test]
    fn overrides_are_validated_together_in_any_order() {
        let base = RunConfig::parse(GOOD, "x.toml").unwrap();
        assert!(base.train.warmup_steps > 20);
        for pairs in [
            [("train.steps", "20"), ("train.warmup_steps", "2")],
            [("train.warmup_steps", "2"), ("train.steps", "20")],
        ] {
            let mut cfg = base.clone();
            let warnings = cfg.set_all(&pairs).unwrap();
            assert_eq!((cfg.train.steps, cfg.train.warmup_steps), (20, 2));
            assert!(warnings.is_empty(), "{warnings:?}");
        }
        // A short run of a config with a long warm-up: shortened, with a warning.
        let mut cfg = base.clone();
        let warnings = cfg.set_all(&[("train.steps", "20")]).unwrap();
        assert_eq!(cfg.train.warmup_steps, 2);
        assert!(
            warnings[0].contains("warmup_steps shortened to 2"),
            "{warnings:?}"
        );
        // A hybrid's depth: both orders, and a pattern alone implies its layer count.
        for pairs in [
            vec![("model.pattern", "MMMA"), ("model.n_layers", "4")],
            vec![("model.n_layers", "4"), ("model.pattern", "MMMA")],
            vec![("model.pattern", "MMMA")],
        ] {
            let mut cfg = base.clone();
            cfg.set_all(&pairs).unwrap();
            assert_eq!(
                (cfg.model.n_layers, cfg.layer_pattern()),
                (4, "MMMA".into())
            );
        }
        // A real contradiction is still refused, naming the key, and changes nothing.
        let mut cfg = base.clone();
        let e = cfg
            .set_all(&[("model.pattern", "MMMA"), ("model.n_layers", "3")])
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("model.pattern"), "{e}");
        assert_eq!(cfg, base);
        let e = cfg
            .set_all(&[("train.lr", "fast"), ("train.steps", "5")])
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("train.lr"), "{e}");
    }
}
