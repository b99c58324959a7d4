//! Evaluation metrics: logloss, AUC, RMSE and accuracy, accumulated one prediction at a time.

/// Probabilities are clipped to `[EPS, 1 - EPS]` in logloss, as scikit-learn does.
const EPS: f64 = 1e-15;

/// Logloss of one probability `p` against a 0/1 label `y`.
#[inline]
pub fn log_loss(p: f64, y: f32) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    if y > 0.5 {
        -p.ln()
    } else {
        -(1.0 - p).ln()
    }
}

/// Area under the ROC curve of `scores` against 0/1 `labels`; ties get the average rank.
/// Returns `None` when one class is absent.
pub fn auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "auc: scores and labels differ in length");
    let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
    idx.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    let (mut pos, mut rank_sum) = (0f64, 0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1] as usize] == scores[idx[i] as usize] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k as usize] > 0.5 {
                pos += 1.0;
                rank_sum += avg_rank;
            }
        }
        i = j + 1;
    }
    let neg = scores.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Running sums for logloss, RMSE and accuracy, plus the predictions kept for AUC.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    count: f64,
    weight: f64,
    logloss_sum: f64,
    sq_err_sum: f64,
    correct: f64,
    keep_for_auc: bool,
    preds: Vec<f32>,
    labels: Vec<f32>,
}

/// A metric models are compared by (tune's ranking, early stopping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Mean log loss, lower is better.
    #[default]
    Logloss,
    /// Area under the ROC curve, higher is better.
    Auc,
    /// Root mean squared error, lower is better.
    Rmse,
}

impl Metric {
    /// True when `a` is a better value than `b` (NaN is never better).
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Metric::Auc => a > b,
            Metric::Logloss | Metric::Rmse => a < b,
        }
    }

    /// The metric's name as configs and results spell it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Logloss => "logloss",
            Metric::Auc => "auc",
            Metric::Rmse => "rmse",
        }
    }

    /// Its value in `s` (NaN for an AUC that was not kept or has one class only).
    pub fn value(self, s: &Summary) -> f64 {
        match self {
            Metric::Logloss => s.logloss,
            Metric::Auc => s.auc.unwrap_or(f64::NAN),
            Metric::Rmse => s.rmse,
        }
    }
}

/// A finished evaluation, ready to print or compare.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Examples seen.
    pub count: u64,
    /// Weighted mean logloss (meaningful for 0/1 labels).
    pub logloss: f64,
    /// Area under the ROC curve, when both classes were seen and AUC was kept.
    pub auc: Option<f64>,
    /// Root of the weighted mean squared error of the prediction.
    pub rmse: f64,
    /// Weighted share of examples whose prediction falls on the label's side of 0.5.
    pub accuracy: f64,
}

impl Metrics {
    /// An accumulator; `keep_for_auc` stores every prediction (8 bytes each) to compute AUC.
    pub fn new(keep_for_auc: bool) -> Self {
        Metrics { keep_for_auc, ..Default::default() }
    }

    /// Adds one prediction `p` (a probability for logistic loss) for label `y` with weight `w`.
    #[inline]
    pub fn add(&mut self, p: f32, y: f32, w: f32) {
        let (p64, w64) = (f64::from(p), f64::from(w));
        self.count += 1.0;
        self.weight += w64;
        self.logloss_sum += w64 * log_loss(p64, y);
        let e = p64 - f64::from(y);
        self.sq_err_sum += w64 * e * e;
        if (p >= 0.5) == (y > 0.5) {
            self.correct += w64;
        }
        if self.keep_for_auc {
            self.preds.push(p);
            self.labels.push(y);
        }
    }

    /// Folds another accumulator (from another thread) into this one.
    pub fn merge(&mut self, other: &Metrics) {
        self.count += other.count;
        self.weight += other.weight;
        self.logloss_sum += other.logloss_sum;
        self.sq_err_sum += other.sq_err_sum;
        self.correct += other.correct;
        self.preds.extend_from_slice(&other.preds);
        self.labels.extend_from_slice(&other.labels);
    }

    /// Examples added so far.
    pub fn count(&self) -> u64 {
        self.count as u64
    }

    /// Weighted logloss summed so far (progress reports take differences of it).
    pub fn loss_sum(&self) -> f64 {
        self.logloss_sum
    }

    /// Mean logloss so far (0 when empty).
    pub fn mean_logloss(&self) -> f64 {
        if self.weight > 0.0 {
            self.logloss_sum / self.weight
        } else {
            0.0
        }
    }

    /// The metrics over everything added.
    pub fn summary(&self) -> Summary {
        let w = self.weight.max(f64::MIN_POSITIVE);
        Summary {
            count: self.count as u64,
            logloss: self.mean_logloss(),
            auc: if self.keep_for_auc { auc(&self.preds, &self.labels) } else { None },
            rmse: (self.sq_err_sum / w).sqrt(),
            accuracy: self.correct / w,
        }
    }
}

/// Mean and standard deviation of a stream of values (Welford's update, in f64).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// Counts one value.
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Mean and (population) standard deviation; a constant or absent value gives 1, so
    /// standardising by it leaves values centred but unscaled.
    pub fn mean_std(&self) -> (f32, f32) {
        let var = if self.n > 0 { self.m2 / self.n as f64 } else { 0.0 };
        let std = var.sqrt();
        (self.mean as f32, if std > 1e-12 { std as f32 } else { 1.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_count() {
        // pairs (pos, neg): (0.8,0.1) ok, (0.8,0.4) ok, (0.35,0.1) ok, (0.35,0.4) wrong -> 3/4
        let s = [0.1, 0.4, 0.35, 0.8];
        let y = [0.0, 0.0, 1.0, 1.0];
        assert!((auc(&s, &y).unwrap() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert!((auc(&[0.5, 0.5], &[0.0, 1.0]).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(auc(&[0.5, 0.7], &[1.0, 1.0]), None);
    }

    #[test]
    fn logloss_rmse_accuracy() {
        let mut m = Metrics::new(true);
        m.add(0.8, 1.0, 1.0);
        m.add(0.3, 0.0, 1.0);
        let s = m.summary();
        let want = -(0.8f64.ln() + 0.7f64.ln()) / 2.0;
        assert!((s.logloss - want).abs() < 1e-6);
        assert!((s.rmse - ((0.04 + 0.09) / 2.0f64).sqrt()).abs() < 1e-6);
        assert_eq!(s.accuracy, 1.0);
        assert_eq!(s.auc, Some(1.0));
    }
}
