//! Least privilege: the finished controller under the Role that `deploy/`
//! ships, with a ServiceAccount token instead of the admin certificate.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use crate::Case;
use crate::cluster::{Scenario, Stage, field};
use crate::step01::case;

const RBAC: &str = include_str!("../../deploy/rbac.yaml");
const DEPLOYMENT: &str = include_str!("../../deploy/deployment.yaml");

/// The ServiceAccount that `deploy/rbac.yaml` creates.
const SERVICE_ACCOUNT: &str = "math-controller";

pub fn cases() -> Vec<Case> {
    vec![
        case!(
            Stage::Step04,
            the_finished_controller_needs_exactly_the_role_it_ships,
            needs_audit_log,
            beyond_lesson
        ),
        case!(
            Stage::Step04,
            a_list_the_role_forbids_is_told_once_naming_the_verb,
            needs_audit_log,
            beyond_lesson
        ),
    ]
}

/// With a Role that lacks `list` on Tuples and Numbers, the controller
/// cannot fill the caches its reconciles wait for: it says so once for each
/// refused list, naming the verb and the resource, instead of waiting in
/// silence or repeating the refusal every second.
async fn a_list_the_role_forbids_is_told_once_naming_the_verb(mut s: Scenario<'_>) -> Result<()> {
    let without_list = RBAC.replace(
        "  resources: [tuples, numbers]\n  verbs: [list, watch, create, patch, delete]",
        "  resources: [tuples, numbers]\n  verbs: [watch, create, patch, delete]",
    );
    ensure!(
        without_list != RBAC,
        "deploy/rbac.yaml no longer has the rule this scenario takes list out of"
    );
    s.apply(&without_list).await?;
    let kubeconfig = service_account_kubeconfig(&s)?;
    s.start_controller_as(Stage::Step04, &kubeconfig)?;
    s.apply(&crate::step04::fermat("thirteen", 13)).await?;
    let s = &s;
    let told = |resource: &'static str| {
        move |line: &&str| line.contains(" ERROR ") && line.contains(&format!("cannot list resource \"{resource}\""))
    };
    s.eventually(
        "the controller to say that it may not list tuples and numbers",
        || async move {
            let log = s.controller_log();
            let lines: Vec<&str> = log.lines().collect();
            match (lines.iter().any(told("tuples")), lines.iter().any(told("numbers"))) {
                (true, true) => Ok(()),
                _ => Err(format!("it logged:\n{}", crate::cluster::last_lines(&log, 10))),
            }
        },
    )
    .await?;
    // Each further refusal of the same list is said at debug level only:
    // wait until the API server has refused it three times.
    let username = format!("system:serviceaccount:{}:{SERVICE_ACCOUNT}", s.namespace);
    let username = &username;
    s.eventually(
        "the API server to refuse the list of numbers three times",
        || async move {
            let refused = s
                .recorded_requests_by(username)
                .map_err(|err| format!("{err:#}"))?
                .into_iter()
                .filter(|request| request.verb == "list" && request.resource == "numbers" && request.code == 403)
                .count();
            match refused {
                3.. => Ok(()),
                n => Err(format!("it refused it {n} times")),
            }
        },
    )
    .await?;
    let told_times = s.controller_log().lines().filter(told("numbers")).count();
    ensure!(
        told_times == 1,
        "the refusal of the list of numbers was told {told_times} times"
    );
    let log = s.controller_log();
    let noise: Vec<&str> = log
        .lines()
        .filter(|line| (line.contains(" WARN ") || line.contains(" ERROR ")) && line.contains("403"))
        .collect();
    ensure!(
        noise.is_empty(),
        "the refusals were also told as:\n{}",
        noise.join("\n")
    );
    Ok(())
}

