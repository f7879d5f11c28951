//! Paired win rates of a candidate against the baseline panel of its kind, with 95% intervals.
//!
//! Definitions follow DESIGN.md, "Reference evaluation protocol". Within a trial every run shares
//! the split, the initialization and the batch order, so the candidate is compared with each
//! baseline trial by trial, never across trials. A failed run (trap, timeout, non-finite loss)
//! ranks as an infinite loss: it loses to every finished run and ties every other failed run.
//!
//! Scores are kept as integer half-points (win 2, tie 1, loss 0) until the final division, so
//! that the invariants `BSOTA-WR ≤ B-WR` and `B-WR = 1 ⇔ BSOTA-WR = 1` hold exactly rather than
//! up to rounding.

use std::collections::BTreeMap;

use hypoforge_spec::rng::Rng;
use serde::{Deserialize, Serialize};

/// Two-sided 95% standard-normal quantile.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Resamples behind the bootstrap interval of B-WR.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Resamples cut from each tail of the sorted bootstrap means: 2.5% of them.
const BOOTSTRAP_TAIL: usize = BOOTSTRAP_RESAMPLES / 40;

// Fixed so that an interval is a pure function of the outcomes. Every candidate scored on the same
// trials is resampled identically (common random numbers), which keeps their intervals comparable.
const BOOTSTRAP_SEED: u64 = 0x6879_706f_666f_7267;

/// One run's result on one trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The run trained to the end. A non-finite `val_loss` still counts as a failure.
    Finished {
        val_loss: f64,
        val_accuracy: Option<f64>,
    },
    /// The run trapped, timed out or was aborted; `cause` says why.
    Failed { cause: String },
}

impl RunOutcome {
    /// The validation loss of a run that counts as finished; `None` for a failure, including a
    /// finished run whose loss is not finite.
    pub fn val_loss(&self) -> Option<f64> {
        match *self {
            RunOutcome::Finished { val_loss, .. } if val_loss.is_finite() => Some(val_loss),
            _ => None,
        }
    }

    /// The validation accuracy of a run that counts as finished, when it reported a finite one.
    pub fn val_accuracy(&self) -> Option<f64> {
        match *self {
            RunOutcome::Finished {
                val_loss,
                val_accuracy: Some(accuracy),
            } if val_loss.is_finite() && accuracy.is_finite() => Some(accuracy),
            _ => None,
        }
    }

    /// Whether the run counts as failed (and so as a loss for a candidate).
    pub fn is_failed(&self) -> bool {
        self.val_loss().is_none()
    }

    /// The loss used for ranking: `+∞` puts a failure behind every finished run and level with
    /// every other failure, and is never NaN, so plain comparisons are total.
    fn rank_loss(&self) -> f64 {
        self.val_loss().unwrap_or(f64::INFINITY)
    }
}

/// A trial: one task trained under one seed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Trial {
    pub task: String,
    pub seed: u64,
}

/// Win rates of one candidate over a set of trials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WinRates {
    /// Mean over trials and baselines of beating the baseline (a tie counts ½).
    pub b_wr: f64,
    /// 95% percentile-bootstrap interval of `b_wr`, resampling trials.
    pub b_wr_ci: [f64; 2],
    /// Fraction of trials on which the candidate strictly beats the best baseline.
    pub bsota_wr: f64,
    /// 95% Wilson score interval of `bsota_wr`.
    pub bsota_wr_ci: [f64; 2],
    /// The candidate's mean validation loss over its finished runs; `None` if none finished.
    pub mean_val_loss: Option<f64>,
    /// The candidate's mean validation accuracy over its finished runs that reported one.
    pub mean_val_accuracy: Option<f64>,
    /// Trials on which the candidate failed.
    pub failed_trials: usize,
    /// Trials scored.
    pub trials: usize,
    /// Baselines in the panel.
    pub baselines: usize,
    /// The same rates per task, sorted by task name.
    pub per_task: Vec<TaskWinRates>,
}

