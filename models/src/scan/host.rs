//! Host (CPU) kernels of the selective scan: forward and hand-written backward.
//!
//! Work is split into tasks of (batch item, block of [`BLOCK`] channels) for rayon; inside a
//! task the time loop is outermost and the state dimension `N` is innermost, processed in
//! fixed-width lanes that the compiler turns into SIMD. `exp` is a branch-free polynomial
//! ([`fast_exp`]) so it vectorises too (libm's `expf` was a third of a training step). On
//! x86-64 with AVX2 and FMA the same code is compiled a second time for those features and
//! picked at run time.
//!
//! Shapes: `u`, `delta`: `[batch, L, d_inner]`; `a`: `[d_inner, N]`; `b`, `c`:
//! `[batch, L, N]`; `d`: `[d_inner]`.
use rayon::prelude::*;

/// Channels per task.
const BLOCK: usize = 16;
/// SIMD lanes of the state loop.
const LANES: usize = 8;

/// `exp(x)` to about 2 ulp for `x` in `[-87, 88]` (clamped outside), branch-free so that loops
/// over it vectorise: `2^k · p(r)` with `x = k·ln2 + r`, `|r| ≤ ln2/2`, `p` of degree 6. `k`
/// comes from the bits of the rounding sum (a float-to-int `as` cast would not vectorise).
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let k = t - ROUND;
    let ki = (t.to_bits() as i32).wrapping_sub(0x4B40_0000); // = k as i32
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((ki + 127) as u32) << 23)
}

type Lane = [f32; LANES];

/// `s[i..i + LANES]` as an array (fixed length, so the lane loops vectorise).
#[inline(always)]
fn lane(s: &[f32], i: usize) -> &Lane {
    s[i..i + LANES].try_into().expect("lane in bounds")
}

#[inline(always)]
fn lane_mut(s: &mut [f32], i: usize) -> &mut Lane {
    (&mut s[i..i + LANES]).try_into().expect("lane in bounds")
}

/// `ln(1 + e)` for `e` in `[0, 1]`: `2·atanh(e / (2 + e))` as an odd series (error < 1e-8).
#[inline(always)]
fn ln_1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    2.0 * s
        * (1.0
            + s2 * (1.0 / 3.0
                + s2 * (1.0 / 5.0
                    + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 / 13.0))))))
}

/// `softplus(x) = max(x, 0) + ln(1 + exp(−|x|))`.
#[inline(always)]
pub(crate) fn softplus(x: f32) -> f32 {
    x.max(0.0) + ln_1p_unit(fast_exp(-x.abs()))
}

/// The logistic function `1 / (1 + exp(−x))`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

