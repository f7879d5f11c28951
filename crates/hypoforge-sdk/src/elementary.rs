//! `exp` and `erf` for `f32` without branches or calls, so that an activation's elementwise loop
//! stays one straight block that LLVM vectorizes (SIMD128 in the sandbox, SSE natively).
//!
//! libm's versions pick a polynomial per input range with branches; inside a plugin every branch
//! is metered and mispredicts on random-sign pre-activations. These evaluate every range and
//! select, with coefficients fitted for this evaluation order in `f32` without FMA (Cephes' for
//! `exp`; least squares on Chebyshev nodes for `erf`, evaluated by Estrin's scheme). Measured against `f64` references over
//! dense sweeps (the tests): `exp` within 1 ulp, `erf` within 1.1 ulp (1.03 at worst, near ±1.05).

/// `1.5 * 2^23`: adding it rounds an `f32` of magnitude below `2^22` to an integer, which then
/// sits in the low mantissa bits.
const ROUNDING_MAGIC: f32 = 12_582_912.0;
/// `ln 2` split so that `n * LN_2_HI` is exact for every exponent `n` that can occur.
const LN_2_HI: f32 = 0.693_359_4;
const LN_2_LO: f32 = -2.121_944_4e-4;
/// `e^x` on `[-ln 2 / 2, ln 2 / 2]` as `1 + r + r^2 * P(r)` (Cephes `expf`).
const EXP_POLY: [f32; 6] = [
    1.987_569_2e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// Beyond these `e^x` is `0` (below the smallest subnormal) or `+inf`.
const EXP_MIN_INPUT: f32 = -104.0;
const EXP_MAX_INPUT: f32 = 89.0;

/// `e^x` for `f32`, within 1 ulp; subnormal results, overflow to `+inf` and NaN as libm.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Comparisons rather than `max`/`min`, so that a NaN passes through to the result.
    let x = if x < EXP_MIN_INPUT { EXP_MIN_INPUT } else { x };
    let x = if x > EXP_MAX_INPUT { EXP_MAX_INPUT } else { x };
    let shifted = x * core::f32::consts::LOG2_E + ROUNDING_MAGIC;
    let n = shifted - ROUNDING_MAGIC;
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUNDING_MAGIC.to_bits() as i32);
    let r = x - n * LN_2_HI - n * LN_2_LO;
    let mut low_first = EXP_POLY;
    low_first.reverse();
    let p = estrin(low_first, r);
    let e_r = p * (r * r) + r + 1.0;
    // 2^n in two factors, each a normal float for every n in [-151, 129], so that a subnormal
    // result is rounded once and an overflow becomes infinity.
    let half = n_int >> 1;
    e_r * pow2(half) * pow2(n_int.wrapping_sub(half))
}

#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) << 23) as u32)
}

/// Below this `|x|`, `erf(x) = x + x * Q(x^2)`; above, `1 - e^(-x^2) R(|x|)`.
const ERF_SPLIT: f32 = 0.921_875;
/// `Q(s) = erf(x) / x - 1` with `s = x^2`, lowest order first.
const ERF_SMALL: [f32; 7] = [
    0.128_379_17,
    -0.376_126_35,
    0.112_837_08,
    -0.026_859_958,
    0.005_202_176_5,
    -0.000_815_378_85,
    8.411_056e-5,
];
/// `R(t) = e^(t^2) erfc(t)` (the scaled complementary error function) as a polynomial in
/// `t - 1` on `[ERF_SPLIT, ERF_SATURATION]`, lowest order first; fitted for the absolute error
/// of `erfc`, which is what `erf = 1 - erfc` inherits.
const ERFCX: [f32; 9] = [
    0.427_583_58,
    -0.273_212_43,
    0.154_371_65,
    -0.079_170_73,
    0.037_182_085,
    -0.015_530_215,
    0.005_218_359,
    -0.001_169_977_1,
    0.000_123_160_03,
];
/// From here on `erf` rounds to ±1 in `f32`.
const ERF_SATURATION: f32 = 4.0;

/// The Gauss error function for `f32`, within 1.1 ulp; odd, so `erf(-0) = -0`.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    erf_and_gaussian(x).0
}

/// `(erf(x), e^(-x^2))`: the large-`|x|` branch of `erf` needs the Gaussian anyway, and
/// `erf'(x)` is the Gaussian scaled, so a dual number gets its slope for one multiplication.
#[inline(always)]
pub(crate) fn erf_and_gaussian(x: f32) -> (f32, f32) {
    let t = x.abs();
    let small = x + x * estrin(ERF_SMALL, x * x);
    let gaussian = exp(-(x * x));
    // Past the saturation point `erfc` is below half an ulp of 1 and the product rounds away;
    // clamping keeps the polynomial inside the range it was fitted on.
    let t_large = if t > ERF_SATURATION {
        ERF_SATURATION
    } else {
        t
    };
    let large = (1.0 - gaussian * estrin(ERFCX, t_large - 1.0)).copysign(x);
    // `!(t >= split)` sends a NaN down the small path, which keeps it NaN.
    let value = if t >= ERF_SPLIT { large } else { small };
    (value, gaussian)
}

