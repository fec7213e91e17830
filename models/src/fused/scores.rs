//! The attention variants of the research agenda (`[model] attn_softmax`, `attn_bias`): how a
//! head turns its scores `z_ij = q_i·k_j/√dh` into weights. The fused kernel
//! ([`super::attention`]) applies them tile by tile; the attention block's composed path
//! (`model::attention`) computes the same from tensor ops, as the tests' reference.
use burn::config::Config;

/// How scores become weights (`[model] attn_softmax`). `n_i = i + 1` is the number of
/// positions row `i` attends to (causal).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum AttnSoftmax {
    /// `softmax_j(z_ij)`.
    Softmax,
    /// `exp(z_ij) / (1 + Σ_j exp(z_ij))`: "off-by-one" softmax, a head may attend to nothing.
    Softmax1,
    /// Scalable softmax (Nakanishi 2025): `softmax_j(s_h · ln n_i · z_ij)` with a learned `s_h`
    /// per head.
    Ssmax,
    /// Sigmoid attention (Ramapuram et al. 2024): `σ(z_ij − ln n_i)`, no normalisation.
    Sigmoid,
}

/// A bias added to the scores by distance `i − j` (`[model] attn_bias`).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum AttnBias {
    /// None.
    None,
    /// ALiBi (Press et al. 2022): `−m_h · (i − j)` with fixed slopes `m_h = 2^(−8h/H)`,
    /// `h = 1..H`.
    Alibi,
    /// A learned bias per head and distance bucket (T5's: one bucket per distance below
    /// [`EXACT_BUCKETS`], log-spaced buckets up to [`MAX_DISTANCE`], the last one beyond).
    Learned,
}

/// Buckets of the learned relative bias.
pub const BIAS_BUCKETS: usize = 32;
/// Distances below this have a bucket each.
pub const EXACT_BUCKETS: usize = BIAS_BUCKETS / 2;
/// Distances at or beyond this share the last bucket.
pub const MAX_DISTANCE: usize = 128;

/// `ssmax`'s initial `s_h`: `1/ln 256`, so that the scale `s_h · ln n` is 1 at the default
/// training length 256 (our choice; the scale is learned from there).
pub fn ssmax_init() -> f32 {
    1.0 / (256f32).ln()
}

/// ALiBi's slope for head `h` of `heads` (0-based): `2^(−8(h+1)/H)`.
pub fn alibi_slope(h: usize, heads: usize) -> f32 {
    (2f64.powf(-8.0 * (h + 1) as f64 / heads as f64)) as f32
}

/// The learned bias's bucket of distance `dist` (T5, one direction).
pub fn bucket(dist: usize) -> usize {
    if dist < EXACT_BUCKETS {
        return dist;
    }
    let log = ((dist as f64 / EXACT_BUCKETS as f64).ln()
        / (MAX_DISTANCE as f64 / EXACT_BUCKETS as f64).ln()
        * (BIAS_BUCKETS - EXACT_BUCKETS) as f64) as usize;
    (EXACT_BUCKETS + log).min(BIAS_BUCKETS - 1)
}

/// The variant of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub softmax: AttnSoftmax,
    pub bias: AttnBias,
}

impl Variant {
    /// Softmax attention without a bias: the default, and what burn's own op computes.
    pub const PLAIN: Variant = Variant {
        softmax: AttnSoftmax::Softmax,
        bias: AttnBias::None,
    };
}

/// One head's view of the variant: what its tiles add to and multiply the scores by.
pub(crate) struct HeadScores<'a> {
    pub softmax: AttnSoftmax,
    /// `−m_h` per unit of distance (ALiBi).
    pub alibi: Option<f32>,
    /// The head's learned bias per bucket.
    pub table: Option<&'a [f32]>,
    /// `s_h` (ssmax).
    pub scale: Option<f32>,
    /// `bucket(d)` for every distance `d < L` (learned bias only).
    pub buckets: &'a [usize],
    /// `ln n_i = ln(i + 1)` for every row.
    pub ln_n: &'a [f32],
}

impl HeadScores<'_> {
    /// Whether the scores get a bias by distance.
    #[inline(always)]
    pub fn biased(&self) -> bool {
        self.alibi.is_some() || self.table.is_some()
    }

    /// The bias at distance `dist`.
    #[inline(always)]
    pub fn bias(&self, dist: usize) -> f32 {
        match (self.alibi, self.table) {
            (Some(neg_slope), _) => neg_slope * dist as f32,
            (None, Some(t)) => t[self.buckets[dist]],
            (None, None) => 0.0,
        }
    }

    /// Row `i`'s factor on its scores (`s_h · ln n_i` for ssmax, else 1).
    #[inline(always)]
    pub fn row_factor(&self, i: usize) -> f32 {
        self.scale.map_or(1.0, |s| s * self.ln_n[i])
    }
}

/// The per-call tables of a variant: `ln n_i` per row and the learned bias's bucket per
/// distance.
pub(crate) struct Tables {
    ln_n: Vec<f32>,
    buckets: Vec<usize>,
}

impl Tables {
    pub(crate) fn new(len: usize, variant: Variant) -> Tables {
        let learned = variant.bias == AttnBias::Learned;
        Tables {
            ln_n: (0..len).map(|i| ((i + 1) as f32).ln()).collect(),
            buckets: if learned {
                (0..len).map(bucket).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Head `h`'s view of the variant, with the call's parameters (`scale` `[heads]`,
    /// `table` `[heads, BIAS_BUCKETS]`).
    pub(crate) fn head<'a>(
        &'a self,
        variant: Variant,
        h: usize,
        heads: usize,
        scale: &[f32],
        table: &'a [f32],
    ) -> HeadScores<'a> {
        HeadScores {
            softmax: variant.softmax,
            alibi: (variant.bias == AttnBias::Alibi).then(|| -alibi_slope(h, heads)),
            table: (variant.bias == AttnBias::Learned)
                .then(|| &table[h * BIAS_BUCKETS..(h + 1) * BIAS_BUCKETS]),
            scale: (variant.softmax == AttnSoftmax::Ssmax).then(|| scale[h]),
            buckets: &self.buckets,
            ln_n: &self.ln_n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_then_logarithmic_then_capped() {
        assert_eq!(
            (0..EXACT_BUCKETS).map(bucket).collect::<Vec<_>>(),
            (0..EXACT_BUCKETS).collect::<Vec<_>>()
        );
        let later: Vec<usize> = (EXACT_BUCKETS..4 * MAX_DISTANCE).map(bucket).collect();
        assert!(
            later.windows(2).all(|w| w[0] <= w[1]),
            "buckets never decrease"
        );
        assert_eq!(bucket(MAX_DISTANCE - 1), BIAS_BUCKETS - 1);
        assert_eq!(bucket(10 * MAX_DISTANCE), BIAS_BUCKETS - 1);
        assert!(
            bucket(EXACT_BUCKETS) == EXACT_BUCKETS,
            "first log bucket follows the exact ones"
        );
    }

    #[test]
    fn alibi_slopes_are_the_papers_for_eight_heads() {
        let s: Vec<f32> = (0..8).map(|h| alibi_slope(h, 8)).collect();
        let want = [
            0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
        ];
        assert_eq!(s, want);
    }
}
