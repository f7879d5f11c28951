//! An activation as a table, for devices that cannot run the plugin itself.
//!
//! A plugin is WebAssembly; a GPU kernel cannot call it. So f and f′ are sampled from the
//! sandbox on a fine uniform grid and interpolated linearly. The grid step is a power of two,
//! so `x / h` is exact in f32 and the interval index and the position inside it carry no
//! rounding. Each interval keeps its own one-sided end values (f and f′ just inside each end),
//! so a kink or a jump that sits on a knot (ReLU's at 0, a hard clamp's at ±1) is reproduced
//! exactly rather than smeared over a step; a value exactly on a knot reads the plugin's own
//! value there. Past the grid's ends the plugin's end value and end slope extend linearly.
//!
//! A table is trusted only after [`ActivationTable::deviation`] compares it with the plugin on
//! random inputs (wide tails included): a plugin whose shape the grid cannot follow (periodic
//! far out, growing faster than linearly, a kink between knots) is refused the table path.

use hypoforge_spec::rng::Rng;

use crate::model::{Activation, RunFailure};

/// log2 of the knots per unit: the grid step is `2^-STEP_LOG2`.
pub const STEP_LOG2: i32 = 9;
/// The grid covers `[-HALF_RANGE, HALF_RANGE]`.
pub const HALF_RANGE: f32 = 64.0;
/// Knots per unit of x.
const PER_UNIT: f32 = (1u32 << STEP_LOG2) as f32;
/// Intervals on the grid.
pub const INTERVALS: usize = 2 * HALF_RANGE as usize * (1 << STEP_LOG2);
/// The largest deviation a table may show, relative to `1 + |plugin value|`, for f and for f′.
pub const TOLERANCE: f64 = 1e-4;
/// Random inputs in the deviation check.
const PROBES: usize = 1 << 16;

/// A sampled activation, in the layout a device reads (see [`ActivationTable::flat`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationTable {
    flat: Vec<f32>,
}

fn knot(i: usize) -> f32 {
    // Exact: i and the offset fit in f32's mantissa and the step is a power of two.
    (i as f32 - (INTERVALS / 2) as f32) / PER_UNIT
}

/// f and f′ of `act` at `x`, in two calls over the whole buffer.
fn sample(act: &mut dyn Activation, x: &[f32]) -> Result<(Vec<f32>, Vec<f32>), RunFailure> {
    let (mut f, mut d) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    act.forward_with_derivative(x, &mut f, &mut d)?;
    Ok((f, d))
}

impl ActivationTable {
    /// Sample `act` at every knot and just inside both ends of every interval.
    pub fn sample(act: &mut dyn Activation) -> Result<ActivationTable, RunFailure> {
        let knots_x: Vec<f32> = (0..=INTERVALS).map(knot).collect();
        let right_of: Vec<f32> = knots_x[..INTERVALS].iter().map(|x| x.next_up()).collect();
        let left_of: Vec<f32> = knots_x[1..].iter().map(|x| x.next_down()).collect();
        let (kf, kd) = sample(act, &knots_x)?;
        let (rf, rd) = sample(act, &right_of)?;
        let (lf, ld) = sample(act, &left_of)?;
        let mut flat = Vec::with_capacity(FLAT_LEN);
        for i in 0..INTERVALS {
            flat.extend([rf[i], lf[i], rd[i], ld[i]]);
        }
        for (f, d) in kf.into_iter().zip(kd) {
            flat.extend([f, d]);
        }
        flat.extend([0.0, 0.0]);
        Ok(ActivationTable { flat })
    }

    /// f and f′ at `x`, exactly as the GPU kernel computes them.
    pub fn lookup(&self, x: f32) -> (f32, f32) {
        lookup(&self.flat, x)
    }

