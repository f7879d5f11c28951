//! The source policy: every forbidden construct is refused as Policy before rustc runs, with a
//! message naming the construct; bad encodings and sizes too. Tolerated crate attributes still
//! compile.

use std::time::Duration;

use hypoforge_tests::*;

/// A policy refusal never waits for rustc.
const POLICY_BOUND: Duration = Duration::from_secs(1);

fn expect_policy_bytes(source: &[u8]) -> String {
    let started = std::time::Instant::now();
    let message = expect_compile_class(source, ErrorClass::Policy);
    let elapsed = started.elapsed();
    assert!(elapsed < POLICY_BOUND, "a policy refusal took {elapsed:?}");
    message
}

fn expect_policy(source: &str) -> String {
    expect_policy_bytes(source.as_bytes())
}

/// One test per forbidden construct: the source, then text the message must contain.
macro_rules! refused {
    ($($test:ident: $source:expr => $needle:expr;)*) => {$(
        #[test]
        fn $test() {
            let message = expect_policy($source);
            assert!(
                message.contains($needle),
                "the message should mention `{}`: {message}",
                $needle
            );
        }
    )*};
}

/// An otherwise ordinary activation with `$item` among its items.
fn activation_with(item: &str) -> String {
    format!(
        "use hypoforge_sdk::prelude::*;\n{item}\nfn f<R: Real>(x: R) -> R {{ x }}\nactivation!(name = \"sneaky\", f = f);\n"
    )
}

refused! {
    include_str_is_refused:
        &activation_with("const KEY: &str = include_str!(\"/etc/passwd\");") => "include_str";
    include_bytes_is_refused:
        "const B: &[u8] = core::include_bytes!(\"/etc/shadow\");" => "include_bytes";
    include_is_refused:
        "include!(\"/etc/passwd\");" => "include!";
    env_is_refused:
        "const K: &str = env!(\"OPENAI_API_KEY\");" => "env!";
    option_env_is_refused:
        "const H: Option<&str> = option_env!(\"HOME\");" => "option_env";
    aliased_include_str_is_refused:
        "use core::include_str as read;\nconst S: &str = read!(\"/etc/passwd\");" => "include_str";
    raw_identifier_include_str_is_refused:
        "const S: &str = core::r#include_str!(\"/etc/passwd\");" => "include_str";
    include_str_inside_a_macro_body_is_refused:
        "macro_rules! leak { () => { include_str!(\"/etc/passwd\") } }" => "include_str";
    include_str_in_a_doc_attribute_is_refused:
        "#[doc = include_str!(\"/etc/passwd\")]\nfn f() {}" => "include_str";
    path_attribute_is_refused:
        "#[path = \"/etc/passwd\"]\nmod stolen;" => "path";
    path_attribute_on_an_inline_module_is_refused:
        "#[path = \"/etc\"]\nmod m { }" => "path";
    path_attribute_hidden_in_cfg_attr_is_refused:
        "#[cfg_attr(all(), path = \"/etc/passwd\")]\nmod stolen { }" => "path";
    out_of_line_module_is_refused:
        "mod helper;" => "mod name;";
    out_of_line_public_module_is_refused:
        "pub(crate) mod helper;" => "mod name;";
    extern_crate_is_refused:
        "extern crate std;" => "extern";
    inline_asm_is_refused:
        "pub fn f() { core::arch::asm!(\"nop\"); }" => "assembly";
    global_asm_is_refused:
        "core::arch::global_asm!(\".globl x\");" => "assembly";
    link_attribute_is_refused:
        "#[link(name = \"c\")]\nfn f() {}" => "link";
    link_section_forging_the_abi_section_is_refused:
        "#[link_section = \"hypoforge.abi\"]\nstatic FAKE: [u8; 4] = [9, 0, 0, 0];" => "link_section";
    used_attribute_is_refused:
        "#[used]\nstatic KEEP: u8 = 0;" => "used";
    global_allocator_attribute_is_refused:
        "#[global_allocator]\nstatic A: u8 = 0;" => "global_allocator";
    panic_handler_attribute_is_refused:
        "#[panic_handler]\nfn on_panic(_: &core::panic::PanicInfo) -> ! { loop {} }" => "panic_handler";
    extern_block_is_refused:
        "extern \"C\" {\n    fn getpid() -> i32;\n}" => "extern";
    extern_abi_function_is_refused:
        "pub extern \"C\" fn hf_act_forward(a: i32, b: i32, n: i32) -> i32 { 0 }" => "extern";
    unsafe_block_is_refused:
        &activation_with("fn peek() -> u8 { unsafe { *(8 as *const u8) } }") => "unsafe";
    unsafe_fn_is_refused:
        "unsafe fn danger() {}" => "unsafe";
    unsafe_impl_is_refused:
        "struct S;\nunsafe impl Sync for S {}" => "unsafe";
    unsafe_attribute_is_refused:
        "#[unsafe(no_mangle)]\npub fn f() {}" => "unsafe";
    no_mangle_is_refused:
        "#[no_mangle]\npub fn hf_alloc(n: i32) -> i32 { n }" => "no_mangle";
    export_name_is_refused:
        "#[export_name = \"hf_act_forward\"]\npub fn f() {}" => "export_name";
    recursion_limit_crate_attribute_is_refused:
        "#![recursion_limit = \"100000\"]\nfn f() {}" => "crate attribute";
    feature_crate_attribute_is_refused:
        "#![feature(core_intrinsics)]\nfn f() {}" => "crate attribute";
    forbidden_word_in_unparsable_text_is_refused:
        "fn f( { include_str" => "include_str";
}

