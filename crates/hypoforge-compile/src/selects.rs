//! Branch-free float selects: every `select` on `f32` or `f64` operands becomes the same
//! `select` on their bit patterns.
//!
//! Cranelift lowers a float `select` to a conditional jump around a register move, and the
//! conditions in activation functions (the sign in `erf`, `tanh`, `abs`-like code) follow the
//! sign of the pre-activations, which is random: the jump mispredicts about half the time.
//! An integer `select` becomes a `cmov`. The two are the same function bit for bit (a select
//! only picks one operand's bits; reinterpretation copies them, NaN payloads included), so the
//! rewrite changes no result. In a micro-benchmark on random signs it took a select-heavy loop
//! from about 14 to about 8 ns per element.

use std::collections::VecDeque;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{Function, Instruction, ValType};
use wasmparser::{
    FuncToValidate, FuncValidatorAllocations, Operator, Parser, ValidPayload, Validator,
    ValidatorResources, WasmFeatures,
};

/// `wasm` with its float selects made branch-free (the compiler applies this to every module it
/// builds). Fails only on a module that does not validate, which rustc never produces.
pub fn rewrite(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    let mut functions = VecDeque::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let ValidPayload::Func(func, _) =
            validator.payload(&payload).map_err(|e| e.to_string())?
        {
            functions.push_back(func);
        }
    }
    let mut rewriter = Rewriter { functions };
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| e.to_string())?;
    Ok(module.finish())
}

struct Rewriter {
    /// The module's function bodies to validate, in code-section order.
    functions: VecDeque<FuncToValidate<ValidatorResources>>,
}

impl Reencode for Rewriter {
    type Error = String;

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        body: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<String>> {
        let func = self
            .functions
            .pop_front()
            .ok_or_else(|| ReencodeError::UserError("more bodies than functions".into()))?;
        let mut validator = func.into_validator(FuncValidatorAllocations::default());
        let mut locals = Vec::new();
        let mut reader = body.get_locals_reader()?;
        for _ in 0..reader.get_count() {
            let offset = reader.original_position();
            let (count, ty) = reader.read()?;
            validator.define_locals(offset, count, ty)?;
            locals.push((count, self.val_type(ty)?));
        }
        // Scratch locals past the author's: the condition, and the second operand's bits.
        let condition = validator.len_locals();
        let (bits32, bits64) = (condition + 1, condition + 2);
        locals.extend([(2, ValType::I32), (1, ValType::I64)]);
        let mut f = Function::new(locals);
        let mut ops = body.get_operators_reader()?;
        while !ops.eof() {
            let (op, offset) = ops.read_with_offset()?;
            let float = match &op {
                Operator::Select | Operator::TypedSelect { .. } => {
                    validator.get_operand_type(1).flatten()
                }
                _ => None,
            };
            let as_bits = match float {
                Some(wasmparser::ValType::F32) => Some((
                    bits32,
                    Instruction::I32ReinterpretF32,
                    Instruction::F32ReinterpretI32,
                )),
                Some(wasmparser::ValType::F64) => Some((
                    bits64,
                    Instruction::I64ReinterpretF64,
                    Instruction::F64ReinterpretI64,
                )),
                _ => None,
            };
            match as_bits {
                // Stack: a, b, condition → select on the bits of a and b, back to a float.
                Some((bits, to_int, to_float)) => {
                    for instruction in [
                        Instruction::LocalSet(condition),
                        to_int.clone(),
                        Instruction::LocalSet(bits),
                        to_int,
                        Instruction::LocalGet(bits),
                        Instruction::LocalGet(condition),
                        Instruction::Select,
                        to_float,
                    ] {
                        f.instruction(&instruction);
                    }
                }
                None => {
                    f.instruction(&self.instruction(op.clone())?);
                }
            }
            validator.op(offset, &op)?;
        }
        ops.finish()?;
        code.function(&f);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operator of every body, as `Debug` text.
    fn operators(wasm: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            if let wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() {
                let mut ops = body.get_operators_reader().unwrap();
                while !ops.eof() {
                    out.push(format!("{:?}", ops.read().unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn float_selects_become_integer_selects_and_others_stay() {
        let wasm = wat::parse_str(
            r#"(module
              (func (export "f") (param f32 f32 i32) (result f32)
                (select (local.get 0) (local.get 1) (local.get 2)))
              (func (export "d") (param f64 f64 i32) (result f64)
                (select (result f64) (local.get 0) (local.get 1) (local.get 2)))
              (func (export "i") (param i32 i32 i32) (result i32)
                (select (local.get 0) (local.get 1) (local.get 2)))
              (@custom "hypoforge.meta" "kept"))"#,
        )
        .unwrap();
        let out = rewrite(&wasm).unwrap();
        Validator::new().validate_all(&out).unwrap();
        let ops = operators(&out);
        let count = |name: &str| ops.iter().filter(|o| o.starts_with(name)).count();
        assert_eq!(count("I32ReinterpretF32"), 2, "{ops:?}");
        assert_eq!(count("I64ReinterpretF64"), 2, "{ops:?}");
        assert_eq!(count("F32ReinterpretI32"), 1, "{ops:?}");
        assert_eq!(count("F64ReinterpretI64"), 1, "{ops:?}");
        assert_eq!(count("Select"), 3, "{ops:?}");
        assert_eq!(count("TypedSelect"), 0, "{ops:?}");
        let custom = Parser::new(0).parse_all(&out).any(|p| {
            matches!(p, Ok(wasmparser::Payload::CustomSection(c)) if c.name() == "hypoforge.meta" && c.data() == b"kept")
        });
        assert!(custom, "custom sections are kept");
    }

    #[test]
    fn a_malformed_module_is_an_error() {
        let wasm = wat::parse_str(
            r#"(module (func (result f32) (select (f32.const 1) (f32.const 2) (i32.const 0))))"#,
        )
        .unwrap();
        // The select opcode replaced by one that does not exist.
        let mut broken = wasm.clone();
        let last = broken.len() - 2;
        broken[last] = 0xff;
        assert!(rewrite(&broken).is_err());
        assert!(rewrite(&wasm).is_ok());
    }
}
