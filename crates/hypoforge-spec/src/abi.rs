//! Names and version of the plugin ABI, mirrored from the guest SDK's export macros.

use std::fmt;

use crate::{ComponentKind, DerivativeSource};

/// The ABI version hosts accept. The SDK emits the same number (a test checks they agree).
pub const ABI_VERSION: u32 = 2;
/// Custom section holding the ABI version as a little-endian `u32`.
pub const ABI_SECTION: &str = "hypoforge.abi";
/// Custom section holding `key=value` lines: kind, name, derivative, sdk.
pub const META_SECTION: &str = "hypoforge.meta";

/// Largest plugin module, in bytes: what rustc may produce and what the sandbox will load.
/// SDK-built plugins are tens of kilobytes.
pub const MAX_MODULE_BYTES: usize = 8 << 20;

/// Export names, shared by host and guest.
pub mod exports {
    pub const MEMORY: &str = "memory";
    pub const ALLOC: &str = "hf_alloc";
    pub const FREE: &str = "hf_free";
    pub const PANIC_MESSAGE: &str = "hf_panic_message";
    pub const ACT_FORWARD: &str = "hf_act_forward";
    pub const ACT_DERIVATIVE: &str = "hf_act_derivative";
    /// `f` and `f'` in one pass, as training needs both (since ABI 2).
    pub const ACT_FORWARD_DERIVATIVE: &str = "hf_act_forward_derivative";
    pub const PRE_FIT: &str = "hf_pre_fit";
    pub const PRE_WIDTH: &str = "hf_pre_width";
    pub const PRE_TRANSFORM: &str = "hf_pre_transform";
    pub const REG_PENALTY: &str = "hf_reg_penalty";
    pub const REG_GRADIENT: &str = "hf_reg_gradient";
}

/// Status codes of exports that can refuse a call (mirrors the SDK).
pub mod status {
    pub const OK: i32 = 0;
    pub const BAD_ARGUMENTS: i32 = -1;
    pub const NOT_FITTED: i32 = -2;
    pub const WIDTH_MISMATCH: i32 = -3;

    /// A short description of a status code.
    pub fn describe(code: i32) -> &'static str {
        match code {
            OK => "ok",
            BAD_ARGUMENTS => "bad arguments",
            NOT_FITTED => "transform called before fit",
            WIDTH_MISMATCH => "input width differs from the width seen at fit",
            _ => "unknown status code",
        }
    }
}

/// What a plugin says about itself in its metadata section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginMeta {
    pub kind: ComponentKind,
    pub name: String,
    pub derivative: DerivativeSource,
    pub sdk_version: String,
}

/// A metadata section that cannot be understood.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("metadata is not UTF-8")]
    NotUtf8,
    #[error("metadata lacks `{0}`")]
    Missing(&'static str),
    #[error("metadata has a bad value for `{key}`: {value:?}")]
    BadValue { key: &'static str, value: String },
}

impl PluginMeta {
    /// Parse the `key=value` lines of a `hypoforge.meta` section.
    pub fn parse(bytes: &[u8]) -> Result<Self, MetaError> {
        let text = std::str::from_utf8(bytes).map_err(|_| MetaError::NotUtf8)?;
        let get = |key: &'static str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .ok_or(MetaError::Missing(key))
        };
        let kind_text = get("kind")?;
        let kind = kind_text.parse().map_err(|_| MetaError::BadValue {
            key: "kind",
            value: kind_text.to_owned(),
        })?;
        let name = get("name")?;
        if !valid_component_name(name) {
            return Err(MetaError::BadValue {
                key: "name",
                value: name.to_owned(),
            });
        }
        let derivative = match get("derivative")? {
            "dual" => DerivativeSource::Dual,
            "author" => DerivativeSource::Author,
            "none" => DerivativeSource::None,
            other => {
                return Err(MetaError::BadValue {
                    key: "derivative",
                    value: other.to_owned(),
                });
            }
        };
        Ok(PluginMeta {
            kind,
            name: name.to_owned(),
            derivative,
            sdk_version: get("sdk")?.to_owned(),
        })
    }
}

/// Component names: 1 to 64 characters of `a-z`, `0-9`, `_`, `-`, starting with a letter.
pub fn valid_component_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

impl fmt::Display for PluginMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_metadata() {
        let m = PluginMeta::parse(b"kind=activation\nname=gelu\nderivative=dual\nsdk=0.1.0\n");
        assert_eq!(
            m,
            Ok(PluginMeta {
                kind: ComponentKind::Activation,
                name: "gelu".into(),
                derivative: DerivativeSource::Dual,
                sdk_version: "0.1.0".into(),
            })
        );
    }

    #[test]
    fn rejects_bad_metadata() {
        assert_eq!(
            PluginMeta::parse(b"kind=loss\nname=x\nderivative=dual\nsdk=1\n"),
            Err(MetaError::BadValue {
                key: "kind",
                value: "loss".into()
            })
        );
        assert_eq!(
            PluginMeta::parse(b"kind=activation\nderivative=dual\nsdk=1\n"),
            Err(MetaError::Missing("name"))
        );
        assert!(
            PluginMeta::parse(b"kind=activation\nname=Bad Name\nderivative=dual\nsdk=1\n").is_err()
        );
        assert_eq!(PluginMeta::parse(&[0xff, 0xfe]), Err(MetaError::NotUtf8));
    }
}
