//! The streaming, mergeable `Welford` state: a pilot, a push buffer run through the SIMD
//! kernel, and a binary-counter cascade of parts (every value sees O(log n) Chan merges).

use super::{Moments, Run, pilot_of, run, welford_kernel};
use crate::element::{Element, Float};

/// Values `Welford::push` collects before running the SIMD kernel over them.
const PUSH_BUFFER: usize = 64;
/// Size classes of the streaming cascade: class `k` holds a part of `2^k..2^(k+1)` values.
const CLASSES: usize = 64;

/// Streaming mean and variance: push values one at a time, extend by slices, merge states.
///
/// As accurate as [`welford`](crate::welford) on the same data, which a textbook
/// one-value-at-a-time Welford is not (its error grows with the count: 2e-6 relative at 4096
/// f32 values, against 1e-7 for the blocked kernel). The state keeps:
/// * a *pilot* (the median of three of the first values added): everything inside is the
///   moments of `x − pilot`, so parts merge without rounding a large mean;
/// * a buffer of 64 pushed values, run through the SIMD Welford kernel when full;
/// * a cascade of parts by size class (a binary counter, as pairwise summation): a new part
///   is merged with the stored part of its class and carried up, so every value goes through
///   O(log n) Chan merges.
///
/// It holds no heap memory (about 2 KiB for f64) and is `Copy`. Each part is rescued from
/// overflow and underflow as [`welford`](crate::welford) is. Limit: parts are merged in
/// unscaled units, so when the deviations between parts' means square below
/// `A::MIN_POSITIVE` (f32 data with σ below ~1e-17) the merges lose accuracy that
/// [`welford`](crate::welford), which scales the whole slice, keeps; and a mean whose
/// distance from the pilot exceeds `A::MAX` (values of both signs near ±`A::MAX`) is not
/// representable in the state.
///
/// # Example
/// ```
/// use simdnorm::Welford;
/// let mut w = Welford::<f32>::new();
/// w.push(1.0);
/// w.extend(&[2.0f32, 3.0]);
/// let mut other = Welford::new();
/// other.push(4.0);
/// w.merge(&other);
/// let m = w.moments();
/// assert_eq!((m.count, m.mean, m.m2), (4, 2.5, 5.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Welford<A> {
    pilot: A,
    /// `buf[..len]`: pushed values not yet in the cascade.
    buf: [A; PUSH_BUFFER],
    len: usize,
    /// `parts[k]`: moments of `x − pilot` over `2^k..2^(k+1)` values, or count 0.
    parts: [Moments<A>; CLASSES],
    /// Whether any value was added (the pilot is set).
    started: bool,
}

impl<A: Float> Default for Welford<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Float> Welford<A> {
    /// An empty state.
    ///
    /// # Example
    /// ```
    /// assert_eq!(simdnorm::Welford::<f64>::new().moments().count, 0);
    /// ```
    pub fn new() -> Self {
        Self {
            pilot: A::ZERO,
            buf: [A::ZERO; PUSH_BUFFER],
            len: 0,
            parts: [Moments::EMPTY; CLASSES],
            started: false,
        }
    }

    /// Adds one value.
    ///
    /// # Example
    /// ```
    /// let mut w = simdnorm::Welford::new();
    /// for v in [1.0f64, 2.0, 3.0] { w.push(v) }
    /// assert_eq!(w.moments().variance(1), 1.0);
    /// ```
    pub fn push(&mut self, v: A) {
        self.buf[self.len] = v;
        self.len += 1;
        if self.len == PUSH_BUFFER {
            let buf = self.buf;
            self.add(&buf);
            self.len = 0;
        }
    }

    /// Adds a slice of values (SIMD Welford kernel).
    ///
    /// # Example
    /// ```
    /// let mut w = simdnorm::Welford::new();
    /// w.extend(&[1.0f32, 2.0, 3.0, 4.0]);
    /// assert_eq!(w.moments().mean, 2.5);
    /// ```
    pub fn extend<T: Element<Acc = A>>(&mut self, x: &[T]) {
        if !x.is_empty() {
            self.add(x);
        }
    }

