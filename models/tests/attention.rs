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

/// Causal softmax attention written out with tensor ops: what `device_attention` must equal.
fn plain_attention<B: burn::tensor::backend::Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [_, _, len, dh] = q.dims();
    let device = q.device();
    // `tril_mask` is true outside the lower triangle: the keys after each query.
    let above = Tensor::<B, 2, burn::tensor::Bool>::tril_mask([len, len], 0, &device);
    let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt();
    let scores = scores.mask_fill(above.unsqueeze::<4>(), -1e30);
    burn::tensor::activation::softmax(scores, 3).matmul(v)
}

/// Host values of `q`, `k`, `v` and a weighting `r` `[batch, H, L, dh]`, drawn on NdArray.
fn qkvr(seed: u64, shape: [usize; 4]) -> [Vec<f32>; 4] {
    let device = Default::default();
    <NdArray as burn::tensor::backend::Backend>::seed(&device, seed);
    std::array::from_fn(|_| {
        Tensor::<NdArray, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device)
            .into_data()
            .into_vec::<f32>()
            .unwrap()
    })
}

/// `o`, `dq`, `dk`, `dv` of `sum(o ⊙ r)` on `B`, through `device_attention` or, when
/// `reference`, [`plain_attention`]; the inputs cast to `dtype` first.
fn attention_grads<B: AutodiffBackend + ScanBackend>(
    data: &[Vec<f32>; 4],
    shape: [usize; 4],
    reference: bool,
    dtype: burn::tensor::DType,
) -> [Vec<f64>; 4] {
    let device = Default::default();
    let t = |v: &Vec<f32>| {
        Tensor::<B, 4>::from_data(burn::tensor::TensorData::new(v.clone(), shape), &device)
            .cast(dtype)
    };
    let [q, k, v, r] = [t(&data[0]), t(&data[1]), t(&data[2]), t(&data[3])];
    let [q, k, v] = [q, k, v].map(|x| x.require_grad());
    let o = if reference {
        plain_attention(q.clone(), k.clone(), v.clone())
    } else {
        labbook_models::fused::device_attention(q.clone(), k.clone(), v.clone())
    };
    let grads = (o.clone() * r).sum().backward();
    let g = |x: &Tensor<B, 4>| common::host(x.grad(&grads).expect("a gradient"));
    [common::host(o), g(&q), g(&k), g(&v)]
}

/// Shapes `[batch, H, L, dh]`: one row, lengths around the kernels' 64-row cubes, head sizes
/// 8 to 64, several heads; and a head of 96, past the kernels' widest (the tensor-op path).
const DEVICE_SHAPES: [[usize; 4]; 7] = [
    [1, 1, 1, 8],
    [2, 3, 7, 16],
    [1, 2, 64, 8],
    [2, 1, 65, 32],
    [1, 2, 130, 16],
    [1, 1, 200, 64],
    [1, 2, 33, 96],
];

/// `device_attention` on `B` against [`plain_attention`] on NdArray: output and the three
/// gradients, within `tol`, for inputs in `dtype` (the reference gets the same values).
fn check_device_attention<B: AutodiffBackend + ScanBackend>(
    shapes: &[[usize; 4]],
    dtype: burn::tensor::DType,
    tol: f64,
) {
    type R = Autodiff<NdArray>;
    for (n, &shape) in shapes.iter().enumerate() {
        let mut data = qkvr(300 + n as u64, shape);
        // The reference sees the values the half tensors hold.
        let round: fn(f32) -> f32 = match dtype {
            burn::tensor::DType::F32 => |x| x,
            burn::tensor::DType::F16 => |x| burn::tensor::f16::from_f32(x).to_f32(),
            burn::tensor::DType::BF16 => |x| burn::tensor::bf16::from_f32(x).to_f32(),
            other => panic!("no rounding for {other:?}"),
        };
        for v in data.iter_mut() {
            *v = v.iter().map(|&x| round(x)).collect();
        }
        let got = attention_grads::<B>(&data, shape, false, dtype);
        let want = attention_grads::<R>(&data, shape, true, burn::tensor::DType::F32);
        for (name, (g, w)) in ["o", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
            // Floored at 1: a zero reference (dq at L = 1) compares by absolute error.
            let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let diff: Vec<f64> = g.iter().zip(w).map(|(a, b)| a - b).collect();
            let e = norm(&diff) / norm(w).max(1.0);
            eprintln!("{dtype:?} {shape:?} {name}: rel err {e:.2e}");
            assert!(e < tol, "{dtype:?} {shape:?}: {name} rel err {e}");
        }
    }
}

