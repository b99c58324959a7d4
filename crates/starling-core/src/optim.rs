//! Per-row optimizer rules: the learner and the parameter-server shards apply the same code.
//!
//! A row is `[weights (dim) | state (state_len(dim))]`. Updates are sparse and lazy: only rows an
//! example (or mini-batch) touched are updated, and L2 is applied to those rows only, as VW, xLearn
//! and TF's lazy optimizers do; untouched rows do not decay.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// An optimizer and its hyperparameters.
///
/// In a config it is a table whose `name` picks the rule (AdaGrad when it is left out) and whose
/// other keys set hyperparameters; unset ones take the rule's defaults, unknown ones are errors.
/// `lr` is every rule's step size: FTRL's is its `alpha`, as in TensorFlow's FTRL. L2 is applied
/// lazily, to the rows an example touches (as VW and xLearn do). Optimizer state lives in the
/// table row beside the weights and is saved with the model, so training resumes exactly.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Optimizer {
    /// Plain SGD: `w -= lr (g + l2 w)`.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// L2 strength, added to the gradient of touched rows.
        l2: f32,
    },
    /// AdaGrad (Duchi et al. 2011), per coordinate: `n += g^2; w -= lr g / (sqrt(n) + eps)`.
    Adagrad {
        /// Learning rate.
        lr: f32,
        /// L2 strength, added to the gradient of touched rows.
        l2: f32,
        /// Keeps the first step finite when the accumulator is still 0.
        eps: f32,
    },
    /// Row-wise AdaGrad (as TorchRec and FBGEMM have it for embedding tables): one accumulator per
    /// row, of the mean squared gradient over its coordinates, so an embedding row's state is one
    /// float instead of `dim`: `n += mean(g^2); w -= lr g / (sqrt(n) + eps)`.
    #[serde(rename = "rowwise_adagrad")]
    RowwiseAdagrad {
        /// Learning rate.
        lr: f32,
        /// L2 strength, added to the gradient of touched rows.
        l2: f32,
        /// Keeps the first step finite when the accumulator is still 0.
        eps: f32,
    },
    /// FTRL-Proximal (McMahan et al. 2013) with L1 (sparsity) and L2 in the proximal term.
    Ftrl {
        /// Learning-rate scale.
        alpha: f32,
        /// Learning-rate smoothing (the `beta` of the per-coordinate rate `alpha / (beta + sqrt(n))`).
        beta: f32,
        /// L1 strength: coordinates with `|z| <= l1` are exactly 0.
        l1: f32,
        /// L2 strength (the paper's lambda_2, in the closed-form denominator).
        l2: f32,
    },
    /// Adam (Kingma & Ba 2015), lazily per row, with a per-row step count for bias correction.
    Adam {
        /// Learning rate.
        lr: f32,
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Keeps the step finite when the second moment is ~0.
        eps: f32,
        /// L2 strength, added to the gradient of touched rows (coupled, not AdamW).
        l2: f32,
    },
}

/// Default hyperparameters, as functions so serde can fill fields a config leaves out.
mod defaults {
    /// SGD without adaptive rates needs a small step on ~40 one-hot features per example.
    pub fn sgd_lr() -> f32 {
        0.05
    }
    /// Best of 0.01-0.3 for LR and FM on 1M generated Criteo-like rows (and matches VW's logloss there).
    pub fn adagrad_lr() -> f32 {
        0.05
    }
    /// Small next to any real gradient; only guards the 0/0 of an untouched coordinate.
    pub fn adagrad_eps() -> f32 {
        1e-6
    }
    /// McMahan et al. 2013 and common CTR baselines use alpha ~0.05-0.1.
    pub fn ftrl_alpha() -> f32 {
        0.05
    }
    /// The paper reports beta = 1 is usually good enough.
    pub fn ftrl_beta() -> f32 {
        1.0
    }
    /// Mild sparsity: drops ids seen only a handful of times with a weak signal.
    pub fn ftrl_l1() -> f32 {
        0.1
    }
    /// Mild shrinkage; it adds to a denominator of ~(1 + sqrt(n)) / alpha >= 20.
    pub fn ftrl_l2() -> f32 {
        1.0
    }
    /// Kingma & Ba's (and FuxiCTR's) default.
    pub fn adam_lr() -> f32 {
        1e-3
    }
    /// Kingma & Ba's default.
    pub fn adam_beta1() -> f32 {
        0.9
    }
    /// Kingma & Ba's default.
    pub fn adam_beta2() -> f32 {
        0.999
    }
    /// Kingma & Ba's default.
    pub fn adam_eps() -> f32 {
        1e-8
    }
}

