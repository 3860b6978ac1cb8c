//! [`ExactSum`]: the sum of any number of `f64`s with no rounding at all,
//! so that a summary maintained by adding and later subtracting values
//! is the same as one computed afresh.

use crate::error::{Error, Result};

/// Limbs of 64 bits. Every finite `f64` is an integer multiple of
/// `2^-1074` below `2^1024`, so 2,098 bits hold any one of them; 64 more
/// bits let `2^64` of them be added without overflow, and one more is the
/// sign: 2,163 bits, 34 limbs.
const LIMBS: usize = 34;

/// An exact running sum of finite `f64` values, in two's complement fixed
/// point with the unit `2^-1074` (the least subnormal).
///
/// Adding and subtracting are exact and order-independent, so
/// `1e300 + 1 - 1e300` is `1`, and a total kept up to date through inserts
/// and deletes equals the total computed from what remains.
/// [`ExactSum::to_f64`] rounds once, to nearest; a sum beyond the range of
/// `f64` is infinite.
///
/// ```
/// use runstore_core::summary::ExactSum;
/// let mut s = ExactSum::default();
/// s.add(1e300);
/// s.add(1.0);
/// s.sub(1e300);
/// assert_eq!(s.to_f64(), 1.0);
/// s.add(0.1);
/// s.add(0.2);
/// assert_eq!(s.to_f64(), 1.3); // 0.1 + 0.2 + 1, rounded once
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ExactSum {
    limbs: [u64; LIMBS],
}

impl Default for ExactSum {
    fn default() -> Self {
        ExactSum { limbs: [0; LIMBS] }
    }
}

impl std::fmt::Debug for ExactSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExactSum({:e})", self.to_f64())
    }
}