/// `sum c[i] x^i` by Estrin's scheme: pairs `c[2i] + c[2i+1] x`, then pairs of those with
/// `x^2`, then `x^4`: a dependency chain logarithmic in the degree rather than linear (Horner's),
/// which lets an out-of-order core overlap more elements of the loop.
#[inline(always)]
fn estrin<const N: usize>(c: [f32; N], x: f32) -> f32 {
    let pair = |i: usize| {
        if i + 1 < N { c[i] + c[i + 1] * x } else { c[i] }
    };
    let x2 = x * x;
    let x4 = x2 * x2;
    let quad = |i: usize| {
        if i + 2 < N {
            pair(i) + pair(i + 2) * x2
        } else {
            pair(i)
        }
    };
    let oct = |i: usize| {
        if i + 4 < N {
            quad(i) + quad(i + 4) * x4
        } else {
            quad(i)
        }
    };
    assert!(N <= 16, "Estrin here goes up to degree 15");
    if N > 8 {
        oct(0) + oct(8) * (x4 * x4)
    } else {
        oct(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance from `got` to the exact `reference`, in units of the last place of the
    /// reference rounded to `f32`.
    fn ulps(got: f32, reference: f64) -> f64 {
        let rounded = reference as f32;
        let ulp = f64::from(f32::from_bits(rounded.abs().to_bits() + 1) - rounded.abs());
        (f64::from(got) - reference).abs() / ulp
    }

    fn sweep(lo: f32, hi: f32, steps: u32) -> impl Iterator<Item = f32> {
        (0..=steps).map(move |i| lo + (hi - lo) * (i as f32 / steps as f32))
    }

    #[test]
    fn exp_is_within_one_ulp_over_the_normal_range() {
        let worst = sweep(-87.3, 88.7, 1_000_000)
            .map(|x| (ulps(exp(x), libm::exp(f64::from(x))), x))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
        assert!(worst.0 <= 1.0, "{worst:?}");
    }

    #[test]
    fn exp_edges_match_libm() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            88.72,
            88.73,
            89.0,
            1e30,
            -87.5,
            -100.0,
            -103.9,
            -104.0,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            let (got, want) = (exp(x), libm::expf(x));
            assert!(
                got == want
                    || (got - want).abs() <= f32::from_bits(1)
                    || ulps(got, libm::exp(f64::from(x))) <= 1.0,
                "exp({x}) = {got}, libm {want}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(-90.0) > 0.0, "subnormal results are kept");
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_is_within_1_1_ulp() {
        let tiny = (0..200).map(|i| libm::powf(10.0, -30.0 + i as f32 * 0.15));
        let worst = sweep(-5.0, 5.0, 1_000_000)
            .chain(tiny)
            .map(|x| (ulps(erf(x), libm::erf(f64::from(x))), x))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
        assert!(worst.0 <= 1.1, "{worst:?}");
    }

    #[test]
    fn the_gaussian_beside_erf_is_exp_of_minus_x_squared_past_saturation_too() {
        // It is erf's slope (over 2/sqrt(pi)), so it must not inherit the clamp of erf's value.
        for x in sweep(-12.0, 12.0, 200_000) {
            let (_, gaussian) = erf_and_gaussian(x);
            let reference = libm::exp(-f64::from(x) * f64::from(x));
            // Rounding `x^2` to `f32` moves the exponent by up to `x^2 * 2^-24`.
            let allowed = reference * (2.0f64.powi(-23) + f64::from(x * x) * 2.0f64.powi(-23))
                + f64::from(f32::from_bits(1));
            assert!(
                (f64::from(gaussian) - reference).abs() <= allowed,
                "x = {x}: {gaussian} against {reference}"
            );
        }
        assert_eq!(erf_and_gaussian(f32::INFINITY), (1.0, 0.0));
        assert!(erf_and_gaussian(f32::NAN).1.is_nan());
    }

    #[test]
    fn erf_edges() {
        assert_eq!(erf(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(erf(-0.0).to_bits(), (-0.0f32).to_bits());
        for x in [4.0, 10.0, 1e30, f32::INFINITY] {
            assert_eq!(erf(x), 1.0, "erf({x})");
            assert_eq!(erf(-x), -1.0, "erf(-{x})");
        }
        assert!(erf(f32::NAN).is_nan());
        // Monotone across the split between the two polynomials.
        let below = f32::from_bits(ERF_SPLIT.to_bits() - 1);
        assert!(erf(below) <= erf(ERF_SPLIT));
    }
}
