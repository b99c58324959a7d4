//! Field embeddings from an example's features: each feature's embedding row, times its value,
//! pooled per field (a one-hot field has one feature; a multi-valued field, such as a list of
//! genres, has several).

use serde::{Deserialize, Serialize};

/// How the rows of a multi-valued field combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// `Σ value · row`.
    #[default]
    Sum,
    /// `Σ value · row / count`: a list's length does not change its scale.
    Mean,
}

impl Pooling {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Sum => "sum",
            Pooling::Mean => "mean",
        }
    }
}

/// Pools features into `fields` vectors of `dim` floats per example; a field without features
/// is a vector of zeros.
#[derive(Clone, Copy, Debug)]
pub struct FieldPool {
    /// Vectors per example.
    pub fields: usize,
    /// Floats per vector.
    pub dim: usize,
    /// How several features of one field combine.
    pub pooling: Pooling,
}

impl FieldPool {
    /// One example: `items` are (field slot, value, embedding row); writes `out` (`fields · dim`)
    /// and the features per field into `counts` (`fields`).
    pub fn forward<'r>(
        &self,
        items: impl Iterator<Item = (usize, f32, &'r [f32])>,
        out: &mut [f32],
        counts: &mut [f32],
    ) {
        let d = self.dim;
        out.fill(0.0);
        counts.fill(0.0);
        for (f, value, row) in items {
            counts[f] += 1.0;
            for (o, &r) in out[f * d..(f + 1) * d].iter_mut().zip(&row[..d]) {
                *o += value * r;
            }
        }
        if self.pooling == Pooling::Mean {
            for (v, &c) in out.chunks_exact_mut(d).zip(counts.iter()) {
                if c > 1.0 {
                    v.iter_mut().for_each(|x| *x /= c);
                }
            }
        }
    }

    /// What the gradient of field `f`'s vector is multiplied by to give the gradient of the row
    /// of one of its features with `value` (`counts` as [`FieldPool::forward`] left them).
    #[inline]
    pub fn row_scale(&self, counts: &[f32], f: usize, value: f32) -> f32 {
        match self.pooling {
            Pooling::Sum => value,
            Pooling::Mean => value / counts[f].max(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_divides_by_the_fields_count_and_empty_fields_are_zero() {
        let pool = FieldPool { fields: 3, dim: 2, pooling: Pooling::Mean };
        let (r1, r2) = ([1.0f32, 2.0], [3.0f32, -2.0]);
        let (mut out, mut counts) = ([9f32; 6], [0f32; 3]);
        pool.forward([(0, 1.0, &r1[..]), (0, 1.0, &r2[..]), (2, 0.5, &r1[..])].into_iter(), &mut out, &mut counts);
        assert_eq!(out, [2.0, 0.0, 0.0, 0.0, 0.5, 1.0]);
        assert_eq!(pool.row_scale(&counts, 0, 1.0), 0.5);
        let sum = FieldPool { pooling: Pooling::Sum, ..pool };
        sum.forward([(0, 1.0, &r1[..]), (0, 1.0, &r2[..])].into_iter(), &mut out, &mut counts);
        assert_eq!(&out[..2], &[4.0, 0.0]);
    }
}
