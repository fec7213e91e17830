//! Causal softmax attention as CubeCL kernels, forward and backward, for the attention block's
//! plain variant on CUDA (and, for testing without an NVIDIA GPU, wgpu). Nothing of size
//! `[L, L]` is ever stored: the forward keeps an online softmax per query row and saves the
//! row's log-sum-exp; the backward rebuilds each probability from it (as FlashAttention-2).
//!
//! Layout, with `q`, `k`, `v`, `o`, `dout` `[batch, H, L, dh]` (any strides) and `lse`, `rows`
//! `[batch, H, L]` contiguous: one unit per row, a cube is [`ROWS_PER_CUBE`] consecutive rows of
//! one (batch item, head) (`CUBE_POS_Y`). In the forward and the `dq` kernel a unit owns a query
//! row `i` and walks the keys `j ≤ i`; in the `dk`/`dv` kernel a unit owns a key row `j` and
//! walks the queries `i ≥ j`. The walks run in lockstep over the cube (masked where a row has
//! no such pair), so at each step every lane reads the same key (or query) row: one broadcast
//! load per cube, no shared memory and no atomics (deterministic). The head dimension is a
//! compile-time parameter: the unit's rows and sums live in local arrays of `dh` values.
//!
//! `F` is the tensors' dtype (f32, or bf16/f16 under `[train] precision`); scores, the softmax
//! and every sum are `A` = f32.
use burn::tensor::{Tensor as BurnTensor, TensorPrimitive};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement, kernel::into_contiguous,
    ops::numeric::empty_device_dtype, tensor::CubeTensor,
};
use cubecl::prelude::*;

use crate::precision::accumulation_dtype;

/// Rows (units) per cube.
pub(crate) const ROWS_PER_CUBE: usize = 64;

/// The widest head the kernels take. A unit keeps three or four rows of `dh` f32 values in
/// registers; wider heads would spill them to local memory on every key, so those run the
/// tensor-op path instead (`ScanBackend::device_attention_forward`'s default) until a tiled
/// kernel exists.
pub(crate) const MAX_HEAD_DIM: usize = 64;

/// Whether `q` `[batch, H, L, dh]` goes to the kernels.
pub(crate) fn takes<R: CubeRuntime>(q: &CubeTensor<R>) -> bool {
    q.meta.shape()[3] <= MAX_HEAD_DIM
}

/// Forward: per query row `i`, the online softmax over keys `0..=i`.
#[cube(launch)]
fn attention_forward_kernel<F: Float, A: Float>(
    q: &Tensor<F>,       // [batch, H, L, dh]
    k: &Tensor<F>,       // [batch, H, L, dh]
    v: &Tensor<F>,       // [batch, H, L, dh]
    o: &mut Tensor<F>,   // [batch, H, L, dh]
    lse: &mut Tensor<A>, // [batch, H, L], contiguous
    scale: InputScalar,
    #[comptime] dh: usize,
    #[define(F, A)] _dtypes: [StorageType; 2],
) {
    let scale = scale.get::<A>();
    let heads = q.shape(1);
    let len = q.shape(2);
    let bh = CUBE_POS_Y as usize;
    let (b, h) = (bh / heads, bh % heads);
    let i = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    if i >= len {
        terminate!();
    }
    let qrow = b * q.stride(0) + h * q.stride(1) + i * q.stride(2);
    let kbase = b * k.stride(0) + h * k.stride(1);
    let vbase = b * v.stride(0) + h * v.stride(1);
    let mut qi = Array::<A>::new(dh);
    let mut acc = Array::<A>::new(dh);
    // Key 0 is always attended: it starts the running max, sum and output.
    let mut s0 = A::new(0.0);
    #[unroll]
    for d in 0..dh {
        qi[d] = A::cast_from(q[qrow + d * q.stride(3)]) * scale;
        s0 += qi[d] * A::cast_from(k[kbase + d * k.stride(3)]);
    }
    #[unroll]
    for d in 0..dh {
        acc[d] = A::cast_from(v[vbase + d * v.stride(3)]);
    }
    let mut m = s0;
    let mut l = A::new(1.0);
    for j in 1..i + 1 {
        let krow = kbase + j * k.stride(2);
        let vrow = vbase + j * v.stride(2);
        let mut s = A::new(0.0);
        #[unroll]
        for d in 0..dh {
            s += qi[d] * A::cast_from(k[krow + d * k.stride(3)]);
        }
        let m_new = if s > m { s } else { m };
        let carry = (m - m_new).exp();
        let p = (s - m_new).exp();
        l = l * carry + p;
        #[unroll]
        for d in 0..dh {
            acc[d] = acc[d] * carry + p * A::cast_from(v[vrow + d * v.stride(3)]);
        }
        m = m_new;
    }
    let orow = b * o.stride(0) + h * o.stride(1) + i * o.stride(2);
    let inv = A::new(1.0) / l;
    #[unroll]
    for d in 0..dh {
        o[orow + d * o.stride(3)] = F::cast_from(acc[d] * inv);
    }
    lse[bh * len + i] = m + l.ln();
}

