//! Matrix products through `matrixmultiply`, on strided views so transposes and column blocks
//! cost no copy.

/// A read-only matrix view: `rows × cols`, element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat::strided(data, rows, cols, cols, 1)
    }

    /// A view with explicit strides; panics when an element would fall outside `data`.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < data.len(), "matrix view out of bounds");
        Mat { data, rows, cols, rs, cs }
    }

    /// The transpose (a view: no copy).
    pub fn t(self) -> Self {
        Mat { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// Columns `from..from + n` (a view).
    pub fn cols(self, from: usize, n: usize) -> Self {
        assert!(from + n <= self.cols, "column block out of bounds");
        let start = if self.rows == 0 || n == 0 { 0 } else { from * self.cs };
        Mat { data: &self.data[start..], cols: n, ..self }
    }
}

/// A writable matrix view, laid out as [`Mat`].
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut::strided(data, rows, cols, cols, 1)
    }

    /// A view with explicit strides; panics when an element would fall outside `data`.
    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < data.len(), "matrix view out of bounds");
        MatMut { data, rows, cols, rs, cs }
    }

    /// Columns `from..from + n` (a view).
    pub fn cols(self, from: usize, n: usize) -> Self {
        assert!(from + n <= self.cols, "column block out of bounds");
        let start = if self.rows == 0 || n == 0 { 0 } else { from * self.cs };
        MatMut { data: &mut self.data[start..], cols: n, ..self }
    }
}

/// `c = a · b + beta · c` (`beta = 0` overwrites `c`, whatever it held).
pub fn matmul(a: Mat<'_>, b: Mat<'_>, c: MatMut<'_>, beta: f32) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!((a.rows, b.cols), (c.rows, c.cols), "output shape differs");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let x = &mut c.data[i * c.rs + j * c.cs];
                *x = if beta == 0.0 { 0.0 } else { beta * *x };
            }
        }
        return;
    }
    // SAFETY: the constructors checked that every element (i, j) of each view lies inside its
    // slice; `c` is borrowed mutably, so it cannot alias `a` or `b`; strides fit in isize because
    // they index within slices.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.data.as_mut_ptr(),
            c.rs as isize,
            c.cs as isize,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat<'_>, b: Mat<'_>) -> Vec<f32> {
        let mut c = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] =
                    (0..a.cols).map(|l| a.data[i * a.rs + l * a.cs] * b.data[l * b.rs + j * b.cs]).sum();
            }
        }
        c
    }

    #[test]
    fn transposed_and_blocked_views_multiply_like_the_naive_loop() {
        let a: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect(); // 3 × 4
        let b: Vec<f32> = (0..20).map(|i| (i % 7) as f32 - 3.0).collect(); // 4 × 5
        let (ma, mb) = (Mat::new(&a, 3, 4), Mat::new(&b, 4, 5));
        let mut c = vec![9f32; 15];
        matmul(ma, mb, MatMut::new(&mut c, 3, 5), 0.0);
        assert_eq!(c, naive(ma, mb));
        // (bᵀ)ᵀ · aᵀᵀ through transposed views of the same storage.
        let bt: Vec<f32> = (0..5).flat_map(|j| (0..4).map(move |i| (i, j))).map(|(i, j)| b[i * 5 + j]).collect();
        let mut c2 = vec![1f32; 15];
        matmul(ma, Mat::new(&bt, 5, 4).t(), MatMut::new(&mut c2, 3, 5), 1.0);
        let want: Vec<f32> = naive(ma, mb).iter().map(|x| x + 1.0).collect();
        assert_eq!(c2, want);
        // A column block.
        let mut c3 = vec![0f32; 6];
        matmul(ma, mb.cols(2, 2), MatMut::new(&mut c3, 3, 2), 0.0);
        assert_eq!(c3, naive(ma, mb.cols(2, 2)));
    }
}
