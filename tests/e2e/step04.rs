//! Stage 4: Fermats own Tuples, and the cluster decides the theorem.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use xtask::catalogue::{number_name, tuple_name};

use crate::Case;
use crate::cluster::{Scenario, Stage, field};
use crate::guides::{self, without_last_column};
use crate::robustness;
use crate::step01::case;
use crate::step03::{expect_name_clashes, expect_numbers, numbers};

const SAMPLES: &str = include_str!("../../solutions/step04_fermat/samples/fermats.yaml");
const INVALID: &str = include_str!("../../solutions/step04_fermat/samples/invalid-fermat.yaml");

pub fn cases() -> Vec<Case> {
    vec![
        case!(Stage::Step04, the_cluster_finds_13_2_and_25_but_not_7_and_3),
        case!(Stage::Step04, changing_n_replaces_the_tuples),
        case!(
            Stage::Step04,
            deleting_a_grandchild_number_brings_it_back_and_the_answer_with_it
        ),
        case!(Stage::Step04, a_deleted_or_edited_tuple_is_put_back),
        case!(Stage::Step04, deleting_the_fermat_removes_everything),
        case!(
            Stage::Step04,
            a_restarted_controller_rewrites_nothing_that_is_already_right,
            needs_audit_log,
            beyond_lesson
        ),
        case!(Stage::Step04, the_schema_rejects_n_above_the_bound),
        case!(
            Stage::Step04,
            a_restarted_controller_finishes_the_work_left_while_it_was_stopped,
            beyond_lesson
        ),
        case!(
            Stage::Step04,
            ten_fermats_of_100_are_created_with_almost_no_refused_requests,
            needs_audit_log,
            beyond_lesson
        ),
        case!(Stage::Step04, a_status_list_written_by_someone_else_is_cleared),
        case!(
            Stage::Step04,
            two_copies_take_turns_through_a_lease_and_the_second_takes_over,
            needs_audit_log
        ),
        case!(
            Stage::Step04,
            ctrl_c_on_the_leader_hands_the_lease_over_at_once_even_through_a_pipe
        ),
        case!(Stage::Step04, a_run_after_a_killed_run_leads_at_once),
        case!(Stage::Step04, a_foreign_grandchild_is_reported_on_the_fermat),
        case!(
            Stage::Step04,
            a_tuple_whose_owner_reference_is_removed_is_reported_at_once
        ),
        case!(Stage::Step04, a_fermat_being_deleted_gets_no_new_tuples),
        case!(Stage::Step04, after_an_api_server_outage_a_new_fermat_settles, outage),
        case!(
            Stage::Step04,
            after_the_crds_are_reinstalled_a_new_fermat_settles,
            outage
        ),
        case!(
            Stage::Step04,
            after_an_etcd_outage_nothing_is_lost_and_a_new_fermat_settles,
            outage
        ),
        case!(
            Stage::Step04,
            a_fermat_made_under_a_looser_schema_gets_no_tuples_and_the_others_settle,
            own_plane
        ),
        case!(
            Stage::Step04,
            a_namespace_deleted_under_the_controller_leaves_it_running_and_recreated_it_works_again,
            beyond_lesson
        ),
    ]
}

pub fn fermat(name: &str, n: i64) -> String {
    format!(
        "apiVersion: math.workshop.example/v1beta1\nkind: Fermat\nmetadata:\n  name: {name}\nspec:\n  number: {n}\n"
    )
}

/// Whether `object` has a status written for its current spec.
fn status_is_current(object: &kube::api::DynamicObject) -> bool {
    let observed = field(object, &["status", "observedGeneration"]);
    !observed.is_null() && observed.as_i64() == object.metadata.generation
}

/// The answer of Fermat `name` for n, once the whole tree agrees (see
/// [`settled_answers`]).
pub async fn settled_answer(s: &Scenario<'_>, name: &str, n: i64) -> Result<bool> {
    Ok(settled_answers(s, &[(name, n)]).await?[0])
}

