//! The header cannot drift: `include/strata.h` must be exactly what cbindgen generates from the
//! crate's sources with `cbindgen.toml`. After changing the C interface, regenerate it with
//! `STRATA_BLESS=1 cargo test -p strata-capi --test header` and commit it.

use std::path::Path;

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn checked_in_header_matches_the_sources() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/strata.h");
    let generated = generate();
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let first = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "{} differs from the header generated from the sources (first at line {}):\n  \
             checked in: {:?}\n  generated:  {:?}\n\
             Regenerate it with `STRATA_BLESS=1 cargo test -p strata-capi --test header`.",
            path.display(),
            first + 1,
            checked_in.lines().nth(first).unwrap_or("<end of file>"),
            generated.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn header_declares_every_exported_function() {
    let header = generate();
    for name in [
        "strata_last_error_message",
        "strata_status_name",
        "strata_sim_device_create",
        "strata_cuda_device_count",
        "strata_cuda_memory_create",
        "strata_async_create",
        "strata_pool_create",
        "strata_stream_pool_create",
        "strata_arena_create",
        "strata_binning_create",
        "strata_statistics_create",
        "strata_limiting_create",
        "strata_logging_create",
        "strata_resource_destroy",
        "strata_allocate",
        "strata_deallocate",
        "strata_resource_statistics",
        "strata_logging_flush",
        "strata_resource_count",
        "strata_stream_release",
        "strata_default_configure",
        "strata_default_resource",
        "strata_default_statistics",
        "strata_torch_alloc",
        "strata_torch_free",
    ] {
        assert!(
            header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")),
            "{name} is missing from the header"
        );
    }
    for constant in [
        "STRATA_STATUS_OK = 0",
        "STRATA_STATUS_UNKNOWN_HANDLE = 3",
        "STRATA_STATUS_DOUBLE_FREE = 4",
        "STRATA_KIND_STREAM_POOL = 3",
    ] {
        assert!(header.contains(constant), "{constant} is missing");
    }
}
