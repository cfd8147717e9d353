//! The workbench (`exercises/`) and the finished stages (`solutions/`) stay in
//! step with each other and with the guides:
//!
//! - `diff -ruN exercises/stepNN solutions/stepNN` shows only the open parts:
//!   every difference is a numbered TODO of that stage;
//! - every open part fails with a message naming its guide section, and that
//!   section exists;
//! - `diff -ruN solutions/stepNN solutions/stepMM` changes only the files that
//!   the later stage teaches.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use similar::{ChangeTag, TextDiff};

use xtask::catalogue::{GUIDES, STAGES};
use xtask::repository_root as root;

/// Every file below `dir`, as paths relative to it.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    assert!(dir.is_dir(), "{} is not a folder", dir.display());
    xtask::files_below(dir)
        .into_iter()
        .map(|path| path.strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// How many unchanged lines above a change may separate it from the TODO
/// comment that it belongs to (a TODO may open a block that lost lines).
const TODO_REACH: usize = 6;

/// The groups of consecutive changed lines between `old` and `new`, each as
/// the lines of `new` that explain it: the lines it adds, and the
/// `TODO_REACH` lines of `new` just above it.
fn hunks(old: &str, new: &str) -> Vec<Vec<String>> {
    let new_lines: Vec<&str> = new.lines().collect();
    let mut hunks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    // The index in `new` of the next line to come.
    let mut at: usize = 0;
    for change in TextDiff::from_lines(old, new).iter_all_changes() {
        if change.tag() == ChangeTag::Equal {
            hunks.extend(current.take());
            at += 1;
            continue;
        }
        let hunk = current.get_or_insert_with(|| {
            new_lines[at.saturating_sub(TODO_REACH)..at]
                .iter()
                .map(|line| line.to_string())
                .collect()
        });
        if change.tag() == ChangeTag::Insert {
            hunk.push(change.to_string());
            at += 1;
        }
    }
    hunks.extend(current);
    hunks
}

#[test]
fn every_difference_between_a_workbench_and_its_solution_is_an_open_part() {
    for (number, stage) in (1..).zip(STAGES) {
        let exercise = root().join("exercises").join(stage);
        let solution = root().join("solutions").join(stage);
        assert_eq!(
            files(&exercise),
            files(&solution),
            "{stage}: the two folders hold different files"
        );
        let mut open_parts = 0;
        for file in files(&solution) {
            for workbench in hunks(&read(&solution.join(&file)), &read(&exercise.join(&file))) {
                let marker = format!("TODO {number}.");
                assert!(
                    workbench.iter().any(|line| line.contains(&marker)),
                    "exercises/{stage}/{} differs from the solution outside a `{marker}` part:\n{}",
                    file.display(),
                    workbench.concat()
                );
                open_parts += 1;
            }
        }
        assert!(open_parts > 0, "exercises/{stage} is already solved");
    }
}

/// The `N.M` of every `todo!("N.M: …")` in `text`, with the guide link it gives.
fn todos(text: &str) -> Vec<(String, String)> {
    text.match_indices("todo!(\"")
        .map(|(at, prefix)| {
            let message = &text[at + prefix.len()..];
            let message = &message[..message.find('"').expect("an unterminated todo! message")];
            let part = message.split(':').next().unwrap_or_default().to_string();
            let link = message.split("see ").nth(1).unwrap_or_default().to_string();
            (part, link)
        })
        .collect()
}

/// The `N.M` of every `// TODO N.M:` comment in `text`.
fn todo_comments(text: &str) -> Vec<String> {
    text.match_indices("// TODO ")
        .filter_map(|(at, prefix)| {
            let rest = &text[at + prefix.len()..];
            rest.split_once(':').map(|(part, _)| part.to_string())
        })
        .collect()
}

#[test]
fn every_open_part_has_its_guide_section_and_fails_with_a_message_naming_it() {
    for ((number, stage), guide) in (1..).zip(STAGES).zip(GUIDES) {
        let guide_text = read(&root().join(guide));
        let mut parts = BTreeSet::new();
        for file in files(&root().join("exercises").join(stage)) {
            let text = read(&root().join("exercises").join(stage).join(&file));
            for part in todo_comments(&text) {
                let (major, minor) = part.split_once('.').unwrap_or_else(|| panic!("{stage}: `TODO {part}`"));
                assert_eq!(major, number.to_string(), "{stage}: a TODO of another stage: {part}");
                let anchor = format!("{major}{minor}");
                assert!(
                    guide_text.contains(&format!("<a id=\"{anchor}\"></a>")),
                    "{guide} has no section {part} (`<a id=\"{anchor}\"></a>`)"
                );
                parts.insert(minor.parse::<u32>().expect("a numbered part"));
            }
            for (part, link) in todos(&text) {
                assert!(
                    todo_comments(&text).contains(&part),
                    "{stage}: todo!({part}) has no `// TODO {part}:` comment saying what to write"
                );
                // Both guides, so that the panic sends each reader to their own.
                let anchor = part.replace('.', "");
                let japanese = guide.replace("steps/en/", "steps/ja/");
                assert_eq!(
                    link,
                    format!("{guide}#{anchor} · {japanese}#{anchor}"),
                    "{stage}: todo!({part}) links to {link:?}"
                );
            }
        }
        let expected: BTreeSet<u32> = (1..=parts.len() as u32).collect();
        assert_eq!(parts, expected, "{stage}: the open parts are not numbered 1, 2, 3…");
    }
}

/// Which source files each stage may change; every other one stays byte-identical.
const TAUGHT: [(&str, &str, &[&str]); 3] = [
    ("step01_crd", "step02_status", &["main.rs", "number.rs"]),
    ("step02_status", "step03_tuple", &["main.rs"]),
    ("step03_tuple", "step04_fermat", &["main.rs"]),
];

#[test]
fn a_stage_changes_only_the_files_that_it_teaches() {
    for (earlier, later, taught) in TAUGHT {
        let earlier_dir = root().join("solutions").join(earlier);
        let later_dir = root().join("solutions").join(later);
        for file in files(&earlier_dir) {
            let in_later = later_dir.join(&file);
            let is_source = file.extension().is_some_and(|extension| extension == "rs");
            if !is_source || !in_later.exists() || taught.contains(&file.to_str().unwrap_or_default()) {
                continue;
            }
            assert_eq!(
                read(&earlier_dir.join(&file)),
                read(&in_later),
                "solutions/{later}/{} differs from {earlier}'s, but {later} does not teach it",
                file.display()
            );
        }
    }
}
