//! `cargo xtask …` and `cargo maint …` start here (see `.cargo/config.toml`).
//!
//! cargo compiles a tool silently under `cargo run --quiet`, and the first
//! build of the attendee's tooling takes minutes: this program, which has
//! no dependencies and builds in a second, says so first. It finds whether
//! the tool is built and newer than its sources; if not, it prints one line
//! (how long, in the reader's language) and builds it with cargo's own
//! progress bar; otherwise it builds it quietly, which is a no-op. Then it
//! runs the tool with the arguments it was given.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::SystemTime;

/// The tools it starts, with the folders whose files they are built from
/// (besides those of [`SHARED`]), and how
/// many minutes their first build takes on two cores with nothing built yet
/// (3 min 28 s to 3 min 45 s for xtask). With the other tool built, their
/// dependencies are too: maint then took 16 s.
const TOOLS: [(&str, &[&str], u32); 2] = [("xtask", &[], 4), ("maint", &["maint/src", "maint/Cargo.toml"], 4)];

/// The first build's minutes when the other tool is already built.
const WITH_DEPENDENCIES_BUILT: u32 = 1;

/// What every tool is built from: the workspace's manifest, lock file and
/// dependency hub, and the attendee's tooling (maint builds on its library).
const SHARED: [&str; 6] = [
    "Cargo.toml",
    "Cargo.lock",
    "workspace-hack/Cargo.toml",
    "xtask/src",
    "xtask/go",
    "xtask/Cargo.toml",
];

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let name = args.next().unwrap_or_default();
    let Some(&(tool, sources, minutes)) = TOOLS.iter().find(|(tool, ..)| name == *tool) else {
        eprintln!("error: launch starts one of: xtask, maint (as `cargo xtask` and `cargo maint` do)");
        return ExitCode::FAILURE;
    };
    let root = root();
    let guessed = target_dir(&root)
        .join("debug")
        .join(format!("{tool}{}", std::env::consts::EXE_SUFFIX));
    let built = modified(&guessed);
    let others_built = TOOLS.iter().filter(|(other, ..)| *other != tool).any(|(other, ..)| {
        modified(&guessed.with_file_name(format!("{other}{}", std::env::consts::EXE_SUFFIX))).is_some()
    });
    let minutes = if others_built { WITH_DEPENDENCIES_BUILT } else { minutes };
    let newest_source = SHARED
        .iter()
        .chain(sources)
        .filter_map(|source| newest(&root.join(source)))
        .max();
    let fresh = matches!((built, newest_source), (Some(built), Some(source)) if built >= source);
    if !fresh {
        eprintln!("{}", announcement(tool, built.is_none(), minutes, japanese()));
    }
    // The JSON messages (on stdout) say where the program is, whatever
    // folder cargo builds in; its progress and errors stay on the terminal.
    let mut build = launch::cargo();
    build.current_dir(&root).args([
        "build",
        "--message-format=json-render-diagnostics",
        "--package",
        tool,
        "--bin",
        tool,
    ]);
    if fresh {
        build.arg("--quiet");
    }
    let output = match build.stderr(Stdio::inherit()).output() {
        Ok(output) if output.status.success() => output,
        Ok(_) => return ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: cannot run cargo to build {tool}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let Some(program) = executable_in(&String::from_utf8_lossy(&output.stdout)) else {
        eprintln!("error: cargo built {tool} but did not say where: run `cargo build --package {tool}` to see why");
        return ExitCode::FAILURE;
    };
    run(Command::new(&program).args(args))
}

/// The line said before a build: its first, or one after its code changed.
fn announcement(tool: &str, first: bool, minutes: u32, japanese: bool) -> String {
    match (first, japanese) {
        (true, false) => format!(
            "Building the workshop's tooling (cargo {tool}), first time only: {} on 2 cores.{}",
            about(minutes, false),
            if tool == "xtask" {
                " The stages reuse what it builds."
            } else {
                ""
            }
        ),
        (true, true) => format!(
            "ワークショップのツール（cargo {tool}）をビルドしています。初回だけで、2 コアで{}かかります。{}",
            about(minutes, true),
            if tool == "xtask" {
                "ここでビルドしたものは、各段階のビルドでもそのまま使われます。"
            } else {
                ""
            }
        ),
        (false, false) => format!("Building the workshop's tooling again (cargo {tool}): its code changed."),
        (false, true) => {
            format!("コードが変わったので、ワークショップのツール（cargo {tool}）をビルドし直しています。")
        }
    }
}

