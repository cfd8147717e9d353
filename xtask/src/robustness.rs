//! The robustness table, `ROBUSTNESS.md`: every bad input the end-to-end
//! suite tries and what became of it, every fault it injects and what that
//! cost (objects lost, objects left over, time to recover).
//!
//! The scenarios record rows with [`record`] into the file named by
//! `E2E_REPORT`. `cargo maint robustness` runs the suite and writes the
//! document from its rows; `cargo xtask test` renders the rows of its own run
//! and fails when the document shows other rows (the times aside, which
//! differ from run to run).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// The environment variable naming the file the scenarios append rows to.
pub const REPORT_ENV: &str = "E2E_REPORT";

/// The document, from the repository's root.
pub const DOCUMENT: &str = "ROBUSTNESS.md";

/// The line after which `cargo maint soak` writes its section; `cargo xtask
/// robustness` keeps what follows it.
pub const SOAK_MARKER: &str = "<!-- soak: written by `cargo maint soak`, kept by `cargo maint robustness` -->";

/// `document` split at [`SOAK_MARKER`]: the scenarios' part, and the soak's
/// (the marker and what follows it; empty without one).
pub fn split_soak(document: &str) -> (&str, &str) {
    match document.find(SOAK_MARKER) {
        Some(at) => document.split_at(at),
        None => (document, ""),
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// A bad input and what became of it.
    Input { id: String, input: String, outcome: String },
    /// A fault, and the state once the controller recovered. Its id starts with X.
    Fault {
        id: String,
        fault: String,
        lost: usize,
        left_over: usize,
        recovery_seconds: f64,
    },
}

impl Row {
    pub fn id(&self) -> &str {
        match self {
            Row::Input { id, .. } | Row::Fault { id, .. } => id,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Row::Input { id, input, outcome } => {
                serde_json::json!({"table": "input", "id": id, "input": input, "outcome": outcome})
            }
            Row::Fault {
                id,
                fault,
                lost,
                left_over,
                recovery_seconds,
            } => serde_json::json!({
                "table": "fault", "id": id, "fault": fault, "lost": lost,
                "left_over": left_over, "recovery_seconds": recovery_seconds,
            }),
        }
    }

    fn from_json(value: &serde_json::Value) -> Option<Row> {
        let text = |key: &str| value[key].as_str().map(str::to_string);
        match value["table"].as_str()? {
            "input" => Some(Row::Input {
                id: text("id")?,
                input: text("input")?,
                outcome: text("outcome")?,
            }),
            "fault" => Some(Row::Fault {
                id: text("id")?,
                fault: text("fault")?,
                lost: value["lost"].as_u64()? as usize,
                left_over: value["left_over"].as_u64()? as usize,
                recovery_seconds: value["recovery_seconds"].as_f64()?,
            }),
            _ => None,
        }
    }
}

/// Appends `row` to the report file, if the run keeps one (`E2E_REPORT`).
pub fn record(row: &Row) -> Result<()> {
    let Some(path) = std::env::var_os(REPORT_ENV) else {
        return Ok(());
    };
    let mut line = row.to_json().to_string();
    line.push('\n');
    // One write per line, in append mode: lines from parallel scenarios do not mix.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .with_context(|| format!("cannot append to {}", Path::new(&path).display()))
}

/// The rows in a report file.
pub fn read(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).context("a report line is not JSON")?;
            Row::from_json(&value).with_context(|| format!("not a row of the table: {line}"))
        })
        .collect()
}

/// A Markdown table cell: pipes escaped, one line.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The order of the groups of ids: Numbers, Tuples, Fermats, the program's
/// command line and kubeconfig, faults.
const GROUPS: &str = "NTFKX";

/// The document for `rows`, ordered by group, then id.
pub fn render(rows: &[Row], kubernetes_version: &str) -> String {
    let mut rows = rows.to_vec();
    let key = |row: &Row| {
        let group = row
            .id()
            .chars()
            .next()
            .and_then(|c| GROUPS.find(c))
            .unwrap_or(GROUPS.len());
        (group, row.id().to_string())
    };
    rows.sort_by_key(key);
    let inputs: Vec<&Row> = rows.iter().filter(|row| matches!(row, Row::Input { .. })).collect();
    let faults: Vec<&Row> = rows.iter().filter(|row| matches!(row, Row::Fault { .. })).collect();
    let mut out = String::new();
    out.push_str("# What the controllers survive\n\n");
    out.push_str(&format!(
        "Generated by `cargo maint robustness` from a run of the end-to-end suite on\n\
         the local control plane (Kubernetes {kubernetes_version}, 2 cores); do not edit it by hand.\n\
         Each row is checked by a scenario: a bad input gets exactly the outcome\n\
         shown, and after each fault the namespace holds exactly the objects that\n\
         the specs want. `cargo xtask test` fails when a run records other rows\n\
         than these (the times aside).\n\n"
    ));
    out.push_str(&input_section(&inputs));
    out.push_str(&fault_section(&faults));
    out
}

