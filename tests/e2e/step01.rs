//! Stage 1: the Number CRD, and a controller that only logs what it sees.

use anyhow::{Result, ensure};

use crate::Case;
use crate::cluster::{STAGES, Scenario, Stage, expect_one_line_error, last_lines, run_to_exit};
use crate::guides;

const SAMPLE: &str = include_str!("../../solutions/step01_crd/samples/numbers.yaml");

/// A scenario of `$stage` named after its function. Options: `needs_audit_log`
/// (reads the local API server's audit log), `own_plane` (a local plane of its
/// own with the stage's CRDs), `outage` (the same, for a scenario that mostly
/// waits out an outage: it runs beside the others, see `Case::mostly_waits`),
/// `bare_plane` (a local plane of its own, no CRDs), `beyond_lesson`.
macro_rules! case {
    ($stage:expr, $name:ident $(, $option:ident)*) => {{
        #[allow(unused_mut)]
        let mut case = Case {
            name: stringify!($name),
            cluster: $stage,
            needs_audit_log: false,
            own_plane: None,
            mostly_waits: false,
            lesson: true,
            group: None,
            run: |scenario| Box::pin($name(scenario)),
        };
        $(case!(@option case, $option);)*
        case
    }};
    (@option $case:ident, needs_audit_log) => { $case.needs_audit_log = true; };
    (@option $case:ident, own_plane) => {
        $case.own_plane = Some(crate::OwnPlane::WithCrds);
        $case.needs_audit_log = true;
        $case.lesson = false;
    };
    (@option $case:ident, outage) => {
        case!(@option $case, own_plane);
        $case.mostly_waits = true;
    };
    (@option $case:ident, bare_plane) => {
        $case.own_plane = Some(crate::OwnPlane::Bare);
        $case.lesson = false;
    };
    (@option $case:ident, beyond_lesson) => { $case.lesson = false; };
}
pub(crate) use case;

pub fn cases() -> Vec<Case> {
    vec![
        case!(Stage::Step01, the_cluster_serves_exactly_the_crd_the_program_prints),
        case!(
            Stage::Step01,
            numbers_can_be_created_and_listed_and_the_controller_logs_them
        ),
        // The kit's check of a stage-2 program on stage 1's CRDs. Named
        // `kit::…`, not `step01_crd::…`: `cargo xtask check step01 --all`
        // would run it on the attendee's stage-2 workbench, whose status
        // (their next stage's TODOs) may not be written yet.
        Case {
            group: Some("kit"),
            ..case!(
                Stage::Step01,
                a_program_whose_crds_are_missing_says_how_to_install_them,
                beyond_lesson
            )
        },
        // The kit's checks, run with later stages' programs: not stage 1's lesson.
        case!(
            Stage::Step01,
            an_unreachable_cluster_is_reported_in_one_line,
            beyond_lesson
        ),
        case!(Stage::Step01, the_guide_shows_what_a_real_run_prints),
        case!(Stage::Step01, warm_up_a_deleted_pod_of_a_deployment_is_replaced),
        case!(
            Stage::Step01,
            a_cluster_without_any_workshop_crd_gets_the_one_line_fix,
            bare_plane
        ),
    ]
}

/// The stage's cluster was set up with `step01_crd crd | kubectl apply --server-side -f -`;
/// `kubectl diff` (exit 0: no difference) shows the API server took it as printed.
async fn the_cluster_serves_exactly_the_crd_the_program_prints(s: Scenario<'_>) -> Result<()> {
    let crds = Stage::Step01.crds()?;
    let diff = s.kubectl_output(&["diff", "--server-side", "-f", "-"], Some(&crds))?;
    ensure!(
        diff.status.code() == Some(0),
        "the installed CRD differs from the printed one ({}):\n{}{}",
        diff.status,
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    let established = s.kubectl(&[
        "get",
        "crd",
        "numbers.math.workshop.example",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
    ])?;
    ensure!(established == "True", "the CRD is not Established: {established:?}");
    Ok(())
}

async fn numbers_can_be_created_and_listed_and_the_controller_logs_them(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step01)?;
    s.apply(SAMPLE).await?;
    let listed = s.kubectl(&["get", "numbers"])?;
    ensure!(
        listed
            .lines()
            .next()
            .is_some_and(|header| header.split_whitespace().eq(["NAME", "VALUE", "AGE"])),
        "unexpected columns:\n{listed}"
    );
    ensure!(
        listed
            .lines()
            .any(|row| row.split_whitespace().take(2).eq(["fifteen", "15"])),
        "fifteen is not listed:\n{listed}"
    );
    let s = &s;
    s.eventually("the controller to log the Number", || async move {
        let log = s.controller_log();
        let seen = log
            .lines()
            .any(|line| line.contains("saw Number") && line.contains("fifteen") && line.contains("value=15"));
        if seen { Ok(()) } else { Err(last_lines(&log, 5)) }
    })
    .await
}

