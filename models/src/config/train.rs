//! `[train]`: the optimiser, the steps and batch, the devices, the scan's initial state.
use super::*;
pub use crate::precision::Precision;

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Optimiser steps.
    pub steps: u64,
    /// Sequences per optimiser step over all devices, per accumulation micro-step (the step
    /// sees `batch_size · grad_accum` sequences).
    pub batch_size: usize,
    /// Micro-steps whose gradients are summed before each optimiser step: `batch_size = 8,
    /// grad_accum = 2` trains as `batch_size = 16` with half the activation memory.
    #[serde(default = "default_grad_accum", skip_serializing_if = "is_one")]
    pub grad_accum: usize,
    /// Data parallel over these devices (`["cuda:0", "cuda:1"]`; `["cpu", "cpu"]` runs two CPU
    /// replicas): one model replica each, each taking an equal share of every batch, the
    /// gradients summed with burn-collective's all-reduce. Empty: the one `backend`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<BackendChoice>,
    /// `f32` (default), or `bf16` / `f16`: mixed precision on CUDA, with f32 master weights
    /// and optimizer state (see `crate::precision`). The CPU backends train in f32 only.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: Precision,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps before cosine decay.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Global gradient-norm clip; 0 disables.
    #[serde(default = "default_grad_clip")]
    pub grad_clip: f64,
    /// AdamW's decoupled weight decay, for the parameters `no_weight_decay` leaves in.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// AdamW's moment decay rates (β₁, β₂).
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// AdamW's ε.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Parameters that get no weight decay, as in the Mamba reference: an entry matches a
    /// parameter whose field name is the entry or ends in `_entry` (`bias` also matches
    /// `conv_bias`; `a_log`, `d`), or whose module type ends in it (`norm`: RMSNorm
    /// weights; `embedding`: the token embedding). Case-insensitive.
    #[serde(default = "default_no_weight_decay")]
    pub no_weight_decay: Vec<String>,
    /// Evaluate every this many steps (and always at the end); 0 = only at the end.
    #[serde(default)]
    pub eval_every: u64,
    /// Checkpoint every this many steps (and at the end); 0 = only at the end. Absent: every
    /// [`crate::train::AUTO_CHECKPOINT_EVERY`] of training time, so a short run pays for no
    /// checkpoint before its last and a long one loses at most that much to a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u64>,
    /// Seed for initialisation and data.
    #[serde(default)]
    pub seed: u64,
    /// Start from these weights (safetensors as `labbook export-model` writes them, PyTorch
    /// names; `~` and `$VAR` expanded) instead of a random initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_backend")]
    pub backend: BackendChoice,
    /// What each training sequence's Mamba scans start from (evaluation always starts from
    /// zeros): the length-generalisation interventions of Buitrago Ruiz & Gu 2025.
    #[serde(default, skip_serializing_if = "StateInit::is_zeros")]
    pub state_init: StateInit,
    /// `state_init = "noise"`: standard deviation of the Gaussian initial state.
    #[serde(default = "default_state_noise")]
    pub state_noise: f64,
}

/// `[train] state_init`: the state each training sequence's scans start from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateInit {
    /// Zeros, as at evaluation (the Mamba reference).
    #[default]
    Zeros,
    /// Gaussian noise with standard deviation `state_noise`, drawn per step.
    Noise,
    /// Each Mamba layer's final state of the previous step's sequences ("state passing"):
    /// sequence `i` starts where sequence `i + 1` of the previous batch ended, so the states
    /// trained on are those reached after ever longer inputs. No gradient flows across steps.
    Carry,
}

impl StateInit {
    fn is_zeros(&self) -> bool {
        *self == StateInit::Zeros
    }
}

fn default_state_noise() -> f64 {
    1.0
}

fn is_f32(p: &Precision) -> bool {
    *p == Precision::F32
}

fn default_grad_accum() -> usize {
    1
}

impl TrainSection {
    /// The devices the run trains on: `devices`, or the one `backend`.
    pub fn device_list(&self) -> Vec<BackendChoice> {
        if self.devices.is_empty() {
            vec![self.backend]
        } else {
            self.devices.clone()
        }
    }

    /// The backend kind every device shares (`devices` are checked to agree).
    pub fn device_kind(&self) -> BackendChoice {
        self.device_list()[0]
    }

    /// The optimizer settings a config gets when it names none (`labbook bench train`).
    pub fn defaults_for_bench() -> TrainSection {
        TrainSection {
            steps: 1,
            batch_size: 1,
            lr: 1e-3,
            warmup_steps: 0,
            grad_clip: default_grad_clip(),
            weight_decay: default_weight_decay(),
            betas: default_betas(),
            eps: default_eps(),
            no_weight_decay: default_no_weight_decay(),
            eval_every: 0,
            checkpoint_every: None,
            seed: 0,
            grad_accum: 1,
            devices: Vec::new(),
            precision: Precision::F32,
            init_from: None,
            backend: default_backend(),
            state_init: StateInit::Zeros,
            state_noise: default_state_noise(),
        }
    }
}

fn default_grad_clip() -> f64 {
    1.0
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.95]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_no_weight_decay() -> Vec<String> {
    ["bias", "a_log", "d", "norm", "embedding"]
        .map(String::from)
        .to_vec()
}
fn default_backend() -> BackendChoice {
    BackendChoice::Cpu
}
