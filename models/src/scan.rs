//! Selective scan (the S6 recurrence) with a fused host kernel and a hand-written backward.
//!
//! `h_t = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·B_t·u_t`, `y_t = C_t·h_t + D·u_t`, per (batch, channel),
//! with the state `h` of size `N` per channel. Shapes everywhere in this module:
//! `u`, `delta`: `[batch, L, d_inner]`; `a`: `[d_inner, N]`; `b`, `c`: `[batch, L, N]`;
//! `d`: `[d_inner]`; `y`: `[batch, L, d_inner]`.
//!
//! * [`ScanBackend`] is a backend extension: its default methods pull the tensors to the host
//!   and run a fused loop per (batch, channel) that never materialises `[batch, L, d_inner, N]`.
//! * `Autodiff<B>` implements it with a custom backward node, so training never backpropagates
//!   through an `L`-step loop of small tensor ops: the backward recomputes each channel's
//!   states `[L, N]` into a local buffer and runs one reverse scan.
//! * [`selective_scan_reference`] is the plain sequential tensor-op version used by the tests.
use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{Tensor, TensorData, TensorPrimitive, backend::Backend, ops::FloatTensor};
use rayon::prelude::*;

/// A backend that can run the selective scan. The default methods run the fused host loop,
/// which works on every backend (on a GPU backend it copies through host memory).
pub trait ScanBackend: Backend {
    /// Forward scan; see the module docs for shapes.
    fn selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let device = Self::float_device(&u);
        let inputs = HostInputs::load::<Self>(u, delta, a, b, c, d);
        let y = inputs.forward();
        upload::<Self, 3>(y, [inputs.batch, inputs.len, inputs.channels], &device)
    }

    /// Gradients of `sum(y ⊙ grad)` with respect to `[u, delta, a, b, c, d]`.
    #[allow(clippy::too_many_arguments)]
    fn selective_scan_backward(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 6] {
        let device = Self::float_device(&u);
        let inputs = HostInputs::load::<Self>(u, delta, a, b, c, d);
        let (grad, _) = download::<Self, 3>(grad);
        let g = inputs.backward(&grad);
        let (bt, l, ch, n) = (inputs.batch, inputs.len, inputs.channels, inputs.state);
        [
            upload::<Self, 3>(g.du, [bt, l, ch], &device),
            upload::<Self, 3>(g.ddelta, [bt, l, ch], &device),
            upload::<Self, 2>(g.da, [ch, n], &device),
            upload::<Self, 3>(g.db, [bt, l, n], &device),
            upload::<Self, 3>(g.dc, [bt, l, n], &device),
            upload::<Self, 1>(g.dd, [ch], &device),
        ]
    }
}

impl ScanBackend for burn::backend::NdArray {}
impl ScanBackend for burn::backend::Flex {}
// `burn::backend::Cuda` (and `Wgpu`, test-only) run CubeCL kernels: see `crate::scan_cubecl`.

/// Runs the selective scan on any [`ScanBackend`] (tracked by autodiff when `B` is `Autodiff`).
pub fn selective_scan<B: ScanBackend>(
    u: Tensor<B, 3>,     // [batch, L, d_inner]
    delta: Tensor<B, 3>, // [batch, L, d_inner]
    a: Tensor<B, 2>,     // [d_inner, N]
    b: Tensor<B, 3>,     // [batch, L, N]
    c: Tensor<B, 3>,     // [batch, L, N]
    d: Tensor<B, 1>,     // [d_inner]
) -> Tensor<B, 3> {
    check_shapes(
        &u.dims(),
        &delta.dims(),
        &a.dims(),
        &b.dims(),
        &c.dims(),
        &d.dims(),
    );
    let y = B::selective_scan(
        u.into_primitive().tensor(),
        delta.into_primitive().tensor(),
        a.into_primitive().tensor(),
        b.into_primitive().tensor(),
        c.into_primitive().tensor(),
        d.into_primitive().tensor(),
    );
    Tensor::from_primitive(TensorPrimitive::Float(y)) // [batch, L, d_inner]
}

fn check_shapes(
    u: &[usize; 3],
    delta: &[usize; 3],
    a: &[usize; 2],
    b: &[usize; 3],
    c: &[usize; 3],
    d: &[usize; 1],
) {
    assert_eq!(
        u, delta,
        "selective_scan: u and delta must have the same shape"
    );
    assert_eq!(a[0], u[2], "selective_scan: a must be [d_inner, N]");
    assert_eq!(
        b,
        &[u[0], u[1], a[1]],
        "selective_scan: b must be [batch, L, N]"
    );
    assert_eq!(c, b, "selective_scan: c must be [batch, L, N]");
    assert_eq!(d[0], u[2], "selective_scan: d must be [d_inner]");
}

