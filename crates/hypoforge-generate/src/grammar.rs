//! The bottom-up grammar generator: programs sampled from the search space of Ramachandran,
//! Zoph & Le (2017), "Searching for Activation Functions", written out as SDK source.
//!
//! A program is a chain of one to three *core units* `b(u1(a), u2(b))`, where `u1` and `u2`
//! are unary operations, `b` is a binary one, and the inputs `a` and `b` are the variable or
//! the output of an earlier unit (each unit after the first reads its predecessor). The same
//! scalar program becomes an activation `f(x)`, the elementwise map of a preprocessor (after a
//! sampled per-column scaling), or the per-weight penalty `g(w)` of a regularizer.
//!
//! Every emitted program is finite by construction: an interval analysis bounds the range of
//! every value and the magnitude of every derivative the SDK computes (dual numbers included)
//! over the inputs the kind must handle, inserts guards in front of `exp`, `sinh` and `cosh`
//! only where their argument can be large, and rejects programs that could still overflow. Cheaply recognised degenerate programs
//! (constants, affine maps, `u - u`, `max(u, u + 1)`, ...) are rejected and resampled.
//!
//! Sampling draws only from the given [`Rng`], and its decisions use only exact or correctly
//! rounded arithmetic (`+ - * /` and `sqrt`, never the platform's `exp` or `ln`), so a seed
//! names the same program everywhere.

use hypoforge_spec::{ComponentKind, rng::Rng};

/// One sampled program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrammarHypothesis {
    /// Unique-ish snake_case component name, `grammar_` and 12 hex digits of a hash of the kind
    /// and the expression, so that equal programs get equal names.
    pub name: String,
    /// The expression in readable math form, e.g. `max(x, tanh(x) * 0.5)`.
    pub expression: String,
    /// The complete source file.
    pub source: String,
}

/// Sample one program of `kind`. Deterministic: the same rng state gives the same program, on
/// every platform.
pub fn sample(kind: ComponentKind, rng: &mut Rng) -> GrammarHypothesis {
    match kind {
        ComponentKind::Activation => activation(rng),
        ComponentKind::Preprocessor => preprocessor(rng),
        ComponentKind::Regularizer => regularizer(rng),
    }
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/// A constant of the grammar: the literal that is emitted and its value for the analysis.
/// Literals come from fixed lists, so sources never depend on float formatting.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Constant {
    text: &'static str,
    value: f64,
}

const fn constant(text: &'static str, value: f64) -> Constant {
    Constant { text, value }
}

/// The paper's `β` where it stands alone or shifts: `u(x) = β`, `x + β`.
const BETAS: [Constant; 7] = [
    constant("0.1", 0.1),
    constant("0.25", 0.25),
    constant("0.5", 0.5),
    constant("1.0", 1.0),
    constant("1.5", 1.5),
    constant("2.0", 2.0),
    constant("3.0", 3.0),
];

/// Factors for `x * β`; 1 is left out because it is the identity.
const SCALES: [Constant; 6] = [
    constant("0.1", 0.1),
    constant("0.25", 0.25),
    constant("0.5", 0.5),
    constant("1.5", 1.5),
    constant("2.0", 2.0),
    constant("3.0", 3.0),
];

/// Widths `β` of the kernels `exp(-β (a - b)^2)` and `exp(-β |a - b|)`.
const KERNEL_WIDTHS: [Constant; 3] = [
    constant("0.5", 0.5),
    constant("1.0", 1.0),
    constant("2.0", 2.0),
];

/// `(β, 1 - β)` for the blend `β a + (1 - β) b`.
const MIX_WEIGHTS: [(Constant, Constant); 5] = [
    (constant("0.1", 0.1), constant("0.9", 0.9)),
    (constant("0.25", 0.25), constant("0.75", 0.75)),
    (constant("0.5", 0.5), constant("0.5", 0.5)),
    (constant("0.75", 0.75), constant("0.25", 0.25)),
    (constant("0.9", 0.9), constant("0.1", 0.1)),
];

/// Regularizer strengths: small beside a loss of about 1 for matrices of thousands of weights.
const LAMBDAS: [Constant; 3] = [
    constant("1e-5", 1e-5),
    constant("1e-4", 1e-4),
    constant("1e-3", 1e-3),
];

/// Preprocessor clipping of the scaled value `z`, the input range of its program.
const CLIPS: [Constant; 4] = [
    constant("3.0", 3.0),
    constant("5.0", 5.0),
    constant("10.0", 10.0),
    constant("100.0", 100.0),
];

/// `exp`, `sinh` and `cosh` arguments are clamped to this when they could exceed it.
const GUARD: Constant = constant("10.0", 10.0);
const GUARD_MATH: &str = "10";
/// The `ε` in `sqrt(|x| + ε)`: keeps the derivative at 0 finite (at most `0.5 / sqrt(ε)`).
const SQRT_EPS: Constant = constant("0.01", 0.01);

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len())]
}

