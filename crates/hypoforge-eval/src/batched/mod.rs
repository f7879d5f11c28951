//! Many trainings of one task at once, for devices that train many small models together.
//!
//! The *lanes* of a batch share the network's shape and the step count; they differ in their
//! data (a seed's split, preprocessed), initialization, batch order and component. The training
//! loop is written once, over [`Backend`], whose every operation serves all lanes at once (one
//! kernel launch on a GPU). [`CpuBackend`] is its reference: each operation runs lane by lane
//! through the very kernels of [`crate::model::train`], so a batch on it gives the same bits as
//! one-at-a-time training wherever the activation is native (the preprocessor and regularizer
//! kinds), and the activation table's interpolation is the only difference otherwise.
//!
//! What a device cannot run stays on the CPU: preprocessors are fitted and applied before a
//! batch starts, regularizer plugins are called on the host at every step (the device hands over
//! the weights and takes the penalty and its gradient), and activation plugins become
//! [`table::ActivationTable`]s, which are trusted only within [`table::TOLERANCE`].

mod cpu;
pub mod table;

pub use cpu::{CpuBackend, CpuDevice};

use std::sync::Arc;

use hypoforge_spec::ErrorClass;
use rayon::prelude::*;

use crate::kernels::AdamConfig;
use crate::model::{
    Examples, Mlp, Objective, Optimizer, Regularizer, RunFailure, Targets, TrainConfig, stream,
};
use table::ActivationTable;

/// One data set as its lanes see it: a seed's split, already preprocessed.
#[derive(Clone, Debug)]
pub struct Slot {
    pub train: Examples,
    pub valid: Examples,
}

/// The activation of a lane's hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneActivation {
    /// The host's ReLU: the slot's reference form when another kind is under test.
    Relu,
    /// The batch's table with this index.
    Table(usize),
}

/// One training run of a batch.
pub struct Lane {
    /// Index of its data in [`Batch::slots`].
    pub slot: usize,
    /// Its trial's seed: initialization and batch order.
    pub seed: u64,
    pub activation: LaneActivation,
    /// Called on the host at every step.
    pub regularizer: Option<Box<dyn Regularizer + Send>>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("slot", &self.slot)
            .field("seed", &self.seed)
            .field("activation", &self.activation)
            .field("regularizer", &self.regularizer.is_some())
            .finish()
    }
}

/// Everything a batch trains: lanes over shared slots and tables.
#[derive(Debug)]
pub struct Batch<'a> {
    pub config: &'a TrainConfig,
    pub objective: Objective,
    pub slots: Vec<Slot>,
    /// Shared with whatever else holds them (an evaluation builds each once).
    pub tables: Vec<Arc<ActivationTable>>,
    pub lanes: Vec<Lane>,
}

/// Why a batch could not be trained at all (its lanes' own failures are per lane).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the lanes of a batch must share their data's shape: {0}")]
    Shape(String),
    /// The device failed (out of memory, a launch error): no lane's result can be trusted.
    #[error("the {device} device failed: {message}")]
    Device { device: String, message: String },
}

/// One layer's place in a lane's parameters, which are laid out `[W0, b0, W1, b1, ...]` with
/// `W` row-major `fan_out × fan_in` as in PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerLayout {
    pub fan_in: usize,
    pub fan_out: usize,
    pub w: usize,
    pub b: usize,
}

/// The shape shared by every lane, and the host data a backend uploads once.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub lanes: usize,
    pub layers: Vec<LayerLayout>,
    /// Parameters per lane.
    pub params_per_lane: usize,
    pub objective: Objective,
    pub optimizer: Optimizer,
    /// The batch size; the last step of a pass may have fewer rows.
    pub batch: usize,
    pub train_rows: usize,
    pub valid_rows: usize,
    /// Rows of each step, in order.
    pub step_rows: Vec<usize>,
    pub slot_of_lane: Vec<u32>,
    /// Class labels (classification) or target values (regression), `slots × rows`.
    pub train_labels: Vec<u32>,
    pub train_values: Vec<f32>,
    pub valid_labels: Vec<u32>,
    pub valid_values: Vec<f32>,
    /// Training row indices of every step, `lanes × steps × batch` (short steps padded with 0).
    pub order: Vec<u32>,
    /// Initial parameters, `lanes × params_per_lane`.
    pub params: Vec<f32>,
    /// Flat tables (`tables × table::FLAT_LEN`) and each lane's table (`-1`: ReLU).
    pub tables: Vec<f32>,
    pub table_of_lane: Vec<i32>,
    /// Whether any lane has a regularizer (its penalty and gradient arrive every step).
    pub regularized: bool,
}