/// `dq`: per query row `i`, over keys `j ≤ i`: `dq_i = scale · Σ_j p_ij (dp_ij − rows_i) k_j`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dq_kernel<F: Float, A: Float>(
    q: &Tensor<F>,      // [batch, H, L, dh]
    k: &Tensor<F>,      // [batch, H, L, dh]
    v: &Tensor<F>,      // [batch, H, L, dh]
    dout: &Tensor<F>,   // [batch, H, L, dh]
    lse: &Tensor<A>,    // [batch, H, L], contiguous
    rows: &Tensor<A>,   // [batch, H, L], contiguous: Σ_d dout·o
    dq: &mut Tensor<F>, // [batch, H, L, dh]
    scale: InputScalar,
    #[comptime] dh: usize,
    #[define(F, A)] _dtypes: [StorageType; 2],
) {
    let scale = scale.get::<A>();
    let heads = q.shape(1);
    let len = q.shape(2);
    let bh = CUBE_POS_Y as usize;
    let (b, h) = (bh / heads, bh % heads);
    let first = (CUBE_POS_X * CUBE_DIM_X) as usize;
    let i = first + UNIT_POS_X as usize;
    // Past the last row, a lane follows the last row's walk (same loads) and writes nothing.
    let valid = i < len;
    let mut ic = len - 1;
    if valid {
        ic = i;
    }
    let qrow = b * q.stride(0) + h * q.stride(1) + ic * q.stride(2);
    let grow = b * dout.stride(0) + h * dout.stride(1) + ic * dout.stride(2);
    let kbase = b * k.stride(0) + h * k.stride(1);
    let vbase = b * v.stride(0) + h * v.stride(1);
    let mut qi = Array::<A>::new(dh);
    let mut gi = Array::<A>::new(dh);
    let mut acc = Array::<A>::new(dh);
    #[unroll]
    for d in 0..dh {
        qi[d] = A::cast_from(q[qrow + d * q.stride(3)]) * scale;
        gi[d] = A::cast_from(dout[grow + d * dout.stride(3)]);
        acc[d] = A::new(0.0);
    }
    let lse_i = lse[bh * len + ic];
    let rows_i = rows[bh * len + ic];
    // The cube's last row bounds the walk: every lane loads the same key row at each step.
    let mut last = first + CUBE_DIM_X as usize - 1;
    if last >= len {
        last = len - 1;
    }
    for j in 0..last + 1 {
        if j <= ic {
            let krow = kbase + j * k.stride(2);
            let vrow = vbase + j * v.stride(2);
            let mut s = A::new(0.0);
            let mut dp = A::new(0.0);
            #[unroll]
            for d in 0..dh {
                s += qi[d] * A::cast_from(k[krow + d * k.stride(3)]);
                dp += gi[d] * A::cast_from(v[vrow + d * v.stride(3)]);
            }
            let ds = (s - lse_i).exp() * (dp - rows_i);
            #[unroll]
            for d in 0..dh {
                acc[d] += ds * A::cast_from(k[krow + d * k.stride(3)]);
            }
        }
    }
    if valid {
        let row = b * dq.stride(0) + h * dq.stride(1) + i * dq.stride(2);
        #[unroll]
        for d in 0..dh {
            dq[row + d * dq.stride(3)] = F::cast_from(acc[d] * scale);
        }
    }
}

