//! The baseline panel: the sources under `plugins/`, embedded so that an installed binary
//! carries its panel. They compile and validate like any hypothesis.

use hypoforge_spec::ComponentKind;

macro_rules! baseline {
    ($kind:literal, $name:literal) => {
        (
            $name,
            include_str!(concat!("../../../plugins/", $kind, "/", $name, ".rs")),
        )
    };
}

const ACTIVATIONS: &[(&str, &str)] = &[
    baseline!("activation", "elu"),
    baseline!("activation", "gelu"),
    baseline!("activation", "identity"),
    baseline!("activation", "leaky_relu"),
    baseline!("activation", "mish"),
    baseline!("activation", "relu"),
    baseline!("activation", "selu"),
    baseline!("activation", "sigmoid"),
    baseline!("activation", "silu"),
    baseline!("activation", "softplus"),
    baseline!("activation", "tanh"),
];

const PREPROCESSORS: &[(&str, &str)] = &[
    baseline!("preprocessor", "identity"),
    baseline!("preprocessor", "min_max"),
    baseline!("preprocessor", "pca_whitening"),
    baseline!("preprocessor", "quantile_normal"),
    baseline!("preprocessor", "robust"),
    baseline!("preprocessor", "standardize"),
];

const REGULARIZERS: &[(&str, &str)] = &[
    baseline!("regularizer", "elastic_net"),
    baseline!("regularizer", "l1"),
    baseline!("regularizer", "l2"),
    baseline!("regularizer", "max_norm"),
    baseline!("regularizer", "none"),
];

/// `(name, source)` of every baseline of `kind`.
pub fn sources(kind: ComponentKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        ComponentKind::Activation => ACTIVATIONS,
        ComponentKind::Preprocessor => PREPROCESSORS,
        ComponentKind::Regularizer => REGULARIZERS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_is_exactly_the_plugins_folder() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
        for kind in ComponentKind::ALL {
            let mut on_disk: Vec<String> = std::fs::read_dir(root.join(kind.as_str()))
                .unwrap()
                .filter_map(|e| {
                    let name = e.unwrap().file_name().into_string().unwrap();
                    name.strip_suffix(".rs").map(str::to_owned)
                })
                .collect();
            on_disk.sort();
            let embedded: Vec<&str> = sources(kind).iter().map(|(n, _)| *n).collect();
            assert_eq!(embedded, on_disk, "{kind}");
            for (name, source) in sources(kind) {
                assert!(source.contains(&format!("name = \"{name}\"")), "{name}");
            }
        }
    }
}
