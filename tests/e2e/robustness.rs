//! Bad input and faults, each recorded as a row of ROBUSTNESS.md (see
//! `xtask::robustness`). Ids: N Numbers, T Tuples, F Fermats, K the program's
//! command line and kubeconfig, X faults.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use xtask::catalogue::{number_name, tuple_name};
use xtask::robustness::{self, Row};

use crate::Case;
use crate::cluster::{Scenario, Stage, expect_one_line_error, field, run_to_exit};
use crate::step01::case;
use crate::step04::{fermat, install_looser_crd, settled_answer, settled_answers};

/// The table's rows: not part of any stage's lesson, so `cargo xtask check`
/// runs them only with `--all`.
pub fn cases() -> Vec<Case> {
    let rows = vec![
        case!(Stage::Step04, the_api_server_refuses_each_bad_input_and_says_why),
        case!(Stage::Step04, numbers_at_the_limits_of_int64_get_exact_statuses),
        case!(Stage::Step04, statuses_written_by_users_are_put_back),
        case!(Stage::Step04, tuples_at_their_bounds_are_handled),
        case!(Stage::Step04, children_changed_by_others_are_put_back_or_reported),
        case!(
            Stage::Step04,
            a_child_held_by_a_finalizer_is_deleted_once,
            needs_audit_log
        ),
        case!(Stage::Step04, fermats_at_their_bounds_are_handled),
        case!(
            Stage::Step04,
            mistakes_on_the_command_line_and_in_the_kubeconfig_get_one_line
        ),
        case!(
            Stage::Step04,
            a_killed_controller_restarted_in_the_middle_of_ten_fermats_of_40_finishes_them
        ),
        case!(
            Stage::Step04,
            children_edited_and_deleted_by_another_client_while_converging_are_put_back
        ),
        case!(
            Stage::Step04,
            a_stored_number_that_no_longer_reads_is_named_once_and_once_deleted_the_rest_settles,
            own_plane
        ),
        case!(
            Stage::Step04,
            numbers_deleted_while_only_the_watches_of_numbers_were_away_are_made_again,
            needs_audit_log
        ),
    ];
    rows.into_iter().map(|case| Case { lesson: false, ..case }).collect()
}

/// Records a bad input and what became of it.
pub fn input(id: &str, input: &str, outcome: &str) -> Result<()> {
    robustness::record(&Row::Input {
        id: id.to_string(),
        input: input.to_string(),
        outcome: outcome.to_string(),
    })
}

/// Checks that the namespace holds exactly the tree that `fermats` (name, n)
/// want, records the fault's row, and fails if anything is lost or left over.
pub async fn fault(s: &Scenario<'_>, id: &str, what: &str, fermats: &[(&str, i64)], since: Instant) -> Result<()> {
    settled_answers(s, fermats).await?;
    let recovery_seconds = since.elapsed().as_secs_f64();
    let mut wanted = BTreeSet::new();
    for (name, n) in fermats {
        wanted.insert(format!("Fermat {name}"));
        for i in 1..=n / 2 {
            let tuple = tuple_name(name, i as u64, *n as u64);
            wanted.insert(format!("Number {}", number_name(&tuple, 0)));
            wanted.insert(format!("Number {}", number_name(&tuple, 1)));
            wanted.insert(format!("Tuple {tuple}"));
        }
    }
    let mut present = BTreeSet::new();
    for kind in ["Fermat", "Tuple", "Number"] {
        for object in s.api(kind).list(&ListParams::default()).await?.items {
            // An object on its way out (held by the garbage collector) is not left over.
            if object.metadata.deletion_timestamp.is_none() {
                present.insert(format!("{kind} {}", object.name_any()));
            }
        }
    }
    let lost: Vec<&String> = wanted.difference(&present).collect();
    let left_over: Vec<&String> = present.difference(&wanted).collect();
    eprintln!(
        "    {id}: {} lost, {} left over, recovered in {recovery_seconds:.1} s",
        lost.len(),
        left_over.len()
    );
    robustness::record(&Row::Fault {
        id: id.to_string(),
        fault: what.to_string(),
        lost: lost.len(),
        left_over: left_over.len(),
        recovery_seconds,
    })?;
    ensure!(lost.is_empty(), "lost after {what}: {lost:?}");
    ensure!(left_over.is_empty(), "left over after {what}: {left_over:?}");
    Ok(())
}

