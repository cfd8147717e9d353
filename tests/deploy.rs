//! The files in `deploy/` that no test cluster here can run: the container
//! build file is checked for syntax and for agreeing with the repository
//! (no container engine runs on CI's machine), and the manifests for naming
//! the same ServiceAccount and image. The end-to-end scenario
//! `the_finished_controller_needs_exactly_the_role_it_ships` runs the
//! controller under `deploy/rbac.yaml` and has the API server validate
//! `deploy/deployment.yaml`.

use std::fs;

use xtask::repository_root as root;

/// The instructions a Dockerfile may hold.
const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The instructions of a Dockerfile, continuation lines joined, comments and
/// blank lines left out: (line number, keyword, arguments).
fn instructions(text: &str) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        if let Some(head) = trimmed.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(trimmed);
        let (keyword, arguments) = joined.split_once(char::is_whitespace).unwrap_or((&joined, ""));
        found.push((start, keyword.to_string(), arguments.trim().to_string()));
    }
    assert!(pending.is_none(), "the Dockerfile ends inside a continued line");
    found
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|err| panic!("cannot read {path}: {err}"))
}

/// The `[[bin]]` names in Cargo.toml.
fn binaries() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(name) = line.strip_prefix("name = ") {
            names.push(name.trim_matches('"').to_string());
        }
    }
    names
}

#[test]
fn the_container_build_file_is_well_formed_and_matches_the_repository() {
    let text = read("deploy/Dockerfile");
    let steps = instructions(&text);
    assert!(!steps.is_empty());
    let mut stages: Vec<String> = Vec::new();
    for (line, keyword, arguments) in &steps {
        assert!(
            INSTRUCTIONS.contains(&keyword.as_str()),
            "line {line}: `{keyword}` is not a Dockerfile instruction"
        );
        assert_eq!(
            keyword,
            &keyword.to_uppercase(),
            "line {line}: write instructions in capitals"
        );
        assert!(!arguments.is_empty(), "line {line}: `{keyword}` has no arguments");
        if stages.is_empty() {
            assert!(
                keyword == "FROM" || keyword == "ARG",
                "line {line}: a Dockerfile starts with FROM"
            );
        }
        match keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> = arguments.split_whitespace().collect();
                match words.as_slice() {
                    [_image] => stages.push(String::new()),
                    [_image, as_, name] if as_.eq_ignore_ascii_case("as") => stages.push(name.to_string()),
                    _ => panic!("line {line}: FROM takes an image and an optional `AS name`"),
                }
            }
            "COPY" | "ADD" => {
                let words: Vec<&str> = arguments.split_whitespace().collect();
                assert!(
                    words.len() >= 2,
                    "line {line}: {keyword} needs a source and a destination"
                );
                if let Some(stage) = words[0].strip_prefix("--from=") {
                    assert!(
                        stages[..stages.len() - 1].iter().any(|name| name == stage),
                        "line {line}: no earlier stage is named {stage}"
                    );
                } else {
                    for source in &words[..words.len() - 1] {
                        assert!(
                            root().join(source).exists(),
                            "line {line}: {source} is not in the repository"
                        );
                    }
                }
            }
            "ENTRYPOINT" | "CMD" if arguments.starts_with('[') => {
                let parsed: Result<Vec<String>, _> = serde_json::from_str(arguments);
                assert!(parsed.is_ok(), "line {line}: the exec form is a JSON list of strings");
            }
            _ => {}
        }
    }

    // It builds a finished stage with a toolchain the package accepts, and runs that build.
    let run = steps
        .iter()
        .find(|(_, keyword, arguments)| keyword == "RUN" && arguments.contains("cargo build"))
        .expect("a RUN cargo build step");
    let binary = run
        .2
        .split_once("--bin ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .expect("cargo build names a --bin");
    assert!(
        binaries().iter().any(|name| name == binary),
        "{binary} is not a [[bin]] of Cargo.toml"
    );
    assert!(run.2.contains("--locked"), "the build uses Cargo.lock as it is");
    let entrypoint = &steps
        .iter()
        .find(|(_, keyword, _)| keyword == "ENTRYPOINT")
        .expect("an ENTRYPOINT")
        .2;
    assert!(
        entrypoint.contains(&format!("/{binary}\"")),
        "the ENTRYPOINT runs {binary}"
    );

    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .map(|version| version.trim_matches('"').to_string())
        .expect("Cargo.toml sets rust-version");
    let image = &steps[0].2;
    assert!(
        image.contains(&format!("rust:{rust_version}")),
        "the build image ({image}) is not Rust {rust_version}, the package's rust-version"
    );

    let ignored = read(".dockerignore");
    assert!(
        ignored.lines().any(|line| line.trim() == "target/"),
        ".dockerignore leaves target/ out"
    );
}

#[test]
fn the_deployment_runs_the_image_the_build_file_makes_under_the_shipped_service_account() {
    let rbac: Vec<serde_json::Value> = serde_saphyr::from_multiple(&read("deploy/rbac.yaml")).unwrap();
    let deployment: serde_json::Value = serde_saphyr::from_str(&read("deploy/deployment.yaml")).unwrap();
    let account = rbac
        .iter()
        .find(|document| document["kind"] == "ServiceAccount")
        .expect("rbac.yaml has a ServiceAccount");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    let binding = rbac.iter().find(|document| document["kind"] == "RoleBinding").unwrap();
    assert_eq!(binding["subjects"][0]["name"], account["metadata"]["name"]);
    let image = pod["containers"][0]["image"]
        .as_str()
        .expect("the container names an image");
    assert!(
        read("deploy/Dockerfile").contains(&format!("-t {image} ")),
        "the Dockerfile's build command does not tag {image}"
    );
}

#[test]
fn the_doctor_checks_exactly_what_the_shipped_role_grants() {
    let rbac: Vec<serde_json::Value> = serde_saphyr::from_multiple(&read("deploy/rbac.yaml")).unwrap();
    let role = rbac.iter().find(|document| document["kind"] == "Role").unwrap();
    let mut granted = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let group = rule["apiGroups"][0].as_str().unwrap();
        for resource in rule["resources"].as_array().unwrap() {
            let resource = resource.as_str().unwrap();
            let named = match group {
                "math.workshop.example" => resource.to_string(),
                _ => format!("{resource}.{group}"),
            };
            for verb in rule["verbs"].as_array().unwrap() {
                granted.insert((verb.as_str().unwrap().to_string(), named.clone()));
            }
        }
    }
    let checked: std::collections::BTreeSet<(String, String)> = xtask::doctor::permissions("step04_fermat")
        .into_iter()
        .map(|(verb, resource)| (verb.to_string(), resource.to_string()))
        .collect();
    assert_eq!(checked, granted, "`cargo xtask doctor` and deploy/rbac.yaml disagree");
}