impl Prepared {
    pub fn inputs(&self) -> usize {
        self.layers[0].fan_in
    }
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].fan_out
    }
    pub fn steps(&self) -> usize {
        self.step_rows.len()
    }
    /// The shape alone: every per-lane and per-row buffer left empty, for a backend that keeps
    /// the data elsewhere.
    pub fn shape(&self) -> Prepared {
        Prepared {
            lanes: self.lanes,
            layers: self.layers.clone(),
            params_per_lane: self.params_per_lane,
            objective: self.objective,
            optimizer: self.optimizer,
            batch: self.batch,
            train_rows: self.train_rows,
            valid_rows: self.valid_rows,
            step_rows: self.step_rows.clone(),
            slot_of_lane: Vec::new(),
            train_labels: Vec::new(),
            train_values: Vec::new(),
            valid_labels: Vec::new(),
            valid_values: Vec::new(),
            order: Vec::new(),
            params: Vec::new(),
            tables: Vec::new(),
            table_of_lane: Vec::new(),
            regularized: self.regularized,
        }
    }

    pub fn adam(&self) -> Option<AdamConfig> {
        match self.optimizer {
            Optimizer::Adam(c) => Some(c),
            Optimizer::Sgd { .. } => None,
        }
    }
}

/// What a backend reports of each lane at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LaneTotals {
    /// Sum over validation rows of the loss.
    pub valid_loss: f64,
    pub correct: u64,
    /// The first training step whose loss (with the penalty) was not finite; 0 for none.
    pub failed_step: u64,
    pub failed_loss: f64,
}

/// A device's side of the batched loop. Every call serves all lanes; a backend may queue work
/// and only wait for it when a result is read ([`Backend::weights`], [`Backend::failed_steps`],
/// [`Backend::finish`]). Errors are the device's own (out of memory, a failed launch).
pub trait Backend {
    /// Allocate and upload everything of `prepared`, and the features of `slots`.
    fn prepare(&mut self, prepared: &Prepared, slots: &[Slot]) -> Result<(), String>;
    /// The network input of step `step`: its rows of every lane's training data.
    fn gather_train(&mut self, step: usize, rows: usize) -> Result<(), String>;
    /// The network input of validation rows `start..start + rows`.
    fn gather_valid(&mut self, start: usize, rows: usize) -> Result<(), String>;
    /// Layer `layer`'s output; for a hidden layer also its activation, and with `slopes` f′.
    fn forward(&mut self, layer: usize, rows: usize, slopes: bool) -> Result<(), String>;
    /// With `Some(step)`: the training loss of that (1-based) step, kept for
    /// [`Backend::update`]'s check, and its gradient with respect to the outputs. With `None`:
    /// the validation loss and correct count of the rows just gathered, accumulated.
    fn loss(&mut self, rows: usize, step: Option<u64>) -> Result<(), String>;
    /// Gradients of layer `layer`'s parameters, and of the layer below's pre-activation.
    fn backward(&mut self, layer: usize, rows: usize) -> Result<(), String>;
    /// Every lane's current parameters into `into` (`lanes × params_per_lane`).
    fn weights(&mut self, into: &mut [f32]) -> Result<(), String>;
    /// Each lane's training failure step so far (0 for none).
    fn failed_steps(&mut self) -> Result<Vec<u64>, String>;
    /// This step's penalty per lane and its gradient (`lanes × params_per_lane`, zero on
    /// biases), added to the loss and to the parameters' gradient.
    fn set_regularization(&mut self, penalty: &[f64], grad: &[f32]) -> Result<(), String>;
    /// The finiteness check of step `step`'s loss plus its penalty (recording the first step
    /// that fails), then one optimizer step.
    fn update(&mut self, step: u64) -> Result<(), String>;
    /// The per-lane totals after validation.
    fn finish(&mut self) -> Result<Vec<LaneTotals>, String>;
}

/// Something that makes backends: a device, opened once and shared by an evaluation.
pub trait BatchDevice: Sync + std::fmt::Debug {
    /// A human name, for messages ("cuda:0 (NVIDIA H200)").
    fn name(&self) -> String;
    fn backend(&self) -> Result<Box<dyn Backend + '_>, String>;
}