impl ExactSum {
    /// The sum of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> ExactSum {
        let mut s = ExactSum::default();
        for v in values {
            s.add(v);
        }
        s
    }

    /// Adds a finite value; infinities and NaN are ignored (metrics refuse
    /// them before they are stored).
    pub fn add(&mut self, x: f64) {
        self.add_signed(x, false);
    }

    /// Subtracts a finite value.
    pub fn sub(&mut self, x: f64) {
        self.add_signed(x, true);
    }

    /// Adds another sum.
    pub fn add_sum(&mut self, other: &ExactSum) {
        let mut carry = false;
        for (a, b) in self.limbs.iter_mut().zip(other.limbs) {
            let (s1, c1) = a.overflowing_add(b);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *a = s2;
            carry = c1 || c2;
        }
    }

    /// Subtracts another sum.
    pub fn sub_sum(&mut self, other: &ExactSum) {
        self.add_sum(&other.negated());
    }

    /// Whether the sum is zero.
    pub fn is_zero(&self) -> bool {
        self.limbs.iter().all(|&l| l == 0)
    }

    fn is_negative(&self) -> bool {
        self.limbs[LIMBS - 1] >> 63 == 1
    }

    fn negated(&self) -> ExactSum {
        let mut out = ExactSum::default();
        let mut carry = true;
        for (o, &l) in out.limbs.iter_mut().zip(&self.limbs) {
            let (s, c) = (!l).overflowing_add(u64::from(carry));
            *o = s;
            carry = c;
        }
        out
    }

    fn add_signed(&mut self, x: f64, negate: bool) {
        if !x.is_finite() || x == 0.0 {
            return;
        }
        let bits = x.to_bits();
        let negative = (bits >> 63 == 1) != negate;
        let exponent = ((bits >> 52) & 0x7ff) as usize;
        let fraction = bits & ((1 << 52) - 1);
        // value = mantissa * 2^-1074 * 2^shift
        let (mantissa, shift) = if exponent == 0 {
            (fraction, 0)
        } else {
            (fraction | (1 << 52), exponent - 1)
        };
        let wide = u128::from(mantissa) << (shift % 64);
        let at = shift / 64;
        let parts = [wide as u64, (wide >> 64) as u64];
        // Two's complement: wrapping at the top limb is the arithmetic.
        let mut carry = false;
        for (i, limb) in self.limbs.iter_mut().enumerate().skip(at) {
            let part = parts.get(i - at).copied().unwrap_or(0);
            if i - at >= parts.len() && !carry {
                break;
            }
            let (r1, c1, r2, c2);
            if negative {
                (r1, c1) = limb.overflowing_sub(part);
                (r2, c2) = r1.overflowing_sub(u64::from(carry));
            } else {
                (r1, c1) = limb.overflowing_add(part);
                (r2, c2) = r1.overflowing_add(u64::from(carry));
            }
            *limb = r2;
            carry = c1 || c2;
        }
    }

    /// The sum rounded once to the nearest `f64` (ties to even); beyond
    /// the range of `f64`, an infinity of the sum's sign.
    pub fn to_f64(&self) -> f64 {
        self.scaled_to_f64(0)
    }

    /// The mean of `count` values summing to this: `to_f64() / count`,
    /// except that a sum beyond the range of `f64` is scaled down first,
    /// so the mean of huge values is finite when it fits. `NaN` for no
    /// values.
    pub fn mean(&self, count: u64) -> f64 {
        if count == 0 {
            return f64::NAN;
        }
        let sum = self.to_f64();
        if sum.is_finite() {
            return sum / count as f64;
        }
        self.scaled_to_f64(-64) / count as f64 * 2f64.powi(64)
    }

    /// `self * 2^scale`, rounded once.
    fn scaled_to_f64(&self, scale: i32) -> f64 {
        let negative = self.is_negative();
        let magnitude = if negative {
            self.negated()
        } else {
            self.clone()
        };
        let Some(top) = magnitude.limbs.iter().rposition(|&l| l != 0) else {
            return 0.0;
        };
        // Index of the highest set bit, counting from the unit 2^-1074.
        let high = top * 64 + 63 - magnitude.limbs[top].leading_zeros() as usize;
        let value = if high < 53 && scale == 0 {
            // Below 2^53 units: exact, also where the result is subnormal.
            magnitude.limbs[0] as f64 * f64::from_bits(1)
        } else {
            // The top 64 bits, with a sticky bit for anything below them,
            // round correctly in one conversion to f64.
            let (mut top64, below) = magnitude.bits_below(high + 1, 64);
            if below {
                top64 |= 1;
            }
            let exponent = high as i64 - 63 - 1074 + i64::from(scale);
            times_power_of_two(top64 as f64, exponent)
        };
        if negative { -value } else { value }
    }

    /// The `n` bits ending just below bit `end`, and whether any bit
    /// below those is set.
    fn bits_below(&self, end: usize, n: usize) -> (u64, bool) {
        let bit = |i: usize| (self.limbs[i / 64] >> (i % 64)) & 1;
        let start = end.saturating_sub(n);
        let mut out = 0u64;
        for i in (start..end).rev() {
            out = (out << 1) | bit(i);
        }
        // Fewer than n bits exist: shift them to the top.
        out <<= n - (end - start);
        let whole = start / 64;
        let partial = self
            .limbs
            .get(whole)
            .map_or(0, |l| l & ((1u64 << (start % 64)) - 1));
        let sticky = partial != 0 || self.limbs[..whole].iter().any(|&l| l != 0);
        (out, sticky)
    }

    /// A compact encoding for storage: the count of zero low limbs, then
    /// the limbs up to the last that is not the sign's extension.
    pub fn to_bytes(&self) -> Vec<u8> {
        let extension = if self.is_negative() { u64::MAX } else { 0 };
        let low = self.limbs.iter().take_while(|&&l| l == 0).count();
        if low == LIMBS {
            return vec![LIMBS as u8];
        }
        let mut high = LIMBS;
        while high > low + 1 && self.limbs[high - 1] == extension {
            // Keep one limb whose top bit carries the sign.
            let below_sign = self.limbs[high - 2] >> 63;
            if below_sign != extension >> 63 {
                break;
            }
            high -= 1;
        }
        let mut out = Vec::with_capacity(1 + (high - low) * 8);
        out.push(low as u8);
        for l in &self.limbs[low..high] {
            out.extend_from_slice(&l.to_le_bytes());
        }
        out
    }

    /// Decodes [`ExactSum::to_bytes`]; anything else is
    /// [`Error::Corrupt`] naming `what`.
    pub fn from_bytes(what: &str, bytes: &[u8]) -> Result<ExactSum> {
        let bad = || Error::corrupt(what, format!("not an exact sum ({} bytes)", bytes.len()));
        let (&low, rest) = bytes.split_first().ok_or_else(bad)?;
        let low = usize::from(low);
        if rest.len() % 8 != 0 || low > LIMBS || low + rest.len() / 8 > LIMBS {
            return Err(bad());
        }
        let mut s = ExactSum::default();
        if low == LIMBS {
            return if rest.is_empty() { Ok(s) } else { Err(bad()) };
        }
        let mut last = 0u64;
        for (i, chunk) in rest.chunks_exact(8).enumerate() {
            last = u64::from_le_bytes(chunk.try_into().map_err(|_| bad())?);
            s.limbs[low + i] = last;
        }
        if last >> 63 == 1 {
            for l in &mut s.limbs[low + rest.len() / 8..] {
                *l = u64::MAX;
            }
        }
        Ok(s)
    }
}