/// The answers of the Fermats `wanted` (name, n), once the whole tree of each
/// agrees: every wanted Tuple and Number exists with the wanted spec and a
/// status written for that spec, each Tuple's allSquares matches its
/// Numbers, and the Fermat's answer matches its Tuples. The controllers
/// change nothing in such a state, so the answers are final. Each look lists
/// the three kinds once, for all of them.
pub async fn settled_answers(s: &Scenario<'_>, wanted: &[(&str, i64)]) -> Result<Vec<bool>> {
    let what = match wanted {
        [(name, n)] => format!("{name} ({n}) to settle"),
        _ => format!("{} Fermats to settle", wanted.len()),
    };
    s.eventually(&what, || async move {
        let list = |kind: &'static str| async move {
            let items = s
                .api(kind)
                .list(&ListParams::default())
                .await
                .map_err(|err| err.to_string())?
                .items;
            Ok::<_, String>(
                items
                    .into_iter()
                    .map(|object| (object.name_any(), object))
                    .collect::<std::collections::HashMap<_, _>>(),
            )
        };
        let (fermats, tuples, numbers) = (list("Fermat").await?, list("Tuple").await?, list("Number").await?);
        let mut answers = Vec::new();
        for (name, n) in wanted {
            let (name, n) = (*name, *n);
            let fermat = fermats.get(name).ok_or(format!("{name} is missing"))?;
            if field(fermat, &["spec", "number"]).as_i64() != Some(n) {
                return Err(format!("the spec of {name} does not say {n} yet"));
            }
            if !status_is_current(fermat) {
                return Err(format!("{name} has no status for its current spec"));
            }
            let mut any_all_squares = false;
            for i in 1..=n / 2 {
                let tuple_name = tuple_name(name, i as u64, n as u64);
                let tuple = tuples.get(&tuple_name).ok_or(format!("{tuple_name} is missing"))?;
                if *field(tuple, &["spec", "numbers"]) != serde_json::json!([i, n - i]) || !status_is_current(tuple) {
                    return Err(format!(
                        "{tuple_name} is not put back yet, or has no status for its spec"
                    ));
                }
                let mut both_squares = true;
                for (index, value) in [i, n - i].into_iter().enumerate() {
                    let number_name = number_name(&tuple_name, index);
                    let number = numbers.get(&number_name).ok_or(format!("{number_name} is missing"))?;
                    if field(number, &["spec", "value"]).as_i64() != Some(value) || !status_is_current(number) {
                        return Err(format!(
                            "{number_name} is not put back yet, or has no status for its spec"
                        ));
                    }
                    let is_square = field(number, &["status", "isSquare"])
                        .as_bool()
                        .ok_or(format!("{number_name} has no status"))?;
                    both_squares &= is_square;
                }
                let all_squares = field(tuple, &["status", "allSquares"])
                    .as_bool()
                    .ok_or(format!("{tuple_name} has no status"))?;
                if all_squares != both_squares {
                    return Err(format!(
                        "{tuple_name} reports allSquares {all_squares}, its Numbers say {both_squares}"
                    ));
                }
                any_all_squares |= all_squares;
            }
            let found = field(fermat, &["status", "twoSquaresFound"])
                .as_bool()
                .ok_or(format!("{name} has no status"))?;
            if found != any_all_squares {
                return Err(format!("{name} reports {found}, its Tuples say {any_all_squares}"));
            }
            answers.push(found);
        }
        Ok(answers)
    })
    .await
}

