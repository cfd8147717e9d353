//! `cargo xtask` works on the copy of the workshop it runs in, found when it
//! runs: a `target/` built in another copy (a moved clone, a folder handed
//! out at a venue) must never check that other copy's `exercises/`.

use std::path::Path;
use std::process::Command;

/// A folder that looks like the workshop to xtask: a workspace with `exercises/`.
fn workshop_copy(dir: &Path) {
    std::fs::create_dir_all(dir.join("exercises/step01_crd")).unwrap();
    std::fs::create_dir_all(dir.join("xtask")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = [\"xtask\"]\n").unwrap();
}

#[test]
fn the_copy_it_runs_in_is_the_one_it_works_on() {
    let outer = tempfile::tempdir().unwrap();
    let copy = outer.path().join("moved-copy");
    workshop_copy(&copy);
    // As `cargo xtask` starts it from inside the copy: cargo names the
    // package it runs, and the current folder is anywhere below the root.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("doctor")
        // The messages compared below are the English ones, whatever the locale.
        .env("MATH_CONTROLLER_LANG", "en")
        .current_dir(copy.join("exercises"))
        .env("CARGO_MANIFEST_DIR", copy.join("xtask"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert_eq!(first, format!("The workshop in {}:", copy.display()), "{stdout}");

    // Without cargo's variable, the current folder decides.
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("doctor")
        // The messages compared below are the English ones, whatever the locale.
        .env("MATH_CONTROLLER_LANG", "en")
        .current_dir(copy.join("exercises/step01_crd"))
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().next().unwrap_or_default(),
        format!("The workshop in {}:", copy.display())
    );
}

#[test]
fn outside_any_copy_it_says_where_to_run_it() {
    let elsewhere = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("doctor")
        // The messages compared below are the English ones, whatever the locale.
        .env("MATH_CONTROLLER_LANG", "en")
        .current_dir(elsewhere.path())
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cd into the folder you cloned"), "{stderr}");
}
