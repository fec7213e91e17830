//! The fused ops under `Autodiff`: one backward node per host op, whose backward brings
//! `dL/dout` to the host, runs the op's hand-written backward and hands each tracked input its
//! gradient, and the [`ScanBackend`] impl for `Autodiff<B, C>` that records them.
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use std::sync::Arc;

use super::*;
/// Hands each tracked parent its gradient.
fn register<B: Backend, const N: usize>(
    parents: [Option<NodeId>; N],
    outs: [FloatTensor<B>; N],
    grads: &mut Gradients,
) {
    for (parent, g) in parents.into_iter().zip(outs) {
        if let Some(id) = parent {
            grads.register::<B>(id, g);
        }
    }
}

#[derive(Debug)]
struct ScanBackwardOp;

type ScanState<B> = [FloatTensor<B>; 6];

impl<B: ScanBackend> Backward<B, 6> for ScanBackwardOp {
    type State = ScanState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 6>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [u, delta, a, b, c, d] = ops.state;
        let outs = B::selective_scan_backward(u, delta, a, b, c, d, grad);
        register::<B, 6>(ops.parents.map(|p| p.map(|n| n.id)), outs, grads);
    }
}

#[derive(Debug)]
struct DeviceAttentionBackwardOp;

/// `[q, k, v, o, lse]`.
type DeviceAttentionState<B> = [FloatTensor<B>; 5];

impl<B: ScanBackend> Backward<B, 3> for DeviceAttentionBackwardOp {
    type State = DeviceAttentionState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dout = grads.consume::<B>(&ops.node);
        let [q, k, v, o, lse] = ops.state;
        let outs = B::device_attention_backward(q, k, v, o, lse, dout);
        register::<B, 3>(ops.parents.map(|p| p.map(|n| n.id)), outs, grads);
    }
}

#[derive(Debug)]
struct GatedScanBackwardOp;

/// The backward of a fused host op (`D`-dimensional output): `dL/dout` comes to the host,
/// `grads_of` turns it into one gradient per input, and each tracked parent is handed its own.
fn host_backward<B: Backend, S, const N: usize, const D: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    grads_of: impl FnOnce(&S, &[f32], &B::Device) -> [FloatTensor<B>; N],
) {
    let grad = grads.consume::<B>(&ops.node);
    let device = B::float_device(&grad);
    let (grad, _) = download::<B, D>(grad);
    let outs = grads_of(&ops.state, &grad, &device);
    register::<B, N>(ops.parents.map(|p| p.map(|n| n.id)), outs, grads);
}

impl<B: Backend> Backward<B, 7> for GatedScanBackwardOp {
    type State = Arc<GatedScan>;

    fn backward(
        self,
        ops: Ops<Self::State, 7>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 7, 3>(ops, grads, |gs, grad, device| {
            let (g, dz) = gs.backward(grad);
            let dims = gs.scan.dims();
            let [du, ddelta, da, db, dc, dd] = upload_grads::<B>(g, dims, gs.scan.state, device);
            let dz = upload::<B, 3>(dz, dims, device);
            [du, ddelta, da, db, dc, dd, dz]
        });
    }
}

#[derive(Debug)]
struct ConvSiluBackwardOp;

impl<B: Backend> Backward<B, 3> for ConvSiluBackwardOp {
    type State = Arc<ConvSilu>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 3, 3>(ops, grads, |cv, grad, device| {
            let g = cv.backward(grad);
            [
                upload::<B, 3>(g.dx, [cv.batch, cv.len, cv.channels], device),
                upload::<B, 2>(g.dw, [cv.channels, cv.kernel], device),
                upload::<B, 1>(g.dbias, [cv.channels], device),
            ]
        });
    }
}

#[derive(Debug)]
struct MambaBlockBackwardOp;

impl<B: Backend> Backward<B, { slot::COUNT }> for MambaBlockBackwardOp {
    type State = Arc<HostBlock>;

    fn backward(
        self,
        ops: Ops<Self::State, { slot::COUNT }>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, { slot::COUNT }, 3>(ops, grads, |block, grad, device| {
            let mut shapes = block.dims.input_shapes().into_iter();
            block.backward(grad).map(|g| {
                let shape = shapes.next().expect("one shape per input");
                B::float_from_data(TensorData::new(g, shape), device)
            })
        });
    }
}

#[derive(Debug)]
struct RmsNormBackwardOp;

