//! CubeCL kernels and their launchers; the layout is described in the parent module.
use super::{CHUNK, FALLBACK_GROUP, Geometry};
use crate::fused::ScanBackend;
use crate::precision::accumulation_dtype;
use burn::tensor::{
    DType, FloatDType, Tensor as BurnTensor, TensorPrimitive, backend::Backend, ops::FloatTensor,
};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
    kernel::{cast, into_contiguous},
    ops::numeric::{empty_device_contiguous_dtype, empty_device_dtype, zeros_client},
    tensor::CubeTensor,
};
use cubecl::features::Plane;
use cubecl::prelude::*;

/// Forward scan: one unit per (batch item, channel), the state in a local array. Inputs and
/// `y` are `F` (the tensors' dtype: f32, or bf16/f16 under `[train] precision`); the state and
/// every sum are `A` (f32), so a half-precision run loses nothing in the recurrence.
#[cube(launch)]
fn scan_forward_kernel<F: Float, A: Float>(
    u: &Tensor<F>,     // [Bt, L, D]
    delta: &Tensor<F>, // [Bt, L, D]
    a: &Tensor<A>,     // [D, N], f32: `A_log` stays f32 under `[train] precision`
    b: &Tensor<F>,     // [Bt, L, N]
    c: &Tensor<F>,     // [Bt, L, N]
    d: &Tensor<A>,     // [D], f32 as `a`
    y: &mut Tensor<F>, // [Bt, L, D]
    #[comptime] n: usize,
    #[define(F, A)] _dtypes: [StorageType; 2],
) {
    let len = u.shape(1);
    let ch = u.shape(2);
    let bi = CUBE_POS_Y as usize;
    let k = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    if k >= ch {
        terminate!();
    }

    let mut h = Array::<A>::new(n);
    let mut av = Array::<A>::new(n);
    #[unroll]
    for s in 0..n {
        h[s] = A::new(0.0);
        av[s] = a[k * a.stride(0) + s * a.stride(1)];
    }
    let dk = d[k * d.stride(0)];

    for t in 0..len {
        let dt =
            A::cast_from(delta[bi * delta.stride(0) + t * delta.stride(1) + k * delta.stride(2)]);
        let x = A::cast_from(u[bi * u.stride(0) + t * u.stride(1) + k * u.stride(2)]);
        let brow = bi * b.stride(0) + t * b.stride(1);
        let crow = bi * c.stride(0) + t * c.stride(1);
        let dtx = dt * x;
        let mut acc = A::new(0.0);
        #[unroll]
        for s in 0..n {
            let hs = (dt * av[s]).exp() * h[s] + dtx * A::cast_from(b[brow + s * b.stride(2)]);
            h[s] = hs;
            acc += A::cast_from(c[crow + s * c.stride(2)]) * hs;
        }
        y[bi * y.stride(0) + t * y.stride(1) + k * y.stride(2)] = F::cast_from(acc + dk * x);
    }
}

