//! Random peer selection.
//!
//! Stratified sampling: the candidates are cut into `want` equal strata and one peer is drawn
//! uniformly from each. Every candidate is equally likely to be picked (up to rounding of stratum
//! sizes), picks never repeat, the cost is one random number per returned peer whatever the swarm
//! size, and nothing is allocated. Returning "the first N" (an old Torrust complaint) would give
//! every client the same peers; a contiguous run from a random start would, over an
//! address-sorted list, hand out peers of one network together.

use rand_core::Rng;

/// A uniform draw from `0..n` (Lemire's multiply-shift; the bias is below 2^-32 × n).
fn below(rng: &mut impl Rng, n: usize) -> usize {
    debug_assert!(n > 0 && n <= u32::MAX as usize);
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

/// Up to `want` distinct indices from `0..n`, never `exclude`, chosen uniformly at random and
/// yielded in increasing order (so a caller can find them in one forward pass). All of them if
/// there are no more than `want`.
pub fn indices<R: Rng>(
    n: usize,
    exclude: Option<usize>,
    want: usize,
    rng: &mut R,
) -> impl Iterator<Item = usize> {
    let exclude = exclude.filter(|&x| x < n);
    let m = n - usize::from(exclude.is_some());
    let all = want >= m;
    let count = if all { m } else { want };
    (0..count).map(move |i| {
        // Virtual index v in 0..m skips the excluded slot.
        let v = if all {
            i
        } else {
            let start = i * m / want;
            let end = (i + 1) * m / want;
            start + below(rng, end - start)
        };
        match exclude {
            Some(x) if v >= x => v + 1,
            _ => v,
        }
    })
}

/// Calls `emit` with each of [`indices`].
pub fn sample(
    n: usize,
    exclude: Option<usize>,
    want: usize,
    rng: &mut impl Rng,
    emit: impl FnMut(usize),
) {
    indices(n, exclude, want, rng).for_each(emit);
}

/// Picks peers for one requester from a swarm laid out as leechers `0..leechers`, then seeders
/// `leechers..total` — the layout every store presents. A seeder gets leechers only (it has
/// nothing to gain from other seeders); a leecher gets anyone. `requester` is the requester's own
/// index, if it is in the swarm, so it is never handed itself.
pub fn for_requester(
    leechers: usize,
    total: usize,
    requester: Option<usize>,
    seeding: bool,
    want: usize,
    rng: &mut impl Rng,
    emit: impl FnMut(usize),
) {
    let candidates = if seeding { leechers } else { total };
    sample(
        candidates,
        requester.filter(|&i| i < candidates),
        want,
        rng,
        emit,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn picks(n: usize, exclude: Option<usize>, want: usize, rng: &mut SmallRng) -> Vec<usize> {
        let mut out = Vec::new();
        sample(n, exclude, want, rng, |i| out.push(i));
        out
    }

    #[test]
    fn small_swarms_return_everyone_but_the_requester() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(picks(4, Some(2), 50, &mut rng), vec![0, 1, 3]);
        assert_eq!(picks(4, None, 4, &mut rng), vec![0, 1, 2, 3]);
        assert_eq!(picks(0, None, 4, &mut rng), Vec::<usize>::new());
        assert_eq!(picks(1, Some(0), 4, &mut rng), Vec::<usize>::new());
    }

    #[test]
    fn picks_are_distinct_and_exclude_the_requester() {
        let mut rng = SmallRng::seed_from_u64(2);
        for n in [2usize, 3, 10, 51, 100, 1000] {
            for want in [1usize, 2, 7, 50] {
                let exclude = Some(n / 2);
                let got = picks(n, exclude, want, &mut rng);
                let mut sorted = got.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), got.len(), "distinct");
                assert_eq!(got.len(), want.min(n - 1));
                assert!(!got.contains(&(n / 2)));
                assert!(got.iter().all(|&i| i < n));
            }
        }
    }

    #[test]
    fn every_peer_is_about_equally_likely() {
        // 1000 candidates, 50 wanted, 20,000 draws: each peer expects 1000 picks.
        let mut rng = SmallRng::seed_from_u64(3);
        let mut hits = vec![0u32; 1000];
        for _ in 0..20_000 {
            sample(1000, Some(500), 50, &mut rng, |i| hits[i] += 1);
        }
        assert_eq!(hits[500], 0);
        let (min, max) = hits
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 500)
            .fold((u32::MAX, 0), |(lo, hi), (_, &h)| (lo.min(h), hi.max(h)));
        assert!(min > 850 && max < 1150, "min {min} max {max}");
    }

    #[test]
    fn different_draws_give_different_peers() {
        let mut rng = SmallRng::seed_from_u64(4);
        let a = picks(10_000, None, 50, &mut rng);
        let b = picks(10_000, None, 50, &mut rng);
        assert_ne!(a, b);
    }
}
