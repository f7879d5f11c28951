//! The paper's analyses of one kind's evaluated hypotheses: how much evaluation the reward model
//! saves (in-source and cross-source efficiency), and what the best ones are and how new.

use std::path::{Path, PathBuf};

use hypoforge_spec::ComponentKind;
use serde::{Deserialize, Serialize};

use hypoforge_report::escape;

use crate::RewardError;
use crate::efficiency::{Efficiency, efficiency};
use crate::features::{ACTIVATION_CORE, Behaviour, Features, activation_grid};
use crate::figures::{self, CurveSeries, FigureError, ShapePanel, WinRatePoint};
use crate::model::{FOLDS, RewardModel, Sample, fold_assignment};
use crate::novelty::{Novelty, novelty, similarity_matrix};

/// How many of the best hypotheses the novelty table, shapes and heatmap show.
pub const TOP: usize = 12;

/// An evaluated hypothesis with what the reward model reads.
#[derive(Clone, Debug)]
pub struct Evaluated {
    pub name: String,
    pub hash: String,
    /// Where it came from: `generator/strategy`.
    pub source: String,
    pub features: Features,
    pub behaviour: Behaviour,
    pub b_wr: f64,
    pub bsota_wr: f64,
}

/// A baseline's one-pass win rates, for the scatter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaselineRates {
    pub name: String,
    pub b_wr: f64,
    pub bsota_wr: f64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Options {
    /// The true top share the efficiency curve counts (0.1: the top 10%).
    pub top_share: f64,
    pub resamples: usize,
    pub seed: u64,
    pub bsota_threshold: f64,
}

/// Train on one source, order another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrossSource {
    pub train: String,
    pub test: String,
    pub trained_on: usize,
    pub efficiency: Efficiency,
}

/// One of the best hypotheses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopEntry {
    pub name: String,
    pub hash: String,
    pub b_wr: f64,
    pub bsota_wr: f64,
    pub novelty: Option<Novelty>,
}

/// Everything measured about one kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KindAnalysis {
    pub kind: ComponentKind,
    pub hypotheses: usize,
    /// Sources and how many hypotheses each gave.
    pub sources: Vec<(String, usize)>,
    /// Nested cross-validation: each fold ordered by a model (itself chosen by an inner
    /// cross-validation) that never saw the fold.
    pub in_source: Efficiency,
    pub cross_source: Vec<CrossSource>,
    /// The model trained on everything, as `reward train` would save it.
    pub model: RewardModel,
    pub top: Vec<TopEntry>,
    /// Behavioural similarity of the top entries, in their order.
    pub similarity: Vec<Vec<f64>>,
    /// Hypotheses whose N-score marks them as a rediscovery: (name, nearest known component).
    pub rediscoveries: Vec<(String, String)>,
}

