//! The seeded row sample every layer draws: which sentences to embed, which examples to train
//! on, which tokens a sampled measure reads.

use rand::rngs::StdRng;
use rand::seq::index;
use rand::{Rng, SeedableRng};

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

/// A bootstrap resample of `0..n`: `n` indices drawn with replacement with `seed`, sorted.
///
/// ```
/// use isotropy_lab::util::sample::bootstrap;
///
/// let draw = bootstrap(10, 3);
/// assert_eq!(draw.len(), 10);
/// assert!(draw.iter().all(|&i| i < 10));
/// assert_eq!(draw, bootstrap(10, 3));
/// ```
pub fn bootstrap(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut draw: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
    draw.sort_unstable();
    draw
}

/// A bootstrap resample of groups of rows (the tokens of sentences): as many groups as there are
/// drawn with replacement ([`bootstrap`]), and every row of each drawn group, once per draw.
/// `groups[i]` is row `i`'s group; the result lists row indices.
///
/// ```
/// use isotropy_lab::util::sample::bootstrap_groups;
///
/// // Two sentences of two and three tokens: every draw keeps sentences whole.
/// let rows = bootstrap_groups(&[0, 0, 1, 1, 1], 7);
/// let (first, second) = (rows.iter().filter(|&&r| r < 2).count(), rows.iter().filter(|&&r| r >= 2).count());
/// assert_eq!(first % 2, 0);
/// assert_eq!(second % 3, 0);
/// assert_eq!(first / 2 + second / 3, 2);
/// ```
pub fn bootstrap_groups(groups: &[u32], seed: u64) -> Vec<usize> {
    let mut members: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, &g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    let ids: Vec<&Vec<usize>> = members.values().collect();
    bootstrap(ids.len(), seed)
        .into_iter()
        .flat_map(|g| ids[g].iter().copied())
        .collect()
}
