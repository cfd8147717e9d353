//! Control planes that outlive the command that starts them: the attendee's
//! (`cargo xtask up`) and the checker's warm plane, which `cargo xtask check`
//! starts once and then reuses, a fresh namespace per scenario.
//!
//! Each lives in a folder of the cache: its kubeconfig, its logs, the ids of
//! its processes (`pids`) and who started it when (`started`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::assets::{self, Assets};
use crate::control_plane::{ControlPlane, Lifetime, Pace};
use crate::lang::Language;
use crate::say;

/// The attendee's plane (`cargo xtask up`): `MATH_CONTROLLER_CLUSTER` if set,
/// so that a second one can run beside the first, else `cluster` in the cache.
pub fn attendee_dir() -> Result<PathBuf> {
    match std::env::var_os("MATH_CONTROLLER_CLUSTER") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(assets::cache_dir()?.join("cluster")),
    }
}

/// The checker's warm plane.
pub fn checker_dir() -> Result<PathBuf> {
    Ok(assets::cache_dir()?.join("check-plane"))
}

/// A warm plane's audit log past this size is started afresh: every scenario
/// reads its own part of it, but the file should not fill a laptop's disk.
const AUDIT_LOG_LIMIT: u64 = 512 * 1024 * 1024;

/// What is found in a plane's folder.
pub enum Found {
    /// Every process runs and the API server answers.
    Running,
    /// Some of its processes died (a crash, a reboot): `running` of `recorded` remain.
    Broken { running: Vec<u32>, recorded: usize },
    /// Nothing was started there.
    Nothing,
}

/// Whether a plane runs in `dir`.
pub fn find(assets: &Assets, dir: &Path) -> Found {
    let Some(running) = read_pids(dir) else {
        return Found::Nothing;
    };
    let recorded = fs::read_to_string(dir.join("pids")).unwrap_or_default().lines().count();
    if running.len() == recorded && answers(assets, dir) {
        Found::Running
    } else {
        Found::Broken { running, recorded }
    }
}

/// Starts a plane in `dir` (removing what a broken one left there), with
/// `crds` installed if given, and leaves it running; returns the API
/// server's address.
pub fn start(assets: &Assets, dir: &Path, crds: Option<&str>) -> Result<String> {
    if let Found::Broken { running, .. } = find(assets, dir) {
        crate::process::kill_processes(&running);
    }
    let _ = fs::remove_dir_all(dir);
    let mut plane = ControlPlane::start(assets, dir.to_path_buf(), Lifetime::Detached, Pace::Quick)?;
    // CRDs installed before the controller manager starts are known to its
    // garbage collector at once; later ones only at its next discovery, up
    // to 30 s on.
    if let Some(crds) = crds {
        plane.install_crds(crds)?;
        fs::write(dir.join(CRDS_FILE), crds).context("cannot record the installed CRDs")?;
    }
    plane.start_controller_manager()?;
    let server = plane.server.clone();
    let pids = plane.keep_running();
    let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
    fs::write(dir.join("pids"), pid_list.join("\n")).context("cannot record the process ids")?;
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let user = user_name().unwrap_or_else(|| "an unknown user".to_string());
    let root = crate::repository_root();
    fs::write(dir.join("started"), format!("{seconds}\n{user}\n{}\n", root.display()))
        .context("cannot record who started the plane")?;
    Ok(server)
}

/// The checker's warm plane serving `crds`: the running one if it serves
/// them already, else a new one. Returns its folder and, when it was started
/// now, why.
pub fn warm_checker_plane(assets: &Assets, crds: &str) -> Result<(PathBuf, Option<String>)> {
    let dir = checker_dir()?;
    let audit_log = dir.join("logs").join("audit.log");
    let too_long = fs::metadata(&audit_log).is_ok_and(|meta| meta.len() > AUDIT_LOG_LIMIT);
    let same_crds = installed_crds(&dir).is_some_and(|installed| installed == crds);
    let found = find(assets, &dir);
    let why = match &found {
        Found::Running if !too_long && same_crds => return Ok((dir, None)),
        Found::Running if too_long => say!(
            "its audit log had grown past 512 MiB",
            "監査ログが 512 MiB を超えていた"
        ),
        Found::Running => {
            let whose = started_by(&dir)
                .map(|who| say!("; it was {who}", "（{who}もの）"))
                .unwrap_or_default();
            say!(
                "the one running served other CRDs, another stage's or an older version{whose}",
                "動いていたもの{whose}には、ほかの段階か古いバージョンの CRD が入っていた"
            )
        }
        Found::Broken { .. } => say!(
            "the one started before no longer answers",
            "前に起動したものが応答しなくなっていた"
        ),
        Found::Nothing => say!("none was running", "動いているものがなかった"),
    };
    if let Found::Running = found {
        stop(&dir)?;
    }
    start(assets, &dir, Some(crds))?;
    Ok((dir, Some(why)))
}

