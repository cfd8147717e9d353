//! `cargo maint macos`: the workspace type-checked for both kinds of Mac.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::{process, repository_root};

/// Type-checks with Zig as the C compiler (fetched from PyPI once); linking needs Apple's SDK.
pub fn run() -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let (zig_dir, zigbuild) = crate::macos::tools(&crate::macos::tools_dir()?)?;
    crate::macos::add_targets()?;
    let targets = crate::macos::TARGETS.join(" and ");
    eprintln!("type-checking every crate and target for {targets}…");
    let mut check = crate::macos::check_command(&repository_root(), &zig_dir, &zigbuild, &crate::macos::target_dir()?);
    process::run(&mut check).context("the workspace does not type-check for macOS")?;
    println!(
        "every crate and target type-checks for {targets} ({:.0} s); not linked: that needs Apple's SDK",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
