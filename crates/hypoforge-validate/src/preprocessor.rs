//! Preprocessor checks: fit succeeds with a sane width, finite outputs (constant columns too),
//! exact output shape, determinism, a transform that neither learns nor looks across rows.

use hypoforge_plugin::Preprocessor;

use crate::probe::{PREPROCESSOR_COLS as COLS, preprocessor_matrix};
use crate::{Context, Failure, Run, same_bits};

const TRAIN_ROWS: usize = 200;
const VALID_ROWS: usize = 37;

pub(crate) fn checks(ctx: &Context<'_>, run: &mut Run) {
    let train = preprocessor_matrix(TRAIN_ROWS, 0x5eed_0010);
    let mut valid = preprocessor_matrix(VALID_ROWS, 0x5eed_0011);
    // Extremes the training data never showed.
    valid[..COLS].copy_from_slice(&[1e4, -1e4, 0.0, 1e4, -1e4, 7.0]);
    let fitted = || -> Result<(Preprocessor, usize), Failure> {
        let mut p = ctx.plugin.preprocessor(ctx.sandbox, ctx.limits)?;
        let width = p.fit(&train, TRAIN_ROWS, COLS)?;
        Ok((p, width))
    };

    run.check("fit", || {
        let (_, width) = fitted()?;
        Ok(format!(
            "fitted on {TRAIN_ROWS}×{COLS}; output width {width}"
        ))
    });
    run.check("transform_finite", || {
        let (mut p, width) = fitted()?;
        for (name, data, rows) in [
            ("train", &train, TRAIN_ROWS),
            ("validation", &valid, VALID_ROWS),
        ] {
            let out = transform(&mut p, data, rows)?;
            if let Some(i) = out.iter().position(|v| !v.is_finite()) {
                return Err(Failure::Wrong(format!(
                    "{name} row {}, output column {} is {}",
                    i / width,
                    i % width,
                    out[i]
                )));
            }
        }
        Ok("finite on training and validation rows, including unseen extremes".into())
    });
    run.check("constant_columns_finite", || {
        let constant: Vec<f32> = (0..50 * COLS).map(|i| (i % COLS) as f32 - 2.0).collect();
        let mut p = ctx.plugin.preprocessor(ctx.sandbox, ctx.limits)?;
        p.fit(&constant, 50, COLS)?;
        let out = transform(&mut p, &constant, 50)?;
        match out.iter().find(|v| !v.is_finite()) {
            Some(v) => Err(Failure::Wrong(format!(
                "a matrix of constant columns maps to {v}"
            ))),
            None => Ok("every column constant: outputs finite".into()),
        }
    });
    run.check("output_shape", || {
        let (mut p, width) = fitted()?;
        for rows in [1, VALID_ROWS, TRAIN_ROWS] {
            let out = transform(&mut p, &train[..rows * COLS], rows)?;
            if out.len() != rows * width {
                return Err(Failure::Wrong(format!(
                    "{rows} rows gave {} values",
                    out.len()
                )));
            }
        }
        Ok(format!(
            "rows preserved: n×{COLS} → n×{width} for n in 1, {VALID_ROWS}, {TRAIN_ROWS}"
        ))
    });
    run.check("deterministic", || {
        let (mut a, _) = fitted()?;
        let (mut b, _) = fitted()?;
        if !same_bits(
            &transform(&mut a, &valid, VALID_ROWS)?,
            &transform(&mut b, &valid, VALID_ROWS)?,
        ) {
            return Err(Failure::Wrong(
                "two fits on the same data transform differently".into(),
            ));
        }
        Ok("same bits from two independent fits".into())
    });
    run.check("transform_is_pure", || {
        let (mut p, _) = fitted()?;
        let first = transform(&mut p, &valid, VALID_ROWS)?;
        transform(&mut p, &train, TRAIN_ROWS)?;
        if !same_bits(&first, &transform(&mut p, &valid, VALID_ROWS)?) {
            return Err(Failure::Wrong(
                "transform changed the fitted state (it must not learn from the data it transforms)".into(),
            ));
        }
        Ok("transforming other data leaves the fitted state unchanged".into())
    });
    run.check("row_independent", || {
        let (mut p, width) = fitted()?;
        let all = transform(&mut p, &valid, VALID_ROWS)?;
        for row in [0, 1, VALID_ROWS - 1] {
            let one = transform(&mut p, &valid[row * COLS..(row + 1) * COLS], 1)?;
            if !same_bits(&one, &all[row * width..(row + 1) * width]) {
                return Err(Failure::Wrong(format!(
                    "row {row} transforms differently alone than in a batch (it looks at other rows)"
                )));
            }
        }
        Ok("a row's output depends only on that row".into())
    });
}

fn transform(p: &mut Preprocessor, data: &[f32], rows: usize) -> Result<Vec<f32>, Failure> {
    let mut out = Vec::new();
    p.transform(data, rows, COLS, &mut out)?;
    Ok(out)
}