/// Plain sequential tensor-op scan: `L` steps of small tensor ops (slow; for tests only).
pub fn selective_scan_reference<B: Backend>(
    u: Tensor<B, 3>,     // [batch, L, d_inner]
    delta: Tensor<B, 3>, // [batch, L, d_inner]
    a: Tensor<B, 2>,     // [d_inner, N]
    b: Tensor<B, 3>,     // [batch, L, N]
    c: Tensor<B, 3>,     // [batch, L, N]
    d: Tensor<B, 1>,     // [d_inner]
) -> Tensor<B, 3> {
    let [bt, l, ch] = u.dims();
    let n = a.dims()[1];
    let device = u.device();
    let a3 = a.unsqueeze_dim::<3>(0); // [1, d_inner, N]
    let d2 = d.unsqueeze_dim::<2>(0); // [1, d_inner]
    let mut h = Tensor::<B, 3>::zeros([bt, ch, n], &device);
    let mut ys = Vec::with_capacity(l);
    for t in 0..l {
        let ut = u.clone().narrow(1, t, 1).reshape([bt, ch, 1]);
        let dt = delta.clone().narrow(1, t, 1).reshape([bt, ch, 1]);
        let bt_ = b.clone().narrow(1, t, 1); // [batch, 1, N]
        let ct = c.clone().narrow(1, t, 1); // [batch, 1, N]
        let decay = (dt.clone() * a3.clone()).exp(); // [batch, d_inner, N]
        h = decay * h + dt * bt_ * ut.clone(); // [batch, d_inner, N]
        let y = (h.clone() * ct).sum_dim(2).reshape([bt, ch]) + ut.reshape([bt, ch]) * d2.clone();
        ys.push(y.unsqueeze_dim::<3>(1)); // [batch, 1, d_inner]
    }
    Tensor::cat(ys, 1)
}

fn download<B: Backend, const D: usize>(t: FloatTensor<B>) -> (Vec<f32>, [usize; D]) {
    let t = Tensor::<B, D>::from_primitive(TensorPrimitive::Float(t));
    let dims = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("selective_scan: tensor data converts to f32");
    (v, dims)
}

fn upload<B: Backend, const D: usize>(
    v: Vec<f32>,
    dims: [usize; D],
    device: &B::Device,
) -> FloatTensor<B> {
    Tensor::<B, D>::from_data(TensorData::new(v, dims), device)
        .into_primitive()
        .tensor()
}

/// Host copies of the scan inputs, row-major.
pub(crate) struct HostInputs {
    batch: usize,
    len: usize,
    channels: usize,
    state: usize,
    u: Vec<f32>,
    delta: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    d: Vec<f32>,
}

/// Gradients produced by [`HostInputs::backward`].
pub(crate) struct HostGrads {
    du: Vec<f32>,
    ddelta: Vec<f32>,
    da: Vec<f32>,
    db: Vec<f32>,
    dc: Vec<f32>,
    dd: Vec<f32>,
}

// Kernels index several slices with the same counter; explicit indices read clearest here.
#[allow(clippy::needless_range_loop)]
impl HostInputs {
    fn load<B: Backend>(
        u: FloatTensor<B>,
        delta: FloatTensor<B>,
        a: FloatTensor<B>,
        b: FloatTensor<B>,
        c: FloatTensor<B>,
        d: FloatTensor<B>,
    ) -> Self {
        let (u, [batch, len, channels]) = download::<B, 3>(u);
        let (delta, _) = download::<B, 3>(delta);
        let (a, [_, state]) = download::<B, 2>(a);
        let (b, _) = download::<B, 3>(b);
        let (c, _) = download::<B, 3>(c);
        let (d, _) = download::<B, 1>(d);
        Self {
            batch,
            len,
            channels,
            state,
            u,
            delta,
            a,
            b,
            c,
            d,
        }
    }