// ---------------------------------------------------------------------------------------------
// Expressions
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Unary {
    Identity,
    Neg,
    Abs,
    Square,
    Cube,
    /// `sqrt(|x| + ε)`.
    Sqrt,
    Scale(Constant),
    /// `x + β`, or `x - β` when the flag is set.
    Shift(Constant, bool),
    /// The flag (here and for `sinh`, `cosh`) records whether the argument is clamped to
    /// `GUARD` first: only where the analysis finds it can be larger.
    Exp(bool),
    /// `ln(1 + |x|)`: the paper's `log(|x| + ε)` without its pole.
    Ln,
    Sin,
    Cos,
    Sinh(bool),
    Cosh(bool),
    Tanh,
    Atan,
    /// `max(x, 0)`.
    Relu,
    /// `min(x, 0)`.
    NegPart,
    Sigmoid,
    Softplus,
    /// `exp(-x^2)`.
    Gauss,
    Erf,
    NormalCdf,
    /// `x / (1 + |x|)`.
    Softsign,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Binary {
    Add,
    Sub,
    Mul,
    /// `a / (1 + |b|)`: the paper's `a / (b + ε)` without its pole.
    Div,
    Max,
    Min,
    /// `sigmoid(a) * b`.
    Gate,
    /// `exp(-β (a - b)^2)`.
    Gauss(Constant),
    /// `exp(-β |a - b|)`.
    Laplace(Constant),
    /// `β a + (1 - β) b`.
    Mix(Constant, Constant),
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    /// The program's input (`x`, `z` or `w`).
    Var,
    /// The output of an earlier core unit.
    Unit(usize),
    Const(Constant),
    Unary(Unary, Box<Expr>),
    Binary(Binary, Box<Expr>, Box<Expr>),
}

// ---------------------------------------------------------------------------------------------
// Analysis: range and magnitude bounds, degeneracy
// ---------------------------------------------------------------------------------------------

/// Largest magnitude any value or derivative may reach while a program is evaluated. Far below
/// `f32::MAX` (3.4e38), so that the small factors inside the SDK's own formulas and `f32`
/// rounding cannot overflow either.
const LIMIT: f64 = 1e24;

/// What the analysis knows about an expression over every input the kind must handle.
#[derive(Clone, Copy, Debug)]
struct Info {
    /// The value lies in `[lo, hi]`.
    lo: f64,
    hi: f64,
    /// Bound on `|derivative|` with respect to the input.
    slope: f64,
    /// Bound on every magnitude computed on the way, dual parts included.
    peak: f64,
    /// Whether it depends on the input at all.
    varies: bool,
    /// Whether it is affine in the input (constants included).
    affine: bool,
}

impl Info {
    fn input(bound: f64) -> Self {
        Info {
            lo: -bound,
            hi: bound,
            slope: 1.0,
            peak: bound,
            varies: true,
            affine: true,
        }
    }

    fn constant(c: Constant) -> Self {
        Info {
            lo: c.value,
            hi: c.value,
            slope: 0.0,
            peak: c.value.abs(),
            varies: false,
            affine: true,
        }
    }

    /// Bound on `|value|`.
    fn magnitude(&self) -> f64 {
        self.lo.abs().max(self.hi.abs())
    }

    fn finite(&self) -> bool {
        self.peak <= LIMIT
    }

    /// Worth emitting: finite, not constant, not affine.
    fn acceptable(&self) -> bool {
        self.finite() && self.varies && !self.affine
    }

    /// A value confined to one point is a constant, however it was computed (`max(-|x|, 0)`).
    fn settle(mut self) -> Self {
        if self.lo >= self.hi {
            self.varies = false;
            self.affine = true;
        }
        self
    }
}

/// An upper bound on `e^a` for `a <= GUARD`, from `e^y <= 1 / (1 - y)` (for `0 <= y < 1`)
/// applied to `y = a / 64` and raised to the 64th power by squaring. Exact IEEE arithmetic
/// only, so the decisions that depend on it are the same on every platform.
fn exp_bound(a: f64) -> f64 {
    let mut r = 1.0 / (1.0 - a.clamp(0.0, GUARD.value) / 64.0);
    for _ in 0..6 {
        r *= r;
    }
    r
}

/// An upper bound on `ln(1 + v)`: `k ln 2` for the smallest `2^k >= 1 + v` (powers of two are
/// exact, so again no platform `ln`).
fn ln1p_bound(v: f64) -> f64 {
    let (mut k, mut p) = (0u32, 1.0f64);
    while p < 1.0 + v && k < 1100 {
        p *= 2.0;
        k += 1;
    }
    f64::from(k) * std::f64::consts::LN_2
}

fn info(e: &Expr, input: Info, units: &[Info]) -> Info {
    match e {
        Expr::Var => input,
        Expr::Unit(i) => units[*i],
        Expr::Const(c) => Info::constant(*c),
        Expr::Unary(op, a) => unary_info(*op, info(a, input, units)),
        Expr::Binary(op, a, b) => binary_info(*op, info(a, input, units), info(b, input, units)),
    }
}

fn unary_info(op: Unary, a: Info) -> Info {
    let (lo, hi, m) = (a.lo, a.hi, a.magnitude());
    // The range of |t|.
    let (abs_lo, abs_hi) = if lo >= 0.0 {
        (lo, hi)
    } else if hi <= 0.0 {
        (-hi, -lo)
    } else {
        (0.0, m)
    };
    // For odd functions bounded by `bound` that keep the sign of their argument.
    let odd = |bound: f64| {
        (
            if lo >= 0.0 { 0.0 } else { -bound },
            if hi <= 0.0 { 0.0 } else { bound },
        )
    };
    let cap = |guard: bool, v: f64| if guard { v.min(GUARD.value) } else { v };
    // (range of u(t), bound on |u'(t)|, other intermediates) for t in [lo, hi].
    let ((value_lo, value_hi), factor, extra) = match op {
        Unary::Identity => ((lo, hi), 1.0, 0.0),
        Unary::Neg => ((-hi, -lo), 1.0, 0.0),
        Unary::Abs => ((abs_lo, abs_hi), 1.0, 0.0),
        Unary::Relu => ((lo.max(0.0), hi.max(0.0)), 1.0, 0.0),
        Unary::NegPart => ((lo.min(0.0), hi.min(0.0)), 1.0, 0.0),
        Unary::Square => ((abs_lo * abs_lo, abs_hi * abs_hi), 2.0 * m, 0.0),
        Unary::Cube => ((lo * lo * lo, hi * hi * hi), 3.0 * m * m, 0.0),
        Unary::Sqrt => {
            let s = |v: f64| (v + SQRT_EPS.value).sqrt();
            ((s(abs_lo), s(abs_hi)), 0.5 / SQRT_EPS.value.sqrt(), 0.0)
        }
        Unary::Scale(c) => ((lo * c.value, hi * c.value), c.value, 0.0),
        Unary::Shift(c, false) => ((lo + c.value, hi + c.value), 1.0, 0.0),
        Unary::Shift(c, true) => ((lo - c.value, hi - c.value), 1.0, 0.0),
        Unary::Exp(guard) => {
            let e = exp_bound(cap(guard, hi));
            ((0.0, e), e, 0.0)
        }
        Unary::Sinh(guard) => {
            let e = exp_bound(cap(guard, m));
            (odd(e), e, 0.0)
        }
        Unary::Cosh(guard) => {
            let e = exp_bound(cap(guard, m));
            ((1.0, e), e, 0.0)
        }
        Unary::Ln => ((0.0, ln1p_bound(abs_hi)), 1.0, 0.0),
        Unary::Sin | Unary::Cos => ((-1.0, 1.0), 1.0, 0.0),
        Unary::Tanh => (odd(1.0), 1.0, 0.0),
        // The dual quotient: (t' (1 + |t|) - t |t|') / (1 + |t|)^2.
        Unary::Softsign => (
            odd(1.0),
            1.0,
            (1.0 + m) * (1.0 + m) + 2.0 * a.slope * (1.0 + m),
        ),
        Unary::Atan => (odd(1.6), 1.0, 0.0),
        Unary::Erf => (odd(1.0), 1.2, 0.0),
        Unary::Sigmoid => ((0.0, 1.0), 0.25, 0.0),
        Unary::NormalCdf => ((0.0, 1.0), 0.4, 0.0),
        Unary::Softplus => ((0.0, hi.max(0.0) + 1.0), 1.0, 0.0),
        // `exp(-powi(t, 2))` squares first.
        Unary::Gauss => ((0.0, 1.0), 1.0, m * m + 2.0 * m * a.slope),
    };
    let slope = a.slope * factor;
    let keeps_affine = matches!(
        op,
        Unary::Identity | Unary::Neg | Unary::Scale(_) | Unary::Shift(..)
    );
    Info {
        lo: value_lo,
        hi: value_hi,
        slope,
        peak: a
            .peak
            .max(value_lo.abs())
            .max(value_hi.abs())
            .max(factor)
            .max(slope)
            .max(extra),
        varies: a.varies,
        affine: !a.varies || (a.affine && keeps_affine),
    }
    .settle()
}

fn binary_info(op: Binary, a: Info, b: Info) -> Info {
    let (ma, da, mb, db) = (a.magnitude(), a.slope, b.magnitude(), b.slope);
    let constant = !a.varies && !b.varies;
    // (range, bound on |derivative|, other intermediates, affine)
    let ((lo, hi), slope, extra, affine) = match op {
        Binary::Add => (
            (a.lo + b.lo, a.hi + b.hi),
            da + db,
            0.0,
            a.affine && b.affine,
        ),
        Binary::Sub => (
            (a.lo - b.hi, a.hi - b.lo),
            da + db,
            0.0,
            a.affine && b.affine,
        ),
        Binary::Mix(p, q) => (
            (
                p.value * a.lo + q.value * b.lo,
                p.value * a.hi + q.value * b.hi,
            ),
            p.value * da + q.value * db,
            0.0,
            a.affine && b.affine,
        ),
        Binary::Mul => {
            let products = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi];
            (
                (
                    products.iter().copied().fold(f64::INFINITY, f64::min),
                    products.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                ),
                da * mb + ma * db,
                0.0,
                a.affine && b.affine && (!a.varies || !b.varies),
            )
        }
        // a times a factor in (0, 1].
        Binary::Div => (
            (a.lo.min(0.0), a.hi.max(0.0)),
            da + ma * db,
            (1.0 + mb) * (1.0 + mb) + da * (1.0 + mb),
            a.affine && !b.varies,
        ),
        Binary::Max => ((a.lo.max(b.lo), a.hi.max(b.hi)), da.max(db), 0.0, constant),
        Binary::Min => ((a.lo.min(b.lo), a.hi.min(b.hi)), da.max(db), 0.0, constant),
        Binary::Gate => (
            (b.lo.min(0.0), b.hi.max(0.0)),
            0.25 * da * mb + db,
            da * mb,
            !a.varies && b.affine,
        ),
        Binary::Gauss(c) => {
            let (t, dt) = (ma + mb, da + db);
            let k = c.value.max(1.0);
            (
                (0.0, 1.0),
                (c.value + 1.0) * dt,
                k * t * t + 2.0 * k * t * dt,
                constant,
            )
        }
        Binary::Laplace(c) => {
            let (t, dt) = (ma + mb, da + db);
            ((0.0, 1.0), c.value * dt, t + dt, constant)
        }
    };
    Info {
        lo,
        hi,
        slope,
        peak: a
            .peak
            .max(b.peak)
            .max(lo.abs())
            .max(hi.abs())
            .max(slope)
            .max(extra),
        varies: a.varies || b.varies,
        affine,
    }
    .settle()
}

