//! Checkpoints: writing one while training (weights, AdamW state, `state.json` with the step,
//! the config, the vocabulary and a `chars` run's alphabet), and reading one back on the CPU
//! for `labbook sample` and `labbook export-model`.
use std::path::Path;

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;

use crate::backend::CpuBackend;
use crate::config::RunConfig;
use crate::fused::ScanBackend;
use crate::model::Lm;
use crate::tasks::Task;
use crate::train::TrainError;

pub(crate) type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

pub(crate) fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(crate) fn save_checkpoint<B, O>(
    dir: &Path,
    model: &Lm<B>,
    optim: &O,
    step: u64,
    cfg: &RunConfig,
    task: &Task,
) -> Result<(), TrainError>
where
    B: AutodiffBackend + ScanBackend,
    O: Optimizer<Lm<B>, B>,
{
    std::fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, e))?;
    let rec = Rec::new();
    model
        .clone()
        .save_file(dir.join("model"), &rec)
        .map_err(|e| ckpt_err(dir, e))?;
    Recorder::<B>::record(&rec, optim.to_record(), dir.join("optim"))
        .map_err(|e| ckpt_err(dir, e))?;
    // The vocabulary (text runs take theirs from the data) and a chars run's alphabet, so
    // that export and sampling rebuild the same model and tokenizer without the data.
    let vocab = model.embedding.weight.val().dims()[0];
    let mut state =
        serde_json::json!({ "step": step, "config": cfg.to_toml_string(), "vocab_size": vocab });
    if let Task::Files(corpus) = task
        && let Some(alphabet) = &corpus.alphabet
    {
        state["alphabet"] = serde_json::json!(alphabet.iter().collect::<String>());
    }
    std::fs::write(dir.join("state.json"), state.to_string()).map_err(|e| ckpt_err(dir, e))?;
    Ok(())
}

/// A run's weights loaded from its checkpoint on the CPU, with what the checkpoint says
/// about its tokens.
pub struct TrainedModel {
    pub model: Lm<CpuBackend>,
    /// The step the checkpoint was written at.
    pub step: u64,
    /// A `chars` run's alphabet (token id = index).
    pub alphabet: Option<Vec<char>>,
}

/// Loads the checkpoint in `dir` of a run trained with `cfg` (on the CPU, whatever the run
/// trained on).
pub fn load_trained(cfg: &RunConfig, dir: &Path) -> Result<TrainedModel, TrainError> {
    let state = std::fs::read_to_string(dir.join("state.json")).map_err(|e| ckpt_err(dir, e))?;
    let state: serde_json::Value = serde_json::from_str(&state).map_err(|e| ckpt_err(dir, e))?;
    let mut lm = cfg.lm_config();
    if let Some(v) = state["vocab_size"].as_u64() {
        lm.vocab_size = v as usize;
    }
    let device = Default::default();
    let model: Lm<CpuBackend> = lm
        .init(&device)
        .load_file(dir.join("model"), &Rec::new(), &device)
        .map_err(|e| ckpt_err(dir, e))?;
    Ok(TrainedModel {
        model,
        step: state["step"].as_u64().unwrap_or(0),
        alphabet: state["alphabet"].as_str().map(|a| a.chars().collect()),
    })
}

/// Writes the weights of the checkpoint in `dir` (of a run trained with `cfg`) as
/// PyTorch-named safetensors at `out` ([`crate::export`]).
pub fn export_checkpoint(cfg: &RunConfig, dir: &Path, out: &Path) -> Result<(), TrainError> {
    let mut trained = load_trained(cfg, dir)?;
    crate::export::save(&mut trained.model, &cfg.layer_pattern(), out)?;
    Ok(())
}
