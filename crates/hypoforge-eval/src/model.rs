//! The MLP with a component slot, and one-pass training.
//!
//! The activation in every hidden layer and the regularizer on every weight matrix are trait
//! objects, so the same loop trains with a sandboxed plugin or with native code. Each layer makes
//! one activation call per step over the whole batch, which keeps sandbox crossings few.

use hypoforge_spec::ErrorClass;
use hypoforge_spec::rng::Rng;

use crate::kernels::{self, AdamConfig, AdamState, Operand};

/// Why a training run could not finish.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct RunFailure {
    pub class: ErrorClass,
    pub message: String,
}

/// An elementwise activation over buffers.
pub trait Activation {
    /// `y[i] = f(x[i])`.
    fn forward(&mut self, x: &[f32], y: &mut [f32]) -> Result<(), RunFailure>;
    /// `dy[i] = f'(x[i])`.
    fn derivative(&mut self, x: &[f32], dy: &mut [f32]) -> Result<(), RunFailure>;
    /// Both at once, as training needs them: an implementation may share work between the
    /// two (a sandboxed one copies `x` in once).
    fn forward_with_derivative(
        &mut self,
        x: &[f32],
        y: &mut [f32],
        dy: &mut [f32],
    ) -> Result<(), RunFailure> {
        self.forward(x, y)?;
        self.derivative(x, dy)
    }
}

/// A penalty on each weight matrix (row-major `rows × cols`), added to the loss.
pub trait Regularizer {
    fn penalty(&mut self, w: &[f32], rows: usize, cols: usize) -> Result<f32, RunFailure>;
    /// Writes the penalty's gradient into `grad` (same shape as `w`).
    fn gradient(
        &mut self,
        w: &[f32],
        rows: usize,
        cols: usize,
        grad: &mut [f32],
    ) -> Result<(), RunFailure>;
}

/// Activations built into the host: the reference form of the activation slot when another kind
/// is under test, and test fixtures. Each arm is its own loop, so each inlines and vectorizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeActivation {
    Relu,
    Identity,
    Tanh,
}

fn map(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f(x);
    }
}

impl Activation for NativeActivation {
    fn forward(&mut self, x: &[f32], y: &mut [f32]) -> Result<(), RunFailure> {
        match self {
            NativeActivation::Relu => map(x, y, |x| if x > 0.0 { x } else { 0.0 }),
            NativeActivation::Identity => y.copy_from_slice(x),
            NativeActivation::Tanh => map(x, y, f32::tanh),
        }
        Ok(())
    }
    fn derivative(&mut self, x: &[f32], dy: &mut [f32]) -> Result<(), RunFailure> {
        match self {
            NativeActivation::Relu => map(x, dy, |x| if x > 0.0 { 1.0 } else { 0.0 }),
            NativeActivation::Identity => dy.fill(1.0),
            NativeActivation::Tanh => map(x, dy, |x| 1.0 - x.tanh() * x.tanh()),
        }
        Ok(())
    }
}

/// What the network predicts and how it is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Softmax cross-entropy over this many classes.
    Classification { classes: usize },
    /// Mean squared error on one output.
    Regression,
}

impl Objective {
    pub(crate) fn outputs(self) -> usize {
        match self {
            Objective::Classification { classes } => classes,
            Objective::Regression => 1,
        }
    }
}

/// Targets of a matrix of examples.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Labels(Vec<u32>),
    Values(Vec<f32>),
}

/// Examples ready for training: a row-major feature matrix and its targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Examples {
    pub features: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub targets: Targets,
}

/// The optimizer and its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Adam(AdamConfig),
    Sgd { lr: f32 },
}

/// How to train: architecture and budget.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
    pub batch: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Tiny datasets repeat passes until at least this many steps are taken.
    pub min_steps: usize,
    pub optimizer: Optimizer,
}

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainResult {
    pub val_loss: f64,
    /// For classification.
    pub val_accuracy: Option<f64>,
    /// Mean training loss over the last pass.
    pub train_loss: f64,
    pub steps: u64,
}

