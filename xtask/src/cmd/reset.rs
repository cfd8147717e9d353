//! `cargo xtask reset`: a clean slate between stages.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::catalogue::{CRDS, STAGES};
use crate::{process, say};

/// A clean slate between stages: deletes the workshop's CRDs from the cluster
/// of the current kubeconfig context, and with them every Number, Tuple and
/// Fermat in every namespace. Nothing else is touched.
pub fn run() -> Result<ExitCode> {
    let kubectl = || Command::new("kubectl");
    let context = current_context()?;
    let installed = installed_stage();
    println!(
        "{}",
        say!(
            "Deleting every Number, Tuple and Fermat, and their CRDs, from context {context}…",
            "コンテキスト {context} から、すべての Number、Tuple、Fermat とその CRD を削除しています…"
        )
    );
    let mut delete = kubectl();
    delete
        .args(["delete", "crd", "--ignore-not-found", "--wait=true"])
        .args(CRDS);
    process::run(&mut delete).context(say!(
        "kubectl could not delete the CRDs",
        "kubectl が CRD を削除できませんでした"
    ))?;
    // The stage after the one whose CRDs were there (stage 1 after the last).
    let next = match installed {
        Some(index) if index + 1 < STAGES.len() => STAGES[index + 1],
        _ => STAGES[0],
    };
    let which = match installed {
        Some(index) if index + 1 == STAGES.len() => say!(
            "Done: stage 4's CRDs were there, the last stage's. To start over with stage 1, install its CRDs:",
            "完了: 最後の段階である段階 4 の CRD が入っていました。段階 1 からやり直すときは、その CRD をインストールします。"
        ),
        Some(index) => say!(
            "Done: stage {}'s CRDs were there. Stage {} comes next; install its CRDs:",
            "完了: 段階 {} の CRD が入っていました。次は段階 {} です。その CRD をインストールします。",
            index + 1,
            index + 2
        ),
        None => say!(
            "Done: no stage's CRDs were there. Install those of the stage you start, as its guide's \"Run it\" \
             shows; for stage 1:",
            "完了: どの段階の CRD も入っていませんでした。始める段階の CRD を、ガイドの「実行する」のとおりに\
             インストールしてください。段階 1 なら次のとおりです。"
        ),
    };
    println!("{which}\n\n    cargo run --example {next} -- crd | kubectl apply --server-side -f -");
    Ok(ExitCode::SUCCESS)
}

/// The name of kubectl's current context, or the fix when it has none.
fn current_context() -> Result<String> {
    let answer = match Command::new("kubectl").args(["config", "current-context"]).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_string(),
        Ok(output) => bail!(
            "{}",
            say!(
                "kubectl has no current context ({}); run the `export` lines that `cargo xtask up` printed, \
                 or choose a context with `kubectl config use-context`",
                "kubectl に現在のコンテキストがありません（{}）。`cargo xtask up` が表示した `export` の行を実行するか、\
                 `kubectl config use-context` でコンテキストを選んでください",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        ),
        Err(err) => bail!(
            "{}",
            say!(
                "cannot run kubectl ({err}); run the `export` lines that `cargo xtask up` printed, or install kubectl",
                "kubectl を実行できません（{err}）。`cargo xtask up` が表示した `export` の行を実行するか、kubectl をインストールしてください"
            )
        ),
    };
    Ok(answer)
}

/// The stage (0 for step01) whose CRDs the current cluster serves, told by
/// its kinds: Fermat from stage 4, Tuple from 3, Number's status from 2.
fn installed_stage() -> Option<usize> {
    let mut get = Command::new("kubectl");
    get.args(["get", "crd", "--ignore-not-found", "-o"])
        .arg(r#"jsonpath={range .items[*]}{.metadata.name} {.spec.versions[0].subresources.status}{"\n"}{end}"#)
        .args(CRDS);
    // A cluster that cannot say is one with none: deleting tells the error.
    let text = process::stdout_of(&mut get).ok()?;
    let has = |crd: &str| text.lines().any(|line| line.starts_with(crd));
    if has(CRDS[2]) {
        Some(3)
    } else if has(CRDS[1]) {
        Some(2)
    } else if text.lines().any(|line| line.starts_with(CRDS[0]) && line.contains('{')) {
        Some(1)
    } else if has(CRDS[0]) {
        Some(0)
    } else {
        None
    }
}
