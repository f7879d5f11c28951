//! Embeds the library of published components (`library/<kind>/<name>.rs`), sorted by kind and
//! name, so that novelty is measured against the same library on every machine.

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("library");
    println!("cargo::rerun-if-changed={}", root.display());
    let mut entries = Vec::new();
    for kind in ["activation", "preprocessor", "regularizer"] {
        let dir = root.join(kind);
        let Ok(listing) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = listing
            .map(|e| e.expect("a readable library entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            entries.push(format!(
                "    ({kind:?}, {name:?}, include_str!({:?})),\n",
                file.display().to_string()
            ));
        }
    }
    let code = format!(
        "/// `(kind, name, source)` of every component in `library/`.\n\
         pub(crate) static LIBRARY: &[(&str, &str, &str)] = &[\n{}];\n",
        entries.concat()
    );
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("library.rs"), code).expect("OUT_DIR is writable");
}
