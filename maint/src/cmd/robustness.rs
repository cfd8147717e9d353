//! `cargo maint robustness`: ROBUSTNESS.md written from the rows the scenarios record.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cmd::test::fresh_report_file;
use crate::{assets, cargo, process, repository_root, robustness};

/// Runs the end-to-end scenarios and writes
/// ROBUSTNESS.md from the rows they record, with this run's times.
pub fn run() -> Result<ExitCode> {
    assets::locate_or_build()?;
    cargo::run(&["build", "--bins", "--examples"])?;
    let report = fresh_report_file()?;
    let mut scenarios = cargo::command();
    scenarios
        .args(["test", "--package", "workshop-tests", "--test", "e2e"])
        .env(robustness::REPORT_ENV, &report);
    process::run(&mut scenarios).context("some scenarios failed: ROBUSTNESS.md is left as it was")?;
    let rows = robustness::read(&report)?;
    let document = repository_root().join(robustness::DOCUMENT);
    let committed = std::fs::read_to_string(&document).unwrap_or_default();
    let soak = robustness::split_soak(&committed).1;
    let rendered = robustness::render(&rows, &assets::kubernetes_version());
    let written = if soak.is_empty() {
        rendered
    } else {
        format!("{rendered}\n{soak}")
    };
    std::fs::write(&document, written).with_context(|| format!("cannot write {}", document.display()))?;
    println!("wrote {} ({} rows)", document.display(), rows.len());
    Ok(ExitCode::SUCCESS)
}
