//! The fused host ops (`gated_scan`, `causal_conv_silu`, the whole Mamba block, `rms_norm`,
//! `embedding`, `head_loss`) against their tensor-op compositions (burn's modules for the last
//! three):
//! forward and every gradient, on random shapes and seeds.
use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::Param;
use burn::nn::{EmbeddingConfig, LinearConfig, RmsNormConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use burn::tensor::{Int, TensorData};
use labbook_models::fused::{
    ScanBackend, causal_conv, causal_conv_reference, causal_conv_reference_dilated,
    causal_conv_silu, causal_conv_silu_dilated, causal_conv_silu_reference, gated_scan,
    gated_scan_reference,
};
use labbook_models::fused::{embedding, head_loss, mamba_block, rms_norm};
use labbook_models::model::{Block, Lm, LmConfig, MambaConfig, MambaConv};
use labbook_models::train::masked_loss;

mod common;
use burn::tensor::activation::silu as silu_of;
use common::rel_err;

fn leaf<B: AutodiffBackend, const D: usize>(
    shape: [usize; D],
    dist: Distribution,
    dev: &B::Device,
) -> Tensor<B, D> {
    Tensor::random(shape, dist, dev)
}

const SHAPES: [[usize; 4]; 5] = [
    [1, 1, 1, 1],
    [2, 7, 3, 4],
    [3, 13, 17, 16],
    [2, 33, 8, 3],
    [1, 64, 40, 16],
];

fn gated_matches<B: AutodiffBackend + ScanBackend>() {
    assert!(
        B::HOST_KERNELS,
        "the CPU backends run the fused host kernels"
    );
    let normal = Distribution::Normal(0.0, 1.0);
    for (seed, [bt, l, ch, n]) in SHAPES.into_iter().enumerate() {
        let dev = Default::default();
        B::seed(&dev, seed as u64 + 200);
        let u = leaf::<B, 3>([bt, l, ch], normal, &dev);
        // Δ before softplus around softplus⁻¹(0.05) with spread, so both tails are covered.
        let dr = leaf::<B, 3>([bt, l, ch], Distribution::Normal(-3.0, 2.0), &dev);
        let a = leaf::<B, 2>([ch, n], Distribution::Normal(0.0, 0.5), &dev)
            .exp()
            .neg();
        let b = leaf::<B, 3>([bt, l, n], normal, &dev);
        let c = leaf::<B, 3>([bt, l, n], normal, &dev);
        let d = leaf::<B, 1>([ch], normal, &dev);
        let z = leaf::<B, 3>([bt, l, ch], Distribution::Normal(0.0, 2.0), &dev);
        let r = leaf::<B, 3>([bt, l, ch], normal, &dev);
        let run = |fast: bool| {
            let p = [u.clone(), dr.clone(), b.clone(), c.clone(), z.clone()]
                .map(|t| t.detach().require_grad());
            let a = a.clone().detach().require_grad();
            let d = d.clone().detach().require_grad();
            let [u, dr, b, c, z] = p.clone();
            let f = if fast {
                gated_scan::<B>
            } else {
                gated_scan_reference::<B>
            };
            let y = f(u, dr, a.clone(), b, c, d.clone(), z);
            let grads = (y.clone() * r.clone()).sum().backward();
            let g3 = p.map(|t| t.grad(&grads).unwrap());
            (
                y.inner(),
                g3,
                a.grad(&grads).unwrap(),
                d.grad(&grads).unwrap(),
            )
        };
        let (f, s) = (run(true), run(false));
        let e = rel_err(f.0, s.0);
        assert!(e <= 1e-5, "seed {seed}: forward rel err {e}");
        for (name, (gf, gs)) in ["u", "delta_raw", "b", "c", "z"]
            .into_iter()
            .zip(f.1.into_iter().zip(s.1))
        {
            let e = rel_err(gf, gs);
            assert!(e <= 1e-4, "seed {seed}: d{name} rel err {e}");
        }
        let (ea, ed) = (rel_err(f.2, s.2), rel_err(f.3, s.3));
        assert!(ea <= 1e-4 && ed <= 1e-4, "seed {seed}: da {ea}, dd {ed}");
    }
}

#[test]
fn gated_scan_matches_composition_ndarray() {
    let _serial = common::serial();
    gated_matches::<Autodiff<NdArray>>();
}

#[test]
fn gated_scan_matches_composition_flex() {
    let _serial = common::serial();
    gated_matches::<Autodiff<Flex>>();
}

/// The conv host op, with SiLU (Mamba's) and without (`mlp_conv`), against its tensor-op
/// composition.
fn conv_matches<B: AutodiffBackend + ScanBackend>() {
    for (silu, dilation) in [(true, 1), (false, 1), (true, 2), (true, 3)] {
        conv_matches_with::<B>(silu, dilation);
    }
}

fn conv_matches_with<B: AutodiffBackend + ScanBackend>(silu: bool, dilation: usize) {
    let normal = Distribution::Normal(0.0, 1.0);
    for (seed, [bt, l, ch, k]) in [[1, 1, 1, 1], [2, 9, 5, 4], [3, 3, 16, 4], [2, 40, 33, 3]]
        .into_iter()
        .enumerate()
    {
        let dev = Default::default();
        B::seed(&dev, seed as u64 + 300);
        let x = leaf::<B, 3>([bt, l, ch], normal, &dev);
        let w = leaf::<B, 2>([ch, k], normal, &dev);
        let bias = leaf::<B, 1>([ch], normal, &dev);
        let r = leaf::<B, 3>([bt, l, ch], normal, &dev);
        let run = |fast: bool| {
            let (x, w, bias) = (
                x.clone().detach().require_grad(),
                w.clone().detach().require_grad(),
                bias.clone().detach().require_grad(),
            );
            let (x2, w2, b2) = (x.clone(), w.clone(), bias.clone());
            let y = match (fast, silu) {
                (true, true) if dilation > 1 => causal_conv_silu_dilated(x2, w2, b2, dilation),
                (false, true) if dilation > 1 => {
                    silu_of(causal_conv_reference_dilated(x2, w2, b2, dilation))
                }
                (true, true) => causal_conv_silu(x2, w2, b2),
                (false, true) => causal_conv_silu_reference(x2, w2, b2),
                (true, false) => causal_conv(x2, w2, b2),
                (false, false) => causal_conv_reference(x2, w2, b2),
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (
                y.inner(),
                x.grad(&grads).unwrap(),
                w.grad(&grads).unwrap(),
                bias.grad(&grads).unwrap(),
            )
        };
        let (f, s) = (run(true), run(false));
        let errs = [
            ("y", rel_err(f.0, s.0)),
            ("dx", rel_err(f.1, s.1)),
            ("dw", rel_err(f.2, s.2)),
            ("dbias", rel_err(f.3, s.3)),
        ];
        for (name, e) in errs {
            assert!(
                e <= 1e-5,
                "silu {silu} dilation {dilation} seed {seed}: {name} rel err {e}"
            );
        }
    }
}

#[test]
fn conv_silu_matches_composition_ndarray() {
    let _serial = common::serial();
    conv_matches::<Autodiff<NdArray>>();
}

#[test]
fn conv_silu_matches_composition_flex() {
    let _serial = common::serial();
    conv_matches::<Autodiff<Flex>>();
}

/// `MambaBlock::forward` (one fused host op on these backends) against
/// `MambaBlock::forward_composed` (RMSNorm, linears, conv, gated scan as separate ops):
/// output and the gradients of the input and of every weight, with each Mamba conv option.
fn block_matches<B: AutodiffBackend + ScanBackend>() {
    // [batch, L, d_model, d_state, expand, d_conv, dt_rank (0 = default), conv_dilation,
    //  conv option: 0 depthwise, 1 none, 2 depthwise + [B | C] conv, 3 [B | C] conv only]
    let shapes = [
        [1, 1, 1, 1, 1, 1, 0, 1, 0],
        [2, 7, 8, 4, 2, 4, 0, 1, 0],
        [3, 13, 16, 16, 2, 3, 3, 1, 0],
        [1, 40, 24, 5, 1, 4, 0, 1, 0],
        // More rows than one task of the parallel products takes (batch · L > 256).
        [2, 300, 8, 4, 2, 4, 0, 1, 0],
        // `conv_dilation`: taps 2 and 5 steps apart (the last reaches past a short sequence).
        [2, 19, 8, 4, 2, 4, 0, 2, 0],
        [1, 9, 8, 4, 2, 3, 0, 5, 0],
        // `conv_kind = "none"` and `conv_bc`, alone and together, dilated too.
        [2, 11, 8, 4, 2, 4, 0, 1, 1],
        [2, 13, 8, 3, 2, 4, 0, 1, 2],
        [2, 150, 8, 4, 2, 3, 0, 2, 2],
        [1, 17, 16, 5, 2, 4, 2, 1, 3],
    ];
    for (seed, [bt, l, dm, n, expand, k, rank, dil, option]) in shapes.into_iter().enumerate() {
        let dev = Default::default();
        B::seed(&dev, seed as u64 + 400);
        let conv_kind = if option % 2 == 1 {
            MambaConv::None
        } else {
            MambaConv::Depthwise
        };
        let cfg = MambaConfig::new(dm)
            .with_d_state(n)
            .with_expand(expand)
            .with_d_conv(k)
            .with_conv_dilation(dil)
            .with_conv_kind(conv_kind)
            .with_conv_bc(option >= 2)
            .with_dt_rank((rank > 0).then_some(rank));
        let mut block = cfg.init_block::<B>(&dev);
        assert_eq!(block.mixer.conv_weight.is_some(), option % 2 == 0);
        assert_eq!(block.mixer.bc_conv().is_some(), option >= 2);
        // Weights the init leaves at one, made random so their gradients are exercised.
        let normal = Distribution::Normal(0.0, 1.0);
        block.norm.gamma = Param::from_tensor(leaf::<B, 1>([dm], normal, &dev) + 1.0);
        block.mixer.d = Param::from_tensor(leaf::<B, 1>([expand * dm], normal, &dev));
        // A_log is init to the same row for every channel; make the channels differ.
        let a_log = leaf::<B, 2>([expand * dm, n], Distribution::Normal(0.5, 0.7), &dev);
        block.mixer.a_log = Param::from_tensor(a_log);
        let x = leaf::<B, 3>([bt, l, dm], normal, &dev);
        let r = leaf::<B, 3>([bt, l, dm], normal, &dev);
        let run = |fused: bool| {
            let x = x.clone().detach().require_grad();
            let y = if fused {
                // Called directly, so the test cannot pass by comparing composed to composed.
                let params = block.fused_params().expect("a selective block fuses");
                mamba_block(x.clone(), params)
            } else {
                block.forward_composed(x.clone())
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            let m = &block.mixer;
            let sel = m.selective().unwrap();
            let (xp, dtp) = (&sel.x_proj, &sel.dt_proj);
            let g1 = |t: Tensor<B, 1>| t.grad(&grads).unwrap();
            let g2 = |t: Tensor<B, 2>| t.grad(&grads).unwrap().flatten::<1>(0, 1);
            let mut named = vec![
                ("x", x.grad(&grads).unwrap().flatten::<1>(0, 2)),
                ("norm", g1(block.norm.gamma.val())),
                ("dt_bias", g1(dtp.bias.as_ref().unwrap().val())),
                ("d", g1(m.d.val())),
                ("in_proj", g2(m.in_proj.weight.val())),
                ("x_proj", g2(xp.weight.val())),
                ("dt_w", g2(dtp.weight.val())),
                ("a_log", g2(m.a_log.val())),
                ("out_proj", g2(m.out_proj.weight.val())),
            ];
            if let (Some(w), Some(b)) = (&m.conv_weight, &m.conv_bias) {
                named.push(("conv_w", g2(w.val())));
                named.push(("conv_bias", g1(b.val())));
            }
            if let Some((w, b)) = m.bc_conv() {
                named.push(("bc_conv_w", g2(w)));
                named.push(("bc_conv_bias", g1(b)));
            }
            (y.inner(), named)
        };
        let (f, s) = (run(true), run(false));
        let e = rel_err(f.0, s.0);
        assert!(e <= 1e-5, "shape {seed}: forward rel err {e}");
        for ((name, gf), (_, gs)) in f.1.into_iter().zip(s.1) {
            let e = rel_err(gf, gs);
            assert!(e <= 1e-4, "shape {seed}: d{name} rel err {e}");
        }
    }
}

#[test]
fn mamba_block_matches_composition_ndarray() {
    let _serial = common::serial();
    block_matches::<Autodiff<NdArray>>();
}

#[test]
fn mamba_block_matches_composition_flex() {
    let _serial = common::serial();
    block_matches::<Autodiff<Flex>>();
}

/// Inference (no autodiff): the fused op's untracked path against the composed block.
fn block_inference_matches<B: ScanBackend>() {
    let dev = Default::default();
    B::seed(&dev, 500);
    let block = MambaConfig::new(12).with_d_state(5).init_block::<B>(&dev);
    let x = Tensor::<B, 3>::random([2, 300, 12], Distribution::Normal(0.0, 1.0), &dev);
    let fused = mamba_block(x.clone(), block.fused_params().expect("selective block"));
    let e = rel_err(fused, block.forward_composed(x));
    assert!(e <= 1e-5, "inference rel err {e}");
}

#[test]
fn mamba_block_inference_matches_composition() {
    let _serial = common::serial();
    block_inference_matches::<NdArray>();
    block_inference_matches::<Flex>();
}

/// `rms_norm` and `embedding` against burn's `RmsNorm` and `Embedding` modules: output, input
/// gradient and weight gradient, with a random γ and repeated tokens (so the embedding's
/// backward has to add rows).
fn rows_ops_match<B: AutodiffBackend + ScanBackend>() {
    assert!(B::HOST_KERNELS, "the CPU backends run the host ops");
    let normal = Distribution::Normal(0.0, 1.0);
    // d ≥ 2: at d = 1 the norm's input gradient is ~eps/x², rounding noise in both versions.
    for (seed, [bt, l, d, vocab]) in [[1, 1, 2, 1], [2, 7, 3, 5], [3, 70, 16, 4], [2, 33, 64, 16]]
        .into_iter()
        .enumerate()
    {
        let dev = Default::default();
        B::seed(&dev, seed as u64 + 500);
        let mut norm = RmsNormConfig::new(d).init::<B>(&dev);
        norm.gamma = Param::from_tensor(leaf::<B, 1>([d], Distribution::Normal(1.0, 0.5), &dev));
        let x = leaf::<B, 3>([bt, l, d], Distribution::Normal(0.5, 2.0), &dev);
        let r = leaf::<B, 3>([bt, l, d], normal, &dev);
        let run = |fast: bool| {
            let x = x.clone().detach().require_grad();
            let y = if fast {
                rms_norm(&norm, x.clone())
            } else {
                norm.forward(x.clone())
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            let gx = x.grad(&grads).unwrap();
            let gg = norm.gamma.val().grad(&grads).unwrap();
            (y.inner(), gx, gg)
        };
        let ((y, gx, gg), (y0, gx0, gg0)) = (run(true), run(false));
        let what = format!("rms_norm {:?}", [bt, l, d]);
        assert!(rel_err(y, y0) < 1e-5, "{what}: output");
        assert!(rel_err(gx, gx0) < 1e-4, "{what}: dx");
        assert!(rel_err(gg, gg0) < 1e-4, "{what}: dγ");

        let emb = EmbeddingConfig::new(vocab, d).init::<B>(&dev);
        let ids: Vec<i64> = (0..bt * l)
            .map(|i| ((i * 7 + seed) % vocab) as i64)
            .collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [bt, l]), &dev);
        let run = |fast: bool| {
            let y = if fast {
                embedding(&emb, tokens.clone())
            } else {
                emb.forward(tokens.clone())
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (y.inner(), emb.weight.val().grad(&grads).unwrap())
        };
        let ((y, gw), (y0, gw0)) = (run(true), run(false));
        let what = format!("embedding {:?}", [bt, l, d, vocab]);
        assert!(rel_err(y, y0) == 0.0, "{what}: output (a copy)");
        assert!(rel_err(gw, gw0) < 1e-5, "{what}: dW");
    }
}

/// Without autodiff (evaluation), the host ops give the modules' outputs too.
#[test]
fn rms_norm_and_embedding_match_the_modules_untracked() {
    let _serial = common::serial();
    type B = NdArray;
    let dev = Default::default();
    B::seed(&dev, 7);
    let norm = RmsNormConfig::new(24).init::<B>(&dev);
    let x = Tensor::<B, 3>::random([3, 70, 24], Distribution::Normal(0.0, 2.0), &dev);
    let (y, y0) = (rms_norm(&norm, x.clone()), norm.forward(x));
    assert!(rel_err(y, y0) < 1e-6, "rms_norm");
    let emb = EmbeddingConfig::new(5, 24).init::<B>(&dev);
    let ids: Vec<i64> = (0..3 * 70).map(|i| (i % 5) as i64).collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [3, 70]), &dev);
    let (y, y0) = (embedding(&emb, tokens.clone()), emb.forward(tokens));
    assert!(rel_err(y, y0) == 0.0, "embedding");
}

#[test]
#[should_panic(expected = "rms_norm: input has 4 features, the norm's γ 6")]
fn rms_norm_refuses_a_gamma_of_another_width() {
    let _serial = common::serial();
    type B = NdArray;
    let dev = Default::default();
    let norm = RmsNormConfig::new(6).init::<B>(&dev);
    let _ = rms_norm(&norm, Tensor::<B, 3>::zeros([2, 3, 4], &dev));
}

#[test]
fn rms_norm_and_embedding_match_the_modules_ndarray() {
    let _serial = common::serial();
    rows_ops_match::<Autodiff<NdArray>>();
}

#[test]
fn rms_norm_and_embedding_match_the_modules_flex() {
    let _serial = common::serial();
    rows_ops_match::<Autodiff<Flex>>();
}

#[test]
#[should_panic(expected = "token 9 at position 1 is outside the vocabulary 0..4")]
fn embedding_names_a_token_outside_the_vocabulary() {
    let _serial = common::serial();
    type B = Autodiff<NdArray>;
    let dev = Default::default();
    let emb = EmbeddingConfig::new(4, 3).init::<B>(&dev);
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 9], [1, 2]), &dev);
    let _ = embedding(&emb, tokens);
}

