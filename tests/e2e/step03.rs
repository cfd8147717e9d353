//! Stage 3: Tuples own Numbers.

use anyhow::{Context, Result, ensure};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

use crate::Case;
use crate::cluster::{Scenario, Stage, field};
use crate::guides;
use crate::step01::case;

const INVALID: &str = include_str!("../../solutions/step03_tuple/samples/invalid-tuple.yaml");

pub fn cases() -> Vec<Case> {
    vec![
        case!(Stage::Step03, children_appear_with_controller_owner_references),
        case!(
            Stage::Step03,
            growing_and_shrinking_the_list_creates_and_deletes_children
        ),
        case!(Stage::Step03, a_deleted_child_comes_back_and_an_event_tells_it),
        case!(Stage::Step03, an_edited_child_is_put_back),
        case!(Stage::Step03, all_squares_follows_the_children),
        case!(Stage::Step03, deleting_the_tuple_garbage_collects_its_children),
        case!(
            Stage::Step03,
            a_foreign_number_with_a_clashing_name_stays_untouched_and_is_reported
        ),
        case!(Stage::Step03, the_schema_rejects_names_and_lists_too_long_for_children),
        case!(Stage::Step03, a_clash_list_written_by_someone_else_is_cleared),
        case!(
            Stage::Step03,
            a_child_whose_owner_reference_is_removed_is_reported_as_a_clash
        ),
        case!(Stage::Step03, a_tuple_being_deleted_gets_no_new_children),
        case!(Stage::Step03, the_guide_shows_what_a_real_run_prints),
    ]
}

pub fn tuple(name: &str, numbers: &[i64]) -> String {
    format!(
        "apiVersion: math.workshop.example/v1beta1\nkind: Tuple\nmetadata:\n  name: {name}\nspec:\n  numbers: {}\n",
        serde_json::to_string(numbers).unwrap_or_default()
    )
}

/// The Numbers in the namespace, as (name, value, uid) sorted by name.
pub async fn numbers(s: &Scenario<'_>) -> Result<Vec<(String, i64, String)>, String> {
    let list = s
        .api("Number")
        .list(&ListParams::default())
        .await
        .map_err(|err| err.to_string())?;
    let mut numbers: Vec<_> = list
        .items
        .iter()
        .map(|number| {
            (
                number.name_any(),
                field(number, &["spec", "value"]).as_i64().unwrap_or(i64::MIN),
                number.uid().unwrap_or_default(),
            )
        })
        .collect();
    numbers.sort();
    Ok(numbers)
}

/// Waits until the namespace holds exactly these Numbers (name, value).
pub async fn expect_numbers(s: &Scenario<'_>, expected: &[(&str, i64)]) -> Result<Vec<(String, i64, String)>> {
    s.eventually(&format!("the Numbers to be {expected:?}"), || async move {
        let found = numbers(s).await?;
        let pairs: Vec<(&str, i64)> = found.iter().map(|(name, value, _)| (name.as_str(), *value)).collect();
        if pairs == expected {
            Ok(found.clone())
        } else {
            Err(format!("{pairs:?}"))
        }
    })
    .await
}

/// Waits until Tuple `name` reports `all_squares`.
async fn expect_all_squares(s: &Scenario<'_>, name: &str, all_squares: bool) -> Result<()> {
    s.expect_status_field("Tuple", name, "allSquares", serde_json::json!(all_squares))
        .await
}

async fn set_numbers(s: &Scenario<'_>, name: &str, numbers: &[i64]) -> Result<()> {
    let patch = serde_json::json!({ "spec": { "numbers": numbers } });
    s.api("Tuple")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn children_appear_with_controller_owner_references(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("squares", &[1, 4, 9])).await?;
    expect_numbers(&s, &[("squares-0", 1), ("squares-1", 4), ("squares-2", 9)]).await?;
    let owner = s.api("Tuple").get("squares").await?;
    for number in s.api("Number").list(&ListParams::default()).await?.items {
        let references = number.owner_references();
        ensure!(
            references.len() == 1,
            "{} has owner references {references:?}",
            number.name_any()
        );
        let reference = &references[0];
        ensure!(
            reference.kind == "Tuple"
                && reference.name == "squares"
                && Some(&reference.uid) == owner.metadata.uid.as_ref()
                && reference.controller == Some(true),
            "{} has the owner reference {reference:?}",
            number.name_any()
        );
    }
    expect_all_squares(&s, "squares", true).await
}

async fn growing_and_shrinking_the_list_creates_and_deletes_children(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("t", &[1, 2])).await?;
    let before = expect_numbers(&s, &[("t-0", 1), ("t-1", 2)]).await?;
    set_numbers(&s, "t", &[1, 2, 3]).await?;
    expect_numbers(&s, &[("t-0", 1), ("t-1", 2), ("t-2", 3)]).await?;
    set_numbers(&s, "t", &[1]).await?;
    let after = expect_numbers(&s, &[("t-0", 1)]).await?;
    ensure!(after[0].2 == before[0].2, "t-0 was replaced instead of kept");
    Ok(())
}

