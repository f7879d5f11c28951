//! `exp` and `erf` for `f32` without branches or calls, so that an activation's elementwise loop
//! stays one straight block that LLVM vectorizes (SIMD128 in the sandbox, SSE natively).
//!
//! libm's versions pick a polynomial per input range with branches; inside a plugin every branch
//! is metered and mispredicts on random-sign pre-activations. These evaluate every range and
//! select, with coefficients fitted for this evaluation order in `f32` without FMA (Cephes' for
//! `exp`; least squares on Chebyshev nodes for `erf`). Measured against `f64` references over
//! dense sweeps (the tests): `exp` within 1 ulp, `erf` within 1.5 ulp (1.3 at worst, near ±1.06).

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
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p * r + c;
    }
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

/// Below this `|x|`, `erf(x) = x + x * Q(x^2)`; above, `1 - e^(H(|x|))`.
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
/// `H(t) = ln(erfc(t))` on `[ERF_SPLIT, ERF_SATURATION]`, lowest order first.
const ERF_LARGE: [f32; 10] = [
    9.577_200_4e-5,
    -1.129_038,
    -0.634_602_84,
    -0.106_390_51,
    0.023_331_06,
    -0.003_067_815_2,
    -8.798_525e-6,
    9.066_498e-5,
    -1.603_377_3e-5,
    9.965_476e-7,
];
/// From here on `erf` rounds to ±1 in `f32`.
const ERF_SATURATION: f32 = 4.0;

/// The Gauss error function for `f32`, within 1.5 ulp; odd, so `erf(-0) = -0`.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let t = x.abs();
    let small = x + x * horner(&ERF_SMALL, x * x);
    let t_large = if t > ERF_SATURATION {
        ERF_SATURATION
    } else {
        t
    };
    let large = (1.0 - exp(horner(&ERF_LARGE, t_large))).copysign(x);
    // `!(t >= split)` sends a NaN down the small path, which keeps it NaN.
    if t >= ERF_SPLIT { large } else { small }
}

#[inline(always)]
fn horner(coefficients: &[f32], x: f32) -> f32 {
    let (last, rest) = coefficients
        .split_last()
        .expect("a polynomial has a coefficient");
    rest.iter().rev().fold(*last, |p, &c| p * x + c)
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
    fn erf_is_within_one_and_a_half_ulp() {
        let tiny = (0..200).map(|i| libm::powf(10.0, -30.0 + i as f32 * 0.15));
        let worst = sweep(-5.0, 5.0, 1_000_000)
            .chain(tiny)
            .map(|x| (ulps(erf(x), libm::erf(f64::from(x))), x))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
        assert!(worst.0 <= 1.5, "{worst:?}");
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
