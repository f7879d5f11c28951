//! The runner's trials of one task, trained on a batch device: every (component, seed) pair of
//! the task becomes a lane of one batch. What the device cannot take goes back to the CPU path:
//! an activation whose table strays past [`table::TOLERANCE`] from the plugin (or whose
//! sampling fails) trains there, with a note saying why.

use std::collections::HashMap;
use std::sync::Arc;

use hypoforge_plugin::PluginLimits;
use hypoforge_sandbox::Sandbox;
use hypoforge_spec::ComponentKind;
use rayon::prelude::*;

use crate::batched::table::{self, ActivationTable};
use crate::batched::{self, Batch, BatchDevice, BatchError, Lane, LaneActivation, Slot};
use crate::datasets::Dataset;
use crate::metrics::RunOutcome;
use crate::model::{Regularizer, RunFailure};
use crate::prepare;
use crate::runner::Entrant;
use crate::tasks::Task;
use crate::trial::{PluginActivation, PluginRegularizer, apply_preprocessor, plugin_failure};

/// At most this many lanes train in one batch.
const MAX_LANES: usize = 512;
/// The device memory a batch's lanes may take for their own data and working buffers, which
/// bounds the lanes of a batch when each carries its own copy of the data (a preprocessor's).
const LANE_BYTES: usize = 4 << 30;

/// Lanes per batch: each lane's data (its own, or its seed's where seeds are shared, which a
/// batch holds at most once per lane too) and its per-step buffers, within [`LANE_BYTES`].
fn lanes_per_batch(task: &Task, rows: usize, width: usize, outputs: usize) -> usize {
    let widths: usize = task.train.hidden.iter().sum::<usize>() + width + outputs;
    let params: usize = task
        .train
        .hidden
        .iter()
        .chain([&outputs])
        .scan(width, |fan_in, &fan_out| {
            let n = (*fan_in + 1) * fan_out;
            *fan_in = fan_out;
            Some(n)
        })
        .sum();
    // Data; three buffers per layer and row of a step; parameters, gradients and moments.
    let per_lane = 4 * (rows * width + 3 * task.train.batch.max(1) * widths + 5 * params);
    (LANE_BYTES / per_lane.max(1)).clamp(1, MAX_LANES)
}

/// Activation tables of an evaluation, built once per component; `Err` holds why a component
/// trains on the CPU instead.
#[derive(Debug, Default)]
pub(crate) struct Tables(HashMap<usize, Result<Arc<ActivationTable>, String>>);

impl Tables {
    /// Build, in parallel, the tables of the entrants of `jobs` not seen yet; a component
    /// refused the table path gets a note.
    fn build(
        &mut self,
        jobs: &[(usize, u64)],
        entrants: &[Entrant],
        sandbox: &Sandbox,
        limits: PluginLimits,
        notes: &mut Vec<String>,
    ) {
        let mut missing: Vec<usize> = jobs
            .iter()
            .map(|j| j.0)
            .filter(|e| !self.0.contains_key(e))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let built: Vec<(usize, Result<Arc<ActivationTable>, String>)> = missing
            .par_iter()
            .map(|&e| (e, build_table(&entrants[e], sandbox, limits)))
            .collect();
        for (e, table) in built {
            if let Err(why) = &table {
                notes.push(format!(
                    "{}: {why}; its trials ran on the CPU",
                    entrants[e].name
                ));
            }
            self.0.insert(e, table);
        }
    }

    fn get(&self, e: usize) -> Option<Arc<ActivationTable>> {
        self.0.get(&e)?.as_ref().ok().cloned()
    }
}

fn build_table(
    entrant: &Entrant,
    sandbox: &Sandbox,
    limits: PluginLimits,
) -> Result<Arc<ActivationTable>, String> {
    let mut act = PluginActivation(
        entrant
            .plugin
            .activation(sandbox, limits)
            .map_err(|e| format!("cannot instantiate it for its table: {e}"))?,
    );
    let failed = |e: RunFailure| format!("sampling its table failed: {e}");
    let t = ActivationTable::sample(&mut act).map_err(failed)?;
    let deviation = t.deviation(&mut act).map_err(failed)?;
    if deviation > table::TOLERANCE {
        return Err(format!(
            "its table deviates from the plugin by {deviation:.2e} (more than {:.0e})",
            table::TOLERANCE
        ));
    }
    Ok(Arc::new(t))
}

fn failed(e: &RunFailure) -> RunOutcome {
    RunOutcome::Failed {
        cause: e.to_string(),
    }
}

/// Where a lane's data comes from.
enum Data {
    /// The default-preprocessed split of this seed, shared by every lane of the seed.
    Seed(u64),
    /// Its own (a preprocessor's output).
    Own(Slot),
}

/// What a lane needs before it joins a batch, or its outcome if it ended before that.
enum Setup {
    Ready {
        data: Data,
        activation: Option<Arc<ActivationTable>>,
        regularizer: Option<Box<dyn Regularizer + Send>>,
    },
    Done(RunOutcome),
    /// Not for this device: the CPU path trains it.
    Cpu,
}

