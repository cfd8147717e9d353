//! `cargo xtask check`: is the attendee's stage done?
//!
//! For one stage of the workbench (`exercises/`): build it, run its unit
//! tests, then run the stage's end-to-end scenarios, the very ones that prove
//! the finished stages in CI, against the attendee's program. Each check is
//! printed with ✓ or ✗, and each ✗ with a hint and the guide section to read
//! (from `exercises/hints.txt`, or from the `todo!` that stopped it).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::catalogue::GUIDES;
use crate::lang::{self, Language};

/// One check and how it went.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    /// Why it failed, in one line (the panic message, or the scenario's error).
    pub why: Option<String>,
}

/// The outcomes of a libtest run (`cargo test` or the e2e harness), from its
/// output: `test path::name ... ok` lines, and the messages of the failures.
pub fn parse_test_output(output: &str) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, result)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        let name = name.trim().rsplit("::").next().unwrap_or_default().to_string();
        let passed = match result.trim() {
            "ok" => true,
            "FAILED" => false,
            _ => continue,
        };
        outcomes.push(Outcome {
            name,
            passed,
            why: None,
        });
    }
    for outcome in outcomes.iter_mut().filter(|outcome| !outcome.passed) {
        outcome.why = failure_message(output, &outcome.name);
    }
    outcomes
}

/// How many tests a libtest output reports as ignored.
pub fn ignored_count(output: &str) -> usize {
    output
        .lines()
        .filter(|line| line.starts_with("test ") && line.trim_end().ends_with("... ignored"))
        .count()
}

/// The first telling line of the failure of `name` in a libtest output.
fn failure_message(output: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    // Unit tests: "thread '…::name' (…) panicked at …:" then the message.
    let panic = lines.iter().position(|line| {
        line.starts_with("thread '") && line.contains(&format!("{name}'")) && line.contains("panicked at")
    });
    if let Some(at) = panic {
        // An assertion's message is followed by what it compared: keep it.
        let message: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|line| !line.trim().is_empty() && !line.starts_with("note:") && !line.starts_with("stack"))
            .take(3)
            .map(|line| line.trim())
            .collect();
        return (!message.is_empty()).then(|| message.join(" "));
    }
    // The e2e harness (libtest-mimic): "---- stage::name ----" then the message.
    let header = lines
        .iter()
        .position(|line| line.starts_with("---- ") && line.contains(&format!("::{name} ")))?;
    let block: Vec<&str> = lines[header + 1..]
        .iter()
        .take_while(|line| !line.starts_with("---- ") && **line != "failures:")
        .copied()
        .collect();
    // The whole message, never cut: what was expected and what was seen.
    let message: Vec<&str> = block
        .iter()
        .take_while(|line| !line.starts_with("--- controller log"))
        .map(|line| line.trim_end())
        .skip_while(|line| line.trim().is_empty())
        .collect();
    let message = message.join("\n").trim_end().to_string();
    if message.is_empty() {
        return None;
    }
    // A controller stopped by an open part says which in its log.
    match block.iter().find_map(|line| line.split_once("not yet implemented: ")) {
        Some((_, part)) if !message.contains("not yet implemented: ") => {
            Some(format!("{message}\n(the controller stopped at {})", part.trim()))
        }
        _ => Some(message),
    }
}

/// The guide sections (`N.M`) to read, lowest first: for each failed
/// outcome, the section it names itself (see [`own_section`]), else its
/// hint's; and the parts still `open`.
pub fn sections_to_read(stage: &str, outcomes: &[&Outcome], hints: &Hints, open: &[String]) -> Vec<String> {
    let short = &stage[..6];
    let named = outcomes.iter().filter_map(|outcome| {
        outcome.why.as_deref().and_then(own_section).or_else(|| {
            hints
                .get(&(short.to_string(), outcome.name.clone()))
                .map(|hint| hint.section.clone())
        })
    });
    let mut sections: Vec<(u32, u32)> = named
        .chain(open.iter().cloned())
        .filter_map(|section| section_key(&section))
        .collect();
    sections.sort();
    sections.dedup();
    sections
        .into_iter()
        .map(|(major, minor)| format!("{major}.{minor}"))
        .collect()
}

