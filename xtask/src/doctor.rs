//! `cargo xtask doctor [STAGE]`: is this machine ready for the workshop, and
//! if not, what to do about it. Each check gives ✓, ! (works, but worth
//! knowing) or ✗ (a stage cannot run) with the fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::catalogue::{GROUP, OLDEST_SERVER_MINOR, STAGES};
use crate::say;

/// Less free disk than this (in GiB) is worth a warning: builds and the
/// local control plane need about that much.
pub const FREE_DISK_GIB: u64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check's result: what was found, and the fix when it is not ✓.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: None,
        }
    }
    fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warn,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Fail,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    /// The finding as the doctor prints it: a mark, what, and the fix below.
    pub fn render(&self) -> String {
        let mark = match self.level {
            Level::Ok => "✓",
            Level::Warn => "!",
            Level::Fail => "✗",
        };
        match &self.fix {
            Some(fix) => format!("{mark} {}\n    → {fix}", self.what),
            None => format!("{mark} {}", self.what),
        }
    }
}

/// Where the doctor looks.
pub struct Doctor {
    /// The kubectl to run.
    pub kubectl: PathBuf,
    /// The kubeconfig to use; `None`: kubectl's own default (KUBECONFIG, ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// The folder holding the finished stages' programs (`target/debug`).
    pub programs: PathBuf,
    /// The repository's root.
    pub root: PathBuf,
}