/// `x * 2^exponent` for an `x` with at most 53 significant bits, exact
/// unless the result overflows (then infinite) or falls below the normal
/// range (then rounded once).
fn times_power_of_two(x: f64, exponent: i64) -> f64 {
    let mut x = x;
    let mut e = exponent;
    // Steps of at most 2^±1000 keep every intermediate normal and exact.
    while e > 1000 {
        x *= pow2(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= pow2(-1000);
        e += 1000;
    }
    x * pow2(e as i32)
}

/// `2^e` for `-1022 <= e <= 1023`.
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &[f64]) -> f64 {
        ExactSum::of(values.iter().copied()).to_f64()
    }

    #[test]
    fn sums_and_cancels_exactly() {
        assert_eq!(exact(&[]), 0.0);
        assert_eq!(exact(&[1.5]), 1.5);
        assert_eq!(exact(&[-1.5]), -1.5);
        assert_eq!(exact(&[1e300, 1.0, -1e300]), 1.0);
        assert_eq!(exact(&[1e-300, 1e300, -1e300]), 1e-300);
        assert_eq!(exact(&[f64::MIN_POSITIVE / 4.0]), f64::MIN_POSITIVE / 4.0);
        assert_eq!(
            exact(&[f64::from_bits(1), f64::from_bits(1)]),
            f64::from_bits(2)
        );
        assert_eq!(exact(&[f64::MAX]), f64::MAX);
        assert_eq!(exact(&[f64::MAX, f64::MAX]), f64::INFINITY);
        assert_eq!(exact(&[-f64::MAX, -f64::MAX]), f64::NEG_INFINITY);
        assert_eq!(exact(&[f64::MAX, f64::MAX, -f64::MAX]), f64::MAX);
        assert_eq!(exact(&[0.1, 0.2]), 0.30000000000000004);
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: even wins.
        assert_eq!(exact(&[9007199254740992.0, 1.0]), 9007199254740992.0);
        // ... but anything beyond the tie rounds up.
        assert_eq!(
            exact(&[9007199254740992.0, 1.0, 1e-300]),
            9007199254740994.0
        );
    }

    #[test]
    fn agrees_with_a_wide_sum_for_many_values() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..200 {
            // Integers times a power of two: exactly summable in i128.
            let values: Vec<i64> = (0..50)
                .map(|_| (next() % 2_000_001) as i64 - 1_000_000)
                .collect();
            let scale = (next() % 200) as i32 - 100;
            let floats: Vec<f64> = values
                .iter()
                .map(|&v| v as f64 * 2f64.powi(scale))
                .collect();
            let want =
                values.iter().map(|&v| i128::from(v)).sum::<i128>() as f64 * 2f64.powi(scale);
            assert_eq!(exact(&floats), want);
            let mut s = ExactSum::of(floats.iter().copied());
            for f in &floats {
                s.sub(*f);
            }
            assert!(s.is_zero());
        }
    }

    #[test]
    fn bytes_round_trip() {
        for values in [
            vec![],
            vec![1.0],
            vec![-1.0],
            vec![-1e-300],
            vec![f64::MAX, f64::MAX],
            vec![-f64::MAX, -f64::MAX, 3.5],
            vec![f64::from_bits(1)],
        ] {
            let s = ExactSum::of(values.iter().copied());
            let bytes = s.to_bytes();
            assert!(bytes.len() <= 1 + LIMBS * 8);
            assert_eq!(
                ExactSum::from_bytes("test", &bytes).unwrap(),
                s,
                "{values:?}"
            );
        }
        assert!(ExactSum::from_bytes("t", &[]).is_err());
        assert!(ExactSum::from_bytes("t", &[0, 1, 2]).is_err());
        assert!(ExactSum::from_bytes("t", &[40]).is_err());
    }

    #[test]
    fn the_mean_of_huge_values_is_finite() {
        let s = ExactSum::of([1.5e308, 1.5e308]);
        assert_eq!(s.to_f64(), f64::INFINITY);
        assert_eq!(s.mean(2), 1.5e308);
        assert!(ExactSum::default().mean(0).is_nan());
    }
}