/// `max(a, b)` or `min(a, b)` where one side always wins is just that side.
fn one_side_wins(op: Binary, a: &Info, b: &Info) -> bool {
    matches!(op, Binary::Max | Binary::Min) && (a.hi <= b.lo || b.hi <= a.lo)
}

/// `e` as `factor * core + offset`, looking through the affine unary operations.
fn affine_parts(e: &Expr) -> (&Expr, f64, f64) {
    match e {
        Expr::Unary(
            op @ (Unary::Identity | Unary::Neg | Unary::Scale(_) | Unary::Shift(..)),
            a,
        ) => {
            let (core, f, o) = affine_parts(a);
            match *op {
                Unary::Neg => (core, -f, -o),
                Unary::Scale(c) => (core, f * c.value, o * c.value),
                Unary::Shift(c, false) => (core, f, o + c.value),
                Unary::Shift(c, true) => (core, f, o - c.value),
                _ => (core, f, o),
            }
        }
        _ => (e, 1.0, 0.0),
    }
}

/// Reject `b(a, b)` when both sides are affine images of the same expression `u` and the
/// result is then constant or merely an affine image of `u`: `u - u`, `u + 2u`,
/// `max(u, u + 1)`, `exp(-(u - u)^2)`. `max(u, -u)`, `max(u, 0.5u)` or `u * u` stay.
fn distinct_enough(op: Binary, a: &Expr, b: &Expr) -> bool {
    let (core_a, fa, _) = affine_parts(a);
    let (core_b, fb, _) = affine_parts(b);
    if core_a != core_b {
        return true;
    }
    match op {
        Binary::Add | Binary::Sub | Binary::Mix(..) => false,
        Binary::Max | Binary::Min | Binary::Gauss(_) | Binary::Laplace(_) => fa != fb,
        Binary::Mul | Binary::Div | Binary::Gate => true,
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling
// ---------------------------------------------------------------------------------------------

/// A chain of core units; the last one is the program's output.
#[derive(Clone, Debug)]
struct Program {
    units: Vec<Expr>,
    infos: Vec<Info>,
}

const UNIT_TRIES: usize = 200;
const PROGRAM_TRIES: usize = 100;

/// A program over inputs bounded by `input_bound` in magnitude.
fn sample_program(rng: &mut Rng, input_bound: f64) -> Program {
    let input = Info::input(input_bound);
    for _ in 0..PROGRAM_TRIES {
        // One unit most of the time, two or three less often: deeper chains are mostly
        // compositions the shallow space already covers, at a higher risk of blowing up.
        let depth = match rng.below(20) {
            0..=11 => 1,
            12..=17 => 2,
            _ => 3,
        };
        let mut program = Program {
            units: Vec::with_capacity(depth),
            infos: Vec::with_capacity(depth),
        };
        for k in 0..depth {
            let Some((unit, unit_info)) = sample_unit(rng, k, input, &program.infos) else {
                break;
            };
            program.units.push(unit);
            program.infos.push(unit_info);
        }
        if program.units.len() == depth {
            return program;
        }
    }
    // Not reached in practice (units are rejected a few times at most); a known-good program
    // keeps `sample` total.
    let swish = Expr::Binary(
        Binary::Gate,
        Box::new(Expr::Unary(Unary::Identity, Box::new(Expr::Var))),
        Box::new(Expr::Unary(Unary::Identity, Box::new(Expr::Var))),
    );
    let swish_info = info(&swish, input, &[]);
    Program {
        units: vec![swish],
        infos: vec![swish_info],
    }
}

/// Core unit `k`: `b(u1(a), u2(b))`, where a unit after the first reads its predecessor on at
/// least one side (otherwise the predecessor would be dead code).
fn sample_unit(rng: &mut Rng, k: usize, input: Info, units: &[Info]) -> Option<(Expr, Info)> {
    for _ in 0..UNIT_TRIES {
        let (left, right) = if k == 0 {
            (Expr::Var, Expr::Var)
        } else {
            let previous = Expr::Unit(k - 1);
            // Any earlier value: the input or a unit before the predecessor.
            let other = match rng.below(k) {
                0 => Expr::Var,
                i => Expr::Unit(i - 1),
            };
            match rng.below(3) {
                0 => (previous, other),
                1 => (other, previous),
                _ => (previous.clone(), previous),
            }
        };
        let a = sample_unary(rng, left, input, units);
        let b = sample_unary(rng, right, input, units);
        let op = sample_binary(rng);
        if !distinct_enough(op, &a, &b) {
            continue;
        }
        let (info_a, info_b) = (info(&a, input, units), info(&b, input, units));
        if one_side_wins(op, &info_a, &info_b) {
            continue;
        }
        let unit_info = binary_info(op, info_a, info_b);
        let unit = Expr::Binary(op, Box::new(a), Box::new(b));
        if unit_info.acceptable() {
            return Some((unit, unit_info));
        }
    }
    None
}

/// A unary operation applied to `arg` (or a constant in its place), the identity four times as
/// likely as each other operation: many of the best functions the paper found use the raw input
/// on one side (`x * sigmoid(x)`, `max(x, tanh(x))`, `cos(x) - x`).
fn sample_unary(rng: &mut Rng, arg: Expr, input: Info, units: &[Info]) -> Expr {
    let range = info(&arg, input, units);
    // exp needs its guard only above, sinh and cosh on both sides.
    let exp_guard = range.hi > GUARD.value;
    let hyperbolic_guard = range.magnitude() > GUARD.value;
    let op = match rng.below(28) {
        0..=3 => Unary::Identity,
        4 => Unary::Neg,
        5 => Unary::Abs,
        6 => Unary::Square,
        7 => Unary::Cube,
        8 => Unary::Sqrt,
        9 => Unary::Scale(pick(rng, &SCALES)),
        10 => Unary::Shift(pick(rng, &BETAS), rng.below(2) == 1),
        11 => Unary::Exp(exp_guard),
        12 => Unary::Ln,
        13 => Unary::Sin,
        14 => Unary::Cos,
        15 => Unary::Sinh(hyperbolic_guard),
        16 => Unary::Cosh(hyperbolic_guard),
        17 => Unary::Tanh,
        18 => Unary::Atan,
        19 => Unary::Relu,
        20 => Unary::NegPart,
        21 => Unary::Sigmoid,
        22 => Unary::Softplus,
        23 => Unary::Gauss,
        24 => Unary::Erf,
        25 => Unary::NormalCdf,
        26 => Unary::Softsign,
        _ => return Expr::Const(pick(rng, &BETAS)),
    };
    Expr::Unary(op, Box::new(arg))
}

fn sample_binary(rng: &mut Rng) -> Binary {
    match rng.below(10) {
        0 => Binary::Add,
        1 => Binary::Sub,
        2 => Binary::Mul,
        3 => Binary::Div,
        4 => Binary::Max,
        5 => Binary::Min,
        6 => Binary::Gate,
        7 => Binary::Gauss(pick(rng, &KERNEL_WIDTHS)),
        8 => Binary::Laplace(pick(rng, &KERNEL_WIDTHS)),
        _ => {
            let (p, q) = pick(rng, &MIX_WEIGHTS);
            Binary::Mix(p, q)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

/// Binding strength of a printed expression, weakest first: an operand weaker than its
/// position requires is parenthesized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Sum,
    Product,
    Prefix,
    /// `a^2` (math only).
    Power,
    Atom,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// SDK source over `R: Real`; units are referred to by their `let` names.
    Rust,
    /// Readable math with the units written out in place.
    Math,
}

struct Printer<'a> {
    style: Style,
    var: &'a str,
    units: &'a [Expr],
}

type Printed = (String, Prec);

fn at_least((text, prec): Printed, min: Prec) -> String {
    if prec < min {
        format!("({text})")
    } else {
        text
    }
}

/// The right operand of a binary operator, which must bind at least as `min`; negations are
/// parenthesized too, for `x - (-y)` rather than `x - -y`.
fn right(b: Printed, min: Prec) -> String {
    let text = at_least(b, min);
    if text.starts_with('-') {
        format!("({text})")
    } else {
        text
    }
}

fn call(name: &str, args: &[&str]) -> Printed {
    (format!("{name}({})", args.join(", ")), Prec::Atom)
}

impl Printer<'_> {
    fn math(&self) -> bool {
        self.style == Style::Math
    }

    fn print(&self, e: &Expr) -> Printed {
        match e {
            Expr::Var => (self.var.to_owned(), Prec::Atom),
            Expr::Unit(i) => match self.style {
                Style::Rust => (unit_name(*i), Prec::Atom),
                Style::Math => self.print(&self.units[*i]),
            },
            Expr::Const(c) => match self.style {
                Style::Rust => (format!("R::c({})", c.text), Prec::Atom),
                Style::Math => (c.text.to_owned(), Prec::Atom),
            },
            Expr::Unary(op, a) => self.unary(*op, self.print(a)),
            Expr::Binary(op, a, b) => self.binary(*op, self.print(a), self.print(b)),
        }
    }

    fn abs(&self, a: Printed) -> Printed {
        // `||x||` would read as a norm.
        if self.math() && !a.0.starts_with('|') {
            (format!("|{}|", a.0), Prec::Atom)
        } else {
            call("abs", &[&a.0])
        }
    }

    fn power(&self, a: Printed, n: u32) -> Printed {
        if self.math() {
            (format!("{}^{n}", at_least(a, Prec::Atom)), Prec::Power)
        } else {
            call("powi", &[&a.0, &n.to_string()])
        }
    }

    fn guarded(&self, name: &str, a: Printed, guard: bool, symmetric: bool) -> Printed {
        if !guard {
            return call(name, &[&a.0]);
        }
        let limit = if self.math() { GUARD_MATH } else { GUARD.text };
        let inner = match (symmetric, self.style) {
            (true, _) => format!("clamp({}, -{limit}, {limit})", a.0),
            (false, Style::Rust) => format!("min({}, R::c({limit}))", a.0),
            (false, Style::Math) => format!("min({}, {limit})", a.0),
        };
        call(name, &[&inner])
    }

    fn zero(&self) -> &'static str {
        if self.math() { "0" } else { "R::zero()" }
    }

    fn unary(&self, op: Unary, a: Printed) -> Printed {
        match op {
            Unary::Identity => a,
            Unary::Neg => {
                let inner = at_least(a, Prec::Prefix);
                // `--x` reads badly, even where it parses.
                let inner = if inner.starts_with('-') {
                    format!("({inner})")
                } else {
                    inner
                };
                (format!("-{inner}"), Prec::Prefix)
            }
            Unary::Abs => self.abs(a),
            Unary::Square => self.power(a, 2),
            Unary::Cube => self.power(a, 3),
            Unary::Sqrt => {
                let abs = self.abs(a).0;
                call("sqrt", &[&format!("{abs} + {}", SQRT_EPS.text)])
            }
            Unary::Scale(c) => (
                format!("{} * {}", at_least(a, Prec::Product), c.text),
                Prec::Product,
            ),
            Unary::Shift(c, negative) => {
                let sign = if negative { '-' } else { '+' };
                (format!("{} {sign} {}", a.0, c.text), Prec::Sum)
            }
            Unary::Exp(guard) => self.guarded("exp", a, guard, false),
            Unary::Sinh(guard) => self.guarded("sinh", a, guard, true),
            Unary::Cosh(guard) => self.guarded("cosh", a, guard, true),
            Unary::Ln if self.math() => (format!("ln(1 + {})", self.abs(a).0), Prec::Atom),
            Unary::Ln => call("ln_1p", &[&self.abs(a).0]),
            Unary::Sin => call("sin", &[&a.0]),
            Unary::Cos => call("cos", &[&a.0]),
            Unary::Tanh => call("tanh", &[&a.0]),
            Unary::Atan => call("atan", &[&a.0]),
            Unary::Relu => call("max", &[&a.0, self.zero()]),
            Unary::NegPart => call("min", &[&a.0, self.zero()]),
            Unary::Sigmoid => call("sigmoid", &[&a.0]),
            Unary::Softplus => call("softplus", &[&a.0]),
            Unary::Gauss => {
                let square = at_least(self.power(a, 2), Prec::Prefix);
                call("exp", &[&format!("-{square}")])
            }
            Unary::Erf => call("erf", &[&a.0]),
            Unary::NormalCdf if self.math() => call("Phi", &[&a.0]),
            Unary::NormalCdf => call("normal_cdf", &[&a.0]),
            Unary::Softsign => {
                let denominator = self.one_plus_abs(a.clone());
                (
                    format!("{} / ({denominator})", at_least(a, Prec::Product)),
                    Prec::Product,
                )
            }
        }
    }

    /// `1 + |a|`, spelt `abs(a) + 1.0` in Rust, where the constant must be on the right.
    fn one_plus_abs(&self, a: Printed) -> String {
        let abs = self.abs(a).0;
        if self.math() {
            format!("1 + {abs}")
        } else {
            format!("{abs} + 1.0")
        }
    }

    fn binary(&self, op: Binary, a: Printed, b: Printed) -> Printed {
        let difference = |a: Printed, b: Printed| -> Printed {
            (format!("{} - {}", a.0, right(b, Prec::Product)), Prec::Sum)
        };
        match op {
            Binary::Add => (format!("{} + {}", a.0, right(b, Prec::Product)), Prec::Sum),
            Binary::Sub => difference(a, b),
            Binary::Mul => (
                format!(
                    "{} * {}",
                    at_least(a, Prec::Product),
                    right(b, Prec::Prefix)
                ),
                Prec::Product,
            ),
            Binary::Div => (
                format!(
                    "{} / ({})",
                    at_least(a, Prec::Product),
                    self.one_plus_abs(b)
                ),
                Prec::Product,
            ),
            Binary::Max => call("max", &[&a.0, &b.0]),
            Binary::Min => call("min", &[&a.0, &b.0]),
            Binary::Gate => (
                format!(
                    "{} * {}",
                    call("sigmoid", &[&a.0]).0,
                    right(b, Prec::Prefix)
                ),
                Prec::Product,
            ),
            Binary::Gauss(c) => self.kernel(self.power(difference(a, b), 2), c),
            Binary::Laplace(c) => self.kernel(self.abs(difference(a, b)), c),
            Binary::Mix(p, q) => (
                format!(
                    "{} * {} + {} * {}",
                    at_least(a, Prec::Product),
                    p.text,
                    at_least(b, Prec::Product),
                    q.text
                ),
                Prec::Sum,
            ),
        }
    }

    /// `exp(-β * distance)`; `β = 1` is left out.
    fn kernel(&self, distance: Printed, width: Constant) -> Printed {
        let distance = at_least(distance, Prec::Prefix);
        let argument = match (width.text, self.style) {
            ("1.0", _) => format!("-{distance}"),
            (w, Style::Rust) => format!("-{distance} * {w}"),
            (w, Style::Math) => format!("-{w} * {distance}"),
        };
        call("exp", &[&argument])
    }
}

fn unit_name(i: usize) -> String {
    format!("h{}", i + 1)
}

/// The body of `fn NAME<R: Real>(VAR: R) -> R`: one `let` per inner unit, then `tail`.
fn rust_body(program: &Program, var: &str, tail: &Expr) -> String {
    let printer = Printer {
        style: Style::Rust,
        var,
        units: &program.units,
    };
    let inner = program
        .units
        .split_last()
        .map_or(&[][..], |(_, inner)| inner);
    let mut body = String::new();
    for (i, unit) in inner.iter().enumerate() {
        body += &format!("    let {} = {};\n", unit_name(i), printer.print(unit).0);
    }
    body + &format!("    {}\n", printer.print(tail).0)
}

fn math(program: &Program, var: &str, e: &Expr) -> Printed {
    Printer {
        style: Style::Math,
        var,
        units: &program.units,
    }
    .print(e)
}

/// The program's output: its last unit.
fn last_unit(program: &Program) -> Expr {
    program.units.last().cloned().unwrap_or(Expr::Var)
}

// ---------------------------------------------------------------------------------------------
// Kinds
// ---------------------------------------------------------------------------------------------

/// FNV-1a: stable across Rust releases and platforms, unlike `std`'s default hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn component_name(kind: ComponentKind, expression: &str) -> String {
    let hash = fnv1a(format!("{}\n{expression}", kind.as_str()).as_bytes());
    format!("grammar_{:012x}", hash >> 16)
}

