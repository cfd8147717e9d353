//! Stage 2: the status subresource, fizzBuzz and isSquare.

use anyhow::{Result, ensure};
use kube::api::{Patch, PatchParams};

use crate::Case;
use crate::cluster::{Scenario, Stage, field};
use crate::guides;
use crate::step01::case;

const SAMPLES: &str = include_str!("../../solutions/step02_status/samples/numbers.yaml");
const INVALID: &str = include_str!("../../solutions/step02_status/samples/invalid-number.yaml");

pub fn cases() -> Vec<Case> {
    vec![
        case!(Stage::Step02, status_appears_in_the_printer_columns),
        case!(Stage::Step02, the_status_follows_edits_of_the_value),
        case!(Stage::Step02, zero_and_negative_values_follow_the_same_rules),
        case!(Stage::Step02, the_schema_rejects_a_value_that_is_not_an_integer),
        case!(Stage::Step02, the_guide_shows_what_a_real_run_prints),
        case!(Stage::Step02, a_refused_status_write_is_retried_with_a_growing_delay),
        case!(Stage::Step02, the_doctor_names_the_stage_whose_crds_are_installed),
        case!(
            Stage::Step02,
            a_restarted_controller_rewrites_no_status_that_is_already_right,
            needs_audit_log
        ),
        case!(
            Stage::Step02,
            every_request_of_the_controller_names_its_program,
            needs_audit_log,
            beyond_lesson
        ),
    ]
}

/// The controller names itself to the API server (its User-Agent), so that
/// an audit log tells which program, and which stage, sent a request.
async fn every_request_of_the_controller_names_its_program(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step02)?;
    s.apply(
        "apiVersion: math.workshop.example/v1beta1\nkind: Number\nmetadata:\n  name: fifteen\nspec:\n  value: 15\n",
    )
    .await?;
    s.expect_status_field("Number", "fifteen", "fizzBuzz", serde_json::json!("FizzBuzz"))
        .await?;
    let writes: Vec<String> = s
        .recorded_writes()?
        .into_iter()
        .filter(|write| write.subresource == "status" && write.name == "fifteen")
        .map(|write| write.user_agent)
        .collect();
    ensure!(!writes.is_empty(), "the audit log has no status write of fifteen");
    ensure!(
        writes.iter().all(
            |agent| agent.starts_with(&format!("{}-step02_status/", kit::CONTROLLER_NAME)) && agent.ends_with(')')
        ),
        "the status writes came with the User-Agents {writes:?}, not math-controller-step02_status/VERSION (…)"
    );
    Ok(())
}

fn number(name: &str, value: i64) -> String {
    format!(
        "apiVersion: math.workshop.example/v1beta1\nkind: Number\nmetadata:\n  name: {name}\nspec:\n  value: {value}\n"
    )
}

/// Waits until Number `name` reports `fizz_buzz` and `is_square`.
async fn expect_status(s: &Scenario<'_>, name: &str, fizz_buzz: &str, is_square: bool) -> Result<()> {
    let numbers = s.api("Number");
    s.eventually(
        &format!("{name} to report fizzBuzz {fizz_buzz:?} and isSquare {is_square}"),
        || {
            let numbers = numbers.clone();
            async move {
                let number = numbers.get(name).await.map_err(|err| err.to_string())?;
                let status = field(&number, &["status"]);
                if status["fizzBuzz"] == fizz_buzz && status["isSquare"] == is_square {
                    Ok(())
                } else {
                    Err(format!("status {status}"))
                }
            }
        },
    )
    .await
}

async fn status_appears_in_the_printer_columns(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step02)?;
    s.apply(SAMPLES).await?;
    expect_status(&s, "fifteen", "FizzBuzz", false).await?;
    expect_status(&s, "sixteen", "16", true).await?;
    expect_status(&s, "minus-nine", "Fizz", false).await?;
    let table = s.kubectl(&["get", "numbers"])?;
    let rows: Vec<Vec<&str>> = table.lines().map(|line| line.split_whitespace().collect()).collect();
    ensure!(
        rows.first()
            .is_some_and(|header| header == &["NAME", "VALUE", "FIZZBUZZ", "SQUARE", "AGE"]),
        "unexpected columns:\n{table}"
    );
    for expected in [
        ["fifteen", "15", "FizzBuzz", "false"],
        ["sixteen", "16", "16", "true"],
        ["minus-nine", "-9", "Fizz", "false"],
    ] {
        ensure!(
            rows.iter().any(|row| row.get(..4) == Some(&expected[..])),
            "no row {expected:?} in:\n{table}"
        );
    }
    Ok(())
}