async fn the_cluster_finds_13_2_and_25_but_not_7_and_3(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(SAMPLES).await?;
    for (name, n, expected) in [
        ("thirteen", 13, true),
        ("two", 2, true),
        ("twenty-five", 25, true),
        ("seven", 7, false),
        ("three", 3, false),
    ] {
        let found = settled_answer(&s, name, n).await?;
        ensure!(
            found == expected,
            "{name}: twoSquaresFound is {found}, expected {expected}"
        );
    }
    guides::expect_table(&s, "step04-fermats", &["get", "fermats"]).await?;
    guides::expect_logged(&s, "step04", &s.controller_log())?;
    // The READMEs show this table: check them against the real one (without AGE).
    let table = s.kubectl(&["get", "fermats"])?;
    let real = without_last_column(&table);
    for (readme, text) in [("README.md", README), ("README.ja.md", README_JA)] {
        let shown = text
            .split("kubectl get fermats\n```\n\n```text\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .map(without_last_column);
        ensure!(
            shown.as_ref() == Some(&real),
            "{readme} shows {shown:?}, the cluster shows:\n{table}"
        );
    }
    // The guide then keeps thirteen alone and prints its tree once settled
    // (the others' Tuples and Numbers gone with the garbage collector).
    s.kubectl(&["delete", "fermat", "two", "three", "seven", "twenty-five"])?;
    let tree =
        xtask::tree_live::snapshot(&s.client, &s.namespace, true, std::time::Duration::from_secs(60), false).await?;
    guides::expect_tree(&s, "step04-tree", &tree)
}

const README: &str = include_str!("../../README.md");
const README_JA: &str = include_str!("../../README.ja.md");

async fn changing_n_replaces_the_tuples(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("f", 13)).await?;
    ensure!(settled_answer(&s, "f", 13).await?, "13 was not found");
    let fermats = s.api("Fermat");
    for (n, expected) in [(12, false), (10, true)] {
        let patch = serde_json::json!({ "spec": { "number": n } });
        fermats
            .patch("f", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let found = settled_answer(&s, "f", n).await?;
        ensure!(
            found == expected,
            "{n}: twoSquaresFound is {found}, expected {expected}"
        );
        let wanted: Vec<String> = (1..=n / 2).map(|i| tuple_name("f", i as u64, n as u64)).collect();
        expect_tuples(&s, wanted).await?;
    }
    Ok(())
}

/// The Tuple brings its Number back; the Numbers' status travels up two levels.
/// Meanwhile the answer is false: the status reports what is there right now.
async fn deleting_a_grandchild_number_brings_it_back_and_the_answer_with_it(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");
    let before = numbers(&s).await.map_err(anyhow::Error::msg)?;
    let (_, _, old_uid) = before
        .iter()
        .find(|(name, _, _)| name == "thirteen-4-and-9-1")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("thirteen-4-and-9-1 is missing"))?;
    s.kubectl(&["delete", "number", "thirteen-4-and-9-1"])?;
    s.eventually("thirteen-4-and-9-1 to come back as a new object", || async {
        let found = numbers(&s).await?;
        match found.iter().find(|(name, _, _)| name == "thirteen-4-and-9-1") {
            Some((_, 9, uid)) if *uid != old_uid => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    ensure!(
        settled_answer(&s, "thirteen", 13).await?,
        "13 is no longer found after healing"
    );
    Ok(())
}

async fn a_deleted_or_edited_tuple_is_put_back(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("three", 3)).await?;
    ensure!(!settled_answer(&s, "three", 3).await?, "3 was found");
    let tuples = s.api("Tuple");
    let old_uid = tuples.get("three-1-and-2").await?.uid();
    s.kubectl(&["delete", "tuple", "three-1-and-2"])?;
    s.eventually("three-1-and-2 to come back as a new object", || {
        let tuples = tuples.clone();
        let old_uid = old_uid.clone();
        async move {
            let tuple = tuples.get("three-1-and-2").await.map_err(|err| err.to_string())?;
            if tuple.uid() != old_uid {
                Ok(())
            } else {
                Err("the old object".into())
            }
        }
    })
    .await?;
    let patched = s.kubectl(&[
        "patch",
        "tuple",
        "three-1-and-2",
        "--type=merge",
        "-p",
        r#"{"spec":{"numbers":[4,9]}}"#,
    ])?;
    ensure!(!patched.contains("no change"), "the edit changed nothing: {patched}");
    s.eventually("three-1-and-2 to hold [1, 2] again", || async {
        let tuple = s
            .api("Tuple")
            .get("three-1-and-2")
            .await
            .map_err(|err| err.to_string())?;
        let numbers = field(&tuple, &["spec", "numbers"]);
        if *numbers == serde_json::json!([1, 2]) {
            Ok(())
        } else {
            Err(numbers.to_string())
        }
    })
    .await?;
    // Edited to [4, 9], the Tuple was briefly all squares; once it is put
    // back, the whole tree settles on "not found" again.
    ensure!(
        !settled_answer(&s, "three", 3).await?,
        "3 is found after the edit was put back"
    );
    Ok(())
}

/// A restart makes the controllers go through every object again. Where
/// everything is already right, that must cost the API server no write: the
/// audit log records every write request, even one that changes nothing.
async fn a_restarted_controller_rewrites_nothing_that_is_already_right(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");
    let by_controller = |write: &crate::cluster::RecordedWrite| {
        write.request_uri.contains("fieldManager=math-controller")
            || (write.verb == "delete" && !write.user_agent.starts_with("kubectl"))
    };
    let before = s.recorded_writes()?.into_iter().filter(by_controller).count();
    // 1 Fermat, 6 Tuples, 12 Numbers, their statuses: the log sees the writes.
    ensure!(
        before >= 19,
        "the audit log shows only {before} writes by the controller"
    );

    s.stop_controller();
    s.start_controller(Stage::Step04)?;
    // Something new after the restart: once it has settled, the restarted
    // controller has long been through the objects it found at start.
    s.apply(&fermat("sentinel", 2)).await?;
    ensure!(settled_answer(&s, "sentinel", 2).await?, "2 was not found");
    let rewrites: Vec<_> = s
        .recorded_writes()?
        .into_iter()
        .filter(by_controller)
        .skip(before)
        .filter(|write| !write.name.starts_with("sentinel"))
        .collect();
    ensure!(
        rewrites.is_empty(),
        "after the restart the controller wrote again: {rewrites:#?}"
    );
    Ok(())
}

async fn deleting_the_fermat_removes_everything(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("gone", 10)).await?;
    ensure!(settled_answer(&s, "gone", 10).await?, "10 was not found");
    s.api("Fermat").delete("gone", &DeleteParams::default()).await?;
    expect_numbers(&s, &[]).await?;
    expect_tuples(&s, Vec::new()).await
}

/// Waits until the namespace holds exactly the Tuples named `wanted`.
async fn expect_tuples(s: &Scenario<'_>, mut wanted: Vec<String>) -> Result<()> {
    wanted.sort();
    s.eventually(&format!("the Tuples to be {wanted:?}"), || async {
        let list = s
            .api("Tuple")
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut names: Vec<String> = list.items.iter().map(|tuple| tuple.name_any()).collect();
        names.sort();
        if names == wanted {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await
}

async fn the_schema_rejects_n_above_the_bound(s: Scenario<'_>) -> Result<()> {
    let output = s.kubectl_output(&["apply", "-f", "-"], Some(INVALID))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("spec.number") && stderr.contains("less than or equal to 100"),
        "not rejected as expected: {stderr}"
    );
    Ok(())
}

/// `count` Fermats of `n`, named f0, f1, …
pub fn fermats_of(count: usize, n: i64) -> String {
    (0..count)
        .map(|index| fermat(&format!("f{index}"), n))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Waits until every Fermat in `expected` (name, n, answer) has settled on its answer.
async fn expect_answers(s: &Scenario<'_>, expected: &[(String, i64, bool)]) -> Result<()> {
    let wanted: Vec<(&str, i64)> = expected.iter().map(|(name, n, _)| (name.as_str(), *n)).collect();
    let found = settled_answers(s, &wanted).await?;
    for ((name, n, answer), found) in expected.iter().zip(found) {
        ensure!(
            found == *answer,
            "{name} ({n}): twoSquaresFound is {found}, expected {answer}"
        );
    }
    Ok(())
}

/// Stopped with work pending, a controller must finish all of it once it is
/// started again: every reconcile that starts before the caches are filled
/// waits for them, and all of them are woken. A restart reconciles every
/// object it lists, so a few Fermats of work are enough to show it.
async fn a_restarted_controller_finishes_the_work_left_while_it_was_stopped(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermats_of(10, 40)).await?;
    // 40 = 4 + 36.
    let settled: Vec<(String, i64, bool)> = (0..10).map(|index| (format!("f{index}"), 40, true)).collect();
    expect_answers(&s, &settled).await?;
    s.stop_controller();

    // While it is stopped: every grandchild Number of f0 edited, every Tuple
    // of f1 deleted, and n changed to 39 on f2.
    let numbers = s.api("Number");
    for number in numbers.list(&ListParams::default()).await?.items {
        let name = number.name_any();
        if name.starts_with("f0-") {
            let patch = serde_json::json!({ "spec": { "value": 1000 } });
            numbers
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    let tuples = s.api("Tuple");
    for tuple in tuples.list(&ListParams::default()).await?.items {
        let name = tuple.name_any();
        if name.starts_with("f1-") {
            tuples.delete(&name, &DeleteParams::default()).await?;
        }
    }
    let patch = serde_json::json!({ "spec": { "number": 39 } });
    s.api("Fermat")
        .patch("f2", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;

    let restarted = Instant::now();
    s.start_controller(Stage::Step04)?;
    // 39 = 3 × 13 is not a sum of two squares.
    let mut expected = settled;
    expected[2] = ("f2".to_string(), 39, false);
    expect_answers(&s, &expected).await?;
    eprintln!(
        "    10 Fermats of 40 answered again {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    // Every edited Number is put back, and nothing is left over once the
    // garbage collector has removed the Numbers of the Tuples that f2 deleted.
    let wanted = (9 * 20 + 19, 9 * 40 + 38);
    s.eventually(
        &format!("{} Tuples and {} Numbers, none edited", wanted.0, wanted.1),
        || async {
            let list = |api: kube::Api<kube::api::DynamicObject>| async move {
                api.list(&ListParams::default())
                    .await
                    .map(|list| list.items)
                    .map_err(|err| err.to_string())
            };
            let (found_tuples, found_numbers) = (list(tuples.clone()).await?, list(numbers.clone()).await?);
            let edited = found_numbers
                .iter()
                .filter(|number| number.data["spec"]["value"] == 1000)
                .count();
            let found = (found_tuples.len(), found_numbers.len());
            if found == wanted && edited == 0 {
                Ok(())
            } else {
                Err(format!("{found:?}, {edited} still edited"))
            }
        },
    )
    .await?;
    eprintln!(
        "    … and the garbage collector had removed what was left over {:.1} s after it",
        restarted.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The cache lags behind the API server: a reconcile that acts on it before it
/// shows the children just created would create them again, and be refused.
async fn ten_fermats_of_100_are_created_with_almost_no_refused_requests(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermats_of(10, 100)).await?;
    // 100 = 36 + 64.
    let settled: Vec<(String, i64, bool)> = (0..10).map(|index| (format!("f{index}"), 100, true)).collect();
    expect_answers(&s, &settled).await?;
    let creates: Vec<_> = s
        .recorded_writes()?
        .into_iter()
        .filter(|write| write.verb == "create" && write.request_uri.contains("fieldManager=math-controller"))
        .collect();
    let refused = creates.iter().filter(|write| write.code == 409).count();
    let made = creates.iter().filter(|write| write.code == 201).count();
    eprintln!("    creates: {made} made, {refused} refused as already existing");
    ensure!(made == 10 * 150, "{made} objects were created, expected 1500");
    ensure!(
        refused * 100 <= made,
        "{refused} creates were refused as already existing, more than 1% of {made}"
    );
    Ok(())
}

/// The process id in the Lease's holder, as stage 4 writes it
/// (`<host>-<pid>-<start time>`), once some copy holds it.
pub async fn lease_holder(s: &Scenario<'_>) -> Result<u32> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(s.client.clone(), &s.namespace);
    s.eventually("a copy to hold the Lease", || {
        let leases = leases.clone();
        async move {
            let lease = leases
                .get_opt(kit::CONTROLLER_NAME)
                .await
                .map_err(|err| err.to_string())?
                .ok_or("no Lease yet")?;
            let holder = lease.spec.and_then(|spec| spec.holder_identity).ok_or("no holder")?;
            let mut parts = holder.rsplit('-');
            let _started = parts.next();
            parts
                .next()
                .and_then(|pid| pid.parse().ok())
                .ok_or(format!("cannot read a process id in {holder:?}"))
        }
    })
    .await
}

/// The Lease as it is now: its holder, and until when it holds it (in
/// seconds since 1970) if it renews no more.
pub async fn lease_now(s: &Scenario<'_>) -> Result<(Option<String>, Option<f64>, Option<f64>)> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(s.client.clone(), &s.namespace);
    let spec = leases.get(kit::CONTROLLER_NAME).await?.spec.unwrap_or_default();
    let seconds = |time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| {
        time.map(|time| time.0.as_millisecond() as f64 / 1000.0)
    };
    let runs_out =
        seconds(spec.renew_time).map(|renewed| renewed + f64::from(spec.lease_duration_seconds.unwrap_or(0)));
    Ok((spec.holder_identity, runs_out, seconds(spec.acquire_time)))
}

/// Waits until copy `pid` holds the Lease; returns its acquireTime.
pub async fn expect_holder(s: &Scenario<'_>, pid: u32) -> Result<f64> {
    s.eventually(&format!("copy {pid} to hold the Lease"), || async {
        match lease_holder(s).await {
            Ok(holder) if holder == pid => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await?;
    let (_, _, acquired) = lease_now(s).await?;
    acquired.context("the Lease has no acquireTime")
}

/// Waits until copy `pid` holds the Lease, then checks that it took it before
/// the Lease of the copy before it ran out (`runs_out`): it was handed over,
/// not waited out.
async fn expect_taken_before(s: &Scenario<'_>, pid: u32, runs_out: f64, how: &str) -> Result<()> {
    let acquired = expect_holder(s, pid).await?;
    eprintln!(
        "    {how}: the next copy took the Lease {:.1} s before it would have run out",
        runs_out - acquired
    );
    ensure!(
        acquired < runs_out,
        "{how}, the next copy took the Lease only when it ran out ({:.1} s after)",
        acquired - runs_out
    );
    Ok(())
}

/// Ctrl-C in the leader's terminal, its output going through `| tee`, which
/// Ctrl-C stops too: the leader still stops, clears the Lease as it does,
/// and the waiting copy takes over at once, not when the Lease runs out;
/// the guide's figure.
async fn ctrl_c_on_the_leader_hands_the_lease_over_at_once_even_through_a_pipe(mut s: Scenario<'_>) -> Result<()> {
    let group = s.start_controller_through_a_pipe(Stage::Step04)?;
    lease_holder(&s).await?;
    s.start_controller(Stage::Step04)?;
    let second = *s.controller_pids().last().context("no second copy")?;
    s.eventually("the second copy to wait for the Lease", || async {
        match s.controller_log().contains("waiting to lead") {
            true => Ok(()),
            false => Err("no \"waiting to lead\" in the log".to_string()),
        }
    })
    .await?;
    let (_, runs_out, _) = lease_now(&s).await?;
    let runs_out = runs_out.context("the leader's Lease has no renewTime")?;
    s.press_ctrl_c(group)?;
    expect_taken_before(&s, second, runs_out, "after Ctrl-C on the leader").await
}

/// A run that ended without clearing its Lease (killed, as a crash or a
/// closed terminal ends it) does not hold up the next run on this machine.
async fn a_run_after_a_killed_run_leads_at_once(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    let first = lease_holder(&s).await?;
    let (_, runs_out, _) = lease_now(&s).await?;
    let runs_out = runs_out.context("the Lease has no renewTime")?;
    s.kill_controller(first)?;
    s.start_controller(Stage::Step04)?;
    let next = *s.controller_pids().last().context("no new run")?;
    expect_taken_before(&s, next, runs_out, "a new run after a killed one").await
}

/// Two copies of stage 4 in one namespace: one leads, the other waits, so no
/// write is made twice; killed, the leader is replaced by the other copy.
async fn two_copies_take_turns_through_a_lease_and_the_second_takes_over(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    let first = lease_holder(&s).await?;
    ensure!(
        s.controller_pids() == [first],
        "the Lease names {first}, not the copy that runs"
    );
    s.start_controller(Stage::Step04)?;
    let second = s.controller_pids()[1];
    s.eventually("the second copy to wait for the Lease", || async {
        match s.controller_log().contains("waiting to lead") {
            true => Ok(()),
            false => Err("no \"waiting to lead\" in the log".to_string()),
        }
    })
    .await?;

    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");
    let creates: Vec<_> = s
        .recorded_writes()?
        .into_iter()
        .filter(|write| write.verb == "create" && write.request_uri.contains("fieldManager=math-controller"))
        .collect();
    let made = creates.iter().filter(|write| write.code == 201).count();
    let refused = creates.iter().filter(|write| write.code == 409).count();
    eprintln!("    two copies: {made} creates made, {refused} refused as already existing");
    ensure!(made == 6 + 12, "{made} objects were created, expected 18");
    // Two copies at work would each try every create: about 18 refused.
    ensure!(refused <= 1, "{refused} creates were refused: both copies wrote");

    let (_, runs_out, _) = lease_now(&s).await?;
    let runs_out = runs_out.context("the leader's Lease has no renewTime")?;
    let killed = std::time::Instant::now();
    s.kill_controller(first)?;
    // A killed copy of this machine is seen gone: no need to wait the Lease out.
    expect_taken_before(&s, second, runs_out, "after the leader was killed").await?;
    eprintln!(
        "    the second copy took over {:.1} s after the first was killed",
        killed.elapsed().as_secs_f64()
    );
    s.kubectl(&["delete", "number", "thirteen-4-and-9-1"])?;
    ensure!(
        settled_answer(&s, "thirteen", 13).await?,
        "the second copy did not put the Number back"
    );
    robustness::fault(
        &s,
        "X07",
        "of two copies, the leader killed (SIGKILL); a Number deleted once the other took over",
        &[("thirteen", 13)],
        killed,
    )
    .await?;
    guides::expect_logged(&s, "step04-lease", &s.controller_log())
}

async fn a_status_list_written_by_someone_else_is_cleared(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("g", 5)).await?;
    ensure!(settled_answer(&s, "g", 5).await?, "5 was not found");
    s.kubectl(&[
        "patch",
        "fermat",
        "g",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"nameClashes":["bogus"],"blockedTuples":["bogus"]}}"#,
    ])?;
    expect_name_clashes(&s, "Fermat", "g", &[]).await?;
    expect_blocked_tuples(&s, "g", &[]).await
}

/// Waits until Fermat `name` reports `blockedTuples` equal to `expected`.
async fn expect_blocked_tuples(s: &Scenario<'_>, name: &str, expected: &[&str]) -> Result<()> {
    s.expect_status_field("Fermat", name, "blockedTuples", serde_json::json!(expected))
        .await
}

/// A Number that was there first holds a name that a grandchild wants. The
/// Tuple reports the clash, and the Fermat says that its answer is blocked.
async fn a_foreign_grandchild_is_reported_on_the_fermat(mut s: Scenario<'_>) -> Result<()> {
    s.apply(
        "apiVersion: math.workshop.example/v1beta1\nkind: Number\nmetadata:\n  name: f13-4-and-9-1\nspec:\n  value: 9\n",
    ).await?;
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("f13", 13)).await?;
    expect_name_clashes(&s, "Tuple", "f13-4-and-9", &["f13-4-and-9-1"]).await?;
    expect_blocked_tuples(&s, "f13", &["f13-4-and-9"]).await?;
    let fermat = s.api("Fermat").get("f13").await?;
    ensure!(
        field(&fermat, &["status", "twoSquaresFound"]) == false,
        "the blocked Fermat found an answer: {}",
        field(&fermat, &["status"])
    );
    // Once the name is free, the Tuple takes it and the answer is found.
    s.kubectl(&["delete", "number", "f13-4-and-9-1"])?;
    ensure!(settled_answer(&s, "f13", 13).await?, "13 was not found once unblocked");
    expect_blocked_tuples(&s, "f13", &[]).await
}

/// The example from the issue tracker: a Tuple's ownerReference removed by hand.
async fn a_tuple_whose_owner_reference_is_removed_is_reported_at_once(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("f", 13)).await?;
    ensure!(settled_answer(&s, "f", 13).await?, "13 was not found");
    s.kubectl(&[
        "patch",
        "tuple",
        "f-3-and-10",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
    ])?;
    expect_name_clashes(&s, "Fermat", "f", &["f-3-and-10"]).await
}

async fn a_fermat_being_deleted_gets_no_new_tuples(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("held", 5).replace(
        "  name: held\n",
        "  name: held\n  finalizers: [math.workshop.example/held-by-test]\n",
    ))
    .await?;
    ensure!(settled_answer(&s, "held", 5).await?, "5 was not found");
    s.kubectl(&["delete", "fermat", "held", "--wait=false"])?;
    s.expect_marked_for_deletion("Fermat", "held").await?;
    s.kubectl(&["delete", "tuple", "held-1-and-4"])?;
    // Events arrive in order: once a later Fermat has settled, the deletion
    // of held-1-and-4 has long reached the controller.
    s.apply(&fermat("sentinel", 2)).await?;
    ensure!(settled_answer(&s, "sentinel", 2).await?, "2 was not found");
    let names: Vec<String> = s
        .api("Tuple")
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|tuple| tuple.name_any())
        .collect();
    ensure!(
        names == ["held-2-and-3", "sentinel-1-and-1"],
        "a Tuple of the Fermat being deleted was created again: {names:?}"
    );
    s.kubectl(&[
        "patch",
        "fermat",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])?;
    expect_tuples(&s, vec!["sentinel-1-and-1".to_string()]).await
}

/// How long the API server stays down in the outage scenario. Long enough for
/// kube-runtime's default watch backoff to grow to tens of seconds.
const OUTAGE: Duration = Duration::from_secs(20);

/// Kills one process of the scenario's own plane, starts it again after
/// `OUTAGE`, and returns when it was back.
async fn outage(s: &Scenario<'_>, process: &str) -> Result<Instant> {
    let plane = s
        .cluster()
        .plane()
        .context("this scenario needs a local control plane")?;
    ensure!(plane.kill(process), "no {process} to kill");
    tokio::time::sleep(OUTAGE).await;
    plane.restart(process)?;
    Ok(Instant::now())
}

/// The warnings and errors the controller printed since `from` (a length of
/// its log). The INFO lines of the reconciles that follow the watches' new
/// lists are the lesson's own, as at every start.
fn lines_since(s: &Scenario<'_>, from: usize) -> Vec<String> {
    let log = s.controller_log();
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .map(str::to_string)
        .collect()
}

/// An outage is told in a few lines: what is wrong when it starts, and that
/// it is over when it ends (`back`, a line of the log, for an outage the
/// controller notices); the failing requests only at debug level.
async fn told_in_a_few_lines(s: &Scenario<'_>, what: &str, from: usize, back: Option<&str>) -> Result<()> {
    if let Some(back) = back {
        s.eventually(&format!("the controller to log \"{back}\""), || async move {
            let log = s.controller_log();
            match log.get(from..).unwrap_or_default().contains(back) {
                true => Ok(()),
                false => Err(format!("it logged:\n{}", crate::cluster::last_lines(&log, 10))),
            }
        })
        .await?;
    }
    let lines = lines_since(s, from);
    eprintln!("{what}: the controller printed {} warnings and errors", lines.len());
    for line in &lines {
        eprintln!("    {line}");
    }
    ensure!(
        lines.len() <= OUTAGE_LINES,
        "{what}: the controller printed {} lines, more than {OUTAGE_LINES}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    Ok(())
}

/// At most this many warnings and errors for one outage: the outage itself,
/// and the Lease's renewal failing.
const OUTAGE_LINES: usize = 3;

async fn after_an_api_server_outage_a_new_fermat_settles(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("before", 13)).await?;
    ensure!(settled_answer(&s, "before", 13).await?, "13 was not found");
    let from = s.controller_log().len();
    let back = outage(&s, "kube-apiserver").await?;
    ensure!(settled_answer(&s, "before", 13).await?, "13 is no longer found");
    told_in_a_few_lines(
        &s,
        "a 20 s API-server outage",
        from,
        Some("the API server answers again, after"),
    )
    .await?;
    s.apply(&fermat("after", 25)).await?;
    robustness::fault(
        &s,
        "X02",
        "kube-apiserver killed for 20 s under a settled Fermat, then a new Fermat",
        &[("before", 13), ("after", 25)],
        back,
    )
    .await
}

async fn after_the_crds_are_reinstalled_a_new_fermat_settles(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("before", 13)).await?;
    ensure!(settled_answer(&s, "before", 13).await?, "13 was not found");
    let crds = Stage::Step04.crds()?;
    let from = s.controller_log().len();
    let deleted = s.kubectl_output(&["delete", "-f", "-", "--wait=true"], Some(&crds))?;
    ensure!(
        deleted.status.success(),
        "cannot delete the CRDs: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    tokio::time::sleep(OUTAGE).await;
    let plane = s
        .cluster()
        .plane()
        .context("this scenario needs a local control plane")?;
    plane.install_crds(&crds)?;
    let back = Instant::now();
    told_in_a_few_lines(
        &s,
        "the CRDs gone for 20 s",
        from,
        Some("this stage's kinds are served again, after"),
    )
    .await?;
    s.apply(&fermat("after", 25)).await?;
    robustness::fault(
        &s,
        "X04",
        "the CRDs deleted (and with them every object) while the controller runs, installed again 20 s later, then a new Fermat",
        &[("after", 25)],
        back,
    )
    .await
}

/// etcd, the API server's storage, killed and restarted under a running
/// controller: every object is still there, unchanged, and new work settles.
async fn after_an_etcd_outage_nothing_is_lost_and_a_new_fermat_settles(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("before", 13)).await?;
    ensure!(settled_answer(&s, "before", 13).await?, "13 was not found");
    let before = numbers(&s).await.map_err(anyhow::Error::msg)?;
    let from = s.controller_log().len();
    let back = outage(&s, "etcd").await?;
    // The API server keeps its watches open while etcd is away: the
    // controller may not notice at all.
    told_in_a_few_lines(&s, "a 20 s etcd outage", from, None).await?;
    s.apply(&fermat("after", 25)).await?;
    robustness::fault(
        &s,
        "X03",
        "etcd killed for 20 s under a settled Fermat, then a new Fermat",
        &[("before", 13), ("after", 25)],
        back,
    )
    .await?;
    ensure!(settled_answer(&s, "before", 13).await?, "13 is no longer found");
    let after: Vec<_> = numbers(&s)
        .await
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("before-"))
        .collect();
    ensure!(
        after == before,
        "the Numbers of 13 changed across the outage:\nbefore {before:?}\nafter  {after:?}"
    );
    Ok(())
}

/// The namespace deleted while the controller runs in it: the controller
/// keeps running, without a crash, and once the namespace exists again it
/// works there again.
async fn a_namespace_deleted_under_the_controller_leaves_it_running_and_recreated_it_works_again(
    mut s: Scenario<'_>,
) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("before", 13)).await?;
    ensure!(settled_answer(&s, "before", 13).await?, "13 was not found");
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(s.client.clone());
    let deleted = Instant::now();
    namespaces.delete(&s.namespace, &DeleteParams::default()).await?;
    s.eventually("the namespace to be gone", || {
        let namespaces = namespaces.clone();
        let name = s.namespace.clone();
        async move {
            match namespaces.get_opt(&name).await.map_err(|err| err.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        }
    })
    .await?;
    ensure!(
        s.controllers_still_running(),
        "the controller exited when its namespace was deleted:\n{}",
        crate::cluster::last_lines(&s.controller_log(), 20)
    );
    let mut namespace = k8s_openapi::api::core::v1::Namespace::default();
    namespace.metadata.name = Some(s.namespace.clone());
    namespaces.create(&kube::api::PostParams::default(), &namespace).await?;
    let back = Instant::now();
    s.apply(&fermat("after", 25)).await?;
    robustness::fault(
        &s,
        "X05",
        "the namespace deleted under a running controller, created again, then a new Fermat",
        &[("after", 25)],
        back,
    )
    .await?;
    eprintln!(
        "    {}: the deleted namespace took {:.1} s to go",
        s.namespace,
        (back - deleted).as_secs_f64()
    );
    ensure!(
        !s.controller_log().contains("panicked"),
        "the controller panicked:\n{}",
        s.controller_log()
    );
    Ok(())
}

/// Installs `kind`'s CRD with the schema of its spec's `field` changed by
/// `loosen`, as an older CRD could have had it (local control planes only);
/// returns the current CRDs, to install again, and the plane.
pub fn install_looser_crd<'s>(
    s: &'s Scenario<'_>,
    kind: &str,
    field: &str,
    loosen: impl FnOnce(&mut serde_json::Value) -> Result<()>,
) -> Result<(String, &'s xtask::control_plane::ControlPlane)> {
    let plane = s
        .cluster()
        .plane()
        .context("this scenario needs a local control plane")?;
    let crds = Stage::Step04.crds()?;
    let mut looser: Vec<serde_json::Value> = serde_saphyr::from_multiple(&crds)?;
    let crd = looser
        .iter_mut()
        .find(|crd| crd["spec"]["names"]["kind"] == kind)
        .with_context(|| format!("no {kind} CRD"))?;
    loosen(&mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][field])?;
    plane.install_crds(&serde_json::to_string(&crd)?)?;
    Ok((crds, plane))
}