/// How a lane ended.
pub type LaneResult = Result<(f64, Option<f64>), RunFailure>;

fn check_shape(batch: &Batch<'_>) -> Result<(usize, usize, usize), BatchError> {
    let first = batch
        .slots
        .first()
        .ok_or_else(|| BatchError::Shape("a batch needs at least one slot".into()))?;
    let shape = (first.train.cols, first.train.rows, first.valid.rows);
    for (i, s) in batch.slots.iter().enumerate() {
        if (s.train.cols, s.train.rows, s.valid.rows) != shape || s.valid.cols != shape.0 {
            return Err(BatchError::Shape(format!(
                "slot {i} has {} training rows, {} validation rows and {} columns; slot 0 has {}, {} and {}",
                s.train.rows, s.valid.rows, s.train.cols, shape.1, shape.2, shape.0
            )));
        }
    }
    for (i, lane) in batch.lanes.iter().enumerate() {
        if lane.slot >= batch.slots.len() {
            return Err(BatchError::Shape(format!("lane {i} names a missing slot")));
        }
        if let LaneActivation::Table(t) = lane.activation
            && t >= batch.tables.len()
        {
            return Err(BatchError::Shape(format!("lane {i} names a missing table")));
        }
    }
    if shape.1 == 0 || shape.2 == 0 {
        return Err(BatchError::Shape("a split without rows".into()));
    }
    Ok(shape)
}

fn targets(set: &Examples, labels: &mut Vec<u32>, values: &mut Vec<f32>) {
    match &set.targets {
        Targets::Labels(l) => labels.extend_from_slice(l),
        Targets::Values(v) => values.extend_from_slice(v),
    }
}

/// The host side of a batch: shapes, data, initial parameters and every step's rows, exactly
/// as [`crate::model::train`] draws them from each lane's seed.
pub fn prepare(batch: &Batch<'_>) -> Result<Prepared, BatchError> {
    let (inputs, train_rows, valid_rows) = check_shape(batch)?;
    let config = batch.config;
    let outputs = batch.objective.outputs();
    let size = config.batch.max(1);

    let steps_per_epoch = train_rows.div_ceil(size);
    let epochs = (config.epochs as u64)
        .max((config.min_steps as u64).div_ceil(steps_per_epoch as u64))
        .max(1) as usize;
    let step_rows: Vec<usize> = (0..epochs)
        .flat_map(|_| (0..steps_per_epoch).map(|k| size.min(train_rows - k * size)))
        .collect();

    // Each lane's initial parameters and batch order, drawn from its seed (in parallel: a
    // large network takes a while to draw).
    let epochs_rows = step_rows.len() * size;
    let seeds: Vec<u64> = batch.lanes.iter().map(|l| l.seed).collect();
    let drawn: Vec<(Mlp, Vec<u32>)> = seeds
        .par_iter()
        .map(|&seed| {
            let model = Mlp::new(inputs, &config.hidden, outputs, &mut stream(seed, 1));
            let mut rng = stream(seed, 2);
            let mut rows: Vec<usize> = (0..train_rows).collect();
            let mut order = Vec::with_capacity(epochs_rows);
            for _ in 0..epochs {
                rng.shuffle(&mut rows);
                for chunk in rows.chunks(size) {
                    order.extend(chunk.iter().map(|&r| r as u32));
                    order.extend(std::iter::repeat_n(0, size - chunk.len()));
                }
            }
            (model, order)
        })
        .collect();
    let mut layers = Vec::new();
    if let Some((model, _)) = drawn.first() {
        let mut offset = 0;
        for l in &model.layers {
            layers.push(LayerLayout {
                fan_in: l.fan_in,
                fan_out: l.fan_out,
                w: offset,
                b: offset + l.w.len(),
            });
            offset += l.w.len() + l.b.len();
        }
    }
    let mut params = Vec::new();
    let mut order = Vec::with_capacity(batch.lanes.len() * epochs_rows);
    for (model, lane_order) in drawn {
        for l in &model.layers {
            params.extend_from_slice(&l.w);
            params.extend_from_slice(&l.b);
        }
        order.extend_from_slice(&lane_order);
    }
    let params_per_lane = layers.last().map_or(0, |l| l.b + l.fan_out);

    let mut p = Prepared {
        lanes: batch.lanes.len(),
        layers,
        params_per_lane,
        objective: batch.objective,
        optimizer: config.optimizer,
        batch: size,
        train_rows,
        valid_rows,
        step_rows,
        slot_of_lane: batch.lanes.iter().map(|l| l.slot as u32).collect(),
        train_labels: Vec::new(),
        train_values: Vec::new(),
        valid_labels: Vec::new(),
        valid_values: Vec::new(),
        order,
        params,
        tables: batch
            .tables
            .iter()
            .flat_map(|t| t.flat().iter().copied())
            .collect(),
        table_of_lane: batch
            .lanes
            .iter()
            .map(|l| match l.activation {
                LaneActivation::Relu => -1,
                LaneActivation::Table(t) => t as i32,
            })
            .collect(),
        regularized: batch.lanes.iter().any(|l| l.regularizer.is_some()),
    };
    for s in &batch.slots {
        targets(&s.train, &mut p.train_labels, &mut p.train_values);
        targets(&s.valid, &mut p.valid_labels, &mut p.valid_values);
    }
    let expected = match batch.objective {
        Objective::Classification { .. } => (p.train_labels.len(), p.valid_labels.len()),
        Objective::Regression => (p.train_values.len(), p.valid_values.len()),
    };
    if expected
        != (
            batch.slots.len() * train_rows,
            batch.slots.len() * valid_rows,
        )
    {
        return Err(BatchError::Shape(
            "the targets do not match the objective".into(),
        ));
    }
    Ok(p)
}

