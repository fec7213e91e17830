//! Mamba (S6) mixer and its pre-norm residual block, after Gu & Dao 2023.
use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Int, Tensor, backend::Backend};

use crate::fused::{
    BlockState, MambaBlockParams, ScanBackend, causal_conv_silu_dilated, gated_scan, mamba_block,
};
use burn::tensor::activation::silu;

/// What runs between `in_proj` and the scan on the scan's input (`[model] conv_kind`).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum MambaConv {
    /// A depthwise causal conv of kernel `d_conv`, then SiLU (Mamba's).
    Depthwise,
    /// SiLU only: the ablation with no conv.
    None,
}

/// Configuration of one Mamba mixer.
#[derive(Config, Debug)]
pub struct MambaConfig {
    /// Model width.
    pub d_model: usize,
    /// SSM state size N per channel.
    #[config(default = "super::defaults::D_STATE")]
    pub d_state: usize,
    /// d_inner = expand · d_model.
    #[config(default = "super::defaults::EXPAND")]
    pub expand: usize,
    /// Depthwise causal convolution kernel size.
    #[config(default = "super::defaults::D_CONV")]
    pub d_conv: usize,
    /// Distance between the conv's taps (1: contiguous; `[model] conv_dilation`).
    #[config(default = 1)]
    pub conv_dilation: usize,
    /// The conv on the scan's input, or none.
    #[config(default = "MambaConv::Depthwise")]
    pub conv_kind: MambaConv,
    /// Also run a causal conv (kernel `d_conv`, same dilation) and SiLU over `[B | C]`, as
    /// Mamba-2 does. Selective mixers only.
    #[config(default = false)]
    pub conv_bc: bool,
    /// Rank of the Δ projection; `None` means ceil(d_model / 16).
    #[config(default = "None")]
    pub dt_rank: Option<usize>,
    /// `true` for the `mamba-lti` ablation: Δ, B, C are learned parameters independent of
    /// the input (an S4-style linear time-invariant SSM).
    #[config(default = false)]
    pub lti: bool,
    /// Smallest initial Δ.
    #[config(default = 0.001)]
    pub dt_min: f64,
    /// Largest initial Δ.
    #[config(default = 0.1)]
    pub dt_max: f64,
}

impl MambaConfig {
    /// d_inner = expand · d_model.
    pub fn d_inner(&self) -> usize {
        self.expand * self.d_model
    }

    /// The Δ projection rank actually used.
    pub fn dt_rank(&self) -> usize {
        self.dt_rank.unwrap_or(self.d_model.div_ceil(16))
    }

    /// Initialises the mixer (PyTorch-style init as in the reference implementation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mamba<B> {
        let (di, n, r, k) = (self.d_inner(), self.d_state, self.dt_rank(), self.d_conv);
        let conv_bound = 1.0 / (k as f64).sqrt(); // PyTorch conv1d default, fan_in = 1·k
        let conv = Initializer::Uniform {
            min: -conv_bound,
            max: conv_bound,
        };
        // A_log[d, n] = log(n + 1)  (S4D-real).
        let a_log = Tensor::<B, 1, Int>::arange(1..n as i64 + 1, device)
            .float()
            .log()
            .unsqueeze_dim::<2>(0)
            .repeat_dim(0, di); // [d_inner, N]
        // The random draws keep their order (C, then Δ; or x_proj, dt_proj, Δ bias; then
        // the shared weights below), so a seed gives the same model as it always has.
        let selection = if self.lti {
            let c = Tensor::<B, 1>::random([n], Distribution::Normal(0.0, 1.0), device)
                / (n as f64).sqrt();
            Selection::Lti(LtiParams {
                lti_dt: Param::from_tensor(self.dt_bias_init::<B>(di, device)),
                lti_b: Initializer::Ones.init([n], device),
                lti_c: Param::from_tensor(c),
            })
        } else {
            let x_proj = LinearConfig::new(di, r + 2 * n)
                .with_bias(false)
                .init(device);
            let bound = (r as f64).powf(-0.5);
            let mut dt_proj = LinearConfig::new(r, di)
                .with_initializer(Initializer::Uniform {
                    min: -bound,
                    max: bound,
                })
                .init(device);
            dt_proj.bias = Some(Param::from_tensor(self.dt_bias_init::<B>(di, device)));
            Selection::Selective(SelectiveProjections { x_proj, dt_proj })
        };
        let depthwise = self.conv_kind == MambaConv::Depthwise;
        let (bc_w, bc_b) = if self.conv_bc && !self.lti {
            let (w, b) = (conv.init([2 * n, k], device), conv.init([2 * n], device));
            (Some(w), Some(b))
        } else {
            (None, None)
        };
        Mamba {
            in_proj: LinearConfig::new(self.d_model, 2 * di)
                .with_bias(false)
                .init(device),
            conv_weight: depthwise.then(|| conv.init([di, k], device)),
            conv_bias: depthwise.then(|| conv.init([di], device)),
            bc_conv_weight: bc_w,
            bc_conv_bias: bc_b,
            selection,
            a_log: Param::from_tensor(a_log),
            d: Initializer::Ones.init([di], device),
            out_proj: LinearConfig::new(di, self.d_model)
                .with_bias(false)
                .init(device),
            d_inner: di,
            d_state: n,
            dt_rank: r,
            d_conv: k,
            conv_dilation: self.conv_dilation,
        }
    }

    /// softplus⁻¹(Δ₀) with Δ₀ = exp(U[log dt_min, log dt_max]), clamped at 1e-4.
    fn dt_bias_init<B: Backend>(&self, di: usize, device: &B::Device) -> Tensor<B, 1> {
        let (lo, hi) = (self.dt_min.ln(), self.dt_max.ln());
        let dt = Tensor::<B, 1>::random([di], Distribution::Uniform(lo, hi), device)
            .exp()
            .clamp_min(1e-4);
        // softplus⁻¹(y) = y + log(1 − exp(−y))
        dt.clone() + (dt.neg().exp().neg() + 1.0).log()
    }
}