/// `silu(x) = x·σ(x)` and its derivative `σ(x)·(1 + x·(1 − σ(x)))`.
#[inline(always)]
pub(crate) fn silu_and_grad(x: f32) -> (f32, f32) {
    let sg = sigmoid(x);
    (x * sg, sg * (1.0 + x * (1.0 - sg)))
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

/// One task's share of the gradients: channels `k0..k0 + width` of batch item `bi`.
struct BlockGrads {
    bi: usize,
    k0: usize,
    width: usize,
    du: Vec<f32>,     // [L, width]
    ddelta: Vec<f32>, // [L, width]
    da: Vec<f32>,     // [width, N]
    db: Vec<f32>,     // [L, N]
    dc: Vec<f32>,     // [L, N]
    dd: Vec<f32>,     // [width]
}

/// One forward step of one channel: updates `h` in place and returns `C_t · h_t`.
#[inline(always)]
fn step_forward(h: &mut [f32], [a, b, c]: [&[f32]; 3], dt: f32, dtx: f32) -> f32 {
    let n = h.len();
    let full = n / LANES * LANES;
    let mut acc: Lane = [0.0; LANES];
    for s0 in (0..full).step_by(LANES) {
        let (av, bv, cv) = (lane(a, s0), lane(b, s0), lane(c, s0));
        let hv = lane_mut(h, s0);
        for i in 0..LANES {
            let v = fast_exp(dt * av[i]) * hv[i] + dtx * bv[i];
            hv[i] = v;
            acc[i] += cv[i] * v;
        }
    }
    let mut rest = 0.0f32;
    for s in full..n {
        let v = fast_exp(dt * a[s]) * h[s] + dtx * b[s];
        h[s] = v;
        rest += c[s] * v;
    }
    acc.iter().sum::<f32>() + rest
}

/// One recomputed step of one channel: `dec = exp(dt·A)`, `cur = dec ⊙ prev + dtx·B`.
#[inline(always)]
fn step_states(cur: &mut [f32], dec: &mut [f32], [prev, a, b]: [&[f32]; 3], dt: f32, dtx: f32) {
    let n = cur.len();
    let full = n / LANES * LANES;
    for s0 in (0..full).step_by(LANES) {
        let (av, bv, pv) = (lane(a, s0), lane(b, s0), lane(prev, s0));
        let mut e: Lane = [0.0; LANES];
        for i in 0..LANES {
            e[i] = fast_exp(dt * av[i]);
        }
        let cv = lane_mut(cur, s0);
        for i in 0..LANES {
            cv[i] = e[i] * pv[i] + dtx * bv[i];
        }
        *lane_mut(dec, s0) = e;
    }
    for s in full..n {
        let e = fast_exp(dt * a[s]);
        dec[s] = e;
        cur[s] = e * prev[s] + dtx * b[s];
    }
}

/// One reverse step of one channel. `gs = carry + dy·C` is `dL/dh_t`; accumulates `dC`, `dA`,
/// `dB`, moves `carry` to `dL/dh_{t−1}` and returns `(Σ gs·B, Σ A·gs·decay·h_{t−1})`.
#[inline(always)]
fn step_backward(
    [dy, dt, dtx]: [f32; 3],
    [h, ct, dec, prev, a, bt]: [&[f32]; 6],
    dct: &mut [f32],
    carry: &mut [f32],
    da: &mut [f32],
    dbt: &mut [f32],
) -> (f32, f32) {
    let n = h.len();
    // gb = Σ_s gs·B_s; ga = Σ_s A_s·gs·decay_s·h_{t−1,s}.
    let (mut gb, mut ga): (Lane, Lane) = ([0.0; LANES], [0.0; LANES]);
    let full = n / LANES * LANES;
    for s0 in (0..full).step_by(LANES) {
        let (hv, cv, dv) = (lane(h, s0), lane(ct, s0), lane(dec, s0));
        let (pv, av, bv) = (lane(prev, s0), lane(a, s0), lane(bt, s0));
        let dctv = lane_mut(dct, s0);
        for i in 0..LANES {
            dctv[i] += dy * hv[i];
        }
        let cav = lane_mut(carry, s0);
        let mut gs: Lane = [0.0; LANES];
        let mut q: Lane = [0.0; LANES];
        for i in 0..LANES {
            gs[i] = cav[i] + dy * cv[i];
            let nc = gs[i] * dv[i];
            q[i] = nc * pv[i];
            cav[i] = nc;
            ga[i] += av[i] * q[i];
            gb[i] += gs[i] * bv[i];
        }
        let dav = lane_mut(da, s0);
        for i in 0..LANES {
            dav[i] += dt * q[i];
        }
        let dbv = lane_mut(dbt, s0);
        for i in 0..LANES {
            dbv[i] += gs[i] * dtx;
        }
    }
    let (mut gb_t, mut ga_t) = (0.0f32, 0.0f32);
    for s in full..n {
        dct[s] += dy * h[s];
        let gs = carry[s] + dy * ct[s];
        let nc = gs * dec[s];
        let q = nc * prev[s];
        da[s] += dt * q;
        ga_t += a[s] * q;
        dbt[s] += gs * dtx;
        gb_t += gs * bt[s];
        carry[s] = nc;
    }
    (gb.iter().sum::<f32>() + gb_t, ga.iter().sum::<f32>() + ga_t)
}

/// Which compiled copy of the step kernels runs: the baseline one, or (x86-64) one compiled
/// for AVX2 + FMA. The copies are separate, non-inlined functions: inlined into the block
/// loops the lane loops were left scalar.
#[derive(Clone, Copy)]
struct Isa {
    avx2: bool,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        Isa { avx2 }
    }

    #[inline(always)]
    fn step_forward(self, h: &mut [f32], abc: [&[f32]; 3], dt: f32, dtx: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`).
            return unsafe { avx2::step_forward(h, abc, dt, dtx) };
        }
        step_forward(h, abc, dt, dtx)
    }

    #[inline(always)]
    fn step_states(self, cur: &mut [f32], dec: &mut [f32], pab: [&[f32]; 3], dt: f32, dtx: f32) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: as above.
            return unsafe { avx2::step_states(cur, dec, pab, dt, dtx) };
        }
        step_states(cur, dec, pab, dt, dtx)
    }

    #[inline(always)]
    fn step_backward(
        self,
        scalars: [f32; 3],
        ins: [&[f32]; 6],
        dct: &mut [f32],
        carry: &mut [f32],
        da: &mut [f32],
        dbt: &mut [f32],
    ) -> (f32, f32) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: as above.
            return unsafe { avx2::step_backward(scalars, ins, dct, carry, da, dbt) };
        }
        step_backward(scalars, ins, dct, carry, da, dbt)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn step_forward(h: &mut [f32], abc: [&[f32]; 3], dt: f32, dtx: f32) -> f32 {
        super::step_forward(h, abc, dt, dtx)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn step_states(
        cur: &mut [f32],
        dec: &mut [f32],
        pab: [&[f32]; 3],
        dt: f32,
        dtx: f32,
    ) {
        super::step_states(cur, dec, pab, dt, dtx)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn step_backward(
        scalars: [f32; 3],
        ins: [&[f32]; 6],
        dct: &mut [f32],
        carry: &mut [f32],
        da: &mut [f32],
        dbt: &mut [f32],
    ) -> (f32, f32) {
        super::step_backward(scalars, ins, dct, carry, da, dbt)
    }
}

// Kernels index several slices with the same counter; explicit indices read clearest here.
#[allow(clippy::needless_range_loop)]
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

    /// `y` as `[batch, L, d_inner]`.
    pub(crate) fn forward(&self) -> Vec<f32> {
        let (l, ch) = (self.len, self.channels);
        let isa = Isa::detect();
        let parts: Vec<(usize, usize, usize, Vec<f32>)> = self
            .blocks()
            .into_par_iter()
            .map(|(bi, k0, w)| (bi, k0, w, self.forward_block(isa, bi, k0, w)))
            .collect();
        let mut y = vec![0.0f32; self.batch * l * ch];
        for (bi, k0, w, part) in parts {
            for t in 0..l {
                let row = (bi * l + t) * ch + k0;
                y[row..row + w].copy_from_slice(&part[t * w..(t + 1) * w]);
            }
        }
        y
    }

    /// `y[bi, :, k0..k0 + w]` as `[L, w]`.
    fn forward_block(&self, isa: Isa, bi: usize, k0: usize, w: usize) -> Vec<f32> {
        let (l, ch, n) = (self.len, self.channels, self.state);
        let mut h = vec![0.0f32; w * n];
        let mut out = vec![0.0f32; l * w];
        for t in 0..l {
            let row = bi * l + t;
            let (bt, ct) = (
                &self.b[row * n..(row + 1) * n],
                &self.c[row * n..(row + 1) * n],
            );
            for j in 0..w {
                let k = k0 + j;
                let (dt, x) = (self.delta[row * ch + k], self.u[row * ch + k]);
                let a = &self.a[k * n..(k + 1) * n];
                let hk = &mut h[j * n..(j + 1) * n];
                out[t * w + j] = isa.step_forward(hk, [a, bt, ct], dt, dt * x) + self.d[k] * x;
            }
        }
        out
    }

    /// Reverse scan; `grad` is `dL/dy` as `[batch, L, d_inner]`.
    pub(crate) fn backward(&self, grad: &[f32]) -> HostGrads {
        let (l, ch, n) = (self.len, self.channels, self.state);
        let isa = Isa::detect();
        let parts: Vec<BlockGrads> = self
            .blocks()
            .into_par_iter()
            .map(|(bi, k0, w)| self.backward_block(isa, grad, bi, k0, w))
            .collect();
        let mut out = HostGrads {
            du: vec![0.0; self.batch * l * ch],
            ddelta: vec![0.0; self.batch * l * ch],
            da: vec![0.0; ch * n],
            db: vec![0.0; self.batch * l * n],
            dc: vec![0.0; self.batch * l * n],
            dd: vec![0.0; ch],
        };
        for p in parts {
            let (bi, k0, w) = (p.bi, p.k0, p.width);
            for t in 0..l {
                let row = (bi * l + t) * ch + k0;
                out.du[row..row + w].copy_from_slice(&p.du[t * w..(t + 1) * w]);
                out.ddelta[row..row + w].copy_from_slice(&p.ddelta[t * w..(t + 1) * w]);
            }
            let rows = bi * l * n..(bi + 1) * l * n;
            out.db[rows.clone()]
                .iter_mut()
                .zip(&p.db)
                .for_each(|(o, v)| *o += v);
            out.dc[rows]
                .iter_mut()
                .zip(&p.dc)
                .for_each(|(o, v)| *o += v);
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

    /// Gradients of channels `k0..k0 + w` of batch item `bi`. Per channel: recompute the states
    /// `h_t` and decays `exp(Δ_t·A)` into `[L, N]` buffers, then one reverse pass.
    fn backward_block(&self, isa: Isa, grad: &[f32], bi: usize, k0: usize, w: usize) -> BlockGrads {
        let (l, ch, n) = (self.len, self.channels, self.state);
        let mut g = BlockGrads {
            bi,
            k0,
            width: w,
            du: vec![0.0; l * w],
            ddelta: vec![0.0; l * w],
            da: vec![0.0; w * n],
            db: vec![0.0; l * n],
            dc: vec![0.0; l * n],
            dd: vec![0.0; w],
        };
        let mut states = vec![0.0f32; (l + 1) * n]; // row 0 = h_{-1} = 0; row t + 1 = h_t
        let mut decays = vec![0.0f32; l * n];
        let mut carry = vec![0.0f32; n]; // dL/dh_t from later steps
        let mut da = vec![0.0f32; n];
        for j in 0..w {
            let k = k0 + j;
            let a = &self.a[k * n..(k + 1) * n];
            let dk = self.d[k];
            for t in 0..l {
                let row = bi * l + t;
                let (dt, x) = (self.delta[row * ch + k], self.u[row * ch + k]);
                let dtx = dt * x;
                let bt = &self.b[row * n..(row + 1) * n];
                let (done, next) = states.split_at_mut((t + 1) * n);
                let prev = &done[t * n..];
                let cur = &mut next[..n];
                let dec = &mut decays[t * n..(t + 1) * n];
                isa.step_states(cur, dec, [prev, a, bt], dt, dtx);
            }
            carry.iter_mut().for_each(|v| *v = 0.0);
            da.iter_mut().for_each(|v| *v = 0.0);
            let mut dd = 0.0f32;
            for t in (0..l).rev() {
                let row = bi * l + t;
                let idx = row * ch + k;
                let (dt, x, dy) = (self.delta[idx], self.u[idx], grad[idx]);
                let dtx = dt * x;
                dd += dy * x;
                let bt = &self.b[row * n..(row + 1) * n];
                let ct = &self.c[row * n..(row + 1) * n];
                let prev = &states[t * n..(t + 1) * n];
                let h = &states[(t + 1) * n..(t + 2) * n];
                let dec = &decays[t * n..(t + 1) * n];
                let dbt = &mut g.db[t * n..(t + 1) * n];
                let dct = &mut g.dc[t * n..(t + 1) * n];
                let (gb, ga) = isa.step_backward(
                    [dy, dt, dtx],
                    [h, ct, dec, prev, a, bt],
                    dct,
                    &mut carry,
                    &mut da,
                    dbt,
                );
                g.du[t * w + j] = dy * dk + dt * gb;
                g.ddelta[t * w + j] = ga + x * gb;
            }
            g.da[j * n..(j + 1) * n].copy_from_slice(&da);
            g.dd[j] = dd;
        }
        g
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
        scan.delta = delta_raw.iter().map(|&x| softplus(x)).collect();
        GatedScan {
            scan,
            delta_raw,
            z,
            ys: Vec::new(),
        }
    }

    /// Runs the scan, keeps its ungated output and returns the gated one.
    pub(crate) fn forward(&mut self) -> Vec<f32> {
        self.ys = self.scan.forward();
        self.ys
            .iter()
            .zip(&self.z)
            .map(|(&y, &z)| y * silu_and_grad(z).0)
            .collect()
    }

    /// Gradients `[du, d delta_raw, da, db, dc, dd]` and `dz`, given `dL/dy`.
    pub(crate) fn backward(&self, grad: &[f32]) -> (HostGrads, Vec<f32>) {
        let mut gys = vec![0.0f32; grad.len()];
        let mut dz = vec![0.0f32; grad.len()];
        for i in 0..grad.len() {
            let (s, ds) = silu_and_grad(self.z[i]);
            gys[i] = grad[i] * s;
            dz[i] = grad[i] * self.ys[i] * ds;
        }
        let mut g = self.scan.backward(&gys);
        g.ddelta
            .iter_mut()
            .zip(&self.delta_raw)
            .for_each(|(d, &x)| *d *= sigmoid(x));
        (g, dz)
    }
}

#[cfg(test)]
mod tests {
    use super::{fast_exp, sigmoid, silu_and_grad, softplus};

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (fast_exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert_eq!(fast_exp(0.0), 1.0);
    }

    #[test]
    fn softplus_sigmoid_silu_are_accurate() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let xd = x as f64;
            let sp = xd.max(0.0) + (-xd.abs()).exp().ln_1p();
            let sg = 1.0 / (1.0 + (-xd).exp());
            let rel = |got: f32, want: f64| ((got as f64 - want) / want.abs().max(1e-30)).abs();
            assert!(rel(softplus(x), sp) < 1e-6, "softplus({x})");
            assert!(rel(sigmoid(x), sg) < 1e-6, "sigmoid({x})");
            let (s, ds) = silu_and_grad(x);
            assert!(
                (s as f64 - xd * sg).abs() < 1e-6 * (1.0 + xd.abs()),
                "silu({x})"
            );
            let want = sg * (1.0 + xd * (1.0 - sg));
            assert!((ds as f64 - want).abs() < 1e-6, "silu'({x})");
            x += 0.0731;
        }
    }
}
