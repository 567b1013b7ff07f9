//! Element and accumulator types.
//!
//! * [`Float`]: the accumulator types `f32` and `f64` (`T::Acc`), each with the one SIMD vector
//!   type the kernels use (`f32x16`, `f64x8`) and the scalar constants they need.
//! * [`Element`]: the storage types (`f32`, `f64`, and with the `half` feature `f16`, `bf16`).
//!   An element knows its accumulator and how to load `LANES` of itself into a vector of it.
//!
//! `wide` picks AVX-512, AVX2 or SSE2 instructions at compile time; `f32x16` is one zmm
//! register with AVX-512 and two or four narrower ones otherwise, so one vector type serves
//! every target and the kernels are written once.

use core::fmt::{Debug, Display};
use core::ops::{Add, Div, Mul, Neg, Sub};
use wide::{f32x16, f64x8};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    #[cfg(feature = "half")]
    impl Sealed for half::f16 {}
    #[cfg(feature = "half")]
    impl Sealed for half::bf16 {}
    impl Sealed for wide::f32x16 {}
    impl Sealed for wide::f64x8 {}
}

/// Arithmetic shared by accumulator scalars and their SIMD vectors, so formulas such as the
/// Chan merge are written once for both.
pub trait Arith:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + sealed::Sealed
{
    /// `self * b + c`; fused where the target has FMA.
    fn mul_add(self, b: Self, c: Self) -> Self;
}

/// SIMD vector of an accumulator type `A` (`f32x16` for `f32`, `f64x8` for `f64`).
pub trait Vector<A: Float>: Arith + Send + Sync + Debug {
    /// The lanes as an array (`[A; LANES]`).
    type Array: Copy + AsRef<[A]> + AsMut<[A]> + Default;
    /// All lanes zero.
    const ZERO: Self;
    /// Every lane `a`.
    fn splat(a: A) -> Self;
    /// The lanes, in order.
    fn to_array(self) -> Self::Array;
    /// A vector from its lanes.
    fn from_array(a: Self::Array) -> Self;
    /// Lane-wise `|x|`.
    fn abs(self) -> Self;
    /// Lane-wise maximum; a NaN or ±∞ lane in `self` or `other` gives a NaN lane.
    fn max_nan(self, other: Self) -> Self;
    /// The sum of the lanes, in a fixed order for a given build (`wide`'s `reduce_add`:
    /// halves added until one lane is left, by shuffles instead of a store and scalar adds).
    fn reduce_add(self) -> A;
    /// Lanes `lo..hi` of `self`, the others of `other` (`lo ≤ hi ≤ LANES`): a lane mask by two
    /// compares with the lane indices, no round trip through memory.
    fn lanes_or(self, lo: usize, hi: usize, other: Self) -> Self;
}

/// An accumulator type: `f32` or `f64` (sealed). Also an [`Element`] (its own accumulator).
///
/// Statistics are accumulated and returned in this type.
///
/// # Example
/// ```
/// use simdnorm::Float;
/// assert_eq!(<f32 as Float>::LANES, 16);
/// assert_eq!(<f64 as Float>::LANES, 8);
/// ```
pub trait Float:
    Arith
    + Element<Acc = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + PartialOrd
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// The SIMD vector the kernels use for this type.
    type V: Vector<Self>;
    /// Lanes in [`Float::V`].
    const LANES: usize;
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Quiet NaN.
    const NAN: Self;
    /// +∞.
    const INFINITY: Self;
    /// Machine epsilon (2⁻²³ for f32, 2⁻⁵² for f64).
    const EPSILON: Self;
    /// Smallest positive normal value.
    const MIN_POSITIVE: Self;
    /// Largest finite value.
    const MAX: Self;
    /// `1/k` for `k = 1..=RECIP_LEN` at index `k - 1`, correctly rounded (Welford's table).
    const RECIP: &'static [Self];
    /// Nearest value to `n`.
    fn from_u64(n: u64) -> Self;
    /// Nearest value to `v`.
    fn from_f64(v: f64) -> Self;
    /// Exact widening to f64.
    fn to_f64(self) -> f64;
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// NaN.
    fn is_nan(self) -> bool;
    /// `|self|`.
    fn abs(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// `2^k` exactly, for `k` in the normal exponent range.
    fn exp2i(k: i32) -> Self;
    /// `floor(log2(|self|))` for finite non-zero `self`, subnormals included.
    fn exponent(self) -> i32;
}