impl<B: Backend> Backward<B, 2> for RmsNormBackwardOp {
    type State = Arc<HostRmsNorm>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 2, 3>(ops, grads, |norm, grad, device| {
            let (dx, dgamma) = norm.backward(grad, None);
            let dims = norm.dims();
            [
                upload::<B, 3>(dx, dims, device),
                upload::<B, 1>(dgamma, [dims[2]], device),
            ]
        });
    }
}

#[derive(Debug)]
struct AttentionBackwardOp;

impl<B: Backend> Backward<B, 3> for AttentionBackwardOp {
    type State = Arc<HostAttention>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 3, 3>(ops, grads, |op, grad, device| {
            let dims = op.dims();
            let g = op.backward(grad);
            [
                upload::<B, 3>(g.dqkv, [dims.batch, dims.len, 3 * dims.d], device),
                upload::<B, 1>(g.dscale, [dims.heads], device),
                upload::<B, 2>(g.dtable, [dims.heads, BIAS_BUCKETS], device),
            ]
        });
    }
}

#[derive(Debug)]
struct LinearBackwardOp;

impl<B: Backend> Backward<B, 3> for LinearBackwardOp {
    type State = Arc<HostLinear>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 3, 3>(ops, grads, |op, grad, device| {
            let g = op.backward(grad);
            let [batch, len, d_in] = op.dims();
            [
                upload::<B, 3>(g.dx, [batch, len, d_in], device),
                upload::<B, 2>(g.dw, [d_in, op.d_out()], device),
                upload::<B, 1>(g.db, [op.d_out()], device),
            ]
        });
    }
}

#[derive(Debug)]
struct GeluBackwardOp;

impl<B: Backend> Backward<B, 1> for GeluBackwardOp {
    type State = Arc<HostGelu>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 1, 3>(ops, grads, |op, grad, device| {
            [upload::<B, 3>(op.backward(grad), op.shape(), device)]
        });
    }
}

#[derive(Debug)]
struct EmbeddingBackwardOp;

impl<B: Backend> Backward<B, 1> for EmbeddingBackwardOp {
    type State = Arc<HostEmbedding>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 1, 3>(ops, grads, |emb, grad, device| {
            [upload::<B, 2>(
                emb.backward(grad),
                emb.weight_shape(),
                device,
            )]
        });
    }
}

#[derive(Debug)]
struct HeadLossBackwardOp;

impl<B: Backend> Backward<B, 2> for HeadLossBackwardOp {
    type State = Arc<HostHeadLoss>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        host_backward::<B, _, 2, 1>(ops, grads, |op, grad, device| {
            let (dx, dw) = op.backward(grad[0]);
            [
                upload::<B, 3>(dx, op.dims(), device),
                upload::<B, 2>(dw, op.weight_shape(), device),
            ]
        });
    }
}

