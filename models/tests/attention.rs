//! The fused causal attention (`fused::causal_attention`, used by the attention block on the
//! CPU backends) against the block's composed tensor ops: output and the gradients of the
//! input and of both projections, on both CPU backends, at lengths of 1, odd, 64 and 77, with
//! and without RoPE, and over several tiles of the kernel; and at L = 4,096, where the composed path holds the full score matrix.
use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use labbook_models::fused::ScanBackend;
use labbook_models::model::{AttentionBlock, AttentionConfig, AttnBias, AttnSoftmax};

mod common;
use common::rel_err;

/// Relative errors of (output, dx, d qkv weight, d out weight), fused vs composed.
fn compare<B>(batch: usize, len: usize, d: usize, heads: usize, rope: bool) -> [f64; 4]
where
    B: AutodiffBackend + ScanBackend,
{
    let (errs, _) = compare_variant::<B>(
        batch,
        len,
        d,
        heads,
        rope,
        (AttnSoftmax::Softmax, AttnBias::None),
    );
    errs
}

/// [`compare`] for an attention variant, plus the relative errors of its parameters'
/// gradients (ssmax's scale, the learned bias table) where it has them.
fn compare_variant<B>(
    batch: usize,
    len: usize,
    d: usize,
    heads: usize,
    rope: bool,
    (softmax, bias): (AttnSoftmax, AttnBias),
) -> ([f64; 4], Vec<f64>)
where
    B: AutodiffBackend + ScanBackend,
{
    let device = Default::default();
    B::seed(&device, (len * 31 + d + rope as usize) as u64);
    let mut block: AttentionBlock<B> = AttentionConfig::new(d)
        .with_n_heads(heads)
        .with_rope(rope)
        .with_softmax(softmax)
        .with_bias(bias)
        .init(&device);
    // Non-trivial parameters, so that a wrong index or scale shows.
    if let Some(t) = &block.rel_bias {
        let values = Tensor::<B, 2>::random(t.dims(), Distribution::Normal(0.0, 1.0), &device);
        block.rel_bias = Some(burn::module::Param::from_tensor(values));
    }
    if let Some(s) = &block.ssmax_scale {
        let values = Tensor::<B, 1>::random(s.dims(), Distribution::Uniform(0.2, 0.6), &device);
        block.ssmax_scale = Some(burn::module::Param::from_tensor(values));
    }
    let x = Tensor::<B, 3>::random([batch, len, d], Distribution::Normal(0.0, 1.0), &device);
    let r = Tensor::<B, 3>::random([batch, len, d], Distribution::Normal(0.0, 1.0), &device);
    let run = |fused: bool| {
        let x = x.clone().require_grad();
        let y = if fused {
            block.attention(x.clone())
        } else {
            block.attention_composed(x.clone())
        };
        let grads = (y.clone() * r.clone()).sum().backward();
        let mut params = Vec::new();
        if let Some(s) = &block.ssmax_scale {
            params.push(common::host(s.val().grad(&grads).unwrap()));
        }
        if let Some(t) = &block.rel_bias {
            params.push(common::host(t.val().grad(&grads).unwrap()));
        }
        (
            y.inner(),
            x.grad(&grads).unwrap(),
            block.qkv.weight.val().grad(&grads).unwrap(),
            block.out.weight.val().grad(&grads).unwrap(),
            params,
        )
    };
    let (f, c) = (run(true), run(false));
    let params =
        f.4.iter()
            .zip(&c.4)
            .map(|(a, b)| common::rel_err_of(a, b))
            .collect();
    (
        [
            rel_err(f.0, c.0),
            rel_err(f.1, c.1),
            rel_err(f.2, c.2),
            rel_err(f.3, c.3),
        ],
        params,
    )
}