/// Backward scan: pass 1 stores checkpoints, pass 2 walks the chunks in reverse. `F` and `A`
/// as in the forward: the checkpoints, the carry and the partial sums are `A`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn scan_backward_kernel<F: Float, A: Float>(
    u: &Tensor<F>,           // [Bt, L, D]
    delta: &Tensor<F>,       // [Bt, L, D]
    a: &Tensor<A>,           // [D, N], f32 (see the forward)
    b: &Tensor<F>,           // [Bt, L, N]
    c: &Tensor<F>,           // [Bt, L, N]
    d: &Tensor<A>,           // [D], f32
    grad: &Tensor<F>,        // [Bt, L, D], dL/dy
    ckpt: &mut Tensor<A>,    // [chunks, N, Bt, D_pad], contiguous scratch
    du: &mut Tensor<F>,      // [Bt, L, D]
    ddelta: &mut Tensor<F>,  // [Bt, L, D]
    da_part: &mut Tensor<A>, // [Bt, D, N]
    db_part: &mut Tensor<A>, // [Bt, L, G, N]
    dc_part: &mut Tensor<A>, // [Bt, L, G, N]
    dd_part: &mut Tensor<A>, // [Bt, D]
    #[comptime] n: usize,
    #[comptime] chunk: usize,
    #[comptime] states_len: usize, // (chunk + 1) * n
    #[comptime] planes: bool,      // hardware plane sums, else shared-memory groups
    #[comptime] group: usize,      // group width without planes (divides the cube width)
    #[comptime] cube_dim: usize,   // units per cube (shared-memory size without planes)
    #[define(F, A)] _dtypes: [StorageType; 2],
) {
    let batch = u.shape(0);
    let len = u.shape(1);
    let ch = u.shape(2);
    let dpad = ckpt.shape(3);
    let bi = CUBE_POS_Y as usize;
    let k = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    // Lanes past the last channel read channel 0 with a zero mask: their state and carry
    // stay zero, so they add nothing to the plane sums, and they write nothing.
    let valid = k < ch;
    let mut kc = 0usize;
    if valid {
        kc = k;
    }
    let mask = if valid { A::new(1.0) } else { A::new(0.0) };
    // Partial column `g` of this unit's plane (or group) and its lane in it.
    let unit = UNIT_POS_X as usize;
    let g = if planes {
        (CUBE_POS_X * (CUBE_DIM_X / PLANE_DIM) + PLANE_POS) as usize
    } else {
        CUBE_POS_X as usize * (cube_dim / group) + unit / group
    };
    let lane = if planes {
        UNIT_POS_PLANE as usize
    } else {
        unit % group
    };
    let width = if planes {
        PLANE_DIM as usize
    } else {
        group.runtime()
    };
    // Only used without planes: one slot per unit for dB, then one per unit for dC.
    let mut sums = SharedMemory::<A>::new(2 * cube_dim);

    let mut av = Array::<A>::new(n);
    let mut h = Array::<A>::new(n);
    #[unroll]
    for s in 0..n {
        av[s] = a[kc * a.stride(0) + s * a.stride(1)];
        h[s] = A::new(0.0);
    }
    let dk = d[kc * d.stride(0)];

    // Pass 1: forward recurrence, checkpointing the state before steps 0, CHUNK, 2·CHUNK, …
    for t in 0..len {
        if t % chunk == 0 {
            let ci = t / chunk;
            #[unroll]
            for s in 0..n {
                ckpt[((ci * n + s) * batch + bi) * dpad + k] = h[s];
            }
        }
        let dt =
            A::cast_from(delta[bi * delta.stride(0) + t * delta.stride(1) + kc * delta.stride(2)])
                * mask;
        let x = A::cast_from(u[bi * u.stride(0) + t * u.stride(1) + kc * u.stride(2)]) * mask;
        let brow = bi * b.stride(0) + t * b.stride(1);
        let dtx = dt * x;
        #[unroll]
        for s in 0..n {
            h[s] = (dt * av[s]).exp() * h[s] + dtx * A::cast_from(b[brow + s * b.stride(2)]);
        }
    }

    // Pass 2: reverse over chunks.
    let mut carry = Array::<A>::new(n); // dL/dh_t coming from step t + 1
    let mut dav = Array::<A>::new(n);
    #[unroll]
    for s in 0..n {
        carry[s] = A::new(0.0);
        dav[s] = A::new(0.0);
    }
    let mut dd = A::new(0.0);
    // states[i·N + s]: the state before step t0 + i (i = 0 is the checkpoint).
    let mut states = Array::<A>::new(states_len);
    let chunks = len.div_ceil(chunk);
    for rc in 0..chunks {
        let ci = chunks - 1 - rc;
        let t0 = ci * chunk;
        let mut t1 = t0 + chunk;
        if t1 > len {
            t1 = len;
        }
        #[unroll]
        for s in 0..n {
            states[s] = ckpt[((ci * n + s) * batch + bi) * dpad + k];
        }
        for t in t0..t1 {
            let i = t - t0;
            let dt = A::cast_from(
                delta[bi * delta.stride(0) + t * delta.stride(1) + kc * delta.stride(2)],
            ) * mask;
            let x = A::cast_from(u[bi * u.stride(0) + t * u.stride(1) + kc * u.stride(2)]) * mask;
            let brow = bi * b.stride(0) + t * b.stride(1);
            let dtx = dt * x;
            #[unroll]
            for s in 0..n {
                states[(i + 1) * n + s] = (dt * av[s]).exp() * states[i * n + s]
                    + dtx * A::cast_from(b[brow + s * b.stride(2)]);
            }
        }
        let steps = t1 - t0;
        for ri in 0..steps {
            let i = steps - 1 - ri;
            let t = t0 + i;
            let iu = bi * u.stride(0) + t * u.stride(1) + kc * u.stride(2);
            let dt = A::cast_from(
                delta[bi * delta.stride(0) + t * delta.stride(1) + kc * delta.stride(2)],
            ) * mask;
            let x = A::cast_from(u[iu]) * mask;
            let dy =
                A::cast_from(grad[bi * grad.stride(0) + t * grad.stride(1) + kc * grad.stride(2)])
                    * mask;
            let brow = bi * b.stride(0) + t * b.stride(1);
            let crow = bi * c.stride(0) + t * c.stride(1);
            let prow = bi * db_part.stride(0) + t * db_part.stride(1) + g * db_part.stride(2);
            let qrow = bi * dc_part.stride(0) + t * dc_part.stride(1) + g * dc_part.stride(2);
            dd += dy * x;
            let mut dx = dy * dk;
            let mut ddt = A::new(0.0);
            #[unroll]
            for s in 0..n {
                let hs = states[(i + 1) * n + s];
                let prev = states[i * n + s];
                let bs = A::cast_from(b[brow + s * b.stride(2)]);
                let cs = A::cast_from(c[crow + s * c.stride(2)]);
                let gs = carry[s] + dy * cs; // dL/dh_t
                let decay = (dt * av[s]).exp();
                ddt += gs * (av[s] * decay * prev + bs * x);
                dav[s] += gs * dt * decay * prev;
                dx += gs * dt * bs;
                carry[s] = gs * decay;
                let db_unit = gs * dt * x;
                let dc_unit = dy * hs;
                let mut db_sum = A::new(0.0);
                let mut dc_sum = A::new(0.0);
                if planes {
                    db_sum = plane_sum(db_unit);
                    dc_sum = plane_sum(dc_unit);
                } else {
                    sums[unit] = db_unit;
                    sums[cube_dim + unit] = dc_unit;
                    sync_cube();
                    let base = unit - lane;
                    for j in 0..group {
                        db_sum += sums[base + j];
                        dc_sum += sums[cube_dim + base + j];
                    }
                    sync_cube();
                }
                // Spread the N writes over the plane's lanes.
                if lane == s % width {
                    db_part[prow + s * db_part.stride(3)] = db_sum;
                    dc_part[qrow + s * dc_part.stride(3)] = dc_sum;
                }
            }
            if valid {
                du[bi * du.stride(0) + t * du.stride(1) + k * du.stride(2)] = F::cast_from(dx);
                ddelta[bi * ddelta.stride(0) + t * ddelta.stride(1) + k * ddelta.stride(2)] =
                    F::cast_from(ddt);
            }
        }
    }
    if valid {
        dd_part[bi * dd_part.stride(0) + k * dd_part.stride(1)] = dd;
        #[unroll]
        for s in 0..n {
            da_part[bi * da_part.stride(0) + k * da_part.stride(1) + s * da_part.stride(2)] =
                dav[s];
        }
    }
}

