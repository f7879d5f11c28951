//! Reading a module's declarations without compiling it.

use hypoforge_spec::abi;
use wasmparser::{Parser, Payload};

use crate::SandboxError;

pub use abi::MAX_MODULE_BYTES;
/// Largest function body accepted: compile time grows faster than linearly with a function's
/// size, and a bound here is what keeps loading a module within seconds.
pub const MAX_FUNCTION_BYTES: usize = 128 << 10;
/// Largest total of function bodies accepted.
pub const MAX_CODE_BYTES: usize = 1 << 20;

/// What a module declares: imports, exports and the custom sections a plugin carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Imports as `module.name`.
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
    /// The `hypoforge.abi` section's version, when present and well-formed.
    pub abi_version: Option<u32>,
    /// The `hypoforge.meta` section, when present.
    pub meta: Option<Vec<u8>>,
}

/// Parse the declarations of `wasm`, validating the module as a whole.
pub fn inspect(wasm: &[u8]) -> Result<ModuleInfo, SandboxError> {
    let invalid = |e: wasmparser::BinaryReaderError| SandboxError::InvalidModule(e.to_string());
    if !Parser::is_core_wasm(wasm) {
        return Err(SandboxError::InvalidModule(
            "not a core WebAssembly module (bad magic or version)".into(),
        ));
    }
    if wasm.len() > MAX_MODULE_BYTES {
        return Err(SandboxError::InvalidModule(format!(
            "the module is {} bytes; the limit is {MAX_MODULE_BYTES}",
            wasm.len()
        )));
    }
    let mut info = ModuleInfo::default();
    let mut code_bytes = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    info.imports
                        .push(format!("{}.{}", import.module, import.name));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    info.exports.push(export.map_err(invalid)?.name.to_owned());
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                code_bytes += size;
                if size > MAX_FUNCTION_BYTES || code_bytes > MAX_CODE_BYTES {
                    return Err(SandboxError::InvalidModule(format!(
                        "the module's code is too large to compile promptly (a {size}-byte function, \
                         {code_bytes} bytes of code so far; limits {MAX_FUNCTION_BYTES} per function, \
                         {MAX_CODE_BYTES} in all)"
                    )));
                }
            }
            Payload::CustomSection(section) if section.name() == abi::ABI_SECTION => {
                info.abi_version = <[u8; 4]>::try_from(section.data())
                    .ok()
                    .map(u32::from_le_bytes);
                if info.abi_version.is_none() {
                    return Err(SandboxError::AbiVersion {
                        found: u32::MAX,
                        expected: abi::ABI_VERSION,
                    });
                }
            }
            Payload::CustomSection(section) if section.name() == abi::META_SECTION => {
                info.meta = Some(section.data().to_vec());
            }
            _ => {}
        }
    }
    Ok(info)
}