/// A manifest of `kind` named `name` with `spec` (YAML lines, indented by two).
fn manifest(kind: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: math.workshop.example/v1beta1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{spec}\n")
}

/// Shortens long runs of one character (`aaaa…`) to `<254 × a>`, so that long names stay readable.
fn shorten_runs(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let mut j = i;
        while j < chars.len() && chars[j] == chars[i] {
            j += 1;
        }
        if j - i >= 20 {
            out.push_str(&format!("<{} × {}>", j - i, chars[i]));
        } else {
            out.extend(&chars[i..j]);
        }
        i = j;
    }
    out
}

/// The line of kubectl's answer that holds `expected`: the API server's
/// words, without kubectl's and the API server's preambles.
fn refusal(stderr: &str, expected: &str) -> Option<String> {
    let line = stderr.lines().find(|line| line.contains(expected))?;
    let mut line = line.trim().trim_start_matches("* ");
    for preamble in [
        "is invalid: ",
        "error when creating \"STDIN\": ",
        "<nil>: Invalid value: ",
    ] {
        if let Some((_, rest)) = line.split_once(preamble) {
            line = rest;
        }
    }
    Some(shorten_runs(line))
}

async fn the_api_server_refuses_each_bad_input_and_says_why(s: Scenario<'_>) -> Result<()> {
    let long = |c: char, n: usize| c.to_string().repeat(n);
    let hundred_and_one = vec!["1"; 101].join(", ");
    let sample = |path: &str| std::fs::read_to_string(xtask::repository_root().join(path));
    let rows: Vec<(&str, String, String, &str)> = vec![
        (
            "N05",
            "Number, value 9223372036854775808 (int64 maximum + 1)".into(),
            manifest("Number", "n05", "  value: 9223372036854775808"),
            "must be of type int64",
        ),
        (
            "N06",
            "Number, value -9223372036854775809 (int64 minimum − 1)".into(),
            manifest("Number", "n06", "  value: -9223372036854775809"),
            "must be of type int64",
        ),
        (
            "N07",
            "Number, value 1.5".into(),
            manifest("Number", "n07", "  value: 1.5"),
            "must be of type int64",
        ),
        (
            "N08",
            "Number, value \"12\" (a string)".into(),
            manifest("Number", "n08", "  value: \"12\""),
            "must be of type integer",
        ),
        (
            "N09",
            "Number without a value".into(),
            manifest("Number", "n09", "  {}"),
            "spec.value: Required value",
        ),
        (
            "N10",
            "Number, value null".into(),
            manifest("Number", "n10", "  value: null"),
            "spec.value: Required value",
        ),
        (
            "N11",
            "Number without a spec".into(),
            "apiVersion: math.workshop.example/v1beta1\nkind: Number\nmetadata:\n  name: n11\n".into(),
            "spec: Required value",
        ),
        (
            "N12",
            "Number with an unknown field spec.colour".into(),
            manifest("Number", "n12", "  value: 3\n  colour: red"),
            "unknown field \"spec.colour\"",
        ),
        (
            "N13",
            "Number named with 254 characters".into(),
            manifest("Number", &long('a', 254), "  value: 3"),
            "must be no more than 253 characters",
        ),
        (
            "N14",
            "Number named `Seven` (capital letter)".into(),
            manifest("Number", "Seven", "  value: 7"),
            "RFC 1123 subdomain",
        ),
        (
            "N15",
            "solutions/step01_crd/samples/invalid-number.yaml (value `fifteen`)".into(),
            sample("solutions/step01_crd/samples/invalid-number.yaml")?,
            "must be of type integer",
        ),
        (
            "N16",
            "solutions/step02_status/samples/invalid-number.yaml (value `fifteen`)".into(),
            sample("solutions/step02_status/samples/invalid-number.yaml")?,
            "must be of type integer",
        ),
        (
            "T03",
            "Tuple with 101 numbers (one above the bound)".into(),
            manifest("Tuple", "t03", &format!("  numbers: [{hundred_and_one}]")),
            "must have at most 100 items",
        ),
        (
            "T04",
            "Tuple, numbers [1.5]".into(),
            manifest("Tuple", "t04", "  numbers: [1.5]"),
            "must be of type int64",
        ),
        (
            "T05",
            "Tuple, numbers [1, null]".into(),
            manifest("Tuple", "t05", "  numbers: [1, null]"),
            "must be of type integer",
        ),
        (
            "T06",
            "Tuple without numbers".into(),
            manifest("Tuple", "t06", "  {}"),
            "spec.numbers: Required value",
        ),
        (
            "T07",
            "solutions/step03_tuple/samples/invalid-tuple.yaml (name of 251 characters)".into(),
            sample("solutions/step03_tuple/samples/invalid-tuple.yaml")?,
            "at most 250 characters",
        ),
        (
            "F01",
            "Fermat, n = 0".into(),
            manifest("Fermat", "f01", "  number: 0"),
            "greater than or equal to 1",
        ),
        (
            "F02",
            "Fermat, n = -1".into(),
            manifest("Fermat", "f02", "  number: -1"),
            "greater than or equal to 1",
        ),
        (
            "F03",
            "Fermat, n = 101 (one above the bound)".into(),
            manifest("Fermat", "f03", "  number: 101"),
            "less than or equal to 100",
        ),
        (
            "F04",
            "solutions/step04_fermat/samples/invalid-fermat.yaml (n = 1000)".into(),
            sample("solutions/step04_fermat/samples/invalid-fermat.yaml")?,
            "less than or equal to 100",
        ),
        (
            "F05",
            "Fermat, n \"13\" (a string)".into(),
            manifest("Fermat", "f05", "  number: \"13\""),
            "must be of type integer",
        ),
        (
            "F06",
            "Fermat named with 241 characters (one above the bound)".into(),
            manifest("Fermat", &long('f', 241), "  number: 5"),
            "at most 240 characters",
        ),
        (
            "F07",
            "Fermat with an unknown field spec.value".into(),
            manifest("Fermat", "f07", "  number: 5\n  value: 5"),
            "unknown field \"spec.value\"",
        ),
    ];
    let mut wrong = Vec::new();
    for (id, what, yaml, expected) in &rows {
        let output = s.kubectl_output(&["apply", "-f", "-"], Some(yaml))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        match (output.status.success(), refusal(&stderr, expected)) {
            (false, Some(line)) => input(id, what, &format!("refused: {line}"))?,
            _ => wrong.push(format!(
                "{id} {what}: expected a refusal with {expected:?}, got: {stderr}"
            )),
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Nothing was created.
    for kind in ["Number", "Tuple", "Fermat"] {
        let items = s.api(kind).list(&ListParams::default()).await?.items;
        ensure!(
            items.is_empty(),
            "a refused {kind} exists: {:?}",
            items.first().map(|item| item.name_any())
        );
    }
    Ok(())
}

/// Waits until Number `name` reports `fizz_buzz` and `is_square` for its current spec.
async fn expect_number(s: &Scenario<'_>, name: &str, fizz_buzz: &str, is_square: bool) -> Result<()> {
    let api = s.api("Number");
    s.eventually(&format!("Number {name} to report {fizz_buzz}, {is_square}"), || {
        let api = api.clone();
        async move {
            let number = api.get(name).await.map_err(|err| err.to_string())?;
            let status = field(&number, &["status"]);
            let current = status["observedGeneration"].as_i64() == number.metadata.generation;
            if current && status["fizzBuzz"] == fizz_buzz && status["isSquare"] == is_square {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
    })
    .await
}

/// Waits until Number `name` has `value` in its spec.
async fn expect_value(s: &Scenario<'_>, name: &str, value: i64) -> Result<()> {
    let api = s.api("Number");
    s.eventually(&format!("Number {name} to have value {value}"), || {
        let api = api.clone();
        async move {
            let number = api.get(name).await.map_err(|err| err.to_string())?;
            match field(&number, &["spec", "value"]).as_i64() {
                Some(found) if found == value => Ok(()),
                other => Err(format!("value {other:?}")),
            }
        }
    })
    .await
}

async fn numbers_at_the_limits_of_int64_get_exact_statuses(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    let rows: [(&str, &str, &str, &str, bool); 6] = [
        (
            "N01",
            "Number, value 9223372036854775807 (int64 maximum)",
            "9223372036854775807",
            "9223372036854775807",
            false,
        ),
        (
            "N02",
            "Number, value -9223372036854775808 (int64 minimum)",
            "-9223372036854775808",
            "-9223372036854775808",
            false,
        ),
        (
            "N03",
            "Number, value 9223372030926249001 (3037000499², the largest square)",
            "9223372030926249001",
            "9223372030926249001",
            true,
        ),
        (
            "N04",
            "Number, value 9223372030926249002 (one more)",
            "9223372030926249002",
            "9223372030926249002",
            false,
        ),
        (
            "N17",
            "Number, value 1e3 (an integer written as a float)",
            "1e3",
            "Buzz",
            false,
        ),
        ("N18", "Number, value 0", "0", "FizzBuzz", true),
    ];
    for (id, _, value, _, _) in &rows {
        s.apply(&manifest("Number", &id.to_lowercase(), &format!("  value: {value}")))
            .await?;
    }
    for (id, what, _, fizz_buzz, is_square) in rows {
        expect_number(&s, &id.to_lowercase(), fizz_buzz, is_square).await?;
        input(
            id,
            what,
            &format!("accepted: fizzBuzz {fizz_buzz:?}, isSquare {is_square}"),
        )?;
    }
    Ok(())
}

async fn statuses_written_by_users_are_put_back(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    // A status in the manifest: the status subresource drops it at create.
    s.apply(&format!(
        "{}status:\n  fizzBuzz: FizzBuzz\n  isSquare: true\n",
        manifest("Number", "n19", "  value: 2")
    ))
    .await?;
    expect_number(&s, "n19", "2", false).await?;
    input(
        "N19",
        "Number created with a status in its manifest (isSquare true for 2)",
        "status dropped at create; the controller writes isSquare false",
    )?;

    s.apply(&manifest("Number", "n20", "  value: 9")).await?;
    expect_number(&s, "n20", "Fizz", true).await?;
    s.kubectl(&[
        "patch",
        "number",
        "n20",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"fizzBuzz":"wrong","isSquare":false}}"#,
    ])?;
    expect_number(&s, "n20", "Fizz", true).await?;
    input(
        "N20",
        "Number's status edited by a user (fizzBuzz \"wrong\")",
        "put back: fizzBuzz \"Fizz\", isSquare true",
    )?;

    s.apply(&manifest("Tuple", "t13", "  numbers: [4, 9]")).await?;
    s.expect_status_field("Tuple", "t13", "allSquares", serde_json::json!(true))
        .await?;
    s.kubectl(&[
        "patch",
        "tuple",
        "t13",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"allSquares":false}}"#,
    ])?;
    s.expect_status_field("Tuple", "t13", "allSquares", serde_json::json!(true))
        .await?;
    input(
        "T13",
        "Tuple's status edited by a user (allSquares false for [4, 9])",
        "put back: allSquares true",
    )?;

    s.apply(&fermat("f13", 13)).await?;
    ensure!(settled_answer(&s, "f13", 13).await?, "13 was not found");
    s.kubectl(&[
        "patch",
        "fermat",
        "f13",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"twoSquaresFound":false}}"#,
    ])?;
    ensure!(settled_answer(&s, "f13", 13).await?, "13 is no longer found");
    s.expect_status_field("Fermat", "f13", "twoSquaresFound", serde_json::json!(true))
        .await?;
    input(
        "F12",
        "Fermat's status edited by a user (twoSquaresFound false for 13)",
        "put back: twoSquaresFound true",
    )
}

