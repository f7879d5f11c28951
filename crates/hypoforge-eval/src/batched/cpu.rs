//! The batched loop's reference backend: every operation, lane by lane, through the kernels of
//! one-at-a-time training, in the same order, so that a batch reproduces `model::train`.

use crate::kernels::{self, AdamState, Operand};
use crate::model::{Activation, NativeActivation, Objective, Optimizer};

use super::table::{FLAT_LEN, TableActivation};
use super::{Backend, BatchDevice, LaneTotals, Prepared};

/// The CPU as a [`BatchDevice`]: slow, exact, and what the other backends are held to.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuDevice;

impl BatchDevice for CpuDevice {
    fn name(&self) -> String {
        "cpu (batched reference)".into()
    }
    fn backend(&self) -> Result<Box<dyn Backend + '_>, String> {
        Ok(Box::new(CpuBackend::default()))
    }
}

/// One lane's working memory.
#[derive(Debug, Default)]
struct LaneState {
    x: Vec<f32>,
    labels: Vec<u32>,
    values: Vec<f32>,
    z: Vec<Vec<f32>>,
    a: Vec<Vec<f32>>,
    slope: Vec<Vec<f32>>,
    dz: Vec<Vec<f32>>,
    scratch: Vec<Vec<f32>>,
    grads: Vec<f32>,
    adam: Option<AdamState>,
    /// The last training step's loss, for the check in `update`.
    step_loss: f64,
    totals: LaneTotals,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct CpuBackend {
    p: Option<Prepared>,
    slots: Vec<super::Slot>,
    params: Vec<f32>,
    lanes: Vec<LaneState>,
    penalty: Vec<f64>,
    reg_grad: Vec<f32>,
}

impl CpuBackend {
    fn prepared(&self) -> Result<&Prepared, String> {
        self.p
            .as_ref()
            .ok_or_else(|| "the backend was used before `prepare`".to_owned())
    }
}

impl Backend for CpuBackend {
    fn prepare(&mut self, p: &Prepared, slots: &[super::Slot]) -> Result<(), String> {
        self.slots = slots.to_vec();
        self.params = p.params.clone();
        let per_layer = |f: &dyn Fn(&super::LayerLayout) -> usize| -> Vec<Vec<f32>> {
            p.layers.iter().map(|l| vec![0.0; p.batch * f(l)]).collect()
        };
        self.lanes = (0..p.lanes)
            .map(|_| LaneState {
                x: Vec::with_capacity(p.batch * p.inputs()),
                z: per_layer(&|l| l.fan_out),
                a: per_layer(&|l| l.fan_out),
                slope: per_layer(&|l| l.fan_out),
                dz: per_layer(&|l| l.fan_out),
                scratch: per_layer(&|l| l.fan_out.max(l.fan_in)),
                grads: vec![0.0; p.params_per_lane],
                adam: p.adam().map(|_| AdamState::new(p.params_per_lane)),
                ..LaneState::default()
            })
            .collect();
        self.penalty = vec![0.0; p.lanes];
        self.reg_grad = vec![
            0.0;
            if p.regularized {
                p.lanes * p.params_per_lane
            } else {
                0
            }
        ];
        self.p = Some(p.clone());
        Ok(())
    }

    fn gather_train(&mut self, step: usize, rows: usize) -> Result<(), String> {
        let p = self
            .p
            .as_ref()
            .ok_or("the backend was used before `prepare`")?;
        let (inputs, steps) = (p.inputs(), p.steps());
        for (lane, s) in self.lanes.iter_mut().enumerate() {
            let slot = p.slot_of_lane[lane] as usize;
            let start = (lane * steps + step) * p.batch;
            let index = &p.order[start..start + rows];
            let base = slot * p.train_rows;
            let features = &self.slots[slot].train.features;
            s.x.clear();
            s.labels.clear();
            s.values.clear();
            for &r in index {
                let row = r as usize;
                s.x.extend_from_slice(&features[row * inputs..(row + 1) * inputs]);
                let r = base + row;
                if let Some(&l) = p.train_labels.get(r) {
                    s.labels.push(l);
                }
                if let Some(&v) = p.train_values.get(r) {
                    s.values.push(v);
                }
            }
        }
        Ok(())
    }

    fn gather_valid(&mut self, start: usize, rows: usize) -> Result<(), String> {
        let p = self
            .p
            .as_ref()
            .ok_or("the backend was used before `prepare`")?;
        let inputs = p.inputs();
        for (lane, s) in self.lanes.iter_mut().enumerate() {
            let slot = p.slot_of_lane[lane] as usize;
            let first = slot * p.valid_rows + start;
            let range = first..first + rows;
            s.x.clear();
            s.x.extend_from_slice(
                &self.slots[slot].valid.features[start * inputs..(start + rows) * inputs],
            );
            s.labels.clear();
            s.values.clear();
            if !p.valid_labels.is_empty() {
                s.labels.extend_from_slice(&p.valid_labels[range.clone()]);
            }
            if !p.valid_values.is_empty() {
                s.values.extend_from_slice(&p.valid_values[range]);
            }
        }
        Ok(())
    }