/// "about 4 minutes", "at most a minute" (or in Japanese).
fn about(minutes: u32, japanese: bool) -> String {
    match (minutes, japanese) {
        (0 | 1, false) => "at most a minute".to_string(),
        (0 | 1, true) => "長くても 1 分ほど".to_string(),
        (_, false) => format!("about {minutes} minutes"),
        (_, true) => format!("約 {minutes} 分"),
    }
}

/// Whether the reader reads Japanese: the first of `MATH_CONTROLLER_LANG`,
/// `LC_ALL`, `LC_MESSAGES` and `LANG` that is set and not empty starts with
/// `ja` (the tools' own rule, in `xtask/src/lang.rs`).
fn japanese() -> bool {
    ["MATH_CONTROLLER_LANG", "LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("ja"))
}

/// The workspace's root: two folders above this package, which `cargo run`
/// names in `CARGO_MANIFEST_DIR` when it starts this program.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| dir.ancestors().nth(2).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo builds, as far as the environment says: `CARGO_TARGET_DIR`
/// (or `CARGO_BUILD_TARGET_DIR`, relative to the current folder as cargo
/// reads them), else `target/` in the workspace. Only the check for a build
/// to announce uses it: the program run is the one cargo's build names.
fn target_dir(root: &Path) -> PathBuf {
    let here = std::env::current_dir().unwrap_or_else(|_| root.to_path_buf());
    ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .iter()
        .find_map(std::env::var_os)
        .map(|dir| here.join(dir))
        .unwrap_or_else(|| root.join("target"))
}

/// The first `"executable"` path in cargo's JSON messages.
fn executable_in(messages: &str) -> Option<PathBuf> {
    const KEY: &str = "\"executable\":\"";
    messages.lines().find_map(|line| {
        let start = line.find(KEY)? + KEY.len();
        let end = start + line[start..].find('"')?;
        Some(PathBuf::from(line[start..end].replace("\\\\", "\\")))
    })
}

/// When `path` was last modified, if it exists.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

/// The newest modification time of `path`, or of any file below it.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest(&entry.path()))
        .max()
}

/// Runs the tool in place of this program (on Unix: Ctrl-C and the exit
/// status are the tool's own), else as a child whose status it hands on.
fn run(command: &mut Command) -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = command.exec();
        eprintln!("error: cannot run {}: {err}", command.get_program().to_string_lossy());
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    match command.status() {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("error: cannot run {}: {err}", command.get_program().to_string_lossy());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_build_is_announced_with_its_length_in_both_languages() {
        let english = announcement("xtask", true, 4, false);
        assert!(
            english.contains("first time only: about 4 minutes on 2 cores"),
            "{english}"
        );
        let japanese = announcement("xtask", true, 4, true);
        assert!(japanese.contains("2 コアで約 4 分かかります"), "{japanese}");
        let quick = announcement("maint", true, 1, false);
        assert!(
            quick.ends_with("first time only: at most a minute on 2 cores."),
            "{quick}"
        );
        assert!(announcement("maint", false, 4, false).contains("its code changed"));
    }

    #[test]
    fn the_program_is_found_in_cargos_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"xtask"},"executable":"/t/debug/xtask"}"#,
        );
        assert_eq!(executable_in(messages), Some(PathBuf::from("/t/debug/xtask")));
        assert_eq!(executable_in("{}"), None);
    }

    #[test]
    fn the_newest_file_below_a_folder_counts() {
        let dir = std::env::temp_dir().join(format!("launch-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/one"), "").unwrap();
        std::fs::write(dir.join("a/b/two"), "").unwrap();
        let both = [modified(&dir.join("a/one")), modified(&dir.join("a/b/two"))];
        assert_eq!(newest(&dir), both.into_iter().flatten().max());
        assert_eq!(newest(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