/// The analyses of `evaluated` (one kind), against the `known` components for novelty.
pub fn analyse(
    kind: ComponentKind,
    evaluated: &[Evaluated],
    known: &[(String, Behaviour)],
    options: Options,
) -> Result<KindAnalysis, RewardError> {
    let samples: Vec<Sample> = evaluated.iter().map(sample).collect();
    let model = RewardModel::train(kind, &samples, options.bsota_threshold, options.seed)?;
    let truth: Vec<f64> = evaluated.iter().map(|e| e.b_wr).collect();
    let predicted = nested_predictions(kind, &samples, options)?;
    let in_source = efficiency(
        &truth,
        &predicted,
        options.top_share,
        options.resamples,
        options.seed,
    );

    let mut sources: Vec<(String, usize)> = Vec::new();
    for e in evaluated {
        match sources.iter_mut().find(|(s, _)| *s == e.source) {
            Some((_, n)) => *n += 1,
            None => sources.push((e.source.clone(), 1)),
        }
    }
    sources.sort();
    let mut cross_source = Vec::new();
    for (train, n_train) in &sources {
        if *n_train < 2 * FOLDS {
            continue;
        }
        let train_samples: Vec<Sample> = evaluated
            .iter()
            .filter(|e| &e.source == train)
            .map(sample)
            .collect();
        let model =
            RewardModel::train(kind, &train_samples, options.bsota_threshold, options.seed)?;
        for (test, n_test) in &sources {
            if train == test || *n_test < 2 {
                continue;
            }
            let test_set: Vec<&Evaluated> =
                evaluated.iter().filter(|e| &e.source == test).collect();
            let truth: Vec<f64> = test_set.iter().map(|e| e.b_wr).collect();
            let predicted = test_set
                .iter()
                .map(|e| model.predict(&e.features).map(|p| p.b_wr))
                .collect::<Result<Vec<f64>, _>>()?;
            cross_source.push(CrossSource {
                train: train.clone(),
                test: test.clone(),
                trained_on: train_samples.len(),
                efficiency: efficiency(
                    &truth,
                    &predicted,
                    options.top_share,
                    options.resamples,
                    options.seed,
                ),
            });
        }
    }

    // Every hypothesis's novelty, once: the top table and the rediscoveries both read it.
    let novelties: Vec<Option<Novelty>> = evaluated
        .iter()
        .map(|e| novelty(&e.behaviour, known))
        .collect();
    let mut best: Vec<usize> = (0..evaluated.len()).collect();
    best.sort_by(|&a, &b| {
        let (a, b) = (&evaluated[a], &evaluated[b]);
        b.bsota_wr
            .total_cmp(&a.bsota_wr)
            .then(b.b_wr.total_cmp(&a.b_wr))
            .then(a.name.cmp(&b.name))
    });
    best.truncate(TOP);
    let top: Vec<TopEntry> = best
        .iter()
        .map(|&i| TopEntry {
            name: evaluated[i].name.clone(),
            hash: evaluated[i].hash.clone(),
            b_wr: evaluated[i].b_wr,
            bsota_wr: evaluated[i].bsota_wr,
            novelty: novelties[i].clone(),
        })
        .collect();
    let similarity = similarity_matrix(
        &best
            .iter()
            .map(|&i| &evaluated[i].behaviour)
            .collect::<Vec<_>>(),
    );
    let rediscoveries = evaluated
        .iter()
        .zip(&novelties)
        .filter_map(|(e, n)| {
            n.as_ref()
                .filter(|n| n.rediscovery)
                .map(|n| (e.name.clone(), n.nearest.clone()))
        })
        .collect();
    Ok(KindAnalysis {
        kind,
        hypotheses: evaluated.len(),
        sources,
        in_source,
        cross_source,
        model,
        top,
        similarity,
        rediscoveries,
    })
}

fn sample(e: &Evaluated) -> Sample {
    Sample {
        features: e.features.clone(),
        b_wr: e.b_wr,
        bsota_wr: e.bsota_wr,
    }
}

/// Out-of-fold predictions where each outer fold's model was chosen without that fold.
fn nested_predictions(
    kind: ComponentKind,
    samples: &[Sample],
    options: Options,
) -> Result<Vec<f64>, RewardError> {
    // Outer folds drawn apart from the inner ones that choose each fold's model.
    let fold = fold_assignment(samples.len(), options.seed ^ 0x0F01D);
    let mut predicted = vec![0.0; samples.len()];
    for f in 0..FOLDS {
        let train: Vec<Sample> = samples
            .iter()
            .zip(&fold)
            .filter(|(_, g)| **g != f)
            .map(|(s, _)| s.clone())
            .collect();
        let model = RewardModel::train(kind, &train, options.bsota_threshold, options.seed)?;
        for (i, s) in samples.iter().enumerate() {
            if fold[i] == f {
                predicted[i] = model.predict(&s.features)?.b_wr;
            }
        }
    }
    Ok(predicted)
}