async fn tuples_at_their_bounds_are_handled(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&manifest("Tuple", "t01", "  numbers: []")).await?;
    s.apply(&manifest(
        "Tuple",
        "t02",
        &format!("  numbers: [{}]", vec!["4"; 100].join(", ")),
    ))
    .await?;
    let longest = "t".repeat(250);
    s.apply(&manifest("Tuple", &longest, "  numbers: [4]")).await?;
    s.expect_status_field("Tuple", "t01", "allSquares", serde_json::json!(true))
        .await?;
    s.expect_status_field("Tuple", "t02", "allSquares", serde_json::json!(true))
        .await?;
    s.expect_status_field("Tuple", &longest, "allSquares", serde_json::json!(true))
        .await?;
    let numbers: Vec<String> = s
        .api("Number")
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    let of = |prefix: &str| numbers.iter().filter(|name| name.starts_with(prefix)).count();
    ensure!(of("t01-") == 0, "t01 has Numbers");
    ensure!(of("t02-") == 100, "t02 has {} Numbers, not 100", of("t02-"));
    ensure!(
        numbers.contains(&format!("{longest}-0")),
        "the 250-character Tuple has no Number"
    );
    input(
        "T01",
        "Tuple, numbers [] (empty)",
        "accepted: no Numbers, allSquares true",
    )?;
    input(
        "T02",
        "Tuple with 100 numbers (the bound)",
        "accepted: 100 Numbers, allSquares true",
    )?;
    input(
        "T08",
        "Tuple named with 250 characters (the bound)",
        "accepted: its Number `<250 × t>-0` (252 characters) exists, allSquares true",
    )
}

