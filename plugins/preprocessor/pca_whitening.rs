// PCA whitening: project centered rows onto the covariance eigenvectors, divide by sqrt(eigenvalue + EPS).
use hypoforge_sdk::prelude::*;

/// Added to each eigenvalue so (near-)zero-variance directions stay finite.
const EPS: f64 = 1e-5;

struct PcaWhitening {
    mean: Vec<f64>,
    /// Eigenvectors as rows (`d × d`, row-major), each already divided by sqrt(eigenvalue + EPS).
    components: Vec<f64>,
}

impl Preprocessor for PcaWhitening {
    fn fit(train: Matrix<'_>) -> Self {
        let d = train.cols();
        let (mean, cov) = stats::covariance(train);
        let (values, mut components) = stats::symmetric_eigen(&cov, d);
        for (component, &lambda) in components.chunks_exact_mut(d.max(1)).zip(&values) {
            let scale = 1.0 / libm::sqrt(lambda.max(0.0) + EPS);
            for v in component {
                *v *= scale;
            }
        }
        PcaWhitening { mean, components }
    }

    fn transform_row(&self, row: &[f32], out: &mut [f32]) {
        let d = self.mean.len();
        for (o, component) in out.iter_mut().zip(self.components.chunks_exact(d.max(1))) {
            let dot: f64 = component
                .iter()
                .zip(row)
                .zip(&self.mean)
                .map(|((v, &x), m)| v * (f64::from(x) - m))
                .sum();
            *o = dot as f32;
        }
    }
}

preprocessor!(name = "pca_whitening", state = PcaWhitening);