/// Finishes a fused host op under autodiff from its prepared `kind`: when a parent needs a
/// gradient, `tracked` runs on the inner backend and keeps the backward's state; otherwise
/// `untracked` does. `inputs` go to whichever runs.
fn finish_host_op<B, C, Op, S, I, const N: usize>(
    kind: OpsKind<Op, B, Arc<S>, C, N>,
    inputs: I,
    tracked: impl FnOnce(I) -> (S, FloatTensor<B>),
    untracked: impl FnOnce(I) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    Op: Backward<B, N, State = Arc<S>>,
    S: Send + Sync + std::fmt::Debug + 'static,
{
    match kind {
        OpsKind::Tracked(prep) => {
            let (state, out) = tracked(inputs);
            prep.finish(Arc::new(state), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(untracked(inputs)),
    }
}

impl<B: ScanBackend, C: CheckpointStrategy> ScanBackend for Autodiff<B, C> {
    const HOST_KERNELS: bool = B::HOST_KERNELS;

    fn head_loss_host(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        targets: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 2] {
        // The weights take no gradient: only their values enter.
        let weights = weights.primitive;
        let (loss, correct) = match HeadLossBackwardOp
            .prepare::<C>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (op, [loss, correct]) =
                    head_loss_on_host::<B>(x.primitive, w.primitive, targets, weights);
                (prep.finish(Arc::new(op), loss), correct)
            }
            OpsKind::UnTracked(prep) => {
                let [loss, correct] = B::head_loss_host(x.primitive, w.primitive, targets, weights);
                (prep.finish(loss), correct)
            }
        };
        [loss, <Self as AutodiffBackend>::from_inner(correct)]
    }

    fn rms_norm_host(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let kind = RmsNormBackwardOp
            .prepare::<C>([x.node.clone(), gamma.node.clone()])
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            (x.primitive, gamma.primitive),
            |(x, gamma)| rms_norm_on_host::<B>(x, gamma, eps),
            |(x, gamma)| B::rms_norm_host(x, gamma, eps),
        )
    }

    fn attention_host(
        qkv: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        table: FloatTensor<Self>,
        heads: usize,
        rope: bool,
        variant: Variant,
    ) -> FloatTensor<Self> {
        let kind = AttentionBackwardOp
            .prepare::<C>([qkv.node.clone(), scale.node.clone(), table.node.clone()])
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            (qkv.primitive, scale.primitive, table.primitive),
            |(q, s, t)| attention_on_host::<B>(q, s, t, heads, rope, variant),
            |(q, s, t)| B::attention_host(q, s, t, heads, rope, variant),
        )
    }

    fn linear_host(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        gelu: bool,
    ) -> FloatTensor<Self> {
        let kind = LinearBackwardOp
            .prepare::<C>([x.node.clone(), w.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            (x.primitive, w.primitive, b.primitive),
            |(x, w, b)| linear_on_host::<B>(x, w, b, gelu),
            |(x, w, b)| B::linear_host(x, w, b, gelu),
        )
    }

    fn gelu_host(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let kind = GeluBackwardOp
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            x.primitive,
            |x| gelu_on_host::<B>(x),
            |x| B::gelu_host(x),
        )
    }

    fn embedding_host(weights: FloatTensor<Self>, tokens: IntTensor<Self>) -> FloatTensor<Self> {
        let kind = EmbeddingBackwardOp
            .prepare::<C>([weights.node.clone()])
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            (weights.primitive, tokens),
            |(w, tokens)| embedding_on_host::<B>(w, tokens),
            |(w, tokens)| B::embedding_host(w, tokens),
        )
    }

    fn mamba_block_host(
        inputs: [FloatTensor<Self>; 13],
        eps: f64,
        options: BlockOptions,
        state: &BlockState,
    ) -> FloatTensor<Self> {
        let nodes = inputs.each_ref().map(|t| t.node.clone());
        let kind = MambaBlockBackwardOp
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            inputs.map(|t| t.primitive),
            |prims| block_on_host::<B>(prims, eps, options, state),
            |prims| B::mamba_block_host(prims, eps, options, state),
        )
    }

    fn gated_scan_host(
        u: FloatTensor<Self>,
        delta_raw: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        z: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            u.node.clone(),
            delta_raw.node.clone(),
            a.node.clone(),
            b.node.clone(),
            c.node.clone(),
            d.node.clone(),
            z.node.clone(),
        ];
        let prims = (
            u.primitive,
            delta_raw.primitive,
            a.primitive,
            b.primitive,
            c.primitive,
            d.primitive,
            z.primitive,
        );
        let kind = GatedScanBackwardOp
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            prims,
            |(u, dr, a, b, c, d, z)| gated_on_host::<B>(u, dr, a, b, c, d, z),
            |(u, dr, a, b, c, d, z)| B::gated_scan_host(u, dr, a, b, c, d, z),
        )
    }

    fn conv_silu_host(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        silu: bool,
        dilation: usize,
    ) -> FloatTensor<Self> {
        let nodes = [x.node.clone(), w.node.clone(), bias.node.clone()];
        let kind = ConvSiluBackwardOp
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        finish_host_op(
            kind,
            (x.primitive, w.primitive, bias.primitive),
            |(x, w, bias)| conv_on_host::<B>(x, w, bias, silu, dilation),
            |(x, w, bias)| B::conv_silu_host(x, w, bias, silu, dilation),
        )
    }

    fn device_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
        match DeviceAttentionBackwardOp
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (qp, kp, vp) = (q.primitive, k.primitive, v.primitive);
                let (o, lse) = B::device_attention_forward(qp.clone(), kp.clone(), vp.clone());
                prep.finish([qp, kp, vp, o.clone(), lse], o)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::device_attention(q.primitive, k.primitive, v.primitive))
            }
        }
    }

    fn selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            u.node.clone(),
            delta.node.clone(),
            a.node.clone(),
            b.node.clone(),
            c.node.clone(),
            d.node.clone(),
        ];
        match ScanBackwardOp
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = [
                    u.primitive.clone(),
                    delta.primitive.clone(),
                    a.primitive.clone(),
                    b.primitive.clone(),
                    c.primitive.clone(),
                    d.primitive.clone(),
                ];
                let y = B::selective_scan(
                    u.primitive,
                    delta.primitive,
                    a.primitive,
                    b.primitive,
                    c.primitive,
                    d.primitive,
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::selective_scan(
                u.primitive,
                delta.primitive,
                a.primitive,
                b.primitive,
                c.primitive,
                d.primitive,
            )),
        }
    }
}
