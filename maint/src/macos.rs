//! `cargo maint macos`: every crate and target of the workspace (stages,
//! workbench, kit, the tooling, the tests) type-checked for macOS on Apple
//! silicon and Intel, from Linux.
//!
//! Rust itself cross-compiles; what needs help is the C code that build
//! scripts compile for the target (ring, the TLS library's cryptography).
//! Zig brings a C compiler for every target, and cargo-zigbuild wires it up
//! for cargo. Both come from PyPI (the `ziglang` and `cargo-zigbuild`
//! wheels), pinned here and kept in the cache per version, with the
//! targets' standard libraries from rustup.
//!
//! Linking is not done: the programs link against Apple's Security and
//! CoreFoundation frameworks (the system's certificate store), which only
//! Apple's SDK provides.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// The Rust targets of the Macs attendees bring.
pub const TARGETS: [&str; 2] = ["aarch64-apple-darwin", "x86_64-apple-darwin"];

/// The Zig release, as the `ziglang` wheel on PyPI numbers it.
pub const ZIG_VERSION: &str = "0.17.1";

/// The cargo-zigbuild release, as its wheel on PyPI numbers it.
pub const ZIGBUILD_VERSION: &str = "0.24.1";

/// The folder that holds Zig and cargo-zigbuild, once per pair of versions.
pub fn tools_dir() -> Result<PathBuf> {
    Ok(crate::assets::cache_dir()?
        .join("macos")
        .join(format!("zig-{ZIG_VERSION}-cargo-zigbuild-{ZIGBUILD_VERSION}")))
}

/// Where the checks build: beside the tools, so that every copy of the
/// repository reuses the dependencies already checked.
pub fn target_dir() -> Result<PathBuf> {
    Ok(crate::assets::cache_dir()?.join("macos").join("target"))
}

/// Zig and cargo-zigbuild in `dir`, fetched from PyPI when missing.
/// Returns the folder with `zig` and the cargo-zigbuild program.
pub fn tools(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let zig_dir = dir.join("ziglang");
    let zigbuild = dir.join("cargo-zigbuild");
    if zig_dir.join("zig").is_file() && zigbuild.is_file() {
        return Ok((zig_dir, zigbuild));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(dir)
            .arg(format!("ziglang=={ZIG_VERSION}")),
        "install Zig from PyPI (python3 -m pip install ziglang)",
    )?;
    // The cargo-zigbuild wheel is one Linux program: take it out of the wheel.
    let wheels = tempfile::tempdir()?;
    run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
            ])
            .args(["--only-binary=:all:", "--dest"])
            .arg(wheels.path())
            .arg(format!("cargo-zigbuild=={ZIGBUILD_VERSION}")),
        "download cargo-zigbuild from PyPI (python3 -m pip download cargo-zigbuild)",
    )?;
    let script = format!(
        "import sys, zipfile, glob\n\
         wheel = glob.glob(sys.argv[1] + '/cargo_zigbuild-*.whl')[0]\n\
         data = zipfile.ZipFile(wheel).read('cargo_zigbuild-{ZIGBUILD_VERSION}.data/scripts/cargo-zigbuild')\n\
         open(sys.argv[2], 'wb').write(data)\n"
    );
    run(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(wheels.path())
            .arg(&zigbuild),
        "take cargo-zigbuild out of its wheel",
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&zigbuild, std::fs::Permissions::from_mode(0o755))?;
    Ok((zig_dir, zigbuild))
}

/// Runs `command`; on failure, says what it was for, names the command and quotes its stderr.
fn run(command: &mut Command, purpose: &str) -> Result<()> {
    crate::process::checked(command).with_context(|| format!("cannot {purpose}"))?;
    Ok(())
}

/// Adds the targets' standard libraries with rustup (a no-op once there).
pub fn add_targets() -> Result<()> {
    run(
        Command::new("rustup").args(["target", "add"]).args(TARGETS),
        "add the macOS targets with rustup (rustup target add aarch64-apple-darwin x86_64-apple-darwin)",
    )
}

/// The cargo-zigbuild command that checks every crate and target of the
/// workspace at `root` for every macOS target.
pub fn check_command(root: &Path, zig_dir: &Path, zigbuild: &Path, target: &Path) -> Command {
    let mut command = Command::new(zigbuild);
    command.arg("check").args(["--workspace", "--all-targets", "--quiet"]);
    for triple in TARGETS {
        command.args(["--target", triple]);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![zig_dir.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    command
        .current_dir(root)
        .env("PATH", std::env::join_paths(paths).unwrap_or(path))
        .env("CARGO_TARGET_DIR", target)
        // The workbench's open TODOs leave unused code: not what is checked here.
        .env("RUSTFLAGS", "-A warnings");
    command
}