/// Win rates of one candidate on the trials of one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskWinRates {
    pub task: String,
    pub trials: usize,
    pub b_wr: f64,
    pub bsota_wr: f64,
    pub mean_val_loss: Option<f64>,
    pub mean_val_accuracy: Option<f64>,
    pub failed_trials: usize,
}

/// Why win rates could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("no trials to score")]
    NoTrials,
    #[error("empty baseline panel: win rates need at least one baseline")]
    EmptyPanel,
    #[error("the candidate has {outcomes} outcomes for {trials} trials")]
    CandidateLength { trials: usize, outcomes: usize },
    #[error("baseline {baseline} of the panel has {outcomes} outcomes for {trials} trials")]
    BaselineLength {
        baseline: usize,
        trials: usize,
        outcomes: usize,
    },
}

/// Scores `candidate` against every baseline of `panel`.
///
/// `candidate[i]` and `panel[b][i]` are the runs on `trials[i]`. Trials are weighted equally, so a
/// task's weight overall is its number of trials.
pub fn win_rates(
    trials: &[Trial],
    candidate: &[RunOutcome],
    panel: &[&[RunOutcome]],
) -> Result<WinRates, MetricsError> {
    if panel.is_empty() {
        return Err(MetricsError::EmptyPanel);
    }
    if candidate.len() != trials.len() {
        return Err(MetricsError::CandidateLength {
            trials: trials.len(),
            outcomes: candidate.len(),
        });
    }
    if let Some((baseline, runs)) = panel
        .iter()
        .enumerate()
        .find(|(_, runs)| runs.len() != trials.len())
    {
        return Err(MetricsError::BaselineLength {
            baseline,
            trials: trials.len(),
            outcomes: runs.len(),
        });
    }
    if trials.is_empty() {
        return Err(MetricsError::NoTrials);
    }

    let baselines = panel.len();
    let mut overall = Tally::default();
    let mut by_task: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut points = Vec::with_capacity(trials.len());
    for (t, (trial, run)) in trials.iter().zip(candidate).enumerate() {
        let score = score_trial(run, panel.iter().map(|runs| &runs[t]));
        overall.add(run, score);
        by_task.entry(&trial.task).or_default().add(run, score);
        points.push(score.half_points);
    }

    let max_points = 2 * baselines as u64;
    let b_wr_ci = bootstrap_interval(&points, max_points).ok_or(MetricsError::NoTrials)?;
    let bsota_wr_ci =
        wilson_interval(overall.bsota_wins, overall.trials).ok_or(MetricsError::NoTrials)?;
    let per_task = by_task
        .into_iter()
        .map(|(task, tally)| TaskWinRates {
            task: task.to_owned(),
            trials: tally.trials,
            b_wr: tally.b_wr(max_points),
            bsota_wr: tally.bsota_wr(),
            mean_val_loss: tally.mean_val_loss(),
            mean_val_accuracy: tally.mean_val_accuracy(),
            failed_trials: tally.failed,
        })
        .collect();
    Ok(WinRates {
        b_wr: overall.b_wr(max_points),
        b_wr_ci,
        bsota_wr: overall.bsota_wr(),
        bsota_wr_ci,
        mean_val_loss: overall.mean_val_loss(),
        mean_val_accuracy: overall.mean_val_accuracy(),
        failed_trials: overall.failed,
        trials: overall.trials,
        baselines,
        per_task,
    })
}

/// Kendall's τ-b between two scorings of the same items (ties in either count as neither
/// concordant nor discordant, with the τ-b correction): 1 when they order the items alike, −1
/// when reversed. `None` with fewer than two items, differing lengths, a non-finite score, or
/// when one scoring ties everything (the correlation is undefined).
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let dx = x[i].partial_cmp(&x[j])?;
            let dy = y[i].partial_cmp(&y[j])?;
            use std::cmp::Ordering::Equal;
            match (dx, dy) {
                (Equal, Equal) => {
                    tied_x += 1;
                    tied_y += 1;
                }
                (Equal, _) => tied_x += 1,
                (_, Equal) => tied_y += 1,
                _ if dx == dy => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let pairs = (x.len() * (x.len() - 1) / 2) as i64;
    let denominator = (((pairs - tied_x) * (pairs - tied_y)) as f64).sqrt();
    (denominator > 0.0).then(|| (concordant - discordant) as f64 / denominator)
}