/// Number of entries of [`Float::RECIP`]: the most Welford steps one block may take.
pub(crate) const RECIP_LEN: usize = 256;

const fn recip_f64() -> [f64; RECIP_LEN] {
    let mut t = [0.0; RECIP_LEN];
    let mut k = 0;
    while k < RECIP_LEN {
        t[k] = 1.0 / (k as f64 + 1.0);
        k += 1;
    }
    t
}

const fn recip_f32() -> [f32; RECIP_LEN] {
    let mut t = [0.0; RECIP_LEN];
    let mut k = 0;
    while k < RECIP_LEN {
        t[k] = 1.0 / (k as f32 + 1.0);
        k += 1;
    }
    t
}

static RECIP_F32: [f32; RECIP_LEN] = recip_f32();
static RECIP_F64: [f64; RECIP_LEN] = recip_f64();

macro_rules! impl_float {
    ($t:ty, $v:ty, $lanes:expr, $bits:ty, $mant:expr, $recip:ident) => {
        impl Arith for $t {
            #[inline(always)]
            fn mul_add(self, b: Self, c: Self) -> Self {
                // `f32::mul_add` is a correctly rounded fma even without hardware FMA (libm);
                // the kernels only call it outside hot loops.
                <$t>::mul_add(self, b, c)
            }
        }
        impl Arith for $v {
            #[inline(always)]
            fn mul_add(self, b: Self, c: Self) -> Self {
                <$v>::mul_add(self, b, c)
            }
        }
        impl Vector<$t> for $v {
            type Array = [$t; $lanes];
            const ZERO: Self = <$v>::ZERO;
            #[inline(always)]
            fn splat(a: $t) -> Self {
                <$v>::splat(a)
            }
            #[inline(always)]
            fn to_array(self) -> Self::Array {
                <$v>::to_array(self)
            }
            #[inline(always)]
            fn from_array(a: Self::Array) -> Self {
                <$v>::new(a)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$v>::abs(self)
            }
            #[inline(always)]
            fn max_nan(self, other: Self) -> Self {
                // `max` returns the non-NaN operand; `x − x` is 0 for finite x and NaN for NaN
                // and ±∞, so adding it marks every non-finite lane.
                <$v>::max(self, other) + (self - self) + (other - other)
            }
            #[inline(always)]
            fn reduce_add(self) -> $t {
                <$v>::reduce_add(self)
            }
            #[inline(always)]
            fn lanes_or(self, lo: usize, hi: usize, other: Self) -> Self {
                let lane = <$v>::new(std::array::from_fn(|i| i as $t));
                let below = |k: usize| lane.simd_lt(<$v>::splat(k as $t));
                below(lo).select(other, below(hi).select(self, other))
            }
        }
        impl Float for $t {
            type V = $v;
            const LANES: usize = $lanes;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAN: Self = <$t>::NAN;
            const INFINITY: Self = <$t>::INFINITY;
            const EPSILON: Self = <$t>::EPSILON;
            const MIN_POSITIVE: Self = <$t>::MIN_POSITIVE;
            const MAX: Self = <$t>::MAX;
            const RECIP: &'static [Self] = &$recip;
            #[inline(always)]
            fn from_u64(n: u64) -> Self {
                n as $t
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn exp2i(k: i32) -> Self {
                const BIAS: i32 = <$t>::MAX_EXP - 1;
                debug_assert!(k > -BIAS && k <= BIAS, "exp2i({k}) out of the normal range");
                <$t>::from_bits(((k + BIAS) as $bits) << $mant)
            }
            #[inline]
            fn exponent(self) -> i32 {
                const BIAS: i32 = <$t>::MAX_EXP - 1;
                let a = <$t>::abs(self);
                if a < <$t>::MIN_POSITIVE {
                    // Subnormal: scale into the normal range first (exact).
                    let s = a * Self::exp2i($mant);
                    return (((s.to_bits() >> $mant) as i32) - BIAS) - $mant;
                }
                ((a.to_bits() >> $mant) as i32) - BIAS
            }
        }
    };
}

impl_float!(f32, f32x16, 16, u32, 23, RECIP_F32);
impl_float!(f64, f64x8, 8, u64, 52, RECIP_F64);

/// A storage type the kernels read and write (sealed): `f32`, `f64`, and with the default
/// feature `half`, `half::f16` and `half::bf16`.
///
/// Values are widened to [`Element::Acc`] on load (exactly) and rounded once on store.
///
/// # Example
/// ```
/// use simdnorm::Element;
/// let x: f32 = Element::from_acc(1.5f32);
/// assert_eq!(x.to_acc(), 1.5);
/// ```
pub trait Element: Copy + Send + Sync + Debug + PartialEq + 'static + sealed::Sealed {
    /// The accumulator: `f64` for `f64`, `f32` for the others.
    type Acc: Float;
    /// `LANES` consecutive elements, where `LANES = <Self::Acc as Float>::LANES`.
    type Chunk: Copy + Send + Sync;
    /// Exact widening to the accumulator type.
    fn to_acc(self) -> Self::Acc;
    /// Rounds an accumulator value to this type (to nearest, ties to even).
    fn from_acc(a: Self::Acc) -> Self;
    /// Splits `x` into whole chunks and the remainder (fewer than `LANES` elements).
    fn as_chunks(x: &[Self]) -> (&[Self::Chunk], &[Self]);
    /// Loads one chunk into a vector of the accumulator type.
    fn load(c: &Self::Chunk) -> <Self::Acc as Float>::V;
    /// Splits `x` into whole chunks and the remainder, mutably.
    fn as_chunks_mut(x: &mut [Self]) -> (&mut [Self::Chunk], &mut [Self]);
    /// Stores a vector into one chunk, rounding each lane once to this type.
    fn store(v: <Self::Acc as Float>::V, c: &mut Self::Chunk);
}

