//! Duration buckets: a few thousand counters that locate any nearest-rank
//! percentile to within 1/256 of its value, so an exact percentile reads
//! one bucket's metrics instead of all of them.

use std::collections::BTreeMap;

use crate::metrics::nearest_rank;

/// Sub-buckets per power of two.
const PER_OCTAVE_BITS: u32 = 8;
const PER_OCTAVE: u64 = 1 << PER_OCTAVE_BITS;

/// The bucket of a duration: durations below 256 µs have one bucket
/// each; above, each power of two is split into 256 equal buckets, so a
/// bucket spans less than 0.4% of its values. Bucket numbers grow with
/// the duration and stay below 14,592.
///
/// ```
/// use runstore_core::summary::{bucket_of, bucket_range};
/// assert_eq!(bucket_of(7), 7);
/// let b = bucket_of(1_000_000);
/// let (lo, hi) = bucket_range(b);
/// assert!(lo <= 1_000_000 && 1_000_000 < hi);
/// assert_eq!(hi - lo, 2048); // 2^19 / 2^8: 1 second within 2 ms
/// assert!(bucket_of(u64::MAX) > b);
/// ```
pub fn bucket_of(duration: u64) -> u32 {
    if duration < PER_OCTAVE {
        return duration as u32;
    }
    let high = 63 - duration.leading_zeros(); // >= 8
    let sub = (duration >> (high - PER_OCTAVE_BITS)) & (PER_OCTAVE - 1);
    ((high - PER_OCTAVE_BITS + 1) << PER_OCTAVE_BITS) | sub as u32
}

/// The durations `lo..hi` of a bucket (`hi` is saturated at `u64::MAX`
/// for the last one, whose range is inclusive there).
pub fn bucket_range(bucket: u32) -> (u64, u64) {
    let octave = bucket >> PER_OCTAVE_BITS;
    let sub = u64::from(bucket) & (PER_OCTAVE - 1);
    if octave == 0 {
        return (sub, sub + 1);
    }
    let shift = octave - 1;
    let lo = (PER_OCTAVE + sub) << shift;
    let hi = (PER_OCTAVE + sub + 1)
        .checked_shl(shift)
        .filter(|&h| h > lo)
        .unwrap_or(u64::MAX);
    (lo, hi)
}

/// Where the duration of a given rank is: known from the buckets alone, or
/// the `offset`-th (0-based, ascending) duration in `lo..hi`, which the
/// backend reads with an indexed range query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankProbe {
    /// The bucket holds one duration only.
    Exact(u64),
    /// Read the `offset`-th duration of the range `lo..hi`.
    Within {
        /// Least duration of the bucket.
        lo: u64,
        /// Just past the greatest (inclusive if `u64::MAX`).
        hi: u64,
        /// How many durations of the bucket come first.
        offset: u64,
    },
}

/// The probes of the nearest-rank percentiles `ps` among the counts of
/// `buckets` (bucket -> count, `n` in all). `None` if `n` is zero or the
/// buckets hold fewer than `n` (the counters disagree with each other).
pub fn percentile_probes(
    buckets: &BTreeMap<u32, u64>,
    n: u64,
    ps: &[u32],
) -> Option<Vec<RankProbe>> {
    if n == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(ps.len());
    for &p in ps {
        let rank = nearest_rank(p, n);
        let mut before = 0u64;
        let mut found = None;
        for (&bucket, &count) in buckets {
            if before + count >= rank {
                let (lo, hi) = bucket_range(bucket);
                found = Some(if hi - lo == 1 {
                    RankProbe::Exact(lo)
                } else {
                    RankProbe::Within {
                        lo,
                        hi,
                        offset: rank - before - 1,
                    }
                });
                break;
            }
            before += count;
        }
        out.push(found?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_duration_in_order() {
        let mut last = 0;
        for d in (0..5000u64).chain([
            1 << 20,
            (1 << 20) + 1,
            u64::MAX / 3,
            i64::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ]) {
            let b = bucket_of(d);
            assert!(b >= last, "{d}");
            last = b;
            let (lo, hi) = bucket_range(b);
            assert!(lo <= d && (d < hi || hi == u64::MAX), "{d} in {lo}..{hi}");
            assert!(b < 14_592);
        }
        // Consecutive buckets meet.
        for b in 0..14_000 {
            assert_eq!(bucket_range(b).1, bucket_range(b + 1).0, "bucket {b}");
        }
    }

    #[test]
    fn probes_find_the_rank() {
        let durations: Vec<u64> = (0..1000).map(|i| i * 37 % 5000 + 300).collect();
        let mut sorted = durations.clone();
        sorted.sort_unstable();
        let mut buckets = BTreeMap::new();
        for &d in &durations {
            *buckets.entry(bucket_of(d)).or_insert(0) += 1;
        }
        let probes = percentile_probes(&buckets, 1000, &[1, 50, 95, 99, 100]).unwrap();
        for (probe, p) in probes.into_iter().zip([1u32, 50, 95, 99, 100]) {
            let want = sorted[(nearest_rank(p, 1000) - 1) as usize];
            let got = match probe {
                RankProbe::Exact(d) => d,
                RankProbe::Within { lo, hi, offset } => *sorted
                    .iter()
                    .filter(|&&d| d >= lo && d < hi)
                    .nth(offset as usize)
                    .unwrap(),
            };
            assert_eq!(got, want, "p{p}");
        }
        assert_eq!(percentile_probes(&buckets, 0, &[50]), None);
        assert_eq!(percentile_probes(&buckets, 2000, &[99]), None);
    }
}
