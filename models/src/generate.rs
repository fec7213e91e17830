//! Token-by-token generation on the host (`labbook sample`).
//!
//! Mamba layers run in their recurrent form: each keeps its conv window (the last
//! `d_conv − 1` inputs) and its state `h` `[d_inner, N]`, so a token costs the same at
//! position 10 as at 10,000. Attention layers keep a KV cache and attend over it. The weights
//! are copied out of the model once; a step is plain loops over them (one sequence, small
//! matrices: tensor ops would be all overhead). `Generator::step`'s logits equal the full
//! forward's at every position (tested).
use burn::tensor::backend::Backend;

use crate::fused::host_values as host;
use crate::fused::{AttnSoftmax, HeadScores, Tables, Variant};
use crate::model::{Block, Lm, Selection};
use crate::tasks::Rng;

/// `out[j] = Σ_i x[i] · w[i, j] (+ b[j])` for a burn `[in, out]` weight.
fn matvec(x: &[f32], w: &[f32], outs: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = bias.map_or_else(|| vec![0.0; outs], <[f32]>::to_vec);
    for (i, &xi) in x.iter().enumerate() {
        let row = &w[i * outs..(i + 1) * outs];
        for (o, &wij) in out.iter_mut().zip(row) {
            *o += xi * wij;
        }
    }
    out
}

fn rms_norm(x: &[f32], gamma: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(gamma).map(|(v, g)| v * r * g).collect()
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

fn softplus(v: f32) -> f32 {
    v.max(0.0) + (-v.abs()).exp().ln_1p()
}

fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + libm::erff(v / std::f32::consts::SQRT_2))
}

struct Norm {
    gamma: Vec<f32>,
    eps: f32,
}

struct Linear {
    w: Vec<f32>,
    b: Option<Vec<f32>>,
    outs: usize,
}

impl Linear {
    fn of<B: Backend>(l: &burn::nn::Linear<B>) -> Linear {
        let w = l.weight.val();
        Linear {
            outs: w.dims()[1],
            w: host(w),
            b: l.bias.as_ref().map(|b| host(b.val())),
        }
    }

    fn apply(&self, x: &[f32]) -> Vec<f32> {
        matvec(x, &self.w, self.outs, self.b.as_deref())
    }
}

/// A depthwise causal conv stepped one input at a time: the last `k − 1` inputs are kept.
struct CausalConv {
    /// `[channels, k]`.
    w: Vec<f32>,
    b: Vec<f32>,
    k: usize,
    /// Distance between the taps.
    dil: usize,
    /// The last `(k − 1)·dil` inputs, oldest first, `[(k − 1)·dil, channels]`.
    window: Vec<f32>,
}

impl CausalConv {
    fn new(w: Vec<f32>, b: Vec<f32>, dil: usize) -> CausalConv {
        let ch = b.len();
        let k = w.len() / ch.max(1);
        CausalConv {
            w,
            b,
            k,
            dil,
            window: vec![0.0; (k - 1) * dil * ch],
        }
    }

    /// The conv's output for input `x` (no activation).
    fn step(&mut self, x: &[f32]) -> Vec<f32> {
        let (ch, k, dil) = (self.b.len(), self.k, self.dil);
        let mut u = self.b.clone();
        for (c, uc) in u.iter_mut().enumerate() {
            // Tap j reads the input (K − 1 − j)·dil steps back: window row j·dil.
            for j in 0..k - 1 {
                *uc += self.w[c * k + j] * self.window[j * dil * ch + c];
            }
            *uc += self.w[c * k + k - 1] * x[c];
        }
        if !self.window.is_empty() {
            self.window.drain(..ch);
            self.window.extend_from_slice(x);
        }
        u
    }
}

enum Dbc {
    Selective {
        x_proj: Linear,
        dt_proj: Linear,
    },
    Lti {
        dt: Vec<f32>,
        b: Vec<f32>,
        c: Vec<f32>,
    },
}

struct MambaLayer {
    norm: Norm,
    in_proj: Linear,
    conv: CausalConv,
    /// The conv over `[B | C]` (`conv_bc`), followed by SiLU.
    bc_conv: Option<CausalConv>,
    dbc: Dbc,
    a: Vec<f32>,
    d: Vec<f32>,
    out_proj: Linear,
    di: usize,
    n: usize,
    rank: usize,
    h: Vec<f32>,
}

