//! loom models of strata's concurrent structures live in `tests/`; build them with
//! `RUSTFLAGS="--cfg loom" cargo test -p strata-loom-tests --release`.