async fn the_status_follows_edits_of_the_value(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step02)?;
    s.apply(&number("edited", 16)).await?;
    expect_status(&s, "edited", "16", true).await?;
    let numbers = s.api("Number");
    for (value, fizz_buzz, is_square) in [(17, "17", false), (225, "FizzBuzz", true), (10, "Buzz", false)] {
        let patch = serde_json::json!({ "spec": { "value": value } });
        numbers
            .patch("edited", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        expect_status(&s, "edited", fizz_buzz, is_square).await?;
    }
    Ok(())
}

async fn zero_and_negative_values_follow_the_same_rules(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step02)?;
    let cases = [
        ("zero", 0, "FizzBuzz", true),
        ("minus-seven", -7, "-7", false),
        ("minus-four", -4, "-4", false),
        ("minus-thirty", -30, "FizzBuzz", false),
        ("largest-square", 9_223_372_030_926_249_001, "9223372030926249001", true),
        (
            "after-largest-square",
            9_223_372_030_926_249_002,
            "9223372030926249002",
            false,
        ),
    ];
    for (name, value, _, _) in cases {
        s.apply(&number(name, value)).await?;
    }
    for (name, _, fizz_buzz, is_square) in cases {
        expect_status(&s, name, fizz_buzz, is_square).await?;
    }
    Ok(())
}

async fn the_schema_rejects_a_value_that_is_not_an_integer(s: Scenario<'_>) -> Result<()> {
    let output = s.kubectl_output(&["apply", "-f", "-"], Some(INVALID))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("spec.value"),
        "not rejected as expected: {stderr}"
    );
    Ok(())
}

/// The commands of steps/*/02-status.md, and what they print there.
async fn the_guide_shows_what_a_real_run_prints(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step02)?;
    s.apply(SAMPLES).await?;
    guides::expect_table(&s, "step02-numbers", &["get", "numbers"]).await?;
    guides::expect_logged(&s, "step02", &s.controller_log())?;
    s.kubectl(&[
        "patch",
        "number",
        "sixteen",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"value":17}}"#,
    ])?;
    guides::expect_table(&s, "step02-numbers-patched", &["get", "numbers"]).await
}

/// An admission policy that refuses every status write to the Number
/// `refused` in `namespace`, as a cluster with a stricter policy would.
fn refusing_policy(namespace: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: refuse-status-{namespace}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [math.workshop.example]
      apiVersions: [v1beta1]
      operations: [CREATE, UPDATE]
      resources: [numbers/status]
  validations:
  - expression: object.metadata.name != 'refused'
    message: status writes to this Number are refused by the test
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: refuse-status-{namespace}
spec:
  policyName: refuse-status-{namespace}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {namespace}
"
    )
}