/// `head_loss` against burn's `Linear` and `masked_loss`: loss, correct count, and the
/// gradients of the head input and weight, with some positions unweighted (and one shape with
/// no weight at all, where the count clamps to 1) and repeated targets.
fn head_loss_matches<B: AutodiffBackend + ScanBackend>() {
    assert!(B::HOST_KERNELS, "the CPU backends run the host ops");
    // Shape 0 has no weight at all (the count clamps to 1), shape 1 a total weight under 1,
    // shape 4 more rows than one task of a product, shape 5 an all-zero input (every logit
    // ties: the first index is the prediction).
    let shapes = [
        [1, 1, 1, 1],
        [2, 7, 3, 5],
        [3, 70, 16, 4],
        [2, 33, 64, 16],
        [3, 200, 8, 6],
        [2, 9, 4, 3],
    ];
    for (seed, [bt, l, d, vocab]) in shapes.into_iter().enumerate() {
        let dev = Default::default();
        B::seed(&dev, seed as u64 + 900);
        let head = LinearConfig::new(d, vocab).with_bias(false).init::<B>(&dev);
        let x = if seed == 5 {
            Tensor::zeros([bt, l, d], &dev)
        } else {
            leaf::<B, 3>([bt, l, d], Distribution::Normal(0.0, 2.0), &dev)
        };
        let ids: Vec<i64> = (0..bt * l)
            .map(|i| ((i * 5 + seed) % vocab) as i64)
            .collect();
        let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [bt, l]), &dev);
        // Every third position unweighted.
        let w: Vec<f32> = (0..bt * l)
            .map(|i| match seed {
                0 => 0.0,
                1 => 0.01,
                _ if i % 3 == 2 => 0.0,
                _ => 0.5 + (i % 4) as f32,
            })
            .collect();
        let weights = Tensor::<B, 2>::from_data(TensorData::new(w, [bt, l]), &dev);
        let run = |fast: bool| {
            let x = x.clone().detach().require_grad();
            let (loss, correct) = if fast {
                head_loss(
                    x.clone(),
                    head.weight.val(),
                    targets.clone(),
                    weights.clone(),
                )
            } else {
                masked_loss(head.forward(x.clone()), targets.clone(), weights.clone())
            };
            // × 3: the incoming gradient is not 1.
            let grads = (loss.clone() * 3.0).backward();
            let gx = x.grad(&grads).unwrap();
            let gw = head.weight.val().grad(&grads).unwrap();
            (loss.inner(), correct.inner(), gx, gw)
        };
        let ((loss, correct, gx, gw), (loss0, correct0, gx0, gw0)) = (run(true), run(false));
        let what = format!("head_loss {:?}", [bt, l, d, vocab]);
        assert!(rel_err(loss, loss0) < 1e-5, "{what}: loss");
        assert!(rel_err(correct, correct0) == 0.0, "{what}: correct");
        assert!(rel_err(gx, gx0) < 1e-4, "{what}: dx");
        assert!(rel_err(gw, gw0) < 1e-4, "{what}: dW");
    }
}