/// Every `attn_softmax` × `attn_bias` on the fused kernel against the composed reference, on
/// both CPU backends, over one and several tiles: output, input and weight gradients, and
/// the variant's own parameters' gradients.
fn check_variants<B: AutodiffBackend + ScanBackend>(name: &str) {
    let softmaxes = [
        AttnSoftmax::Softmax,
        AttnSoftmax::Softmax1,
        AttnSoftmax::Ssmax,
        AttnSoftmax::Sigmoid,
    ];
    let biases = [AttnBias::None, AttnBias::Alibi, AttnBias::Learned];
    for softmax in softmaxes {
        for bias in biases {
            for (batch, len, rope) in [(2, 9, true), (1, 150, false)] {
                let (errs, params) = compare_variant::<B>(batch, len, 16, 2, rope, (softmax, bias));
                let want_params =
                    (softmax == AttnSoftmax::Ssmax) as usize + (bias == AttnBias::Learned) as usize;
                assert_eq!(
                    params.len(),
                    want_params,
                    "{softmax:?} {bias:?}: parameter grads"
                );
                // A parameter's gradient sums many terms of both signs per head (a bucket,
                // or every score), so its rounding is larger; a broken kernel is off by O(1).
                let names = [
                    "output",
                    "dx",
                    "d qkv.weight",
                    "d out.weight",
                    "d param",
                    "d param",
                ];
                let limits = [3e-5, 3e-5, 3e-5, 3e-5, 2e-4, 2e-4];
                for ((what, e), limit) in names.iter().zip(errs.iter().chain(&params)).zip(limits) {
                    assert!(
                        *e < limit,
                        "{name} {softmax:?} {bias:?} L {len}: {what} rel err {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn attention_variants_match_the_composed_block_on_ndarray() {
    let _serial = common::serial();
    check_variants::<Autodiff<NdArray>>("ndarray");
}

#[test]
fn attention_variants_match_the_composed_block_on_flex() {
    let _serial = common::serial();
    check_variants::<Autodiff<Flex>>("flex");
}

fn check<B: AutodiffBackend + ScanBackend>(name: &str) {
    // The fused kernel works in 64 × 64 tiles: one partial tile, exactly one, several with
    // and without a remainder.
    for (batch, len, d, heads) in [
        (2, 1, 16, 2),
        (2, 5, 16, 2),
        (2, 64, 32, 4),
        (1, 77, 24, 3),
        (1, 128, 16, 2),
        (1, 200, 16, 1),
    ] {
        for rope in [false, true] {
            let errs = compare::<B>(batch, len, d, heads, rope);
            for (what, e) in ["output", "dx", "d qkv.weight", "d out.weight"]
                .iter()
                .zip(errs)
            {
                assert!(
                    e < 3e-5,
                    "{name} batch {batch} L {len} d {d} heads {heads} rope {rope}: {what} rel err {e}"
                );
            }
        }
    }
}

#[test]
fn fused_attention_matches_the_composed_block_on_ndarray() {
    let _serial = common::serial();
    check::<Autodiff<NdArray>>("ndarray");
}

#[test]
fn fused_attention_matches_the_composed_block_on_flex() {
    let _serial = common::serial();
    check::<Autodiff<Flex>>("flex");
}

/// At L = 4,096 a row's softmax runs over thousands of keys: the fused row walk (exact max
/// and sum in f32) against the composed `[1, 1, L, L]` softmax.
#[test]
fn long_sequences_match_the_composed_softmax() {
    let _serial = common::serial();
    let errs = compare::<Autodiff<NdArray>>(1, 4096, 8, 1, true);
    for (what, e) in ["output", "dx", "d qkv.weight", "d out.weight"]
        .iter()
        .zip(errs)
    {
        assert!(e < 1e-4, "L 4096: {what} rel err {e}");
    }
}

/// The projections' linear host op (`fused::linear`, and `fused::linear_gelu` for the MLP's
/// first layer) against burn's `Linear`: output and the gradients of the input, weight and
/// bias, with and without bias, at row counts below, at
/// and above the kernels' blocks.
fn linear_errors<B: AutodiffBackend + ScanBackend>() -> f64 {
    use burn::nn::LinearConfig;
    let device = Default::default();
    let mut worst = 0.0f64;
    for (rows, d_in, d_out, bias) in [(1, 3, 5, true), (77, 24, 72, false), (1100, 40, 17, true)] {
        B::seed(&device, (rows + d_in) as u64);
        let layer = LinearConfig::new(d_in, d_out)
            .with_bias(bias)
            .init::<B>(&device);
        let x = Tensor::<B, 3>::random([1, rows, d_in], Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<B, 3>::random([1, rows, d_out], Distribution::Normal(0.0, 1.0), &device);
        // (fused, with GELU): the host op against burn's layer (then the GELU host op, whose
        // derivative is checked against the exact one below).
        let run = |(fused, gelu): (bool, bool)| {
            use labbook_models::fused::{gelu as host_gelu, linear, linear_gelu};
            let x = x.clone().require_grad();
            let y = match (fused, gelu) {
                (true, false) => linear(&layer, x.clone()),
                (true, true) => linear_gelu(&layer, x.clone()),
                (false, false) => layer.forward(x.clone()),
                (false, true) => host_gelu(layer.forward(x.clone())),
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            let db = layer.bias.as_ref().map(|b| b.val().grad(&grads).unwrap());
            (
                y.inner(),
                x.grad(&grads).unwrap(),
                layer.weight.val().grad(&grads).unwrap(),
                db,
            )
        };
        for gelu in [false, true] {
            let (f, c) = (run((true, gelu)), run((false, gelu)));
            let mut errs = vec![rel_err(f.0, c.0), rel_err(f.1, c.1), rel_err(f.2, c.2)];
            if let (Some(a), Some(b)) = (f.3, c.3) {
                errs.push(rel_err(a, b));
            }
            for (what, e) in ["y", "dx", "dW", "db"].iter().zip(errs) {
                assert!(
                    e < 1e-5,
                    "rows {rows} {d_in}→{d_out} bias {bias} gelu {gelu}: {what} rel err {e}"
                );
                worst = worst.max(e);
            }
        }
    }
    worst
}

#[test]
fn linear_matches_burns_layer_on_both_backends() {
    let _serial = common::serial();
    let worst = [
        linear_errors::<Autodiff<NdArray>>(),
        linear_errors::<Autodiff<Flex>>(),
    ];
    assert!(worst.iter().all(|e| e.is_finite()), "errors {worst:?}");
}

/// The MLP's GELU host op: values against burn's `gelu` (the erf form), the gradient
/// against the exact derivative Φ(x) + x·φ(x) in f64 — not against burn's backward, which
/// is the derivative of the tanh approximation (off by up to ~5e-4 relative).
fn gelu_errors<B: AutodiffBackend + ScanBackend>() -> (f64, f64) {
    let device = Default::default();
    B::seed(&device, 11);
    let x = Tensor::<B, 3>::random([3, 50, 40], Distribution::Normal(0.0, 3.0), &device);
    let r = Tensor::<B, 3>::random([3, 50, 40], Distribution::Normal(0.0, 1.0), &device);
    let xg = x.clone().require_grad();
    let y = labbook_models::fused::gelu(xg.clone());
    let grads = (y.clone() * r.clone()).sum().backward();
    let dx = xg.grad(&grads).unwrap();
    let reference = burn::tensor::activation::gelu(x.clone().inner());
    let (xs, rs) = (common::host(x.inner()), common::host(r.inner()));
    let exact: Vec<f64> = xs
        .iter()
        .zip(&rs)
        .map(|(&x, &r)| {
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            r * (cdf + x * pdf)
        })
        .collect();
    (
        rel_err(y.inner(), reference),
        common::rel_err_of(&common::host(dx), &exact),
    )
}

#[test]
fn gelu_matches_the_exact_function_and_derivative_on_both_backends() {
    let _serial = common::serial();
    for (name, (y, dx)) in [
        ("ndarray", gelu_errors::<Autodiff<NdArray>>()),
        ("flex", gelu_errors::<Autodiff<Flex>>()),
    ] {
        assert!(
            y < 1e-6 && dx < 1e-6,
            "{name}: gelu rel err {y}, gradient {dx}"
        );
    }
}

/// The device path (burn's `attention` op, causal; a flash kernel on CubeCL backends when
/// evaluating) computes what the composed reference does: checked here through burn's CPU
/// fallback, with RoPE, so the head split, the causal flag and the default scale are right.
#[test]
fn the_device_path_matches_the_composed_block() {
    let _serial = common::serial();
    type B = Autodiff<NdArray>;
    let device = Default::default();
    for rope in [false, true] {
        let block: AttentionBlock<B> = AttentionConfig::new(24)
            .with_n_heads(3)
            .with_rope(rope)
            .init(&device);
        let x = Tensor::<B, 3>::random([2, 19, 24], Distribution::Normal(0.0, 1.0), &device);
        let e = rel_err(
            block.attention_device(x.clone()),
            block.attention_composed(x),
        );
        assert!(e < 1e-5, "rope {rope}: rel err {e}");
    }
}

/// On CUDA, evaluation (no autodiff) runs burn's flash-attention kernel: against the composed
/// reference at a length where the kernel tiles. Run by `scripts/cuda-check.sh` (step 3).
#[cfg(feature = "cuda")]
#[test]
fn device_attention_on_cuda_matches_the_composed_block() {
    let _serial = common::serial();
    type B = burn::backend::Cuda;
    let device = Default::default();
    for (len, rope) in [(1024, true), (77, false)] {
        let block: AttentionBlock<B> = AttentionConfig::new(64)
            .with_n_heads(4)
            .with_rope(rope)
            .init(&device);
        let x = Tensor::<B, 3>::random([2, len, 64], Distribution::Normal(0.0, 1.0), &device);
        let e = rel_err(
            block.attention_device(x.clone()),
            block.attention_composed(x),
        );
        assert!(e < 1e-3, "L {len} rope {rope}: rel err {e}");
    }
}