    /// The largest deviation of the table from `act` over a fixed set of random inputs, as
    /// `|table − plugin| / (1 + |plugin|)`, the worse of f and f′. Infinite when the plugin
    /// gives a non-finite value.
    pub fn deviation(&self, act: &mut dyn Activation) -> Result<f64, RunFailure> {
        let mut rng = Rng::new(0x7ab1_e000_0000_0001);
        // Mostly the scale pre-activations have, then ever wider tails past the grid's ends.
        let scales = [0.5, 1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 4096.0];
        let x: Vec<f32> = (0..PROBES)
            .map(|i| (rng.normal() * scales[i % scales.len()]) as f32)
            .collect();
        let (f, d) = sample(act, &x)?;
        let mut worst = 0.0f64;
        for ((&x, &f), &d) in x.iter().zip(&f).zip(&d) {
            if !f.is_finite() || !d.is_finite() {
                return Ok(f64::INFINITY);
            }
            let (tf, td) = self.lookup(x);
            for (table, plugin) in [(tf, f), (td, d)] {
                let err =
                    (f64::from(table) - f64::from(plugin)).abs() / (1.0 + f64::from(plugin).abs());
                worst = worst.max(if err.is_nan() { f64::INFINITY } else { err });
            }
        }
        Ok(worst)
    }

    /// The table as a device reads it: per interval `[x_i, x_{i+1}]` four values (f just right
    /// of `x_i`, f just left of `x_{i+1}`, and f′ at the same two points), then per knot `x_i`
    /// f and f′ there (`INTERVALS + 1` knots), then two zeros.
    pub fn flat(&self) -> &[f32] {
        &self.flat
    }
}

/// f and f′ at `x` from a table in its flat layout: the one interpolation the CPU reference and
/// the GPU kernel both follow.
pub fn lookup(flat: &[f32], x: f32) -> (f32, f32) {
    let knot = |i: usize| (flat[4 * INTERVALS + 2 * i], flat[4 * INTERVALS + 2 * i + 1]);
    if x.is_nan() {
        return (x, x);
    }
    if x <= -HALF_RANGE || x >= HALF_RANGE {
        let (f, d) = if x < 0.0 { knot(0) } else { knot(INTERVALS) };
        let end = if x < 0.0 { -HALF_RANGE } else { HALF_RANGE };
        return (f + d * (x - end), d);
    }
    let s = x * PER_UNIT;
    let k = s.floor();
    let t = s - k;
    let i = (k as i32 + (INTERVALS / 2) as i32) as usize;
    if t == 0.0 {
        return knot(i);
    }
    let [f0, f1, d0, d1] = [
        flat[4 * i],
        flat[4 * i + 1],
        flat[4 * i + 2],
        flat[4 * i + 3],
    ];
    (f0 + t * (f1 - f0), d0 + t * (d1 - d0))
}

/// Length of [`ActivationTable::flat`]: a multiple of four, so that every table of a buffer of
/// them starts 16-byte aligned and a kernel reads an interval in one load.
pub const FLAT_LEN: usize = 4 * INTERVALS + 2 * (INTERVALS + 1) + 2;

/// An activation that reads a table in its flat layout: the CPU reference of what a device
/// computes.
#[derive(Debug)]
pub struct TableActivation<'a>(pub &'a [f32]);

