//! `cargo xtask doctor [STAGE]`: is this machine ready?

use std::process::ExitCode;

use anyhow::Result;

use crate::cargo::target_dir;
use crate::{repository_root, say};

#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(value_parser = super::stage_argument, help = say!(
        "check for this stage only (step01…step04); all of them by default",
        "この段階（step01〜step04）に必要なものだけを確認。省略時はすべて"
    ))]
    stage: Option<&'static str>,
}

/// Fails when anything a stage needs is missing.
pub fn run(options: Options) -> Result<ExitCode> {
    let stage = options.stage;
    println!(
        "{}",
        say!(
            "The workshop in {}:",
            "ワークショップのフォルダー: {}",
            repository_root().display()
        )
    );
    let findings = crate::doctor::for_repository(&repository_root(), &target_dir()).run(stage);
    for finding in &findings {
        println!("{}", finding.render());
    }
    let failed = findings
        .iter()
        .any(|finding| finding.level == crate::doctor::Level::Fail);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
