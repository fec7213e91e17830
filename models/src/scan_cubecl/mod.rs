//! The selective scan as CubeCL kernels, used by the `cuda` backend (and, for testing without
//! an NVIDIA GPU, by the `wgpu` backend). See docs/engine.md, "Selective scan on CUDA".
//!
//! Layout shared by the kernels (`kernel.rs`) and their plain-Rust mirror (`mirror.rs`, tests
//! only), with `Bt` = batch, `L` = sequence length, `D` = `d_inner`, `N` = state size:
//!
//! * one unit (GPU thread) per (batch item, channel); a cube is [`CUBE_DIM_X`] consecutive
//!   channels of one batch item (`CUBE_POS_Y` = batch item), so the `B_t`, `C_t` loads are the
//!   same address for the whole cube. The last cube along x may have lanes past `D`: in the
//!   backward they run with zeroed inputs (they must take part in the plane sums) and write
//!   nothing; in the forward they exit.
//! * forward: the state `h[N]` lives in a local array; `y` is written per step.
//! * backward, pass 1: the same forward recurrence, storing the state before every
//!   [`CHUNK`]-th step in a global checkpoint buffer `[chunks, N, Bt, D_pad]`
//!   (`D_pad` = lanes launched along x, so consecutive lanes write consecutive addresses).
//! * backward, pass 2: chunks in reverse; each chunk's `CHUNK` states are recomputed from its
//!   checkpoint into a local array, then walked backwards with the carry `dL/dh`.
//!   `du`, `dΔ` are written per (batch, step, channel); `dA` and `dD` are summed per unit over
//!   the steps and written as per-batch partials `[Bt, D, N]`, `[Bt, D]`; `dB_t`, `dC_t` (sums
//!   over channels) are summed over each plane (warp) with `plane_sum` and written as
//!   per-plane partials `[Bt, L, G, N]`, `G` = planes along x (sized with the smallest plane
//!   size the device reports; unused columns stay zero). Burn's `sum_dim` then reduces the
//!   partials. No atomics, so the result is deterministic.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod kernel;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) use kernel::same_dtype;
#[cfg(test)]
mod mirror;

/// Steps between two checkpoints of the backward pass; also the length of the local state
/// buffer (`(CHUNK + 1) · N` values per unit).
pub(crate) const CHUNK: usize = 16;

/// Units per cube (along x, over channels). A multiple of every plane size in use (32 on
/// NVIDIA, 8 on lavapipe); raised to the device's plane size where that is larger.
pub(crate) const CUBE_DIM_X: usize = 64;

/// Group width for the `dB`/`dC` sums on a device without plane operations (shared memory
/// instead of `plane_sum`); the same as an NVIDIA warp, so the partial layout matches CUDA's.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) const FALLBACK_GROUP: usize = 32;

/// Launch geometry for one scan call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Units per cube along x.
    pub cube_dim_x: usize,
    /// Cubes along x (over channels).
    pub cubes_x: usize,
    /// Checkpoints per (batch item, channel) in the backward pass.
    pub chunks: usize,
    /// Columns of the per-plane `dB`/`dC` partials: planes along x at the smallest plane size.
    pub groups: usize,
}

impl Geometry {
    /// Geometry for `len` steps and `channels` channels on a device whose plane (warp) size is
    /// between `plane_min` and `plane_max`.
    pub fn new(len: usize, channels: usize, plane_min: usize, plane_max: usize) -> Self {
        assert!(
            plane_min >= 1 && plane_min <= plane_max,
            "selective_scan: bad plane size range {plane_min}..={plane_max}"
        );
        let cube_dim_x = CUBE_DIM_X.max(plane_max).next_multiple_of(plane_max);
        let cubes_x = channels.div_ceil(cube_dim_x);
        Self {
            cube_dim_x,
            cubes_x,
            chunks: len.div_ceil(CHUNK),
            groups: cubes_x * cube_dim_x.div_ceil(plane_min),
        }
    }

    /// Channels including the idle lanes of the last cube.
    pub fn padded_channels(&self) -> usize {
        self.cubes_x * self.cube_dim_x
    }
}