#[test]
fn policy_messages_carry_line_and_column() {
    let message = expect_policy("fn ok() {}\n\nfn bad() -> u8 {\n    unsafe { 0 }\n}\n");
    assert!(message.starts_with("line 4, column 5: "), "{message}");
}

#[test]
fn empty_source_is_refused() {
    let message = expect_policy_bytes(b"");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn whitespace_only_source_is_refused() {
    let message = expect_policy_bytes(b" \n\t\r\n  ");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn binary_source_is_refused() {
    let mut bytes = b"use hypoforge_sdk::prelude::*;\n".to_vec();
    bytes.extend_from_slice(&[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    let message = expect_policy_bytes(&bytes);
    assert!(
        message.contains("control character") && message.contains("binary"),
        "{message}"
    );
}

#[test]
fn non_utf8_source_is_refused() {
    let mut bytes = b"fn f() -> &'static str { \"caf".to_vec();
    bytes.extend_from_slice(&[0xe9, b'"', b' ', b'}', b'\n']);
    let message = expect_policy_bytes(&bytes);
    assert!(message.contains("UTF-8"), "{message}");
    assert!(
        message.contains("offset 29"),
        "the message should say where: {message}"
    );
}

#[test]
fn two_megabyte_source_is_refused() {
    let mut source = activation_with("");
    while source.len() < 2 << 20 {
        source.push_str("// padding padding padding padding padding padding padding padding\n");
    }
    let message = expect_policy(&source);
    assert!(message.contains("limit"), "{message}");
    assert!(
        message.contains(&source.len().to_string()),
        "the message should give the size: {message}"
    );
}

#[test]
fn tolerated_crate_attributes_still_compile_and_validate() {
    let source = "#![no_std]\n#![allow(dead_code)]\n#![warn(unused)]\nuse hypoforge_sdk::prelude::*;\n\
                  fn unused_helper() {}\nfn swish<R: Real>(x: R) -> R { x * sigmoid(x) }\n\
                  activation!(name = \"swish\", f = swish);\n";
    let report = within_bound("compiling and validating", || {
        validate_wasm(&compile(source), Some(ComponentKind::Activation))
    });
    assert_valid(&report, "swish with tolerated crate attributes");
}

#[test]
fn blanking_tolerated_attributes_keeps_line_numbers() {
    // Line 7 holds a type error; rustc must still place it there once the (multi-line)
    // attributes are blanked.
    let source = "#![no_std]\n#![allow(\n    dead_code,\n)]\n\n// the error:\nfn broken() -> u8 { \"text\" }\n";
    let message = expect_compile_class(source.as_bytes(), ErrorClass::Compile);
    assert!(message.contains("hypothesis.rs:7:21"), "{message}");
}

#[test]
fn forbidden_words_in_strings_and_comments_are_fine() {
    let source = "// unsafe, include_str!, env!, #[path] mod x; extern \"C\"\n\
                  use hypoforge_sdk::prelude::*;\n\
                  /* asm! global_asm! #[no_mangle] */\n\
                  const NOTE: &str = \"unsafe env! include_bytes! mod x;\";\n\
                  fn f<R: Real>(x: R) -> R { if NOTE.len() > 1000 { R::zero() } else { x } }\n\
                  activation!(name = \"commented\", f = f);\n";
    assert_valid(
        &validate_wasm(&compile(source), None),
        "a hypothesis that only mentions forbidden words",
    );
}

/// The policy checks attributes by the names written inside `#[...]`; a macro can assemble the
/// attribute from fragments, and rustc then reads any file on the host. The file's first line
/// comes back in the diagnostics (here: `root:x:0:0:root:/root:/bin/bash`).
#[test]
fn path_attribute_assembled_by_a_macro_is_refused() {
    let message = expect_policy(
        "macro_rules! load { ($a:ident, $f:literal, $n:ident) => { #[$a = $f] mod $n; } }\n\
         load!(path, \"/etc/passwd\", stolen);\n",
    );
    assert!(message.contains("path"), "{message}");
}

/// Same hole through a `meta` fragment: `path` never appears inside `#[...]` in the source.
#[test]
fn path_attribute_passed_as_a_meta_fragment_is_refused() {
    let message = expect_policy(
        "macro_rules! load { ($a:meta, $n:ident) => { #[$a] mod $n; } }\n\
         load!(path = \"/etc/hostname\", stolen);\n",
    );
    assert!(message.contains("path"), "{message}");
}

/// `mod name;` written with the name as a macro fragment is not recognised either (rustc then
/// looks for another file, here only in its private directory).
#[test]
fn out_of_line_module_assembled_by_a_macro_is_refused() {
    let message =
        expect_policy("macro_rules! load { ($n:ident) => { mod $n; } }\nload!(helper);\n");
    assert!(message.contains("mod"), "{message}");
}

/// `//!` comments are inner doc attributes (`#![doc = "..."]`) to the tokenizer, and every
/// inner attribute outside the tolerated list is refused with "crate attribute `#![doc = ...]` is
/// not allowed; hypoforge sets the crate's attributes": a hypothesis that documents itself the
/// idiomatic way is rejected with a message about attributes its author never wrote.
#[test]
fn inner_doc_comments_are_tolerated() {
    let source = "//! Swish (Ramachandran et al., 2017).\nuse hypoforge_sdk::prelude::*;\n\
                  fn swish<R: Real>(x: R) -> R { x * sigmoid(x) }\nactivation!(name = \"swish\", f = swish);\n";
    assert_valid(
        &validate_wasm(&compile(source), None),
        "swish with a `//!` comment",
    );
}