/// One Mamba mixer (no norm, no residual). Weights use Burn's `[in, out]` Linear layout.
#[derive(Module, Debug)]
pub struct Mamba<B: Backend> {
    /// `[d_model, 2·d_inner]`, no bias.
    pub in_proj: Linear<B>,
    /// Depthwise conv weight `[d_inner, d_conv]` (PyTorch `[d_inner, 1, d_conv]`); `None`
    /// for `conv_kind = "none"`.
    pub conv_weight: Option<Param<Tensor<B, 2>>>,
    /// Conv bias `[d_inner]`.
    pub conv_bias: Option<Param<Tensor<B, 1>>>,
    /// The conv over `[B | C]` (`conv_bc`): weight `[2N, d_conv]`.
    pub bc_conv_weight: Option<Param<Tensor<B, 2>>>,
    /// Its bias `[2N]`.
    pub bc_conv_bias: Option<Param<Tensor<B, 1>>>,
    /// Where Δ, B and C come from.
    pub selection: Selection<B>,
    /// `[d_inner, N]`; A = −exp(A_log).
    pub a_log: Param<Tensor<B, 2>>,
    /// Skip `[d_inner]`.
    pub d: Param<Tensor<B, 1>>,
    /// `[d_inner, d_model]`, no bias.
    pub out_proj: Linear<B>,
    d_inner: usize,
    d_state: usize,
    dt_rank: usize,
    d_conv: usize,
    conv_dilation: usize,
}

/// Where the mixer's Δ, B and C come from: projections of the input (Mamba's selection
/// mechanism) or learned constants (the `mamba-lti` ablation).
#[derive(Module, Debug)]
pub enum Selection<B: Backend> {
    Selective(SelectiveProjections<B>),
    Lti(LtiParams<B>),
}

/// Mamba's input-dependent Δ, B, C.
#[derive(Module, Debug)]
pub struct SelectiveProjections<B: Backend> {
    /// `[d_inner, dt_rank + 2N]`, no bias: Δ (low rank), B, C.
    pub x_proj: Linear<B>,
    /// `[dt_rank, d_inner]` with bias: Δ before softplus.
    pub dt_proj: Linear<B>,
}

/// The LTI ablation's constant Δ, B, C (an S4-style time-invariant SSM).
#[derive(Module, Debug)]
pub struct LtiParams<B: Backend> {
    /// Δ before softplus `[d_inner]`.
    pub lti_dt: Param<Tensor<B, 1>>,
    /// B `[N]`.
    pub lti_b: Param<Tensor<B, 1>>,
    /// C `[N]`.
    pub lti_c: Param<Tensor<B, 1>>,
}

impl<B: Backend> Mamba<B> {
    /// Distance between the conv's taps.
    pub fn conv_dilation(&self) -> usize {
        self.conv_dilation
    }

    /// `d_inner`.
    pub fn d_inner(&self) -> usize {
        self.d_inner
    }

