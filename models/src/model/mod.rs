//! Models: Mamba (S6) and its LTI ablation, causal attention, hybrids and the LM wrapper.
pub mod attention;
pub mod lm;
pub mod mamba;

pub use attention::{AttentionBlock, AttentionConfig, Positional};
pub use lm::{Block, Lm, LmConfig, pattern_attn_every};
pub use mamba::{Mamba, MambaBlock, MambaConfig};