/// Where the wall time of [`train_timed`] went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Laying out the lanes on the host ([`prepare`]).
    pub host: std::time::Duration,
    /// The backend's allocations and uploads.
    pub upload: std::time::Duration,
    /// Every training step, finished.
    pub train: std::time::Duration,
    /// The validation passes and the read-back.
    pub validate: std::time::Duration,
}

/// Train every lane of `batch` on `backend`; one result per lane, in order.
pub fn train(
    batch: &mut Batch<'_>,
    backend: &mut dyn Backend,
    device: &str,
) -> Result<Vec<LaneResult>, BatchError> {
    train_timed(batch, backend, device).map(|(results, _)| results)
}

/// [`train`], also saying where the time went.
pub fn train_timed(
    batch: &mut Batch<'_>,
    backend: &mut dyn Backend,
    device: &str,
) -> Result<(Vec<LaneResult>, Timings), BatchError> {
    let mut timings = Timings::default();
    let mut clock = std::time::Instant::now();
    let mut lap = |into: &mut std::time::Duration| {
        let now = std::time::Instant::now();
        *into = now - clock;
        clock = now;
    };
    let prepared = prepare(batch)?;
    lap(&mut timings.host);
    let device_error = |message: String| BatchError::Device {
        device: device.to_owned(),
        message,
    };
    backend
        .prepare(&prepared, &batch.slots)
        .map_err(device_error)?;
    lap(&mut timings.upload);
    let lanes = prepared.lanes;
    let mut failures: Vec<Option<RunFailure>> = vec![None; lanes];
    let layers = prepared.layers.len();
    let mut penalty = vec![0.0f64; lanes];
    let mut reg_grad = vec![
        0.0f32;
        if prepared.regularized {
            lanes * prepared.params_per_lane
        } else {
            0
        }
    ];
    // A regularized batch's weights as the host last read them, and which lanes had failed by
    // then: step k's regularizers run on the weights before update k, on the host, while the
    // device computes that step's forward and backward passes.
    let mut host_weights = if prepared.regularized {
        prepared.params.clone()
    } else {
        Vec::new()
    };
    let mut failed = vec![0u64; lanes];
    for (step, &rows) in prepared.step_rows.iter().enumerate() {
        let step = step as u64 + 1;
        backend
            .gather_train(step as usize - 1, rows)
            .map_err(device_error)?;
        for l in 0..layers {
            backend.forward(l, rows, true).map_err(device_error)?;
        }
        backend.loss(rows, Some(step)).map_err(device_error)?;
        for l in (0..layers).rev() {
            backend.backward(l, rows).map_err(device_error)?;
        }
        if prepared.regularized {
            regularize(
                batch,
                &prepared,
                &host_weights,
                &failed,
                &mut failures,
                &mut penalty,
                &mut reg_grad,
            );
            backend
                .set_regularization(&penalty, &reg_grad)
                .map_err(device_error)?;
        }
        backend.update(step).map_err(device_error)?;
        if prepared.regularized {
            backend.weights(&mut host_weights).map_err(device_error)?;
            failed = backend.failed_steps().map_err(device_error)?;
        }
    }
    // A read waits for the queued steps, so the training time is the device's.
    backend.failed_steps().map_err(device_error)?;
    lap(&mut timings.train);
    for start in (0..prepared.valid_rows).step_by(prepared.batch) {
        let rows = prepared.batch.min(prepared.valid_rows - start);
        backend.gather_valid(start, rows).map_err(device_error)?;
        for l in 0..layers {
            backend.forward(l, rows, false).map_err(device_error)?;
        }
        backend.loss(rows, None).map_err(device_error)?;
    }
    let totals = backend.finish().map_err(device_error)?;
    lap(&mut timings.validate);
    let classification = matches!(prepared.objective, Objective::Classification { .. });
    let results = totals
        .into_iter()
        .zip(failures)
        .map(|(t, failure)| {
            if let Some(f) = failure {
                return Err(f);
            }
            if t.failed_step > 0 {
                return Err(RunFailure {
                    class: ErrorClass::InvalidBehaviour,
                    message: format!(
                        "the training loss became {} at step {}",
                        t.failed_loss, t.failed_step
                    ),
                });
            }
            let val_loss = t.valid_loss / prepared.valid_rows as f64;
            if !val_loss.is_finite() {
                return Err(RunFailure {
                    class: ErrorClass::InvalidBehaviour,
                    message: format!("the validation loss is {val_loss}"),
                });
            }
            Ok((
                val_loss,
                classification.then(|| t.correct as f64 / prepared.valid_rows as f64),
            ))
        })
        .collect();
    Ok((results, timings))
}