/// Shapes `[Bt, L, D, N]` of a scan call.
fn dims<R: CubeRuntime>(u: &CubeTensor<R>, a: &CubeTensor<R>) -> [usize; 4] {
    let us = u.meta.shape();
    let as_ = a.meta.shape();
    [us[0], us[1], us[2], as_[1]]
}

/// Launch geometry, and whether the device has plane (warp) operations. Without them (e.g.
/// wgpu on a CPU Vulkan driver) the `dB`/`dC` sums run over groups of [`FALLBACK_GROUP`] units
/// through shared memory instead: slower, same layout, same results.
fn geometry<R: CubeRuntime>(client: &ComputeClient<R>, len: usize, ch: usize) -> (Geometry, bool) {
    let props = client.properties();
    let planes = props.features.plane.contains(Plane::Ops);
    let (min, max) = if planes {
        let hw = &props.hardware;
        (hw.plane_size_min as usize, hw.plane_size_max as usize)
    } else {
        (FALLBACK_GROUP, FALLBACK_GROUP)
    };
    (Geometry::new(len, ch, min, max), planes)
}

/// `y` for the inputs of [`ScanBackend::selective_scan`], on a CubeCL backend.
pub(crate) fn forward<R: CubeRuntime>(
    u: CubeTensor<R>,
    delta: CubeTensor<R>,
    a: CubeTensor<R>,
    b: CubeTensor<R>,
    c: CubeTensor<R>,
    d: CubeTensor<R>,
) -> CubeTensor<R> {
    let [u, delta, a, b, c, d] = [u, delta, a, b, c, d].map(into_contiguous);
    let [bt, l, ch, n] = dims(&u, &a);
    let client = u.client.clone();
    let dtype = u.dtype;
    same_dtype(dtype, &[&delta, &b, &c]);
    let acc = accumulation_dtype(dtype);
    let (a, d) = (cast(a, acc), cast(d, acc));
    let y = empty_device_dtype::<R>(client.clone(), u.device.clone(), [bt, l, ch].into(), dtype);
    if bt * l * ch == 0 {
        return y;
    }
    let (geo, _) = geometry(&client, l, ch);
    scan_forward_kernel::launch::<R>(
        &client,
        CubeCount::Static(geo.cubes_x as u32, bt as u32, 1),
        CubeDim::new_1d(geo.cube_dim_x as u32),
        u.into_tensor_arg(),
        delta.into_tensor_arg(),
        a.into_tensor_arg(),
        b.into_tensor_arg(),
        c.into_tensor_arg(),
        d.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        n,
        [dtype.into(), acc.into()],
    );
    y
}

