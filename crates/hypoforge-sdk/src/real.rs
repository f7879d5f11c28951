//! Scalars an activation can be written over once: `f32` for values, [`Dual`] for exact derivatives.

use core::cmp::Ordering;

use crate::elementary;
use core::fmt::Debug;
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A real number: `f32`, or a [`Dual`] number that carries its derivative along.
///
/// Write an activation as `fn act<R: Real>(x: R) -> R` and the SDK evaluates it with
/// `R = f32` for `f(x)` and with `R = Dual` for `f'(x)`, exactly (forward-mode
/// automatic differentiation). Mix in constants with `R::c(0.5)` or the `f32`
/// operators (`x * 0.5`, `x + 1.0`, `x > 0.0`).
pub trait Real:
    Copy
    + Debug
    + PartialOrd
    + PartialOrd<f32>
    + PartialEq<f32>
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f32, Output = Self>
    + Sub<f32, Output = Self>
    + Mul<f32, Output = Self>
    + Div<f32, Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// A constant (its derivative is zero).
    fn c(value: f32) -> Self;
    /// The plain value, dropping any derivative.
    fn value(self) -> f32;
    fn zero() -> Self {
        Self::c(0.0)
    }
    fn one() -> Self {
        Self::c(1.0)
    }
    fn exp(self) -> Self;
    /// `exp(x) - 1`, accurate near zero.
    fn exp_m1(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + x)`, accurate near zero.
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    /// `self` raised to a constant power.
    fn powf(self, p: f32) -> Self;
    /// `self` raised to an integer power.
    fn powi(self, n: i32) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tanh(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn atan(self) -> Self;
    /// The Gauss error function.
    fn erf(self) -> Self;
    fn abs(self) -> Self;
    /// The larger of the two (the first on a tie).
    fn max(self, other: Self) -> Self;
    /// The smaller of the two (the first on a tie).
    fn min(self, other: Self) -> Self;
    /// `1 / (1 + exp(-x))`, computed without overflow.
    fn sigmoid(self) -> Self;
    /// `ln(1 + exp(x))`, computed without overflow.
    fn softplus(self) -> Self;
    /// Clamp into `[lo, hi]`.
    fn clamp(self, lo: f32, hi: f32) -> Self {
        self.max(Self::c(lo)).min(Self::c(hi))
    }
    /// `-1`, `0` or `1` as a constant (zero derivative).
    fn signum(self) -> Self {
        let v = self.value();
        Self::c(if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            0.0
        })
    }
    /// `a` where `cond` holds, else `b` (branch-free style).
    fn select(cond: bool, a: Self, b: Self) -> Self {
        if cond { a } else { b }
    }
}

fn sigmoid_f32(x: f32) -> f32 {
    // 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: e^(-|x|) never overflows. One
    // division and a select rather than a branch, so the loop around it vectorizes.
    let e = elementary::exp(-x.abs());
    let numerator = if x >= 0.0 { 1.0 } else { e };
    numerator / (1.0 + e)
}

fn softplus_f32(x: f32) -> f32 {
    // max(x, 0) + ln(1 + exp(-|x|)) never overflows.
    x.max(0.0) + libm::log1pf(elementary::exp(-libm::fabsf(x)))
}

impl Real for f32 {
    #[inline(always)]
    fn c(value: f32) -> Self {
        value
    }
    #[inline(always)]
    fn value(self) -> f32 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        elementary::exp(self)
    }
    #[inline(always)]
    fn exp_m1(self) -> Self {
        libm::expm1f(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        libm::logf(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        libm::log1pf(self)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        libm::sqrtf(self)
    }
    #[inline(always)]
    fn powf(self, p: f32) -> Self {
        libm::powf(self, p)
    }
    #[inline(always)]
    fn powi(self, n: i32) -> Self {
        libm::powf(self, n as f32)
    }
    #[inline(always)]
    fn sin(self) -> Self {
        libm::sinf(self)
    }
    #[inline(always)]
    fn cos(self) -> Self {
        libm::cosf(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        libm::tanhf(self)
    }
    #[inline(always)]
    fn sinh(self) -> Self {
        libm::sinhf(self)
    }
    #[inline(always)]
    fn cosh(self) -> Self {
        libm::coshf(self)
    }
    #[inline(always)]
    fn atan(self) -> Self {
        libm::atanf(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        elementary::erf(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        libm::fabsf(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if other > self { other } else { self }
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other < self { other } else { self }
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        sigmoid_f32(self)
    }
    #[inline(always)]
    fn softplus(self) -> Self {
        softplus_f32(self)
    }
}

/// A dual number `v + d·ε` with `ε² = 0`: evaluating `f` on `Dual::var(x)` yields
/// `f(x)` in `v` and `f'(x)` in `d`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dual {
    /// The value.
    pub v: f32,
    /// The derivative with respect to the input.
    pub d: f32,
}

