//! Output buffers written by parallel tasks, each task zeroing its own chunk just before it
//! fills it.
//!
//! `vec![0.0; n]` zeroes the whole buffer on the calling thread. With freed memory kept in the
//! heap for reuse (`crate::alloc`), every megabyte-sized activation of a training step was
//! zeroed that way, serially, on the thread that drives the step while the pool's threads
//! waited (docs/performance.md, Round 4). Zeroed inside the task,
//! the chunk is still in cache when the task writes it, and the zeroing is spread over the
//! pool.
use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Zeroes `c` and hands it out as initialised floats.
fn zeroed(c: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for v in c.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was written just above, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Number of chunks of `chunk` floats (the last one may be shorter) in `len` floats.
fn chunks(len: usize, chunk: usize) -> usize {
    len.div_ceil(chunk.max(1))
}

/// A `len`-float buffer cut into chunks of `chunk` floats: task `i` gets chunk `i`, zeroed, and
/// item `i` of `with` (which must have one item per chunk); returns the buffer and the tasks'
/// results in chunk order. An empty buffer runs no task.
pub(crate) fn filled<T: Send, R: Send>(
    len: usize,
    chunk: usize,
    with: impl IndexedParallelIterator<Item = T>,
    fill: impl Fn(&mut [f32], T) -> R + Sync + Send,
) -> (Vec<f32>, Vec<R>) {
    let chunk = chunk.max(1);
    if len == 0 {
        // No chunks, so no tasks (a sequence of length 0 still has one item per batch entry).
        return (Vec::new(), Vec::new());
    }
    assert_eq!(with.len(), chunks(len, chunk), "filled: one item per chunk");
    let mut out = Vec::<f32>::with_capacity(len);
    let results = out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .zip(with)
        .map(|(c, t)| fill(zeroed(c), t))
        .collect();
    // SAFETY: `with` has exactly one item per chunk (asserted), so the zip above visited every
    // chunk and `zeroed` initialised all `len` elements; a panic in a task skips this line.
    unsafe { out.set_len(len) };
    (out, results)
}

/// [`filled`] with two buffers cut into the same number of chunks (of `sizes[0]` and
/// `sizes[1]` floats): task `i` gets chunk `i` of each.
pub(crate) fn filled2<T: Send, R: Send>(
    lens: [usize; 2],
    sizes: [usize; 2],
    with: impl IndexedParallelIterator<Item = T>,
    fill: impl Fn(&mut [f32], &mut [f32], T) -> R + Sync + Send,
) -> (Vec<f32>, Vec<f32>, Vec<R>) {
    let sizes = sizes.map(|c| c.max(1));
    if lens == [0, 0] {
        return (Vec::new(), Vec::new(), Vec::new());
    }
    let n = chunks(lens[0], sizes[0]);
    assert_eq!(n, chunks(lens[1], sizes[1]), "filled2: chunk counts");
    assert_eq!(with.len(), n, "filled2: one item per chunk");
    let (mut p, mut q) = (
        Vec::<f32>::with_capacity(lens[0]),
        Vec::<f32>::with_capacity(lens[1]),
    );
    let results = p.spare_capacity_mut()[..lens[0]]
        .par_chunks_mut(sizes[0])
        .zip(q.spare_capacity_mut()[..lens[1]].par_chunks_mut(sizes[1]))
        .zip(with)
        .map(|((p, q), t)| fill(zeroed(p), zeroed(q), t))
        .collect();
    // SAFETY: as in `filled`: both buffers have `n` chunks and `with` has `n` items, so every
    // chunk of both was zeroed.
    unsafe {
        p.set_len(lens[0]);
        q.set_len(lens[1]);
    }
    (p, q, results)
}

/// Rows per parallel task of the host ops' row loops.
pub(crate) const ROWS_PER_TASK: usize = 64;

/// The element-wise sum of `parts` (each `len` long), added in order so that the result does
/// not depend on which thread computed which part.
pub(crate) fn sum_in_order(parts: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    parts.into_iter().fold(vec![0.0f32; len], |mut a, b| {
        a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
        a
    })
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::{filled, filled2};

    #[test]
    fn every_chunk_is_zeroed_then_filled_in_order() {
        for len in [0, 1, 7, 64, 65, 1000] {
            // Freed NaNs first, so that a chunk handed out without zeroing would likely show.
            drop(vec![f32::NAN; len]);
            let (v, idx) = filled(len, 8, (0..len.div_ceil(8)).into_par_iter(), |c, i| {
                assert!(c.iter().all(|&x| x == 0.0), "chunk {i} handed out zeroed");
                c.iter_mut()
                    .enumerate()
                    .for_each(|(j, x)| *x = (i * 8 + j) as f32);
                i
            });
            assert_eq!(v, (0..len).map(|i| i as f32).collect::<Vec<_>>());
            assert_eq!(idx, (0..len.div_ceil(8)).collect::<Vec<_>>());
            drop((vec![f32::NAN; len], vec![f32::NAN; 2 * len]));
            let (p, q, _) = filled2(
                [len, 2 * len],
                [8, 16],
                (0..len.div_ceil(8)).into_par_iter(),
                |p, q, i| {
                    p.fill(i as f32);
                    if let Some(first) = q.first_mut() {
                        *first = -1.0;
                    }
                },
            );
            assert_eq!(p.len(), len);
            assert_eq!(q.len(), 2 * len);
            assert!(p.iter().enumerate().all(|(j, &x)| x == (j / 8) as f32));
            assert!(
                q.iter()
                    .enumerate()
                    .all(|(j, &x)| x == if j % 16 == 0 { -1.0 } else { 0.0 })
            );
        }
    }

    #[test]
    fn an_empty_buffer_runs_no_task() {
        let (v, r) = filled(0, 8, (0..3).into_par_iter(), |_, i| i);
        assert!(v.is_empty() && r.is_empty());
    }

    #[test]
    #[should_panic(expected = "filled2: chunk counts")]
    fn buffers_with_different_chunk_counts_are_refused() {
        filled2([16, 16], [8, 4], (0..2).into_par_iter(), |_, _, _| ());
    }

    #[test]
    #[should_panic(expected = "one item per chunk")]
    fn a_missing_item_is_refused() {
        filled(16, 8, (0..1).into_par_iter(), |_, _| ());
    }
}