impl Activation for TableActivation<'_> {
    fn forward(&mut self, x: &[f32], y: &mut [f32]) -> Result<(), RunFailure> {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = lookup(self.0, x).0;
        }
        Ok(())
    }
    fn derivative(&mut self, x: &[f32], dy: &mut [f32]) -> Result<(), RunFailure> {
        for (dy, &x) in dy.iter_mut().zip(x) {
            *dy = lookup(self.0, x).1;
        }
        Ok(())
    }
    fn forward_with_derivative(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), RunFailure> {
        for ((y, dy), &x) in y.iter_mut().zip(dy.iter_mut()).zip(x) {
            (*y, *dy) = lookup(self.0, x);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NativeActivation;

    /// A host-side activation from two closures.
    struct Native<F, D>(F, D);
    impl<F: Fn(f32) -> f32, D: Fn(f32) -> f32> Activation for Native<F, D> {
        fn forward(&mut self, x: &[f32], y: &mut [f32]) -> Result<(), RunFailure> {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = (self.0)(x));
            Ok(())
        }
        fn derivative(&mut self, x: &[f32], dy: &mut [f32]) -> Result<(), RunFailure> {
            dy.iter_mut().zip(x).for_each(|(d, &x)| *d = (self.1)(x));
            Ok(())
        }
    }

    #[test]
    fn relu_is_exact_on_both_sides_of_its_kink() {
        let mut relu = NativeActivation::Relu;
        let table = ActivationTable::sample(&mut relu).unwrap();
        for x in [
            1e-30f32,
            1e-3,
            0.5 / PER_UNIT,
            -1e-30,
            -0.5 / PER_UNIT,
            0.0,
            3.7,
            -3.7,
        ] {
            let (f, d) = table.lookup(x);
            assert!(
                (f - x.max(0.0)).abs() <= 1e-6 * x.abs().max(1e-30),
                "f({x}) = {f}"
            );
            assert_eq!(d, if x > 0.0 { 1.0 } else { 0.0 }, "f'({x})");
        }
        // Past the ends: ReLU's tails are linear.
        assert_eq!(table.lookup(1000.0), (1000.0, 1.0));
        assert_eq!(table.lookup(-1000.0), (0.0, 0.0));
        assert!(table.deviation(&mut relu).unwrap() < 1e-6);
    }

    #[test]
    fn smooth_activations_pass_within_the_tolerance() {
        let mut tanh = NativeActivation::Tanh;
        let table = ActivationTable::sample(&mut tanh).unwrap();
        let dev = table.deviation(&mut tanh).unwrap();
        // Linear interpolation's error is h²/8 · |f''| ≈ 2e-7 at this step.
        assert!(dev < 3e-6, "{dev}");
        let mut gelu = Native(
            |x: f32| (0.5 * f64::from(x) * (1.0 + libm::erf(f64::from(x) / 2f64.sqrt()))) as f32,
            |x: f32| {
                let x = f64::from(x);
                let cdf = 0.5 * (1.0 + libm::erf(x / 2f64.sqrt()));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (cdf + x * pdf) as f32
            },
        );
        let table = ActivationTable::sample(&mut gelu).unwrap();
        let dev = table.deviation(&mut gelu).unwrap();
        assert!(dev < TOLERANCE / 10.0, "{dev}");
    }

    #[test]
    fn shapes_the_grid_cannot_follow_are_measured_as_such() {
        // Quadratic growth: the linear tails are wrong past the ends.
        let mut square = Native(|x: f32| x * x, |x: f32| 2.0 * x);
        let table = ActivationTable::sample(&mut square).unwrap();
        assert!(table.deviation(&mut square).unwrap() > TOLERANCE);
        // Periodic: fine on the grid, wrong past it.
        let mut sine = Native(f32::sin, f32::cos);
        let table = ActivationTable::sample(&mut sine).unwrap();
        assert!(table.deviation(&mut sine).unwrap() > TOLERANCE);
        // A jump between knots (at 1/3) is smeared over one interval.
        let mut step = Native(|x: f32| if x > 1.0 / 3.0 { 1.0 } else { 0.0 }, |_| 0.0);
        let table = ActivationTable::sample(&mut step).unwrap();
        let (f, _) = table.lookup(1.0 / 3.0 - 0.25 / PER_UNIT);
        assert!(f > 0.0 && f < 1.0, "{f}");
        // Non-finite plugin values are never trusted.
        let mut log = Native(|x: f32| x.ln(), |x: f32| 1.0 / x);
        let table = ActivationTable::sample(&mut log).unwrap();
        assert_eq!(table.deviation(&mut log).unwrap(), f64::INFINITY);
    }

    #[test]
    fn a_knot_reads_the_plugin_value_there() {
        // f(0) = 5 alone; the table must not interpolate it away, nor leak it to neighbours.
        let mut spike = Native(|x: f32| if x == 0.0 { 5.0 } else { 0.0 }, |_| 0.0);
        let table = ActivationTable::sample(&mut spike).unwrap();
        assert_eq!(table.lookup(0.0).0, 5.0);
        assert_eq!(table.lookup(1e-20).0, 0.0);
        assert_eq!(table.lookup(-1e-20).0, 0.0);
        assert_eq!(table.flat().len(), FLAT_LEN);
        assert!(table.lookup(f32::NAN).0.is_nan());
    }
}
