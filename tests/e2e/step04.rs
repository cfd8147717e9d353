//! Stage 4: Fermats own Tuples, and the cluster decides the theorem.

use anyhow::{Result, ensure};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

use crate::Case;
use crate::cluster::{Scenario, Stage, field};
use crate::step01::case;
use crate::step03::{expect_numbers, numbers};

const SAMPLES: &str = include_str!("../../solutions/step04_fermat/samples/fermats.yaml");
const INVALID: &str = include_str!("../../solutions/step04_fermat/samples/invalid-fermat.yaml");

pub fn cases() -> Vec<Case> {
    vec![
        case!(Stage::Step04, the_cluster_finds_13_2_and_25_but_not_7_and_3),
        case!(Stage::Step04, changing_n_replaces_the_tuples),
        case!(
            Stage::Step04,
            deleting_a_grandchild_number_brings_it_back_and_the_answer_stays
        ),
        case!(Stage::Step04, a_deleted_or_edited_tuple_is_put_back),
        case!(Stage::Step04, deleting_the_fermat_removes_everything),
        case!(
            Stage::Step04,
            a_restarted_controller_rewrites_nothing_that_is_already_right,
            needs_audit_log: true
        ),
        case!(Stage::Step04, the_schema_rejects_n_above_the_bound),
    ]
}

fn fermat(name: &str, n: i64) -> String {
    format!(
        "apiVersion: math.workshop.example/v1beta1\nkind: Fermat\nmetadata:\n  name: {name}\nspec:\n  number: {n}\n"
    )
}

/// The answer of Fermat `name` for n, once the whole tree agrees: every
/// wanted Tuple and Number exists with a status, each Tuple's allSquares
/// matches its Numbers, and the Fermat's answer matches its Tuples. The
/// controllers change nothing in such a state, so the answer is final.
async fn settled_answer(s: &Scenario<'_>, name: &str, n: i64) -> Result<bool> {
    s.eventually(&format!("{name} ({n}) to settle"), || async move {
        let fermat = s.api("Fermat").get(name).await.map_err(|err| err.to_string())?;
        if field(&fermat, &["spec", "number"]).as_i64() != Some(n) {
            return Err("the spec does not say n yet".into());
        }
        let tuples = s
            .api("Tuple")
            .list(&ListParams::default())
            .await
            .map_err(|err| err.to_string())?
            .items;
        let numbers = s
            .api("Number")
            .list(&ListParams::default())
            .await
            .map_err(|err| err.to_string())?
            .items;
        let mut any_all_squares = false;
        for i in 1..=n / 2 {
            let tuple_name = format!("{name}-{i}-and-{}", n - i);
            let tuple = tuples
                .iter()
                .find(|t| t.name_any() == tuple_name)
                .ok_or(format!("{tuple_name} is missing"))?;
            let mut both_squares = true;
            for index in 0..2 {
                let number_name = format!("{tuple_name}-{index}");
                let number = numbers
                    .iter()
                    .find(|x| x.name_any() == number_name)
                    .ok_or(format!("{number_name} is missing"))?;
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
        let found = field(&fermat, &["status", "twoSquaresFound"])
            .as_bool()
            .ok_or("the Fermat has no status")?;
        if found != any_all_squares {
            return Err(format!("{name} reports {found}, its Tuples say {any_all_squares}"));
        }
        Ok(found)
    })
    .await
}

async fn the_cluster_finds_13_2_and_25_but_not_7_and_3(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(SAMPLES)?;
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
    Ok(())
}

const README: &str = include_str!("../../README.md");
const README_JA: &str = include_str!("../../README.ja.md");

/// The rows of a `kubectl get` table without its last column (AGE changes).
fn without_last_column(table: &str) -> Vec<Vec<String>> {
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

async fn changing_n_replaces_the_tuples(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("f", 13))?;
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
        let wanted: Vec<String> = (1..=n / 2).map(|i| format!("f-{i}-and-{}", n - i)).collect();
        expect_tuples(&s, wanted).await?;
    }
    Ok(())
}

/// The Tuple brings its Number back; the Numbers' status travels up two levels.
async fn deleting_a_grandchild_number_brings_it_back_and_the_answer_stays(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&fermat("thirteen", 13))?;
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
    s.apply(&fermat("three", 3))?;
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
    s.apply(&fermat("thirteen", 13))?;
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
    s.apply(&fermat("sentinel", 2))?;
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
    s.apply(&fermat("gone", 10))?;
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