/// A fully connected layer; `w` is `fan_out × fan_in` as in PyTorch's `Linear`.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub(crate) fan_in: usize,
    pub(crate) fan_out: usize,
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
}

impl Layer {
    /// PyTorch's default: Kaiming-uniform with a = √5 for the weights, which is U(±1/√fan_in),
    /// and U(±1/√fan_in) for the bias.
    fn new(fan_in: usize, fan_out: usize, rng: &mut Rng) -> Layer {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.range(-bound, bound)).collect() };
        let w = draw(fan_in * fan_out);
        let b = draw(fan_out);
        Layer {
            fan_in,
            fan_out,
            w,
            b,
        }
    }
}

/// Per-layer buffers of one step, sized for the largest batch.
struct Buffers {
    /// Pre-activations `z` and activations `a` per layer (the last layer's `a` is unused).
    z: Vec<Vec<f32>>,
    a: Vec<Vec<f32>>,
    /// `f'(z)` per hidden layer, from a training forward pass.
    slope: Vec<Vec<f32>>,
    /// Gradient with respect to `z`, and scratch for the gradient w.r.t. `a`.
    dz: Vec<Vec<f32>>,
    scratch: Vec<Vec<f32>>,
    dw: Vec<Vec<f32>>,
    db: Vec<Vec<f32>>,
    reg_grad: Vec<f32>,
}

/// A multi-layer perceptron with a component slot.
#[derive(Clone, Debug)]
pub struct Mlp {
    pub(crate) layers: Vec<Layer>,
}

impl Mlp {
    /// Layers `inputs → hidden... → outputs`, initialized from `rng`.
    pub fn new(inputs: usize, hidden: &[usize], outputs: usize, rng: &mut Rng) -> Mlp {
        let sizes: Vec<usize> = std::iter::once(inputs)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(outputs))
            .collect();
        let layers = sizes
            .windows(2)
            .map(|w| Layer::new(w[0], w[1], rng))
            .collect();
        Mlp { layers }
    }

    /// Number of trainable parameters.
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    fn buffers(&self, batch: usize) -> Buffers {
        let per_layer = |f: &dyn Fn(&Layer) -> usize| -> Vec<Vec<f32>> {
            self.layers.iter().map(|l| vec![0.0; f(l)]).collect()
        };
        Buffers {
            z: per_layer(&|l| batch * l.fan_out),
            a: per_layer(&|l| batch * l.fan_out),
            slope: per_layer(&|l| batch * l.fan_out),
            dz: per_layer(&|l| batch * l.fan_out),
            scratch: per_layer(&|l| batch * l.fan_out.max(l.fan_in)),
            dw: per_layer(&|l| l.w.len()),
            db: per_layer(&|l| l.b.len()),
            reg_grad: vec![0.0; self.layers.iter().map(|l| l.w.len()).max().unwrap_or(0)],
        }
    }

    /// Forward pass of `rows` examples; the output layer's values end up in the last `buf.z`.
    /// With `slopes`, also `f'(z)` for a following [`Mlp::backward`].
    fn forward(
        &self,
        x: &[f32],
        rows: usize,
        act: &mut dyn Activation,
        buf: &mut Buffers,
        slopes: bool,
    ) -> Result<(), RunFailure> {
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let n = rows * layer.fan_out;
            let (before, after) = buf.a.split_at_mut(l);
            let input = if l == 0 {
                x
            } else {
                &before[l - 1][..rows * layer.fan_in]
            };
            let z = &mut buf.z[l][..n];
            kernels::matmul(
                Operand::new(input, rows, layer.fan_in),
                Operand::new(&layer.w, layer.fan_out, layer.fan_in).t(),
                0.0,
                z,
            );
            kernels::add_bias(z, &layer.b);
            if l < last {
                if slopes {
                    act.forward_with_derivative(z, &mut after[0][..n], &mut buf.slope[l][..n])?;
                } else {
                    act.forward(z, &mut after[0][..n])?;
                }
            }
        }
        Ok(())
    }

    /// Backward pass after [`Mlp::forward`] with slopes on the same `x`, starting from the
    /// gradient of the loss with respect to the outputs in `buf.dz[last]`; fills `buf.dw` and
    /// `buf.db`.
    fn backward(&self, x: &[f32], rows: usize, buf: &mut Buffers) {
        for l in (0..self.layers.len()).rev() {
            let layer = &self.layers[l];
            let n = rows * layer.fan_out;
            let input = if l == 0 {
                x
            } else {
                &buf.a[l - 1][..rows * layer.fan_in]
            };
            kernels::matmul(
                Operand::new(&buf.dz[l][..n], rows, layer.fan_out).t(),
                Operand::new(input, rows, layer.fan_in),
                0.0,
                &mut buf.dw[l],
            );
            kernels::column_sums(&buf.dz[l][..n], &mut buf.db[l]);
            if l == 0 {
                break;
            }
            // Gradient w.r.t. the previous layer's activations, then through its activation.
            let prev = rows * layer.fan_in;
            let (lower, upper) = buf.dz.split_at_mut(l);
            let da = &mut buf.scratch[l][..prev];
            kernels::matmul(
                Operand::new(&upper[0][..n], rows, layer.fan_out),
                Operand::new(&layer.w, layer.fan_out, layer.fan_in),
                0.0,
                da,
            );
            let dz_prev = &mut lower[l - 1][..prev];
            for ((d, g), s) in dz_prev.iter_mut().zip(da.iter()).zip(&buf.slope[l - 1]) {
                *d = s * g;
            }
        }
    }
}