/// What a Role grants, as (resource, subresource, verb).
fn granted(rbac_yaml: &str) -> Result<BTreeSet<(String, String, String)>> {
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(rbac_yaml)?;
    let role = documents
        .iter()
        .find(|document| document["kind"] == "Role")
        .context("deploy/rbac.yaml has no Role")?;
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().context("the Role has no rules")? {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        for resource in strings("resources") {
            let (resource, subresource) = resource.split_once('/').unwrap_or((&resource, ""));
            for verb in strings("verbs") {
                granted.insert((resource.to_string(), subresource.to_string(), verb));
            }
        }
    }
    Ok(granted)
}

/// A kubeconfig for the ServiceAccount: the scenario's cluster and namespace,
/// with a token from the TokenRequest API instead of the admin certificate.
fn service_account_kubeconfig(s: &Scenario<'_>) -> Result<PathBuf> {
    let token = s.kubectl(&["create", "token", SERVICE_ACCOUNT, "--duration=1h"])?;
    let path = s.dir().join("service-account-kubeconfig");
    std::fs::copy(&s.kubeconfig, &path)?;
    let kubectl = |args: &[&str]| s.kubectl_as(&path, args).map(drop);
    kubectl(&[
        "config",
        "set-credentials",
        SERVICE_ACCOUNT,
        &format!("--token={}", token.trim()),
    ])?;
    kubectl(&[
        "config",
        "set-context",
        "--current",
        &format!("--user={SERVICE_ACCOUNT}"),
    ])?;
    Ok(path)
}

/// Asks the API server whether `client`'s identity may do `verb` on
/// `resource` (`plural` or `plural.group`) in `namespace` (every namespace
/// when `None`): what `kubectl auth can-i` asks, a SelfSubjectAccessReview.
async fn can_i(client: &kube::Client, verb: &str, resource: &str, namespace: Option<&str>) -> Result<bool> {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_string()),
                group: Some(group.to_string()),
                resource: Some(plural.to_string()),
                namespace: namespace.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .with_context(|| format!("cannot ask whether the ServiceAccount may {verb} {resource}"))?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}

fn number_value(object: &kube::api::DynamicObject) -> Option<i64> {
    field(object, &["spec", "value"]).as_i64()
}