macro_rules! impl_native {
    ($t:ty, $v:ty, $lanes:expr) => {
        impl Element for $t {
            type Acc = $t;
            type Chunk = [$t; $lanes];
            #[inline(always)]
            fn to_acc(self) -> $t {
                self
            }
            #[inline(always)]
            fn from_acc(a: $t) -> Self {
                a
            }
            #[inline(always)]
            fn as_chunks(x: &[Self]) -> (&[Self::Chunk], &[Self]) {
                x.as_chunks()
            }
            #[inline(always)]
            fn load(c: &Self::Chunk) -> $v {
                <$v>::new(*c)
            }
            #[inline(always)]
            fn as_chunks_mut(x: &mut [Self]) -> (&mut [Self::Chunk], &mut [Self]) {
                x.as_chunks_mut()
            }
            #[inline(always)]
            fn store(v: $v, c: &mut Self::Chunk) {
                *c = v.to_array();
            }
        }
    };
}

impl_native!(f32, f32x16, 16);
impl_native!(f64, f64x8, 8);

macro_rules! impl_half {
    ($t:ty, $to_f32:path, $from_f32:path, $load:path, $store:path) => {
        #[cfg(feature = "half")]
        impl Element for $t {
            type Acc = f32;
            type Chunk = [$t; 16];
            #[inline(always)]
            fn to_acc(self) -> f32 {
                $to_f32(self.to_bits())
            }
            #[inline(always)]
            fn from_acc(a: f32) -> Self {
                <$t>::from_bits($from_f32(a))
            }
            #[inline(always)]
            fn as_chunks(x: &[Self]) -> (&[Self::Chunk], &[Self]) {
                x.as_chunks()
            }
            #[inline(always)]
            fn load(c: &Self::Chunk) -> f32x16 {
                $load(c)
            }
            #[inline(always)]
            fn as_chunks_mut(x: &mut [Self]) -> (&mut [Self::Chunk], &mut [Self]) {
                x.as_chunks_mut()
            }
            #[inline(always)]
            fn store(v: f32x16, c: &mut Self::Chunk) {
                $store(v, c)
            }
        }
    };
}

impl_half!(
    half::f16,
    f16_to_f32,
    f32_to_f16,
    f16x16_to_f32,
    f32x16_to_f16
);
impl_half!(
    half::bf16,
    bf16_to_f32,
    f32_to_bf16,
    bf16x16_to_f32,
    f32x16_to_bf16
);

// The same conversions on 16 lanes with `wide`'s integer vectors (the scalar forms below
// are the reference the tests hold them to, lane by lane).

/// [`bf16_to_f32`] on 16 lanes with AVX-512BW: each value becomes the upper 16-bit word of
/// its lane, the lower word 0, written as a word interleave, which compiles to one
/// `vpermt2w` where the shift form took a widening shuffle and a shift (shifts and shuffles
/// share two pipes on Zen 4 and bound the half types' kernels: bf16 LayerNorm 128×4096
/// 141 → 134 µs, RMSNorm 101 → 92 µs). With AVX2 or SSE2 the interleave compiles to more
/// shuffles than the shift form (12–38 % slower), so those builds keep the shift form.
#[cfg(all(
    feature = "half",
    target_endian = "little",
    target_feature = "avx512bw"
))]
#[inline(always)]
fn bf16x16_to_f32(c: &[half::bf16; 16]) -> f32x16 {
    let mut w = [0u16; 32];
    for (d, h) in w.chunks_exact_mut(2).zip(c) {
        d[1] = h.to_bits();
    }
    wide::bytemuck::cast(w)
}