/// The default (tensor-op) forward and backward `device_attention` records under `Autodiff`,
/// the reference the CubeCL kernels are held to, against autodiff through plain attention.
#[test]
fn device_attention_node_matches_autodiff_of_plain_attention() {
    let _serial = common::serial();
    check_device_attention::<Autodiff<NdArray>>(&DEVICE_SHAPES, burn::tensor::DType::F32, 1e-4);
}

/// The CubeCL kernels (CUDA and, without an NVIDIA GPU, wgpu on lavapipe) and the evaluation
/// path of the block, at a length where the kernels span many cubes.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn check_device_kernels<B>()
where
    B: AutodiffBackend + ScanBackend,
    B::InnerBackend: ScanBackend,
{
    let _serial = common::serial();
    check_device_attention::<B>(&DEVICE_SHAPES, burn::tensor::DType::F32, 1e-4);
    let device = Default::default();
    for (len, rope) in [(1024, true), (77, false)] {
        let block: AttentionBlock<B::InnerBackend> = AttentionConfig::new(64)
            .with_n_heads(4)
            .with_rope(rope)
            .init(&device);
        let x = Tensor::random([2, len, 64], Distribution::Normal(0.0, 1.0), &device);
        let e = rel_err(
            block.attention_device(x.clone()),
            block.attention_composed(x),
        );
        assert!(e < 1e-4, "evaluation, L {len} rope {rope}: rel err {e}");
    }
    // Training through the block (RoPE, head split, output projection): the input's and the
    // qkv weight's gradients against the composed block's, on the same backend.
    for (len, rope) in [(130, true), (65, false)] {
        let block: AttentionBlock<B> = AttentionConfig::new(48)
            .with_n_heads(3)
            .with_rope(rope)
            .init(&device);
        let x = Tensor::<B, 3>::random([2, len, 48], Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<B, 3>::random([2, len, 48], Distribution::Normal(0.0, 1.0), &device);
        let grads_of = |composed: bool| {
            let x = x.clone().require_grad();
            let y = if composed {
                block.attention_composed(x.clone())
            } else {
                block.attention_device(x.clone())
            };
            let g = (y.clone() * r.clone()).sum().backward();
            let dx = x.grad(&g).expect("dx");
            let dw = block.qkv.weight.val().grad(&g).expect("d qkv");
            (y.inner(), dx, dw)
        };
        let (y, dx, dw) = grads_of(false);
        let (y_ref, dx_ref, dw_ref) = grads_of(true);
        let errs = [rel_err(y, y_ref), rel_err(dx, dx_ref), rel_err(dw, dw_ref)];
        assert!(
            errs.iter().all(|&e| e < 1e-4),
            "training, L {len} rope {rope}: rel errs (y, dx, d qkv) {errs:?}"
        );
    }
}

/// On CUDA (`scripts/cuda-check.sh`, step 2b): the kernels, f32 and bf16 inputs (bf16 keeps
/// 8 significant bits: eight times f16's bound).
#[cfg(feature = "cuda")]
#[test]
fn device_attention_on_cuda_matches_the_composed_block() {
    type B = Autodiff<burn::backend::Cuda>;
    check_device_kernels::<B>();
    check_device_attention::<B>(&DEVICE_SHAPES, burn::tensor::DType::BF16, 8e-3);
}

#[cfg(feature = "wgpu")]
#[test]
fn device_attention_on_wgpu_matches_the_composed_block() {
    check_device_kernels::<Autodiff<burn::backend::Wgpu>>();
}

/// L = 4,096, where the online softmax runs over thousands of keys per row: the kernels against
/// plain attention (which holds the 4,096² scores) on NdArray.
#[cfg(feature = "wgpu")]
#[test]
fn device_attention_long_sequence_wgpu() {
    let _serial = common::serial();
    type B = Autodiff<burn::backend::Wgpu>;
    check_device_attention::<B>(&[[1, 1, 4096, 16]], burn::tensor::DType::F32, 1e-4);
}

/// f16 inputs (the `[train] precision` path): the kernels keep scores and sums in f32, so only
/// the rounding of each output to f16 (2⁻¹¹) remains, against the reference on the same
/// rounded inputs.
#[cfg(feature = "wgpu")]
#[test]
fn device_attention_f16_inputs_accumulate_in_f32_wgpu() {
    let _serial = common::serial();
    type B = Autodiff<burn::backend::Wgpu>;
    check_device_attention::<B>(&DEVICE_SHAPES, burn::tensor::DType::F16, 1e-3);
}