impl Optimizer {
    /// Sets hyperparameter `param` by name (as flags and search spaces name them); an error when
    /// this optimizer has no such hyperparameter, so a misplaced option is never silently ignored.
    pub fn set(&mut self, param: &str, value: f32) -> Result<(), ModelError> {
        self.assign(param, value)?;
        self.validate()
    }

    /// [`Optimizer::set`] without checking the result, for setting several hyperparameters
    /// whose valid combinations depend on each other (FTRL's `beta + l2 > 0`): call
    /// [`Optimizer::validate`] after the last.
    pub fn assign(&mut self, param: &str, value: f32) -> Result<(), ModelError> {
        let slot = match (&mut *self, param) {
            (
                Optimizer::Sgd { lr, .. }
                | Optimizer::Adagrad { lr, .. }
                | Optimizer::RowwiseAdagrad { lr, .. }
                | Optimizer::Adam { lr, .. },
                "lr",
            ) => lr,
            (
                Optimizer::Sgd { l2, .. }
                | Optimizer::Adagrad { l2, .. }
                | Optimizer::RowwiseAdagrad { l2, .. }
                | Optimizer::Ftrl { l2, .. }
                | Optimizer::Adam { l2, .. },
                "l2",
            ) => l2,
            (
                Optimizer::Adagrad { eps, .. } | Optimizer::RowwiseAdagrad { eps, .. } | Optimizer::Adam { eps, .. },
                "eps",
            ) => eps,
            (Optimizer::Ftrl { alpha, .. }, "alpha" | "lr") => alpha,
            (Optimizer::Ftrl { beta, .. }, "beta") => beta,
            (Optimizer::Ftrl { l1, .. }, "l1") => l1,
            (Optimizer::Adam { beta1, .. }, "beta1") => beta1,
            (Optimizer::Adam { beta2, .. }, "beta2") => beta2,
            (opt, _) => return Err(ModelError::UnknownHyper { optimizer: opt.name(), name: param.to_string() }),
        };
        *slot = value;
        Ok(())
    }
}

/// The hyperparameter names of the optimizer called `name`, for messages (FTRL's `lr` is its `alpha`).
pub fn hyperparameters(name: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> =
        Optimizer::default_for(name).map(|o| o.hyperparameters().iter().map(|(n, _)| *n).collect()).unwrap_or_default();
    if name == "ftrl" {
        names.push("lr (= alpha)");
    }
    names
}

impl<'de> Deserialize<'de> for Optimizer {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            Name(String),
            Number(f32),
        }
        let mut table = std::collections::BTreeMap::<String, Value>::deserialize(de)?;
        let name = match table.remove("name") {
            None => "adagrad".to_string(),
            Some(Value::Name(n)) => n,
            Some(Value::Number(x)) => {
                return Err(D::Error::custom(format!(
                    "optimizer name must be sgd, adagrad, rowwise_adagrad, ftrl or adam, got {x}"
                )))
            }
        };
        let mut opt = Optimizer::default_for(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown optimizer `{name}`: expected sgd, adagrad, rowwise_adagrad, ftrl or adam"
            ))
        })?;
        if matches!(opt, Optimizer::Ftrl { .. }) && table.contains_key("lr") && table.contains_key("alpha") {
            return Err(D::Error::custom("ftrl: give `lr` or `alpha` (the same step size), not both"));
        }
        for (key, value) in table {
            let Value::Number(x) = value else {
                return Err(D::Error::custom(format!("optimizer {name}: `{key}` must be a number")));
            };
            opt.assign(&key, x).map_err(D::Error::custom)?;
        }
        opt.validate().map_err(D::Error::custom)?;
        Ok(opt)
    }
}