impl MambaLayer {
    fn step(&mut self, x: &[f32]) -> Vec<f32> {
        let (di, n) = (self.di, self.n);
        let xn = rms_norm(x, &self.norm.gamma, self.norm.eps);
        let xz = self.in_proj.apply(&xn); // [2·d_inner]
        let (xs, z) = xz.split_at(di);
        // Depthwise causal conv over the window and this input, then SiLU.
        let u: Vec<f32> = self.conv.step(xs).into_iter().map(silu).collect();
        let (delta, b, c) = match &self.dbc {
            Dbc::Selective { x_proj, dt_proj } => {
                let p = x_proj.apply(&u); // [rank + 2N]
                let delta = dt_proj.apply(&p[..self.rank]);
                let bc = match &mut self.bc_conv {
                    Some(conv) => conv.step(&p[self.rank..]).into_iter().map(silu).collect(),
                    None => p[self.rank..].to_vec(),
                };
                (delta, bc[..n].to_vec(), bc[n..].to_vec())
            }
            Dbc::Lti { dt, b, c } => (dt.clone(), b.clone(), c.clone()),
        };
        let mut y = vec![0.0f32; di];
        for ch in 0..di {
            let dt = softplus(delta[ch]);
            let h = &mut self.h[ch * n..(ch + 1) * n];
            let mut acc = 0.0;
            for s in 0..n {
                h[s] = (dt * self.a[ch * n + s]).exp() * h[s] + dt * b[s] * u[ch];
                acc += c[s] * h[s];
            }
            y[ch] = (acc + self.d[ch] * u[ch]) * silu(z[ch]);
        }
        let out = self.out_proj.apply(&y);
        x.iter().zip(out).map(|(a, b)| a + b).collect()
    }
}

struct AttentionLayer {
    norm1: Norm,
    qkv: Linear,
    out: Linear,
    mlp: Mlp,
    heads: usize,
    rope: bool,
    variant: Variant,
    /// ssmax's `s_h` per head (empty otherwise).
    ssmax_scale: Vec<f32>,
    /// The learned bias `[heads, BIAS_BUCKETS]` (empty otherwise).
    rel_bias: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
}

