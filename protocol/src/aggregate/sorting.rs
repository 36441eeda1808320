//! Sorting networks (fixed lists of comparators) for the coordinate-wise order statistics.
//!
//! A network is a fixed list of compare-exchange steps `(a, b)`, `a < b`, after which position
//! `a` holds the smaller value. Because the list does not depend on the data, it can be applied to
//! many coordinates at once with element-wise `min`/`max`, which the compiler turns into SIMD.

/// One compare-exchange: after it, position `.0` holds the minimum and `.1` the maximum.
pub(crate) type Comparator = (u32, u32);

/// Writes Batcher's odd–even merge sorting network for `n` keys into `out` (Batcher 1968).
///
/// The network for the next power of two is generated and every comparator touching a position
/// `>= n` is dropped; this is exact, because padding keys equal to `+inf` would never move.
/// O(n log² n) comparators. Does not allocate once `out` has the capacity.
pub(crate) fn batcher(n: usize, out: &mut Vec<Comparator>) {
    out.clear();
    if n < 2 {
        return;
    }
    let size = n.next_power_of_two();
    let mut p = 1;
    while p < size {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < size {
                for i in 0..k.min(size - j - k) {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < n {
                        out.push(((i + j) as u32, (i + j + k) as u32));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
}

/// Removes the comparators that cannot change what the caller reads from the sorted positions.
///
/// `labels[p]` describes output position `p`: `0` = not read, and positions sharing a non-zero
/// label are read only through their sum (e.g. the kept values of a trimmed mean, or the two
/// middle values of an even median). Walking the network backwards, a comparator between two
/// positions with the same label is dropped (it only permutes values inside a group whose sum is
/// what counts, or between unread positions); a kept comparator gives both its inputs fresh,
/// distinct labels. `labels` is overwritten. Does not allocate.
pub(crate) fn prune(net: &mut Vec<Comparator>, labels: &mut [u32]) {
    let mut fresh = labels.iter().copied().max().unwrap_or(0) + 1;
    for c in net.iter_mut().rev() {
        let (a, b) = (c.0 as usize, c.1 as usize);
        if labels[a] == labels[b] {
            *c = (u32::MAX, u32::MAX);
        } else {
            labels[a] = fresh;
            labels[b] = fresh + 1;
            fresh += 2;
        }
    }
    net.retain(|c| c.0 != u32::MAX);
}

/// Applies the network to `W` independent columns at once: `block[p][k]` is the value at
/// position `p` of column `k`.
#[inline]
pub(crate) fn apply<const W: usize>(net: &[Comparator], block: &mut [[f32; W]]) {
    for &(a, b) in net {
        let x = block[a as usize];
        let y = block[b as usize];
        let mut lo = [0.0f32; W];
        let mut hi = [0.0f32; W];
        for k in 0..W {
            // Inputs are finite, so plain comparisons give min/max (and map to SIMD min/max).
            lo[k] = if x[k] < y[k] { x[k] } else { y[k] };
            hi[k] = if x[k] < y[k] { y[k] } else { x[k] };
        }
        block[a as usize] = lo;
        block[b as usize] = hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero-one principle: a network sorts every input iff it sorts every 0/1 input.
    fn sorts_all_binary(n: usize, net: &[Comparator]) -> bool {
        (0u32..1 << n).all(|bits| {
            let mut v: Vec<[f32; 1]> = (0..n).map(|p| [((bits >> p) & 1) as f32]).collect();
            apply(net, &mut v);
            v.windows(2).all(|w| w[0][0] <= w[1][0])
        })
    }

    #[test]
    fn batcher_sorts_every_size_up_to_16() {
        let mut net = Vec::new();
        for n in 0..=16 {
            batcher(n, &mut net);
            assert!(sorts_all_binary(n, &net), "n={n}");
        }
        batcher(16, &mut net);
        assert_eq!(net.len(), 63);
    }

    #[test]
    fn pruned_median_network_still_finds_the_median() {
        let mut net = Vec::new();
        for n in 1..=13usize {
            batcher(n, &mut net);
            let full = net.len();
            let mut labels = vec![0u32; n];
            labels[(n - 1) / 2] = 1;
            if n % 2 == 0 {
                labels[n / 2] = 1;
            }
            prune(&mut net, &mut labels);
            assert!(net.len() <= full);
            // Every permutation-free check: all 0/1 inputs give the right middle value(s).
            for bits in 0u32..1 << n {
                let mut v: Vec<[f32; 1]> = (0..n).map(|p| [((bits >> p) & 1) as f32]).collect();
                let mut sorted: Vec<f32> = v.iter().map(|x| x[0]).collect();
                sorted.sort_by(f32::total_cmp);
                apply(&net, &mut v);
                let got = v[(n - 1) / 2][0] + v[n / 2][0];
                assert_eq!(
                    got,
                    sorted[(n - 1) / 2] + sorted[n / 2],
                    "n={n} bits={bits:b}"
                );
            }
        }
    }

    #[test]
    fn pruned_trimmed_network_keeps_the_middle_sum() {
        let mut net = Vec::new();
        let (n, f) = (16usize, 3usize);
        batcher(n, &mut net);
        let mut labels = vec![0u32; n];
        labels[f..n - f].fill(1);
        prune(&mut net, &mut labels);
        assert!(net.len() < 63);
        let mut x = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut v: Vec<[f32; 1]> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [(x % 1000) as f32]
                })
                .collect();
            let mut sorted: Vec<f32> = v.iter().map(|x| x[0]).collect();
            sorted.sort_by(f32::total_cmp);
            apply(&net, &mut v);
            let got: f32 = v[f..n - f].iter().map(|x| x[0]).sum();
            assert_eq!(got, sorted[f..n - f].iter().sum::<f32>());
        }
    }
}
