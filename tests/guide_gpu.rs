//! The user guide's GPU examples, run on a GPU.
//!
//! Each example of `docs/` that needs a GPU is a `no_run` block there (so the doctests compile
//! it everywhere) and, word for word, a file in `tests/guide_snippets/` with a `fn main`
//! (`tests/guide_sync.rs` checks that the two stay identical). Here every snippet is included
//! into a module of its own and run by an ignored test: CPU CI compiles them and reports them
//! as ignored; on a GPU machine
//!
//! ```text
//! cargo test --test guide_gpu -- --include-ignored
//! ```
//!
//! runs them, and a missing driver or device is a failure there, not a skip.
#![cfg(feature = "driver")]

/// The name of every snippet this file runs (checked against the directory by
/// `tests/guide_sync.rs`).
macro_rules! gpu_examples {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                include!(concat!("guide_snippets/", stringify!($name), ".rs"));

                #[test]
                #[ignore = "needs a CUDA GPU"]
                fn runs_on_a_gpu() {
                    main().expect(concat!(
                        "the guide's example tests/guide_snippets/",
                        stringify!($name),
                        ".rs"
                    ));
                }
            }
        )*
    };
}

gpu_examples!(
    first_gpu_program,
    async_pool_facts,
    cross_stream_rules,
    grow_first_pool,
    buffer_on_two_streams,
    managed_pool,
    managed_prefetch_advise,
    containers,
    several_devices,
    per_device_default,
);
