//! Asynchronous successive halving (ASHA, Li et al. 2020), in its stopping form (as Ray Tune's
//! `ASHAScheduler`): trials run side by side and report their holdout metric at rungs
//! `grace · eta^k` of their training budget; at each rung a trial goes on only if it ranks in the
//! best `1/eta` of every result recorded at that rung so far. No trial waits for another, so
//! parallel slots never idle, and a budget of many trials costs a few full trainings.

use super::space::Metric;

/// What a trial does after reporting at a rung.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Train on to the next rung.
    Continue,
    /// Stop: the trial is among the weaker ones at this rung.
    Stop,
}

/// The rung bookkeeping of one search.
#[derive(Debug)]
pub struct Asha {
    eta: f64,
    metric: Metric,
    /// Rung points as fractions of a trial's budget, increasing, all below 1.
    rungs: Vec<f64>,
    /// Metrics recorded at each rung.
    recorded: Vec<Vec<f64>>,
}

impl Asha {
    /// Rungs at `grace · eta^k` of the budget while below the whole budget.
    pub fn new(eta: f64, grace: f64, metric: Metric) -> Self {
        let mut rungs = Vec::new();
        let mut r = grace;
        // A rung within 1 % of the end saves nothing (grace 0.111 with eta 3 gives 0.999).
        while r < 0.99 {
            rungs.push(r);
            r *= eta;
        }
        let recorded = vec![Vec::new(); rungs.len()];
        Asha { eta, metric, rungs, recorded }
    }

    /// The rung points, as fractions of a trial's training examples.
    pub fn rungs(&self) -> &[f64] {
        &self.rungs
    }

    /// Records `value` at rung `rung` and decides whether the trial goes on. A non-finite value
    /// always stops.
    pub fn report(&mut self, rung: usize, value: f64) -> Decision {
        if !value.is_finite() {
            return Decision::Stop;
        }
        let seen = &mut self.recorded[rung];
        seen.push(value);
        // Keep the best ceil(n / eta) results (at least one): is `value` among them?
        let keep = ((seen.len() as f64) / self.eta).ceil().max(1.0) as usize;
        let better = seen.iter().filter(|&&v| self.metric.better(v, value)).count();
        if better < keep {
            Decision::Continue
        } else {
            Decision::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_grow_by_eta_below_the_budget() {
        let a = Asha::new(3.0, 1.0 / 9.0, Metric::Logloss);
        assert_eq!(a.rungs().len(), 2);
        assert!((a.rungs()[1] - 1.0 / 3.0).abs() < 1e-12);
        assert!(Asha::new(2.0, 1.0, Metric::Auc).rungs().is_empty());
        assert_eq!(Asha::new(3.0, 0.111, Metric::Logloss).rungs().len(), 2, "no rung at 0.999");
    }

    #[test]
    fn only_the_best_third_goes_on() {
        let mut a = Asha::new(3.0, 0.25, Metric::Logloss);
        // The first result always goes on; later ones must beat enough of the recorded ones.
        assert_eq!(a.report(0, 0.50), Decision::Continue);
        assert_eq!(a.report(0, 0.60), Decision::Stop);
        assert_eq!(a.report(0, 0.40), Decision::Continue);
        assert_eq!(a.report(0, 0.45), Decision::Continue); // 4 seen: keep 2; one is better
        assert_eq!(a.report(0, 0.70), Decision::Stop);
        assert_eq!(a.report(0, f64::NAN), Decision::Stop);
        let mut auc = Asha::new(3.0, 0.25, Metric::Auc);
        assert_eq!(auc.report(0, 0.70), Decision::Continue);
        assert_eq!(auc.report(0, 0.60), Decision::Stop);
        assert_eq!(auc.report(0, 0.75), Decision::Continue);
    }
}
