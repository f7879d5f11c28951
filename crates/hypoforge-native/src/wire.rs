//! What the engine and a worker say to each other over the worker's stdin and stdout.
//!
//! A message is a JSON header frame followed by the binary frames it announces (floats as
//! little-endian bytes, so that no value is rounded through text); a frame is a little-endian
//! `u64` length and that many bytes. Floats that decide a result cross as their bits.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use hypoforge_eval::AdamConfig;
use hypoforge_eval::metrics::RunOutcome;
use hypoforge_eval::model::{Optimizer, TrainConfig};
use hypoforge_spec::ErrorClass;
use serde::{Deserialize, Serialize};

/// Largest frame either side accepts: a dataset of 256 Mi floats.
const MAX_FRAME: u64 = 1 << 30;

/// From the engine to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Load the library at `path` as plugin `id`.
    Load { id: u32, path: PathBuf },
    /// Keep a dataset as `id`: frames `features` (f32) then the labels (u32) or values (f32).
    Dataset {
        id: u32,
        rows: usize,
        cols: usize,
        /// `Some(classes)` for class labels, `None` for real values.
        classes: Option<usize>,
    },
    /// Drop every dataset kept.
    ForgetDatasets,
    /// Train plugin `plugin` on trial `(dataset, seed)`.
    Trial {
        plugin: u32,
        dataset: u32,
        seed: u64,
        validation_fraction: u64,
        config: WireConfig,
    },
    /// One call of plugin `plugin` on the matrix in the next frame (`rows × cols`).
    Call {
        plugin: u32,
        op: Op,
        rows: usize,
        cols: usize,
    },
}

/// The calls the differential test makes, each on one matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Op {
    ActForward,
    ActDerivative,
    ActForwardDerivative,
    /// Fit (replacing any earlier fit); the reply is the output width as one float.
    PreFit,
    PreTransform,
    RegPenalty,
    RegGradient,
}

/// From a worker to the engine.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Done,
    /// A trial's outcome; losses as bits.
    Outcome(WireOutcome),
    /// A call's outputs, in the frames that follow.
    Values {
        frames: usize,
    },
    /// The call or trial failed as the plugin's failure.
    Failed {
        class: ErrorClass,
        message: String,
    },
    /// The worker could not do what was asked (a bad library, a protocol error).
    Refused(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    Finished {
        val_loss: u64,
        val_accuracy: Option<u64>,
    },
    Failed {
        cause: String,
    },
}

impl From<&RunOutcome> for WireOutcome {
    fn from(o: &RunOutcome) -> Self {
        match o {
            RunOutcome::Finished {
                val_loss,
                val_accuracy,
            } => WireOutcome::Finished {
                val_loss: val_loss.to_bits(),
                val_accuracy: val_accuracy.map(f64::to_bits),
            },
            RunOutcome::Failed { cause } => WireOutcome::Failed {
                cause: cause.clone(),
            },
        }
    }
}

impl From<WireOutcome> for RunOutcome {
    fn from(o: WireOutcome) -> Self {
        match o {
            WireOutcome::Finished {
                val_loss,
                val_accuracy,
            } => RunOutcome::Finished {
                val_loss: f64::from_bits(val_loss),
                val_accuracy: val_accuracy.map(f64::from_bits),
            },
            WireOutcome::Failed { cause } => RunOutcome::Failed { cause },
        }
    }
}

/// [`TrainConfig`] with its floats as bits.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireConfig {
    hidden: Vec<usize>,
    batch: usize,
    epochs: usize,
    min_steps: usize,
    optimizer: WireOptimizer,
}

#[derive(Debug, Serialize, Deserialize)]
enum WireOptimizer {
    Adam {
        lr: u32,
        beta1: u32,
        beta2: u32,
        eps: u32,
    },
    Sgd {
        lr: u32,
    },
}

impl From<&TrainConfig> for WireConfig {
    fn from(c: &TrainConfig) -> Self {
        WireConfig {
            hidden: c.hidden.clone(),
            batch: c.batch,
            epochs: c.epochs,
            min_steps: c.min_steps,
            optimizer: match c.optimizer {
                Optimizer::Adam(a) => WireOptimizer::Adam {
                    lr: a.lr.to_bits(),
                    beta1: a.beta1.to_bits(),
                    beta2: a.beta2.to_bits(),
                    eps: a.eps.to_bits(),
                },
                Optimizer::Sgd { lr } => WireOptimizer::Sgd { lr: lr.to_bits() },
            },
        }
    }
}

impl From<WireConfig> for TrainConfig {
    fn from(c: WireConfig) -> Self {
        TrainConfig {
            hidden: c.hidden,
            batch: c.batch,
            epochs: c.epochs,
            min_steps: c.min_steps,
            optimizer: match c.optimizer {
                WireOptimizer::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                } => Optimizer::Adam(AdamConfig {
                    lr: f32::from_bits(lr),
                    beta1: f32::from_bits(beta1),
                    beta2: f32::from_bits(beta2),
                    eps: f32::from_bits(eps),
                }),
                WireOptimizer::Sgd { lr } => Optimizer::Sgd {
                    lr: f32::from_bits(lr),
                },
            },
        }
    }
}

pub(crate) fn write_frame(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(&(bytes.len() as u64).to_le_bytes())?;
    w.write_all(bytes)
}

pub(crate) fn write_message(w: &mut impl Write, header: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    write_frame(w, &json)
}

pub(crate) fn write_floats(w: &mut impl Write, values: &[f32]) -> io::Result<()> {
    write_frame(w, bytemuck::cast_slice(values))
}

fn frame_len(r: &mut impl Read) -> io::Result<usize> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is past the limit of {MAX_FRAME}"),
        ));
    }
    Ok(len as usize)
}

pub(crate) fn read_message<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<T> {
    let mut bytes = vec![0u8; frame_len(r)?];
    r.read_exact(&mut bytes)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A frame of 4-byte values (`f32` or `u32`).
pub(crate) fn read_words<T: bytemuck::Pod + Default>(r: &mut impl Read) -> io::Result<Vec<T>> {
    let len = frame_len(r)?;
    if len % 4 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is not whole 4-byte values"),
        ));
    }
    let mut values = vec![T::default(); len / 4];
    r.read_exact(bytemuck::cast_slice_mut(&mut values))?;
    Ok(values)
}
