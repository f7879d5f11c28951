//! Free-function spellings of [`Real`]'s methods (`exp(x)` reads better than `x.exp()` in formulas),
//! plus the constants an author reaches for.

use crate::Real;

pub use core::f32::consts::{E, FRAC_1_SQRT_2, FRAC_2_SQRT_PI, LN_2, PI, SQRT_2};

/// `sqrt(2 / pi)`, the constant in the tanh approximation of GELU.
pub const SQRT_2_OVER_PI: f32 = 0.797_884_6;

macro_rules! unary {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("`x.", stringify!($name), "()` as a function; see [`Real::", stringify!($name), "`].")]
        #[inline]
        pub fn $name<R: Real>(x: R) -> R {
            x.$name()
        }
    )*};
}
unary!(
    exp, exp_m1, ln, ln_1p, sqrt, sin, cos, tanh, sinh, cosh, atan, erf, abs, sigmoid, softplus,
    signum
);

/// The natural logarithm (the C and NumPy spelling of [`Real::ln`]).
#[inline]
pub fn log<R: Real>(x: R) -> R {
    x.ln()
}

/// `x` raised to a constant power.
#[inline]
pub fn powf<R: Real>(x: R, p: f32) -> R {
    x.powf(p)
}

/// `x` raised to a constant power (the C spelling of [`powf`]).
#[inline]
pub fn pow<R: Real>(x: R, p: f32) -> R {
    x.powf(p)
}

/// `x` raised to an integer power.
#[inline]
pub fn powi<R: Real>(x: R, n: i32) -> R {
    x.powi(n)
}

/// The larger of two values.
#[inline]
pub fn max<R: Real>(a: R, b: R) -> R {
    a.max(b)
}

/// The smaller of two values.
#[inline]
pub fn min<R: Real>(a: R, b: R) -> R {
    a.min(b)
}

/// Clamp into `[lo, hi]`.
#[inline]
pub fn clamp<R: Real>(x: R, lo: f32, hi: f32) -> R {
    x.clamp(lo, hi)
}

/// The standard normal density.
#[inline]
pub fn normal_pdf<R: Real>(x: R) -> R {
    (x * x * -0.5).exp() * 0.398_942_3
}

/// The standard normal distribution function `Φ(x)`.
#[inline]
pub fn normal_cdf<R: Real>(x: R) -> R {
    ((x * FRAC_1_SQRT_2).erf() + 1.0) * 0.5
}

/// `true` when the value is neither infinite nor NaN.
#[inline]
pub fn is_finite(x: f32) -> bool {
    x.is_finite()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dual;

    #[test]
    fn aliases_agree_with_the_methods() {
        let x = Dual::var(2.5);
        assert_eq!(log(x), x.ln());
        assert_eq!(pow(x, 1.5), x.powf(1.5));
        assert_eq!(normal_cdf(0.0f32), 0.5);
        assert!((normal_pdf(Dual::var(1.0)).d + 0.241_970_72).abs() < 1e-6);
    }
}