/// [`bf16_to_f32`] on 16 lanes.
#[cfg(all(
    feature = "half",
    not(all(target_endian = "little", target_feature = "avx512bw"))
))]
#[inline(always)]
fn bf16x16_to_f32(c: &[half::bf16; 16]) -> f32x16 {
    let mut a = [0.0f32; 16];
    for (d, h) in a.iter_mut().zip(c) {
        *d = bf16_to_f32(h.to_bits());
    }
    f32x16::new(a)
}

/// [`f32_to_bf16`] on 16 lanes.
#[cfg(feature = "half")]
#[inline(always)]
fn f32x16_to_bf16(v: f32x16, c: &mut [half::bf16; 16]) {
    let a = v.to_array();
    for (d, f) in c.iter_mut().zip(a) {
        *d = half::bf16::from_bits(f32_to_bf16(f));
    }
}

/// f16 to f32 on 16 lanes: `half`'s slice conversion (F16C where the build has it).
#[cfg(feature = "half")]
#[inline(always)]
fn f16x16_to_f32(c: &[half::f16; 16]) -> f32x16 {
    use half::slice::HalfFloatSliceExt;
    let mut out = [0.0f32; 16];
    c.convert_to_f32_slice(&mut out);
    f32x16::new(out)
}

/// f32 to f16 on 16 lanes: `half`'s slice conversion (F16C where the build has it).
#[cfg(feature = "half")]
#[inline(always)]
fn f32x16_to_f16(v: f32x16, c: &mut [half::f16; 16]) {
    use half::slice::HalfFloatSliceExt;
    c.convert_from_f32_slice(&v.to_array());
}

// Branch-free conversions on the bits (selects, shifts, one float multiply or add), so that a
// chunk's `map` compiles to vector code on every target: `half`'s scalar conversions use F16C
// one value at a time where the build has it and a branchy software path where not.

/// bf16 bits to f32: the upper half of the f32's bits (exact).
#[cfg(feature = "half")]
#[inline(always)]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// f32 to bf16 bits, rounding to nearest even; NaN stays NaN (quieted, payload's top bits
/// kept); values beyond bf16's range round to ±∞ exactly when IEEE rounding says so.
#[cfg(feature = "half")]
#[inline(always)]
pub(crate) fn f32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    // NaN by a float comparison (one vector instruction, where the bit test took two)
    #[allow(clippy::eq_op)]
    let nan = f != f;
    pick(mask(nan), (u >> 16) | 0x40, rounded) as u16
}

/// `a` where `m` is all ones, `b` where it is 0 (branch-free, so maps vectorize).
#[cfg(feature = "half")]
#[inline(always)]
fn pick(m: u32, a: u32, b: u32) -> u32 {
    (a & m) | (b & !m)
}

/// All ones if `c`, else 0.
#[cfg(feature = "half")]
#[inline(always)]
fn mask(c: bool) -> u32 {
    0u32.wrapping_sub(u32::from(c))
}

/// f16 bits to f32 (exact): the exponent and mantissa moved into place and scaled by 2^112
/// (which also normalizes subnormals), ∞ and NaN given the all-ones exponent.
#[cfg(feature = "half")]
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let em = (h & 0x7fff) << 13;
    let finite = (f32::from_bits(em) * f32::from_bits(0x7780_0000)).to_bits(); // × 2^112
    let special = em | 0x7f80_0000;
    let v = pick(mask(h & 0x7c00 == 0x7c00), special, finite);
    f32::from_bits(v | ((h & 0x8000) << 16))
}

