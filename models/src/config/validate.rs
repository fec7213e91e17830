//! [`RunConfig::validate`]: ranges and cross-field rules of a run config; every error names
//! the key (`section.key`).
use super::*;

impl RunConfig {
    /// Checks ranges and cross-field rules; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (m, t, r) = (&self.model, &self.task, &self.train);
        let positive = |key: &str, v: usize| {
            if v == 0 {
                Err(ConfigError::key(key, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("model.d_model", m.d_model)?;
        positive("model.n_layers", m.n_layers)?;
        positive("model.d_state", m.d_state)?;
        positive("model.expand", m.expand)?;
        positive("model.d_conv", m.d_conv)?;
        positive("model.conv_dilation", m.conv_dilation)?;
        positive("model.n_heads", m.n_heads)?;
        positive("model.mlp_ratio", m.mlp_ratio)?;
        if m.dt_rank == Some(0) {
            return Err(ConfigError::key("model.dt_rank", "must be at least 1"));
        }
        if m.kind == ModelKind::Hybrid {
            match (&m.pattern, m.attn_every) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::key(
                        "model.attn_every",
                        "give either `pattern` or `attn_every`, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::key(
                        "model.pattern",
                        "kind = \"hybrid\" needs `pattern` (e.g. \"MMMA\") or `attn_every`",
                    ));
                }
                (Some(p), None) => {
                    if let Some(bad) = p
                        .chars()
                        .find(|c| !matches!(c.to_ascii_uppercase(), 'M' | 'A' | 'C'))
                    {
                        return Err(ConfigError::key(
                            "model.pattern",
                            format!(
                                "letter `{bad}` is not M (Mamba), A (attention) or C (conv mixer)"
                            ),
                        ));
                    }
                    if p.chars().count() != m.n_layers {
                        return Err(ConfigError::key(
                            "model.pattern",
                            format!(
                                "pattern \"{p}\" has {} layers but n_layers = {}",
                                p.chars().count(),
                                m.n_layers
                            ),
                        ));
                    }
                }
                (None, Some(k)) => {
                    if k == 0 || k > m.n_layers {
                        return Err(ConfigError::key(
                            "model.attn_every",
                            format!("must be between 1 and n_layers = {}", m.n_layers),
                        ));
                    }
                }
            }
        } else {
            if m.pattern.is_some() {
                return Err(ConfigError::key(
                    "model.pattern",
                    "only used with kind = \"hybrid\"",
                ));
            }
            if m.attn_every.is_some() {
                return Err(ConfigError::key(
                    "model.attn_every",
                    "only used with kind = \"hybrid\"",
                ));
            }
        }
        if m.conv_bc && (m.kind == ModelKind::MambaLti || !self.layer_pattern().contains('M')) {
            return Err(ConfigError::key(
                "model.conv_bc",
                "acts on the B and C of selective Mamba layers, and this model has none",
            ));
        }
        if m.conv_kind == ConvKind::None && !m.conv_bc && m.conv_dilation != 1 {
            return Err(ConfigError::key(
                "model.conv_dilation",
                "conv_kind = \"none\" leaves no conv to dilate (unless conv_bc = true)",
            ));
        }
        if m.mlp_conv > 0 && !self.layer_pattern().contains('A') {
            return Err(ConfigError::key(
                "model.mlp_conv",
                "acts on the MLP of attention layers, and this model has none",
            ));
        }
        if self.layer_pattern().contains('A') {
            if !m.d_model.is_multiple_of(m.n_heads) {
                return Err(ConfigError::key(
                    "model.n_heads",
                    format!(
                        "d_model = {} is not divisible by n_heads = {}",
                        m.d_model, m.n_heads
                    ),
                ));
            }
            if m.positional == PositionalKind::Rope && !(m.d_model / m.n_heads).is_multiple_of(2) {
                return Err(ConfigError::key(
                    "model.positional",
                    "rope needs an even head size (d_model / n_heads)",
                ));
            }
        }
        // [task]
        positive("task.eval_samples", t.eval_samples)?;
        match t.kind {
            TaskKind::SelectiveCopying => {
                if t.vocab_size < 3 {
                    return Err(ConfigError::key(
                        "task.vocab_size",
                        "selective copying needs at least 3 tokens (noise, marker, data)",
                    ));
                }
                positive("task.n_memorize", t.n_memorize)?;
                for (key, len) in std::iter::once(("task.seq_len", t.seq_len))
                    .chain(t.eval_seq_lens.iter().map(|&l| ("task.eval_seq_lens", l)))
                {
                    if len < t.n_memorize {
                        return Err(ConfigError::key(
                            key,
                            format!(
                                "length {len} cannot hold n_memorize = {} data tokens",
                                t.n_memorize
                            ),
                        ));
                    }
                }
            }
            TaskKind::InductionHeads => {
                if t.vocab_size < 3 {
                    return Err(ConfigError::key(
                        "task.vocab_size",
                        "induction heads needs at least 3 tokens",
                    ));
                }
                for (key, len) in std::iter::once(("task.seq_len", t.seq_len))
                    .chain(t.eval_seq_lens.iter().map(|&l| ("task.eval_seq_lens", l)))
                {
                    if len < 4 {
                        return Err(ConfigError::key(
                            key,
                            format!("length {len} is too short (at least 4)"),
                        ));
                    }
                }
            }
            TaskKind::CharLm => {
                let corpus = crate::tasks::CharCorpus::bundled();
                if t.vocab_size < corpus.vocab_size() {
                    return Err(ConfigError::key(
                        "task.vocab_size",
                        format!(
                            "the bundled corpus has {} distinct characters; vocab_size must be at least that",
                            corpus.vocab_size()
                        ),
                    ));
                }
                for (key, len) in std::iter::once(("task.seq_len", t.seq_len))
                    .chain(t.eval_seq_lens.iter().map(|&l| ("task.eval_seq_lens", l)))
                {
                    if len < 2 || len + 1 > corpus.valid_len() {
                        return Err(ConfigError::key(
                            key,
                            format!(
                                "length {len} must be between 2 and {}",
                                corpus.valid_len() - 1
                            ),
                        ));
                    }
                }
            }
            TaskKind::Text | TaskKind::Tokens => validate_files_task(t)?,
        }
        if !t.kind.reads_files() {
            for (key, set) in [
                ("task.path", t.path.is_some()),
                ("task.val_path", t.val_path.is_some()),
                ("task.tokenizer", t.tokenizer.is_some()),
                ("task.dtype", t.dtype.is_some()),
            ] {
                if set {
                    return Err(ConfigError::key(
                        key,
                        format!(
                            "only kind = \"text\" or \"tokens\" reads files, not {}",
                            t.kind
                        ),
                    ));
                }
            }
        }
        // [train]
        if r.steps == 0 {
            return Err(ConfigError::key("train.steps", "must be at least 1"));
        }
        positive("train.batch_size", r.batch_size)?;
        if !(r.lr.is_finite() && r.lr > 0.0) {
            return Err(ConfigError::key("train.lr", "must be a positive number"));
        }
        if r.warmup_steps > r.steps {
            return Err(ConfigError::key(
                "train.warmup_steps",
                format!(
                    "warmup_steps = {} exceeds steps = {}",
                    r.warmup_steps, r.steps
                ),
            ));
        }
        if !(r.grad_clip.is_finite() && r.grad_clip >= 0.0) {
            return Err(ConfigError::key(
                "train.grad_clip",
                "must be ≥ 0 (0 disables clipping)",
            ));
        }
        if r.betas
            .iter()
            .any(|b| !(b.is_finite() && (0.0..1.0).contains(b)))
        {
            return Err(ConfigError::key(
                "train.betas",
                format!("each must be in [0, 1), got {:?}", r.betas),
            ));
        }
        if !(r.eps.is_finite() && r.eps > 0.0) {
            return Err(ConfigError::key("train.eps", "must be a positive number"));
        }
        if !(r.weight_decay.is_finite() && r.weight_decay >= 0.0) {
            return Err(ConfigError::key("train.weight_decay", "must be ≥ 0"));
        }
        if !(r.state_noise.is_finite() && r.state_noise > 0.0) {
            return Err(ConfigError::key(
                "train.state_noise",
                "must be a positive number",
            ));
        }
        positive("train.grad_accum", r.grad_accum)?;
        let devices = r.device_list();
        if devices.iter().any(|d| {
            matches!(d, BackendChoice::Cpu) != matches!(r.device_kind(), BackendChoice::Cpu)
        }) {
            return Err(ConfigError::key(
                "train.devices",
                "mixes cpu and cuda devices; list devices of one kind",
            ));
        }
        if !r.devices.is_empty()
            && r.backend != BackendChoice::Cpu
            && matches!(r.device_kind(), BackendChoice::Cpu)
        {
            return Err(ConfigError::key(
                "train.devices",
                format!(
                    "are cpu devices but backend = \"{}\"; drop one of the two",
                    r.backend
                ),
            ));
        }
        for (i, d) in devices.iter().enumerate() {
            if matches!(d, BackendChoice::Cuda(_)) && devices[..i].contains(d) {
                return Err(ConfigError::key(
                    "train.devices",
                    format!("lists {d} twice; each GPU holds one replica"),
                ));
            }
        }
        if !r.batch_size.is_multiple_of(devices.len()) {
            return Err(ConfigError::key(
                "train.batch_size",
                format!(
                    "{} sequences do not split evenly over {} devices",
                    r.batch_size,
                    devices.len()
                ),
            ));
        }
        if r.precision.is_half() && matches!(r.device_kind(), BackendChoice::Cpu) {
            return Err(ConfigError::key(
                "train.precision",
                format!(
                    "\"{}\" runs on CUDA only (the CPU kernels compute in f32); use \"f32\" \
                     with backend = \"cpu\"",
                    r.precision.name()
                ),
            ));
        }
        if r.state_init != StateInit::Zeros && (devices.len() > 1 || r.grad_accum > 1) {
            return Err(ConfigError::key(
                "train.state_init",
                "runs on one device without grad_accum (the states follow whole batches)",
            ));
        }
        if r.state_init != StateInit::Zeros {
            if m.kind == ModelKind::MambaLti || !self.layer_pattern().contains('M') {
                return Err(ConfigError::key(
                    "train.state_init",
                    "needs a selective Mamba layer (kind mamba or hybrid)",
                ));
            }
            if r.device_kind() != BackendChoice::Cpu {
                return Err(ConfigError::key(
                    "train.state_init",
                    "is implemented in the fused CPU block only; use backend = \"cpu\"",
                ));
            }
        }
        Ok(())
    }
}