impl std::fmt::Display for Optimizer {
    /// The name and every hyperparameter, as a config would set them: `ftrl (alpha 0.05, beta 1, l1 0.1, l2 1)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<String> = self.hyperparameters().iter().map(|(n, v)| format!("{n} {v}")).collect();
        write!(f, "{} ({})", self.name(), params.join(", "))
    }
}

impl Default for Optimizer {
    /// AdaGrad: per-coordinate rates suit sparse features whose frequencies differ by orders of magnitude.
    fn default() -> Self {
        Optimizer::adagrad_default()
    }
}

/// `Err` unless `value` is finite and satisfies `ok`.
fn check(
    optimizer: &'static str,
    name: &'static str,
    value: f32,
    ok: bool,
    expected: &'static str,
) -> Result<(), ModelError> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(ModelError::BadHyper { optimizer, name, value, expected })
    }
}

impl Optimizer {
    /// SGD with its default learning rate and no L2.
    pub fn sgd_default() -> Self {
        Optimizer::Sgd { lr: defaults::sgd_lr(), l2: 0.0 }
    }

    /// AdaGrad with its default learning rate, no L2.
    pub fn adagrad_default() -> Self {
        Optimizer::Adagrad { lr: defaults::adagrad_lr(), l2: 0.0, eps: defaults::adagrad_eps() }
    }

    /// FTRL-Proximal with the defaults above.
    pub fn ftrl_default() -> Self {
        Optimizer::Ftrl {
            alpha: defaults::ftrl_alpha(),
            beta: defaults::ftrl_beta(),
            l1: defaults::ftrl_l1(),
            l2: defaults::ftrl_l2(),
        }
    }

    /// Adam with the paper's defaults, no L2.
    pub fn adam_default() -> Self {
        Optimizer::Adam {
            lr: defaults::adam_lr(),
            beta1: defaults::adam_beta1(),
            beta2: defaults::adam_beta2(),
            eps: defaults::adam_eps(),
            l2: 0.0,
        }
    }