/// Gradients `[du, dΔ, dA, dB, dC, dD]` of `sum(y ⊙ grad)`, on a CubeCL backend.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<R, F, I, BT>(
    u: CubeTensor<R>,
    delta: CubeTensor<R>,
    a: CubeTensor<R>,
    b: CubeTensor<R>,
    c: CubeTensor<R>,
    d: CubeTensor<R>,
    grad: CubeTensor<R>,
) -> [CubeTensor<R>; 6]
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let [u, delta, a, b, c, d, grad] = [u, delta, a, b, c, d, grad].map(into_contiguous);
    let [bt, l, ch, n] = dims(&u, &a);
    let client = u.client.clone();
    let device = u.device.clone();
    let dtype = u.dtype;
    same_dtype(dtype, &[&delta, &b, &c, &grad]);
    let acc = accumulation_dtype(dtype);
    // dA and dD go back in the dtype `a` and `d` came in (f32 under `precision`).
    let (a_dtype, d_dtype) = (a.dtype, d.dtype);
    let (a, d) = (cast(a, acc), cast(d, acc));
    let (geo, planes) = geometry(&client, l, ch);
    let empty = |shape: Vec<usize>| {
        empty_device_dtype::<R>(client.clone(), device.clone(), shape.into(), dtype)
    };
    let zeros =
        |shape: Vec<usize>| zeros_client::<R>(client.clone(), device.clone(), shape.into(), acc);
    let du = empty(vec![bt, l, ch]);
    let ddelta = empty(vec![bt, l, ch]);
    // Partials are zero-filled: a device whose plane is wider than `plane_size_min` leaves
    // some columns of dB/dC unwritten, and empty inputs write nothing at all.
    let da_part = zeros(vec![bt, ch, n]);
    let db_part = zeros(vec![bt, l, geo.groups, n]);
    let dc_part = zeros(vec![bt, l, geo.groups, n]);
    let dd_part = zeros(vec![bt, ch]);
    if bt * l * ch * n > 0 {
        let ckpt = empty_device_contiguous_dtype::<R>(
            client.clone(),
            device.clone(),
            [geo.chunks, n, bt, geo.padded_channels()].into(),
            acc,
        );
        scan_backward_kernel::launch::<R>(
            &client,
            CubeCount::Static(geo.cubes_x as u32, bt as u32, 1),
            CubeDim::new_1d(geo.cube_dim_x as u32),
            u.into_tensor_arg(),
            delta.into_tensor_arg(),
            a.into_tensor_arg(),
            b.into_tensor_arg(),
            c.into_tensor_arg(),
            d.into_tensor_arg(),
            grad.into_tensor_arg(),
            ckpt.into_tensor_arg(),
            du.clone().into_tensor_arg(),
            ddelta.clone().into_tensor_arg(),
            da_part.clone().into_tensor_arg(),
            db_part.clone().into_tensor_arg(),
            dc_part.clone().into_tensor_arg(),
            dd_part.clone().into_tensor_arg(),
            n,
            CHUNK,
            (CHUNK + 1) * n,
            planes,
            FALLBACK_GROUP,
            geo.cube_dim_x,
            [dtype.into(), acc.into()],
        );
    }
    // Reduce the partials with Burn's own kernels, in `acc`, then return to the inputs' dtype.
    type Cb<R, F, I, BT> = CubeBackend<R, F, I, BT>;
    [
        du,
        ddelta,
        sum_dim::<Cb<R, F, I, BT>, 3, 2>(da_part, 0, [ch, n], a_dtype),
        sum_dim::<Cb<R, F, I, BT>, 4, 3>(db_part, 2, [bt, l, n], dtype),
        sum_dim::<Cb<R, F, I, BT>, 4, 3>(dc_part, 2, [bt, l, n], dtype),
        sum_dim::<Cb<R, F, I, BT>, 2, 1>(dd_part, 0, [ch], d_dtype),
    ]
}