async fn children_changed_by_others_are_put_back_or_reported(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&manifest("Tuple", "t", "  numbers: [4, 9, 16]")).await?;
    s.expect_status_field("Tuple", "t", "allSquares", serde_json::json!(true))
        .await?;
    let numbers = s.api("Number");

    // Edited: put back.
    s.merge_patch("Number", "t-0", r#"{"spec":{"value":5}}"#).await?;
    expect_value(&s, "t-0", 4).await?;
    input(
        "T09",
        "a Tuple's Number edited by a user (value 4 → 5)",
        "put back to 4",
    )?;

    // Relabelled: none of the controller's business.
    s.kubectl(&["label", "number", "t-1", "team=blue"])?;
    s.merge_patch("Number", "t-0", r#"{"spec":{"value":6}}"#).await?;
    expect_value(&s, "t-0", 4).await?;
    let relabelled = numbers.get("t-1").await?;
    ensure!(
        relabelled.labels().get("team").map(String::as_str) == Some("blue"),
        "the label was removed"
    );
    ensure!(
        field(&relabelled, &["spec", "value"]).as_i64() == Some(9),
        "t-1 changed"
    );
    input(
        "T10",
        "a Tuple's Number relabelled by a user (team=blue)",
        "left alone: the label stays, the spec and owner do not change",
    )?;

    // Re-owned: another controller's now (a real object, so that the garbage
    // collector keeps it); reported, not taken back.
    s.kubectl(&["create", "configmap", "someone-else"])?;
    let uid = s.kubectl(&["get", "configmap", "someone-else", "-o", "jsonpath={.metadata.uid}"])?;
    let other_owner = serde_json::json!({"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "someone-else",
        "uid": uid.trim(), "controller": true
    }]}});
    numbers
        .patch("t-2", &PatchParams::default(), &Patch::Merge(&other_owner))
        .await?;
    crate::step03::expect_name_clashes(&s, "Tuple", "t", &["t-2"]).await?;
    s.expect_status_field("Tuple", "t", "allSquares", serde_json::json!(false))
        .await?;
    let still = numbers.get("t-2").await?;
    ensure!(
        still
            .owner_references()
            .iter()
            .any(|owner| owner.name == "someone-else"),
        "the re-owned Number was taken back"
    );
    input(
        "T11",
        "a Tuple's Number re-owned by another controller",
        "reported in the Tuple's nameClashes, left alone; allSquares false",
    )
}