/// The section of bad inputs: its heading, what the ids mean, and the table.
fn input_section(inputs: &[&Row]) -> String {
    let mut out = format!("## Bad input ({})\n\n", inputs.len());
    out.push_str(
        "Ids: N Numbers, T Tuples, F Fermats, K the program's command line and\n\
         kubeconfig. \"Refused\" rows quote the API server's answer to `kubectl\n\
         apply`; the program's own mistakes are one line on stderr and exit code 1.\n\n",
    );
    out.push_str("| id | input | outcome |\n|---|---|---|\n");
    for row in inputs {
        if let Row::Input { id, input, outcome } = row {
            out.push_str(&format!("| {id} | {} | {} |\n", cell(input), cell(outcome)));
        }
    }
    out
}

/// The section of faults: its heading, what the columns mean, and the table.
fn fault_section(faults: &[&Row]) -> String {
    let mut out = format!("\n## Faults ({})\n\n", faults.len());
    out.push_str(
        "Lost: objects the specs want that were missing once the controller had\n\
         recovered. Left over: objects there that no spec wants (duplicates,\n\
         orphans). Recovery: from the end of the fault until every object had a\n\
         status for its current spec, in seconds, from this run.\n\n",
    );
    out.push_str("| id | fault | lost | left over | recovery (s) |\n|---|---|---|---|---|\n");
    for row in faults {
        if let Row::Fault {
            id,
            fault,
            lost,
            left_over,
            recovery_seconds,
        } = row
        {
            out.push_str(&format!(
                "| {id} | {} | {lost} | {left_over} | {recovery_seconds:.1} |\n",
                cell(fault)
            ));
        }
    }
    out
}

/// The part of a document that must not change from run to run: every line
/// but the recovery times (the last cell of a fault's row, whose id starts with X).
pub fn stable_part(document: &str) -> Vec<String> {
    split_soak(document)
        .0
        .trim_end()
        .lines()
        .map(|line| match line.starts_with("| X") {
            true => line
                .trim_end_matches(" |")
                .rsplit_once('|')
                .map(|(rest, _)| rest.to_string())
                .unwrap_or_default(),
            false => line.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row::Fault {
                id: "X01".into(),
                fault: "etcd killed for 20 s".into(),
                lost: 0,
                left_over: 0,
                recovery_seconds: 4.31,
            },
            Row::Input {
                id: "N02".into(),
                input: "Number, value `a|b`".into(),
                outcome: "refused".into(),
            },
            Row::Input {
                id: "N01".into(),
                input: "Number, value 0".into(),
                outcome: "accepted".into(),
            },
            Row::Input {
                id: "F01".into(),
                input: "Fermat, n = 0".into(),
                outcome: "refused".into(),
            },
        ]
    }

    #[test]
    fn rows_survive_the_report_file() {
        for row in rows() {
            assert_eq!(Row::from_json(&row.to_json()), Some(row));
        }
    }

    #[test]
    fn the_table_is_ordered_by_id_and_escapes_pipes() {
        let document = render(&rows(), "v1.36.3");
        let first = document.find("| N01 |").unwrap();
        let second = document.find("| N02 |").unwrap();
        let fermat = document.find("| F01 |").unwrap();
        assert!(first < second && second < fermat, "Numbers come before Fermats");
        assert!(document.contains("| N02 | Number, value `a\\|b` | refused |"));
        assert!(document.contains("| X01 | etcd killed for 20 s | 0 | 0 | 4.3 |"));
        assert!(document.contains("## Bad input (3)") && document.contains("## Faults (1)"));
    }

    #[test]
    fn times_are_not_part_of_what_must_stay_the_same() {
        let mut faster = rows();
        if let Row::Fault { recovery_seconds, .. } = &mut faster[0] {
            *recovery_seconds = 9.0;
        }
        assert_eq!(stable_part(&render(&rows(), "v1")), stable_part(&render(&faster, "v1")));
        let mut lost = rows();
        if let Row::Fault { lost, .. } = &mut lost[0] {
            *lost = 1;
        }
        assert_ne!(stable_part(&render(&rows(), "v1")), stable_part(&render(&lost, "v1")));
        let mut other = rows();
        other.pop();
        assert_ne!(stable_part(&render(&rows(), "v1")), stable_part(&render(&other, "v1")));
    }
}
