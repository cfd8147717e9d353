//! `cargo xtask`: the workshop's tooling.
//!
//! ```text
//! cargo xtask up       start a local control plane in the background and print how to use it
//! cargo xtask down     stop it and remove its files
//! cargo xtask reset    delete the workshop's CRDs and objects from the current cluster: a clean slate
//! cargo xtask build    build (once) or find the control-plane binaries and print their folder
//! cargo xtask test     run every test: unit tests, then end-to-end scenarios on real control planes
//! ```
//!
//! `cargo xtask test -- FILTER` passes FILTER on to `cargo test` (for example a stage name).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use xtask::assets::{self, Assets};
use xtask::control_plane::{self, ControlPlane, Lifetime};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("up") => up(),
        Some("down") => down(),
        Some("reset") => reset(),
        Some("build") => build(),
        Some("test") => test(&args[1..]),
        _ => Err(anyhow::anyhow!(
            "usage: cargo xtask up | down | reset | build | test [-- FILTER]"
        )),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where `up` keeps the running control plane's files.
fn cluster_dir() -> Result<PathBuf> {
    Ok(assets::cache_dir()?.join("cluster"))
}

fn up() -> Result<ExitCode> {
    let dir = cluster_dir()?;
    if let Some(running) = read_pids(&dir) {
        let assets = assets::locate_or_build()?;
        let recorded = std::fs::read_to_string(dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .count();
        if running.len() == recorded && answers(&assets, &dir) {
            eprintln!("A local control plane is already running.");
            print_usage(&dir, &assets, None);
            return Ok(ExitCode::SUCCESS);
        }
        // Part of it died (a crash, a killed process, a reboot): start over.
        eprintln!(
            "The local control plane does not answer ({} of its {recorded} processes run): \
             starting a new one. The objects of the old one are lost.",
            running.len()
        );
        control_plane::stop_processes(&running);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let assets = assets::locate_or_build()?;
    eprintln!("Starting etcd, kube-apiserver and kube-controller-manager…");
    let mut plane = ControlPlane::start(&assets, dir.clone(), Lifetime::Detached)?;
    plane.start_controller_manager()?;
    let server = plane.server.clone();
    let pids = plane.keep_running();
    let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
    std::fs::write(dir.join("pids"), pid_list.join("\n")).context("cannot record the process ids")?;
    print_usage(&dir, &assets, Some(&server));
    Ok(ExitCode::SUCCESS)
}

fn print_usage(dir: &std::path::Path, assets: &Assets, server: Option<&str>) {
    if let Some(server) = server {
        println!(
            "The local control plane is running: Kubernetes {}, etcd {}, API server at {server}.",
            assets::kubernetes_version(),
            assets::etcd_version()
        );
    }
    println!(
        "Use it from this shell:\n\
         \n    export KUBECONFIG={}\n    export PATH=\"{}:$PATH\"   # a kubectl of the same version\n\
         \nThen install a stage's CRDs and run the stage, for example:\n\
         \n    cargo run --example step01_crd -- crd | kubectl apply --server-side -f -\n    cargo run --example step01_crd\n\
         \nIt has no nodes, so Pods never run; custom resources, controllers and garbage collection all work.\n\
         Stop it with `cargo xtask down`.",
        dir.join("kubeconfig").display(),
        assets.dir.display()
    );
}

/// Whether the API server of the control plane in `dir` says it is ready.
fn answers(assets: &Assets, dir: &std::path::Path) -> bool {
    Command::new(assets.kubectl())
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .args(["get", "--raw=/readyz", "--request-timeout=5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn down() -> Result<ExitCode> {
    let dir = cluster_dir()?;
    let Some(pids) = read_pids(&dir) else {
        println!("No local control plane is running.");
        return Ok(ExitCode::SUCCESS);
    };
    control_plane::stop_processes(&pids);
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    println!(
        "Stopped the local control plane and removed its files, objects included: \
         the next `cargo xtask up` starts empty."
    );
    Ok(ExitCode::SUCCESS)
}

/// The workshop's CRDs, as `kubectl delete crd` names them.
const WORKSHOP_CRDS: [&str; 3] = [
    "numbers.math.workshop.example",
    "tuples.math.workshop.example",
    "fermats.math.workshop.example",
];

/// A clean slate between stages: deletes the workshop's CRDs from the cluster
/// of the current kubeconfig context, and with them every Number, Tuple and
/// Fermat in every namespace. Nothing else is touched.
fn reset() -> Result<ExitCode> {
    let kubectl = || Command::new("kubectl");
    let context = match kubectl().args(["config", "current-context"]).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_string(),
        Ok(output) => bail!(
            "kubectl has no current context ({}); run the `export` lines that `cargo xtask up` printed, \
             or choose a context with `kubectl config use-context`",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(err) => bail!(
            "cannot run kubectl ({err}); run the `export` lines that `cargo xtask up` printed, or install kubectl"
        ),
    };
    println!("Deleting every Number, Tuple and Fermat, and their CRDs, from context {context}…");
    let deleted = kubectl()
        .args(["delete", "crd", "--ignore-not-found", "--wait=true"])
        .args(WORKSHOP_CRDS)
        .status()
        .context("cannot run kubectl")?;
    if !deleted.success() {
        bail!("kubectl could not delete the CRDs (see above)");
    }
    println!(
        "Done. Install the CRDs of the stage you start next, for example:\n\n    \
         cargo run --example step01_crd -- crd | kubectl apply --server-side -f -"
    );
    Ok(ExitCode::SUCCESS)
}

/// The recorded process ids that still run one of the control plane's
/// programs: after a reboot the same ids may belong to anything else.
fn read_pids(dir: &std::path::Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("pids")).ok()?;
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
    let name = std::path::Path::new(program)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    assets::BINARIES.contains(&name)
}

fn build() -> Result<ExitCode> {
    let assets = assets::locate_or_build()?;
    println!("{}", assets.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Builds what the tests need, then runs them all. The end-to-end scenarios
/// start their own control planes (or use an existing cluster, see
/// tests/e2e/main.rs).
fn test(extra: &[String]) -> Result<ExitCode> {
    assets::locate_or_build()?;
    // The scenarios run the stages exactly as attendees do: as built examples.
    let built = cargo()
        .args(["build", "--examples"])
        .status()
        .context("cannot run cargo")?;
    if !built.success() {
        bail!("`cargo build --examples` failed (see above)");
    }
    let mut tested = cargo()
        .args(["test", "--workspace"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    // Pass the output through, and add up the test binaries' results.
    let mut totals = [0u64; 3];
    let stdout = tested.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(counts) = test_result_counts(&line) {
            for (total, count) in totals.iter_mut().zip(counts) {
                *total += count;
            }
        }
    }
    let status = tested.wait()?;
    let [passed, failed, ignored] = totals;
    println!("\ntotal: {passed} passed, {failed} failed, {ignored} skipped");
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A cargo command without the variables that `cargo run` set for this
/// program: build scripts that watch them (ring's watches CARGO_MANIFEST_DIR)
/// would otherwise rebuild on every switch between `cargo xtask` and plain cargo.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
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

/// The passed, failed and ignored counts of a libtest summary line
/// (`test result: ok. 21 passed; 0 failed; 0 ignored; …`).
fn test_result_counts(line: &str) -> Option<[u64; 3]> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            let part = part
                .trim()
                .trim_start_matches("ok.")
                .trim_start_matches("FAILED.")
                .trim();
            let (number, name) = part.split_once(' ')?;
            (name == word).then(|| number.parse().ok()).flatten()
        })
    };
    Some([count("passed")?, count("failed")?, count("ignored")?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_of_passing_and_failing_runs_are_counted() {
        let ok = "test result: ok. 21 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 8.21s";
        assert_eq!(test_result_counts(ok), Some([21, 0, 2]));
        let failed = "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(test_result_counts(failed), Some([3, 1, 0]));
        assert_eq!(test_result_counts("running 21 tests"), None);
    }
}