/// The CRDs that the plane in `dir` was started with, if `start` was given any.
pub fn installed_crds(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join(CRDS_FILE)).ok()
}

/// Where `start` records the CRDs a plane was started with.
const CRDS_FILE: &str = "crds.yaml";

/// Stops the plane in `dir` and removes its folder; false if none ran there.
pub fn stop(dir: &Path) -> Result<bool> {
    let Some(pids) = read_pids(dir) else {
        return Ok(false);
    };
    // Its files, objects included, go next: nothing to shut down cleanly.
    crate::process::kill_processes(&pids);
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(true)
}

/// The name of the user running this program.
fn user_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .or_else(|| {
            let output = Command::new("id").arg("-un").output().ok()?;
            let name = String::from_utf8_lossy(&output.stdout).trim().to_string();
            (output.status.success() && !name.is_empty()).then_some(name)
        })
}

/// Who started the plane in `dir`, from where and how long ago, in words:
/// "started 12 minutes ago by alice from /home/alice/workshop".
pub fn started_by(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("started")).ok()?;
    let mut lines = text.lines();
    let seconds: u64 = lines.next()?.parse().ok()?;
    let user = lines.next()?;
    let root = lines.next()?;
    let age = SystemTime::now()
        .duration_since(UNIX_EPOCH + Duration::from_secs(seconds))
        .unwrap_or_default();
    let age = in_words(age);
    Some(say!(
        "started {age} ago by {user} from {root}",
        "{age}前に {user} が {root} から起動した"
    ))
}

/// A duration as a person says it: "40 seconds", "12 minutes", "3 hours".
pub fn in_words(age: Duration) -> String {
    in_words_in(Language::of_reader(), age)
}

/// A duration as a person says it in `language`.
pub fn in_words_in(language: Language, age: Duration) -> String {
    let seconds = age.as_secs();
    let (count, unit, japanese) = match seconds {
        0..120 => (seconds, "second", "秒"),
        120..7200 => (seconds / 60, "minute", "分"),
        7200..172_800 => (seconds / 3600, "hour", "時間"),
        _ => (seconds / 86_400, "day", "日"),
    };
    match language {
        Language::English => format!("{count} {unit}{}", if count == 1 { "" } else { "s" }),
        Language::Japanese => format!("{count} {japanese}"),
    }
}

/// The recorded process ids that still run one of the control plane's
/// programs (after a reboot the same ids may belong to anything else);
/// `None` if no plane was started in `dir`.
fn read_pids(dir: &Path) -> Option<Vec<u32>> {
    let text = fs::read_to_string(dir.join("pids")).ok()?;
    let recorded: Vec<u32> = text.lines().filter_map(|line| line.trim().parse().ok()).collect();
    Some(
        recorded
            .into_iter()
            .filter(|&pid| runs_control_plane_program(pid))
            .collect(),
    )
}

fn runs_control_plane_program(pid: u32) -> bool {
    let Ok(output) = Command::new("ps")
        .args(["-o", "command=", "-p", &pid.to_string()])
        .output()
    else {
        return false;
    };
    let command = String::from_utf8_lossy(&output.stdout);
    let program = command.split_whitespace().next().unwrap_or("");
    let name = Path::new(program)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    assets::BINARIES.contains(&name)
}

/// Whether the API server of the plane in `dir` says it is ready.
pub fn answers(assets: &Assets, dir: &Path) -> bool {
    Command::new(assets.kubectl())
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .args(["get", "--raw=/readyz", "--request-timeout=5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_told_in_the_unit_a_person_uses() {
        let english = |seconds| in_words_in(Language::English, Duration::from_secs(seconds));
        assert_eq!(english(1), "1 second");
        assert_eq!(english(40), "40 seconds");
        assert_eq!(english(12 * 60 + 5), "12 minutes");
        assert_eq!(english(3 * 3600), "3 hours");
        assert_eq!(english(3 * 86_400), "3 days");
        assert_eq!(
            in_words_in(Language::Japanese, Duration::from_secs(12 * 60 + 5)),
            "12 分"
        );
    }

    #[test]
    fn an_empty_folder_holds_no_plane() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_pids(dir.path()).is_none());
        assert!(started_by(dir.path()).is_none());
    }
}