/// The range every activation must handle: the validator probes up to ±1e4.
const ACTIVATION_INPUT_BOUND: f64 = 1e4;
/// Weights the regularizer must handle.
const WEIGHT_BOUND: f64 = 1e3;

fn activation(rng: &mut Rng) -> GrammarHypothesis {
    let program = sample_program(rng, ACTIVATION_INPUT_BOUND);
    let tail = last_unit(&program);
    let expression = math(&program, "x", &tail).0;
    let name = component_name(ComponentKind::Activation, &expression);
    let body = rust_body(&program, "x", &tail);
    let source = format!(
        "// Grammar sample (Ramachandran et al., 2017 search space): f(x) = {expression}.
use hypoforge_sdk::prelude::*;

fn f<R: Real>(x: R) -> R {{
{body}}}

activation!(name = \"{name}\", f = f);
"
    );
    GrammarHypothesis {
        name,
        expression,
        source,
    }
}

fn regularizer(rng: &mut Rng) -> GrammarHypothesis {
    let lambda = pick(rng, &LAMBDAS);
    let program = sample_program(rng, WEIGHT_BOUND);
    let input = Info::input(WEIGHT_BOUND);
    // The penalty of one weight is |u(w)| or u(w)^2 of a sampled u: non-negative, like every
    // classic penalty. Squaring can leave the safe range; the absolute value cannot.
    let squared = Expr::Unary(Unary::Square, Box::new(last_unit(&program)));
    let tail = if rng.below(2) == 0 && info(&squared, input, &program.infos).finite() {
        squared
    } else {
        Expr::Unary(Unary::Abs, Box::new(last_unit(&program)))
    };
    let g = math(&program, "w", &tail).0;
    let expression = format!("{} * sum_w {g}", lambda.text);
    let name = component_name(ComponentKind::Regularizer, &expression);
    let body = rust_body(&program, "w", &tail);
    let source = format!(
        "// Grammar sample (Ramachandran et al., 2017 search space): penalty = {expression}.
use hypoforge_sdk::prelude::*;

const LAMBDA: f64 = {lambda};

fn g<R: Real>(w: R) -> R {{
{body}}}

fn penalty(w: Matrix<'_>) -> f32 {{
    let sum: f64 = w.data().iter().map(|&v| f64::from(g(v))).sum();
    (LAMBDA * sum) as f32
}}

// The exact derivative of g from the SDK's dual numbers.
fn gradient(w: Matrix<'_>, out: &mut [f32]) {{
    for (o, &v) in out.iter_mut().zip(w.data()) {{
        *o = (LAMBDA * f64::from(g(Dual::var(v)).d)) as f32;
    }}
}}

regularizer!(name = \"{name}\", penalty = penalty, gradient = gradient);
",
        lambda = lambda.text,
    );
    GrammarHypothesis {
        name,
        expression,
        source,
    }
}

