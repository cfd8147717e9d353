//! `cargo maint prepare`: the instructor's night before.

use std::process::{Command, ExitCode};

use anyhow::Result;

use crate::{cargo, repository_root};

/// The attendee's preparation (`cargo xtask prepare`), then what only
/// instructors and maintainers use: every crate and test of the workspace,
/// this tool included, and the slides' renderer.
pub fn run() -> Result<ExitCode> {
    let code = xtask::cmd::prepare::run()?;
    println!("\n== building every crate and test of the workspace, this tool's included");
    cargo::run_sparing_the_workbench(&["build", "--workspace", "--bins", "--examples", "--tests"])?;
    println!("\n== installing the slides' renderer (npm ci in slides/)");
    install_slide_renderer();
    Ok(code)
}

/// `npm ci` in slides/: the slides' renderer. Without npm, or when it
/// fails, everything else still works.
fn install_slide_renderer() {
    let npm = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("PUPPETEER_SKIP_DOWNLOAD", "true")
        .current_dir(repository_root().join("slides"))
        .status();
    match npm {
        Ok(status) if status.success() => {}
        Ok(status) => println!("`npm ci` in slides/ failed ({status}, see above): the slides cannot be rendered here"),
        Err(_) => println!("npm is not installed: the slides cannot be rendered here (everything else can)"),
    }
}