/// f32 to f16 bits, rounding to nearest even (subnormals included); NaN stays NaN (quieted,
/// payload's top bits kept); finite values round to ±∞ exactly when IEEE rounding overflows.
#[cfg(feature = "half")]
#[inline(always)]
pub(crate) fn f32_to_f16(f: f32) -> u16 {
    let u = f.to_bits();
    let sign = (u >> 16) & 0x8000;
    let a = u & 0x7fff_ffff;
    // normal range: rebias the exponent, round the 13 dropped bits to nearest even
    let normal = a
        .wrapping_sub(112 << 23)
        .wrapping_add(0xfff + ((a >> 13) & 1))
        >> 13;
    // below 2^-14: adding 0.5 (2^-1) makes the FPU round the value to a multiple of 2^-24,
    // the f16 subnormal spacing, in its low bits
    let sub = (f32::from_bits(a) + 0.5)
        .to_bits()
        .wrapping_sub(0x3f00_0000);
    let nan = 0x7e00 | ((a >> 13) & 0x3ff);
    let o = pick(mask(a < 0x3880_0000), sub, normal);
    let o = pick(mask(a >= 0x4780_0000), 0x7c00, o); // ≥ 65536 and ∞: past 65504's rounding
    let o = pick(mask(a > 0x7f80_0000), nan, o);
    (o | sign) as u16
}

/// `len` values of `s` from offset `i` (`len ≤ LANES`; lanes past `len` are 0): a whole
/// vector, or a partial load ([`load_partial`]).
#[inline(always)]
pub(crate) fn load_at<T: Element>(s: &[T], i: usize, len: usize) -> <T::Acc as Float>::V {
    if len == T::Acc::LANES {
        T::load(&T::as_chunks(&s[i..i + len]).0[0])
    } else {
        load_partial(&s[i..i + len])
    }
}

/// Stores the first `len` lanes of `v` at offset `i` of `s`.
#[inline(always)]
pub(crate) fn store_at<T: Element>(v: <T::Acc as Float>::V, s: &mut [T], i: usize, len: usize) {
    if len == T::Acc::LANES {
        T::store(v, &mut T::as_chunks_mut(&mut s[i..i + len]).0[0]);
    } else {
        store_partial(v, &mut s[i..i + len]);
    }
}

/// Loads the last `x.len() < LANES` elements of a slice into a vector whose remaining lanes
/// are 0, element by element through a stack array (no masked loads in `wide`): the kernels
/// use it only where a slice is shorter than a vector, or where lanes are columns and cannot
/// move (`col_moments`); elsewhere a tail is the slice's last whole vector, overlapping what
/// was done, with the overlap masked ([`Vector::lanes_or`]).
#[inline]
pub(crate) fn load_partial<T: Element>(x: &[T]) -> <T::Acc as Float>::V {
    debug_assert!(
        x.len() < T::Acc::LANES,
        "partial load of {} elements",
        x.len()
    );
    let mut a = <<T::Acc as Float>::V as Vector<T::Acc>>::Array::default();
    for (d, s) in a.as_mut().iter_mut().zip(x) {
        *d = s.to_acc();
    }
    Vector::from_array(a)
}

/// Stores the first `x.len() < LANES` lanes of `v` into `x`: the partial store matching
/// [`load_partial`].
#[inline]
pub(crate) fn store_partial<T: Element>(v: <T::Acc as Float>::V, x: &mut [T]) {
    debug_assert!(
        x.len() < T::Acc::LANES,
        "partial store of {} elements",
        x.len()
    );
    for (d, s) in x.iter_mut().zip(v.to_array().as_ref()) {
        *d = T::from_acc(*s);
    }
}