pub(crate) fn loss_and_gradient(
    objective: Objective,
    outputs: &[f32],
    targets: &Targets,
    range: &[usize],
    grad: Option<&mut [f32]>,
    scratch: &mut Vec<u32>,
    scratch_values: &mut Vec<f32>,
) -> Result<(f64, usize), RunFailure> {
    match (objective, targets) {
        (Objective::Classification { classes }, Targets::Labels(labels)) => {
            scratch.clear();
            scratch.extend(range.iter().map(|&i| labels[i]));
            Ok(kernels::softmax_cross_entropy(
                outputs, scratch, classes, grad,
            ))
        }
        (Objective::Regression, Targets::Values(values)) => {
            scratch_values.clear();
            scratch_values.extend(range.iter().map(|&i| values[i]));
            Ok((
                kernels::mean_squared_error(outputs, scratch_values, grad),
                0,
            ))
        }
        _ => Err(RunFailure {
            class: ErrorClass::Internal,
            message: "the targets do not match the objective".into(),
        }),
    }
}

/// Gather the rows `index` of a row-major matrix into `out`.
pub(crate) fn gather(features: &[f32], cols: usize, index: &[usize], out: &mut Vec<f32>) {
    out.clear();
    for &i in index {
        out.extend_from_slice(&features[i * cols..(i + 1) * cols]);
    }
}

