//! The source policy: what a hypothesis may not say, checked on tokens before rustc sees it.
//!
//! The checks run on the token stream rather than a syntax tree so that no position a parser
//! might not visit (a macro body, a `cfg_attr`, an expression attribute) can hide a construct.
//! rustc itself adds `#![forbid(unsafe_code)]` and a clean, private environment behind this.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Largest source accepted, in bytes.
pub const DEFAULT_MAX_SOURCE_BYTES: usize = 64 * 1024;

/// Macros and names that read files or the environment, or emit raw machine code.
const FORBIDDEN_IDENTS: &[(&str, &str)] = &[
    ("include", "`include!` reads files at compile time"),
    ("include_str", "`include_str!` reads files at compile time"),
    (
        "include_bytes",
        "`include_bytes!` reads files at compile time",
    ),
    (
        "env",
        "`env!` reads the compiler's environment (the name `env` is reserved)",
    ),
    (
        "option_env",
        "`option_env!` reads the compiler's environment",
    ),
    ("asm", "inline assembly is not allowed"),
    ("global_asm", "inline assembly is not allowed"),
    ("naked_asm", "inline assembly is not allowed"),
    ("unsafe", "`unsafe` code is not allowed"),
    (
        "extern",
        "`extern` crates, blocks and functions are not allowed; the SDK is already linked",
    ),
    // The SDK's ABI halves turn addresses into slices; only its export macros call them.
    (
        "__abi",
        "the SDK's plugin ABI is internal; export with `activation!` and friends",
    ),
    (
        "__native",
        "the SDK's native ABI is internal; export with `activation!` and friends",
    ),
];

/// Attributes that change how or where code is linked, loaded or exported.
const FORBIDDEN_ATTRIBUTES: &[&str] = &[
    "path",
    "link",
    "link_name",
    "link_section",
    "link_ordinal",
    "no_mangle",
    "export_name",
    "used",
    "global_allocator",
    "panic_handler",
    "no_builtins",
    "linkage",
    // Reads a visualizer file from disk.
    "debugger_visualizer",
];

/// Crate-level attributes that are harmless (hypoforge sets `no_std` itself); they are blanked
/// out, keeping line and column numbers. Any other inner attribute is refused.
/// `doc` covers `//!` comments, which lex as `#![doc = "..."]`.
const TOLERATED_INNER_ATTRIBUTES: &[&str] =
    &["no_std", "doc", "allow", "warn", "deny", "forbid", "expect"];