/// `Lm::loss` (which runs `head_loss` on the CPU backends) against `masked_loss` of
/// `Lm::forward`'s logits, on a whole hybrid model: loss and the gradients of the head, the
/// embedding and a Mamba block's weight.
#[test]
fn lm_loss_matches_masked_loss_of_the_logits() {
    let _serial = common::serial();
    type B = Autodiff<NdArray>;
    let dev = Default::default();
    B::seed(&dev, 21);
    let lm: Lm<B> = LmConfig::new(7, 16, "MA".to_string())
        .with_d_state(4)
        .with_n_heads(2)
        .init(&dev);
    let ids: Vec<i64> = (0..2 * 30).map(|i| (i * 3 % 7) as i64).collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [2, 30]), &dev);
    let shifted: Vec<i64> = ids.iter().map(|t| (t + 1) % 7).collect();
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(shifted, [2, 30]), &dev);
    let weights = Tensor::<B, 2>::ones([2, 30], &dev);
    // Each graph is built and run backward before the next is built: two live graphs over the
    // same parameters make burn's autodiff drop shared nodes at the first backward (flaky).
    let (loss, correct) = lm.loss(tokens.clone(), targets.clone(), weights.clone());
    let g = loss.clone().backward();
    let (loss0, correct0) = masked_loss(lm.forward(tokens), targets, weights);
    let g0 = loss0.clone().backward();
    assert!(rel_err(loss.inner(), loss0.inner()) < 1e-5, "loss");
    assert!(rel_err(correct.inner(), correct0.inner()) == 0.0, "correct");
    let head = lm.head.weight.val();
    let emb = lm.embedding.weight.val();
    let Block::Mamba(block) = &lm.blocks[0] else {
        panic!("pattern MA starts with a Mamba block")
    };
    let w_in = block.mixer.in_proj.weight.val();
    for (name, t) in [("head", head), ("embedding", emb), ("in_proj", w_in)] {
        let (a, b) = (t.grad(&g).unwrap(), t.grad(&g0).unwrap());
        assert!(rel_err(a, b) < 1e-4, "d{name}");
    }
}

