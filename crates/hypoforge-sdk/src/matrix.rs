//! Row-major matrix views over the buffers the host hands a plugin.

/// A read-only row-major matrix.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    rows: usize,
    cols: usize,
    data: &'a [f32],
}

impl<'a> Matrix<'a> {
    /// A view of `data` as `rows × cols`; `None` when the sizes disagree.
    pub fn new(rows: usize, cols: usize, data: &'a [f32]) -> Option<Self> {
        (rows.checked_mul(cols) == Some(data.len())).then_some(Matrix { rows, cols, data })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// All elements, row after row.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
    /// Element `(r, c)`.
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }
    /// Row `r`.
    pub fn row(&self, r: usize) -> &'a [f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
    /// The rows in order.
    pub fn iter_rows(&self) -> impl Iterator<Item = &'a [f32]> + 'a {
        // `max(1)` keeps `chunks_exact` happy for a zero-width matrix.
        self.data.chunks_exact(self.cols.max(1)).take(self.rows)
    }
    /// Column `c`, top to bottom.
    pub fn column(&self, c: usize) -> impl Iterator<Item = f32> + Clone + 'a {
        let (data, cols) = (self.data, self.cols);
        (0..self.rows).map(move |r| data[r * cols + c])
    }
}
