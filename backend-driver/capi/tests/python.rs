//! `python/strata_alloc.py`'s ctypes bindings against this crate's `cdylib`, on the simulated
//! device: `python3 python/test_strata_alloc.py` (standard library only).

use std::path::Path;
use std::process::Command;

mod common;

#[test]
fn python_bindings_on_the_simulated_device() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::library_dir().join(common::LIB);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .arg(manifest.join("python/test_strata_alloc.py"))
        .env("STRATA_LIBRARY", &lib)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("STRATA_RESOURCE")
        .env_remove("STRATA_POOL_SIZE")
        .env_remove("STRATA_POOL_MAX")
        .env_remove("STRATA_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?} (set PYTHON to a Python 3): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("python: 3 passed, 0 failed"),
        "{stdout}\n{stderr}"
    );
}