/// `dk`, `dv`: per key row `j`, over queries `i ≥ j`: `dv_j = Σ_i p_ij dout_i`,
/// `dk_j = scale · Σ_i p_ij (dp_ij − rows_i) q_i`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn attention_dkv_kernel<F: Float, A: Float>(
    q: &Tensor<F>,      // [batch, H, L, dh]
    k: &Tensor<F>,      // [batch, H, L, dh]
    v: &Tensor<F>,      // [batch, H, L, dh]
    dout: &Tensor<F>,   // [batch, H, L, dh]
    lse: &Tensor<A>,    // [batch, H, L], contiguous
    rows: &Tensor<A>,   // [batch, H, L], contiguous
    dk: &mut Tensor<F>, // [batch, H, L, dh]
    dv: &mut Tensor<F>, // [batch, H, L, dh]
    scale: InputScalar,
    #[comptime] dh: usize,
    #[define(F, A)] _dtypes: [StorageType; 2],
) {
    let scale = scale.get::<A>();
    let heads = q.shape(1);
    let len = q.shape(2);
    let bh = CUBE_POS_Y as usize;
    let (b, h) = (bh / heads, bh % heads);
    let first = (CUBE_POS_X * CUBE_DIM_X) as usize;
    let j = first + UNIT_POS_X as usize;
    if first >= len {
        terminate!();
    }
    let valid = j < len;
    let mut jc = len - 1;
    if valid {
        jc = j;
    }
    let krow = b * k.stride(0) + h * k.stride(1) + jc * k.stride(2);
    let vrow = b * v.stride(0) + h * v.stride(1) + jc * v.stride(2);
    let qbase = b * q.stride(0) + h * q.stride(1);
    let gbase = b * dout.stride(0) + h * dout.stride(1);
    let mut kj = Array::<A>::new(dh);
    let mut vj = Array::<A>::new(dh);
    let mut dka = Array::<A>::new(dh);
    let mut dva = Array::<A>::new(dh);
    #[unroll]
    for d in 0..dh {
        kj[d] = A::cast_from(k[krow + d * k.stride(3)]) * scale;
        vj[d] = A::cast_from(v[vrow + d * v.stride(3)]);
        dka[d] = A::new(0.0);
        dva[d] = A::new(0.0);
    }
    // The cube's first row bounds the walk, so every lane loads the same query row per step.
    for i in first..len {
        if i >= jc && valid {
            let qrow = qbase + i * q.stride(2);
            let grow = gbase + i * dout.stride(2);
            let mut s = A::new(0.0);
            let mut dp = A::new(0.0);
            #[unroll]
            for d in 0..dh {
                s += kj[d] * A::cast_from(q[qrow + d * q.stride(3)]);
                dp += vj[d] * A::cast_from(dout[grow + d * dout.stride(3)]);
            }
            let p = (s - lse[bh * len + i]).exp();
            let ds = p * (dp - rows[bh * len + i]);
            #[unroll]
            for d in 0..dh {
                dva[d] += p * A::cast_from(dout[grow + d * dout.stride(3)]);
                dka[d] += ds * A::cast_from(q[qrow + d * q.stride(3)]);
            }
        }
    }
    if valid {
        let krow_out = b * dk.stride(0) + h * dk.stride(1) + j * dk.stride(2);
        let vrow_out = b * dv.stride(0) + h * dv.stride(1) + j * dv.stride(2);
        #[unroll]
        for d in 0..dh {
            dk[krow_out + d * dk.stride(3)] = F::cast_from(dka[d] * scale);
            dv[vrow_out + d * dv.stride(3)] = F::cast_from(dva[d]);
        }
    }
}