    /// Adds the values summarized by another state.
    ///
    /// # Example
    /// ```
    /// use simdnorm::Welford;
    /// let (mut a, mut b) = (Welford::new(), Welford::new());
    /// a.extend(&[1.0f64, 2.0]);
    /// b.extend(&[3.0f64, 4.0]);
    /// a.merge(&b);
    /// assert_eq!(a.moments().m2, 5.0);
    /// ```
    pub fn merge(&mut self, other: &Self) {
        if other.started {
            self.start(other.pilot);
            for p in other.parts.iter().rev().filter(|p| p.count > 0) {
                let mut mean = p.mean + (other.pilot - self.pilot);
                let truth = p.mean + other.pilot;
                if !mean.is_finite() && truth.is_finite() {
                    self.rebase();
                    mean = truth;
                }
                self.insert(Moments { mean, ..*p });
            }
        }
        let pending = &other.buf[..other.len];
        if !pending.is_empty() {
            self.add(pending);
        }
    }

    /// The statistics so far ([`Moments::EMPTY`] when nothing was added). A NaN or ±∞ among
    /// the values gives NaN mean and m2.
    ///
    /// # Example
    /// ```
    /// let mut w = simdnorm::Welford::new();
    /// w.push(f32::NAN);
    /// w.push(1.0);
    /// assert!(w.moments().mean.is_nan() && w.moments().m2.is_nan());
    /// ```
    pub fn moments(&self) -> Moments<A> {
        let mut me = *self;
        if me.len > 0 {
            let pending = me.buf;
            me.add(&pending[..me.len]);
        }
        if !me.started {
            return Moments::EMPTY;
        }
        let mut m = Moments::EMPTY;
        for p in me.parts.iter().rev() {
            m = m.merge(p);
        }
        let m = m.unshift(me.pilot, 0);
        if !m.mean.is_finite() || m.m2.is_nan() {
            return Moments::nan(m.count);
        }
        m
    }

    fn start(&mut self, pilot: A) {
        if !self.started {
            self.started = true;
            self.pilot = pilot;
        }
    }

    /// Adds the moments of `x` (non-empty) as a part. Where its mean relative to the pilot
    /// overflows (data spanning ±`A::MAX`: a pilot of 3e38 and a part near −1.7e38, found by
    /// the fuzzer) the state is first re-based to pilot 0, where means are the values' own.
    fn add<T: Element<Acc = A>>(&mut self, x: &[T]) {
        self.start(pilot_of(x));
        let mut m = self.part(x, self.pilot);
        if !m.mean.is_finite() && !m.mean.is_nan() {
            self.rebase();
            m = self.part(x, self.pilot);
        }
        self.insert(m);
    }

    /// Re-expresses every part around pilot 0.
    fn rebase(&mut self) {
        for p in self.parts.iter_mut().filter(|p| p.count > 0) {
            p.mean = p.mean + self.pilot;
        }
        self.pilot = A::ZERO;
    }

    /// Moments of `x − pilot`, rescued like [`welford`](crate::welford)'s.
    fn part<T: Element<Acc = A>>(&self, x: &[T], p: A) -> Moments<A> {
        // The part's own pilot, then re-shifted to `p`: running the kernel with `p` itself
        // overflowed when `p` lies far outside the part (`p·2^k` of the rescue, found by the
        // fuzzer: a pilot of 3e38 and a part holding 0.041).
        let pl = pilot_of(x);
        let shift = pl - p;
        match run(x, pl, welford_kernel) {
            Run::Fast(m) => Moments {
                mean: m.mean + shift,
                ..m
            },
            Run::Scaled(m, ps, k) => {
                // The shifted mean directly keeps its precision; if that overflows (|x| near
                // A::MAX), go through the true mean, which cannot.
                let direct = m.mean * A::exp2i(-k) + shift;
                let m = m.unshift(ps, k);
                Moments {
                    mean: if direct.is_finite() {
                        direct
                    } else {
                        m.mean - p
                    },
                    ..m
                }
            }
            Run::Nan(count) => Moments::nan(count),
        }
    }

    fn insert(&mut self, mut m: Moments<A>) {
        loop {
            let class = (u64::BITS - 1 - m.count.leading_zeros()) as usize;
            let slot = &mut self.parts[class.min(CLASSES - 1)];
            if slot.count == 0 {
                *slot = m;
                return;
            }
            m = slot.merge(&m);
            *slot = Moments::EMPTY;
        }
    }
}
