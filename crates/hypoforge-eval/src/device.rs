//! Choosing where trials train: the CPU path (the reference, and the default) or a GPU.

use crate::batched::BatchDevice;

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A GPU when one is usable, else the CPU, with a line saying why.
    Auto,
    /// The CPU path.
    #[default]
    Cpu,
    /// A GPU, or an error.
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(format!("unknown device `{other}`: use auto, cpu or cuda")),
        }
    }
}

/// Why `--device cuda` cannot be honoured.
#[derive(Debug, thiserror::Error)]
#[error("--device cuda: {reason}; use --device cpu (or auto) to evaluate on the CPU")]
pub struct DeviceError {
    /// Why there is no GPU, in a phrase.
    pub reason: String,
}

/// An opened device: `None` is the CPU path. `note` says why `auto` chose the CPU.
#[derive(Debug)]
pub struct Opened {
    pub device: Option<Box<dyn BatchDevice>>,
    pub note: Option<String>,
}

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Box<dyn BatchDevice>, String> {
    crate::cuda::CudaDevice::open(0)
        .map(|d| Box::new(d) as Box<dyn BatchDevice>)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Box<dyn BatchDevice>, String> {
    Err("this hypoforge was built without GPU support (rebuild it with `--features cuda`)".into())
}

/// Open what `choice` asks for. Probing touches the CUDA libraries only through checks that
/// cannot fail hard, so `auto` is safe on any machine.
pub fn open(choice: DeviceChoice) -> Result<Opened, DeviceError> {
    let (device, note) = match choice {
        DeviceChoice::Cpu => (None, None),
        DeviceChoice::Cuda => (
            Some(open_cuda().map_err(|reason| DeviceError { reason })?),
            None,
        ),
        DeviceChoice::Auto => match open_cuda() {
            Ok(device) => (Some(device), None),
            Err(reason) => (
                None,
                Some(format!("no GPU, evaluating on the CPU: {reason}")),
            ),
        },
    };
    Ok(Opened { device, note })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda));
        assert_eq!(DeviceChoice::default(), DeviceChoice::Cpu);
        let err = "gpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.contains("auto, cpu or cuda"), "{err}");
        assert!(open(DeviceChoice::Cpu).unwrap().device.is_none());
    }

    #[test]
    fn auto_falls_back_with_a_reason_and_cuda_fails_clearly_without_a_gpu() {
        let auto = open(DeviceChoice::Auto).unwrap();
        match (&auto.device, open(DeviceChoice::Cuda)) {
            (Some(_), Ok(_)) => eprintln!("a GPU is here; the fallback is not exercised"),
            (None, Err(e)) => {
                let note = auto.note.expect("a reason");
                assert!(
                    note.starts_with("no GPU, evaluating on the CPU: "),
                    "{note}"
                );
                assert!(!note.contains("--device cuda:"), "{note}");
                let message = e.to_string();
                assert!(message.contains("--device cpu"), "{message}");
            }
            (a, b) => panic!("auto and cuda disagree: {a:?} vs {b:?}"),
        }
    }
}
