//! Host (CPU) kernels of the selective scan: forward and hand-written backward.
//!
//! Work is split into tasks of (batch item, block of [`BLOCK`] channels) for rayon; inside a
//! task the time loop is outermost, then the state dimension, and the block's channels are the
//! SIMD lanes, so each step has `N · BLOCK / LANES` independent recurrences and `C_t · h_t`
//! needs no horizontal sum. `exp` is a branch-free polynomial ([`exp_with`]) so it vectorises
//! too (libm's `expf` was a third of a training step). On x86-64 the block kernels are compiled
//! again for AVX2 + FMA and for AVX-512, and the best copy the CPU has is picked at run time.
//!
//! Shapes: `u`, `delta`: `[batch, L, d_inner]`; `a`: `[d_inner, N]`; `b`, `c`:
//! `[batch, L, N]`; `d`: `[d_inner]`.
use rayon::prelude::*;

use super::fill::{filled, filled2};

mod math;
pub(crate) use math::{exp_fused, madd_fused, sigmoid, silu_and_grad, softplus};
use math::{exp_with, madd};

/// Channels per task.
const BLOCK: usize = 16;
/// SIMD lanes of the state loop.
const LANES: usize = 8;

type Lane = [f32; LANES];

/// `s[i..i + LANES]` as an array (fixed length, so the lane loops vectorise).
#[inline(always)]
fn lane_mut(s: &mut [f32], i: usize) -> &mut Lane {
    (&mut s[i..i + LANES]).try_into().expect("lane in bounds")
}

/// Host copies of the scan inputs, row-major.
pub(crate) struct HostInputs {
    pub(crate) batch: usize,
    pub(crate) len: usize,
    pub(crate) channels: usize,
    pub(crate) state: usize,
    pub(crate) u: Vec<f32>,
    pub(crate) delta: Vec<f32>,
    pub(crate) a: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) c: Vec<f32>,
    pub(crate) d: Vec<f32>,
    /// The state before the first step, `[batch, channels, N]`; `None` means zeros. It is a
    /// constant of the op (no gradient flows into it): `[train] state_init` feeds noise or
    /// another sequence's final state here.
    pub(crate) h0: Option<Vec<f32>>,
}

/// Gradients produced by [`HostInputs::backward`].
pub(crate) struct HostGrads {
    pub(crate) du: Vec<f32>,
    pub(crate) ddelta: Vec<f32>,
    pub(crate) da: Vec<f32>,
    pub(crate) db: Vec<f32>,
    pub(crate) dc: Vec<f32>,
    pub(crate) dd: Vec<f32>,
}

/// One task's share of the gradients: channels `k0..k0 + width` of one batch item.
struct BlockGrads {
    k0: usize,
    width: usize,
    du: Vec<f32>,     // [L, width]
    ddelta: Vec<f32>, // [L, width]
    da: Vec<f32>,     // [width, N]
    db: Vec<f32>,     // [L, N]
    dc: Vec<f32>,     // [L, N]
    dd: Vec<f32>,     // [width]
}

/// One value per channel of a block (channels in SIMD lanes: [`BLOCK`] / [`LANES`] vectors).
type Blk = [f32; BLOCK];

const _: () = assert!(BLOCK == 2 * LANES, "the lane folds below add two halves");

/// `s[i..i + BLOCK]` as an array.
#[inline(always)]
fn blk(s: &[f32], i: usize) -> &Blk {
    s[i..i + BLOCK].try_into().expect("block in bounds")
}

#[inline(always)]
fn blk_mut(s: &mut [f32], i: usize) -> &mut Blk {
    (&mut s[i..i + BLOCK]).try_into().expect("block in bounds")
}