/// The kernels read every input but `a` and `d` in one dtype: a mismatch would be read as
/// the wrong type, silently.
pub(crate) fn same_dtype<R: CubeRuntime>(dtype: DType, others: &[&CubeTensor<R>]) {
    for t in others {
        assert_eq!(t.dtype, dtype, "CubeCL kernel inputs of mixed dtypes");
    }
}

/// `t.sum_dim(dim)` reshaped to `shape`, as `dtype`.
fn sum_dim<B: Backend, const D: usize, const D2: usize>(
    t: FloatTensor<B>,
    dim: usize,
    shape: [usize; D2],
    dtype: DType,
) -> FloatTensor<B> {
    BurnTensor::<B, D>::from_primitive(TensorPrimitive::Float(t))
        .sum_dim(dim)
        .reshape(shape)
        .cast(FloatDType::from(dtype))
        .into_primitive()
        .tensor()
}

/// Every CubeCL backend without fusion (`burn::backend::Cuda` and `burn::backend::Wgpu` as
/// this workspace configures them) runs the scan with the kernels above, and the attention
/// with those of `crate::attention_cubecl`.
impl<R, F, I, BT> ScanBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn selective_scan(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        forward(u, delta, a, b, c, d)
    }

    fn selective_scan_backward(
        u: FloatTensor<Self>,
        delta: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 6] {
        backward::<R, F, I, BT>(u, delta, a, b, c, d, grad)
    }

    fn device_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !crate::attention_cubecl::takes(&q) {
            return crate::fused::forward_reference::<Self>(q, k, v);
        }
        crate::attention_cubecl::forward(q, k, v)
    }

    fn device_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        if !crate::attention_cubecl::takes(&q) {
            return crate::fused::backward_reference::<Self>(q, k, v, o, lse, dout);
        }
        crate::attention_cubecl::backward::<R, F, I, BT>(q, k, v, o, lse, dout)
    }
}