/// A Fermat with n far above the bound, made while an older CRD without the
/// bound was installed, then the current CRDs: the controller creates nothing
/// for it and says why, and keeps working for the others.
async fn a_fermat_made_under_a_looser_schema_gets_no_tuples_and_the_others_settle(mut s: Scenario<'_>) -> Result<()> {
    let (crds, plane) = install_looser_crd(&s, "Fermat", "number", |number| {
        ensure!(
            number["maximum"].is_number(),
            "the Fermat CRD has no maximum to loosen: {number}"
        );
        number
            .as_object_mut()
            .context("number is not an object")?
            .remove("maximum");
        Ok(())
    })?;
    s.apply(&fermat("huge", 1_000_000_000_000)).await?;
    plane.install_crds(&crds)?;
    let refused = s.kubectl_output(&["apply", "-f", "-"], Some(&fermat("another", 1_000_000_000_000)))?;
    ensure!(
        !refused.status.success(),
        "the current CRD accepts n above the bound again"
    );

    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");
    let fermats = s.api("Fermat");
    let problem = s
        .eventually("huge's status to say why it gets nothing", || {
            let fermats = fermats.clone();
            async move {
                let huge = fermats.get("huge").await.map_err(|err| err.to_string())?;
                let status = field(&huge, &["status"]);
                match status["problem"].as_str() {
                    Some(problem) if status["twoSquaresFound"] == false => Ok(problem.to_string()),
                    _ => Err(format!("status {status}")),
                }
            }
        })
        .await?;
    ensure!(
        problem.starts_with("n = 1000000000000 is above 100"),
        "the problem does not say what is wrong: {problem}"
    );
    let tuples = s.api("Tuple").list(&ListParams::default()).await?.items;
    let for_huge = tuples
        .iter()
        .filter(|tuple| tuple.name_any().starts_with("huge-"))
        .count();
    ensure!(for_huge == 0, "{for_huge} Tuples were created for huge");
    ensure!(s.controllers_still_running(), "the controller exited");

    s.kubectl(&[
        "patch",
        "fermat",
        "huge",
        "--type=merge",
        "-p",
        r#"{"spec":{"number":5}}"#,
    ])?;
    ensure!(
        settled_answer(&s, "huge", 5).await?,
        "5 was not found once huge was lowered"
    );
    let huge = fermats.get("huge").await?;
    ensure!(
        field(&huge, &["status", "problem"]).is_null(),
        "the problem stayed once huge was lowered"
    );
    robustness::input(
        "F11",
        "Fermat, n = 10^12, made under an older CRD without the bound",
        "kept by the API server; the controller creates nothing for it and says why in status.problem; lowered to 5, it settles and the problem goes",
    )
}