async fn a_program_whose_crds_are_missing_says_how_to_install_them(s: Scenario<'_>) -> Result<()> {
    // This cluster has only stage 1's CRD; stage 2 needs the status subresource.
    let output = run_to_exit(&Stage::Step02.program()?, &[], &s.kubeconfig)?;
    let message = expect_one_line_error(&output)?;
    ensure!(
        message.contains("numbers/status") && message.contains("crd | kubectl apply"),
        "the message does not say what is missing and how to install it: {message}"
    );
    Ok(())
}

async fn an_unreachable_cluster_is_reported_in_one_line(s: Scenario<'_>) -> Result<()> {
    // Port 1 on 127.0.0.1: nothing listens there.
    let nowhere = s.kubeconfig.with_file_name("nowhere.kubeconfig");
    std::fs::write(
        &nowhere,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1\n\
         users:\n- name: nobody\n  user: {}\ncontexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\n\
         current-context: nowhere\n",
    )?;
    for stage in [Stage::Step01, Stage::Step04] {
        let output = run_to_exit(&stage.program()?, &[], &nowhere)?;
        let message = expect_one_line_error(&output)?;
        ensure!(
            message.contains("https://127.0.0.1:1"),
            "{}: the message does not mention the cluster: {message}",
            stage.name()
        );
    }
    Ok(())
}

/// With not one CRD of the group installed, the API server answers the
/// discovery request with a bare `404 page not found`, not a Status.
async fn a_cluster_without_any_workshop_crd_gets_the_one_line_fix(s: Scenario<'_>) -> Result<()> {
    for stage in STAGES {
        let output = run_to_exit(&stage.program()?, &[], &s.kubeconfig)?;
        let message = expect_one_line_error(&output)?;
        // `cargo run --bin …` for a finished stage, `--example` for a workbench.
        let fix = format!("{} -- crd | kubectl apply", stage.name());
        ensure!(
            message.contains("cargo run --") && message.contains(&fix),
            "{}: the message does not give the fix: {message}",
            stage.name()
        );
        if stage == Stage::Step04 {
            crate::robustness::input(
                "K08",
                "a stage started on a cluster without the workshop's CRDs",
                &format!("one line: {message}"),
            )?;
        }
    }
    Ok(())
}

/// The commands of steps/*/01-crd.md, and what they print there.
async fn the_guide_shows_what_a_real_run_prints(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step01)?;
    s.apply(SAMPLE).await?;
    guides::expect_table(&s, "step01-numbers", &["get", "numbers"]).await?;
    let s = &s;
    s.eventually("the controller to log the three Numbers", || async move {
        let log = s.controller_log();
        if log.matches("saw Number").count() >= 3 {
            Ok(())
        } else {
            Err(last_lines(&log, 5))
        }
    })
    .await?;
    guides::expect_logged(s, "step01", &s.controller_log())
}

/// The warm-up of steps/*/setup.md: a built-in controller heals a Deployment.
/// The Pods stay Pending on a plane without nodes; the healing is the same.
async fn warm_up_a_deleted_pod_of_a_deployment_is_replaced(s: Scenario<'_>) -> Result<()> {
    s.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=3"])?;
    let pods = |s: &Scenario<'_>| -> Result<Vec<String>, String> {
        let names = s
            .kubectl(&["get", "pods", "-o", "name"])
            .map_err(|err| format!("{err:#}"))?;
        Ok(names.lines().map(str::to_string).collect())
    };
    let first = s
        .eventually("three Pods", || async {
            let names = pods(&s)?;
            if names.len() == 3 {
                Ok(names)
            } else {
                Err(format!("{names:?}"))
            }
        })
        .await?;
    s.kubectl(&["delete", &first[0], "--wait=false"])?;
    s.eventually("three Pods again, one of them new", || async {
        let names = pods(&s)?;
        let replaced = names.len() == 3 && !names.contains(&first[0]);
        if replaced { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await
}
