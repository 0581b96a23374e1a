//! loom models of strata's concurrent structures live in `tests/`; build them with
//! `RUSTFLAGS="--cfg loom" cargo test -p strata-loom-tests --release` (and a target directory of
//! their own, so the flag does not force a rebuild of the normal one).
//!
//! Every model runs the resource code of `strata-core` itself: under `cfg(loom)` the core's
//! `sync` shim is loom's mutex and atomics. Two-thread models explore every interleaving
//! (`model::exhaustive`); three-thread models bound the preemptions (`model::bounded`),
//! whatever `LOOM_MAX_PREEMPTIONS` says, so each model has a known cost.

/// How the models are run (only under `cfg(loom)`).
#[cfg(loom)]
pub mod model {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    /// Runs `f` under loom over every interleaving (no preemption bound, whatever the
    /// environment says). For two-thread models. Prints how many executions were explored.
    pub fn exhaustive<F: Fn() + Sync + Send + 'static>(f: F) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = None;
        check(b, "exhaustive", f);
    }

    /// Runs `f` under loom with at most `bound` preemptions per execution. For three-thread
    /// models (2 or 3 is enough to catch most bugs, per loom's documentation). Prints how many
    /// executions were explored.
    pub fn bounded<F: Fn() + Sync + Send + 'static>(bound: usize, f: F) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(bound);
        check(b, "bounded", f);
    }

    fn check<F: Fn() + Sync + Send + 'static>(b: loom::model::Builder, how: &str, f: F) {
        // A plain std atomic: loom does not track it, it only counts the executions.
        let executions = Arc::new(AtomicU64::new(0));
        let counter = executions.clone();
        let start = Instant::now();
        b.check(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            f();
        });
        eprintln!(
            "loom {how} ({:?}): {} executions in {:.2?}",
            b.preemption_bound,
            executions.load(Ordering::Relaxed),
            start.elapsed()
        );
    }
}