async fn a_child_held_by_a_finalizer_is_deleted_once(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    s.apply(&manifest("Tuple", "held", "  numbers: [1, 4]")).await?;
    s.expect_status_field("Tuple", "held", "allSquares", serde_json::json!(true))
        .await?;
    let numbers = s.api("Number");
    let finalizer = serde_json::json!({"metadata": {"finalizers": ["example.com/hold"]}});
    numbers
        .patch("held-1", &PatchParams::default(), &Patch::Merge(&finalizer))
        .await?;
    s.merge_patch("Tuple", "held", r#"{"spec":{"numbers":[1]}}"#).await?;
    s.expect_marked_for_deletion("Number", "held-1").await?;
    s.expect_status_field("Tuple", "held", "allSquares", serde_json::json!(true))
        .await?;
    // Give the controller more reasons to look at the Tuple: its other child edited.
    s.merge_patch("Number", "held-0", r#"{"spec":{"value":7}}"#).await?;
    expect_number(&s, "held-0", "1", true).await?;
    let deletes = s
        .recorded_writes()?
        .into_iter()
        .filter(|write| write.verb == "delete" && write.name == "held-1")
        .count();
    ensure!(deletes == 1, "held-1 was deleted {deletes} times");
    let remove = serde_json::json!({"metadata": {"finalizers": null}});
    numbers
        .patch("held-1", &PatchParams::default(), &Patch::Merge(&remove))
        .await?;
    s.eventually("held-1 to be gone", || {
        let numbers = numbers.clone();
        async move {
            match numbers.get_opt("held-1").await.map_err(|err| err.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        }
    })
    .await?;
    input(
        "T12",
        "a Number held by a finalizer when its Tuple no longer wants it",
        "deleted once; it waits for its finalizer, then goes",
    )
}

async fn fermats_at_their_bounds_are_handled(mut s: Scenario<'_>) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    let longest = "f".repeat(240);
    s.apply(&fermat("one", 1)).await?;
    s.apply(&fermat("hundred", 100)).await?;
    s.apply(&fermat(&longest, 100)).await?;
    ensure!(!settled_answer(&s, "one", 1).await?, "1 was found");
    ensure!(settled_answer(&s, "hundred", 100).await?, "100 was not found");
    ensure!(
        settled_answer(&s, &longest, 100).await?,
        "100 was not found for the long name"
    );
    let tuples = s.api("Tuple").list(&ListParams::default()).await?.items;
    ensure!(
        !tuples.iter().any(|tuple| tuple.name_any().starts_with("one-")),
        "1 has Tuples"
    );
    input("F08", "Fermat, n = 1", "accepted: no Tuples, twoSquaresFound false")?;
    input(
        "F09",
        "Fermat, n = 100 (the bound)",
        "accepted: 50 Tuples, 100 Numbers, twoSquaresFound true (36 + 64)",
    )?;
    input(
        "F10",
        "Fermat named with 240 characters (the bound), n = 100",
        "accepted: its longest Tuple name has 250 characters, its Numbers' 252",
    )
}

async fn mistakes_on_the_command_line_and_in_the_kubeconfig_get_one_line(s: Scenario<'_>) -> Result<()> {
    let program = Stage::Step04.program()?;
    let dir = s.dir().to_path_buf();
    let one_line = |args: &[&str], kubeconfig: &std::path::Path| -> Result<String> {
        let output = run_to_exit(&program, args, kubeconfig)?;
        ensure!(output.status.code() == Some(1), "exit code {:?}", output.status.code());
        let line = expect_one_line_error(&output)?;
        Ok(line.replace(&dir.display().to_string(), "<dir>"))
    };
    let expect = |line: &str, part: &str| -> Result<()> {
        ensure!(line.contains(part), "expected {part:?} in: {line}");
        Ok(())
    };

    let line = one_line(&["foo"], &s.kubeconfig)?;
    expect(&line, "unexpected arguments")?;
    input("K01", "`step04_fermat foo`", &format!("one line: {line}"))?;
    let line = one_line(&["crd", "extra"], &s.kubeconfig)?;
    expect(&line, "unexpected arguments")?;
    input("K02", "`step04_fermat crd extra`", &format!("one line: {line}"))?;

    let line = one_line(&[], &dir.join("missing"))?;
    expect(&line, "no usable kubeconfig")?;
    input(
        "K03",
        "KUBECONFIG names a file that does not exist",
        &format!("one line: {}", line),
    )?;
    std::fs::write(dir.join("garbage"), "this: is: not: a kubeconfig\n")?;
    let line = one_line(&[], &dir.join("garbage"))?;
    expect(&line, "no usable kubeconfig")?;
    input(
        "K04",
        "KUBECONFIG names a file that is not YAML",
        &format!("one line: {}", line),
    )?;

    // A server that does not listen: a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let kubeconfig = std::fs::read_to_string(&s.kubeconfig)?;
    let server = kubeconfig
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .context("the kubeconfig names no server")?
        .to_string();
    std::fs::write(
        dir.join("closed"),
        kubeconfig.replace(&server, &format!("https://127.0.0.1:{port}")),
    )?;
    let line = one_line(&[], &dir.join("closed"))?;
    expect(&line, "does not answer")?;
    input(
        "K05",
        "the kubeconfig's server does not listen",
        &format!("one line: {}", line.replace(&port.to_string(), "<port>")),
    )?;

    // A token the API server does not know.
    std::fs::copy(&s.kubeconfig, dir.join("stranger"))?;
    let stranger = dir.join("stranger");
    let kubectl = |args: &[&str]| s.kubectl_as(&stranger, args).map(drop);
    kubectl(&["config", "set-credentials", "stranger", "--token=not-a-token"])?;
    kubectl(&["config", "set-context", "--current", "--user=stranger"])?;
    let line = one_line(&[], &dir.join("stranger"))?;
    expect(&line, "Unauthorized")?;
    input(
        "K06",
        "the kubeconfig's token is not accepted",
        &format!("one line: {}", line.replace(&server, "<server>")),
    )?;

    // A namespace that does not exist.
    std::fs::copy(&s.kubeconfig, dir.join("nowhere"))?;
    s.kubectl_as(
        &dir.join("nowhere"),
        &["config", "set-context", "--current", "--namespace=no-such-namespace"],
    )?;
    let line = one_line(&[], &dir.join("nowhere"))?;
    expect(&line, "no-such-namespace")?;
    input(
        "K07",
        "the kubeconfig's context names a namespace that does not exist",
        &format!("one line: {}", line),
    )
}

async fn a_killed_controller_restarted_in_the_middle_of_ten_fermats_of_40_finishes_them(
    mut s: Scenario<'_>,
) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    let names: Vec<String> = (0..10).map(|index| format!("f{index}")).collect();
    let yaml = names
        .iter()
        .map(|name| fermat(name, 40))
        .collect::<Vec<_>>()
        .join("---\n");
    s.apply(&yaml).await?;
    let numbers = s.api("Number");
    s.eventually("a third of the Numbers to exist", || {
        let numbers = numbers.clone();
        async move {
            let count = numbers
                .list(&ListParams::default())
                .await
                .map_err(|err| err.to_string())?
                .items
                .len();
            if count >= 120 {
                Ok(())
            } else {
                Err(format!("{count} Numbers"))
            }
        }
    })
    .await?;
    let pid = *s.controller_pids().first().context("no controller")?;
    s.kill_controller(pid)?;
    let restarted = Instant::now();
    s.start_controller(Stage::Step04)?;
    let fermats: Vec<(&str, i64)> = names.iter().map(|name| (name.as_str(), 40)).collect();
    fault(
        &s,
        "X01",
        "controller killed (SIGKILL) while settling 10 Fermats of 40, then started again (on the same machine it takes over the dead copy's Lease at once)",
        &fermats,
        restarted,
    )
    .await
}

async fn children_edited_and_deleted_by_another_client_while_converging_are_put_back(
    mut s: Scenario<'_>,
) -> Result<()> {
    s.start_controller(Stage::Step04)?;
    let names: Vec<String> = (0..5).map(|index| format!("g{index}")).collect();
    let yaml = names
        .iter()
        .map(|name| fermat(name, 40))
        .collect::<Vec<_>>()
        .join("---\n");
    s.apply(&yaml).await?;
    let numbers = s.api("Number");
    let tuples = s.api("Tuple");
    // Several rounds, each on whatever exists by then: every fifth Number
    // edited, every seventh deleted, every ninth Tuple deleted.
    for round in 0..5 {
        for (index, number) in numbers.list(&ListParams::default()).await?.items.iter().enumerate() {
            let name = number.name_any();
            if index % 5 == round % 5 {
                let patch = serde_json::json!({"spec": {"value": 1000 + index}});
                numbers
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .ok();
            } else if index % 7 == round {
                numbers.delete(&name, &Default::default()).await.ok();
            }
        }
        for (index, tuple) in tuples.list(&ListParams::default()).await?.items.iter().enumerate() {
            if index % 9 == round {
                tuples.delete(&tuple.name_any(), &Default::default()).await.ok();
            }
        }
    }
    let last_edit = Instant::now();
    let fermats: Vec<(&str, i64)> = names.iter().map(|name| (name.as_str(), 40)).collect();
    fault(
        &s,
        "X06",
        "another client editing and deleting Numbers and Tuples (5 rounds) while 5 Fermats of 40 converge",
        &fermats,
        last_edit,
    )
    .await
}

/// A Number stored while an older CRD let its value be a string: the API
/// server keeps it and serves it as it is, and the program cannot read it.
/// Every list of Numbers fails with it, so no Number is reconciled; the
/// program says which object it is, once, and what to do (not an outage,
/// which it is not). Deleted, the rest settles.
async fn a_stored_number_that_no_longer_reads_is_named_once_and_once_deleted_the_rest_settles(
    mut s: Scenario<'_>,
) -> Result<()> {
    let (crds, plane) = install_looser_crd(&s, "Number", "value", |value| {
        *value = serde_json::json!({ "type": "string" });
        Ok(())
    })?;
    s.apply(&manifest("Number", "unreadable", "  value: \"abc\"")).await?;
    plane.install_crds(&crds)?;

    s.start_controller(Stage::Step04)?;
    let named = "the Number unreadable cannot be read by this program";
    s.eventually("the program to name the Number it cannot read", || async {
        match s.controller_log().contains(named) {
            true => Ok(()),
            false => Err(format!("no \"{named}\" in the log")),
        }
    })
    .await?;
    s.apply(&fermat("five", 5)).await?;
    s.kubectl(&["delete", "number", "unreadable"])?;
    ensure!(settled_answer(&s, "five", 5).await?, "5 was not found");
    let log = s.controller_log();
    let told = log.lines().filter(|line| line.contains(named)).collect::<Vec<_>>();
    ensure!(
        told.len() == 1,
        "the unreadable Number was told {} times: {told:#?}",
        told.len()
    );
    ensure!(
        told[0].contains(" ERROR ") && told[0].contains("kubectl delete number unreadable"),
        "the line is no error that says what to do: {}",
        told[0]
    );
    ensure!(
        !log.contains("out of reach"),
        "the program called the unreadable Number an outage"
    );
    input(
        "N21",
        "a Number stored while an older CRD let its value be a string (\"abc\"); this program cannot read it",
        "one error line names it and says to fix or delete it (no outage is told); no Number is reconciled until then; deleted, a Fermat created meanwhile settles",
    )
}

/// Both Numbers of a Tuple deleted while only the program's watches of
/// Numbers are away (a proxy holds them), then those watches told that
/// their place in history is gone (410): they list again, and a watch that
/// lists again sends no deletion for what went meanwhile. Nothing else of
/// the Tuple's changed, so only the kit's wake-up for children gone at a
/// new list makes them again.
async fn numbers_deleted_while_only_the_watches_of_numbers_were_away_are_made_again(mut s: Scenario<'_>) -> Result<()> {
    let plane = s
        .cluster()
        .plane()
        .context("this scenario needs a local control plane")?;
    let proxy = crate::http_proxy::WatchProxy::start(&plane.dir, s.client.clone(), "numbers").await?;
    let kubeconfig = proxy.kubeconfig(&s.kubeconfig, &s.dir().join("through-proxy"))?;
    s.start_controller_as(Stage::Step04, &kubeconfig)?;
    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");

    proxy.send_away();
    // The Number controller's watch and the Tuple controller's watch of its children.
    s.eventually("both watches of Numbers to be away", || async {
        match proxy.held() {
            2.. => Ok(()),
            held => Err(format!("{held} held")),
        }
    })
    .await?;
    let deleted = Instant::now();
    s.kubectl(&["delete", "number", "thirteen-4-and-9-0", "thirteen-4-and-9-1"])?;
    proxy.bring_back_expired();
    fault(
        &s,
        "X11",
        "both Numbers of a Tuple deleted while only the program's watches of Numbers were away; they came back with 410 Gone and listed again",
        &[("thirteen", 13)],
        deleted,
    )
    .await
}