impl Dual {
    /// The input variable `x` (derivative one).
    pub const fn var(x: f32) -> Self {
        Dual { v: x, d: 1.0 }
    }
    /// A constant (derivative zero).
    pub const fn constant(x: f32) -> Self {
        Dual { v: x, d: 0.0 }
    }
    #[inline(always)]
    fn chain(self, value: f32, slope: f32) -> Self {
        Dual {
            v: value,
            d: self.d * slope,
        }
    }
}

impl PartialOrd for Dual {
    #[inline(always)]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.v.partial_cmp(&other.v)
    }
}

impl PartialEq<f32> for Dual {
    #[inline(always)]
    fn eq(&self, other: &f32) -> bool {
        self.v == *other
    }
}

impl PartialOrd<f32> for Dual {
    #[inline(always)]
    fn partial_cmp(&self, other: &f32) -> Option<Ordering> {
        self.v.partial_cmp(other)
    }
}

impl Add for Dual {
    type Output = Dual;
    #[inline(always)]
    fn add(self, o: Dual) -> Dual {
        Dual {
            v: self.v + o.v,
            d: self.d + o.d,
        }
    }
}

impl Sub for Dual {
    type Output = Dual;
    #[inline(always)]
    fn sub(self, o: Dual) -> Dual {
        Dual {
            v: self.v - o.v,
            d: self.d - o.d,
        }
    }
}

impl Mul for Dual {
    type Output = Dual;
    #[inline(always)]
    fn mul(self, o: Dual) -> Dual {
        Dual {
            v: self.v * o.v,
            d: self.d * o.v + self.v * o.d,
        }
    }
}

impl Div for Dual {
    type Output = Dual;
    #[inline(always)]
    fn div(self, o: Dual) -> Dual {
        Dual {
            v: self.v / o.v,
            d: (self.d * o.v - self.v * o.d) / (o.v * o.v),
        }
    }
}

impl Neg for Dual {
    type Output = Dual;
    #[inline(always)]
    fn neg(self) -> Dual {
        Dual {
            v: -self.v,
            d: -self.d,
        }
    }
}

impl Add<f32> for Dual {
    type Output = Dual;
    #[inline(always)]
    fn add(self, o: f32) -> Dual {
        Dual {
            v: self.v + o,
            d: self.d,
        }
    }
}

impl Sub<f32> for Dual {
    type Output = Dual;
    #[inline(always)]
    fn sub(self, o: f32) -> Dual {
        Dual {
            v: self.v - o,
            d: self.d,
        }
    }
}

impl Mul<f32> for Dual {
    type Output = Dual;
    #[inline(always)]
    fn mul(self, o: f32) -> Dual {
        Dual {
            v: self.v * o,
            d: self.d * o,
        }
    }
}

impl Div<f32> for Dual {
    type Output = Dual;
    #[inline(always)]
    fn div(self, o: f32) -> Dual {
        Dual {
            v: self.v / o,
            d: self.d / o,
        }
    }
}

macro_rules! assign_ops {
    ($($tr:ident $method:ident $op:tt),*) => {$(
        impl $tr for Dual {
            #[inline(always)]
            fn $method(&mut self, o: Dual) {
                *self = *self $op o;
            }
        }
    )*};
}
assign_ops!(AddAssign add_assign +, SubAssign sub_assign -, MulAssign mul_assign *, DivAssign div_assign /);

use core::f32::consts::FRAC_2_SQRT_PI as TWO_OVER_SQRT_PI;