    /// The conv on the scan's input as `(weight [d_inner, K], bias [d_inner])`; for
    /// `conv_kind = "none"` a kernel-1 identity (untracked constants), so that every path
    /// computes `silu(x)` with the same op.
    pub fn conv_or_identity(&self) -> (Tensor<B, 2>, Tensor<B, 1>) {
        match (&self.conv_weight, &self.conv_bias) {
            (Some(w), Some(b)) => (w.val(), b.val()),
            _ => {
                let device = self.a_log.device();
                (
                    Tensor::ones([self.d_inner, 1], &device),
                    Tensor::zeros([self.d_inner], &device),
                )
            }
        }
    }

    /// The `[B | C]` conv's weight `[2N, K]` and bias `[2N]`, when `conv_bc`.
    pub fn bc_conv(&self) -> Option<(Tensor<B, 2>, Tensor<B, 1>)> {
        match (&self.bc_conv_weight, &self.bc_conv_bias) {
            (Some(w), Some(b)) => Some((w.val(), b.val())),
            _ => None,
        }
    }

    /// The selective projections; `None` for the LTI ablation.
    pub fn selective(&self) -> Option<&SelectiveProjections<B>> {
        match &self.selection {
            Selection::Selective(p) => Some(p),
            Selection::Lti(_) => None,
        }
    }
}

impl<B: ScanBackend> Mamba<B> {
    /// `[batch, L, d_model] → [batch, L, d_model]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, len, _] = x.dims();
        let (di, n, r) = (self.d_inner, self.d_state, self.dt_rank);
        // in_proj as two products with column slices of its weight, so that xs and z come out
        // contiguous (the fused host ops then read them without a strided copy).
        let w_in = self.in_proj.weight.val(); // [d_model, 2·d_inner]
        let xs = linear(x.clone(), w_in.clone().narrow(1, 0, di), None); // [batch, L, d_inner]
        let z = linear(x, w_in.narrow(1, di, di), None); // [batch, L, d_inner]
        // silu(depthwise causal conv(xs)), or silu(xs) without a conv: [batch, L, d_inner]
        let xs = match (&self.conv_weight, &self.conv_bias) {
            (Some(w), Some(b)) => {
                causal_conv_silu_dilated(xs, w.val(), b.val(), self.conv_dilation)
            }
            _ => silu(xs),
        };
        let (delta_raw, b, c) = match &self.selection {
            Selection::Selective(SelectiveProjections { x_proj, dt_proj }) => {
                // x_proj likewise split by output columns: Δ (low rank), B, C.
                let w = x_proj.weight.val(); // [d_inner, dt_rank + 2N]
                let dt = linear(xs.clone(), w.clone().narrow(1, 0, r), None); // [batch, L, dt_rank]
                let b = linear(xs.clone(), w.clone().narrow(1, r, n), None); // [batch, L, N]
                let c = linear(xs.clone(), w.narrow(1, r + n, n), None); // [batch, L, N]
                let (b, c) = match self.bc_conv() {
                    Some((w, bias)) => {
                        let bc = Tensor::cat(vec![b, c], 2); // [batch, L, 2N]
                        let bc = causal_conv_silu_dilated(bc, w, bias, self.conv_dilation);
                        (bc.clone().narrow(2, 0, n), bc.narrow(2, n, n)) // [batch, L, N] each
                    }
                    None => (b, c),
                };
                (dt_proj.forward(dt), b, c) // Δ before softplus: [batch, L, d_inner]
            }
            Selection::Lti(lti) => {
                let (dt, b, c) = (lti.lti_dt.val(), lti.lti_b.val(), lti.lti_c.val());
                (
                    dt.reshape([1, 1, di]).expand([batch, len, di]), // [batch, L, d_inner]
                    b.reshape([1, 1, n]).expand([batch, len, n]),    // [batch, L, N]
                    c.reshape([1, 1, n]).expand([batch, len, n]),    // [batch, L, N]
                )
            }
        };
        let a = self.a_log.val().exp().neg(); // [d_inner, N]
        // scan(xs, softplus(Δ), A, B, C, D) ⊙ silu(z): [batch, L, d_inner]
        let y = gated_scan(xs, delta_raw, a, b, c, self.d.val(), z);
        self.out_proj.forward(y) // [batch, L, d_model]
    }
}

/// `x + Mamba(RMSNorm(x))`.
#[derive(Module, Debug)]
pub struct MambaBlock<B: Backend> {
    /// RMSNorm (eps 1e-5, weight only).
    pub norm: RmsNorm<B>,
    /// The mixer.
    pub mixer: Mamba<B>,
}

impl MambaConfig {
    /// A residual block around this mixer.
    pub fn init_block<B: Backend>(&self, device: &B::Device) -> MambaBlock<B> {
        MambaBlock {
            norm: RmsNormConfig::new(self.d_model)
                .with_epsilon(1e-5)
                .init(device),
            mixer: self.init(device),
        }
    }
}