    /// The defaults of the optimizer called `name` (`sgd`, `adagrad`, `ftrl`, `adam`), as configs spell it.
    pub fn default_for(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sgd" => Some(Self::sgd_default()),
            "adagrad" => Some(Self::adagrad_default()),
            "ftrl" => Some(Self::ftrl_default()),
            "adam" => Some(Self::adam_default()),
            "rowwise_adagrad" => {
                Some(Optimizer::RowwiseAdagrad { lr: defaults::adagrad_lr(), l2: 0.0, eps: defaults::adagrad_eps() })
            }
            _ => None,
        }
    }

    /// Every hyperparameter and its value, by the names configs use.
    pub fn hyperparameters(&self) -> Vec<(&'static str, f32)> {
        match *self {
            Optimizer::Sgd { lr, l2 } => vec![("lr", lr), ("l2", l2)],
            Optimizer::Adagrad { lr, l2, eps } | Optimizer::RowwiseAdagrad { lr, l2, eps } => {
                vec![("lr", lr), ("l2", l2), ("eps", eps)]
            }
            Optimizer::Ftrl { alpha, beta, l1, l2 } => vec![("alpha", alpha), ("beta", beta), ("l1", l1), ("l2", l2)],
            Optimizer::Adam { lr, beta1, beta2, eps, l2 } => {
                vec![("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("l2", l2)]
            }
        }
    }

    /// Name as configs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Adagrad { .. } => "adagrad",
            Optimizer::RowwiseAdagrad { .. } => "rowwise_adagrad",
            Optimizer::Ftrl { .. } => "ftrl",
            Optimizer::Adam { .. } => "adam",
        }
    }

    /// True when a row's updates add up: the state is sums (AdaGrad's squared gradients, FTRL's
    /// z and n), so the changes two copies of a row went through can be merged by adding both
    /// deltas ([`crate::HotRows`]). Adam's moments decay instead: each copy's delta also takes
    /// back its share of the old moments, and adding several removes them several times.
    pub fn merges_by_delta(&self) -> bool {
        !matches!(self, Optimizer::Adam { .. })
    }

    /// Floats of optimizer state per row of `dim` weights: SGD 0; AdaGrad `dim` (sum of squared
    /// gradients); FTRL `2 dim` (z then n); Adam `2 dim + 1` (m, v, then the row's step count).
    #[inline]
    pub fn state_len(&self, dim: usize) -> usize {
        match self {
            Optimizer::Sgd { .. } => 0,
            Optimizer::Adagrad { .. } => dim,
            Optimizer::RowwiseAdagrad { .. } => 1,
            Optimizer::Ftrl { .. } => 2 * dim,
            Optimizer::Adam { .. } => 2 * dim + 1,
        }
    }

    /// Checks hyperparameters once so updates never produce NaN from a bad setting.
    pub fn validate(&self) -> Result<(), ModelError> {
        let name = self.name();
        match *self {
            Optimizer::Sgd { lr, l2 } => {
                check(name, "lr", lr, lr > 0.0, "> 0")?;
                check(name, "l2", l2, l2 >= 0.0, ">= 0")
            }
            Optimizer::Adagrad { lr, l2, eps } | Optimizer::RowwiseAdagrad { lr, l2, eps } => {
                check(name, "lr", lr, lr > 0.0, "> 0")?;
                check(name, "l2", l2, l2 >= 0.0, ">= 0")?;
                check(name, "eps", eps, eps > 0.0, "> 0")
            }
            Optimizer::Ftrl { alpha, beta, l1, l2 } => {
                check(name, "alpha", alpha, alpha > 0.0, "> 0")?;
                check(name, "beta", beta, beta >= 0.0, ">= 0")?;
                check(name, "l1", l1, l1 >= 0.0, ">= 0")?;
                check(name, "l2", l2, l2 >= 0.0, ">= 0")?;
                // beta = l2 = 0 divides by zero on a coordinate's first update.
                check(name, "beta + l2", beta + l2, beta + l2 > 0.0, "> 0")
            }
            Optimizer::Adam { lr, beta1, beta2, eps, l2 } => {
                check(name, "lr", lr, lr > 0.0, "> 0")?;
                check(name, "beta1", beta1, (0.0..1.0).contains(&beta1), "in [0, 1)")?;
                check(name, "beta2", beta2, (0.0..1.0).contains(&beta2), "in [0, 1)")?;
                check(name, "eps", eps, eps > 0.0, "> 0")?;
                check(name, "l2", l2, l2 >= 0.0, ">= 0")
            }
        }
    }

    /// Multiplies the step size (`lr`; FTRL's `alpha`) by `factor`: a learning-rate schedule.
    pub fn scale_lr(&mut self, factor: f32) {
        match self {
            Optimizer::Sgd { lr, .. }
            | Optimizer::Adagrad { lr, .. }
            | Optimizer::RowwiseAdagrad { lr, .. }
            | Optimizer::Adam { lr, .. } => *lr *= factor,
            Optimizer::Ftrl { alpha, .. } => *alpha *= factor,
        }
    }

    /// Runs `user` with this optimizer's update as a closure the compiler sees through: the match
    /// on the optimizer happens once, and the rule inlines into `user`'s loop over many rows.
    #[inline(always)]
    pub fn with_rule<U: RowRule>(&self, user: U) -> U::Out {
        match *self {
            Optimizer::Sgd { lr, l2 } => user.run(move |w, _, g| rules::sgd(w, g, lr, l2)),
            Optimizer::Adagrad { lr, l2, eps } => user.run(move |w, st, g| rules::adagrad(w, st, g, lr, l2, eps)),
            Optimizer::RowwiseAdagrad { lr, l2, eps } => {
                user.run(move |w, st, g| rules::rowwise_adagrad(w, st, g, lr, l2, eps))
            }
            Optimizer::Ftrl { alpha, beta, l1, l2 } => {
                user.run(move |w, st, g| rules::ftrl(w, st, g, alpha, beta, l1, l2))
            }
            Optimizer::Adam { lr, beta1, beta2, eps, l2 } => {
                user.run(move |w, st, g| rules::adam(w, st, g, lr, beta1, beta2, eps, l2))
            }
        }
    }

    /// Applies one gradient to one row: `weights` and `grad` have `dim` entries, `state` at least
    /// `state_len(dim)` (zeros for a fresh row).
    ///
    /// FTRL keeps the weights as a function of `(z, n)`. A coordinate that has never been updated
    /// (`n == 0`) but holds a non-zero weight (a random FM/FFM latent init, or a warm start) first
    /// gets the `z` that reproduces that weight, so FTRL starts from the init instead of snapping
    /// it to 0.
    #[inline]
    pub fn update(&self, weights: &mut [f32], state: &mut [f32], grad: &[f32]) {
        debug_assert_eq!(grad.len(), weights.len());
        debug_assert!(state.len() >= self.state_len(weights.len()));
        match *self {
            Optimizer::Sgd { lr, l2 } => rules::sgd(weights, grad, lr, l2),
            Optimizer::Adagrad { lr, l2, eps } => rules::adagrad(weights, state, grad, lr, l2, eps),
            Optimizer::RowwiseAdagrad { lr, l2, eps } => rules::rowwise_adagrad(weights, state, grad, lr, l2, eps),
            Optimizer::Ftrl { alpha, beta, l1, l2 } => rules::ftrl(weights, state, grad, alpha, beta, l1, l2),
            Optimizer::Adam { lr, beta1, beta2, eps, l2 } => {
                rules::adam(weights, state, grad, lr, beta1, beta2, eps, l2)
            }
        }
    }
}