/// How a preprocessor centres and scales each column before its program sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scaling {
    Standard,
    Robust,
    MinMax,
    MaxAbs,
    Raw,
}

impl Scaling {
    const ALL: [Scaling; 5] = [
        Scaling::Standard,
        Scaling::Robust,
        Scaling::MinMax,
        Scaling::MaxAbs,
        Scaling::Raw,
    ];

    fn math(self) -> &'static str {
        match self {
            Scaling::Standard => "(x - mean) / std",
            Scaling::Robust => "(x - median) / iqr",
            Scaling::MinMax => "(x - min) / (max - min)",
            Scaling::MaxAbs => "x / max|x|",
            Scaling::Raw => "x",
        }
    }

    /// The body of `fn location_scale(train: Matrix<'_>, j: usize) -> (f32, f32)`.
    fn rust(self) -> &'static str {
        match self {
            Scaling::Standard => {
                "    (\n        stats::mean(train.column(j)),\n        sqrt(stats::variance(train.column(j))),\n    )\n"
            }
            Scaling::Robust => {
                "    let sorted = stats::sorted(train.column(j));\n    let q = |p: f32| stats::quantile_sorted(&sorted, p);\n    (q(0.5), q(0.75) - q(0.25))\n"
            }
            Scaling::MinMax => {
                "    let sorted = stats::sorted(train.column(j));\n    let q = |p: f32| stats::quantile_sorted(&sorted, p);\n    (q(0.0), q(1.0) - q(0.0))\n"
            }
            Scaling::MaxAbs => {
                "    let largest = train.column(j).fold(0.0f32, |m, v| max(m, abs(v)));\n    (0.0, largest)\n"
            }
            Scaling::Raw => "    let _ = (train, j);\n    (0.0, 1.0)\n",
        }
    }
}