impl<B: ScanBackend> MambaBlock<B> {
    /// `[batch, L, d_model] → [batch, L, d_model]`. On host backends
    /// ([`ScanBackend::HOST_KERNELS`]) a selective block is one fused op
    /// ([`mamba_block`]); otherwise, and for the LTI ablation, [`Self::forward_composed`].
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_from(x, &BlockState::default())
    }

    /// [`Self::forward`] with the scan started from `state.initial` and its final state
    /// written to `state.last`. Only the fused path has these; callers check
    /// [`Self::supports_state`] (a zero state works everywhere).
    pub fn forward_from(&self, x: Tensor<B, 3>, state: &BlockState) -> Tensor<B, 3> {
        match self.fused_params() {
            Some(mut p) if B::HOST_KERNELS => {
                p.state = state.clone();
                mamba_block(x, p)
            }
            _ => {
                assert!(
                    state.initial.is_none() && state.last.is_none(),
                    "a scan state needs the fused CPU block"
                );
                self.forward_composed(x)
            }
        }
    }

    /// Whether [`Self::forward_from`] can take a state: the fused CPU block of a selective
    /// mixer.
    pub fn supports_state(&self) -> bool {
        B::HOST_KERNELS && self.fused_params().is_some()
    }

    /// The same block composed of tensor ops around the scan (for device backends, the LTI
    /// ablation, and as the reference of the fused op in the tests).
    pub fn forward_composed(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        x.clone() + self.mixer.forward(self.norm.forward(x))
    }

    /// The weights in [`mamba_block`]'s form; `None` for the LTI ablation, and for a block
    /// whose projections carry biases the fused op does not have (in/x/out projections).
    pub fn fused_params(&self) -> Option<MambaBlockParams<B>> {
        let m = &self.mixer;
        let SelectiveProjections { x_proj, dt_proj } = m.selective()?;
        if m.in_proj.bias.is_some() || x_proj.bias.is_some() || m.out_proj.bias.is_some() {
            return None;
        }
        let (conv_w, conv_b) = m.conv_or_identity();
        Some(MambaBlockParams {
            state: BlockState::default(),
            norm: self.norm.gamma.val(),
            norm_eps: self.norm.epsilon,
            conv_dilation: m.conv_dilation,
            in_proj: m.in_proj.weight.val(),
            conv_w,
            conv_b,
            conv_bc: m.bc_conv(),
            x_proj: x_proj.weight.val(),
            dt_w: dt_proj.weight.val(),
            dt_b: dt_proj.bias.as_ref()?.val(),
            a_log: m.a_log.val(),
            d: m.d.val(),
            out_proj: m.out_proj.weight.val(),
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::module::Module;
    use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
    use burn::tensor::Tensor;

    use super::*;

    type B = NdArray;

    fn values(m: &Mamba<B>) -> Vec<f32> {
        let flat = |t: Tensor<B, 1>| t.into_data().to_vec::<f32>().unwrap();
        let mut v = Vec::new();
        match &m.selection {
            Selection::Selective(p) => {
                v.extend(flat(p.x_proj.weight.val().flatten(0, 1)));
                v.extend(flat(p.dt_proj.bias.as_ref().unwrap().val()));
            }
            Selection::Lti(p) => {
                v.extend(flat(p.lti_dt.val()));
                v.extend(flat(p.lti_c.val()));
            }
        }
        v
    }

    /// Both kinds of mixer survive a checkpoint file (the record of an enum module), and
    /// loading one kind's file into the other is refused rather than half-applied.
    #[test]
    fn both_selection_kinds_round_trip_through_a_checkpoint() {
        let dir = std::env::temp_dir().join(format!("labbook-mamba-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let device = Default::default();
        for lti in [false, true] {
            let cfg = MambaConfig::new(16).with_lti(lti);
            let saved = cfg.init::<B>(&device);
            assert_eq!(saved.selective().is_none(), lti);
            // Parameters are drawn lazily, on first use: read them before cloning, or the
            // clone draws its own.
            let want = values(&saved);
            let path = dir.join(format!("lti-{lti}"));
            saved.save_file(&path, &rec).unwrap();
            let fresh = cfg.init::<B>(&device);
            assert_ne!(values(&fresh), want, "two inits drew the same weights");
            let loaded = fresh.load_file(&path, &rec, &device).unwrap();
            assert_eq!(values(&loaded), want);
        }
        let other = MambaConfig::new(16).with_lti(true).init::<B>(&device);
        let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            other.load_file(dir.join("lti-false"), &rec, &device)
        }));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            !matches!(wrong, Ok(Ok(_))),
            "a selective checkpoint loaded into an LTI mixer"
        );
    }
}