/// Seeds derived from a trial's seed; the same for every component in a trial, which is what
/// makes comparisons paired.
pub(crate) fn stream(seed: u64, purpose: u64) -> Rng {
    Rng::new(seed ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Train a fresh MLP on `train` and score it on `valid`. The seed fixes the initialization and
/// the batch order.
pub fn train(
    config: &TrainConfig,
    objective: Objective,
    train: &Examples,
    valid: &Examples,
    seed: u64,
    act: &mut dyn Activation,
    mut reg: Option<&mut dyn Regularizer>,
) -> Result<TrainResult, RunFailure> {
    let batch = config.batch.max(1);
    let outputs = objective.outputs();
    let mut model = Mlp::new(train.cols, &config.hidden, outputs, &mut stream(seed, 1));
    let mut order_rng = stream(seed, 2);
    let mut buf = model.buffers(
        batch
            .min(train.rows.max(1))
            .max(batch.min(valid.rows.max(1))),
    );
    let mut adam: Vec<(AdamState, AdamState)> = model
        .layers
        .iter()
        .map(|l| (AdamState::new(l.w.len()), AdamState::new(l.b.len())))
        .collect();
    let (mut xb, mut labels, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let mut order: Vec<usize> = (0..train.rows).collect();
    let steps_per_epoch = train.rows.div_ceil(batch) as u64;
    let epochs = (config.epochs as u64)
        .max((config.min_steps as u64).div_ceil(steps_per_epoch.max(1)))
        .max(1);
    let mut step = 0u64;
    let mut train_loss = 0.0;
    for _ in 0..epochs {
        order_rng.shuffle(&mut order);
        let (mut sum, mut count) = (0.0f64, 0usize);
        for chunk in order.chunks(batch) {
            let rows = chunk.len();
            gather(&train.features, train.cols, chunk, &mut xb);
            model.forward(&xb, rows, act, &mut buf, true)?;
            let last = model.layers.len() - 1;
            let (mut loss, _) = loss_and_gradient(
                objective,
                &buf.z[last][..rows * outputs],
                &train.targets,
                chunk,
                Some(&mut buf.dz[last][..rows * outputs]),
                &mut labels,
                &mut values,
            )?;
            model.backward(&xb, rows, &mut buf);
            if let Some(reg) = reg.as_deref_mut() {
                for (l, layer) in model.layers.iter().enumerate() {
                    loss += f64::from(reg.penalty(&layer.w, layer.fan_out, layer.fan_in)?);
                    let g = &mut buf.reg_grad[..layer.w.len()];
                    reg.gradient(&layer.w, layer.fan_out, layer.fan_in, g)?;
                    for (dw, r) in buf.dw[l].iter_mut().zip(g.iter()) {
                        *dw += r;
                    }
                }
            }
            if !loss.is_finite() {
                return Err(RunFailure {
                    class: ErrorClass::InvalidBehaviour,
                    message: format!("the training loss became {loss} at step {}", step + 1),
                });
            }
            step += 1;
            for (l, layer) in model.layers.iter_mut().enumerate() {
                match config.optimizer {
                    Optimizer::Adam(c) => {
                        kernels::adam_step(&mut layer.w, &buf.dw[l], &mut adam[l].0, &c, step);
                        kernels::adam_step(&mut layer.b, &buf.db[l], &mut adam[l].1, &c, step);
                    }
                    Optimizer::Sgd { lr } => {
                        kernels::sgd_step(&mut layer.w, &buf.dw[l], lr);
                        kernels::sgd_step(&mut layer.b, &buf.db[l], lr);
                    }
                }
            }
            sum += loss * rows as f64;
            count += rows;
        }
        train_loss = sum / count.max(1) as f64;
    }

    let (val_loss, correct) = evaluate(&model, objective, valid, batch, act, &mut buf)?;
    if !val_loss.is_finite() {
        return Err(RunFailure {
            class: ErrorClass::InvalidBehaviour,
            message: format!("the validation loss is {val_loss}"),
        });
    }
    Ok(TrainResult {
        val_loss,
        val_accuracy: matches!(objective, Objective::Classification { .. })
            .then(|| correct as f64 / valid.rows.max(1) as f64),
        train_loss,
        steps: step,
    })
}

/// Mean loss and the number of correct predictions over `data`, in batches.
fn evaluate(
    model: &Mlp,
    objective: Objective,
    data: &Examples,
    batch: usize,
    act: &mut dyn Activation,
    buf: &mut Buffers,
) -> Result<(f64, usize), RunFailure> {
    let index: Vec<usize> = (0..data.rows).collect();
    let (mut xb, mut labels, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let (mut total, mut correct) = (0.0f64, 0usize);
    for chunk in index.chunks(batch) {
        gather(&data.features, data.cols, chunk, &mut xb);
        model.forward(&xb, chunk.len(), act, buf, false)?;
        let outputs = chunk.len() * objective.outputs();
        let (loss, right) = loss_and_gradient(
            objective,
            &buf.z[model.layers.len() - 1][..outputs],
            &data.targets,
            chunk,
            None,
            &mut labels,
            &mut values,
        )?;
        total += loss * chunk.len() as f64;
        correct += right;
    }
    Ok((total / data.rows.max(1) as f64, correct))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{self, Dataset};

    fn examples(d: &Dataset, rows: std::ops::Range<usize>) -> Examples {
        crate::prepare::examples(d, &rows.collect::<Vec<_>>())
    }

    fn config(hidden: &[usize], epochs: usize) -> TrainConfig {
        TrainConfig {
            hidden: hidden.to_vec(),
            batch: 64,
            epochs,
            min_steps: 0,
            optimizer: Optimizer::Adam(AdamConfig::default()),
        }
    }

    /// The loss of `model` on a fixed batch, in f64 from the f32 forward pass.
    fn batch_loss(model: &Mlp, x: &[f32], labels: &[u32], act: &mut dyn Activation) -> f64 {
        let mut buf = model.buffers(labels.len());
        model
            .forward(x, labels.len(), act, &mut buf, false)
            .unwrap();
        let last = model.layers.len() - 1;
        kernels::softmax_cross_entropy(&buf.z[last][..labels.len() * 3], labels, 3, None).0
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let model = Mlp::new(4, &[5, 6], 3, &mut rng);
        let x: Vec<f32> = (0..8 * 4).map(|_| rng.normal() as f32).collect();
        let labels: Vec<u32> = (0..8).map(|i| i % 3).collect();
        let mut act = NativeActivation::Tanh;
        let mut buf = model.buffers(8);
        model.forward(&x, 8, &mut act, &mut buf, true).unwrap();
        let last = model.layers.len() - 1;
        let logits = buf.z[last][..24].to_vec();
        kernels::softmax_cross_entropy(&logits, &labels, 3, Some(&mut buf.dz[last][..24]));
        model.backward(&x, 8, &mut buf);
        let h = 1e-2f32;
        let mut worst = 0.0f64;
        for l in 0..model.layers.len() {
            for i in (0..model.layers[l].w.len()).step_by(3) {
                let mut plus = model.clone();
                plus.layers[l].w[i] += h;
                let mut minus = model.clone();
                minus.layers[l].w[i] -= h;
                let fd = (batch_loss(&plus, &x, &labels, &mut act)
                    - batch_loss(&minus, &x, &labels, &mut act))
                    / f64::from(2.0 * h);
                worst = worst.max((fd - f64::from(buf.dw[l][i])).abs());
            }
            for i in 0..model.layers[l].b.len() {
                let mut plus = model.clone();
                plus.layers[l].b[i] += h;
                let mut minus = model.clone();
                minus.layers[l].b[i] -= h;
                let fd = (batch_loss(&plus, &x, &labels, &mut act)
                    - batch_loss(&minus, &x, &labels, &mut act))
                    / f64::from(2.0 * h);
                worst = worst.max((fd - f64::from(buf.db[l][i])).abs());
            }
        }
        assert!(worst < 2e-3, "largest gradient error {worst}");
    }

    #[test]
    fn pytorch_default_init_bounds() {
        let model = Mlp::new(64, &[128], 10, &mut Rng::new(3));
        let bound = 1.0 / 64f32.sqrt();
        let first = &model.layers[0];
        assert!(first.w.iter().chain(&first.b).all(|v| v.abs() <= bound));
        // Uniform on ±bound: the spread should reach close to both ends.
        let max = first.w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.95 * bound);
        assert_eq!(model.parameters(), 64 * 128 + 128 + 128 * 10 + 10);
    }

    #[test]
    fn same_seed_same_bits_and_seeds_pair_components() {
        let d = datasets::synthetic("two_moons", 400, 5).unwrap();
        let (train_set, valid) = (examples(&d, 0..300), examples(&d, 300..400));
        let objective = Objective::Classification { classes: 2 };
        let run = |seed, act: &mut dyn Activation| {
            train(
                &config(&[16, 16], 2),
                objective,
                &train_set,
                &valid,
                seed,
                act,
                None,
            )
            .unwrap()
        };
        let a = run(7, &mut NativeActivation::Relu);
        let b = run(7, &mut NativeActivation::Relu);
        assert_eq!(a.val_loss.to_bits(), b.val_loss.to_bits());
        assert_eq!(a.train_loss.to_bits(), b.train_loss.to_bits());
        let c = run(8, &mut NativeActivation::Relu);
        assert_ne!(a.val_loss.to_bits(), c.val_loss.to_bits());
        assert_eq!(a.steps, 2 * 300usize.div_ceil(64) as u64);
    }

    #[test]
    fn relu_beats_identity_on_a_non_linear_task() {
        let d = datasets::synthetic("circles", 1000, 1).unwrap();
        let (train_set, valid) = (examples(&d, 0..800), examples(&d, 800..1000));
        let objective = Objective::Classification { classes: 2 };
        let run = |act: &mut dyn Activation| {
            train(
                &config(&[32, 32], 30),
                objective,
                &train_set,
                &valid,
                3,
                act,
                None,
            )
            .unwrap()
        };
        let relu = run(&mut NativeActivation::Relu);
        let identity = run(&mut NativeActivation::Identity);
        assert!(relu.val_accuracy.unwrap() > 0.9, "{relu:?}");
        assert!(identity.val_accuracy.unwrap() < 0.7, "{identity:?}");
        assert!(relu.val_loss < identity.val_loss);
    }

    #[test]
    fn regression_learns_friedman() {
        let d = datasets::synthetic("friedman", 1200, 2).unwrap();
        let (train_set, valid) = (examples(&d, 0..1000), examples(&d, 1000..1200));
        let cfg = TrainConfig {
            epochs: 40,
            optimizer: Optimizer::Adam(AdamConfig {
                lr: 1e-2,
                ..AdamConfig::default()
            }),
            ..config(&[32, 32], 40)
        };
        let r = train(
            &cfg,
            Objective::Regression,
            &train_set,
            &valid,
            1,
            &mut NativeActivation::Relu,
            None,
        )
        .unwrap();
        // Friedman #1 targets have variance about 24; a fitted net explains most of it.
        assert!(r.val_loss < 8.0, "{r:?}");
        assert_eq!(r.val_accuracy, None);
    }

    #[test]
    fn min_steps_repeats_passes_over_tiny_data() {
        let d = datasets::embedded("iris").unwrap();
        let (train_set, valid) = (examples(&d, 0..120), examples(&d, 120..150));
        let cfg = TrainConfig {
            min_steps: 50,
            ..config(&[8], 1)
        };
        let objective = Objective::Classification { classes: 3 };
        let r = train(
            &cfg,
            objective,
            &train_set,
            &valid,
            1,
            &mut NativeActivation::Relu,
            None,
        )
        .unwrap();
        // 2 steps per pass: 25 passes.
        assert_eq!(r.steps, 50);
    }

    struct Failing;
    impl Activation for Failing {
        fn forward(&mut self, _x: &[f32], _y: &mut [f32]) -> Result<(), RunFailure> {
            Err(RunFailure {
                class: ErrorClass::OutOfFuel,
                message: "spun".into(),
            })
        }
        fn derivative(&mut self, _x: &[f32], _dy: &mut [f32]) -> Result<(), RunFailure> {
            Ok(())
        }
    }

    struct NanPenalty;
    impl Regularizer for NanPenalty {
        fn penalty(&mut self, _w: &[f32], _r: usize, _c: usize) -> Result<f32, RunFailure> {
            Ok(f32::NAN)
        }
        fn gradient(
            &mut self,
            _w: &[f32],
            _r: usize,
            _c: usize,
            g: &mut [f32],
        ) -> Result<(), RunFailure> {
            g.fill(0.0);
            Ok(())
        }
    }

    #[test]
    fn component_failures_end_the_run_with_their_class() {
        let d = datasets::synthetic("xor", 200, 1).unwrap();
        let (train_set, valid) = (examples(&d, 0..150), examples(&d, 150..200));
        let objective = Objective::Classification { classes: 2 };
        let err = train(
            &config(&[4], 1),
            objective,
            &train_set,
            &valid,
            1,
            &mut Failing,
            None,
        )
        .unwrap_err();
        assert_eq!(err.class, ErrorClass::OutOfFuel);
        let err = train(
            &config(&[4], 1),
            objective,
            &train_set,
            &valid,
            1,
            &mut NativeActivation::Relu,
            Some(&mut NanPenalty),
        )
        .unwrap_err();
        assert_eq!(err.class, ErrorClass::InvalidBehaviour);
        assert!(err.message.contains("step 1"), "{}", err.message);
    }
}