#[test]
#[should_panic(expected = "head_loss: targets are [3, 2], the input [2, 3, 4]")]
fn head_loss_refuses_targets_of_another_shape() {
    let _serial = common::serial();
    type B = NdArray;
    let dev = Default::default();
    let head = LinearConfig::new(4, 5).with_bias(false).init::<B>(&dev);
    let targets = Tensor::<B, 2, Int>::zeros([3, 2], &dev);
    let x = Tensor::<B, 3>::zeros([2, 3, 4], &dev);
    let _ = head_loss(x, head.weight.val(), targets, Tensor::ones([2, 3], &dev));
}

#[test]
fn head_loss_matches_linear_and_masked_loss_ndarray() {
    let _serial = common::serial();
    head_loss_matches::<Autodiff<NdArray>>();
}

#[test]
fn head_loss_matches_linear_and_masked_loss_flex() {
    let _serial = common::serial();
    head_loss_matches::<Autodiff<Flex>>();
}

/// Evaluation runs the op without autodiff.
#[test]
fn head_loss_matches_untracked() {
    let _serial = common::serial();
    type B = NdArray;
    let dev = Default::default();
    B::seed(&dev, 11);
    let head = LinearConfig::new(24, 7).with_bias(false).init::<B>(&dev);
    let x = Tensor::<B, 3>::random([3, 70, 24], Distribution::Normal(0.0, 2.0), &dev);
    let ids: Vec<i64> = (0..3 * 70).map(|i| (i % 7) as i64).collect();
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [3, 70]), &dev);
    let weights = Tensor::<B, 2>::ones([3, 70], &dev);
    let (loss, correct) = head_loss(
        x.clone(),
        head.weight.val(),
        targets.clone(),
        weights.clone(),
    );
    let (loss0, correct0) = masked_loss(head.forward(x), targets, weights);
    assert!(rel_err(loss, loss0) < 1e-5, "loss");
    assert!(rel_err(correct, correct0) == 0.0, "correct");
}