async fn a_deleted_child_comes_back_and_an_event_tells_it(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("heal", &[4, 5])).await?;
    let before = expect_numbers(&s, &[("heal-0", 4), ("heal-1", 5)]).await?;
    s.kubectl(&["delete", "number", "heal-1"])?;
    let returned = s
        .eventually("heal-1 to come back as a new object", || async {
            let found = numbers(&s).await?;
            match found.iter().find(|(name, _, _)| name == "heal-1") {
                Some((_, 5, uid)) if *uid != before[1].2 => Ok(uid.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await?;
    // An Event on the Tuple tells of it, naming the new Number by its uid.
    s.eventually("an Event on heal about the new heal-1", || async {
        let listed = s
            .kubectl(&["get", "events.events.k8s.io", "-o", "json"])
            .map_err(|err| format!("{err:#}"))?;
        let events: serde_json::Value = serde_json::from_str(&listed).map_err(|err| err.to_string())?;
        let told = events["items"].as_array().into_iter().flatten().any(|event| {
            event["regarding"]["kind"] == "Tuple"
                && event["regarding"]["name"] == "heal"
                && event["reason"] == "Created"
                && event["note"] == "created Number heal-1"
                && event["related"]["uid"] == returned.as_str()
        });
        if told {
            Ok(())
        } else {
            Err(format!("the Events are {listed}"))
        }
    })
    .await?;
    // `kubectl describe` tells the same story, once: a new Tuple's first
    // children get no Event, the one that came back does.
    let described = s.kubectl(&["describe", "tuple", "heal"])?;
    ensure!(
        described.matches("created Number heal-1").count() == 1,
        "kubectl describe tuple heal shows:\n{described}"
    );
    Ok(())
}

async fn an_edited_child_is_put_back(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("edit", &[4])).await?;
    let before = expect_numbers(&s, &[("edit-0", 4)]).await?;
    let patched = s.kubectl(&[
        "patch",
        "number",
        "edit-0",
        "--type=merge",
        "-p",
        r#"{"spec":{"value":99}}"#,
    ])?;
    ensure!(!patched.contains("no change"), "the edit changed nothing: {patched}");
    expect_numbers(&s, &[("edit-0", 4)]).await?;
    let value = s.kubectl(&["get", "number", "edit-0", "-o", "jsonpath={.spec.value}"])?;
    ensure!(value == "4", "edit-0 holds {value}");
    let after = numbers(&s).await.map_err(anyhow::Error::msg)?;
    ensure!(after[0].2 == before[0].2, "edit-0 was replaced, not put back");
    Ok(())
}

async fn all_squares_follows_the_children(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("follow", &[1, 4])).await?;
    expect_all_squares(&s, "follow", true).await?;
    set_numbers(&s, "follow", &[1, 4, 5]).await?;
    expect_all_squares(&s, "follow", false).await?;
    set_numbers(&s, "follow", &[1, 4, 16]).await?;
    expect_all_squares(&s, "follow", true).await?;
    set_numbers(&s, "follow", &[2]).await?;
    expect_all_squares(&s, "follow", false).await?;
    // An empty list is vacuously all squares.
    set_numbers(&s, "follow", &[]).await?;
    expect_numbers(&s, &[]).await?;
    expect_all_squares(&s, "follow", true).await
}

async fn deleting_the_tuple_garbage_collects_its_children(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("gone", &[1, 2, 3])).await?;
    expect_numbers(&s, &[("gone-0", 1), ("gone-1", 2), ("gone-2", 3)]).await?;
    s.api("Tuple").delete("gone", &DeleteParams::default()).await?;
    expect_numbers(&s, &[]).await?;
    Ok(())
}

async fn a_foreign_number_with_a_clashing_name_stays_untouched_and_is_reported(mut s: Scenario<'_>) -> Result<()> {
    s.apply("apiVersion: math.workshop.example/v1beta1\nkind: Number\nmetadata:\n  name: clash-1\nspec:\n  value: 7\n")
        .await?;
    let foreign = numbers(&s).await.map_err(anyhow::Error::msg)?;
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("clash", &[1, 4])).await?;
    s.eventually("clash to report its name clash", || async {
        let tuple = s.api("Tuple").get("clash").await.map_err(|err| err.to_string())?;
        let status = field(&tuple, &["status"]);
        if status["nameClashes"] == serde_json::json!(["clash-1"]) && status["allSquares"] == false {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    })
    .await?;
    let found = expect_numbers(&s, &[("clash-0", 1), ("clash-1", 7)]).await?;
    ensure!(found[1].2 == foreign[0].2, "the foreign clash-1 was replaced");
    let foreign_now = s.api("Number").get("clash-1").await?;
    ensure!(
        foreign_now.owner_references().is_empty(),
        "the foreign clash-1 gained owner references"
    );

    // Once the foreign object is gone, the Tuple takes the name.
    s.kubectl(&["delete", "number", "clash-1"])?;
    expect_numbers(&s, &[("clash-0", 1), ("clash-1", 4)]).await?;
    expect_all_squares(&s, "clash", true).await?;
    let tuple = s.api("Tuple").get("clash").await?;
    let clashes = field(&tuple, &["status", "nameClashes"]);
    ensure!(
        *clashes == serde_json::json!([]),
        "the clash is still reported: {clashes}"
    );
    Ok(())
}