fn preprocessor(rng: &mut Rng) -> GrammarHypothesis {
    let scaling = pick(rng, &Scaling::ALL);
    let clip = pick(rng, &CLIPS);
    // The program sees z clamped to ±CLIP, whatever the data and the fitted scale.
    let program = sample_program(rng, clip.value);
    let tail = last_unit(&program);
    let g = math(&program, "z", &tail).0;
    let clip_math = clip.text.trim_end_matches(".0");
    let expression = format!(
        "{g}, z = clamp({}, -{clip_math}, {clip_math})",
        scaling.math()
    );
    let name = component_name(ComponentKind::Preprocessor, &expression);
    let body = rust_body(&program, "z", &tail);
    let source = format!(
        "// Grammar sample (Ramachandran et al., 2017 search space): per column {expression}; outputs clamped to ±1e6.
use hypoforge_sdk::prelude::*;

const CLIP: f32 = {clip};
// Bounds the output whatever the program does with its bounded input.
const LIMIT: f32 = 1e6;

fn g<R: Real>(z: R) -> R {{
{body}}}

fn location_scale(train: Matrix<'_>, j: usize) -> (f32, f32) {{
{scaling_body}}}

struct State(Vec<(f32, f32)>);

impl Preprocessor for State {{
    fn fit(train: Matrix<'_>) -> Self {{
        let columns = (0..train.cols())
            .map(|j| {{
                let (location, scale) = location_scale(train, j);
                // Constant and near-constant columns: centre only.
                (location, if scale > 1e-12 {{ scale }} else {{ 1.0 }})
            }})
            .collect();
        State(columns)
    }}

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {{
        for ((o, &x), &(location, scale)) in out.iter_mut().zip(row).zip(&self.0) {{
            let y = g(clamp((x - location) / scale, -CLIP, CLIP));
            *o = if y.is_finite() {{ clamp(y, -LIMIT, LIMIT) }} else {{ 0.0 }};
        }}
    }}
}}

