//! Statistics and linear algebra a preprocessor needs, in `f64` where accuracy matters.

use alloc::vec::Vec;

/// Mean of the values (0 for none).
pub fn mean(values: impl IntoIterator<Item = f32>) -> f32 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for v in values {
        sum += f64::from(v);
        n += 1;
    }
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}

/// Population variance of the values (0 for fewer than two).
pub fn variance(values: impl IntoIterator<Item = f32> + Clone) -> f32 {
    let m = f64::from(mean(values.clone()));
    let (mut acc, mut n) = (0.0f64, 0usize);
    for v in values {
        let d = f64::from(v) - m;
        acc += d * d;
        n += 1;
    }
    if n < 2 { 0.0 } else { (acc / n as f64) as f32 }
}

/// The values sorted ascending (NaN last), ready for [`quantile_sorted`].
pub fn sorted(values: impl IntoIterator<Item = f32>) -> Vec<f32> {
    let mut v: Vec<f32> = values.into_iter().collect();
    v.sort_unstable_by(f32::total_cmp);
    v
}

/// The `q`-quantile (`0 ≤ q ≤ 1`) of ascending `sorted` values, linearly interpolated.
pub fn quantile_sorted(sorted: &[f32], q: f32) -> f32 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f32;
            let lo = pos as usize;
            let hi = (lo + 1).min(n - 1);
            let t = pos - lo as f32;
            sorted[lo] + (sorted[hi] - sorted[lo]) * t
        }
    }
}

/// Median of the values.
pub fn median(values: impl IntoIterator<Item = f32>) -> f32 {
    quantile_sorted(&sorted(values), 0.5)
}

/// The inverse of the standard normal distribution function (Acklam's rational approximation,
/// relative error below 1.2e-9 in f64); `p` is clamped into `(0, 1)`.
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail(libm::sqrt(-2.0 * libm::log(p)))
    } else if p > 1.0 - 0.024_25 {
        -tail(libm::sqrt(-2.0 * libm::log(1.0 - p)))
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Covariance matrix (`cols × cols`, row-major, f64) of the rows of `x` around their means.
pub fn covariance(x: crate::Matrix<'_>) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (x.rows(), x.cols());
    let mut means = alloc::vec![0.0f64; d];
    for row in x.iter_rows() {
        for (m, &v) in means.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    for m in &mut means {
        *m /= n.max(1) as f64;
    }
    let mut cov = alloc::vec![0.0f64; d * d];
    let mut centered = alloc::vec![0.0f64; d];
    for row in x.iter_rows() {
        for ((c, &v), m) in centered.iter_mut().zip(row).zip(&means) {
            *c = f64::from(v) - m;
        }
        for i in 0..d {
            let ci = centered[i];
            for j in i..d {
                cov[i * d + j] += ci * centered[j];
            }
        }
    }
    let denom = (n.max(2) - 1) as f64;
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / denom;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (means, cov)
}

/// Eigen-decomposition of a symmetric `n × n` matrix (row-major) by cyclic Jacobi rotations.
/// Returns the eigenvalues, descending, and the eigenvectors as the rows of an `n × n` matrix.
pub fn symmetric_eigen(matrix: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = matrix.to_vec();
    let mut v = alloc::vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + libm::sqrt(theta * theta + 1.0));
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / libm::sqrt(t * t + 1.0);
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = alloc::vec![0.0f64; n * n];
    for (row, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[row * n + k] = v[k * n + i];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = sorted([4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        assert_eq!(median([5.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn inverse_normal_cdf_inverts() {
        assert!(inverse_normal_cdf(0.5).abs() < 1e-12);
        assert!((inverse_normal_cdf(0.975) - 1.959_963_985).abs() < 1e-7);
        assert!((inverse_normal_cdf(0.01) + 2.326_347_874).abs() < 1e-7);
    }

    #[test]
    fn jacobi_recovers_eigenpairs() {
        let m = [4.0, 1.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 1.0];
        let (values, vectors) = symmetric_eigen(&m, 3);
        for (k, &lambda) in values.iter().enumerate() {
            let v = &vectors[k * 3..k * 3 + 3];
            for i in 0..3 {
                let mv: f64 = (0..3).map(|j| m[i * 3 + j] * v[j]).sum();
                assert!((mv - lambda * v[i]).abs() < 1e-9);
            }
        }
        assert!(values[0] >= values[1] && values[1] >= values[2]);
    }
}