/// The 95% Wilson score interval of `successes` out of `trials`; `None` when `trials` is 0 or
/// `successes` exceeds it.
pub fn wilson_interval(successes: usize, trials: usize) -> Option<[f64; 2]> {
    if trials == 0 || successes > trials {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z_95 * Z_95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z_95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At p = 0 (p = 1) the lower (upper) bound is exactly 0 (1); rounding would leave it a hair off.
    let lo = if successes == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if successes == trials {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Some([lo, hi])
}

/// One trial's comparison of the candidate with the panel.
#[derive(Clone, Copy, Debug)]
struct TrialScore {
    /// Two per baseline beaten, one per tie.
    half_points: u64,
    /// Strictly better than every baseline.
    bsota_win: bool,
}

fn score_trial<'a>(
    candidate: &RunOutcome,
    baselines: impl Iterator<Item = &'a RunOutcome>,
) -> TrialScore {
    let h = candidate.rank_loss();
    let mut half_points = 0;
    let mut best = f64::INFINITY;
    for baseline in baselines {
        let b = baseline.rank_loss();
        // `==`, not `total_cmp`: a loss of -0.0 ties one of 0.0.
        half_points += if h < b {
            2
        } else if h == b {
            1
        } else {
            0
        };
        best = best.min(b);
    }
    TrialScore {
        half_points,
        bsota_win: h < best,
    }
}

/// Running sums over a set of trials.
#[derive(Debug, Default)]
struct Tally {
    trials: usize,
    half_points: u64,
    bsota_wins: usize,
    failed: usize,
    loss_sum: f64,
    losses: usize,
    accuracy_sum: f64,
    accuracies: usize,
}

impl Tally {
    fn add(&mut self, candidate: &RunOutcome, score: TrialScore) {
        self.trials += 1;
        self.half_points += score.half_points;
        self.bsota_wins += usize::from(score.bsota_win);
        match candidate.val_loss() {
            Some(loss) => {
                self.loss_sum += loss;
                self.losses += 1;
            }
            None => self.failed += 1,
        }
        if let Some(accuracy) = candidate.val_accuracy() {
            self.accuracy_sum += accuracy;
            self.accuracies += 1;
        }
    }

    fn b_wr(&self, max_points: u64) -> f64 {
        self.half_points as f64 / (max_points * self.trials as u64) as f64
    }

    fn bsota_wr(&self) -> f64 {
        self.bsota_wins as f64 / self.trials as f64
    }

    fn mean_val_loss(&self) -> Option<f64> {
        (self.losses > 0).then(|| self.loss_sum / self.losses as f64)
    }

    fn mean_val_accuracy(&self) -> Option<f64> {
        (self.accuracies > 0).then(|| self.accuracy_sum / self.accuracies as f64)
    }
}

/// Percentile-bootstrap 95% interval of the mean per-trial score `points[t] / max_points`,
/// resampling trials with replacement; widened to contain the estimate. `None` without trials.
fn bootstrap_interval(points: &[u64], max_points: u64) -> Option<[f64; 2]> {
    let n = points.len();
    if n == 0 {
        return None;
    }
    let denom = (max_points * n as u64) as f64;
    let estimate = points.iter().sum::<u64>() as f64 / denom;
    let mut rng = Rng::new(BOOTSTRAP_SEED);
    // Resampled sums stay integers, so equal per-trial scores collapse the interval exactly.
    let mut sums: Vec<u64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| points[rng.below(n)]).sum())
        .collect();
    sums.sort_unstable();
    let lo = sums[BOOTSTRAP_TAIL] as f64 / denom;
    let hi = sums[BOOTSTRAP_RESAMPLES - 1 - BOOTSTRAP_TAIL] as f64 / denom;
    Some([
        lo.min(estimate).clamp(0.0, 1.0),
        hi.max(estimate).clamp(0.0, 1.0),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn kendall_tau_b_on_known_cases() {
        let tau = |x: &[f64], y: &[f64]| kendall_tau_b(x, y);
        assert_eq!(
            tau(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]),
            Some(1.0)
        );
        assert_eq!(
            tau(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]),
            Some(-1.0)
        );
        // One swapped pair of six: (5 - 1) / 6.
        let t = tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((t - 4.0 / 6.0).abs() < 1e-12, "{t}");
        // τ-b with a tie in x: pairs 3, tied_x 1, concordant 2 → 2 / sqrt(2 · 3).
        let t = tau(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((t - 2.0 / 6f64.sqrt()).abs() < 1e-12, "{t}");
        // Ten pairs: 7 concordant, 1 discordant, one tie in each: (7 − 1) / sqrt(9 · 9).
        let t = tau(&[1.0, 2.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 3.0, 3.0, 5.0]).unwrap();
        assert!((t - 6.0 / 9.0).abs() < 1e-12, "{t}");
        assert_eq!(tau(&[1.0], &[1.0]), None);
        assert_eq!(tau(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(tau(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(tau(&[1.0, f64::NAN], &[1.0, 2.0]), None);
    }

    use super::*;

    fn ok(val_loss: f64) -> RunOutcome {
        RunOutcome::Finished {
            val_loss,
            val_accuracy: None,
        }
    }

    fn ok_acc(val_loss: f64, accuracy: f64) -> RunOutcome {
        RunOutcome::Finished {
            val_loss,
            val_accuracy: Some(accuracy),
        }
    }

    fn failed() -> RunOutcome {
        RunOutcome::Failed {
            cause: "trap: unreachable".to_owned(),
        }
    }

    fn runs(losses: &[f64]) -> Vec<RunOutcome> {
        losses.iter().copied().map(ok).collect()
    }

    fn trials_of(task: &str, n: usize) -> Vec<Trial> {
        (0..n as u64)
            .map(|seed| Trial {
                task: task.to_owned(),
                seed,
            })
            .collect()
    }

    fn score(trials: &[Trial], candidate: &[RunOutcome], panel: &[Vec<RunOutcome>]) -> WinRates {
        let panel: Vec<&[RunOutcome]> = panel.iter().map(Vec::as_slice).collect();
        win_rates(trials, candidate, &panel).unwrap()
    }

    fn assert_close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} is not within {tolerance} of {expected}"
        );
    }

    /// One baseline; trial `t` is a win, a tie or a loss as `pattern[t]` is 2, 1 or 0.
    fn scored_pattern(pattern: &[u8]) -> WinRates {
        let candidate = runs(&vec![1.0; pattern.len()]);
        let baseline: Vec<f64> = pattern
            .iter()
            .map(|p| match p {
                2 => 2.0,
                1 => 1.0,
                _ => 0.5,
            })
            .collect();
        score(
            &trials_of("t", pattern.len()),
            &candidate,
            &[runs(&baseline)],
        )
    }

    #[test]
    fn beating_every_baseline_everywhere_scores_one() {
        let trials = trials_of("iris", 5);
        let candidate = runs(&[0.1, 0.2, 0.3, 0.4, 0.5]);
        let panel = [
            runs(&[0.2, 0.3, 0.4, 0.5, 0.6]),
            runs(&[1.0, 1.0, 1.0, 1.0, 1.0]),
        ];
        let r = score(&trials, &candidate, &panel);
        assert_eq!((r.b_wr, r.bsota_wr), (1.0, 1.0));
        assert_eq!(r.b_wr_ci, [1.0, 1.0]);
        assert_eq!(r.bsota_wr_ci, wilson_interval(5, 5).unwrap());
        assert_eq!((r.trials, r.baselines, r.failed_trials), (5, 2, 0));
        assert_close(r.mean_val_loss.unwrap(), 0.3, 1e-12);
        assert_eq!(r.mean_val_accuracy, None);
    }

    #[test]
    fn losing_everywhere_scores_zero() {
        let trials = trials_of("iris", 4);
        let candidate = runs(&[2.0, 2.0, 2.0, 2.0]);
        let panel = [runs(&[1.0, 1.5, 0.5, 1.9]), runs(&[1.0, 1.0, 1.0, 1.0])];
        let r = score(&trials, &candidate, &panel);
        assert_eq!((r.b_wr, r.bsota_wr), (0.0, 0.0));
        assert_eq!(r.b_wr_ci, [0.0, 0.0]);
        assert_eq!(r.bsota_wr_ci[0], 0.0);
    }

    #[test]
    fn ties_count_half_for_b_wr_and_lose_for_bsota() {
        let trials = trials_of("wine", 3);
        let candidate = runs(&[1.0, 2.0, 1.0]);
        let panel = [runs(&[1.0, 2.5, 2.0]), runs(&[1.5, 2.0, 3.0])];
        let r = score(&trials, &candidate, &panel);
        // Trial 1: tie + win = 3/4 (ties the best); trial 2: win + tie = 3/4 (ties the best);
        // trial 3: win + win = 4/4 (beats the best).
        assert_close(r.b_wr, 10.0 / 12.0, 1e-15);
        assert_close(r.bsota_wr, 1.0 / 3.0, 1e-15);
    }

    #[test]
    fn signed_zero_losses_tie() {
        let r = score(&trials_of("t", 1), &runs(&[-0.0]), &[runs(&[0.0])]);
        assert_eq!((r.b_wr, r.bsota_wr), (0.5, 0.0));
    }

    #[test]
    fn candidate_identical_to_a_panel_member() {
        let trials = trials_of("digits", 3);
        let candidate = runs(&[0.5, 0.7, 0.3]);
        let panel = [
            runs(&[0.5, 0.7, 0.3]),
            runs(&[0.4, 0.9, 0.35]),
            runs(&[0.6, 0.6, 0.2]),
        ];
        let r = score(&trials, &candidate, &panel);
        // Half-points per trial against (itself, second, third):
        // 1 + 0 + 2 = 3, 1 + 2 + 0 = 3, 1 + 2 + 0 = 3, out of 6 each.
        assert_close(r.b_wr, 9.0 / 18.0, 1e-15);
        // Tying itself means it never beats the best strictly.
        assert_eq!(r.bsota_wr, 0.0);

        // Against a panel of itself alone, everything is a tie.
        let r = score(&trials, &candidate, &panel[..1]);
        assert_eq!((r.b_wr, r.bsota_wr), (0.5, 0.0));
        assert_eq!(r.b_wr_ci, [0.5, 0.5]);
    }

    #[test]
    fn failures_lose_for_the_candidate_and_tie_each_other() {
        let trials = trials_of("mnist", 5);
        let candidate = [
            failed(),
            ok_acc(0.3, 0.9),
            ok_acc(f64::NAN, 0.8),
            ok(0.5),
            ok_acc(f64::NEG_INFINITY, 0.7),
        ];
        let panel = [
            vec![ok(0.5), failed(), ok(0.2), ok(f64::INFINITY), ok(0.2)],
            vec![failed(), failed(), ok(0.9), ok(0.4), ok(0.9)],
        ];
        let r = score(&trials, &candidate, &panel);
        // Half-points: failed vs (finished, failed) = 0 + 1; finished vs two failures = 2 + 2 and a
        // BSOTA win; NaN and -inf are failures = 0 + 0; 0.5 vs (inf, 0.4) = 2 + 0.
        assert_close(r.b_wr, 7.0 / 20.0, 1e-15);
        assert_close(r.bsota_wr, 1.0 / 5.0, 1e-15);
        assert_eq!(r.failed_trials, 3);
        assert_close(r.mean_val_loss.unwrap(), 0.4, 1e-15);
        // Accuracies of runs that failed on their loss are not averaged in.
        assert_eq!(r.mean_val_accuracy, Some(0.9));
    }

    #[test]
    fn a_failed_candidate_loses_even_when_every_baseline_failed() {
        let r = score(
            &trials_of("t", 1),
            &[failed()],
            &[vec![failed()], vec![failed()]],
        );
        assert_eq!((r.b_wr, r.bsota_wr), (0.5, 0.0));
        assert_eq!(r.failed_trials, 1);
        assert_eq!(r.mean_val_loss, None);
    }

    #[test]
    fn outcome_accessors_treat_non_finite_losses_as_failures() {
        assert!(ok(f64::NAN).is_failed());
        assert!(ok(f64::INFINITY).is_failed());
        assert!(failed().is_failed());
        assert!(!ok(0.0).is_failed());
        assert_eq!(ok_acc(0.1, 0.5).val_accuracy(), Some(0.5));
        assert_eq!(ok_acc(f64::NAN, 0.5).val_accuracy(), None);
        assert_eq!(ok_acc(0.1, f64::NAN).val_accuracy(), None);
    }

    #[test]
    fn wilson_matches_published_values() {
        let check = |successes, n, expected: [f64; 2]| {
            let [lo, hi] = wilson_interval(successes, n).unwrap();
            assert_close(lo, expected[0], 1e-4);
            assert_close(hi, expected[1], 1e-4);
        };
        check(0, 10, [0.0, 0.2775]);
        check(10, 10, [0.7225, 1.0]);
        check(5, 10, [0.2366, 0.7634]);
        assert_eq!(wilson_interval(0, 10).unwrap()[0], 0.0);
        assert_eq!(wilson_interval(10, 10).unwrap()[1], 1.0);
    }

    #[test]
    fn wilson_bounds_solve_the_score_equation() {
        // The Wilson bounds are the roots p of (p̂ − p)² = z² p (1 − p) / n, i.e. of
        // (1 + z²/n) p² − (2p̂ + z²/n) p + p̂² = 0.
        for (successes, n) in [(81, 263), (1, 1000), (999, 1000), (3, 7), (1, 1)] {
            let p_hat = successes as f64 / n as f64;
            let z2n = Z_95 * Z_95 / n as f64;
            let (a, b, c) = (1.0 + z2n, -(2.0 * p_hat + z2n), p_hat * p_hat);
            let root = (b * b - 4.0 * a * c).sqrt();
            let expected = [(-b - root) / (2.0 * a), (-b + root) / (2.0 * a)];
            let [lo, hi] = wilson_interval(successes, n).unwrap();
            assert_close(lo, expected[0], 1e-12);
            assert_close(hi, expected[1], 1e-12);
            assert!(lo <= p_hat && p_hat <= hi);
        }
    }

    #[test]
    fn wilson_rejects_empty_and_impossible_counts() {
        assert_eq!(wilson_interval(0, 0), None);
        assert_eq!(wilson_interval(3, 2), None);
    }

    #[test]
    fn bootstrap_is_deterministic_and_contains_the_estimate() {
        let pattern = [2, 0, 1, 2, 2, 0, 1, 2, 0, 2, 2, 1];
        let a = scored_pattern(&pattern);
        let b = scored_pattern(&pattern);
        assert_eq!(a.b_wr_ci, b.b_wr_ci);
        let [lo, hi] = a.b_wr_ci;
        assert!(lo <= a.b_wr && a.b_wr <= hi, "{lo} ≤ {} ≤ {hi}", a.b_wr);
        assert!(lo < hi);
    }

    #[test]
    fn bootstrap_collapses_when_every_trial_scores_the_same() {
        // Each trial is one win and one tie against two baselines: 3/4 everywhere.
        let trials = trials_of("t", 20);
        let candidate = runs(&[1.0; 20]);
        let panel = [runs(&[2.0; 20]), runs(&[1.0; 20])];
        let r = score(&trials, &candidate, &panel);
        assert_eq!(r.b_wr, 0.75);
        assert_eq!(r.b_wr_ci, [0.75, 0.75]);
    }

    #[test]
    fn bootstrap_resamples_every_trial() {
        // One win and one loss: resampled means are 0, ½ and 1 with probabilities ¼, ½, ¼, so
        // both 2.5% tails reach the extremes.
        let r = scored_pattern(&[2, 0]);
        assert_eq!(r.b_wr_ci, [0.0, 1.0]);
        let r = scored_pattern(&[0, 2]);
        assert_eq!(r.b_wr_ci, [0.0, 1.0]);
    }

    #[test]
    fn bootstrap_narrows_as_trials_grow() {
        let mix = [2, 2, 1, 0, 2, 0, 2, 1, 0, 2];
        let small = scored_pattern(&mix);
        let large = scored_pattern(&mix.repeat(100));
        assert_eq!(small.b_wr, large.b_wr);
        let width = |r: &WinRates| r.b_wr_ci[1] - r.b_wr_ci[0];
        // The width shrinks like 1/√n: about 10× here.
        assert!(
            width(&large) < width(&small) / 5.0,
            "{} vs {}",
            width(&large),
            width(&small)
        );
    }

    #[test]
    fn bootstrap_of_a_fair_coin_matches_the_normal_interval() {
        // 200 trials, half wins and half losses: the per-trial score has standard deviation ½,
        // so the interval is about 0.5 ± 1.96 · 0.5 / √200 = 0.5 ± 0.069.
        let pattern: Vec<u8> = (0..200).map(|t| if t % 2 == 0 { 2 } else { 0 }).collect();
        let r = scored_pattern(&pattern);
        assert_eq!(r.b_wr, 0.5);
        assert_close(r.b_wr_ci[0], 0.431, 0.015);
        assert_close(r.b_wr_ci[1], 0.569, 0.015);
    }

    #[test]
    fn per_task_rates_are_sorted_and_weight_the_overall_by_trials() {
        let mut trials = trials_of("wine", 2);
        trials.extend(trials_of("iris", 3));
        let candidate = [
            ok_acc(0.1, 1.0),
            ok_acc(0.1, 0.8),
            ok(0.5),
            ok(0.5),
            failed(),
        ];
        let panel = [runs(&[0.2, 0.2, 0.6, 0.5, 0.4])];
        let r = score(&trials, &candidate, &panel);

        let iris = &r.per_task[0];
        let wine = &r.per_task[1];
        assert_eq!(r.per_task.len(), 2);
        assert_eq!((iris.task.as_str(), iris.trials), ("iris", 3));
        assert_eq!((wine.task.as_str(), wine.trials), ("wine", 2));
        // iris: win, tie, failed = (2 + 1 + 0) / 6.
        assert_close(iris.b_wr, 0.5, 1e-15);
        assert_close(iris.bsota_wr, 1.0 / 3.0, 1e-15);
        assert_eq!(iris.failed_trials, 1);
        assert_eq!(iris.mean_val_loss, Some(0.5));
        assert_eq!(iris.mean_val_accuracy, None);
        assert_eq!((wine.b_wr, wine.bsota_wr), (1.0, 1.0));
        assert_eq!(wine.failed_trials, 0);
        assert_close(wine.mean_val_accuracy.unwrap(), 0.9, 1e-15);

        assert_close(r.b_wr, (3.0 * 0.5 + 2.0 * 1.0) / 5.0, 1e-15);
        assert_close(r.bsota_wr, 3.0 / 5.0, 1e-15);
        assert_eq!(r.failed_trials, 1);
    }

    #[test]
    fn mismatched_and_empty_inputs_are_errors() {
        let trials = trials_of("t", 3);
        let three = runs(&[1.0, 2.0, 3.0]);
        let two = runs(&[1.0, 2.0]);
        assert_eq!(
            win_rates(&trials, &two, &[&three]),
            Err(MetricsError::CandidateLength {
                trials: 3,
                outcomes: 2
            })
        );
        assert_eq!(
            win_rates(&trials, &three, &[&three, &two]),
            Err(MetricsError::BaselineLength {
                baseline: 1,
                trials: 3,
                outcomes: 2
            })
        );
        assert_eq!(
            win_rates(&trials, &three, &[]),
            Err(MetricsError::EmptyPanel)
        );
        assert_eq!(win_rates(&[], &[], &[&[]]), Err(MetricsError::NoTrials));
        let message = MetricsError::BaselineLength {
            baseline: 1,
            trials: 3,
            outcomes: 2,
        }
        .to_string();
        assert!(message.contains("baseline 1") && message.contains("2 outcomes for 3 trials"));
    }

    /// Win probability straight from the definitions, with failures spelled out.
    fn reference_pair(h: &RunOutcome, b: &RunOutcome) -> f64 {
        match (h.val_loss(), b.val_loss()) {
            (None, None) => 0.5,
            (None, Some(_)) => 0.0,
            (Some(_), None) => 1.0,
            (Some(x), Some(y)) if x < y => 1.0,
            (Some(x), Some(y)) if x == y => 0.5,
            (Some(_), Some(_)) => 0.0,
        }
    }

    fn random_outcome(rng: &mut Rng) -> RunOutcome {
        const LOSSES: [f64; 5] = [0.1, 0.2, 0.3, 0.4, 0.5];
        match rng.below(20) {
            0..=2 => failed(),
            3 => ok(f64::NAN),
            4 => ok(if rng.below(2) == 0 {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            }),
            // Few distinct losses, so that ties are common.
            5..=12 => ok_acc(LOSSES[rng.below(LOSSES.len())], 0.5),
            _ => ok(0.1 + rng.below(1000) as f64 / 2000.0),
        }
    }

    #[test]
    fn random_cases_keep_the_invariants_and_match_the_definitions() {
        let mut rng = Rng::new(42);
        let mut perfect = 0;
        for case in 0..200 {
            let n = 1 + rng.below(30);
            let k = 1 + rng.below(4);
            let tasks = ["a", "b", "c"];
            let trials: Vec<Trial> = (0..n as u64)
                .map(|seed| Trial {
                    task: tasks[rng.below(tasks.len())].to_owned(),
                    seed,
                })
                .collect();
            let panel: Vec<Vec<RunOutcome>> = (0..k)
                .map(|_| (0..n).map(|_| random_outcome(&mut rng)).collect())
                .collect();
            // Some candidates beat every finished loss on every trial, so B-WR = 1 is reached.
            let dominant = rng.below(5) == 0;
            let candidate: Vec<RunOutcome> = (0..n)
                .map(|_| {
                    if dominant {
                        ok(0.0)
                    } else {
                        random_outcome(&mut rng)
                    }
                })
                .collect();
            let r = score(&trials, &candidate, &panel);

            assert!(
                0.0 <= r.bsota_wr && r.bsota_wr <= r.b_wr && r.b_wr <= 1.0,
                "case {case}: {r:?}"
            );
            assert_eq!(r.b_wr == 1.0, r.bsota_wr == 1.0, "case {case}: {r:?}");
            perfect += usize::from(r.b_wr == 1.0);
            for (ci, estimate) in [(r.b_wr_ci, r.b_wr), (r.bsota_wr_ci, r.bsota_wr)] {
                let [lo, hi] = ci;
                assert!(
                    0.0 <= lo && lo <= estimate && estimate <= hi && hi <= 1.0,
                    "case {case}: {ci:?} around {estimate}"
                );
            }

            let b_wr = (0..n)
                .flat_map(|t| panel.iter().map(move |runs| (t, &runs[t])))
                .map(|(t, b)| reference_pair(&candidate[t], b))
                .sum::<f64>()
                / (n * k) as f64;
            let bsota_wins = (0..n)
                .filter(|&t| {
                    panel
                        .iter()
                        .all(|runs| reference_pair(&candidate[t], &runs[t]) == 1.0)
                })
                .count();
            assert_close(r.b_wr, b_wr, 1e-12);
            assert_eq!(r.bsota_wr, bsota_wins as f64 / n as f64, "case {case}");
            let failed = candidate.iter().filter(|c| c.is_failed()).count();
            assert_eq!(r.failed_trials, failed);

            let per_task_trials: usize = r.per_task.iter().map(|p| p.trials).sum();
            assert_eq!(per_task_trials, n);
            let weighted = |rate: fn(&TaskWinRates) -> f64| {
                r.per_task
                    .iter()
                    .map(|p| rate(p) * p.trials as f64)
                    .sum::<f64>()
                    / n as f64
            };
            assert_close(weighted(|p| p.b_wr), r.b_wr, 1e-12);
            assert_close(weighted(|p| p.bsota_wr), r.bsota_wr, 1e-12);
            assert!(r.per_task.windows(2).all(|w| w[0].task < w[1].task));
        }
        assert!(perfect > 0, "no case reached B-WR = 1");
    }
}
