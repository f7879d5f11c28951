//! Tasks and suites: what to train on, with which model and budget, written as TOML.
//!
//! A suite file has a `name`, an optional `description`, optional `[defaults]` and one
//! `[[task]]` table per task; a task's own keys override the defaults. Unknown keys are errors
//! that name the key, so a typo never silently falls back to a default.

use std::path::Path;

use serde::Deserialize;

use crate::datasets::{self, Dataset, DatasetError};
use crate::kernels::AdamConfig;
use crate::model::{Optimizer, TrainConfig};

/// The suites that ship with hypoforge.
pub const BUILTIN_SUITES: &[(&str, &str)] = &[
    ("quick", include_str!("../suites/quick.toml")),
    ("standard", include_str!("../suites/standard.toml")),
    ("holdout", include_str!("../suites/holdout.toml")),
];

/// Samples drawn from a synthetic generator when the task does not say.
const DEFAULT_SYNTHETIC_SAMPLES: usize = 1000;

/// Where a task's data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetSource {
    /// A seeded synthetic generator (`synthetic:NAME`), drawing this many samples.
    Synthetic { generator: String, samples: usize },
    /// An embedded dataset, or one of the same name from `--data-dir`.
    Named(String),
}

/// One task: a dataset, a model and a training budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub name: String,
    pub source: DatasetSource,
    pub train: TrainConfig,
    /// Share of the rows held out for validation.
    pub validation_fraction: f64,
}

/// A named list of tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    pub name: String,
    pub description: String,
    pub tasks: Vec<Task>,
}

/// A suite that cannot be read or makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read suite file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: task `{task}`: {message}")]
    Invalid {
        origin: String,
        task: String,
        message: String,
    },
    #[error(
        "unknown suite `{0}`; built-in suites are quick, standard and holdout, or give a path to a .toml file"
    )]
    Unknown(String),
    #[error("task `{task}`: {source}")]
    Dataset { task: String, source: DatasetError },
    #[error(
        "task `{task}` names dataset `{dataset}`, which is neither embedded ({}) nor in --data-dir",
        datasets::EMBEDDED.join(", ")
    )]
    MissingDataset { task: String, dataset: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    defaults: Settings,
    #[serde(rename = "task", default)]
    tasks: Vec<TaskFile>,
}

/// Keys a task may set, and `[defaults]` may set for every task.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    hidden: Option<Vec<usize>>,
    epochs: Option<usize>,
    min_steps: Option<usize>,
    batch: Option<usize>,
    optimizer: Option<OptimizerName>,
    lr: Option<f32>,
    validation_fraction: Option<f64>,
    samples: Option<usize>,
}

// `#[serde(flatten)]` and `deny_unknown_fields` do not combine, so a task lists its keys again.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    name: String,
    dataset: String,
    hidden: Option<Vec<usize>>,
    epochs: Option<usize>,
    min_steps: Option<usize>,
    batch: Option<usize>,
    optimizer: Option<OptimizerName>,
    lr: Option<f32>,
    validation_fraction: Option<f64>,
    samples: Option<usize>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OptimizerName {
    Adam,
    Sgd,
}

impl TaskFile {
    fn settings(&self) -> Settings {
        Settings {
            hidden: self.hidden.clone(),
            epochs: self.epochs,
            min_steps: self.min_steps,
            batch: self.batch,
            optimizer: self.optimizer,
            lr: self.lr,
            validation_fraction: self.validation_fraction,
            samples: self.samples,
        }
    }
}

/// A built-in suite by name, or a suite file by path.
pub fn suite(name_or_path: &str) -> Result<Suite, SuiteError> {
    if let Some((_, text)) = BUILTIN_SUITES.iter().find(|(n, _)| *n == name_or_path) {
        return parse_suite(text, name_or_path);
    }
    let path = Path::new(name_or_path);
    if path.extension().is_some_and(|e| e == "toml") || path.exists() {
        return load_suite(path);
    }
    Err(SuiteError::Unknown(name_or_path.to_owned()))
}

/// Read a suite file.
pub fn load_suite(path: &Path) -> Result<Suite, SuiteError> {
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_suite(&text, &path.display().to_string())
}