/// Channels `k0..k0 + w` of `v` (`[rows, channels]`) at `row`, zero-padded to [`BLOCK`].
#[inline(always)]
fn gather(v: &[f32], row: usize, channels: usize, k0: usize, w: usize) -> Blk {
    let at = row * channels + k0;
    if w == BLOCK {
        // A fixed-size copy is a register move; the general one is a `memmove` call (perf: ~3%
        // of a step from the kernels' gathers).
        return *blk(v, at);
    }
    let mut out: Blk = [0.0; BLOCK];
    out[..w].copy_from_slice(&v[at..at + w]);
    out
}

/// `dst.copy_from_slice(src)`, as a fixed-size copy when it is a whole block (see [`gather`]).
#[inline(always)]
fn copy_block(dst: &mut [f32], src: &[f32]) {
    match (<&mut Blk>::try_from(&mut *dst), <&Blk>::try_from(src)) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

/// `out[k] = Σ_i p[8k + i]`: folds the lane partial sums of `dB` and `dC`.
#[inline(always)]
fn reduce_lanes(p: &[f32], out: &mut [f32]) {
    for (o, l) in out.iter_mut().zip(p.chunks_exact(LANES)) {
        *o = l.iter().sum();
    }
}

/// Which compiled copy of the block kernels runs: the baseline one, or (x86-64) one compiled
/// for AVX2 + FMA or for AVX-512, picked at run time. With AVX-512 a block of 16 channels is
/// one vector register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Baseline,
    Avx2,
    Avx512,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                if has!("avx512f") && has!("avx512vl") {
                    return Isa::Avx512;
                }
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// Every copy this CPU can run (for tests).
    #[cfg(test)]
    fn all_supported() -> Vec<Self> {
        match Isa::detect() {
            Isa::Baseline => vec![Isa::Baseline],
            Isa::Avx2 => vec![Isa::Baseline, Isa::Avx2],
            Isa::Avx512 => vec![Isa::Baseline, Isa::Avx2, Isa::Avx512],
        }
    }

    fn forward_block(self, s: &HostInputs, bi: usize, k0: usize, w: usize) -> BlockOut {
        match self {
            // SAFETY: `detect` saw these features (tests pass only detected ones).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::forward_block(s, bi, k0, w) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::forward_block(s, bi, k0, w) },
            _ => forward_block::<false>(s, bi, k0, w),
        }
    }

    fn backward_block(
        self,
        s: &HostInputs,
        grad: &[f32],
        bi: usize,
        k0: usize,
        w: usize,
    ) -> BlockGrads {
        match self {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::backward_block(s, grad, bi, k0, w) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::backward_block(s, grad, bi, k0, w) },
            _ => backward_block::<false>(s, grad, bi, k0, w, reduce_lanes),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512;
pub(crate) mod elementwise;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// `A` of channels `k0..k0 + w` transposed to `[N, BLOCK]` (zero-padded) and `D` padded.
fn block_params(s: &HostInputs, k0: usize, w: usize) -> (Vec<f32>, Blk) {
    let n = s.state;
    let mut at = vec![0.0f32; n * BLOCK];
    for j in 0..w {
        for st in 0..n {
            at[st * BLOCK + j] = s.a[(k0 + j) * n + st];
        }
    }
    let mut dk: Blk = [0.0; BLOCK];
    dk[..w].copy_from_slice(&s.d[k0..k0 + w]);
    (at, dk)
}

/// `y[bi, :, k0..k0 + w]` as `[L, w]`. The block's channels are the SIMD lanes and the state
/// index the loop inside each time step, so `C_t · h_t` needs no horizontal sum and each step
/// has `N · BLOCK / LANES` independent recurrences. Padding channels (`w < BLOCK`) have
/// `A = Δ = 0`, so their state stays 0.
// Kernels index several slices with the same counter; explicit indices read clearest here.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn forward_block<const FMA: bool>(s: &HostInputs, bi: usize, k0: usize, w: usize) -> BlockOut {
    let (l, ch, n) = (s.len, s.channels, s.state);
    let (at, dk) = block_params(s, k0, w);
    let mut h = initial_state(s, bi, k0, w); // [N, BLOCK]
    let mut out = vec![0.0f32; l * w];
    for t in 0..l {
        let row = bi * l + t;
        let dt = gather(&s.delta, row, ch, k0, w);
        let x = gather(&s.u, row, ch, k0, w);
        let dtx: Blk = std::array::from_fn(|i| dt[i] * x[i]);
        let (bt, ct) = (&s.b[row * n..(row + 1) * n], &s.c[row * n..(row + 1) * n]);
        let mut acc: Blk = [0.0; BLOCK];
        for st in 0..n {
            let (b, c) = (bt[st], ct[st]);
            let av = blk(&at, st * BLOCK);
            let hv = blk_mut(&mut h, st * BLOCK);
            for i in 0..BLOCK {
                let v = madd::<FMA>(exp_with::<FMA>(dt[i] * av[i]), hv[i], dtx[i] * b);
                hv[i] = v;
                acc[i] += c * v;
            }
        }
        for j in 0..w {
            out[t * w + j] = acc[j] + dk[j] * x[j];
        }
    }
    (out, h)
}

/// A block's output `[L, w]` and its final state `[N, BLOCK]`.
pub(super) type BlockOut = (Vec<f32>, Vec<f32>);

/// `h0` of batch item `bi`, channels `k0..k0 + w`, as `[N, BLOCK]` (zero-padded; all zeros
/// without `h0`).
fn initial_state(s: &HostInputs, bi: usize, k0: usize, w: usize) -> Vec<f32> {
    let mut h = vec![0.0f32; s.state * BLOCK];
    write_initial_state(s, (bi, k0, w), &mut h);
    h
}

/// Writes [`initial_state`] into `h` (`[N, BLOCK]`), without allocating.
fn write_initial_state(s: &HostInputs, (bi, k0, w): (usize, usize, usize), h: &mut [f32]) {
    let (ch, n) = (s.channels, s.state);
    h.fill(0.0);
    if let Some(h0) = &s.h0 {
        for j in 0..w {
            let at = (bi * ch + k0 + j) * n;
            for st in 0..n {
                h[st * BLOCK + j] = h0[at + st];
            }
        }
    }
}

/// Gradients of channels `k0..k0 + w` of batch item `bi`, laid out like [`forward_block`]:
/// recompute the states `h_t` and decays `exp(Δ_t·A)` of the whole block into `[L, N, BLOCK]`
/// buffers, then one reverse pass. `dB_t` and `dC_t` sum over channels: the pass keeps one
/// vector of partial sums per `(t, s)` and `reduce` folds them at the end.
#[inline(always)]
fn backward_block<const FMA: bool>(
    s: &HostInputs,
    grad: &[f32],
    bi: usize,
    k0: usize,
    w: usize,
    reduce: impl Fn(&[f32], &mut [f32]),
) -> BlockGrads {
    with_scratch(s, (bi, k0, w), |bufs| {
        backward_pass::<FMA>(s, grad, (bi, k0, w), bufs, reduce)
    })
}

/// Runs `body` on the per-thread work buffers of a block backward, `[dts, xs, dys, states,
/// decays, pc, pb]`, for the block `(bi, k0, w)` of `s`: row 0 of `states` (`h_{−1}`) is the
/// block's initial state ([`initial_state`]), everything else is stale and must be written
/// before it is read.
#[inline(always)]
fn with_scratch<R>(
    s: &HostInputs,
    block: (usize, usize, usize),
    body: impl FnOnce([&mut [f32]; 7]) -> R,
) -> R {
    let (l, n) = (s.len, s.state);
    let nb = n * BLOCK;
    // Reused without clearing (fresh buffers were page faults and memsets). Taken out of the
    // thread-local rather than borrowed in a closure passed to std: that closure would be
    // compiled without the caller's target features. (`body` is inlined into the caller.)
    let mut scratch = SCRATCH.take();
    let need = 3 * l * BLOCK + (2 * l + 1) * nb + 2 * l * n * LANES;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (dts, rest) = scratch.split_at_mut(l * BLOCK);
    let (xs, rest) = rest.split_at_mut(l * BLOCK);
    let (dys, rest) = rest.split_at_mut(l * BLOCK);
    let (states, rest) = rest.split_at_mut((l + 1) * nb); // row 0 = h_{−1}; row t + 1 = h_t
    let (decays, rest) = rest.split_at_mut(l * nb);
    let (pc, rest) = rest.split_at_mut(l * n * LANES); // partial sums of dC, [L, N, LANES]
    let pb = &mut rest[..l * n * LANES];
    write_initial_state(s, block, &mut states[..nb]);
    let out = body([dts, xs, dys, states, decays, pc, pb]);
    SCRATCH.set(scratch);
    out
}

thread_local! {
    /// Per-thread work buffers of [`backward_block`].
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The body of [`backward_block`] on its scratch buffers.
// Kernels index several slices with the same counter; explicit indices read clearest here.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn backward_pass<const FMA: bool>(
    s: &HostInputs,
    grad: &[f32],
    (bi, k0, w): (usize, usize, usize),
    [dts, xs, dys, states, decays, pc, pb]: [&mut [f32]; 7],
    reduce: impl Fn(&[f32], &mut [f32]),
) -> BlockGrads {
    let (l, ch, n) = (s.len, s.channels, s.state);
    let (at, dk) = block_params(s, k0, w);
    let nb = n * BLOCK;
    for t in 0..l {
        let row = bi * l + t;
        *blk_mut(dts, t * BLOCK) = gather(&s.delta, row, ch, k0, w);
        *blk_mut(xs, t * BLOCK) = gather(&s.u, row, ch, k0, w);
        *blk_mut(dys, t * BLOCK) = gather(grad, row, ch, k0, w);
    }
    for t in 0..l {
        let row = bi * l + t;
        let (dt, x) = (blk(dts, t * BLOCK), blk(xs, t * BLOCK));
        let dtx: Blk = std::array::from_fn(|i| dt[i] * x[i]);
        let bt = &s.b[row * n..(row + 1) * n];
        let (done, next) = states.split_at_mut((t + 1) * nb);
        let (prev, cur) = (&done[t * nb..], &mut next[..nb]);
        let dec = &mut decays[t * nb..(t + 1) * nb];
        for st in 0..n {
            let b = bt[st];
            let o = st * BLOCK;
            let (av, pv) = (blk(&at, o), blk(prev, o));
            let e: Blk = std::array::from_fn(|i| exp_with::<FMA>(dt[i] * av[i]));
            let cv = blk_mut(cur, o);
            for i in 0..BLOCK {
                cv[i] = madd::<FMA>(e[i], pv[i], dtx[i] * b);
            }
            *blk_mut(dec, o) = e;
        }
    }
    let mut carry = vec![0.0f32; nb]; // dL/dh_t from later steps, [N, BLOCK]
    let mut da = vec![0.0f32; nb]; // [N, BLOCK]
    let mut dd: Blk = [0.0; BLOCK];
    let mut du = vec![0.0f32; l * w];
    let mut ddelta = vec![0.0f32; l * w];
    for t in (0..l).rev() {
        let row = bi * l + t;
        let (dt, x, dy) = (blk(dts, t * BLOCK), blk(xs, t * BLOCK), blk(dys, t * BLOCK));
        let dtx: Blk = std::array::from_fn(|i| dt[i] * x[i]);
        for i in 0..BLOCK {
            dd[i] += dy[i] * x[i];
        }
        let (bt, ct) = (&s.b[row * n..(row + 1) * n], &s.c[row * n..(row + 1) * n]);
        let (prevs, hs) = (&states[t * nb..(t + 1) * nb], &states[(t + 1) * nb..]);
        let decs = &decays[t * nb..(t + 1) * nb];
        // gb = Σ_s gs·B_s; ga = Σ_s A_s·gs·decay_s·h_{t−1,s}.
        let (mut gb, mut ga): (Blk, Blk) = ([0.0; BLOCK], [0.0; BLOCK]);
        for st in 0..n {
            let (b, c) = (bt[st], ct[st]);
            let o = st * BLOCK;
            let (hv, pv, dv, av) = (blk(hs, o), blk(prevs, o), blk(decs, o), blk(&at, o));
            let cav = blk_mut(&mut carry, o);
            let dav = blk_mut(&mut da, o);
            let (mut hc, mut gx): (Blk, Blk) = ([0.0; BLOCK], [0.0; BLOCK]);
            for i in 0..BLOCK {
                let gs = cav[i] + dy[i] * c;
                let nc = gs * dv[i];
                let q = nc * pv[i];
                cav[i] = nc;
                ga[i] += av[i] * q;
                gb[i] += gs * b;
                dav[i] += dt[i] * q;
                gx[i] = gs * dtx[i];
                hc[i] = dy[i] * hv[i];
            }
            let p = (t * n + st) * LANES;
            let (pcv, pbv) = (lane_mut(pc, p), lane_mut(pb, p));
            for i in 0..LANES {
                pcv[i] = hc[i] + hc[i + LANES];
                pbv[i] = gx[i] + gx[i + LANES];
            }
        }
        for j in 0..w {
            du[t * w + j] = dy[j] * dk[j] + dt[j] * gb[j];
            ddelta[t * w + j] = ga[j] + x[j] * gb[j];
        }
    }
    let dcb = [&*pc, &*pb].map(|p| {
        let mut out = vec![0.0f32; l * n];
        reduce(p, &mut out);
        out
    });
    BlockGrads::assemble((k0, w), [du, ddelta], &da, &dd, dcb)
}

impl BlockGrads {
    /// A task's gradients from the backward pass's buffers: `da` as `[N, BLOCK]`, `dd` per
    /// lane, and this block's shares of `dC` and `dB` as `[L, N]`.
    #[inline(always)]
    fn assemble(
        (k0, w): (usize, usize),
        [du, ddelta]: [Vec<f32>; 2],
        da: &[f32],
        dd: &Blk,
        [dc, db]: [Vec<f32>; 2],
    ) -> Self {
        let n = da.len() / BLOCK;
        let mut g = BlockGrads {
            k0,
            width: w,
            du,
            ddelta,
            da: vec![0.0; w * n],
            db,
            dc,
            dd: dd[..w].to_vec(),
        };
        for j in 0..w {
            for st in 0..n {
                g.da[j * n + st] = da[st * BLOCK + j];
            }
        }
        g
    }
}

impl HostInputs {
    /// `[batch, L, d_inner]`.
    pub(crate) fn dims(&self) -> [usize; 3] {
        [self.batch, self.len, self.channels]
    }

    fn blocks(&self) -> Vec<(usize, usize, usize)> {
        let ch = self.channels;
        (0..self.batch)
            .flat_map(|bi| {
                (0..ch)
                    .step_by(BLOCK)
                    .map(move |k0| (bi, k0, BLOCK.min(ch - k0)))
            })
            .collect()
    }

    /// `y` as `[batch, L, d_inner]` and the final state `h_{L−1}` as `[batch, d_inner, N]`.
    pub(crate) fn forward(&self) -> (Vec<f32>, Vec<f32>) {
        self.forward_with(Isa::detect())
    }

    fn forward_with(&self, isa: Isa) -> (Vec<f32>, Vec<f32>) {
        let (l, ch, n) = (self.len, self.channels, self.state);
        let parts: Vec<(usize, usize, usize, BlockOut)> = self
            .blocks()
            .into_par_iter()
            .map(|(bi, k0, w)| (bi, k0, w, isa.forward_block(self, bi, k0, w)))
            .collect();
        let mut last = vec![0.0f32; self.batch * ch * n];
        for (bi, k0, w, (_, h)) in &parts {
            for j in 0..*w {
                let at = (bi * ch + k0 + j) * n;
                for st in 0..n {
                    last[at + st] = h[st * BLOCK + j];
                }
            }
        }
        // Parts are in `blocks` order, so each batch item's parts are one run; the copies into
        // place run per batch item in parallel.
        let per_item = ch.div_ceil(BLOCK).max(1);
        let items = parts.par_chunks(per_item);
        let (y, _) = filled(self.batch * l * ch, l * ch, items, |y, parts| {
            for (_, k0, w, (part, _)) in parts {
                for (t, src) in part.chunks_exact(*w).enumerate() {
                    copy_block(&mut y[t * ch + k0..t * ch + k0 + w], src);
                }
            }
        });
        (y, last)
    }

    /// Reverse scan; `grad` is `dL/dy` as `[batch, L, d_inner]`.
    pub(crate) fn backward(&self, grad: &[f32]) -> HostGrads {
        self.backward_with(Isa::detect(), grad)
    }

    fn backward_with(&self, isa: Isa, grad: &[f32]) -> HostGrads {
        let (l, ch, n) = (self.len, self.channels, self.state);
        let parts: Vec<BlockGrads> = self
            .blocks()
            .into_par_iter()
            .map(|(bi, k0, w)| isa.backward_block(self, grad, bi, k0, w))
            .collect();
        // Per batch item in parallel (parts are in `blocks` order): its rows of `du` and `dΔ`,
        // then of `dB` and `dC`, which sum over the item's channel blocks. Then `dA` and `dD`,
        // which sum over batch items.
        let per_item = ch.div_ceil(BLOCK).max(1);
        let items = parts.par_chunks(per_item);
        let (du, ddelta, _) = filled2(
            [self.batch * l * ch; 2],
            [l * ch; 2],
            items,
            |du, ddelta, parts| {
                for p in parts {
                    let (k0, w) = (p.k0, p.width);
                    let rows = p.du.chunks_exact(w).zip(p.ddelta.chunks_exact(w));
                    for (t, (du_t, dd_t)) in rows.enumerate() {
                        copy_block(&mut du[t * ch + k0..t * ch + k0 + w], du_t);
                        copy_block(&mut ddelta[t * ch + k0..t * ch + k0 + w], dd_t);
                    }
                }
            },
        );
        let items = parts.par_chunks(per_item);
        let (db, dc, _) = filled2(
            [self.batch * l * n; 2],
            [l * n; 2],
            items,
            |db, dc, parts| {
                for p in parts {
                    db.iter_mut().zip(&p.db).for_each(|(o, v)| *o += v);
                    dc.iter_mut().zip(&p.dc).for_each(|(o, v)| *o += v);
                }
            },
        );
        let mut out = HostGrads {
            du,
            ddelta,
            da: vec![0.0; ch * n],
            db,
            dc,
            dd: vec![0.0; ch],
        };
        for p in parts {
            let (k0, w) = (p.k0, p.width);
            out.da[k0 * n..(k0 + w) * n]
                .iter_mut()
                .zip(&p.da)
                .for_each(|(o, v)| *o += v);
            out.dd[k0..k0 + w]
                .iter_mut()
                .zip(&p.dd)
                .for_each(|(o, v)| *o += v);
        }
        out
    }
}

/// The Mamba mixer's scan with its neighbours fused in:
/// `y = scan(u, softplus(delta_raw), A, B, C, D) ⊙ silu(z)`.
pub(crate) struct GatedScan {
    /// The scan inputs, with `delta = softplus(delta_raw)`.
    pub(crate) scan: HostInputs,
    /// Δ before softplus, `[batch, L, d_inner]`.
    pub(crate) delta_raw: Vec<f32>,
    /// Gate input, `[batch, L, d_inner]`.
    pub(crate) z: Vec<f32>,
    /// The ungated scan output, filled by [`GatedScan::forward`].
    pub(crate) ys: Vec<f32>,
    /// The final state `[batch, d_inner, N]`, filled by [`GatedScan::forward`].
    pub(crate) last_state: Vec<f32>,
}

impl std::fmt::Debug for GatedScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.scan;
        write!(
            f,
            "GatedScan[{}, {}, {}, {}]",
            s.batch, s.len, s.channels, s.state
        )
    }
}

