//! Examples as the models see them: a label, an importance weight and hashed features.

/// One feature after the pipeline: a table key, its value and the field it belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Feature {
    /// Table key (hashed id, already folded to `hash_bits` when that option is set).
    pub key: u64,
    /// Feature value (1.0 for one-hot categorical features).
    pub value: f32,
    /// Dense field index in `0..num_fields`; FFM uses it, LR and FM ignore it.
    pub field: u32,
}

/// One training or test example, reused between lines so parsing does not allocate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Example {
    /// Label: 0/1 for logistic loss, any real for squared loss.
    pub label: f32,
    /// Importance weight (1.0 unless the input says otherwise).
    pub weight: f32,
    /// Features in input order (duplicate keys are allowed and act additively).
    pub features: Vec<Feature>,
}

impl Example {
    /// Empties the example for reuse, keeping its allocation.
    pub fn clear(&mut self) {
        self.label = 0.0;
        self.weight = 1.0;
        self.features.clear();
    }
}

/// Many examples in flat arrays: a shuffle buffer or a mini-batch without per-example allocation.
#[derive(Clone, Debug, Default)]
pub struct ExampleBuf {
    labels: Vec<f32>,
    weights: Vec<f32>,
    /// `features[offsets[i]..offsets[i + 1]]` are the features of example `i`.
    offsets: Vec<usize>,
    features: Vec<Feature>,
}

impl ExampleBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        ExampleBuf { offsets: vec![0], ..Default::default() }
    }

    /// Number of examples held.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when no example is held.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Drops every example, keeping the allocations.
    pub fn clear(&mut self) {
        self.labels.clear();
        self.weights.clear();
        self.features.clear();
        self.offsets.clear();
        self.offsets.push(0);
    }

    /// Appends a copy of `ex`.
    pub fn push(&mut self, ex: &Example) {
        self.labels.push(ex.label);
        self.weights.push(ex.weight);
        self.features.extend_from_slice(&ex.features);
        self.offsets.push(self.features.len());
    }

    /// Copies example `i` into `out` (reusing `out`'s allocation).
    pub fn get_into(&self, i: usize, out: &mut Example) {
        out.label = self.labels[i];
        out.weight = self.weights[i];
        out.features.clear();
        out.features.extend_from_slice(self.features(i));
    }

    /// Label of example `i`.
    pub fn label(&self, i: usize) -> f32 {
        self.labels[i]
    }

    /// Importance weight of example `i`.
    pub fn weight(&self, i: usize) -> f32 {
        self.weights[i]
    }

    /// Features of example `i`.
    pub fn features(&self, i: usize) -> &[Feature] {
        &self.features[self.offsets[i]..self.offsets[i + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buf_round_trips_examples() {
        let mut buf = ExampleBuf::new();
        let a = Example { label: 1.0, weight: 2.0, features: vec![Feature { key: 7, value: 0.5, field: 1 }] };
        let b = Example { label: 0.0, weight: 1.0, features: vec![] };
        buf.push(&a);
        buf.push(&b);
        let mut out = Example::default();
        buf.get_into(0, &mut out);
        assert_eq!(out, a);
        buf.get_into(1, &mut out);
        assert_eq!(out, b);
        assert_eq!(buf.len(), 2);
        buf.clear();
        assert!(buf.is_empty());
    }
}