async fn the_schema_rejects_names_and_lists_too_long_for_children(s: Scenario<'_>) -> Result<()> {
    let output = s.kubectl_output(&["apply", "-f", "-"], Some(INVALID))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("at most 250 characters"),
        "long name not rejected as expected: {stderr}"
    );
    let numbers: Vec<i64> = (0..101).collect();
    let output = s.kubectl_output(&["apply", "-f", "-"], Some(&tuple("long-list", &numbers)))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("spec.numbers"),
        "long list not rejected as expected: {stderr}"
    );
    let listed = s
        .kubectl(&["get", "tuples", "-o", "name"])
        .context("cannot list Tuples")?;
    ensure!(listed.trim().is_empty(), "a rejected Tuple exists: {listed}");
    Ok(())
}

/// Waits until `kind` `name` reports `nameClashes` equal to `expected`.
pub async fn expect_name_clashes(s: &Scenario<'_>, kind: &str, name: &str, expected: &[&str]) -> Result<()> {
    s.expect_status_field(kind, name, "nameClashes", serde_json::json!(expected))
        .await
}

/// The status belongs to the controller: a list someone else wrote into it is
/// taken back, even though server-side apply only removes fields we send.
async fn a_clash_list_written_by_someone_else_is_cleared(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("owned", &[1])).await?;
    expect_all_squares(&s, "owned", true).await?;
    s.kubectl(&[
        "patch",
        "tuple",
        "owned",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"nameClashes":["bogus"]}}"#,
    ])?;
    expect_name_clashes(&s, "Tuple", "owned", &[]).await
}

/// Without its ownerReference a child is no longer ours: the name it holds is
/// now a clash, and the Tuple says so at once (not at some later event).
async fn a_child_whose_owner_reference_is_removed_is_reported_as_a_clash(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(&tuple("orphan", &[1, 4])).await?;
    expect_all_squares(&s, "orphan", true).await?;
    s.kubectl(&[
        "patch",
        "number",
        "orphan-1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
    ])?;
    expect_name_clashes(&s, "Tuple", "orphan", &["orphan-1"]).await?;
    expect_all_squares(&s, "orphan", false).await
}

/// A finalizer keeps a deleted Tuple around; a child deleted meanwhile must
/// not be created again: the Tuple is going away.
async fn a_tuple_being_deleted_gets_no_new_children(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    let held = tuple("held", &[1, 4]).replace(
        "  name: held\n",
        "  name: held\n  finalizers: [math.workshop.example/held-by-test]\n",
    );
    s.apply(&held).await?;
    expect_all_squares(&s, "held", true).await?;
    s.kubectl(&["delete", "tuple", "held", "--wait=false"])?;
    s.expect_marked_for_deletion("Tuple", "held").await?;
    s.kubectl(&["delete", "number", "held-0"])?;
    // A watch delivers events in order: once a Tuple created afterwards has
    // settled, the controller has long been told that held-0 is gone.
    s.apply(&tuple("sentinel", &[9])).await?;
    expect_all_squares(&s, "sentinel", true).await?;
    let found = numbers(&s).await.map_err(anyhow::Error::msg)?;
    let names: Vec<&str> = found.iter().map(|(name, _, _)| name.as_str()).collect();
    ensure!(
        names == ["held-1", "sentinel-0"],
        "a child of the Tuple being deleted was created again: {names:?}"
    );
    s.kubectl(&[
        "patch",
        "tuple",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])?;
    expect_numbers(&s, &[("sentinel-0", 9)]).await?;
    Ok(())
}

const SAMPLES: &str = include_str!("../../solutions/step03_tuple/samples/tuples.yaml");

/// The commands of steps/*/03-tuple.md, and what they print there.
async fn the_guide_shows_what_a_real_run_prints(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step03)?;
    s.apply(SAMPLES).await?;
    guides::expect_table(&s, "step03-tuples", &["get", "tuples"]).await?;
    guides::expect_table(&s, "step03-numbers", &["get", "numbers"]).await?;
    let tree =
        xtask::tree_live::snapshot(&s.client, &s.namespace, true, std::time::Duration::from_secs(60), false).await?;
    guides::expect_tree(&s, "step03-tree", &tree)?;
    guides::expect_logged(&s, "step03", &s.controller_log())
}
