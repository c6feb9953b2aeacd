//! The seeded row sample every layer draws: which sentences to embed, which examples to train
//! on, which tokens a sampled measure reads.

use rand::rngs::StdRng;
use rand::seq::index;
use rand::SeedableRng;

/// `n` distinct indices of `0..len`, drawn with `seed` and sorted ascending (so the sample keeps
/// the original order); all of `0..len` when `n` is `None` or not smaller than `len`.
///
/// The same `(len, n, seed)` always gives the same sample, on any machine.
///
/// ```
/// use isotropy_lab::util::sample::sorted_sample;
///
/// let rows = sorted_sample(100, Some(5), 0);
/// assert_eq!(rows.len(), 5);
/// assert!(rows.windows(2).all(|w| w[0] < w[1]));
/// assert_eq!(rows, sorted_sample(100, Some(5), 0));
/// assert_eq!(sorted_sample(3, Some(10), 0), vec![0, 1, 2]);
/// assert_eq!(sorted_sample(3, None, 0), vec![0, 1, 2]);
/// ```
pub fn sorted_sample(len: usize, n: Option<usize>, seed: u64) -> Vec<usize> {
    match n {
        Some(n) if n < len => {
            let mut rows = index::sample(&mut StdRng::seed_from_u64(seed), len, n).into_vec();
            rows.sort_unstable();
            rows
        }
        _ => (0..len).collect(),
    }
}