/// Zeroes lanes `n..` of `v` (the tail mask).
#[inline]
pub(crate) fn keep_first<A: Float>(v: A::V, n: usize) -> A::V {
    v.lanes_or(0, n, <A::V as Vector<A>>::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f16 and bf16 bit pattern widens exactly as `half` does, and narrows back to
    /// itself (NaN to a NaN with the same quiet payload).
    #[cfg(feature = "half")]
    #[test]
    fn half_conversions_round_trip_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let (a, b) = (f16_to_f32(h), half::f16::from_bits(h).to_f32());
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "f16 {h:#x}"
            );
            let back = f32_to_f16(a);
            assert!(
                back == h || (a.is_nan() && back == h | 0x200),
                "f16 {h:#x} → {back:#x}"
            );
            let (a, b) = (bf16_to_f32(h), half::bf16::from_bits(h).to_f32());
            // (half quiets a signalling NaN; the shift keeps its bits: both NaN)
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "bf16 {h:#x}"
            );
            let back = f32_to_bf16(a);
            assert!(
                back == h || (a.is_nan() && back == h | 0x40),
                "bf16 {h:#x} → {back:#x}"
            );
        }
        // the 16-lane forms agree with the scalar ones, lane by lane
        for base in (0..=u16::MAX).step_by(16) {
            let h: [u16; 16] = std::array::from_fn(|i| base + i as u16);
            let (f, b) = (
                f16x16_to_f32(&h.map(half::f16::from_bits)).to_array(),
                bf16x16_to_f32(&h.map(half::bf16::from_bits)).to_array(),
            );
            for i in 0..16 {
                // (F16C quiets a signalling NaN: both NaN)
                let g = f16_to_f32(h[i]);
                assert!(
                    f[i].to_bits() == g.to_bits() || (f[i].is_nan() && g.is_nan()),
                    "f16x16 {:#x}",
                    h[i]
                );
                assert_eq!(
                    b[i].to_bits(),
                    bf16_to_f32(h[i]).to_bits(),
                    "bf16x16 {:#x}",
                    h[i]
                );
            }
        }
    }

    /// Narrowing agrees with `half`'s (round to nearest even, overflow to ±∞, subnormals)
    /// on every f32 bit pattern, NaN only to NaN.
    #[cfg(feature = "half")]
    #[test]
    fn half_narrowing_matches_half_on_every_f32() {
        let check = |lo: u32, hi: u32| {
            for u in lo..=hi {
                let f = f32::from_bits(u);
                let (a, b) = (f32_to_f16(f), half::f16::from_f32(f).to_bits());
                let nan = |h: u16| h & 0x7c00 == 0x7c00 && h & 0x3ff != 0;
                assert!(
                    a == b || (nan(a) && nan(b)),
                    "f16 of {u:#x}: {a:#x} vs {b:#x}"
                );
                let (a, b) = (f32_to_bf16(f), half::bf16::from_f32(f).to_bits());
                let nan = |h: u16| h & 0x7f80 == 0x7f80 && h & 0x7f != 0;
                assert!(
                    a == b || (nan(a) && nan(b)),
                    "bf16 of {u:#x}: {a:#x} vs {b:#x}"
                );
            }
            // the 16-lane forms equal the scalar ones
            for base in (lo..=hi).step_by(16) {
                let v = f32x16::new(std::array::from_fn(|i| f32::from_bits(base + i as u32)));
                let (mut h, mut b) = ([half::f16::ZERO; 16], [half::bf16::ZERO; 16]);
                f32x16_to_f16(v, &mut h);
                f32x16_to_bf16(v, &mut b);
                for i in 0..16 {
                    let (u, f) = (base + i as u32, f32::from_bits(base + i as u32));
                    let (x, y) = (h[i].to_bits(), f32_to_f16(f));
                    let nan = |h: u16| h & 0x7c00 == 0x7c00 && h & 0x3ff != 0;
                    assert!(x == y || (nan(x) && nan(y)), "f32x16_to_f16 of {u:#x}");
                    assert_eq!(b[i].to_bits(), f32_to_bf16(f), "f32x16_to_bf16 of {u:#x}");
                }
            }
        };
        std::thread::scope(|s| {
            let parts = 16u64;
            for k in 0..parts {
                let lo = (k << 32) / parts;
                let hi = ((k + 1) << 32) / parts - 1;
                s.spawn(move || check(lo as u32, hi as u32));
            }
        });
    }

    #[test]
    fn exponent_and_exp2i_agree() {
        for k in -149..=127 {
            let x = if k >= -126 {
                f32::exp2i(k)
            } else {
                f32::from_bits(1 << (k + 149))
            };
            assert_eq!(x.exponent(), k, "2^{k}");
            if k >= -147 {
                assert_eq!((x * 1.75).exponent(), k, "1.75*2^{k}");
            }
        }
        for k in -1074..=1023 {
            let x = if k >= -1022 {
                f64::exp2i(k)
            } else {
                f64::from_bits(1 << (k + 1074))
            };
            assert_eq!(x.exponent(), k, "2^{k}");
        }
        for k in -126..=127 {
            assert_eq!(f32::exp2i(k), 2f32.powi(k));
        }
    }

    #[test]
    fn recip_table_is_correctly_rounded() {
        for (k, r) in f32::RECIP.iter().enumerate() {
            assert_eq!(*r, 1.0 / (k as f32 + 1.0));
        }
        for (k, r) in f64::RECIP.iter().enumerate() {
            assert_eq!(*r, 1.0 / (k as f64 + 1.0));
        }
    }

    #[test]
    fn max_nan_propagates() {
        let a = f32x16::splat(1.0);
        let mut b = [2.0f32; 16];
        b[3] = f32::NAN;
        let m = a.max_nan(f32x16::new(b)).to_array();
        assert!(m[3].is_nan());
        assert_eq!(m[0], 2.0);
    }
}