/// Section 2.5: a write that fails is retried after 1 s, then 2 s…, and the
/// status arrives once the cause is gone.
async fn a_refused_status_write_is_retried_with_a_growing_delay(mut s: Scenario<'_>) -> Result<()> {
    let policy = refusing_policy(&s.namespace);
    s.apply(&number("refused", 9)).await?;
    s.apply(&policy).await?;
    // The API server takes a moment to enforce a new policy: probe until it does.
    s.eventually("the policy to refuse status writes", || async {
        let output = s
            .kubectl_output(
                &[
                    "patch",
                    "number",
                    "refused",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    r#"{"status":{"fizzBuzz":"probe","isSquare":false}}"#,
                ],
                None,
            )
            .map_err(|err| format!("{err:#}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        if stderr.contains("refused by the test") {
            Ok(())
        } else {
            Err(format!("not refused yet: {stderr}"))
        }
    })
    .await?;
    s.start_controller(Stage::Step02)?;
    let s = &s;
    // Judged by what the API server saw, not by the log's wording: the
    // refused status writes of the controller (kubectl's probe aside), and
    // the time between them.
    s.eventually("the controller to retry after 1 s, then after 2 s", || async move {
        let refused: Vec<f64> = s
            .recorded_writes()
            .map_err(|err| format!("{err:#}"))?
            .into_iter()
            .filter(|write| {
                write.subresource == "status"
                    && write.name == "refused"
                    && write.code >= 400
                    && !write.user_agent.starts_with("kubectl")
            })
            .map(|write| write.received)
            .collect();
        let gaps: Vec<f64> = refused.windows(2).map(|pair| pair[1] - pair[0]).collect();
        let first_gaps: Vec<String> = gaps.iter().take(4).map(|gap| format!("{gap:.1} s")).collect();
        match gaps.as_slice() {
            [first, second, ..] if *first >= 0.9 && *second >= 1.8 => Ok(()),
            // Nothing to retry: the status is never written (see section 2.4).
            [] if refused.is_empty() => Err("the controller sent no status write at all (see section 2.4)".to_string()),
            _ => Err(format!(
                "{} refused status writes, the first ones {} apart (2.5 retries after 1 s, then 2 s, 4 s…)",
                refused.len(),
                if first_gaps.is_empty() {
                    "not".to_string()
                } else {
                    first_gaps.join(", ")
                }
            )),
        }
    })
    .await?;
    s.kubectl_output(&["delete", "-f", "-"], Some(&policy))?;
    expect_status(s, "refused", "Fizz", true).await
}

/// `cargo xtask doctor step03` on a cluster with stage 2's CRDs says whose
/// CRDs are there and how to install stage 3's; for stage 2 all is well.
async fn the_doctor_names_the_stage_whose_crds_are_installed(s: Scenario<'_>) -> Result<()> {
    let program = Stage::Step02.program()?;
    let doctor = xtask::doctor::Doctor {
        kubectl: s.cluster().kubectl_program().to_path_buf(),
        kubeconfig: Some(s.kubeconfig.clone()),
        programs: program.parent().map(std::path::Path::to_path_buf).unwrap_or_default(),
        root: xtask::repository_root(),
    };
    let about_crds = |stage: &str| {
        doctor
            .run(Some(stage))
            .into_iter()
            .find(|finding| finding.what.contains("CRD"))
            .ok_or_else(|| anyhow::anyhow!("the doctor said nothing about CRDs for {stage}"))
    };
    let stale = about_crds("step03_tuple")?;
    ensure!(
        stale.level == xtask::doctor::Level::Fail
            && stale.what.contains("step02_status")
            && stale
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("step03_tuple -- crd | kubectl apply")),
        "for step03 on stage 2's CRDs the doctor said: {}",
        stale.render()
    );
    let fine = about_crds("step02_status")?;
    ensure!(
        fine.level == xtask::doctor::Level::Ok,
        "for step02 the doctor said: {}",
        fine.render()
    );
    Ok(())
}

/// Section 2.4: a status equal to the desired one is not written again, so a
/// restarted controller, which reconciles every Number it finds, sends nothing.
async fn a_restarted_controller_rewrites_no_status_that_is_already_right(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step02)?;
    for (name, value) in [("fifteen", 15), ("sixteen", 16), ("minus-nine", -9)] {
        s.apply(&number(name, value)).await?;
    }
    expect_status(&s, "fifteen", "FizzBuzz", false).await?;
    expect_status(&s, "sixteen", "16", true).await?;
    expect_status(&s, "minus-nine", "Fizz", false).await?;
    // Judged by when the API server received each write: a write's audit
    // event can reach the log a moment after its status is visible.
    let restarted = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    s.stop_controller();
    s.start_controller(Stage::Step02)?;
    // Something new after the restart: once its status is there, the
    // restarted controller has been through the Numbers it found at start.
    s.apply(&number("sentinel", 4)).await?;
    expect_status(&s, "sentinel", "4", true).await?;
    let rewrites: Vec<String> = s
        .recorded_writes()?
        .into_iter()
        .filter(|write| write.subresource == "status" && write.request_uri.contains("fieldManager=math-controller"))
        .filter(|write| write.received >= restarted && write.name != "sentinel")
        .map(|write| write.name)
        .collect();
    ensure!(
        rewrites.is_empty(),
        "after a restart the controller wrote the statuses of {rewrites:?} again, though they were right \
         (see section 2.4: compare, and write only what differs)"
    );
    Ok(())
}
