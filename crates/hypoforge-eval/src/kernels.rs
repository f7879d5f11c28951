//! CPU kernels of one training step: matrix products through one seam (a GEMM crate), and the
//! hand-written elementwise parts (bias, softmax cross-entropy, MSE, Adam).
//!
//! Every kernel is single-threaded: parallelism is across trials, so a trial's bits never depend
//! on the thread count.

/// A row-major matrix operand, possibly read transposed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a> Operand<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "operand size disagrees with its shape"
        );
        Operand {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    pub fn t(self) -> Self {
        Operand {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Shape as used in the product.
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (row stride, column stride) as used in the product.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `c = a · b + beta · c`, with `c` row-major `m × n`.
pub(crate) fn matmul(a: Operand<'_>, b: Operand<'_>, beta: f32, c: &mut [f32]) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    assert_eq!(k, k2, "inner dimensions differ");
    assert_eq!(c.len(), m * n, "output size disagrees with the product");
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    // SAFETY: the asserts above tie every operand's length to its shape, and the strides come
    // from the same shapes, so every index sgemm forms lies inside its slice; `c` is exclusive.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            rsa,
            csa,
            b.data.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Add `bias` to every row of the row-major `rows × bias.len()` matrix `z`.
pub(crate) fn add_bias(z: &mut [f32], bias: &[f32]) {
    for row in z.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Column sums of a row-major `rows × out.len()` matrix, into `out`.
pub(crate) fn column_sums(m: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(out.len()) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// Mean softmax cross-entropy of `logits` (rows × classes) against `labels`, and its gradient
/// with respect to the logits in `grad` (already divided by the batch size). Also counts the
/// rows whose arg-max is the label.
pub(crate) fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    grad: Option<&mut [f32]>,
) -> (f64, usize) {
    let rows = labels.len();
    let mut total = 0.0f64;
    let mut correct = 0usize;
    let mut grad = grad;
    for (r, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let label = label as usize;
        let (argmax, max) =
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                });
        correct += usize::from(argmax == label);
        let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
        let log_sum = sum.ln() + f64::from(max);
        total += log_sum - f64::from(row[label]);
        if let Some(g) = grad.as_deref_mut() {
            let g = &mut g[r * classes..(r + 1) * classes];
            for (i, (gi, &v)) in g.iter_mut().zip(row).enumerate() {
                let p = (f64::from(v) - log_sum).exp();
                let target = if i == label { 1.0 } else { 0.0 };
                *gi = ((p - target) / rows as f64) as f32;
            }
        }
    }
    (total / rows.max(1) as f64, correct)
}

/// Mean squared error of `outputs` against `targets` (same shape), with its gradient.
pub(crate) fn mean_squared_error(
    outputs: &[f32],
    targets: &[f32],
    grad: Option<&mut [f32]>,
) -> f64 {
    let n = outputs.len().max(1) as f64;
    let total: f64 = outputs
        .iter()
        .zip(targets)
        .map(|(&y, &t)| {
            let d = f64::from(y) - f64::from(t);
            d * d
        })
        .sum();
    if let Some(g) = grad {
        for ((g, &y), &t) in g.iter_mut().zip(outputs).zip(targets) {
            *g = (2.0 * (f64::from(y) - f64::from(t)) / n) as f32;
        }
    }
    total / n
}

/// Adam's moment estimates for one parameter tensor.
#[derive(Clone, Debug)]
pub(crate) struct AdamState {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl AdamState {
    pub fn new(len: usize) -> Self {
        AdamState {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }
}

/// Adam's hyper-parameters (PyTorch's defaults in [`AdamConfig::default`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// One Adam update of `params` from `grads` at step `t` (1-based), in PyTorch's formulation:
/// `p -= lr / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)`.
pub(crate) fn adam_step(
    params: &mut [f32],
    grads: &[f32],
    state: &mut AdamState,
    config: &AdamConfig,
    t: u64,
) {
    let t = i32::try_from(t).unwrap_or(i32::MAX);
    let bias1 = 1.0 - config.beta1.powi(t);
    let bias2_sqrt = (1.0 - config.beta2.powi(t)).sqrt();
    let step = config.lr / bias1;
    for (((p, &g), m), v) in params
        .iter_mut()
        .zip(grads)
        .zip(&mut state.m)
        .zip(&mut state.v)
    {
        *m = config.beta1 * *m + (1.0 - config.beta1) * g;
        *v = config.beta2 * *v + (1.0 - config.beta2) * g * g;
        *p -= step * *m / (v.sqrt() / bias2_sqrt + config.eps);
    }
}

/// Plain SGD: `p -= lr · g`.
pub(crate) fn sgd_step(params: &mut [f32], grads: &[f32], lr: f32) {
    for (p, &g) in params.iter_mut().zip(grads) {
        *p -= lr * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], m: usize, k: usize, b: &[f32], n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; x.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = x[r * cols + c];
            }
        }
        t
    }

    #[test]
    fn matmul_handles_every_transposition() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let expected = naive(&a, m, k, &b, n);
        let at = transpose(&a, m, k);
        let bt = transpose(&b, k, n);
        let close = |c: &[f32]| c.iter().zip(&expected).all(|(x, y)| (x - y).abs() < 1e-5);
        for (a_op, b_op) in [
            (Operand::new(&a, m, k), Operand::new(&b, k, n)),
            (Operand::new(&at, k, m).t(), Operand::new(&b, k, n)),
            (Operand::new(&a, m, k), Operand::new(&bt, n, k).t()),
            (Operand::new(&at, k, m).t(), Operand::new(&bt, n, k).t()),
        ] {
            let mut c = vec![0.0; m * n];
            matmul(a_op, b_op, 0.0, &mut c);
            assert!(close(&c), "{c:?} vs {expected:?}");
        }
        // beta = 1 accumulates.
        let mut c = expected.clone();
        matmul(Operand::new(&a, m, k), Operand::new(&b, k, n), 1.0, &mut c);
        assert!(
            c.iter()
                .zip(&expected)
                .all(|(x, y)| (x - 2.0 * y).abs() < 1e-5)
        );
    }

    #[test]
    fn cross_entropy_matches_a_hand_computation() {
        // Two rows, three classes.
        let logits = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
        let labels = [2u32, 1];
        let mut grad = [0.0f32; 6];
        let (loss, correct) = softmax_cross_entropy(&logits, &labels, 3, Some(&mut grad));
        let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let expected = ((lse0 - 3.0) + 3f64.ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-9);
        assert_eq!(correct, 1);
        let p02 = (3.0 - lse0).exp();
        assert!((f64::from(grad[2]) - (p02 - 1.0) / 2.0).abs() < 1e-7);
        assert!((f64::from(grad[3]) - 1.0 / 6.0).abs() < 1e-7);
        assert!(grad.iter().sum::<f32>().abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let (loss, _) = softmax_cross_entropy(&[1e4, -1e4], &[0], 2, None);
        assert_eq!(loss, 0.0);
        let (loss, _) = softmax_cross_entropy(&[-1e4, 1e4], &[0], 2, None);
        assert!((loss - 2e4).abs() < 1e-6);
    }

    #[test]
    fn mse_and_its_gradient() {
        let mut g = [0.0f32; 2];
        let loss = mean_squared_error(&[1.0, 3.0], &[0.0, 1.0], Some(&mut g));
        assert_eq!(loss, 2.5);
        assert_eq!(g, [1.0, 2.0]);
    }

    #[test]
    fn adam_first_step_moves_each_parameter_by_lr() {
        // After one step m̂ = g and v̂ = g², so every parameter moves by lr·sign(g) (eps aside).
        let mut p = [1.0f32, -2.0, 0.5];
        let g = [0.3f32, -4.0, 1e-3];
        let mut state = AdamState::new(3);
        adam_step(&mut p, &g, &mut state, &AdamConfig::default(), 1);
        for (after, (before, g)) in p.iter().zip([1.0f32, -2.0, 0.5].iter().zip(g)) {
            let moved = before - after;
            assert!((moved - 1e-3 * g.signum()).abs() < 1e-6, "{moved}");
        }
    }

    #[test]
    fn bias_and_column_sums() {
        let mut z = [1.0f32, 2.0, 3.0, 4.0];
        add_bias(&mut z, &[10.0, 20.0]);
        assert_eq!(z, [11.0, 22.0, 13.0, 24.0]);
        let mut s = [0.0f32; 2];
        column_sums(&z, &mut s);
        assert_eq!(s, [24.0, 46.0]);
    }
}
