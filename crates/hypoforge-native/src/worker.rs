//! The worker process: loads native plugins and runs their trials and calls, one request at a
//! time, for the engine on the other end of its stdin and stdout.
//!
//! It holds nothing the engine cannot rebuild: if a plugin crashes it, the engine starts
//! another. It exits when its stdin closes.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::process::ExitCode;

use hypoforge_eval::datasets::{Dataset, Target};
use hypoforge_eval::metrics::RunOutcome;
use hypoforge_eval::model::TrainConfig;
use hypoforge_eval::trial;

use crate::library::NativePlugin;
use crate::probe::Handle;
use crate::wire::{self, Reply, Request, WireOutcome};

/// Serve requests on stdin until it closes. The entry point of `hypoforge native-worker` and
/// of the `hypoforge-native-worker` binary.
pub fn main() -> ExitCode {
    let stdin = io::stdin().lock();
    let stdout = io::stdout().lock();
    match serve(&mut BufReader::new(stdin), &mut BufWriter::new(stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hypoforge native worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One loaded plugin, with the handle its probe calls share (a fit, then transforms).
struct Loaded {
    plugin: &'static NativePlugin,
    calls: Handle<'static>,
}

/// Serve requests from `input` until it ends; an I/O or protocol error ends the worker.
pub fn serve(input: &mut impl Read, output: &mut impl Write) -> io::Result<()> {
    let mut plugins: HashMap<u32, Loaded> = HashMap::new();
    let mut datasets: HashMap<u32, Dataset> = HashMap::new();
    loop {
        let request: Request = match wire::read_message(input) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        match request {
            Request::Load { id, path } => {
                // SAFETY: the engine loads only what compile_native built from a source whose
                // WebAssembly build passed validation.
                let reply = match unsafe { NativePlugin::load(&path) } {
                    Ok(plugin) => {
                        // Workers never unload a library, so its plugin lives as long too.
                        let plugin: &'static NativePlugin = Box::leak(Box::new(plugin));
                        plugins.insert(
                            id,
                            Loaded {
                                plugin,
                                calls: plugin.handle(),
                            },
                        );
                        Reply::Done
                    }
                    Err(e) => Reply::Refused(e.to_string()),
                };
                wire::write_message(output, &reply)?;
            }
            Request::Dataset {
                id,
                rows,
                cols,
                classes,
            } => {
                let features: Vec<f32> = wire::read_words(input)?;
                let target = match classes {
                    Some(classes) => Target::Classes {
                        labels: wire::read_words(input)?,
                        classes,
                    },
                    None => Target::Regression {
                        values: wire::read_words(input)?,
                    },
                };
                let reply = if features.len() != rows.saturating_mul(cols) {
                    Reply::Refused(format!(
                        "dataset {id}: {} features for {rows} × {cols}",
                        features.len()
                    ))
                } else {
                    datasets.insert(
                        id,
                        Dataset {
                            name: format!("dataset {id}"),
                            rows,
                            cols,
                            features,
                            target,
                        },
                    );
                    Reply::Done
                };
                wire::write_message(output, &reply)?;
            }
            Request::ForgetDatasets => {
                datasets.clear();
                wire::write_message(output, &Reply::Done)?;
            }
            Request::Trial {
                plugin,
                dataset,
                seed,
                validation_fraction,
                config,
            } => {
                let reply = match (plugins.get(&plugin), datasets.get(&dataset)) {
                    (Some(loaded), Some(data)) => {
                        let config = TrainConfig::from(config);
                        let fraction = f64::from_bits(validation_fraction);
                        let outcome = run_trial(loaded.plugin, &config, fraction, data, seed);
                        Reply::Outcome(WireOutcome::from(&outcome))
                    }
                    _ => Reply::Refused(format!(
                        "trial of plugin {plugin} on dataset {dataset}, which this worker lacks"
                    )),
                };
                wire::write_message(output, &reply)?;
            }
            Request::Call {
                plugin,
                op,
                rows,
                cols,
            } => {
                let data: Vec<f32> = wire::read_words(input)?;
                let Some(loaded) = plugins.get_mut(&plugin) else {
                    wire::write_message(
                        output,
                        &Reply::Refused(format!("call of plugin {plugin}, which is not loaded")),
                    )?;
                    continue;
                };
                if data.len() != rows.saturating_mul(cols) {
                    wire::write_message(
                        output,
                        &Reply::Refused(format!(
                            "{} values for a {rows} × {cols} matrix",
                            data.len()
                        )),
                    )?;
                    continue;
                }
                match loaded.calls.call(op, &data, rows, cols) {
                    Some(Ok(frames)) => {
                        wire::write_message(
                            output,
                            &Reply::Values {
                                frames: frames.len(),
                            },
                        )?;
                        for frame in &frames {
                            wire::write_floats(output, frame)?;
                        }
                    }
                    Some(Err(e)) => wire::write_message(
                        output,
                        &Reply::Failed {
                            class: e.class,
                            message: e.message,
                        },
                    )?,
                    None => wire::write_message(
                        output,
                        &Reply::Refused(format!(
                            "{op:?} is not a call of a {}",
                            loaded.plugin.meta().kind
                        )),
                    )?,
                }
            }
        }
        output.flush()?;
    }
}

/// The trial, as `hypoforge_eval::trial::run_trial` runs it in the sandbox.
fn run_trial(
    plugin: &NativePlugin,
    config: &TrainConfig,
    fraction: f64,
    data: &Dataset,
    seed: u64,
) -> RunOutcome {
    let result = trial::train_in_slot(config, fraction, data, seed, plugin.handle().slot());
    // The time limit is the engine's to enforce: it stops a worker that runs past it.
    trial::outcome(result, None, std::time::Duration::ZERO)
}
