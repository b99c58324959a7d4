//! Losses on a raw score: their value, their derivative with respect to the score, and the
//! prediction a user sees.

use serde::{Deserialize, Serialize};

/// Loss of one example as a function of the model's raw score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Log loss on a sigmoid of the score; labels are 0/1 (soft labels in [0, 1] also work).
    Logistic,
    /// Half the squared residual, so that its derivative is the residual itself.
    Squared,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Loss::Logistic => "logistic",
            Loss::Squared => "squared",
        })
    }
}

/// `ln(1 + e^x)` without overflow for large `x` nor lost precision for very negative `x`.
#[inline]
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Logistic sigmoid that never evaluates `exp` of a large positive number.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Loss {
    /// Loss of `score` against `label` (log loss in nats for `Logistic`, `0.5 (s - y)^2` for `Squared`).
    #[inline]
    pub fn value(self, score: f32, label: f32) -> f32 {
        match self {
            // -y ln p - (1-y) ln(1-p) with p = sigmoid(s) simplifies to softplus(s) - y s.
            Loss::Logistic => softplus(score) - label * score,
            Loss::Squared => {
                let r = score - label;
                0.5 * r * r
            }
        }
    }

    /// Derivative of [`Loss::value`] with respect to the score: what backpropagation starts from.
    #[inline]
    pub fn dscore(self, score: f32, label: f32) -> f32 {
        match self {
            Loss::Logistic => sigmoid(score) - label,
            Loss::Squared => score - label,
        }
    }

    /// What the model predicts for a raw score: a probability (`Logistic`) or the score itself.
    #[inline]
    pub fn predict(self, score: f32) -> f32 {
        match self {
            Loss::Logistic => sigmoid(score),
            Loss::Squared => score,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ref_value(loss: Loss, s: f64, y: f64) -> f64 {
        match loss {
            Loss::Logistic => {
                let p = 1.0 / (1.0 + (-s).exp());
                -y * p.ln() - (1.0 - y) * (1.0 - p).ln()
            }
            Loss::Squared => 0.5 * (s - y) * (s - y),
        }
    }

    #[test]
    fn value_matches_reference_and_dscore_matches_finite_difference() {
        for loss in [Loss::Logistic, Loss::Squared] {
            for &y in &[0.0f32, 1.0, 0.3] {
                for &s in &[-7.5f32, -2.0, -0.1, 0.0, 0.4, 3.0, 8.0] {
                    let v = loss.value(s, y);
                    let r = ref_value(loss, f64::from(s), f64::from(y));
                    assert!((f64::from(v) - r).abs() < 1e-5 * (1.0 + r.abs()), "{loss:?} s={s} y={y}: {v} vs {r}");
                    let h = 1e-5;
                    let fd = (ref_value(loss, f64::from(s) + h, f64::from(y))
                        - ref_value(loss, f64::from(s) - h, f64::from(y)))
                        / (2.0 * h);
                    let d = loss.dscore(s, y);
                    assert!((f64::from(d) - fd).abs() < 1e-5, "{loss:?} s={s} y={y}: {d} vs {fd}");
                }
            }
        }
    }

    #[test]
    fn logistic_is_stable_at_extremes() {
        let l = Loss::Logistic;
        assert_eq!(l.value(1000.0, 1.0), 0.0);
        assert!((l.value(-1000.0, 1.0) - 1000.0).abs() < 1e-3);
        assert!((l.value(1000.0, 0.0) - 1000.0).abs() < 1e-3);
        assert!(l.value(-1000.0, 0.0).abs() < 1e-6);
        assert_eq!(l.predict(1000.0), 1.0);
        assert_eq!(l.predict(-1000.0), 0.0);
        assert!(l.predict(-100.0) > 0.0, "tiny probabilities keep their precision");
        assert!(l.dscore(1000.0, 1.0).abs() < 1e-6);
        assert!((l.dscore(-1000.0, 1.0) + 1.0).abs() < 1e-6);
        assert_eq!(l.predict(0.0), 0.5);
    }

    #[test]
    fn squared_predicts_identity() {
        assert_eq!(Loss::Squared.predict(-3.5), -3.5);
        assert_eq!(Loss::Squared.value(3.0, 1.0), 2.0);
        assert_eq!(Loss::Squared.dscore(3.0, 1.0), 2.0);
    }
}