impl GatedScan {
    /// `scan.delta` holds Δ before softplus on entry.
    pub(crate) fn new(mut scan: HostInputs, z: Vec<f32>) -> Self {
        let delta_raw = std::mem::take(&mut scan.delta);
        scan.delta = elementwise::map1(&delta_raw, softplus);
        Self::with_delta(scan, delta_raw, z)
    }

    /// From inputs whose `delta` already is `softplus(delta_raw)`.
    pub(crate) fn with_delta(scan: HostInputs, delta_raw: Vec<f32>, z: Vec<f32>) -> Self {
        assert_eq!(scan.delta.len(), delta_raw.len(), "GatedScan: Δ and Δ_raw");
        GatedScan {
            scan,
            delta_raw,
            z,
            ys: Vec::new(),
            last_state: Vec::new(),
        }
    }

    /// Runs the scan, keeps its ungated output and returns the gated one.
    pub(crate) fn forward(&mut self) -> Vec<f32> {
        (self.ys, self.last_state) = self.scan.forward();
        elementwise::map2(&self.ys, &self.z, |y, z, fma| y * silu_and_grad(z, fma).0)
    }

    /// Gradients `[du, d delta_raw, da, db, dc, dd]` and `dz`, given `dL/dy`.
    pub(crate) fn backward(&self, grad: &[f32]) -> (HostGrads, Vec<f32>) {
        let (gys, dz) = elementwise::map3_2(grad, &self.z, &self.ys, |g, z, y, fma| {
            let (s, ds) = silu_and_grad(z, fma);
            (g * s, g * y * ds)
        });
        let mut g = self.scan.backward(&gys);
        elementwise::update(&mut g.ddelta, &self.delta_raw, |d, x, fma| {
            d * sigmoid(x, fma)
        });
        (g, dz)
    }
}