/// `[batch, H, L, dh]` and the launch grid: cubes of [`ROWS_PER_CUBE`] rows along x, one
/// (batch item, head) per y.
fn grid<R: CubeRuntime>(q: &CubeTensor<R>) -> ([usize; 4], CubeCount, CubeDim) {
    let s = q.meta.shape();
    let dims = [s[0], s[1], s[2], s[3]];
    assert!(
        dims[0] * dims[1] <= 65_535,
        "attention kernels: batch × heads = {} exceeds the 65,535 cubes a grid's y can hold",
        dims[0] * dims[1]
    );
    let count = CubeCount::Static(
        dims[2].div_ceil(ROWS_PER_CUBE) as u32,
        (dims[0] * dims[1]) as u32,
        1,
    );
    (dims, count, CubeDim::new_1d(ROWS_PER_CUBE as u32))
}

/// `(o, lse)` on a CubeCL backend.
pub(crate) fn forward<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let (dims, count, cube_dim) = grid(&q);
    let [batch, heads, len, dh] = dims;
    let client = q.client.clone();
    let device = q.device.clone();
    let dtype = q.dtype;
    crate::scan_cubecl::same_dtype(dtype, &[&k, &v]);
    let acc = accumulation_dtype(dtype);
    let o = empty_device_dtype::<R>(client.clone(), device.clone(), dims.into(), dtype);
    let lse = empty_device_dtype::<R>(client.clone(), device, [batch, heads, len].into(), acc);
    if batch * heads * len * dh == 0 {
        return (o, lse);
    }
    let scale = 1.0 / (dh as f32).sqrt();
    attention_forward_kernel::launch::<R>(
        &client,
        count,
        cube_dim,
        q.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        o.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        InputScalar::new(scale, acc),
        dh,
        [dtype.into(), acc.into()],
    );
    (o, lse)
}

/// `[dq, dk, dv]` on a CubeCL backend.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<R, F, I, BT>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    o: CubeTensor<R>,
    lse: CubeTensor<R>,
    dout: CubeTensor<R>,
) -> [CubeTensor<R>; 3]
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    let (dims, count, cube_dim) = grid(&q);
    let [batch, heads, len, dh] = dims;
    let client = q.client.clone();
    let device = q.device.clone();
    let dtype = q.dtype;
    crate::scan_cubecl::same_dtype(dtype, &[&k, &v, &o, &dout]);
    let acc = accumulation_dtype(dtype);
    let lse = into_contiguous(lse);
    let empty = || empty_device_dtype::<R>(client.clone(), device.clone(), dims.into(), dtype);
    let (dq, dk, dv) = (empty(), empty(), empty());
    if batch * heads * len * dh == 0 {
        return [dq, dk, dv];
    }
    // rows_i = Σ_d dout·o (= Σ_j p_ij dp_ij), in f32, with Burn's own kernels.
    type Cb<R, F, I, BT> = CubeBackend<R, F, I, BT>;
    let wrap = |t: CubeTensor<R>| {
        BurnTensor::<Cb<R, F, I, BT>, 4>::from_primitive(TensorPrimitive::Float(t))
    };
    let rows = (wrap(dout.clone()).cast(acc) * wrap(o).cast(acc))
        .sum_dim(3)
        .reshape([batch, heads, len])
        .into_primitive()
        .tensor();
    let rows = into_contiguous(rows);
    let scale = 1.0 / (dh as f32).sqrt();
    attention_dq_kernel::launch::<R>(
        &client,
        count.clone(),
        cube_dim,
        q.clone().into_tensor_arg(),
        k.clone().into_tensor_arg(),
        v.clone().into_tensor_arg(),
        dout.clone().into_tensor_arg(),
        lse.clone().into_tensor_arg(),
        rows.clone().into_tensor_arg(),
        dq.clone().into_tensor_arg(),
        InputScalar::new(scale, acc),
        dh,
        [dtype.into(), acc.into()],
    );
    attention_dkv_kernel::launch::<R>(
        &client,
        count,
        cube_dim,
        q.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        dout.into_tensor_arg(),
        lse.into_tensor_arg(),
        rows.into_tensor_arg(),
        dk.clone().into_tensor_arg(),
        dv.clone().into_tensor_arg(),
        InputScalar::new(scale, acc),
        dh,
        [dtype.into(), acc.into()],
    );
    [dq, dk, dv]
}