/// The section a failure names itself: the open part a `todo!` stopped at
/// ("not yet implemented: 2.4: …", or "stopped at 2.4: …" from a scenario),
/// or "see section 2.4" from a scenario that can tell which part is at
/// fault. It comes before the check's hint, which is about behaviour and
/// would point back at code already written.
fn own_section(why: &str) -> Option<String> {
    let stopped_at = why
        .split_once("not yet implemented: ")
        .or_else(|| why.split_once("stopped at "))
        .and_then(|(_, part)| part.split_once(':'))
        .map(|(section, _)| section.to_string())
        .filter(|section| section_key(section).is_some());
    stopped_at.or_else(|| {
        let (_, rest) = why.split_once("see section ")?;
        let section: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        let section = section.trim_end_matches('.');
        section_key(section).map(|_| section.to_string())
    })
}

/// `2.4` as (2, 4), to order sections.
fn section_key(section: &str) -> Option<(u32, u32)> {
    let (major, minor) = section.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The parts of a stage still open: the sections of the `todo!("N.M: …")`
/// left in its sources, lowest first, each with where it is.
pub fn open_parts(stage_dir: &Path) -> Vec<(String, String)> {
    let mut parts: Vec<((u32, u32), String, String)> = Vec::new();
    let mut files = crate::files_below(stage_dir);
    files.sort();
    for file in files.iter().filter(|file| file.extension().is_some_and(|e| e == "rs")) {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (index, line) in text.lines().enumerate() {
            let Some((_, rest)) = line.split_once("todo!(\"") else {
                continue;
            };
            let Some((section, _)) = rest.split_once(':') else {
                continue;
            };
            if let Some(key) = section_key(section) {
                parts.push((key, section.to_string(), format!("{name}:{}", index + 1)));
            }
        }
    }
    parts.sort();
    parts.dedup_by(|a, b| a.0 == b.0);
    parts.into_iter().map(|(_, section, place)| (section, place)).collect()
}

/// A hint for a failed check: what to look at, and the guide section.
#[derive(Clone, Debug, PartialEq)]
pub struct Hint {
    pub text: String,
    pub section: String,
}

/// Hints by (short stage name, check name).
pub type Hints = BTreeMap<(String, String), Hint>;

/// The hints of `exercises/hints.txt`, by stage and check name.
pub fn read_hints(text: &str) -> Hints {
    let mut hints = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, hint)) = line.split_once(" = ") else {
            continue;
        };
        let Some((stage, check)) = key.split_once(' ') else {
            continue;
        };
        let (text, section) = match hint.rsplit_once(" [") {
            Some((text, section)) => (text, section.trim_end_matches(']')),
            None => (hint, ""),
        };
        hints.insert(
            (stage.to_string(), check.trim().to_string()),
            Hint {
                text: text.to_string(),
                section: section.to_string(),
            },
        );
    }
    hints
}

/// The guide link of section `N.M` in the reader's language:
/// `steps/en/02-status.md#23`, or the Japanese guide's (same anchors).
pub fn section_link(section: &str) -> Option<String> {
    section_link_in(Language::of_reader(), section)
}

/// The guide link of section `N.M` in `language`.
pub fn section_link_in(language: Language, section: &str) -> Option<String> {
    let (major, _) = section.split_once('.')?;
    let guide = GUIDES.get(major.parse::<usize>().ok()?.checked_sub(1)?)?;
    Some(lang::links_for(
        language,
        &format!("{guide}#{}", section.replace('.', "")),
    ))
}

/// `text` with its guide links in the reader's language (see [`lang::links_for`]).
pub fn in_reader_language(text: &str) -> String {
    lang::links_for(Language::of_reader(), text)
}

/// The hints file of `language`, relative to the repository's root.
pub fn hints_file(language: Language) -> &'static str {
    match language {
        Language::English => "exercises/hints.txt",
        Language::Japanese => "exercises/hints.ja.txt",
    }
}

/// The hints in `language`, each missing one taken from the English file.
pub fn load_hints(root: &Path, language: Language) -> std::io::Result<Hints> {
    let mut hints = read_hints(&fs::read_to_string(root.join(hints_file(Language::English)))?);
    if language != Language::English
        && let Ok(text) = fs::read_to_string(root.join(hints_file(language)))
    {
        hints.extend(read_hints(&text));
    }
    Ok(hints)
}