impl AttentionLayer {
    /// The newest row's weights over its `n` scores (the attention variant's, as the fused
    /// kernel computes them).
    fn weights(&self, sc: &HeadScores, mut scores: Vec<f32>) -> Vec<f32> {
        let n = scores.len();
        let (ln_n, factor) = (sc.ln_n[n - 1], sc.row_factor(n - 1));
        for (t, z) in scores.iter_mut().enumerate() {
            *z = (*z + sc.bias(n - 1 - t)) * factor;
        }
        if self.variant.softmax == AttnSoftmax::Sigmoid {
            return scores
                .iter()
                .map(|z| 1.0 / (1.0 + (ln_n - z).exp()))
                .collect();
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let mut total: f32 = e.iter().sum();
        if self.variant.softmax == AttnSoftmax::Softmax1 {
            total += (-max).exp();
        }
        e.iter().map(|w| w / total).collect()
    }

    fn step(&mut self, x: &[f32], pos: usize) -> Vec<f32> {
        let d = x.len();
        let dh = d / self.heads;
        let xn = rms_norm(x, &self.norm1.gamma, self.norm1.eps);
        let qkv = self.qkv.apply(&xn);
        let (mut q, mut k) = (qkv[..d].to_vec(), qkv[d..2 * d].to_vec());
        if self.rope {
            for head in 0..self.heads {
                rotate(&mut q[head * dh..(head + 1) * dh], pos);
                rotate(&mut k[head * dh..(head + 1) * dh], pos);
            }
        }
        self.keys.extend_from_slice(&k);
        self.values.extend_from_slice(&qkv[2 * d..]);
        let len = pos + 1;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut o = vec![0.0f32; d];
        let tables = Tables::new(len, self.variant);
        for head in 0..self.heads {
            let qh = &q[head * dh..(head + 1) * dh];
            let scores: Vec<f32> = (0..len)
                .map(|t| {
                    let kt = &self.keys[t * d + head * dh..t * d + (head + 1) * dh];
                    qh.iter().zip(kt).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            let sc = tables.head(
                self.variant,
                head,
                self.heads,
                &self.ssmax_scale,
                &self.rel_bias,
            );
            let weights = self.weights(&sc, scores);
            for (t, w) in weights.iter().enumerate() {
                let vt = &self.values[t * d + head * dh..t * d + (head + 1) * dh];
                for (oi, vi) in o[head * dh..(head + 1) * dh].iter_mut().zip(vt) {
                    *oi += w * vi;
                }
            }
        }
        let attn = self.out.apply(&o);
        let x: Vec<f32> = x.iter().zip(attn).map(|(a, b)| a + b).collect();
        self.mlp.residual(x)
    }
}

/// The MLP half of an attention or conv mixer block.
struct Mlp {
    norm: Norm,
    fc1: Linear,
    fc2: Linear,
    conv: Option<CausalConv>,
}

impl Mlp {
    /// `x + fc2(conv?(gelu(fc1(RMSNorm(x)))))`.
    fn residual(&mut self, x: Vec<f32>) -> Vec<f32> {
        let mut h: Vec<f32> = self
            .fc1
            .apply(&rms_norm(&x, &self.norm.gamma, self.norm.eps))
            .into_iter()
            .map(gelu)
            .collect();
        if let Some(conv) = &mut self.conv {
            h = conv.step(&h);
        }
        let out = self.fc2.apply(&h);
        x.iter().zip(out).map(|(a, b)| a + b).collect()
    }
}

/// A `C` layer: gated conv mixer then the MLP.
struct ConvLayer {
    norm1: Norm,
    in_proj: Linear,
    conv: CausalConv,
    out_proj: Linear,
    mlp: Mlp,
}

impl ConvLayer {
    fn step(&mut self, x: &[f32]) -> Vec<f32> {
        let d = x.len();
        let ug = self
            .in_proj
            .apply(&rms_norm(x, &self.norm1.gamma, self.norm1.eps));
        let (u, g) = ug.split_at(d);
        let h: Vec<f32> = self
            .conv
            .step(u)
            .into_iter()
            .zip(g)
            .map(|(c, &g)| silu(c) * silu(g))
            .collect();
        let out = self.out_proj.apply(&h);
        let x: Vec<f32> = x.iter().zip(out).map(|(a, b)| a + b).collect();
        self.mlp.residual(x)
    }
}

/// Rotary embedding of one head at position `pos` (rotate-half, base 10000), as the
/// attention block's `apply_rope`.
fn rotate(x: &mut [f32], pos: usize) {
    let dh = x.len();
    let half = dh / 2;
    for i in 0..half {
        let theta = (pos as f64) * 10000f64.powf(-2.0 * i as f64 / dh as f64);
        let (s, c) = (theta.sin() as f32, theta.cos() as f32);
        let (x1, x2) = (x[i], x[i + half]);
        x[i] = x1 * c - x2 * s;
        x[i + half] = x1 * s + x2 * c;
    }
}

enum Layer {
    Mamba(MambaLayer),
    Attention(AttentionLayer),
    Conv(ConvLayer),
}

/// A model ready to generate one token at a time.
pub struct Generator {
    embedding: Vec<f32>,
    d: usize,
    absolute: bool,
    layers: Vec<Layer>,
    norm_f: Norm,
    head: Linear,
    pos: usize,
}

impl Generator {
    /// Copies `lm`'s weights out; the state starts empty (position 0).
    pub fn new<B: Backend>(lm: &Lm<B>) -> Generator {
        let norm = |n: &burn::nn::RmsNorm<B>| Norm {
            gamma: host(n.gamma.val()),
            eps: n.epsilon as f32,
        };
        let emb = lm.embedding.weight.val();
        let d = emb.dims()[1];
        let layers = lm
            .blocks
            .iter()
            .map(|b| match b {
                Block::Mamba(m) => {
                    let mx = &m.mixer;
                    let di = mx.d_inner();
                    let (conv_w, conv_b) = mx.conv_or_identity();
                    let n = mx.a_log.val().dims()[1];
                    let (dbc, rank) = match &mx.selection {
                        Selection::Selective(s) => (
                            Dbc::Selective {
                                x_proj: Linear::of(&s.x_proj),
                                dt_proj: Linear::of(&s.dt_proj),
                            },
                            s.dt_proj.weight.val().dims()[0],
                        ),
                        Selection::Lti(l) => (
                            Dbc::Lti {
                                dt: host(l.lti_dt.val()),
                                b: host(l.lti_b.val()),
                                c: host(l.lti_c.val()),
                            },
                            0,
                        ),
                    };
                    Layer::Mamba(MambaLayer {
                        norm: norm(&m.norm),
                        in_proj: Linear::of(&mx.in_proj),
                        conv: CausalConv::new(host(conv_w), host(conv_b), mx.conv_dilation()),
                        bc_conv: mx
                            .bc_conv()
                            .map(|(w, b)| CausalConv::new(host(w), host(b), mx.conv_dilation())),
                        dbc,
                        a: host(mx.a_log.val().exp().neg()),
                        d: host(mx.d.val()),
                        out_proj: Linear::of(&mx.out_proj),
                        di,
                        n,
                        rank,
                        h: vec![0.0; di * n],
                    })
                }
                Block::Attention(a) => Layer::Attention(AttentionLayer {
                    norm1: norm(&a.norm1),
                    qkv: Linear::of(&a.qkv),
                    out: Linear::of(&a.out),
                    mlp: Mlp {
                        norm: norm(&a.norm2),
                        fc1: Linear::of(&a.fc1),
                        fc2: Linear::of(&a.fc2),
                        conv: match (&a.mlp_conv_weight, &a.mlp_conv_bias) {
                            (Some(w), Some(b)) => {
                                Some(CausalConv::new(host(w.val()), host(b.val()), 1))
                            }
                            _ => None,
                        },
                    },
                    heads: a.n_heads(),
                    rope: a.rope(),
                    variant: a.variant(),
                    ssmax_scale: a.ssmax_scale.as_ref().map_or(Vec::new(), |p| host(p.val())),
                    rel_bias: a.rel_bias.as_ref().map_or(Vec::new(), |p| host(p.val())),
                    keys: Vec::new(),
                    values: Vec::new(),
                }),
                Block::Conv(c) => Layer::Conv(ConvLayer {
                    norm1: norm(&c.norm1),
                    in_proj: Linear::of(&c.in_proj),
                    conv: CausalConv::new(host(c.conv_weight.val()), host(c.conv_bias.val()), 1),
                    out_proj: Linear::of(&c.out_proj),
                    mlp: Mlp {
                        norm: norm(&c.norm2),
                        fc1: Linear::of(&c.fc1),
                        fc2: Linear::of(&c.fc2),
                        conv: None,
                    },
                }),
            })
            .collect();
        Generator {
            embedding: host(emb),
            d,
            absolute: lm.absolute_positions(),
            layers,
            norm_f: norm(&lm.norm_f),
            head: Linear::of(&lm.head),
            pos: 0,
        }
    }

    /// Feeds `token` at the next position; the logits for the position after it.
    pub fn step(&mut self, token: usize) -> Vec<f32> {
        let d = self.d;
        let mut x = self.embedding[token * d..(token + 1) * d].to_vec();
        if self.absolute {
            for (i, xi) in x.iter_mut().enumerate() {
                let freq = 10000f64.powf(-((i / 2 * 2) as f64) / d as f64);
                let angle = self.pos as f64 * freq;
                *xi += if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
            }
        }
        for layer in &mut self.layers {
            x = match layer {
                Layer::Mamba(m) => m.step(&x),
                Layer::Attention(a) => a.step(&x, self.pos),
                Layer::Conv(c) => c.step(&x),
            };
        }
        self.pos += 1;
        self.head
            .apply(&rms_norm(&x, &self.norm_f.gamma, self.norm_f.eps))
    }

    /// Tokens generated so far plus the prompt.
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// How the next token is drawn from the logits.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
}

/// Draws a token from `logits`.
pub fn draw(logits: &[f32], s: Sampling, rng: &mut Rng) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    };
    if s.temperature <= 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if s.top_k > 0 {
        order.truncate(s.top_k);
    }
    let max = logits[order[0]];
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (((logits[i] - max) / s.temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut r = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (&i, w) in order.iter().zip(&weights) {
        if r < *w {
            return i;
        }
        r -= w;
    }
    order[order.len() - 1]
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::tensor::{Int, Tensor, TensorData};

    use burn::module::Param;

    use super::*;
    use crate::fused::AttnBias;
    use crate::model::{LmConfig, MambaConv, Positional};

    type B = NdArray;

    /// A parameter filled with a fixed pattern in about [-1, 1]: not its init, so that a
    /// wrong index or window shows.
    fn patterned(
        dims: [usize; 2],
        step: usize,
        device: &burn::backend::ndarray::NdArrayDevice,
    ) -> Param<Tensor<B, 2>> {
        let v: Vec<f32> = (0..dims[0] * dims[1])
            .map(|i| ((i * step % 11) as f32 - 5.0) / 5.0)
            .collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(v, dims), device))
    }

    /// The generator's logits, step by step, against the full forward of the model that
    /// `configure` makes from a small config for `pattern`.
    fn check_with(pattern: &str, configure: impl FnOnce(LmConfig) -> LmConfig) {
        let device = Default::default();
        let config = LmConfig::new(13, 16, pattern.to_string())
            .with_d_state(4)
            .with_n_heads(2);
        let mut lm: Lm<B> = configure(config).init(&device);
        for block in lm.blocks.iter_mut() {
            if let Block::Attention(a) = block {
                if let Some(t) = &a.rel_bias {
                    a.rel_bias = Some(patterned(t.dims(), 7, &device));
                }
                if let Some(w) = &a.mlp_conv_weight {
                    a.mlp_conv_weight = Some(patterned(w.dims(), 5, &device));
                }
            }
        }
        let tokens: Vec<i64> = (0..24).map(|i| (i * 5 + 3) % 13).collect();
        let x = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens.clone(), [1, 24]), &device);
        let full = host(lm.forward(x)); // [1, 24, 13]
        let mut g = Generator::new(&lm);
        for (t, &tok) in tokens.iter().enumerate() {
            let step = g.step(tok as usize);
            let want = &full[t * 13..(t + 1) * 13];
            let err = step
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-4, "{pattern} position {t}: max |Δlogit| = {err}");
        }
    }

    fn check(pattern: &str, positional: Positional, lti: bool) {
        check_with(pattern, |c| c.with_positional(positional).with_lti(lti));
    }

    #[test]
    fn stepwise_logits_match_the_full_forward_for_every_attention_variant() {
        for softmax in [
            AttnSoftmax::Softmax1,
            AttnSoftmax::Ssmax,
            AttnSoftmax::Sigmoid,
            AttnSoftmax::Softmax,
        ] {
            for bias in [AttnBias::None, AttnBias::Alibi, AttnBias::Learned] {
                check_with("MA", |c| {
                    c.with_positional(Positional::Rope)
                        .with_attn_softmax(softmax)
                        .with_attn_bias(bias)
                });
            }
        }
    }

    #[test]
    fn stepwise_logits_match_the_full_forward_with_conv_layers() {
        check_with("CMA", |c| c.with_mlp_conv(3));
        check_with("ACC", |c| {
            c.with_positional(Positional::Rope).with_mlp_conv(2)
        });
    }

    #[test]
    fn stepwise_logits_match_the_full_forward_with_a_dilated_mamba_conv() {
        check_with("MM", |c| c.with_conv_dilation(3));
    }

    #[test]
    fn stepwise_logits_match_the_full_forward_without_a_conv_and_with_a_b_c_conv() {
        check_with("MM", |c| c.with_conv_kind(MambaConv::None));
        check_with("MM", |c| c.with_conv_bc(true).with_conv_dilation(2));
        check_with("MA", |c| {
            c.with_conv_kind(MambaConv::None).with_conv_bc(true)
        });
    }

    #[test]
    fn stepwise_logits_match_the_full_forward() {
        check("MAM", Positional::Rope, false);
        check("AM", Positional::Absolute, false);
        check("MM", Positional::None, true);
    }

    #[test]
    fn greedy_takes_the_argmax_and_top_1_is_greedy_at_any_temperature() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut rng = Rng::new(0, 0);
        let greedy = Sampling {
            temperature: 0.0,
            top_k: 0,
        };
        assert_eq!(draw(&logits, greedy, &mut rng), 1);
        let top1 = Sampling {
            temperature: 5.0,
            top_k: 1,
        };
        assert!((0..50).all(|_| draw(&logits, top1, &mut rng) == 1));
        let top2 = Sampling {
            temperature: 1.0,
            top_k: 2,
        };
        let drawn: Vec<usize> = (0..200).map(|_| draw(&logits, top2, &mut rng)).collect();
        assert!(drawn.iter().all(|&t| t == 1 || t == 3));
        assert!(drawn.contains(&1) && drawn.contains(&3));
    }
}