/// Call every live lane's regularizer on its current weights: its penalty per lane, and its
/// gradient in the parameters' layout (zero on biases). A plugin failure ends that lane.
fn regularize(
    batch: &mut Batch<'_>,
    prepared: &Prepared,
    weights: &[f32],
    failed: &[u64],
    failures: &mut [Option<RunFailure>],
    penalty: &mut [f64],
    grad: &mut [f32],
) {
    let per_lane = prepared.params_per_lane;
    // Lanes in parallel: each regularizer is its own plugin instance, and every step waits here.
    batch
        .lanes
        .par_iter_mut()
        .zip(weights.par_chunks_exact(per_lane))
        .zip(grad.par_chunks_exact_mut(per_lane))
        .zip(penalty.par_iter_mut())
        .zip(failures.par_iter_mut())
        .zip(failed.par_iter())
        .for_each(|(((((l, w), g), p), failure), &failed)| {
            *p = 0.0;
            g.fill(0.0);
            if let Some(reg) = l.regularizer.as_deref_mut()
                && failure.is_none()
                && failed == 0
            {
                regularize_lane(reg, prepared, w, g, p, failure);
            }
        });
}

/// One lane's penalty and gradient, layer by layer as one-at-a-time training asks for them.
fn regularize_lane(
    reg: &mut (dyn Regularizer + Send),
    prepared: &Prepared,
    w: &[f32],
    g: &mut [f32],
    p: &mut f64,
    failure: &mut Option<RunFailure>,
) {
    for layer in &prepared.layers {
        let n = layer.fan_in * layer.fan_out;
        let w = &w[layer.w..layer.w + n];
        let result = reg
            .penalty(w, layer.fan_out, layer.fan_in)
            .and_then(|value| {
                reg.gradient(w, layer.fan_out, layer.fan_in, &mut g[layer.w..layer.w + n])
                    .map(|()| value)
            });
        match result {
            Ok(value) => *p += f64::from(value),
            Err(e) => {
                *failure = Some(e);
                *p = 0.0;
                g.fill(0.0);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{self, Dataset};
    use crate::model::{self, Activation, NativeActivation};
    use crate::prepare;

    fn slot(d: &Dataset, seed: u64) -> Slot {
        let (mut train, mut valid) = prepare::split(d, 0.2, seed);
        prepare::standardize(&mut train, &mut valid);
        Slot { train, valid }
    }

    fn config(optimizer: Optimizer) -> TrainConfig {
        TrainConfig {
            hidden: vec![16, 12],
            batch: 32,
            epochs: 1,
            min_steps: 40,
            optimizer,
        }
    }

    fn reference(
        config: &TrainConfig,
        objective: Objective,
        s: &Slot,
        seed: u64,
        act: &mut dyn Activation,
        reg: Option<&mut dyn Regularizer>,
    ) -> LaneResult {
        model::train(config, objective, &s.train, &s.valid, seed, act, reg)
            .map(|r| (r.val_loss, r.val_accuracy))
    }

    fn lane(slot: usize, seed: u64, activation: LaneActivation) -> Lane {
        Lane {
            slot,
            seed,
            activation,
            regularizer: None,
        }
    }

    fn bits(r: &LaneResult) -> (u64, Option<u64>) {
        let (loss, acc) = r.as_ref().expect("the lane trained");
        (loss.to_bits(), acc.map(f64::to_bits))
    }

    #[test]
    fn a_cpu_batch_reproduces_one_at_a_time_training_bit_for_bit() {
        let d = datasets::synthetic("two_moons", 300, 1).unwrap();
        let cfg = config(Optimizer::Adam(AdamConfig::default()));
        let objective = Objective::Classification { classes: 2 };
        let slots = vec![slot(&d, 5), slot(&d, 6)];
        // Lanes in an order unlike their slots', two sharing a slot, one seed on two slots.
        let lanes = vec![
            lane(1, 6, LaneActivation::Relu),
            lane(0, 5, LaneActivation::Relu),
            lane(0, 5, LaneActivation::Relu),
            lane(1, 5, LaneActivation::Relu),
        ];
        let expected: Vec<LaneResult> = lanes
            .iter()
            .map(|l| {
                reference(
                    &cfg,
                    objective,
                    &slots[l.slot],
                    l.seed,
                    &mut NativeActivation::Relu,
                    None,
                )
            })
            .collect();
        let mut batch = Batch {
            config: &cfg,
            objective,
            slots,
            tables: Vec::new(),
            lanes,
        };
        let got = train(&mut batch, &mut CpuBackend::default(), "cpu").unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(bits(g), bits(e));
        }
        assert_eq!(bits(&got[1]), bits(&got[2]));
        assert_ne!(bits(&got[0]), bits(&got[3]));
    }

    #[test]
    fn regression_and_sgd_reproduce_too() {
        let d = datasets::synthetic("friedman", 300, 2).unwrap();
        let cfg = config(Optimizer::Sgd { lr: 0.01 });
        let slots = vec![slot(&d, 1), slot(&d, 2)];
        let lanes = vec![
            lane(0, 1, LaneActivation::Relu),
            lane(1, 2, LaneActivation::Relu),
        ];
        let expected: Vec<LaneResult> = lanes
            .iter()
            .map(|l| {
                reference(
                    &cfg,
                    Objective::Regression,
                    &slots[l.slot],
                    l.seed,
                    &mut NativeActivation::Relu,
                    None,
                )
            })
            .collect();
        let mut batch = Batch {
            config: &cfg,
            objective: Objective::Regression,
            slots,
            tables: Vec::new(),
            lanes,
        };
        let got = train(&mut batch, &mut CpuBackend::default(), "cpu").unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(bits(g), bits(e));
            assert_eq!(g.as_ref().unwrap().1, None);
        }
    }

    #[test]
    fn table_lanes_follow_the_native_function_within_interpolation_error() {
        let d = datasets::synthetic("circles", 400, 3).unwrap();
        let cfg = config(Optimizer::Adam(AdamConfig::default()));
        let objective = Objective::Classification { classes: 2 };
        let table = ActivationTable::sample(&mut NativeActivation::Tanh).unwrap();
        let relu_table = ActivationTable::sample(&mut NativeActivation::Relu).unwrap();
        let slots = vec![slot(&d, 8)];
        let mut batch = Batch {
            config: &cfg,
            objective,
            slots: slots.clone(),
            tables: vec![Arc::new(table), Arc::new(relu_table)],
            lanes: vec![
                lane(0, 8, LaneActivation::Table(0)),
                lane(0, 8, LaneActivation::Table(1)),
            ],
        };
        let got = train(&mut batch, &mut CpuBackend::default(), "cpu").unwrap();
        let tanh = reference(
            &cfg,
            objective,
            &slots[0],
            8,
            &mut NativeActivation::Tanh,
            None,
        )
        .unwrap();
        let relu = reference(
            &cfg,
            objective,
            &slots[0],
            8,
            &mut NativeActivation::Relu,
            None,
        )
        .unwrap();
        for (g, e) in got.iter().zip([tanh, relu]) {
            let g = g.as_ref().unwrap();
            assert!((g.0 - e.0).abs() < 1e-5 * (1.0 + e.0), "{g:?} vs {e:?}");
            assert_eq!(g.1, e.1);
        }
    }

    /// 0.01 · Σw², and a penalty that turns NaN at a given call.
    struct L2 {
        calls: usize,
        nan_at: Option<usize>,
    }
    impl Regularizer for L2 {
        fn penalty(&mut self, w: &[f32], _: usize, _: usize) -> Result<f32, RunFailure> {
            self.calls += 1;
            if Some(self.calls) == self.nan_at {
                return Ok(f32::NAN);
            }
            Ok(0.01 * w.iter().map(|v| v * v).sum::<f32>())
        }
        fn gradient(
            &mut self,
            w: &[f32],
            _: usize,
            _: usize,
            g: &mut [f32],
        ) -> Result<(), RunFailure> {
            for (g, w) in g.iter_mut().zip(w) {
                *g = 0.02 * w;
            }
            Ok(())
        }
    }

    #[test]
    fn regularized_lanes_reproduce_and_fail_where_one_at_a_time_training_fails() {
        let d = datasets::synthetic("xor", 300, 4).unwrap();
        let cfg = config(Optimizer::Adam(AdamConfig::default()));
        let objective = Objective::Classification { classes: 2 };
        let slots = vec![slot(&d, 2)];
        let l2 = |nan_at| L2 { calls: 0, nan_at };
        let expected = reference(
            &cfg,
            objective,
            &slots[0],
            2,
            &mut NativeActivation::Relu,
            Some(&mut l2(None)),
        );
        let broken = reference(
            &cfg,
            objective,
            &slots[0],
            2,
            &mut NativeActivation::Relu,
            Some(&mut l2(Some(7))),
        );
        let plain = reference(
            &cfg,
            objective,
            &slots[0],
            2,
            &mut NativeActivation::Relu,
            None,
        );
        let mut batch = Batch {
            config: &cfg,
            objective,
            slots,
            tables: Vec::new(),
            lanes: vec![
                Lane {
                    regularizer: Some(Box::new(l2(None))),
                    ..lane(0, 2, LaneActivation::Relu)
                },
                Lane {
                    regularizer: Some(Box::new(l2(Some(7)))),
                    ..lane(0, 2, LaneActivation::Relu)
                },
                lane(0, 2, LaneActivation::Relu),
            ],
        };
        let got = train(&mut batch, &mut CpuBackend::default(), "cpu").unwrap();
        assert_eq!(bits(&got[0]), bits(&expected));
        assert_eq!(bits(&got[2]), bits(&plain));
        assert_ne!(bits(&got[0]), bits(&plain));
        // Three layers a step: the 7th penalty is step 3's.
        let (got, want) = (got[1].as_ref().unwrap_err(), broken.unwrap_err());
        assert_eq!(got.class, want.class);
        assert!(got.message.ends_with("at step 3"), "{}", got.message);
        assert!(want.message.ends_with("at step 3"), "{}", want.message);
    }

    #[test]
    fn lanes_must_share_a_shape() {
        let iris = datasets::embedded("iris").unwrap();
        let wine = datasets::embedded("wine").unwrap();
        let cfg = config(Optimizer::Adam(AdamConfig::default()));
        let mut batch = Batch {
            config: &cfg,
            objective: Objective::Classification { classes: 3 },
            slots: vec![slot(&iris, 1), slot(&wine, 1)],
            tables: Vec::new(),
            lanes: vec![
                lane(0, 1, LaneActivation::Relu),
                lane(1, 1, LaneActivation::Relu),
            ],
        };
        let err = train(&mut batch, &mut CpuBackend::default(), "cpu").unwrap_err();
        assert!(matches!(err, BatchError::Shape(_)), "{err}");
        batch.slots.pop();
        batch.lanes[1].slot = 0;
        batch.lanes[1].activation = LaneActivation::Table(0);
        let err = train(&mut batch, &mut CpuBackend::default(), "cpu").unwrap_err();
        assert!(err.to_string().contains("missing table"), "{err}");
    }
}