async fn the_finished_controller_needs_exactly_the_role_it_ships(mut s: Scenario<'_>) -> Result<()> {
    s.apply(RBAC).await?;
    // The Deployment is valid for this API server (no node runs it here).
    let dry_run = s.kubectl_output(&["apply", "--dry-run=server", "-f", "-"], Some(DEPLOYMENT))?;
    ensure!(
        dry_run.status.success(),
        "the API server refuses deploy/deployment.yaml: {}",
        String::from_utf8_lossy(&dry_run.stderr)
    );
    let kubeconfig = service_account_kubeconfig(&s)?;
    // Two copies, as the Deployment runs them: one leads, the other watches the Lease.
    s.start_controller_as(Stage::Step04, &kubeconfig)?;
    s.start_controller_as(Stage::Step04, &kubeconfig)?;

    // Every kind of write the controllers make: children created, edited
    // children put back, a deleted child recreated, unwanted children deleted,
    // and every status.
    s.apply(&crate::step04::fermat("thirteen", 13)).await?;
    ensure!(
        crate::step04::settled_answer(&s, "thirteen", 13).await?,
        "13 was not found"
    );
    s.merge_patch("Tuple", "thirteen-4-and-9", r#"{"spec":{"numbers":[1,2]}}"#)
        .await?;
    s.merge_patch("Number", "thirteen-2-and-11-0", r#"{"spec":{"value":7}}"#)
        .await?;
    s.kubectl(&["delete", "number", "thirteen-1-and-12-1"])?;
    ensure!(crate::step04::settled_answer(&s, "thirteen", 13).await?, "13 was lost");
    // The same child put back again: its event becomes a series (a patch).
    s.merge_patch("Number", "thirteen-2-and-11-0", r#"{"spec":{"value":7}}"#)
        .await?;
    ensure!(crate::step04::settled_answer(&s, "thirteen", 13).await?, "13 was lost");
    s.merge_patch("Fermat", "thirteen", r#"{"spec":{"number":5}}"#).await?;
    ensure!(
        crate::step04::settled_answer(&s, "thirteen", 5).await?,
        "5 was not found"
    );
    s.apply(
        "apiVersion: math.workshop.example/v1beta1\nkind: Tuple\nmetadata:\n  name: shrinking\nspec:\n  numbers: [1, 4, 9]\n",
    ).await?;
    s.expect_status_field("Tuple", "shrinking", "allSquares", serde_json::json!(true))
        .await?;
    s.merge_patch("Tuple", "shrinking", r#"{"spec":{"numbers":[2]}}"#)
        .await?;
    let numbers = s.api("Number");
    s.eventually("shrinking's unwanted Numbers to be deleted", || {
        let numbers = numbers.clone();
        async move {
            let mut present = Vec::new();
            for name in ["shrinking-0", "shrinking-1", "shrinking-2"] {
                if let Some(number) = numbers.get_opt(name).await.map_err(|err| err.to_string())? {
                    present.push((name.to_string(), number_value(&number)));
                }
            }
            if present == [("shrinking-0".to_string(), Some(2))] {
                Ok(())
            } else {
                Err(format!("{present:?}"))
            }
        }
    })
    .await?;
    s.expect_status_field("Tuple", "shrinking", "allSquares", serde_json::json!(false))
        .await?;

    // Nothing was refused, and every verb the Role grants was needed.
    let username = format!("system:serviceaccount:{}:{SERVICE_ACCOUNT}", s.namespace);
    let requests = s.recorded_requests_by(&username)?;
    let refused: Vec<String> = requests
        .iter()
        .filter(|request| request.code == 403)
        .map(|request| format!("{} {}", request.verb, request.request_uri))
        .collect();
    ensure!(refused.is_empty(), "the Role refused: {refused:?}");
    let used: BTreeSet<(String, String, String)> = requests
        .iter()
        .map(|request| {
            (
                request.resource.clone(),
                request.subresource.clone(),
                request.verb.clone(),
            )
        })
        .collect();
    let granted = granted(RBAC)?;
    let unused: Vec<_> = granted.difference(&used).collect();
    ensure!(
        unused.is_empty(),
        "the Role grants what the controller never used: {unused:?}"
    );
    let ungranted: Vec<_> = used.difference(&granted).collect();
    ensure!(
        ungranted.is_empty(),
        "the controller did what the Role does not grant: {ungranted:?}"
    );

    // What it must not do, here (the scenario's namespace), elsewhere, or
    // in every namespace.
    let client = xtask::control_plane::client_for(&kubeconfig).await?;
    let here = Some(s.namespace.as_str());
    for (verb, resource, namespace) in [
        ("get", "secrets", here),
        ("list", "configmaps", here),
        ("create", "pods", here),
        ("patch", "fermats.math.workshop.example", here),
        ("delete", "fermats.math.workshop.example", here),
        ("get", "numbers.math.workshop.example", here),
        ("create", "numbers.math.workshop.example", Some("default")),
        ("list", "numbers.math.workshop.example", None),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("create", "rolebindings.rbac.authorization.k8s.io", here),
    ] {
        ensure!(
            !can_i(&client, verb, resource, namespace).await?,
            "the ServiceAccount may {verb} {resource} in {}",
            namespace.unwrap_or("every namespace")
        );
    }
    ensure!(
        can_i(&client, "create", "numbers.math.workshop.example", here).await?,
        "the ServiceAccount may not create Numbers in its own namespace"
    );
    let secrets = s.kubectl_output_as(&kubeconfig, &["get", "secrets"], None)?;
    let stderr = String::from_utf8_lossy(&secrets.stderr);
    ensure!(
        !secrets.status.success() && stderr.contains("Forbidden"),
        "reading Secrets was not forbidden: {stderr}"
    );
    Ok(())
}