/// What to tell about a failed check: the hint from the file if there is
/// one, and the failure's own message (a `todo!` names its section itself).
pub fn explain(language: Language, stage: &str, outcome: &Outcome, hints: &Hints) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(why) = &outcome.why {
        lines.extend(why.lines().map(|line| lang::links_for(language, line)));
    }
    // A panic or an open part names its own place, and a failure that names
    // its section knows better than the check's hint: the hint would blame
    // the wrong thing, unless it sends the attendee to that same section.
    let why = outcome.why.as_deref().unwrap_or_default();
    let stopped = why.contains("panicked") || why.contains("not yet implemented") || why.contains("stopped at ");
    let own = own_section(why);
    let hint = hints
        .get(&(stage[..6].to_string(), outcome.name.clone()))
        .filter(|hint| !stopped && own.as_ref().is_none_or(|own| *own == hint.section));
    if let Some(hint) = hint {
        let link = section_link_in(language, &hint.section).unwrap_or_default();
        lines.push(match language {
            Language::English => format!("hint: {} (read {link})", hint.text),
            Language::Japanese => format!("ヒント: {}（{link} を参照）", hint.text),
        });
    } else if let Some(own) = own.filter(|_| !stopped && language == Language::Japanese) {
        // The message names its section in English: so does the hint, in Japanese.
        let link = section_link_in(language, &own).unwrap_or_default();
        lines.push(format!("ヒント: この失敗は {own} の内容です（{link} を参照）"));
    }
    lines
}

/// Runs the unit tests of a stage of the workbench (`cargo test --example
/// STAGE`): whether cargo succeeded, and each test's outcome (none when the
/// stage does not compile).
pub fn workbench_unit_tests(stage: &str) -> anyhow::Result<(bool, Vec<Outcome>)> {
    let (succeeded, output) = crate::cargo::output(&["test", "--example", stage, "--no-fail-fast"], &[])?;
    Ok((succeeded, parse_test_output(&output)))
}