impl Real for Dual {
    #[inline(always)]
    fn c(value: f32) -> Self {
        Dual::constant(value)
    }
    #[inline(always)]
    fn value(self) -> f32 {
        self.v
    }
    #[inline(always)]
    fn exp(self) -> Self {
        let e = elementary::exp(self.v);
        self.chain(e, e)
    }
    #[inline(always)]
    fn exp_m1(self) -> Self {
        self.chain(libm::expm1f(self.v), libm::expf(self.v))
    }
    #[inline(always)]
    fn ln(self) -> Self {
        self.chain(libm::logf(self.v), 1.0 / self.v)
    }
    #[inline(always)]
    fn ln_1p(self) -> Self {
        self.chain(libm::log1pf(self.v), 1.0 / (1.0 + self.v))
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        let s = libm::sqrtf(self.v);
        self.chain(s, 0.5 / s)
    }
    #[inline(always)]
    fn powf(self, p: f32) -> Self {
        self.chain(libm::powf(self.v, p), p * libm::powf(self.v, p - 1.0))
    }
    #[inline(always)]
    fn powi(self, n: i32) -> Self {
        let nf = n as f32;
        self.chain(libm::powf(self.v, nf), nf * libm::powf(self.v, nf - 1.0))
    }
    #[inline(always)]
    fn sin(self) -> Self {
        self.chain(libm::sinf(self.v), libm::cosf(self.v))
    }
    #[inline(always)]
    fn cos(self) -> Self {
        self.chain(libm::cosf(self.v), -libm::sinf(self.v))
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        let t = libm::tanhf(self.v);
        self.chain(t, 1.0 - t * t)
    }
    #[inline(always)]
    fn sinh(self) -> Self {
        self.chain(libm::sinhf(self.v), libm::coshf(self.v))
    }
    #[inline(always)]
    fn cosh(self) -> Self {
        self.chain(libm::coshf(self.v), libm::sinhf(self.v))
    }
    #[inline(always)]
    fn atan(self) -> Self {
        self.chain(libm::atanf(self.v), 1.0 / (1.0 + self.v * self.v))
    }
    #[inline(always)]
    fn erf(self) -> Self {
        let (value, gaussian) = elementary::erf_and_gaussian(self.v);
        self.chain(value, TWO_OVER_SQRT_PI * gaussian)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        let slope = if self.v > 0.0 {
            1.0
        } else if self.v < 0.0 {
            -1.0
        } else {
            0.0
        };
        self.chain(libm::fabsf(self.v), slope)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if other.v > self.v { other } else { self }
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other.v < self.v { other } else { self }
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        let s = sigmoid_f32(self.v);
        self.chain(s, s * (1.0 - s))
    }
    #[inline(always)]
    fn softplus(self) -> Self {
        self.chain(softplus_f32(self.v), sigmoid_f32(self.v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derivative<F: Fn(Dual) -> Dual>(f: F, x: f32) -> f32 {
        f(Dual::var(x)).d
    }

    #[test]
    fn dual_derivatives_match_closed_forms() {
        let x = 0.7f32;
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5 * (1.0 + b.abs());
        assert!(close(derivative(|x| x * x, x), 2.0 * x));
        assert!(close(derivative(Real::exp, x), x.exp()));
        assert!(close(derivative(Real::tanh, x), 1.0 - x.tanh().powi(2)));
        assert!(close(derivative(|x| x.powf(3.0), x), 3.0 * x * x));
        assert!(close(derivative(|x| Dual::c(1.0) / x, x), -1.0 / (x * x)));
        let s = 1.0 / (1.0 + (-x).exp());
        assert!(close(derivative(Real::sigmoid, x), s * (1.0 - s)));
        assert!(close(derivative(Real::softplus, x), s));
        assert!(close(
            derivative(Real::erf, x),
            2.0 / core::f32::consts::PI.sqrt() * (-x * x).exp()
        ));
    }

    #[test]
    fn stable_forms_do_not_overflow() {
        assert_eq!(Real::softplus(1e4f32), 1e4);
        assert_eq!(Real::softplus(-1e4f32), 0.0);
        assert_eq!(Real::sigmoid(-1e4f32), 0.0);
        assert_eq!(Real::sigmoid(1e4f32), 1.0);
        assert!(Real::softplus(Dual::var(1e4)).d.is_finite());
    }

    #[test]
    fn comparisons_use_the_value() {
        let a = Dual { v: 1.0, d: 5.0 };
        assert!(a > 0.5);
        assert!(a < Dual::constant(2.0));
        assert_eq!(a.max(Dual::constant(0.0)).d, 5.0);
        assert_eq!(Dual::var(-1.0).max(Dual::constant(0.0)).d, 0.0);
    }
}