    /// `y` as `[batch, L, d_inner]`, parallel over (batch, channel).
    fn forward(&self) -> Vec<f32> {
        let (l, ch, n) = (self.len, self.channels, self.state);
        let columns: Vec<Vec<f32>> = (0..self.batch * ch)
            .into_par_iter()
            .map(|i| {
                let (bi, k) = (i / ch, i % ch);
                let a = &self.a[k * n..(k + 1) * n];
                let mut h = vec![0.0f32; n];
                let mut col = Vec::with_capacity(l);
                for t in 0..l {
                    let idx = (bi * l + t) * ch + k;
                    let (dt, x) = (self.delta[idx], self.u[idx]);
                    let row = (bi * l + t) * n;
                    let (bt, ct) = (&self.b[row..row + n], &self.c[row..row + n]);
                    let mut acc = 0.0f32;
                    for s in 0..n {
                        h[s] = (dt * a[s]).exp() * h[s] + dt * bt[s] * x;
                        acc += ct[s] * h[s];
                    }
                    col.push(acc + self.d[k] * x);
                }
                col
            })
            .collect();
        let mut y = vec![0.0f32; self.batch * l * ch];
        for (i, col) in columns.into_iter().enumerate() {
            let (bi, k) = (i / ch, i % ch);
            for (t, v) in col.into_iter().enumerate() {
                y[(bi * l + t) * ch + k] = v;
            }
        }
        y
    }

    /// Reverse scan, parallel over batch items; `grad` is `dL/dy` as `[batch, L, d_inner]`.
    fn backward(&self, grad: &[f32]) -> HostGrads {
        let (l, ch, n) = (self.len, self.channels, self.state);
        let per_batch: Vec<HostGrads> = (0..self.batch)
            .into_par_iter()
            .map(|bi| {
                let mut g = HostGrads {
                    du: vec![0.0; l * ch],
                    ddelta: vec![0.0; l * ch],
                    da: vec![0.0; ch * n],
                    db: vec![0.0; l * n],
                    dc: vec![0.0; l * n],
                    dd: vec![0.0; ch],
                };
                let mut states = vec![0.0f32; l * n]; // h_t for t in 0..L, one channel
                let mut carry = vec![0.0f32; n]; // dL/dh_t
                for k in 0..ch {
                    let a = &self.a[k * n..(k + 1) * n];
                    let dk = self.d[k];
                    // Recompute this channel's states.
                    for t in 0..l {
                        let idx = (bi * l + t) * ch + k;
                        let (dt, x) = (self.delta[idx], self.u[idx]);
                        let row = (bi * l + t) * n;
                        for s in 0..n {
                            let prev = if t == 0 { 0.0 } else { states[(t - 1) * n + s] };
                            states[t * n + s] = (dt * a[s]).exp() * prev + dt * self.b[row + s] * x;
                        }
                    }
                    carry.iter_mut().for_each(|v| *v = 0.0);
                    let mut dd = 0.0f32;
                    for t in (0..l).rev() {
                        let idx = (bi * l + t) * ch + k;
                        let (dt, x, dy) = (self.delta[idx], self.u[idx], grad[idx]);
                        let row = (bi * l + t) * n;
                        dd += dy * x;
                        let mut dx = dy * dk;
                        let mut ddt = 0.0f32;
                        for s in 0..n {
                            let h = states[t * n + s];
                            let prev = if t == 0 { 0.0 } else { states[(t - 1) * n + s] };
                            g.dc[t * n + s] += dy * h;
                            let gs = carry[s] + dy * self.c[row + s];
                            let decay = (dt * a[s]).exp();
                            let bs = self.b[row + s];
                            ddt += gs * (a[s] * decay * prev + bs * x);
                            g.da[k * n + s] += gs * dt * decay * prev;
                            g.db[t * n + s] += gs * dt * x;
                            dx += gs * dt * bs;
                            carry[s] = gs * decay;
                        }
                        g.du[t * ch + k] = dx;
                        g.ddelta[t * ch + k] = ddt;
                    }
                    g.dd[k] = dd;
                }
                g
            })
            .collect();
        let mut out = HostGrads {
            du: Vec::with_capacity(self.batch * l * ch),
            ddelta: Vec::with_capacity(self.batch * l * ch),
            da: vec![0.0; ch * n],
            db: Vec::with_capacity(self.batch * l * n),
            dc: Vec::with_capacity(self.batch * l * n),
            dd: vec![0.0; ch],
        };
        for g in per_batch {
            out.du.extend_from_slice(&g.du);
            out.ddelta.extend_from_slice(&g.ddelta);
            out.db.extend_from_slice(&g.db);
            out.dc.extend_from_slice(&g.dc);
            out.da.iter_mut().zip(&g.da).for_each(|(o, v)| *o += v);
            out.dd.iter_mut().zip(&g.dd).for_each(|(o, v)| *o += v);
        }
        out
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
        for (parent, g) in ops.parents.into_iter().zip(outs) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: ScanBackend, C: CheckpointStrategy> ScanBackend for Autodiff<B, C> {
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