    fn forward(&mut self, layer: usize, rows: usize, slopes: bool) -> Result<(), String> {
        let p = self
            .p
            .as_ref()
            .ok_or("the backend was used before `prepare`")?;
        let l = p.layers[layer];
        let hidden = layer + 1 < p.layers.len();
        let n = rows * l.fan_out;
        for (lane, s) in self.lanes.iter_mut().enumerate() {
            let params = &self.params[lane * p.params_per_lane..(lane + 1) * p.params_per_lane];
            let (before, after) = s.a.split_at_mut(layer);
            let input: &[f32] = if layer == 0 {
                &s.x
            } else {
                &before[layer - 1][..rows * l.fan_in]
            };
            let z = &mut s.z[layer][..n];
            kernels::matmul(
                Operand::new(input, rows, l.fan_in),
                Operand::new(&params[l.w..l.b], l.fan_out, l.fan_in).t(),
                0.0,
                z,
            );
            kernels::add_bias(z, &params[l.b..l.b + l.fan_out]);
            if hidden {
                let mut act: Box<dyn Activation + '_> = match p.table_of_lane[lane] {
                    t if t < 0 => Box::new(NativeActivation::Relu),
                    t => {
                        let t = t as usize;
                        Box::new(TableActivation(&p.tables[t * FLAT_LEN..(t + 1) * FLAT_LEN]))
                    }
                };
                let out = &mut after[0][..n];
                let result = if slopes {
                    act.forward_with_derivative(z, out, &mut s.slope[layer][..n])
                } else {
                    act.forward(z, out)
                };
                result.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    fn loss(&mut self, rows: usize, step: Option<u64>) -> Result<(), String> {
        let p = self
            .p
            .as_ref()
            .ok_or("the backend was used before `prepare`")?;
        let last = p.layers.len() - 1;
        let outputs = p.outputs();
        for s in &mut self.lanes {
            let logits = &s.z[last][..rows * outputs];
            let grad = step.is_some().then_some(&mut s.dz[last][..rows * outputs]);
            let (loss, correct) = match p.objective {
                Objective::Classification { classes } => {
                    kernels::softmax_cross_entropy(logits, &s.labels, classes, grad)
                }
                Objective::Regression => (kernels::mean_squared_error(logits, &s.values, grad), 0),
            };
            match step {
                Some(_) => s.step_loss = loss,
                None => {
                    s.totals.valid_loss += loss * rows as f64;
                    s.totals.correct += correct as u64;
                }
            }
        }
        Ok(())
    }

    fn backward(&mut self, layer: usize, rows: usize) -> Result<(), String> {
        let p = self
            .p
            .as_ref()
            .ok_or("the backend was used before `prepare`")?;
        let l = p.layers[layer];
        let n = rows * l.fan_out;
        for (lane, s) in self.lanes.iter_mut().enumerate() {
            let params = &self.params[lane * p.params_per_lane..(lane + 1) * p.params_per_lane];
            let input: &[f32] = if layer == 0 {
                &s.x
            } else {
                &s.a[layer - 1][..rows * l.fan_in]
            };
            let (dw, db) = s.grads[l.w..l.b + l.fan_out].split_at_mut(l.b - l.w);
            kernels::matmul(
                Operand::new(&s.dz[layer][..n], rows, l.fan_out).t(),
                Operand::new(input, rows, l.fan_in),
                0.0,
                dw,
            );
            kernels::column_sums(&s.dz[layer][..n], db);
            if layer == 0 {
                continue;
            }
            let prev = rows * l.fan_in;
            let (lower, upper) = s.dz.split_at_mut(layer);
            let da = &mut s.scratch[layer][..prev];
            kernels::matmul(
                Operand::new(&upper[0][..n], rows, l.fan_out),
                Operand::new(&params[l.w..l.b], l.fan_out, l.fan_in),
                0.0,
                da,
            );
            for ((d, g), sl) in lower[layer - 1][..prev]
                .iter_mut()
                .zip(da.iter())
                .zip(&s.slope[layer - 1])
            {
                *d = sl * g;
            }
        }
        Ok(())
    }

    fn weights(&mut self, into: &mut [f32]) -> Result<(), String> {
        into.copy_from_slice(&self.params);
        Ok(())
    }

    fn failed_steps(&mut self) -> Result<Vec<u64>, String> {
        Ok(self.lanes.iter().map(|s| s.totals.failed_step).collect())
    }

    fn set_regularization(&mut self, penalty: &[f64], grad: &[f32]) -> Result<(), String> {
        self.penalty.copy_from_slice(penalty);
        self.reg_grad.copy_from_slice(grad);
        Ok(())
    }

    fn update(&mut self, step: u64) -> Result<(), String> {
        let p = self
            .p
            .as_ref()
            .ok_or("the backend was used before `prepare`")?;
        let per_lane = p.params_per_lane;
        for (lane, s) in self.lanes.iter_mut().enumerate() {
            let loss = s.step_loss + self.penalty[lane];
            if !loss.is_finite() && s.totals.failed_step == 0 {
                s.totals.failed_step = step;
                s.totals.failed_loss = loss;
            }
            let params = &mut self.params[lane * per_lane..(lane + 1) * per_lane];
            if p.regularized {
                // Weights only, as one-at-a-time training adds the penalty's gradient.
                let reg = &self.reg_grad[lane * per_lane..(lane + 1) * per_lane];
                for l in &p.layers {
                    for (g, r) in s.grads[l.w..l.b].iter_mut().zip(&reg[l.w..l.b]) {
                        *g += r;
                    }
                }
            }
            match (p.optimizer, s.adam.as_mut()) {
                (Optimizer::Adam(c), Some(state)) => {
                    kernels::adam_step(params, &s.grads, state, &c, step);
                }
                (Optimizer::Sgd { lr }, _) => kernels::sgd_step(params, &s.grads, lr),
                (Optimizer::Adam(_), None) => return Err("Adam without its state".into()),
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<LaneTotals>, String> {
        self.prepared()?;
        Ok(self.lanes.iter().map(|s| s.totals).collect())
    }
}
