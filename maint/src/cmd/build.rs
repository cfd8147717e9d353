//! `cargo maint build [--cross]`: the control-plane binaries of this machine
//! and, with `--cross`, for macOS laptops too, each built once; their folders printed.

use std::process::ExitCode;

use anyhow::Result;

use crate::{assets, say};

#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(long, help = say!(
        "also build them for macOS (darwin/arm64, darwin/amd64)",
        "macOS 向け（darwin/arm64、darwin/amd64）にもビルド"
    ))]
    cross: bool,
}

pub fn run(options: Options) -> Result<ExitCode> {
    let assets = assets::locate_or_build()?;
    println!("{}", assets.dir.display());
    if options.cross {
        for (goos, goarch) in assets::CROSS_PLATFORMS {
            println!("{}", assets::build_for(goos, goarch)?.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