#[cfg(test)]
mod tests {
    use super::{HostInputs, Isa};

    /// Deterministic values in `[lo, hi)`.
    fn values(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                lo + (hi - lo) * ((x >> 40) as f32 / (1u64 << 24) as f32)
            })
            .collect()
    }

    /// Sequential per-channel scan in f64 (from `s.h0`) and its backward by reverse-mode by
    /// hand: `[y, du, ddelta, da, db, dc, dd, final state]`.
    #[allow(clippy::needless_range_loop)]
    fn reference(s: &HostInputs, grad: &[f32]) -> [Vec<f64>; 8] {
        let [bs, l, ch] = s.dims();
        let n = s.state;
        let f = |v: &[f32], i: usize| v[i] as f64;
        let mut y = vec![0.0; bs * l * ch];
        let (mut du, mut ddelta) = (vec![0.0; bs * l * ch], vec![0.0; bs * l * ch]);
        let (mut da, mut dd) = (vec![0.0; ch * n], vec![0.0; ch]);
        let (mut db, mut dc) = (vec![0.0; bs * l * n], vec![0.0; bs * l * n]);
        let mut last = vec![0.0; bs * ch * n];
        for bi in 0..bs {
            for k in 0..ch {
                let mut hs = vec![vec![0.0f64; n]; l + 1];
                if let Some(h0) = &s.h0 {
                    for st in 0..n {
                        hs[0][st] = h0[(bi * ch + k) * n + st] as f64;
                    }
                }
                for t in 0..l {
                    let (row, i) = (bi * l + t, (bi * l + t) * ch + k);
                    let (dt, x) = (f(&s.delta, i), f(&s.u, i));
                    for st in 0..n {
                        let dec = (dt * f(&s.a, k * n + st)).exp();
                        hs[t + 1][st] = dec * hs[t][st] + dt * x * f(&s.b, row * n + st);
                        y[i] += f(&s.c, row * n + st) * hs[t + 1][st];
                    }
                    y[i] += f(&s.d, k) * x;
                }
                last[(bi * ch + k) * n..(bi * ch + k + 1) * n].copy_from_slice(&hs[l]);
                let mut carry = vec![0.0f64; n];
                for t in (0..l).rev() {
                    let (row, i) = (bi * l + t, (bi * l + t) * ch + k);
                    let (dt, x, dy) = (f(&s.delta, i), f(&s.u, i), f(grad, i));
                    dd[k] += dy * x;
                    du[i] += dy * f(&s.d, k);
                    for st in 0..n {
                        let (a, b) = (f(&s.a, k * n + st), f(&s.b, row * n + st));
                        let dec = (dt * a).exp();
                        dc[row * n + st] += dy * hs[t + 1][st];
                        let gs = carry[st] + dy * f(&s.c, row * n + st);
                        da[k * n + st] += gs * dec * hs[t][st] * dt;
                        ddelta[i] += gs * (dec * hs[t][st] * a + x * b);
                        du[i] += gs * dt * b;
                        db[row * n + st] += gs * dt * x;
                        carry[st] = gs * dec;
                    }
                }
            }
        }
        [y, du, ddelta, da, db, dc, dd, last]
    }

    /// Every compiled copy the CPU supports of the block kernels (the baseline one runs on any
    /// CPU) against the sequential reference, with channel counts that leave a partial block
    /// and state sizes that are not a multiple of the lane width; each shape from a zero and
    /// from a given initial state, checking the final state too.
    #[test]
    fn block_kernels_match_reference() {
        // L = 0 included: no time steps, empty outputs, zero dA and dD.
        let shapes = [[2, 7, 5, 3], [1, 33, 16, 16], [2, 20, 37, 11], [2, 0, 5, 3]];
        for (seed, ([bs, l, ch, n], from_state)) in shapes
            .into_iter()
            .flat_map(|shape| [(shape, false), (shape, true)])
            .enumerate()
        {
            let seed = seed as u64 * 10;
            let s = HostInputs {
                batch: bs,
                len: l,
                channels: ch,
                state: n,
                u: values(bs * l * ch, seed + 1, -1.0, 1.0),
                delta: values(bs * l * ch, seed + 2, 0.01, 0.5),
                a: values(ch * n, seed + 3, -2.0, -0.1),
                b: values(bs * l * n, seed + 4, -1.0, 1.0),
                c: values(bs * l * n, seed + 5, -1.0, 1.0),
                d: values(ch, seed + 6, -1.0, 1.0),
                h0: from_state.then(|| values(bs * ch * n, seed + 8, -2.0, 2.0)),
            };
            let grad = values(bs * l * ch, seed + 7, -1.0, 1.0);
            let want = reference(&s, &grad);
            for isa in Isa::all_supported() {
                let g = s.backward_with(isa, &grad);
                let (y, last) = s.forward_with(isa);
                let got = [y, g.du, g.ddelta, g.da, g.db, g.dc, g.dd, last];
                let names = ["y", "du", "ddelta", "da", "db", "dc", "dd", "last"];
                for (name, (got, want)) in names.into_iter().zip(got.iter().zip(&want)) {
                    assert_eq!(got.len(), want.len(), "{name}");
                    let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (g as f64 - w).abs() <= 1e-4 * scale,
                            "{name}[{i}] = {g}, want {w} ({isa:?}, shape {bs}x{l}x{ch}x{n}, \
                             h0: {from_state})"
                        );
                    }
                }
            }
        }
    }
}
