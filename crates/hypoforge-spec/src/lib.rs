//! The contracts every hypoforge stage shares: component kinds, the plugin ABI's names and
//! version, and the records a check or a failure leaves behind. Nothing here runs anything.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod abi;
pub mod rng;

pub use abi::PluginMeta;

/// The kinds of ML component a hypothesis can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// An elementwise nonlinearity `f(x)` with its derivative, used in every hidden layer.
    Activation,
    /// A data transform fitted on the training matrix and applied row by row.
    Preprocessor,
    /// A penalty on each weight matrix, added to the loss, with its gradient.
    Regularizer,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 3] = [
        ComponentKind::Activation,
        ComponentKind::Preprocessor,
        ComponentKind::Regularizer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Activation => "activation",
            ComponentKind::Preprocessor => "preprocessor",
            ComponentKind::Regularizer => "regularizer",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no component kind.
#[derive(Debug, thiserror::Error)]
#[error("unknown component kind `{0}` (expected activation, preprocessor or regularizer)")]
pub struct UnknownKind(pub String);

impl FromStr for ComponentKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ComponentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Where an activation's derivative comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DerivativeSource {
    /// Computed exactly by the SDK's dual numbers.
    Dual,
    /// Written by the author; must agree with finite differences.
    Author,
    /// The kind has no derivative (preprocessors).
    None,
}

/// Why a hypothesis was rejected or a plugin call failed. Every failure maps to exactly one
/// class, so results can be counted and compared by cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The source could not be read (missing file, permissions).
    Io,
    /// The source breaks the source policy (forbidden construct, size, encoding).
    Policy,
    /// rustc rejected the source.
    Compile,
    /// rustc ran past its wall-clock limit.
    CompileTimeout,
    /// rustc ran past its memory or output-size limit.
    CompileResourceLimit,
    /// The toolchain itself is missing or broken (not the hypothesis's fault).
    Toolchain,
    /// The module is not a valid WebAssembly module, declares imports, or lacks an export.
    BadModule,
    /// The module's ABI version section is missing or names another version.
    AbiVersion,
    /// The module is a plugin of another kind than the one asked for.
    KindMismatch,
    /// The plugin broke the calling convention at run time (bad status, bad pointer).
    BadAbi,
    /// The plugin used up its instruction budget.
    OutOfFuel,
    /// The plugin ran past its wall-clock deadline.
    Deadline,
    /// The plugin asked for more memory than its cap.
    MemoryLimit,
    /// The plugin exhausted its call stack.
    StackOverflow,
    /// The plugin panicked (or executed `unreachable`).
    Panic,
    /// Any other WebAssembly trap (out-of-bounds access, integer division by zero, ...).
    Trap,
    /// The native fast path's worker process died running the plugin (a signal: a stack
    /// overflow, an abort, a wild access).
    Crash,
    /// The plugin ran but gave wrong results: a property check failed.
    InvalidBehaviour,
    /// A fault in hypoforge itself.
    Internal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Io => "io",
            ErrorClass::Policy => "policy",
            ErrorClass::Compile => "compile",
            ErrorClass::CompileTimeout => "compile_timeout",
            ErrorClass::CompileResourceLimit => "compile_resource_limit",
            ErrorClass::Toolchain => "toolchain",
            ErrorClass::BadModule => "bad_module",
            ErrorClass::AbiVersion => "abi_version",
            ErrorClass::KindMismatch => "kind_mismatch",
            ErrorClass::BadAbi => "bad_abi",
            ErrorClass::OutOfFuel => "out_of_fuel",
            ErrorClass::Deadline => "deadline",
            ErrorClass::MemoryLimit => "memory_limit",
            ErrorClass::StackOverflow => "stack_overflow",
            ErrorClass::Panic => "panic",
            ErrorClass::Trap => "trap",
            ErrorClass::Crash => "crash",
            ErrorClass::InvalidBehaviour => "invalid_behaviour",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure, as stored and printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub class: ErrorClass,
    pub message: String,
}

/// The outcome of one named property check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// A hypothesis's identity: the SHA-256 of its source, in hex.
pub fn source_hash(source: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_strings() {
        for k in ComponentKind::ALL {
            assert_eq!(k.as_str().parse::<ComponentKind>().ok(), Some(k));
            assert_eq!(serde_json::to_string(&k).ok(), Some(format!("\"{k}\"")));
        }
        assert!("activations".parse::<ComponentKind>().is_err());
    }

    #[test]
    fn error_classes_serialize_as_their_names() {
        let c = ErrorClass::CompileResourceLimit;
        assert_eq!(serde_json::to_string(&c).ok(), Some(format!("\"{c}\"")));
    }

    #[test]
    fn source_hash_is_sha256() {
        assert_eq!(
            source_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