/// The newest modification time of any file below `dir`, for `--watch`.
pub fn newest_change(dir: &Path) -> Option<std::time::SystemTime> {
    crate::files_below(dir)
        .iter()
        .filter_map(|file| fs::metadata(file).and_then(|meta| meta.modified()).ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::stage_named;

    #[test]
    fn unit_test_results_and_their_panic_messages_are_read() {
        let output = "running 2 tests
test number::tests::fizz_buzz_calls_zero_fizz_buzz ... FAILED
test number::tests::zero_and_one_are_squares ... ok

failures:

---- number::tests::fizz_buzz_calls_zero_fizz_buzz stdout ----

thread 'number::tests::fizz_buzz_calls_zero_fizz_buzz' (1234) panicked at exercises/step02_status/number.rs:66:5:
not yet implemented: 2.2: FizzBuzz, see steps/en/02-status.md#22
";
        let outcomes = parse_test_output(output);
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert_eq!(outcomes[0].name, "fizz_buzz_calls_zero_fizz_buzz");
        assert!(!outcomes[0].passed);
        assert_eq!(
            outcomes[0].why.as_deref(),
            Some("not yet implemented: 2.2: FizzBuzz, see steps/en/02-status.md#22")
        );
        assert!(outcomes[1].passed && outcomes[1].why.is_none());
    }

    #[test]
    fn an_assertion_comes_with_what_it_compared() {
        let output = "test number::tests::columns ... FAILED

thread 'number::tests::columns' (99) panicked at exercises/step02_status/number.rs:300:9:
assertion `left == right` failed
  left: [\"Value\", \"Age\"]
 right: [\"Value\", \"FizzBuzz\", \"Square\", \"Age\"]
note: run with `RUST_BACKTRACE=1`
";
        let outcomes = parse_test_output(output);
        assert_eq!(
            outcomes[0].why.as_deref(),
            Some(
                "assertion `left == right` failed left: [\"Value\", \"Age\"] right: [\"Value\", \"FizzBuzz\", \"Square\", \"Age\"]"
            )
        );
    }

    #[test]
    fn scenario_results_and_their_errors_are_read() {
        let output = "test step01_crd::numbers_can_be_created ... FAILED

failures:

---- step01_crd::numbers_can_be_created ----
waited 60 s for the controller to log the Number, but saw: …
";
        let outcomes = parse_test_output(output);
        assert_eq!(
            outcomes[0].why.as_deref(),
            Some("waited 60 s for the controller to log the Number, but saw: …")
        );
    }

    #[test]
    fn a_controller_stopped_by_an_open_part_says_which() {
        let output = "---- step02_status::status ----
waited 60 s for fifteen, but saw: status null
--- controller log (last lines) ---
thread 'main' panicked at exercises/step02_status/number.rs:150:5:
not yet implemented: 2.4: compute, compare and write the status, see steps/en/02-status.md#24
";
        assert_eq!(
            failure_message(output, "status").as_deref(),
            Some(
                "waited 60 s for fifteen, but saw: status null\n(the controller stopped at 2.4: compute, \
                 compare and write the status, see steps/en/02-status.md#24)"
            )
        );
    }

    #[test]
    fn a_scenario_message_is_kept_whole_and_a_panic_comes_first() {
        let output = "---- step02_status::the_guide_shows_what_a_real_run_prints ----
waited 20 s for `kubectl get numbers` to print what the guides show, but saw: steps/en/02-status.md shows
NAME      VALUE   FIZZBUZZ
fifteen   15      FizzBuzz
and the cluster printed
NAME      VALUE
fifteen   15
--- controller log (last lines; the whole log: target/e2e-logs/x.log) ---
INFO saw Number
---- step02_status::status ----
the controller panicked: not yet implemented: 2.4: compute, see steps/en/02-status.md#24
  at exercises/step02_status/number.rs:137:5
while waiting for fifteen; saw: status null
";
        let why = failure_message(output, "the_guide_shows_what_a_real_run_prints").unwrap();
        assert_eq!(why.lines().count(), 6, "{why}");
        assert!(why.ends_with("fifteen   15"), "{why}");
        let why = failure_message(output, "status").unwrap();
        assert!(
            why.starts_with("the controller panicked: not yet implemented: 2.4"),
            "{why}"
        );
        assert!(!why.contains("(the controller stopped at"), "{why}");
    }

    #[test]
    fn the_sections_a_failure_names_come_lowest_first() {
        let hints = read_hints("step02 negatives_are_not_squares = … [2.2]\n");
        let failed = |name: &str, why: &str| Outcome {
            name: name.to_string(),
            passed: false,
            why: Some(why.to_string()),
        };
        let outcomes = [
            failed(
                "status",
                "not yet implemented: 2.4: compute, see steps/en/02-status.md#24",
            ),
            failed("negatives_are_not_squares", "assertion failed"),
            failed(
                "scenario",
                "waited (the controller stopped at 2.4: compute, see steps/en/02-status.md#24)",
            ),
        ];
        let outcomes: Vec<&Outcome> = outcomes.iter().collect();
        assert_eq!(
            sections_to_read("step02_status", &outcomes, &hints, &[]),
            ["2.2", "2.4"]
        );
    }

    #[test]
    fn a_failure_that_names_its_section_comes_without_the_hint() {
        let hints = read_hints("step02 retried = error_policy: ask ctx.backoff [2.5]\n");
        let outcome = Outcome {
            name: "retried".to_string(),
            passed: false,
            why: Some("the controller sent no status write at all (see section 2.4)".to_string()),
        };
        assert_eq!(explain(Language::English, "step02_status", &outcome, &hints).len(), 1);
        assert_eq!(
            explain(Language::Japanese, "step02_status", &outcome, &hints)[1],
            "ヒント: この失敗は 2.4 の内容です（steps/ja/02-status.md#24 を参照）"
        );
        assert_eq!(sections_to_read("step02_status", &[&outcome], &hints, &[]), ["2.4"]);
        // A hint for the section the failure names is the right one to show.
        let hints = read_hints("step02 retried = compare before writing [2.4]\n");
        assert_eq!(
            explain(Language::Japanese, "step02_status", &outcome, &hints)[1],
            "ヒント: compare before writing（steps/ja/02-status.md#24 を参照）"
        );
    }

    #[test]
    fn an_open_part_sends_the_attendee_there_not_to_the_hint() {
        let hints = read_hints("step03 plan_keeps = set the update's uid [3.2]\n");
        let outcome = Outcome {
            name: "plan_keeps".to_string(),
            passed: false,
            why: Some("not yet implemented: 3.3: the plan, see steps/en/03-tuple.md#33".to_string()),
        };
        assert_eq!(sections_to_read("step03_tuple", &[&outcome], &hints, &[]), ["3.3"]);
        // A part no unit test covers, still open, comes first when it is lower.
        let open = ["3.4".to_string(), "3.1".to_string()];
        assert_eq!(
            sections_to_read("step03_tuple", &[&outcome], &hints, &open),
            ["3.1", "3.3", "3.4"]
        );
        assert_eq!(explain(Language::English, "step03_tuple", &outcome, &hints).len(), 1);
    }

    #[test]
    fn open_parts_are_read_from_the_todos_left_lowest_first() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("tuple.rs"),
            "fn a() {\n    todo!(\"3.5: status\")\n}\nfn b() {\n    todo!(\"3.4: children\")\n}\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("plan.rs"),
            "// TODO 3.2\nfn p() { todo!(\"3.2: plan\") }\n",
        )
        .unwrap();
        assert_eq!(
            open_parts(dir.path()),
            [
                ("3.2".to_string(), "plan.rs:2".to_string()),
                ("3.4".to_string(), "tuple.rs:5".to_string()),
                ("3.5".to_string(), "tuple.rs:2".to_string())
            ]
        );
    }

    #[test]
    fn a_hint_names_its_guide_section() {
        let hints = read_hints("# comment\nstep02 fizz_buzz_calls_zero_fizz_buzz = 0 % 3 == 0 [2.2]\n");
        let outcome = Outcome {
            name: "fizz_buzz_calls_zero_fizz_buzz".to_string(),
            passed: false,
            why: Some("assertion failed".to_string()),
        };
        assert_eq!(
            explain(Language::English, "step02_status", &outcome, &hints),
            ["assertion failed", "hint: 0 % 3 == 0 (read steps/en/02-status.md#22)"]
        );
        assert_eq!(
            explain(Language::Japanese, "step02_status", &outcome, &hints),
            [
                "assertion failed",
                "ヒント: 0 % 3 == 0（steps/ja/02-status.md#22 を参照）"
            ]
        );
    }

    /// Every hint names a check that exists: a unit test of the stage or
    /// one of its end-to-end scenarios, and a guide section.
    #[test]
    fn every_hint_names_a_real_check_and_section() {
        let root = crate::repository_root();
        let hints = read_hints(&fs::read_to_string(root.join("exercises/hints.txt")).unwrap());
        assert!(!hints.is_empty());
        for ((short, check), hint) in hints {
            let stage = stage_named(&short).unwrap_or_else(|| panic!("no stage {short}"));
            let mut sources = String::new();
            for entry in fs::read_dir(root.join("solutions").join(stage)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|extension| extension == "rs") {
                    sources += &fs::read_to_string(path).unwrap();
                }
            }
            sources += &fs::read_to_string(root.join(format!("tests/e2e/{short}.rs"))).unwrap();
            assert!(
                sources.contains(&format!("fn {check}(")),
                "{short} has no check {check}"
            );
            for language in Language::ALL {
                let link =
                    section_link_in(language, &hint.section).unwrap_or_else(|| panic!("{short} {check}: no section"));
                let (guide, anchor) = link.split_once('#').unwrap();
                let guide_text = fs::read_to_string(root.join(guide)).unwrap();
                assert!(
                    guide_text.contains(&format!("<a id=\"{anchor}\"></a>")),
                    "{link} does not exist"
                );
            }
        }
    }

    /// The Japanese hints are those of the English file, check by check and
    /// section by section, in the same order.
    #[test]
    fn the_japanese_hints_cover_the_same_checks_and_sections() {
        let root = crate::repository_root();
        let keys = |language| -> Vec<(String, String, String)> {
            let text = fs::read_to_string(root.join(hints_file(language))).unwrap();
            let mut keys = Vec::new();
            for line in text
                .lines()
                .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            {
                let hints = read_hints(line);
                let ((stage, check), hint) = hints.into_iter().next().unwrap_or_else(|| panic!("not a hint: {line}"));
                keys.push((stage, check, hint.section));
            }
            keys
        };
        let english = keys(Language::English);
        let japanese = keys(Language::Japanese);
        for key in &english {
            assert!(
                japanese.contains(key),
                "{} has no hint for {key:?}",
                hints_file(Language::Japanese)
            );
        }
        for key in &japanese {
            assert!(
                english.contains(key),
                "{} has a hint for {key:?}, which the English file does not have",
                hints_file(Language::Japanese)
            );
        }
        assert_eq!(
            english, japanese,
            "the two hints files list their checks in different orders"
        );
        let text = fs::read_to_string(root.join(hints_file(Language::Japanese))).unwrap();
        let hints = read_hints(&text);
        for ((stage, check), hint) in &hints {
            assert!(
                hint.text.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
                "{stage} {check}: the Japanese hint is not in Japanese: {}",
                hint.text
            );
        }
    }

    #[test]
    fn a_saved_file_is_a_newer_change() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("stage")).unwrap();
        fs::write(dir.path().join("stage/a.rs"), "old").unwrap();
        let before = newest_change(dir.path()).unwrap();
        let file = fs::File::options()
            .write(true)
            .open(dir.path().join("stage/a.rs"))
            .unwrap();
        file.set_modified(before + std::time::Duration::from_secs(1)).unwrap();
        assert!(newest_change(dir.path()).unwrap() > before);
    }
}
