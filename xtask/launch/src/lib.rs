//! What the launcher shares with the tools it starts: cargo, as they run it.

use std::ffi::OsString;
use std::process::Command;

/// Cargo, without the variables that `cargo run` set for the program that
/// runs it: build scripts that watch them (ring's watches
/// `CARGO_MANIFEST_DIR`) would otherwise build again on every switch between
/// the tools and plain cargo.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref());
        if set_by_cargo_run {
            command.env_remove(name.as_ref());
        }
    }
    command
}
