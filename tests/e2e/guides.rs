//! What the guides (`steps/`) show as output, checked against real runs: each
//! ```text block after `<!-- output: NAME -->` must be the table that the
//! scenario `the_guide_of_stageNN_shows_what_a_real_run_prints` sees (without
//! the AGE column) or the text it prints (`cargo xtask tree --once`, in the
//! guide's language, with the scenario's namespace read as `default`), and each line after `<!-- log: TAG -->` must be a line
//! that the controller really logs (without its timestamp). Every language
//! shows the same blocks.

use std::fs;

use anyhow::{Context, Result, bail, ensure};

use xtask::lang::Language;

use crate::cluster::Scenario;

/// Every guide's text, with its path.
fn guides() -> Result<Vec<(String, String)>> {
    let root = xtask::repository_root();
    let root = root.as_path();
    xtask::catalogue::guide_files(root)?
        .into_iter()
        .map(|path| {
            let text =
                fs::read_to_string(root.join(&path)).with_context(|| format!("cannot read {}", path.display()))?;
            Ok((path.display().to_string(), text))
        })
        .collect()
}

/// The blocks after `<!-- KIND: NAME -->` in every guide, with the guide's path.
fn blocks(kind: &str, name: &str) -> Result<Vec<(String, String)>> {
    let marker = format!("<!-- {kind}: {name} -->");
    let mut found = Vec::new();
    for (path, text) in guides()? {
        for (at, _) in text.match_indices(&marker) {
            let rest = &text[at + marker.len()..];
            let block = rest
                .trim_start()
                .strip_prefix("```text\n")
                .and_then(|block| block.split_once("```"))
                .map(|(block, _)| block.to_string())
                .with_context(|| format!("{path}: `{marker}` is not followed by a ```text block"))?;
            found.push((path.clone(), block));
        }
    }
    if found.is_empty() {
        bail!("no guide shows `{marker}`");
    }
    Ok(found)
}

/// The rows of a `kubectl get` table without its last column (AGE changes).
pub fn without_last_column(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            cells.pop();
            cells
        })
        .collect()
}

/// Waits until `kubectl ARGS` in the scenario prints the table that every
/// guide shows after `<!-- output: NAME -->`.
pub async fn expect_table(s: &Scenario<'_>, name: &str, args: &[&str]) -> Result<()> {
    let shown = blocks("output", name)?;
    s.eventually(
        &format!(
            "`kubectl {}` to print the table the guides show ({name})",
            args.join(" ")
        ),
        || async {
            let real = s.kubectl(args).map_err(|err| format!("{err:#}"))?;
            for (path, block) in &shown {
                if without_last_column(block) != without_last_column(&real) {
                    return Err(format!("the cluster prints\n{real}where {path} shows\n{block}"));
                }
            }
            Ok(())
        },
    )
    .await
}

/// Checks that every guide shows exactly the tree `snapshot` prints in the
/// guide's language after `<!-- output: NAME -->`, once the scenario's
/// namespace is read as `default`.
pub fn expect_tree(s: &Scenario<'_>, name: &str, snapshot: &xtask::tree_live::Snapshot) -> Result<()> {
    for (path, block) in blocks("output", name)? {
        let language = Language::of_guide(&path);
        let real = snapshot
            .text(language)
            .replace(&format!(" {}:", s.namespace), " default:");
        ensure!(block == real, "{path} shows\n{block}but the real run prints\n{real}");
    }
    Ok(())
}

/// Checks that every line the guides show after `<!-- log: TAG -->` is a line
/// of `log`, once the scenario's namespace is read as `default` and the
/// timestamp is left out.
pub fn expect_logged(s: &Scenario<'_>, tag: &str, log: &str) -> Result<()> {
    let real: Vec<String> = log
        .lines()
        .map(|line| {
            let line = line.replace(&format!(".{} ", s.namespace), ".default ");
            let line = line.replace(&format!("namespace=\"{}\"", s.namespace), "namespace=\"default\"");
            // "2026-01-01T00:00:00.000000Z  INFO …": drop the timestamp.
            line.split_once(' ')
                .map(|(_, rest)| rest.trim_start().to_string())
                .unwrap_or(line)
        })
        .collect();
    for (path, block) in blocks("log", tag)? {
        for line in block.lines().filter(|line| !line.trim().is_empty()) {
            ensure!(
                real.iter().any(|real_line| real_line == line),
                "{path} shows a log line the controller does not print: {line}\nit printed:\n{}",
                crate::cluster::last_lines(log, 10)
            );
        }
    }
    Ok(())
}