/// A loop over rows that takes the update rule as a type parameter ([`Optimizer::with_rule`]):
/// `rule(weights, state, grad)` updates one row.
pub trait RowRule {
    /// What the loop returns.
    type Out;
    /// Runs the loop with `rule`.
    fn run<R: Fn(&mut [f32], &mut [f32], &[f32])>(self, rule: R) -> Self::Out;
}

/// The update rules as free functions, so a caller looping over many rows can dispatch on the
/// optimizer once and have the rule inlined into its loop; [`Optimizer::update`] calls the same code.
pub mod rules {
    /// SGD step: `w -= lr (g + l2 w)`.
    #[inline(always)]
    pub fn sgd(weights: &mut [f32], grad: &[f32], lr: f32, l2: f32) {
        for (w, &g) in weights.iter_mut().zip(grad) {
            *w -= lr * (g + l2 * *w);
        }
    }

    /// AdaGrad step; `state[..dim]` holds the sums of squared gradients.
    #[inline(always)]
    pub fn adagrad(weights: &mut [f32], state: &mut [f32], grad: &[f32], lr: f32, l2: f32, eps: f32) {
        let dim = weights.len();
        for ((w, n), &g) in weights.iter_mut().zip(&mut state[..dim]).zip(grad) {
            let g = g + l2 * *w;
            *n += g * g;
            *w -= lr * g / (n.sqrt() + eps);
        }
    }

    /// Row-wise AdaGrad step; `state[0]` holds the row's sum of mean squared gradients.
    #[inline(always)]
    pub fn rowwise_adagrad(weights: &mut [f32], state: &mut [f32], grad: &[f32], lr: f32, l2: f32, eps: f32) {
        let dim = weights.len().max(1) as f32;
        let sq: f32 = weights.iter().zip(grad).map(|(w, g)| (g + l2 * w) * (g + l2 * w)).sum();
        state[0] += sq / dim;
        let scale = lr / (state[0].sqrt() + eps);
        for (w, &g) in weights.iter_mut().zip(grad) {
            *w -= scale * (g + l2 * *w);
        }
    }

