//! `cargo xtask build`: the control-plane binaries, downloaded, built or
//! found once, and their folder printed.

use std::process::ExitCode;

use anyhow::Result;

use crate::assets;

pub fn run() -> Result<ExitCode> {
    let assets = assets::locate_or_build()?;
    println!("{}", assets.dir.display());
    Ok(ExitCode::SUCCESS)
}