/// A broken rule, with where it was broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(*.line, *.column))]
pub struct PolicyViolation {
    pub message: String,
    /// 1-based line, when the violation has a place.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {}: ", c + 1),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

impl PolicyViolation {
    fn whole(message: impl Into<String>) -> Self {
        PolicyViolation {
            message: message.into(),
            line: None,
            column: None,
        }
    }
    fn at(span: proc_macro2::Span, message: impl Into<String>) -> Self {
        let start = span.start();
        PolicyViolation {
            message: message.into(),
            line: Some(start.line),
            column: Some(start.column),
        }
    }
}

/// Check `source` and return the text to hand rustc (tolerated crate attributes blanked).
pub fn check(source: &[u8], max_bytes: usize) -> Result<String, PolicyViolation> {
    if source.is_empty() || source.iter().all(u8::is_ascii_whitespace) {
        return Err(PolicyViolation::whole("the source is empty"));
    }
    if source.len() > max_bytes {
        return Err(PolicyViolation::whole(format!(
            "the source is {} bytes; the limit is {max_bytes} bytes",
            source.len()
        )));
    }
    let text = std::str::from_utf8(source).map_err(|e| {
        PolicyViolation::whole(format!(
            "the source is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    if let Some(at) = text.find(|c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(PolicyViolation::whole(format!(
            "the source contains a control character at byte {at}; is it a binary file?"
        )));
    }
    match text.parse::<TokenStream>() {
        Ok(tokens) => {
            let mut blanks = Vec::new();
            walk(tokens, &mut blanks)?;
            Ok(blank_out(text, &blanks))
        }
        // Unlexable text cannot compile; rustc gives the better message. A conservative scan
        // of the raw text keeps the policy from depending on which lexer is right.
        Err(_) => {
            raw_scan(text)?;
            Ok(text.to_owned())
        }
    }
}

/// Byte ranges (start line/col, end line/col) to replace by spaces.
type Blank = (proc_macro2::LineColumn, proc_macro2::LineColumn);

fn walk(tokens: TokenStream, blanks: &mut Vec<Blank>) -> Result<(), PolicyViolation> {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in tokens.iter().enumerate() {
        match tree {
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                let bare = name.strip_prefix("r#").unwrap_or(&name);
                if let Some((_, why)) = FORBIDDEN_IDENTS.iter().find(|(n, _)| *n == bare) {
                    return Err(PolicyViolation::at(ident.span(), *why));
                }
                // `mod name;` makes rustc read another file, also when a macro supplies the
                // name (`mod $name;`).
                if bare == "mod" && is_out_of_line_module(&tokens[i + 1..]) {
                    return Err(PolicyViolation::at(
                        ident.span(),
                        "`mod name;` loads another file; write the module inline (`mod name { ... }`)",
                    ));
                }
            }
            TokenTree::Punct(p) if p.as_char() == '#' => {
                let inner =
                    matches!(tokens.get(i + 1), Some(TokenTree::Punct(b)) if b.as_char() == '!');
                let group_at = if inner { i + 2 } else { i + 1 };
                if let Some(TokenTree::Group(g)) = tokens.get(group_at)
                    && g.delimiter() == Delimiter::Bracket
                {
                    check_attribute(g.stream(), g.span())?;
                    if inner {
                        let first = g.stream().into_iter().next().map(|t| t.to_string());
                        match first {
                            Some(name) if TOLERATED_INNER_ATTRIBUTES.contains(&name.as_str()) => {
                                blanks.push((p.span().start(), g.span().end()));
                            }
                            _ => {
                                return Err(PolicyViolation::at(
                                    p.span(),
                                    format!(
                                        "crate attribute `#![{}]` is not allowed; hypoforge sets the crate's attributes",
                                        g.stream()
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
            TokenTree::Group(g) => walk(g.stream(), blanks)?,
            _ => {}
        }
    }
    Ok(())
}

/// After `mod`: a name (possibly a macro fragment `$name`) followed directly by `;`.
fn is_out_of_line_module(rest: &[TokenTree]) -> bool {
    let mut rest = rest
        .iter()
        .skip_while(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == '$'));
    matches!(rest.next(), Some(TokenTree::Ident(_)))
        && matches!(rest.next(), Some(TokenTree::Punct(p)) if p.as_char() == ';')
}

/// Reject an attribute that names a forbidden attribute anywhere inside (`cfg_attr` nests), or
/// that a macro assembles from fragments, since those could spell any attribute at all.
fn check_attribute(stream: TokenStream, span: proc_macro2::Span) -> Result<(), PolicyViolation> {
    for tree in stream {
        match tree {
            TokenTree::Punct(p) if p.as_char() == '$' => {
                return Err(PolicyViolation::at(
                    p.span(),
                    "attributes assembled from macro fragments (`#[$attr]`) are not allowed: \
                     they could spell `path`, `link` or any other forbidden attribute",
                ));
            }
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                if FORBIDDEN_ATTRIBUTES.contains(&name.as_str()) {
                    return Err(PolicyViolation::at(
                        ident.span(),
                        format!("the attribute `{name}` is not allowed in a hypothesis"),
                    ));
                }
                if name == "unsafe" {
                    return Err(PolicyViolation::at(
                        span,
                        "`unsafe` attributes are not allowed",
                    ));
                }
            }
            TokenTree::Group(g) => check_attribute(g.stream(), span)?,
            _ => {}
        }
    }
    Ok(())
}

fn blank_out(text: &str, blanks: &[Blank]) -> String {
    if blanks.is_empty() {
        return text.to_owned();
    }
    // proc-macro2 columns count chars; map (line, column) to byte offsets.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |lc: proc_macro2::LineColumn| {
        let start = line_starts.get(lc.line - 1).copied().unwrap_or(text.len());
        text[start..]
            .char_indices()
            .nth(lc.column)
            .map_or(text.len(), |(i, _)| start + i)
    };
    let mut out = text.to_owned().into_bytes();
    for &(from, to) in blanks {
        for b in &mut out[offset(from)..offset(to)] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes inside attributes were overwritten with ASCII spaces... unless the
    // attribute held non-ASCII text; fall back to a lossy conversion, which keeps lines intact.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// For text that does not lex: refuse it if a forbidden word appears anywhere at all.
fn raw_scan(text: &str) -> Result<(), PolicyViolation> {
    let words = text.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    for word in words {
        if let Some((_, why)) = FORBIDDEN_IDENTS.iter().find(|(n, _)| *n == word) {
            return Err(PolicyViolation::whole(*why));
        }
        if FORBIDDEN_ATTRIBUTES.contains(&word) || word == "mod" {
            return Err(PolicyViolation::whole(format!(
                "the source does not parse and mentions `{word}`, which the policy restricts; fix the syntax first"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(src: &str) -> PolicyViolation {
        match check(src.as_bytes(), DEFAULT_MAX_SOURCE_BYTES) {
            Err(v) => v,
            Ok(_) => panic!("accepted: {src}"),
        }
    }

    #[test]
    fn accepts_an_ordinary_hypothesis() {
        let src = "use hypoforge_sdk::prelude::*;\nfn f<R: Real>(x: R) -> R { x.max(R::zero()) }\nactivation!(name = \"r\", f = f);\n";
        assert_eq!(
            check(src.as_bytes(), DEFAULT_MAX_SOURCE_BYTES).as_deref(),
            Ok(src)
        );
    }

    #[test]
    fn names_each_forbidden_construct() {
        assert!(
            reject("const S: &str = include_str!(\"/etc/passwd\");")
                .message
                .contains("include_str")
        );
        assert!(
            reject("const S: &[u8] = core::include_bytes!(\"x\");")
                .message
                .contains("include_bytes")
        );
        assert!(
            reject("const K: &str = env!(\"OPENAI_API_KEY\");")
                .message
                .contains("env")
        );
        assert!(
            reject("const K: Option<&str> = option_env!(\"HOME\");")
                .message
                .contains("option_env")
        );
        assert!(
            reject("use core::include_str as inc;")
                .message
                .contains("include_str")
        );
        assert!(
            reject("#[path = \"/etc/x.rs\"] mod x;")
                .message
                .contains("path")
        );
        assert!(reject("mod helper;").message.contains("mod name;"));
        assert!(reject("extern crate std;").message.contains("extern"));
        assert!(
            reject("fn f() { hypoforge_sdk::__abi::free(8, 8) }")
                .message
                .contains("internal")
        );
        assert!(
            reject("use hypoforge_sdk::__native as n;")
                .message
                .contains("internal")
        );
        assert!(
            reject("extern \"C\" { fn getpid() -> i32; }")
                .message
                .contains("extern")
        );
        assert!(
            reject("fn f() { unsafe { core::arch::asm!(\"nop\") } }")
                .message
                .contains("unsafe")
        );
        assert!(
            reject("core::arch::global_asm!(\"\");")
                .message
                .contains("assembly")
        );
        assert!(
            reject("#[link(name = \"c\")] fn f() {}")
                .message
                .contains("link")
        );
        assert!(
            reject("#[cfg_attr(all(), path = \"x.rs\")] mod m { }")
                .message
                .contains("path")
        );
        assert!(
            reject("#[unsafe(no_mangle)] fn f() {}")
                .message
                .contains("unsafe")
        );
        assert!(
            reject("#[no_mangle] fn f() {}")
                .message
                .contains("no_mangle")
        );
        assert!(
            reject("#[debugger_visualizer(natvis_file = \"/etc/shadow\")] mod m {}")
                .message
                .contains("debugger_visualizer")
        );
        assert!(
            reject("#![recursion_limit = \"100000\"]")
                .message
                .contains("crate attribute")
        );
    }

    #[test]
    fn reports_line_and_column() {
        let v = reject("fn ok() {}\n\nfn bad() -> u8 {\n    unsafe { 0 }\n}\n");
        assert_eq!((v.line, v.column), (Some(4), Some(4)));
        assert!(v.to_string().starts_with("line 4, column 5: "));
    }

    #[test]
    fn blanks_tolerated_crate_attributes_keeping_lines() {
        let src = "#![no_std]\n#![allow(dead_code)]\nfn f() {}\n";
        let out = check(src.as_bytes(), DEFAULT_MAX_SOURCE_BYTES).ok();
        assert_eq!(
            out.as_deref(),
            Some("          \n                    \nfn f() {}\n")
        );
    }

    #[test]
    fn rejects_bad_encodings_and_sizes() {
        assert!(check(b"", 100).is_err());
        assert!(check(b"  \n ", 100).is_err());
        assert!(
            check(&[0xff, 0xfe, 0x00], 100)
                .unwrap_err()
                .message
                .contains("UTF-8")
        );
        assert!(
            check(b"fn f() {}\0\x01\x02", 100)
                .unwrap_err()
                .message
                .contains("binary")
        );
        assert!(check(&vec![b' '; 101][..], 100).is_err());
        let big = format!("fn f() {{}}{}", " ".repeat(200));
        assert!(
            check(big.as_bytes(), 100)
                .unwrap_err()
                .message
                .contains("limit")
        );
    }

    #[test]
    fn unlexable_text_goes_to_rustc_unless_it_mentions_forbidden_words() {
        assert!(check(b"fn f( { ", 1000).is_ok());
        assert!(check(b"fn f( { include_str", 1000).is_err());
    }

    #[test]
    fn words_inside_strings_and_comments_are_fine() {
        assert!(
            check(
                b"// unsafe env include\nconst S: &str = \"unsafe env!\";",
                1000
            )
            .is_ok()
        );
    }
}
