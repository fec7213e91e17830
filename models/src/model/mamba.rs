//! Mamba (S6) mixer and its pre-norm residual block, after Gu & Dao 2023.
use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Int, Tensor, backend::Backend};

use crate::scan::{
    BlockState, MambaBlockParams, ScanBackend, causal_conv_silu, gated_scan, mamba_block,
};

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
        let (x_proj, dt_proj, lti_dt, lti_b, lti_c) = if self.lti {
            let c = Tensor::<B, 1>::random([n], Distribution::Normal(0.0, 1.0), device)
                / (n as f64).sqrt();
            (
                None,
                None,
                Some(Param::from_tensor(self.dt_bias_init::<B>(di, device))),
                Some(Initializer::Ones.init([n], device)),
                Some(Param::from_tensor(c)),
            )
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
            (Some(x_proj), Some(dt_proj), None, None, None)
        };
        Mamba {
            in_proj: LinearConfig::new(self.d_model, 2 * di)
                .with_bias(false)
                .init(device),
            conv_weight: conv.init([di, k], device),
            conv_bias: conv.init([di], device),
            x_proj,
            dt_proj,
            lti_dt,
            lti_b,
            lti_c,
            a_log: Param::from_tensor(a_log),
            d: Initializer::Ones.init([di], device),
            out_proj: LinearConfig::new(di, self.d_model)
                .with_bias(false)
                .init(device),
            d_inner: di,
            d_state: n,
            dt_rank: r,
            d_conv: k,
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
    /// Depthwise conv weight `[d_inner, d_conv]` (PyTorch `[d_inner, 1, d_conv]`).
    pub conv_weight: Param<Tensor<B, 2>>,
    /// Conv bias `[d_inner]`.
    pub conv_bias: Param<Tensor<B, 1>>,
    /// `[d_inner, dt_rank + 2N]`, no bias (selective only).
    pub x_proj: Option<Linear<B>>,
    /// `[dt_rank, d_inner]` with bias (selective only).
    pub dt_proj: Option<Linear<B>>,
    /// LTI only: Δ before softplus `[d_inner]`.
    pub lti_dt: Option<Param<Tensor<B, 1>>>,
    /// LTI only: B `[N]`.
    pub lti_b: Option<Param<Tensor<B, 1>>>,
    /// LTI only: C `[N]`.
    pub lti_c: Option<Param<Tensor<B, 1>>>,
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
        // silu(depthwise causal conv(xs)): [batch, L, d_inner]
        let xs = causal_conv_silu(xs, self.conv_weight.val(), self.conv_bias.val());
        let (delta_raw, b, c) = match (&self.x_proj, &self.dt_proj) {
            (Some(x_proj), Some(dt_proj)) => {
                // x_proj likewise split by output columns: Δ (low rank), B, C.
                let w = x_proj.weight.val(); // [d_inner, dt_rank + 2N]
                let dt = linear(xs.clone(), w.clone().narrow(1, 0, r), None); // [batch, L, dt_rank]
                let b = linear(xs.clone(), w.clone().narrow(1, r, n), None); // [batch, L, N]
                let c = linear(xs.clone(), w.narrow(1, r + n, n), None); // [batch, L, N]
                (dt_proj.forward(dt), b, c) // Δ before softplus: [batch, L, d_inner]
            }
            _ => {
                let dt = self.lti_dt.as_ref().expect("LTI Δ").val();
                let b = self.lti_b.as_ref().expect("LTI B").val();
                let c = self.lti_c.as_ref().expect("LTI C").val();
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
        let (x_proj, dt_proj) = (m.x_proj.as_ref()?, m.dt_proj.as_ref()?);
        if m.in_proj.bias.is_some() || x_proj.bias.is_some() || m.out_proj.bias.is_some() {
            return None;
        }
        Some(MambaBlockParams {
            state: BlockState::default(),
            norm: self.norm.gamma.val(),
            norm_eps: self.norm.epsilon,
            in_proj: m.in_proj.weight.val(),
            conv_w: m.conv_weight.val(),
            conv_b: m.conv_bias.val(),
            x_proj: x_proj.weight.val(),
            dt_w: dt_proj.weight.val(),
            dt_b: dt_proj.bias.as_ref()?.val(),
            a_log: m.a_log.val(),
            d: m.d.val(),
            out_proj: m.out_proj.weight.val(),
        })
    }
}