/// The figures of one kind's analysis in `dir`: win rates, efficiency curves, and for
/// activations the top shapes and their similarity. Returns the files written.
pub fn write_figures(
    analysis: &KindAnalysis,
    evaluated: &[Evaluated],
    baselines: &[BaselineRates],
    dir: &Path,
) -> Result<Vec<PathBuf>, FigureError> {
    let kind = analysis.kind;
    let mut files = Vec::new();
    let mut points: Vec<WinRatePoint> = evaluated
        .iter()
        .map(|e| WinRatePoint {
            name: e.name.clone(),
            b_wr: e.b_wr,
            bsota_wr: e.bsota_wr,
            baseline: false,
        })
        .collect();
    points.extend(baselines.iter().map(|b| WinRatePoint {
        name: b.name.clone(),
        b_wr: b.b_wr,
        bsota_wr: b.bsota_wr,
        baseline: true,
    }));
    files.extend(figures::win_rate_scatter(
        &format!(
            "{kind}s: B-WR against BSOTA-WR ({} hypotheses)",
            evaluated.len()
        ),
        &points,
        &dir.join(format!("win-rates-{kind}")),
    )?);

    let label = |what: &str, e: &Efficiency| {
        format!(
            "{what} (AUC {:.2} [{:.2}, {:.2}])",
            e.model.auc, e.auc_ci[0], e.auc_ci[1]
        )
    };
    let mut series = vec![CurveSeries {
        label: label("reward model, 5-fold", &analysis.in_source),
        evaluated: analysis.in_source.model.evaluated.clone(),
        found: analysis.in_source.model.found.clone(),
    }];
    for c in &analysis.cross_source {
        series.push(CurveSeries {
            label: label(
                &format!("trained on {}, ordering {}", c.train, c.test),
                &c.efficiency,
            ),
            evaluated: c.efficiency.model.evaluated.clone(),
            found: c.efficiency.model.found.clone(),
        });
    }
    series.push(CurveSeries {
        label: "random order (AUC 0.50)".into(),
        evaluated: vec![0.0, 1.0],
        found: vec![0.0, 1.0],
    });
    series.push(CurveSeries {
        label: format!("oracle (AUC {:.2})", analysis.in_source.oracle.auc),
        evaluated: analysis.in_source.oracle.evaluated.clone(),
        found: analysis.in_source.oracle.found.clone(),
    });
    files.extend(figures::efficiency_curves(
        &format!("{kind}s: efficiency of ordering by predicted reward"),
        &series,
        &dir.join(format!("efficiency-{kind}")),
    )?);

    if kind == ComponentKind::Activation && !analysis.top.is_empty() {
        let grid = activation_grid();
        let panels: Vec<ShapePanel> = analysis
            .top
            .iter()
            .filter_map(|t| {
                let e = evaluated.iter().find(|e| e.hash == t.hash)?;
                let Behaviour::Activation { f, .. } = &e.behaviour else {
                    return None;
                };
                Some(ShapePanel {
                    name: t.name.clone(),
                    x: grid[ACTIVATION_CORE]
                        .iter()
                        .map(|&x| f64::from(x))
                        .collect(),
                    f: f[ACTIVATION_CORE].iter().map(|&v| f64::from(v)).collect(),
                    bsota_wr: t.bsota_wr,
                    n_score: t.novelty.as_ref().map_or(f64::NAN, |n| n.n_score),
                })
            })
            .collect();
        files.extend(figures::top_shapes(
            &format!("The top {} activations by BSOTA-WR", panels.len()),
            &panels,
            &dir.join("top-activations"),
        )?);
        let names: Vec<String> = analysis.top.iter().map(|t| t.name.clone()).collect();
        files.extend(figures::similarity_heatmap(
            "Behavioural similarity of the top activations",
            &names,
            &analysis.similarity,
            &dir.join("similarity-activations"),
        )?);
    }
    Ok(files)
}

/// A table of the summary, rendered as Markdown or HTML.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The paragraph before the table.
    pub caption: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// A line after the table, if any.
    pub note: Option<String>,
}