preprocessor!(name = \"{name}\", state = State);
",
        clip = clip.text,
        scaling_body = scaling.rust(),
    );
    GrammarHypothesis {
        name,
        expression,
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn samples(kind: ComponentKind, n: u64) -> Vec<GrammarHypothesis> {
        (0..n)
            .map(|seed| sample(kind, &mut Rng::new(seed)))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_program() {
        for kind in ComponentKind::ALL {
            for seed in 0..50 {
                let a = sample(kind, &mut Rng::new(seed));
                let b = sample(kind, &mut Rng::new(seed));
                assert_eq!(a, b, "{kind} seed {seed}");
            }
        }
    }

    #[test]
    fn different_seeds_give_mostly_different_programs() {
        for kind in ComponentKind::ALL {
            let all = samples(kind, 100);
            let sources: HashSet<_> = all.iter().map(|h| &h.source).collect();
            let names: HashSet<_> = all.iter().map(|h| &h.name).collect();
            assert!(sources.len() >= 90, "{kind}: {} distinct", sources.len());
            // Names follow the programs: as many distinct names as distinct sources.
            assert_eq!(names.len(), sources.len(), "{kind}");
        }
    }

    #[test]
    fn activation_expressions_are_diverse() {
        let expressions: HashSet<_> = samples(ComponentKind::Activation, 100)
            .into_iter()
            .map(|h| h.expression)
            .collect();
        assert!(expressions.len() >= 90, "{} distinct", expressions.len());
    }

    #[test]
    fn names_are_valid_and_sources_export_their_kind() {
        let valid_name = |name: &str| {
            name.len() <= 48
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        for (kind, export) in [
            (ComponentKind::Activation, "activation!(name = \""),
            (ComponentKind::Preprocessor, "preprocessor!(name = \""),
            (ComponentKind::Regularizer, "regularizer!(name = \""),
        ] {
            for h in samples(kind, 150) {
                assert!(valid_name(&h.name), "{}", h.name);
                assert!(
                    h.source.contains(&format!("{export}{}\"", h.name)),
                    "{}",
                    h.source
                );
                assert!(h.source.contains("use hypoforge_sdk::prelude::*;\n"));
                // Words the source policy refuses, wherever they appear.
                for word in ["unsafe", "env", "include", "mod ", "extern"] {
                    assert!(!h.source.contains(word), "{word} in {}", h.source);
                }
            }
        }
    }

    #[test]
    fn equal_expressions_get_equal_names() {
        let a = component_name(ComponentKind::Activation, "max(x, tanh(x) * 0.5)");
        assert_eq!(
            a,
            component_name(ComponentKind::Activation, "max(x, tanh(x) * 0.5)")
        );
        assert_ne!(
            a,
            component_name(ComponentKind::Regularizer, "max(x, tanh(x) * 0.5)")
        );
        assert_ne!(
            a,
            component_name(ComponentKind::Activation, "max(x, tanh(x) * 1.5)")
        );
    }

    #[test]
    fn constant_literals_match_their_values() {
        let all = BETAS
            .iter()
            .chain(&SCALES)
            .chain(&KERNEL_WIDTHS)
            .chain(&LAMBDAS)
            .chain(&CLIPS)
            .chain(MIX_WEIGHTS.iter().flat_map(|(p, q)| [p, q]))
            .chain([&GUARD, &SQRT_EPS]);
        for c in all {
            assert_eq!(c.text.parse::<f64>().ok(), Some(c.value), "{}", c.text);
        }
        for (p, q) in MIX_WEIGHTS {
            assert!((p.value + q.value - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn bounds_over_approximate_what_they_bound() {
        for a in [0.0, 0.5, 3.0, GUARD.value] {
            assert!(exp_bound(a) >= a.exp(), "{a}");
        }
        for v in [0.0, 0.3, 1.0, 1e4, 1e24] {
            assert!(ln1p_bound(v) >= v.ln_1p(), "{v}");
        }
    }

    #[test]
    fn degenerate_units_are_recognised() {
        let x = || Box::new(Expr::Var);
        let neg_x = || Box::new(Expr::Unary(Unary::Neg, x()));
        let shifted = || Box::new(Expr::Unary(Unary::Shift(BETAS[3], false), x()));
        assert!(!distinct_enough(Binary::Add, &Expr::Var, &neg_x()));
        assert!(!distinct_enough(Binary::Sub, &shifted(), &Expr::Var));
        assert!(!distinct_enough(Binary::Max, &shifted(), &Expr::Var));
        assert!(!distinct_enough(
            Binary::Gauss(KERNEL_WIDTHS[1]),
            &shifted(),
            &Expr::Var
        ));
        assert!(distinct_enough(Binary::Max, &Expr::Var, &neg_x()));
        assert!(distinct_enough(Binary::Mul, &Expr::Var, &Expr::Var));

        let input = Info::input(ACTIVATION_INPUT_BOUND);
        let linear = Expr::Binary(
            Binary::Mix(MIX_WEIGHTS[0].0, MIX_WEIGHTS[0].1),
            x(),
            Box::new(Expr::Unary(Unary::Scale(SCALES[0]), x())),
        );
        assert!(!info(&linear, input, &[]).acceptable());
        let constant = Expr::Binary(
            Binary::Max,
            Box::new(Expr::Const(BETAS[0])),
            Box::new(Expr::Unary(Unary::Sin, Box::new(Expr::Const(BETAS[1])))),
        );
        assert!(!info(&constant, input, &[]).varies);
        let swish = Expr::Binary(Binary::Gate, x(), x());
        assert!(info(&swish, input, &[]).acceptable());
    }

    #[test]
    fn guards_appear_exactly_where_arguments_can_be_large() {
        let input = Info::input(ACTIVATION_INPUT_BOUND);
        let program = Program {
            units: vec![],
            infos: vec![],
        };
        let exp_of = |arg: Expr| {
            let guard = info(&arg, input, &[]).hi > GUARD.value;
            let e = Expr::Unary(Unary::Exp(guard), Box::new(arg));
            math(&program, "x", &e).0
        };
        assert_eq!(exp_of(Expr::Var), "exp(min(x, 10))");
        assert_eq!(
            exp_of(Expr::Unary(Unary::Tanh, Box::new(Expr::Var))),
            "exp(tanh(x))"
        );
        let minus_abs = Expr::Unary(
            Unary::Neg,
            Box::new(Expr::Unary(Unary::Abs, Box::new(Expr::Var))),
        );
        assert_eq!(exp_of(minus_abs), "exp(-|x|)");
    }

    #[test]
    fn printing_respects_precedence() {
        let program = Program {
            units: vec![],
            infos: vec![],
        };
        let x = || Box::new(Expr::Var);
        let sum = Expr::Binary(Binary::Add, x(), Box::new(Expr::Unary(Unary::Sin, x())));
        let scaled = Expr::Unary(Unary::Scale(SCALES[2]), Box::new(sum.clone()));
        assert_eq!(math(&program, "x", &scaled).0, "(x + sin(x)) * 0.5");
        let negated = Expr::Unary(Unary::Neg, Box::new(Expr::Unary(Unary::Neg, x())));
        assert_eq!(math(&program, "x", &negated).0, "-(-x)");
        let gauss = Expr::Binary(Binary::Gauss(KERNEL_WIDTHS[0]), x(), Box::new(sum));
        let rust = Printer {
            style: Style::Rust,
            var: "x",
            units: &[],
        };
        assert_eq!(
            rust.print(&gauss).0,
            "exp(-powi(x - (x + sin(x)), 2) * 0.5)"
        );
        assert_eq!(
            math(&program, "x", &gauss).0,
            "exp(-0.5 * (x - (x + sin(x)))^2)"
        );
    }
}