/// `v1.36.3` or `v1.32.4-dispatcher` → (1, 36).
pub fn major_minor(git_version: &str) -> Option<(u32, u32)> {
    let mut parts = git_version.trim_start_matches('v').split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `rustc 1.91.0 (…)` → (1, 91).
pub fn rustc_version(output: &str) -> Option<(u32, u32)> {
    major_minor(output.split_whitespace().nth(1)?)
}

/// The finding for a `rustc` that is there but does not say its version,
/// from what it printed on stderr: most often rustup without a default
/// toolchain.
pub fn rustc_does_not_run(stderr: &str) -> Finding {
    let said = stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    let what = say!(
        "rustc is there but does not run: {said}",
        "rustc はありますが動きません: {said}"
    );
    if said.contains("rustup") {
        Finding::fail(what, "rustup default stable")
    } else {
        Finding::fail(
            what,
            say!(
                "run `rustc --version` to see why; reinstall Rust with rustup (https://rustup.rs) if it does not say",
                "`rustc --version` で理由を確かめてください。分からなければ rustup で Rust を入れ直してください（https://rustup.rs）"
            ),
        )
    }
}

/// The available space in KiB from `df -Pk` output (the 4th field of line 2).
pub fn available_kib(df_output: &str) -> Option<u64> {
    df_output.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// What a stage's controllers do, as (verb, resource) pairs for `kubectl auth can-i`.
/// A resource without a group is one of the workshop's kinds.
pub fn permissions(stage: &str) -> Vec<(&'static str, &'static str)> {
    let number = STAGES.iter().position(|s| *s == stage).unwrap_or(3) + 1;
    let mut needed = vec![("list", "numbers"), ("watch", "numbers")];
    if number >= 2 {
        needed.push(("patch", "numbers/status"));
    }
    if number >= 3 {
        needed.extend([
            ("create", "numbers"),
            ("patch", "numbers"),
            ("delete", "numbers"),
            ("list", "tuples"),
            ("watch", "tuples"),
            ("patch", "tuples/status"),
            // Events that tell what the controllers did to children.
            ("create", "events.events.k8s.io"),
            ("patch", "events.events.k8s.io"),
        ]);
    }
    if number >= 4 {
        needed.extend([
            ("create", "tuples"),
            ("patch", "tuples"),
            ("delete", "tuples"),
            ("list", "fermats"),
            ("watch", "fermats"),
            ("patch", "fermats/status"),
            // Leader election.
            ("get", "leases.coordination.k8s.io"),
            ("create", "leases.coordination.k8s.io"),
            ("patch", "leases.coordination.k8s.io"),
            ("watch", "leases.coordination.k8s.io"),
        ]);
    }
    needed
}

impl Doctor {
    fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        command
    }

    /// Runs kubectl; returns its stdout when it succeeds, its stderr otherwise.
    fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        use std::io::Write;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| err.to_string())?;
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.unwrap_or_default().as_bytes());
        }
        let output = child.wait_with_output().map_err(|err| err.to_string())?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
        if output.status.success() {
            Ok(text(&output.stdout))
        } else {
            Err(text(&output.stderr))
        }
    }

    /// Every check, for `stage` (`None`: the last stage's needs).
    pub fn run(&self, stage: Option<&str>) -> Vec<Finding> {
        let mut findings = vec![self.rust()];
        let client = self.kubectl_output(&["version", "--client", "-o", "json"], None);
        let client_version = client.as_ref().ok().and_then(|json| git_version(json, "clientVersion"));
        match &client_version {
            Some(version) => findings.push(Finding::ok(format!("kubectl {version}"))),
            None => {
                findings.push(Finding::fail(
                    say!("kubectl is not found", "kubectl が見つかりません"),
                    say!(
                        "install kubectl, or run the `export` lines that `cargo xtask up` prints (it brings one)",
                        "kubectl をインストールするか、`cargo xtask up` が表示する `export` の行を実行してください（kubectl が付いてきます）"
                    ),
                ));
                return findings;
            }
        }
        if !self.cluster(&client_version, &mut findings) {
            findings.extend(self.local_checks());
            return findings;
        }
        findings.push(self.context());
        findings.push(self.crds(stage));
        findings.push(self.permissions(stage.unwrap_or(STAGES[3])));
        findings.extend(self.local_checks());
        findings
    }

    fn rust(&self) -> Finding {
        let needed = std::fs::read_to_string(self.root.join("Cargo.toml"))
            .ok()
            .and_then(|toml| {
                let line = toml.lines().find(|line| line.starts_with("rust-version"))?;
                major_minor(line.split('"').nth(1)?)
            })
            .unwrap_or((1, 89));
        let output = match Command::new("rustc").arg("--version").output() {
            Ok(output) => output,
            Err(_) => {
                return Finding::fail(
                    say!("rustc is not found", "rustc が見つかりません"),
                    say!(
                        "install Rust with rustup (https://rustup.rs)",
                        "rustup で Rust をインストールしてください（https://rustup.rs）"
                    ),
                );
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        match rustc_version(&stdout).filter(|_| output.status.success()) {
            Some(version) if version >= needed => Finding::ok(say!(
                "Rust {}.{} ({}.{} or later needed)",
                "Rust {}.{}（{}.{} 以降が必要）",
                version.0,
                version.1,
                needed.0,
                needed.1
            )),
            Some(version) => Finding::fail(
                say!(
                    "Rust {}.{} is older than {}.{}",
                    "Rust {}.{} は {}.{} より古いバージョンです",
                    version.0,
                    version.1,
                    needed.0,
                    needed.1
                ),
                "rustup update stable",
            ),
            None => rustc_does_not_run(&String::from_utf8_lossy(&output.stderr)),
        }
    }

    /// Whether a cluster answers; also checks that it is recent enough, and
    /// within one minor version of kubectl.
    fn cluster(&self, client: &Option<String>, findings: &mut Vec<Finding>) -> bool {
        let answer = self.kubectl_output(&["version", "-o", "json", "--request-timeout=5s"], None);
        let server = answer.as_ref().ok().and_then(|json| git_version(json, "serverVersion"));
        let Some(server) = server else {
            let why = answer.err().unwrap_or_default();
            let why = why
                .lines()
                .last()
                .map(str::to_string)
                .unwrap_or_else(|| say!("no answer", "応答なし"));
            findings.push(Finding::fail(
                say!("no cluster answers ({why})", "応答するクラスターがありません（{why}）"),
                say!(
                    "start one: `cargo xtask up`, then run the two `export` lines it prints \
                     (or start kind, minikube or k3d)",
                    "クラスターを起動してください。`cargo xtask up` を実行し、表示される 2 行の `export` を実行します\
                     （kind、minikube、k3d でもかまいません）"
                ),
            ));
            return false;
        };
        match major_minor(&server) {
            Some((1, minor)) if minor >= OLDEST_SERVER_MINOR => {
                findings.push(Finding::ok(say!(
                    "a cluster answers: Kubernetes {server}",
                    "クラスターが応答します: Kubernetes {server}"
                )));
            }
            _ => findings.push(Finding::fail(
                say!(
                    "the cluster runs Kubernetes {server}, older than v1.{OLDEST_SERVER_MINOR}",
                    "クラスターの Kubernetes {server} は v1.{OLDEST_SERVER_MINOR} より古いバージョンです"
                ),
                say!(
                    "use Kubernetes v1.{OLDEST_SERVER_MINOR} or later (`cargo xtask up` runs a recent one)",
                    "Kubernetes v1.{OLDEST_SERVER_MINOR} 以降を使ってください（`cargo xtask up` は新しいバージョンを動かします）"
                ),
            )),
        }
        let skew = client
            .as_deref()
            .and_then(major_minor)
            .zip(major_minor(&server))
            .map(|((_, client), (_, server))| client.abs_diff(server));
        if let Some(skew) = skew.filter(|skew| *skew > 1) {
            findings.push(Finding::warn(
                say!(
                    "kubectl is {skew} minor versions away from the server (one is supported)",
                    "kubectl とサーバーのマイナーバージョンが {skew} 離れています（サポートされるのは 1 つまで）"
                ),
                say!(
                    "use a kubectl of the server's version (`cargo xtask up` prints a PATH with one)",
                    "サーバーと同じバージョンの kubectl を使ってください（`cargo xtask up` がその PATH を表示します）"
                ),
            ));
        }
        true
    }

    fn context(&self) -> Finding {
        let context = self
            .kubectl_output(&["config", "current-context"], None)
            .unwrap_or_default();
        let namespace = self
            .kubectl_output(&["config", "view", "--minify", "-o", "jsonpath={..namespace}"], None)
            .ok()
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".to_string());
        Finding::ok(say!(
            "context {context}, namespace {namespace}: the stages work there",
            "コンテキスト {context}、ネームスペース {namespace}: 各段階はここで動きます"
        ))
    }

    /// Which stage's CRDs the cluster serves, against the ones `stage` needs.
    fn crds(&self, stage: Option<&str>) -> Finding {
        let printed = match self.printed_crds() {
            Ok(printed) => printed,
            Err(finding) => return finding,
        };
        // The latest stage whose CRDs are all installed exactly as it prints them.
        let installed = printed
            .iter()
            .rev()
            .find(|(_, yaml)| {
                self.kubectl_output(&["diff", "--server-side", "-f", "-"], Some(yaml))
                    .is_ok()
            })
            .map(|(name, _)| *name);
        crds_finding(stage, installed)
    }

    /// Each stage with the CRDs its program prints (`<stage> crd`), or a
    /// warning when one of the programs is not built.
    fn printed_crds(&self) -> Result<Vec<(&'static str, String)>, Finding> {
        let mut printed = Vec::new();
        for name in STAGES {
            let program = self.programs.join(name);
            let output = Command::new(&program).arg("crd").output();
            match output {
                Ok(output) if output.status.success() => {
                    printed.push((name, String::from_utf8_lossy(&output.stdout).into_owned()));
                }
                _ => {
                    return Err(Finding::warn(
                        say!(
                            "cannot compare the installed CRDs: {} is not built",
                            "インストールされている CRD と比べられません: {} がビルドされていません",
                            program.display()
                        ),
                        "cargo build --bins --examples",
                    ));
                }
            }
        }
        Ok(printed)
    }

    fn permissions(&self, stage: &str) -> Finding {
        let missing: Vec<String> = permissions(stage)
            .into_iter()
            .filter(|(verb, resource)| {
                let (kind, subresource) = resource.split_once('/').unwrap_or((resource, ""));
                let kind = match kind.contains('.') {
                    true => kind.to_string(),
                    false => format!("{kind}.{GROUP}"),
                };
                let mut args = vec!["auth", "can-i", verb, &kind];
                let subresource = format!("--subresource={subresource}");
                if resource.contains('/') {
                    args.push(&subresource);
                }
                self.kubectl_output(&args, None).as_deref() != Ok("yes")
            })
            .map(|(verb, resource)| format!("{verb} {resource}"))
            .collect();
        if missing.is_empty() {
            Finding::ok(say!(
                "you may do what {stage}'s controllers do",
                "{stage} のコントローラーに必要な操作は、すべて許可されています"
            ))
        } else {
            Finding::fail(
                say!(
                    "{stage}'s controllers would be refused: {}",
                    "{stage} のコントローラーは次の操作を拒否されます: {}",
                    missing.join(", ")
                ),
                say!(
                    "use a context with more rights in this namespace (the local control plane's is admin)",
                    "このネームスペースでもっと権限のあるコンテキストを使ってください（ローカルコントロールプレーンのものは admin です）"
                ),
            )
        }
    }

    /// What this machine has prepared: stages built, control-plane binaries, disk.
    fn local_checks(&self) -> Vec<Finding> {
        let mut findings = vec![self.stages_built(), control_plane_built()];
        findings.extend(self.free_disk());
        findings
    }

    /// Whether every stage and its workbench example is built.
    fn stages_built(&self) -> Finding {
        let built = STAGES
            .iter()
            .all(|stage| self.programs.join(stage).is_file() && self.programs.join("examples").join(stage).is_file());
        if built {
            Finding::ok(say!(
                "the stages and your workbench are built",
                "各段階と自分の作業フォルダーはビルド済みです"
            ))
        } else {
            Finding::warn(
                say!(
                    "the stages are not all built yet (after the tooling's first build, about half a minute)",
                    "まだビルドされていない段階があります（ツールの初回のビルドの後なら 30 秒ほどです）"
                ),
                "cargo build --bins --examples",
            )
        }
    }

    /// The free space on the repository's disk; `None` when `df` does not say.
    fn free_disk(&self) -> Option<Finding> {
        let df = Command::new("df").arg("-Pk").arg(&self.root).output();
        let kib = df
            .ok()
            .and_then(|output| available_kib(&String::from_utf8_lossy(&output.stdout)))?;
        let gib = kib / (1024 * 1024);
        Some(if gib >= FREE_DISK_GIB {
            Finding::ok(say!(
                "{gib} GiB free on this disk",
                "このディスクの空きは {gib} GiB です"
            ))
        } else {
            Finding::warn(
                say!(
                    "only {gib} GiB free on this disk",
                    "このディスクの空きは {gib} GiB しかありません"
                ),
                say!(
                    "free up some space: builds and the local control plane need about {FREE_DISK_GIB} GiB",
                    "空きを作ってください。ビルドとローカルコントロールプレーンに {FREE_DISK_GIB} GiB ほど必要です"
                ),
            )
        })
    }
}

/// Whether the control-plane binaries are on this machine (see `assets::locate`).
fn control_plane_built() -> Finding {
    match crate::assets::locate() {
        Some(assets) => Finding::ok(say!(
            "the local control plane is here ({})",
            "ローカルコントロールプレーンは用意できています（{}）",
            assets.dir.display()
        )),
        None => Finding::warn(
            say!(
                "the local control plane is not here yet (needed only without kind, minikube or k3d)",
                "ローカルコントロールプレーンはまだありません（kind、minikube、k3d を使わないときだけ必要です）"
            ),
            if crate::download::linux_arch().is_some() {
                say!(
                    "cargo xtask build (downloads the release binaries once, about 250 MB; \
                     if that fails, builds them from source: Go 1.26 or later, 8 to 12 minutes)",
                    "cargo xtask build（初回だけリリース版のバイナリを約 250 MB ダウンロードします。\
                     失敗したらソースからビルドします: Go 1.26 以降、8〜12 分）"
                )
            } else {
                say!(
                    "cargo xtask build (builds it from source once: Go 1.26 or later, 8 to 12 minutes)",
                    "cargo xtask build（初回だけソースからビルドします: Go 1.26 以降、8〜12 分）"
                )
            },
        ),
    }
}

/// The finding for the CRDs of stage `installed` (the latest stage whose
/// CRDs the cluster serves, if any), when `stage` is the one to run.
fn crds_finding(stage: Option<&str>, installed: Option<&str>) -> Finding {
    let install = |stage: &str| format!("cargo run --example {stage} -- crd | kubectl apply --server-side -f -");
    match (stage, installed) {
        (Some(stage), Some(found))
            if STAGES.iter().position(|s| *s == found) >= STAGES.iter().position(|s| *s == stage) =>
        {
            Finding::ok(say!(
                "the cluster serves the CRDs {stage} needs (those of {found})",
                "クラスターには {stage} に必要な CRD が入っています（{found} のもの）"
            ))
        }
        (Some(stage), Some(found)) => Finding::fail(
            say!(
                "the cluster serves the CRDs of {found}, an earlier stage than {stage}",
                "クラスターに入っているのは {stage} より前の段階 {found} の CRD です"
            ),
            install(stage),
        ),
        (Some(stage), None) => Finding::fail(
            say!(
                "the cluster does not serve the CRDs that {stage} needs",
                "クラスターに {stage} に必要な CRD が入っていません"
            ),
            install(stage),
        ),
        (None, Some(found)) => Finding::ok(say!(
            "the cluster serves the CRDs of {found}",
            "クラスターには {found} の CRD が入っています"
        )),
        (None, None) => Finding::warn(
            say!(
                "the cluster serves none of the stages' CRDs as they are printed now",
                "このクラスターには、どの段階の CRD も（今の形では）まだ入っていません"
            ),
            say!(
                "install the CRDs of the stage you start: {}",
                "始める段階の CRD をインストールしてください: {}",
                install("step01_crd")
            ),
        ),
    }
}

/// `gitVersion` of `key` ("clientVersion", "serverVersion") in `kubectl version -o json`.
fn git_version(json: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value[key]["gitVersion"].as_str().map(str::to_string)
}

/// The doctor of this repository, with kubectl from PATH and the current kubeconfig.
pub fn for_repository(root: &Path, target: &Path) -> Doctor {
    Doctor {
        kubectl: PathBuf::from("kubectl"),
        kubeconfig: None,
        programs: target.join("debug"),
        root: root.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_the_tools_print() {
        assert_eq!(major_minor("v1.36.3"), Some((1, 36)));
        assert_eq!(major_minor("v1.32.4-dispatcher"), Some((1, 32)));
        assert_eq!(major_minor("1.89"), Some((1, 89)));
        assert_eq!(rustc_version("rustc 1.91.0 (f8297e351 2025-10-28)"), Some((1, 91)));
        assert_eq!(major_minor("nonsense"), None);
    }

    #[test]
    fn a_rustc_that_does_not_run_is_told_apart_from_a_missing_one() {
        let rustup = "error: rustup could not choose a version of rustc to run, because one wasn't specified explicitly, and no default is configured.\nhelp: run 'rustup default stable' to download the latest stable release of Rust and set it as your default toolchain.\n";
        let finding = rustc_does_not_run(rustup).render();
        assert!(finding.contains(": error: rustup could not choose"), "{finding}");
        assert!(finding.ends_with("→ rustup default stable"), "{finding}");
        let other = rustc_does_not_run("\nSegmentation fault\n").render();
        assert!(
            other.contains(": Segmentation fault") && other.contains("rustc --version"),
            "{other}"
        );
    }

    #[test]
    fn free_space_is_read_from_df() {
        let df = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n/dev/sda1 100 40 60 40% /\n";
        assert_eq!(available_kib(df), Some(60));
        assert_eq!(available_kib(""), None);
    }

    #[test]
    fn later_stages_need_more_permissions() {
        let first = permissions("step01_crd");
        let last = permissions("step04_fermat");
        assert!(first.iter().all(|needed| last.contains(needed)));
        assert!(last.contains(&("patch", "fermats/status")));
        assert!(!first.contains(&("create", "numbers")));
    }

    #[test]
    fn a_finding_that_is_not_ok_says_the_fix() {
        let finding = Finding::fail("no cluster answers", "cargo xtask up");
        assert_eq!(finding.render(), "✗ no cluster answers\n    → cargo xtask up");
        assert_eq!(Finding::ok("fine").render(), "✓ fine");
    }
}