/// Train `jobs` (entrant index, seed) of `task` on `device`. One entry per job: its outcome,
/// or `None` where the CPU path must train it. The host's share (splits, preprocessing, tables)
/// runs in parallel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_task(
    device: &dyn BatchDevice,
    task: &Task,
    dataset: &Dataset,
    kind: ComponentKind,
    jobs: &[(usize, u64)],
    entrants: &[Entrant],
    sandbox: &Sandbox,
    limits: PluginLimits,
    tables: &mut Tables,
    notes: &mut Vec<String>,
) -> Result<Vec<Option<RunOutcome>>, BatchError> {
    let objective = prepare::objective(dataset);
    let mut outcomes: Vec<Option<RunOutcome>> = vec![None; jobs.len()];
    let mut seeds: Vec<u64> = jobs.iter().map(|j| j.1).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let splits: HashMap<u64, Slot> = if kind == ComponentKind::Preprocessor {
        HashMap::new()
    } else {
        seeds
            .par_iter()
            .map(|&seed| {
                let (mut train, mut valid) =
                    prepare::split(dataset, task.validation_fraction, seed);
                prepare::standardize(&mut train, &mut valid);
                (seed, Slot { train, valid })
            })
            .collect()
    };
    if kind == ComponentKind::Activation {
        tables.build(jobs, entrants, sandbox, limits, notes);
    }
    let ready: Vec<Setup> = jobs
        .par_iter()
        .map(|&(e, seed)| {
            let entrant = &entrants[e];
            match kind {
                ComponentKind::Activation => match tables.get(e) {
                    Some(t) => Setup::Ready {
                        data: Data::Seed(seed),
                        activation: Some(t),
                        regularizer: None,
                    },
                    None => Setup::Cpu,
                },
                ComponentKind::Preprocessor => {
                    let (mut train, mut valid) =
                        prepare::split(dataset, task.validation_fraction, seed);
                    let fitted = entrant
                        .plugin
                        .preprocessor(sandbox, limits)
                        .map_err(plugin_failure)
                        .and_then(|mut pre| apply_preprocessor(&mut pre, &mut train, &mut valid));
                    match fitted {
                        Ok(()) => Setup::Ready {
                            data: Data::Own(Slot { train, valid }),
                            activation: None,
                            regularizer: None,
                        },
                        Err(e) => Setup::Done(failed(&e)),
                    }
                }
                ComponentKind::Regularizer => match entrant.plugin.regularizer(sandbox, limits) {
                    Ok(reg) => Setup::Ready {
                        data: Data::Seed(seed),
                        activation: None,
                        regularizer: Some(Box::new(PluginRegularizer(reg))),
                    },
                    Err(e) => Setup::Done(failed(&plugin_failure(e))),
                },
            }
        })
        .collect();

    // Lanes by the width of their data (a preprocessor may change it), then in batches.
    let width = |data: &Data| match data {
        Data::Seed(seed) => splits[seed].train.cols,
        Data::Own(slot) => slot.train.cols,
    };
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut lanes: Vec<Option<Setup>> = Vec::with_capacity(jobs.len());
    for (j, p) in ready.into_iter().enumerate() {
        match p {
            Setup::Ready { ref data, .. } => {
                groups.entry(width(data)).or_default().push(j);
                lanes.push(Some(p));
            }
            Setup::Done(outcome) => {
                outcomes[j] = Some(outcome);
                lanes.push(None);
            }
            Setup::Cpu => lanes.push(None),
        }
    }
    let mut widths: Vec<usize> = groups.keys().copied().collect();
    widths.sort_unstable();
    for width in widths {
        let per_batch = lanes_per_batch(task, dataset.rows, width, objective.outputs());
        for chunk in groups[&width].chunks(per_batch) {
            let mut batch = Batch {
                config: &task.train,
                objective,
                slots: Vec::new(),
                tables: Vec::new(),
                lanes: Vec::new(),
            };
            // Slots and tables shared between lanes are uploaded once.
            let mut slot_of_seed: HashMap<u64, usize> = HashMap::new();
            let mut table_of_entrant: HashMap<usize, usize> = HashMap::new();
            for &j in chunk {
                let Some(Setup::Ready {
                    data,
                    activation,
                    regularizer,
                }) = lanes[j].take()
                else {
                    continue;
                };
                let (e, seed) = jobs[j];
                let slot = match data {
                    Data::Seed(seed) => *slot_of_seed.entry(seed).or_insert_with(|| {
                        batch.slots.push(splits[&seed].clone());
                        batch.slots.len() - 1
                    }),
                    Data::Own(slot) => {
                        batch.slots.push(slot);
                        batch.slots.len() - 1
                    }
                };
                let activation = match activation {
                    Some(t) => {
                        LaneActivation::Table(*table_of_entrant.entry(e).or_insert_with(|| {
                            batch.tables.push(t);
                            batch.tables.len() - 1
                        }))
                    }
                    None => LaneActivation::Relu,
                };
                batch.lanes.push(Lane {
                    slot,
                    seed,
                    activation,
                    regularizer,
                });
            }
            let results =
                batched::train(&mut batch, &mut *device_backend(device)?, &device.name())?;
            for (&j, result) in chunk.iter().zip(results) {
                outcomes[j] = Some(match result {
                    Ok((val_loss, val_accuracy)) => RunOutcome::Finished {
                        val_loss,
                        val_accuracy,
                    },
                    Err(e) => failed(&e),
                });
            }
        }
    }
    Ok(outcomes)
}

fn device_backend(device: &dyn BatchDevice) -> Result<Box<dyn batched::Backend + '_>, BatchError> {
    device.backend().map_err(|message| BatchError::Device {
        device: device.name(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks;

    #[test]
    fn large_lanes_make_smaller_batches() {
        let standard = tasks::suite("standard").unwrap();
        let task = |name: &str| standard.tasks.iter().find(|t| t.name == name).unwrap();
        // mnist10k: 31 MB of data a lane, so about 130 lanes in 4 GiB.
        let mnist = lanes_per_batch(task("mnist10k"), 10_000, 784, 10);
        assert!((100..=140).contains(&mnist), "{mnist}");
        assert_eq!(lanes_per_batch(task("iris"), 150, 4, 3), MAX_LANES);
        // A lane larger than the whole allowance still trains, alone.
        assert_eq!(lanes_per_batch(task("mnist10k"), 10_000_000, 784, 10), 1);
    }
}