#[test]
#[should_panic(expected = "head_loss: target 7 at [0, 2] is outside 0..7")]
fn head_loss_names_a_target_outside_the_vocabulary() {
    let _serial = common::serial();
    type B = Autodiff<NdArray>;
    let dev = Default::default();
    let head = LinearConfig::new(3, 7).with_bias(false).init::<B>(&dev);
    let x = Tensor::<B, 3>::zeros([1, 3, 3], &dev);
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64, 6, 7], [1, 3]), &dev);
    let _ = head_loss(x, head.weight.val(), targets, Tensor::ones([1, 3], &dev));
}

/// The conv mixer block (`C`): `ConvBlock::forward` (host linears, conv and norms) against
/// `forward_reference` (burn's modules and the conv's composition): output and the gradients
/// of the input and of the mixer's weights.
fn conv_block_matches<B: AutodiffBackend + ScanBackend>(name: &str) {
    use labbook_models::model::ConvBlockConfig;
    let device = Default::default();
    B::seed(&device, 77);
    let block = ConvBlockConfig::new(12).with_d_conv(3).init::<B>(&device);
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<B, 3>::random([2, 70, 12], normal, &device);
    let r = Tensor::<B, 3>::random([2, 70, 12], normal, &device);
    let run = |fused: bool| {
        let x = x.clone().require_grad();
        let y = if fused {
            block.forward(x.clone())
        } else {
            block.forward_reference(x.clone())
        };
        let grads = (y.clone() * r.clone()).sum().backward();
        (
            y.inner(),
            x.grad(&grads).unwrap(),
            block.in_proj.weight.val().grad(&grads).unwrap(),
            block.conv_weight.val().grad(&grads).unwrap(),
            block.fc1.bias.as_ref().unwrap().val().grad(&grads).unwrap(),
        )
    };
    let (f, c) = (run(true), run(false));
    let errs = [
        ("y", rel_err(f.0, c.0)),
        ("dx", rel_err(f.1, c.1)),
        ("d in_proj", rel_err(f.2, c.2)),
        ("d conv", rel_err(f.3, c.3)),
        ("d fc1.bias", rel_err(f.4, c.4)),
    ];
    for (what, e) in errs {
        assert!(e < 1e-5, "{name}: {what} rel err {e}");
    }
}

#[test]
fn conv_block_matches_its_reference_on_both_backends() {
    let _serial = common::serial();
    conv_block_matches::<Autodiff<NdArray>>("ndarray");
    conv_block_matches::<Autodiff<Flex>>("flex");
}
