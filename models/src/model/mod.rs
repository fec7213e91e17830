//! Models: Mamba (S6) and its LTI ablation, causal attention, hybrids and the LM wrapper.
pub mod attention;
pub mod conv_block;
pub mod lm;
pub mod mamba;

pub use attention::{AttentionBlock, AttentionConfig, AttnBias, AttnSoftmax, Positional};
pub use conv_block::{ConvBlock, ConvBlockConfig};
pub use lm::{Block, Lm, LmConfig, pattern_attn_every};
pub use mamba::{
    LtiParams, Mamba, MambaBlock, MambaConfig, MambaConv, Selection, SelectiveProjections,
};

/// Defaults shared by the model configs and the run-config format (`[model]`), written once.
pub mod defaults {
    /// SSM state size N per channel.
    pub const D_STATE: usize = 16;
    /// d_inner = expand · d_model.
    pub const EXPAND: usize = 2;
    /// Depthwise causal convolution kernel size.
    pub const D_CONV: usize = 4;
    /// Attention heads.
    pub const N_HEADS: usize = 4;
    /// MLP hidden width = mlp_ratio · d_model.
    pub const MLP_RATIO: usize = 4;
}