/// Parse suite TOML; `origin` names it in errors.
pub fn parse_suite(text: &str, origin: &str) -> Result<Suite, SuiteError> {
    let file: SuiteFile = toml::from_str(text).map_err(|e| SuiteError::Parse {
        origin: origin.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    if file.tasks.is_empty() {
        return Err(SuiteError::Parse {
            origin: origin.to_owned(),
            message: "the suite has no [[task]] tables".into(),
        });
    }
    let mut tasks: Vec<Task> = Vec::with_capacity(file.tasks.len());
    for t in &file.tasks {
        let invalid = |message: String| SuiteError::Invalid {
            origin: origin.to_owned(),
            task: t.name.clone(),
            message,
        };
        if tasks.iter().any(|other| other.name == t.name) {
            return Err(invalid("two tasks have this name".into()));
        }
        tasks.push(resolve(t, &t.settings(), &file.defaults).map_err(invalid)?);
    }
    Ok(Suite {
        name: file.name,
        description: file.description,
        tasks,
    })
}

fn resolve(task: &TaskFile, own: &Settings, defaults: &Settings) -> Result<Task, String> {
    let hidden = own
        .hidden
        .clone()
        .or_else(|| defaults.hidden.clone())
        .unwrap_or_else(|| vec![64, 64]);
    if hidden.is_empty() || hidden.contains(&0) || hidden.iter().any(|&w| w > 65_536) {
        return Err(format!(
            "`hidden` must list one or more layer widths between 1 and 65536, got {hidden:?}"
        ));
    }
    let epochs = own.epochs.or(defaults.epochs).unwrap_or(1);
    let min_steps = own.min_steps.or(defaults.min_steps).unwrap_or(0);
    if epochs == 0 && min_steps == 0 {
        return Err("`epochs` and `min_steps` are both 0: the model would never train".into());
    }
    let batch = own.batch.or(defaults.batch).unwrap_or(64);
    if batch == 0 {
        return Err("`batch` must be at least 1".into());
    }
    let lr = own.lr.or(defaults.lr).unwrap_or(1e-3);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(format!("`lr` must be a positive number, got {lr}"));
    }
    let optimizer = match own
        .optimizer
        .or(defaults.optimizer)
        .unwrap_or(OptimizerName::Adam)
    {
        OptimizerName::Adam => Optimizer::Adam(AdamConfig {
            lr,
            ..AdamConfig::default()
        }),
        OptimizerName::Sgd => Optimizer::Sgd { lr },
    };
    let validation_fraction = own
        .validation_fraction
        .or(defaults.validation_fraction)
        .unwrap_or(0.2);
    if !(validation_fraction > 0.0 && validation_fraction < 1.0) {
        return Err(format!(
            "`validation_fraction` must lie strictly between 0 and 1, got {validation_fraction}"
        ));
    }
    let source = match task.dataset.strip_prefix("synthetic:") {
        Some(generator) => {
            if !datasets::SYNTHETIC.contains(&generator) {
                return Err(format!(
                    "unknown synthetic generator `{generator}`; known: {}",
                    datasets::SYNTHETIC.join(", ")
                ));
            }
            let samples = own
                .samples
                .or(defaults.samples)
                .unwrap_or(DEFAULT_SYNTHETIC_SAMPLES);
            if samples < 10 {
                return Err(format!("`samples` must be at least 10, got {samples}"));
            }
            DatasetSource::Synthetic {
                generator: generator.to_owned(),
                samples,
            }
        }
        None if own.samples.is_some() => {
            return Err("`samples` applies only to synthetic datasets".into());
        }
        None => DatasetSource::Named(task.dataset.clone()),
    };
    Ok(Task {
        name: task.name.clone(),
        source,
        train: TrainConfig {
            hidden,
            batch,
            epochs,
            min_steps,
            optimizer,
        },
        validation_fraction,
    })
}

impl Task {
    /// The task's dataset: generated, embedded, or found among `extra` (from `--data-dir`,
    /// which takes precedence over an embedded dataset of the same name).
    pub fn dataset(&self, extra: &[Dataset]) -> Result<Dataset, SuiteError> {
        match &self.source {
            DatasetSource::Synthetic { generator, samples } => {
                // Synthetic data are fixed per task (seed 0); trials vary split and training.
                datasets::synthetic(generator, *samples, 0).map_err(|source| SuiteError::Dataset {
                    task: self.name.clone(),
                    source,
                })
            }
            DatasetSource::Named(name) => {
                if let Some(d) = extra.iter().find(|d| &d.name == name) {
                    return Ok(d.clone());
                }
                if datasets::EMBEDDED.contains(&name.as_str()) {
                    return datasets::embedded(name).map_err(|source| SuiteError::Dataset {
                        task: self.name.clone(),
                        source,
                    });
                }
                Err(SuiteError::MissingDataset {
                    task: self.name.clone(),
                    dataset: name.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_suites_parse_and_resolve_their_datasets() {
        for (name, _) in BUILTIN_SUITES {
            let s = suite(name).unwrap();
            assert_eq!(&s.name, name);
            for task in &s.tasks {
                if task.name == "mnist10k" {
                    continue; // large; covered by the datasets tests
                }
                let d = task.dataset(&[]).unwrap();
                assert!(d.rows >= 100, "{}", task.name);
            }
        }
        let standard = suite("standard").unwrap();
        let mnist = standard
            .tasks
            .iter()
            .find(|t| t.name == "mnist10k")
            .unwrap();
        assert_eq!(mnist.train.hidden, vec![256, 256]);
        assert_eq!(mnist.train.batch, 64);
        let digits = standard.tasks.iter().find(|t| t.name == "digits").unwrap();
        assert_eq!(digits.train.hidden, vec![128, 128]);
    }

    #[test]
    fn task_keys_override_defaults() {
        let s = parse_suite(
            "name = \"s\"\n[defaults]\nhidden = [8]\nlr = 0.01\noptimizer = \"sgd\"\n\
             [[task]]\nname = \"a\"\ndataset = \"iris\"\n\
             [[task]]\nname = \"b\"\ndataset = \"synthetic:xor\"\nhidden = [4, 4]\nsamples = 50\n",
            "test",
        )
        .unwrap();
        assert_eq!(s.tasks[0].train.hidden, vec![8]);
        assert_eq!(s.tasks[0].train.optimizer, Optimizer::Sgd { lr: 0.01 });
        assert_eq!(s.tasks[1].train.hidden, vec![4, 4]);
        assert_eq!(
            s.tasks[1].source,
            DatasetSource::Synthetic {
                generator: "xor".into(),
                samples: 50
            }
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_suite(
            "name = \"s\"\n[[task]]\nname = \"a\"\ndataset = \"iris\"\nepoch = 3\n",
            "my.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("my.toml") && err.contains("epoch"), "{err}");
        let err = parse_suite(
            "name = \"s\"\n[defaults]\nhiden = [3]\n[[task]]\nname = \"a\"\ndataset = \"iris\"\n",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("hiden"), "{err}");
    }

    #[test]
    fn nonsense_values_are_refused_with_the_task_named() {
        for (body, needle) in [
            ("hidden = []", "hidden"),
            ("hidden = [0]", "hidden"),
            ("batch = 0", "batch"),
            ("lr = -1.0", "lr"),
            ("validation_fraction = 1.0", "validation_fraction"),
            ("epochs = 0", "never train"),
            ("samples = 5", "synthetic"),
        ] {
            let text =
                format!("name = \"s\"\n[[task]]\nname = \"t1\"\ndataset = \"iris\"\n{body}\n");
            let err = parse_suite(&text, "x").unwrap_err().to_string();
            assert!(err.contains("t1") && err.contains(needle), "{body}: {err}");
        }
        let err = parse_suite(
            "name = \"s\"\n[[task]]\nname = \"t\"\ndataset = \"synthetic:nope\"\n",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nope") && err.contains("two_moons"), "{err}");
        let dup = "name = \"s\"\n[[task]]\nname = \"t\"\ndataset = \"iris\"\n[[task]]\nname = \"t\"\ndataset = \"wine\"\n";
        assert!(
            parse_suite(dup, "x")
                .unwrap_err()
                .to_string()
                .contains("two tasks")
        );
        assert!(
            parse_suite("name = \"s\"\n", "x")
                .unwrap_err()
                .to_string()
                .contains("no [[task]]")
        );
    }

    #[test]
    fn datasets_resolve_from_data_dir_first_and_missing_ones_are_named() {
        let s = parse_suite(
            "name = \"s\"\n[[task]]\nname = \"t\"\ndataset = \"mine\"\n",
            "x",
        )
        .unwrap();
        let err = s.tasks[0].dataset(&[]).unwrap_err().to_string();
        assert!(err.contains("mine") && err.contains("data-dir"), "{err}");
        let mut mine = datasets::synthetic("xor", 20, 1).unwrap();
        mine.name = "mine".into();
        assert_eq!(
            s.tasks[0].dataset(std::slice::from_ref(&mine)).unwrap(),
            mine
        );
    }

    #[test]
    fn unknown_suite_names_say_what_exists() {
        let err = suite("quik").unwrap_err().to_string();
        assert!(err.contains("quick") && err.contains("standard"), "{err}");
        let err = suite("/nonexistent/suite.toml").unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
