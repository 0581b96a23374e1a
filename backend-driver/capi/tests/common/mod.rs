//! What the tests that run the library from another language share: finding the `cdylib`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cdylib`'s file name.
pub const LIB: &str = if cfg!(target_os = "macos") {
    "libstrata_capi.dylib"
} else {
    "libstrata_capi.so"
};

/// The directory holding the `cdylib` built with this test: the test executable's own
/// directory (`target/<profile>/deps`), else its parent; built with cargo if neither has it.
pub fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe
        .parent()
        .expect("the executable's directory")
        .to_path_buf();
    let candidates = [
        deps.clone(),
        deps.parent().map(Path::to_path_buf).unwrap_or_default(),
    ];
    if let Some(dir) = candidates.iter().find(|d| d.join(LIB).is_file()) {
        return dir.clone();
    }
    // Not built next to the test (an unusual runner): build it into the same target directory.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = deps
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps has a target directory");
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "strata-capi", "--lib"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build -p strata-capi failed");
    candidates
        .iter()
        .find(|d| d.join(LIB).is_file())
        .cloned()
        .unwrap_or_else(|| panic!("{LIB} is in none of {candidates:?}, even after a build"))
}
