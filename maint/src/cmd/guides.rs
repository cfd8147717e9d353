//! `cargo maint guides`: the code blocks of the guides written again from the code.

use std::process::ExitCode;

use anyhow::Result;

use crate::repository_root;

pub fn run() -> Result<ExitCode> {
    let changed = crate::guides::write_all(&repository_root())?;
    if changed.is_empty() {
        println!("Every guide already shows the code as it is.");
    }
    for guide in changed {
        println!("wrote {}", guide.display());
    }
    Ok(ExitCode::SUCCESS)
}