    /// FTRL-Proximal step; `state` is `[z (dim) | n (dim)]` (see [`super::Optimizer::update`] for init handling).
    #[inline(always)]
    pub fn ftrl(weights: &mut [f32], state: &mut [f32], grad: &[f32], alpha: f32, beta: f32, l1: f32, l2: f32) {
        let dim = weights.len();
        let (zs, rest) = state.split_at_mut(dim);
        let inv_alpha = 1.0 / alpha;
        for (((w, z), n), &g) in weights.iter_mut().zip(zs).zip(&mut rest[..dim]).zip(grad) {
            if *n == 0.0 && *w != 0.0 {
                *z = -(*w * (beta * inv_alpha + l2) + w.signum() * l1);
            }
            let n_new = *n + g * g;
            let sigma = (n_new.sqrt() - n.sqrt()) * inv_alpha;
            *z += g - sigma * *w;
            *n = n_new;
            *w = if z.abs() <= l1 { 0.0 } else { -(*z - z.signum() * l1) / ((beta + n_new.sqrt()) * inv_alpha + l2) };
        }
    }

    /// Adam step; `state` is `[m (dim) | v (dim) | t]`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn adam(
        weights: &mut [f32],
        state: &mut [f32],
        grad: &[f32],
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        l2: f32,
    ) {
        let dim = weights.len();
        let (ms, rest) = state.split_at_mut(dim);
        let (vs, rest) = rest.split_at_mut(dim);
        // f32 counts exactly to 2^24 steps per row; beyond that it stalls, when the bias
        // correction is 1 to within f32 anyway.
        let t = rest[0] + 1.0;
        rest[0] = t;
        let ti = t.min(i32::MAX as f32) as i32;
        let bc1 = 1.0 - beta1.powi(ti);
        let bc2 = 1.0 - beta2.powi(ti);
        let step = lr / bc1;
        let inv_bc2 = 1.0 / bc2;
        for (((w, m), v), &g) in weights.iter_mut().zip(ms).zip(vs).zip(grad) {
            let g = g + l2 * *w;
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            *w -= step * *m / ((*v * inv_bc2).sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() <= 1e-6 * (1.0 + b.abs())
    }

    #[test]
    fn rowwise_adagrad_keeps_one_accumulator_per_row() {
        let opt = Optimizer::default_for("rowwise_adagrad").unwrap();
        assert_eq!(opt.state_len(4), 1);
        let (mut w, mut n) = ([0.0f32, 0.0], [0.0f32]);
        let Optimizer::RowwiseAdagrad { eps, .. } = opt else { panic!("{opt:?}") };
        let lr = 0.5;
        let opt = Optimizer::RowwiseAdagrad { lr, l2: 0.0, eps };
        opt.update(&mut w, &mut n, &[3.0, 1.0]);
        // n = (9 + 1) / 2 = 5; both coordinates move by lr · g / sqrt(5).
        assert!(close(n[0], 5.0) && close(w[0], -0.5 * 3.0 / (5f64.sqrt() + f64::from(eps))), "{w:?} {n:?}");
        assert!(close(w[1], -0.5 * 1.0 / (5f64.sqrt() + f64::from(eps))), "{w:?}");
    }

    #[test]
    fn only_optimizers_whose_state_adds_up_merge_by_delta() {
        // A row copy that saw only zero gradients must come back unchanged, or merging its delta
        // takes something from the row: Adam's moments decay (and its step count moves) anyway.
        let opts = [
            Optimizer::sgd_default(),
            Optimizer::adagrad_default(),
            Optimizer::default_for("rowwise_adagrad").unwrap(),
            Optimizer::ftrl_default(),
            Optimizer::adam_default(),
        ];
        for opt in opts {
            let (mut w, mut s) = ([0.3f32, -0.2], vec![0.0f32; opt.state_len(2)]);
            opt.update(&mut w, &mut s, &[1.0, 0.5]);
            let before = (w, s.clone());
            opt.update(&mut w, &mut s, &[0.0, 0.0]);
            assert_eq!((w, s) == before, opt.merges_by_delta(), "{}", opt.name());
        }
    }

    #[test]
    fn state_lens() {
        assert_eq!(Optimizer::sgd_default().state_len(5), 0);
        assert_eq!(Optimizer::adagrad_default().state_len(5), 5);
        assert_eq!(Optimizer::ftrl_default().state_len(5), 10);
        assert_eq!(Optimizer::adam_default().state_len(5), 11);
    }

    #[test]
    fn sgd_matches_hand_computation() {
        let opt = Optimizer::Sgd { lr: 0.1, l2: 0.5 };
        let mut w = [1.0f32, -2.0];
        opt.update(&mut w, &mut [], &[0.5, 0.0]);
        // 1 - 0.1 (0.5 + 0.5) = 0.9; -2 - 0.1 (0 - 1) = -1.9
        assert!(close(w[0], 0.9) && close(w[1], -1.9), "{w:?}");
    }

    #[test]
    fn adagrad_matches_hand_computation() {
        let opt = Optimizer::Adagrad { lr: 0.5, l2: 0.0, eps: 1e-6 };
        let (mut w, mut n) = ([0.0f32, 1.0], [0.0f32, 0.0]);
        opt.update(&mut w, &mut n, &[2.0, 0.0]);
        assert!(close(w[0], -0.5 * 2.0 / (2.0 + 1e-6)) && close(n[0], 4.0), "{w:?} {n:?}");
        assert_eq!((w[1], n[1]), (1.0, 0.0), "zero gradient leaves a coordinate alone");
        opt.update(&mut w, &mut n, &[1.0, 0.0]);
        let w1 = -0.5 * 2.0 / (2.0 + 1e-6);
        let w2 = w1 - 0.5 * 1.0 / (5f64.sqrt() + 1e-6);
        assert!(close(w[0], w2) && close(n[0], 5.0), "{w:?} {n:?}");
        // L2 joins the gradient: g = 0 + 0.5 * 1 = 0.5, n = 0.25, w = 1 - 0.1 * 0.5 / 0.5.
        let opt = Optimizer::Adagrad { lr: 0.1, l2: 0.5, eps: 0.0 };
        let (mut w, mut n) = ([1.0f32], [0.0f32]);
        opt.update(&mut w, &mut n, &[0.0]);
        assert!(close(w[0], 0.9) && close(n[0], 0.25), "{w:?} {n:?}");
    }

    #[test]
    fn ftrl_matches_hand_computation_and_l1_zeroes() {
        let (alpha, beta, l1, l2) = (0.5f64, 1.0f64, 1.0f64, 0.2f64);
        let opt = Optimizer::Ftrl { alpha: alpha as f32, beta: beta as f32, l1: l1 as f32, l2: l2 as f32 };
        let mut w = [0.0f32];
        let mut s = [0.0f32; 2];
        // Step 1: g = 3: sigma = 3/0.5 = 6, z = 3 - 6*0 = 3, n = 9,
        // w = -(3 - 1) / ((1 + 3)/0.5 + 0.2) = -2 / 8.2.
        opt.update(&mut w, &mut s, &[3.0]);
        let w1 = -2.0 / 8.2;
        assert!(close(s[0], 3.0) && close(s[1], 9.0) && close(w[0], w1), "{w:?} {s:?}");
        // Step 2: g = -4: n = 25, sigma = (5 - 3)/0.5 = 4, z = 3 - 4 - 4 w1, |z| <= l1 -> w = 0 exactly.
        opt.update(&mut w, &mut s, &[-4.0]);
        let z2 = 3.0 - 4.0 - 4.0 * w1;
        assert!(close(s[0], z2) && close(s[1], 25.0), "{s:?}");
        assert!(z2.abs() <= l1);
        assert_eq!(w[0], 0.0, "L1 must make the weight exactly 0");
        // Step 3: g = -6: n = 61, sigma = (sqrt 61 - 5)/0.5, z = z2 - 6 - sigma*0; now |z| > l1.
        opt.update(&mut w, &mut s, &[-6.0]);
        let z3 = z2 - 6.0;
        let w3 = -(z3 + l1) / ((beta + 61f64.sqrt()) / alpha + l2);
        assert!(close(s[0], z3) && close(w[0], w3), "{w:?} {s:?} want {w3}");
        assert!(w[0] > 0.0);
    }

    #[test]
    fn ftrl_keeps_a_nonzero_init() {
        let opt = Optimizer::Ftrl { alpha: 0.1, beta: 1.0, l1: 0.3, l2: 0.5 };
        for w0 in [0.05f32, -0.2] {
            let mut w = [w0];
            let mut s = [0.0f32; 2];
            opt.update(&mut w, &mut s, &[0.0]);
            assert!((w[0] - w0).abs() < 1e-6, "a zero gradient must not move an initialised weight: {w0} -> {}", w[0]);
        }
    }

    #[test]
    fn adam_matches_hand_computation_for_two_steps() {
        let (lr, b1, b2, eps) = (0.1f64, 0.9f64, 0.99f64, 1e-8f64);
        let opt = Optimizer::Adam { lr: lr as f32, beta1: b1 as f32, beta2: b2 as f32, eps: eps as f32, l2: 0.0 };
        let mut w = [1.0f32, 0.0];
        let mut s = [0.0f32; 5];
        // Step 1: m = 0.1 g, v = 0.01 g^2, m_hat = g, v_hat = g^2 -> w -= lr * sign(g) (almost).
        opt.update(&mut w, &mut s, &[2.0, -0.5]);
        let m1 = [0.1 * 2.0, 0.1 * -0.5];
        let v1 = [0.01 * 4.0, 0.01 * 0.25];
        let w1 = [1.0 - lr * 2.0 / (2.0 + eps), 0.0 + lr * 0.5 / (0.5 + eps)];
        for i in 0..2 {
            assert!(close(s[i], m1[i]) && close(s[2 + i], v1[i]) && close(w[i], w1[i]), "step 1 {i}: {w:?} {s:?}");
        }
        assert_eq!(s[4], 1.0);
        // Step 2 with g = (1, 1).
        opt.update(&mut w, &mut s, &[1.0, 1.0]);
        assert_eq!(s[4], 2.0);
        for i in 0..2 {
            let m2 = b1 * m1[i] + (1.0 - b1) * 1.0;
            let v2 = b2 * v1[i] + (1.0 - b2) * 1.0;
            let mh = m2 / (1.0 - b1 * b1);
            let vh = v2 / (1.0 - b2 * b2);
            let w2 = w1[i] - lr * mh / (vh.sqrt() + eps);
            assert!(close(s[i], m2) && close(s[2 + i], v2), "step 2 state {i}: {s:?}");
            assert!((f64::from(w[i]) - w2).abs() < 1e-5, "step 2 weight {i}: {} vs {w2}", w[i]);
        }
    }

    #[test]
    fn validate_catches_bad_hyperparameters() {
        for name in ["sgd", "adagrad", "ftrl", "adam", "AdaGrad"] {
            Optimizer::default_for(name).unwrap().validate().unwrap();
        }
        assert!(Optimizer::default_for("lbfgs").is_none());
        assert!(Optimizer::Sgd { lr: 0.0, l2: 0.0 }.validate().is_err());
        assert!(Optimizer::Sgd { lr: f32::INFINITY, l2: 0.0 }.validate().is_err());
        assert!(Optimizer::Adagrad { lr: 0.1, l2: -1.0, eps: 1e-6 }.validate().is_err());
        assert!(Optimizer::Adagrad { lr: 0.1, l2: 0.0, eps: 0.0 }.validate().is_err());
        assert!(Optimizer::Ftrl { alpha: 0.1, beta: 0.0, l1: 0.0, l2: 0.0 }.validate().is_err());
        assert!(Optimizer::Ftrl { alpha: 0.1, beta: 1.0, l1: f32::NAN, l2: 0.0 }.validate().is_err());
        assert!(Optimizer::Adam { lr: 0.1, beta1: 1.0, beta2: 0.9, eps: 1e-8, l2: 0.0 }.validate().is_err());
        let err = Optimizer::Adam { lr: -1.0, beta1: 0.9, beta2: 0.9, eps: 1e-8, l2: 0.0 }.validate().unwrap_err();
        assert!(err.to_string().contains("lr"), "{err}");
    }
}