/// The analyses as tables: efficiency per setting, the chosen models, and the top hypotheses of
/// each kind with their novelty.
pub fn summary_tables(analyses: &[KindAnalysis], options: Options) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut rows = Vec::new();
    for a in analyses {
        let mut row = |setting: String, e: &Efficiency| {
            rows.push(vec![
                a.kind.to_string(),
                setting,
                e.hypotheses.to_string(),
                e.top.to_string(),
                format!("{:.3}", e.model.auc),
                format!("[{:.3}, {:.3}]", e.auc_ci[0], e.auc_ci[1]),
                format!("{:.3}", e.oracle.auc),
                if e.beats_random { "yes" } else { "no" }.into(),
            ]);
        };
        row("in-source (nested 5-fold)".into(), &a.in_source);
        for c in &a.cross_source {
            row(
                format!(
                    "trained on {} ({}), tested on {}",
                    c.train, c.trained_on, c.test
                ),
                &c.efficiency,
            );
        }
    }
    tables.push(Table {
        caption: format!(
            "Efficiency: hypotheses ordered by predicted B-WR; the curve counts the true top \
             {:.0}% (by one-pass B-WR) found against the share evaluated; AUC with a 95% \
             bootstrap interval over hypotheses ({} resamples). Random order has AUC 0.50.",
            options.top_share * 100.0,
            options.resamples
        ),
        header: vec![
            "kind",
            "setting",
            "hypotheses",
            "top set",
            "AUC",
            "95% interval",
            "oracle",
            "beats random",
        ],
        rows,
        note: None,
    });
    tables.push(Table {
        caption: "The models trained on everything (chosen by 5-fold cross-validated Spearman \
                  correlation):"
            .into(),
        header: vec!["kind", "hypotheses", "features", "ridge λ", "CV Spearman"],
        rows: analyses
            .iter()
            .map(|a| {
                vec![
                    a.kind.to_string(),
                    a.model.trained_on.to_string(),
                    format!("{:?}", a.model.feature_set),
                    a.model.lambda.to_string(),
                    format!("{:.3}", a.model.cv_spearman),
                ]
            })
            .collect(),
        note: None,
    });
    for a in analyses {
        let note = (!a.rediscoveries.is_empty()).then(|| {
            let list: Vec<String> = a
                .rediscoveries
                .iter()
                .map(|(h, k)| format!("{h} ≈ {k}"))
                .collect();
            format!("Rediscoveries: {}.", list.join(", "))
        });
        tables.push(Table {
            caption: format!(
                "Top {} {}s by BSOTA-WR, with their N-score (behavioural distance to the nearest \
                 baseline or published component; 0 is a copy):",
                a.top.len(),
                a.kind
            ),
            header: vec!["#", "name", "B-WR", "BSOTA-WR", "N-score", "nearest known"],
            rows: a
                .top
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let (n, nearest) =
                        t.novelty.as_ref().map_or(("–".into(), "–".into()), |n| {
                            (format!("{:.3}", n.n_score), n.nearest.clone())
                        });
                    vec![
                        (i + 1).to_string(),
                        t.name.clone(),
                        format!("{:.3}", t.b_wr),
                        format!("{:.3}", t.bsota_wr),
                        n,
                        nearest,
                    ]
                })
                .collect(),
            note,
        });
    }
    tables
}

/// The summary as Markdown (what `reward efficiency` prints and writes to `summary.md`).
pub fn summary_markdown(analyses: &[KindAnalysis], options: Options) -> String {
    let mut md = String::new();
    for table in summary_tables(analyses, options) {
        md.push_str(&table.caption);
        md.push_str("\n\n| ");
        md.push_str(&table.header.join(" | "));
        md.push_str(" |\n|");
        for h in &table.header {
            // Numbers align right.
            let text = matches!(
                *h,
                "kind"
                    | "setting"
                    | "name"
                    | "features"
                    | "nearest known"
                    | "beats random"
                    | "95% interval"
            );
            md.push_str(if text { "---|" } else { "---:|" });
        }
        md.push('\n');
        for row in &table.rows {
            md.push_str("| ");
            md.push_str(
                &row.iter()
                    .map(|c| c.replace('|', "\\|"))
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
            md.push_str(" |\n");
        }
        if let Some(note) = &table.note {
            md.push('\n');
            md.push_str(note);
            md.push('\n');
        }
        md.push('\n');
    }
    md
}

/// A static page (`index.html`) of the summary and the figures: no scripts, no external
/// resources, every string escaped (hypothesis names come from a generator).
pub fn summary_html(analyses: &[KindAnalysis], options: Options, figures: &[PathBuf]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self'; style-src 'unsafe-inline'\">\n\
         <title>hypoforge: reward model analyses</title>\n<style>body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}\
         table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:0.2em 0.6em}\
         td{text-align:right}td:first-child,td:nth-child(2){text-align:left}img{max-width:100%;margin:0.5em 0}</style>\n\
         </head><body>\n<h1>Reward model analyses</h1>\n",
    );
    for table in summary_tables(analyses, options) {
        html.push_str(&format!("<p>{}</p>\n<table><tr>", escape(&table.caption)));
        for h in &table.header {
            html.push_str(&format!("<th>{}</th>", escape(h)));
        }
        html.push_str("</tr>\n");
        for row in &table.rows {
            html.push_str("<tr>");
            for cell in row {
                html.push_str(&format!("<td>{}</td>", escape(cell)));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
        if let Some(note) = &table.note {
            html.push_str(&format!("<p>{}</p>\n", escape(note)));
        }
    }
    html.push_str("<h2>Figures</h2>\n");
    for figure in figures
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "svg"))
    {
        if let Some(name) = figure.file_name().and_then(|n| n.to_str()) {
            let png = name.replace(".svg", ".png");
            html.push_str(&format!(
                "<p><a href=\"{png}\"><img src=\"{svg}\" alt=\"{svg}\"></a></p>\n",
                png = escape(&png),
                svg = escape(name)
            ));
        }
    }
    html.push_str("</body></html>\n");
    html
}
