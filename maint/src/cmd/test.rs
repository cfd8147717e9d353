//! `cargo maint test [-- ARGS]` (also `cargo xtask test`): every test, and the checks the tooling runs itself.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};

use crate::cargo::{self, target_dir, test_result_counts};
use crate::catalogue::STAGES;
use crate::{assets, check, process, repository_root, robustness, say};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Passed on to the test programs after `--`: a name filter (`step03`), `--test-threads=N`…
    #[arg(last = true, value_name = "ARGS", help = say!(
        "after --: passed on to the test programs, as a name filter (`-- step03`)",
        "-- の後: テストプログラムにそのまま渡します（名前で絞るなら `-- step03`）"
    ))]
    args: Vec<String>,
}

/// Builds what the tests need, then runs them all. The end-to-end scenarios
/// start their own control planes (or use an existing cluster, see
/// tests/e2e/main.rs).
pub fn run(options: Options) -> Result<ExitCode> {
    assets::locate_or_build()?;
    // The scenarios run the finished stages as separately built programs,
    // exactly as attendees run them. Building the examples too proves that
    // every workbench compiles as it is handed out.
    cargo::run_sparing_the_workbench(&["build", "--bins", "--examples"])?;
    let built_once = built_once()?;
    // The workbench's unit tests, built now: they run beside the scenarios
    // (below), and a build there would take the scenarios' CPU. Whether they
    // build is that check's to report (or to skip, on an instructor's
    // machine whose workbench has local changes), not this step's.
    let mut workbench_tests = vec!["test", "--no-run"];
    for stage in STAGES {
        workbench_tests.extend(["--example", stage]);
    }
    cargo::output(&workbench_tests, &[])?;
    let report = fresh_report_file()?;
    // The decks render while the tests run: a render mostly waits for Node
    // and Chromium, and the tests' own waits leave room for it.
    let renders = std::thread::spawn(render_decks);
    // So does the check that the workbench is not solved: it runs its unit
    // tests with cargo, which leaves the build folder to others once it has built.
    let unsolved = std::thread::spawn(exercises_are_unsolved);
    let (tests_passed, mut totals) = cargo_test(&options.args, &report)?;
    let filtered = !options.args.is_empty();
    let own_checks = [
        built_once,
        unsolved
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the check of the workbench panicked")))?,
        slides_rendered(renders.join().unwrap_or_else(|_| {
            crate::slides::LANGUAGES
                .into_iter()
                .map(|language| (language, SlideRender::Failed("the render panicked".to_string())))
                .collect()
        })),
        robustness_document_is_current(&report, filtered)?,
    ];
    for tally in &own_checks {
        print!("{}", tally.report);
        for (total, count) in totals.iter_mut().zip(tally.counts) {
            *total += count;
        }
    }
    let [passed, failed, ignored] = totals;
    println!("\ntotal: {passed} passed, {failed} failed, {ignored} skipped");
    Ok(if tests_passed && own_checks.iter().all(|tally| tally.counts[1] == 0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo test --workspace [-- ARGS]`, its output passed through (but for
/// the workbench's warnings, see [`cargo::Messages`]); whether it
/// succeeded, and the passed, failed and ignored counts of its test programs.
fn cargo_test(args: &[String], report: &Path) -> Result<(bool, [u64; 3])> {
    let mut command = cargo::command();
    command.args(["test", "--workspace", cargo::json_messages()]);
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    let mut tested = command
        .env(robustness::REPORT_ENV, report)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let mut totals = [0u64; 3];
    let stdout = tested.stdout.take().context("cargo test has no stdout")?;
    // The workbench's warnings that cargo replays here were counted, in one
    // line, by the build before: no second count.
    let mut messages = cargo::Messages::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(text) = messages.text(&line) {
            print!("{text}");
        }
        if let Some(counts) = test_result_counts(&line) {
            for (total, count) in totals.iter_mut().zip(counts) {
                *total += count;
            }
        }
    }
    Ok((tested.wait()?.success(), totals))
}

/// An empty file for the rows that the scenarios record, in the target folder.
pub fn fresh_report_file() -> Result<PathBuf> {
    let dir = target_dir().join("robustness");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let report = dir.join("report.jsonl");
    std::fs::write(&report, "").with_context(|| format!("cannot write {}", report.display()))?;
    Ok(report)
}

/// ROBUSTNESS.md shows the rows that this run's scenarios recorded (times
/// aside). The run's own rendering is left beside the report for a look.
fn robustness_document_is_current(report: &Path, filtered: bool) -> Result<Tally> {
    let mut tally = Tally::new("check of ROBUSTNESS.md against this run", 1);
    let name = "robustness::the_document_shows_the_rows_of_this_run";
    let rows = robustness::read(report)?;
    if filtered {
        tally.ignored(name, "a filtered run does not record every row");
    } else if rows.is_empty() {
        tally.failed(name, "the scenarios recorded no row");
    } else {
        let rendered = robustness::render(&rows, &assets::kubernetes_version());
        let beside = report.with_file_name(robustness::DOCUMENT);
        std::fs::write(&beside, &rendered)?;
        let committed = std::fs::read_to_string(repository_root().join(robustness::DOCUMENT)).unwrap_or_default();
        if robustness::stable_part(&committed) == robustness::stable_part(&rendered) {
            tally.passed(name, &format!("{} rows", rows.len()));
        } else {
            tally.failed(
                name,
                &format!(
                    "{} is stale: this run recorded other rows (see {}); run `cargo maint robustness`",
                    robustness::DOCUMENT,
                    beside.display()
                ),
            );
        }
    }
    tally.summary();
    Ok(tally)
}

/// Every workbench, as handed out, fails its own unit tests: none is solved
/// already. Skipped (and counted so) when `exercises/` has local changes,
/// as it does on an instructor's machine after trying the exercises.
fn exercises_are_unsolved() -> Result<Tally> {
    let git_status = process::stdout_of(
        Command::new("git")
            .args(["status", "--porcelain", "--", "exercises"])
            .current_dir(repository_root()),
    );
    let skip_because = match git_status {
        Ok(changes) => (!changes.is_empty()).then(|| "exercises/ has local changes".to_string()),
        Err(err) => Some(format!("git cannot tell whether exercises/ has local changes: {err:#}")),
    };
    let mut tally = Tally::new("checks that the workbench is not solved as handed out", STAGES.len());
    for stage in STAGES {
        let name = format!("exercises::{stage}_is_not_solved_as_handed_out");
        if let Some(why) = &skip_because {
            tally.ignored(&name, why);
            continue;
        }
        let (passed, outcomes) = check::workbench_unit_tests(stage)?;
        let failing = outcomes.iter().filter(|outcome| !outcome.passed).count();
        if !passed && failing > 0 {
            tally.passed(&name, &format!("{failing} unit tests fail"));
        } else {
            tally.failed(&name, "every unit test passes, or none ran");
        }
    }
    tally.summary();
    Ok(tally)
}

/// What an attendee builds after `cargo build --bins --examples`. None may
/// build a crate of the stages' build in another way (other features, so
/// another unit): every crate has one set of features whichever target is
/// built (workspace-hack/), and the tests are a package of their own.
const BUILT_AFTER_THE_STAGES: [&[&str]; 5] = [
    &["build", "--bins"],
    &["build", "--example", "step01_crd"],
    &["build", "--package", "xtask", "--bins"],
    &["test", "--no-run", "--example", "step02_status"],
    &["test", "--no-run", "--package", "workshop-tests", "--test", "e2e"],
];

/// Whether the builds of [`BUILT_AFTER_THE_STAGES`] use the stages' own
/// units of every registry crate they share with them. cargo names each
/// unit's files after a hash of its features, profile and dependencies, and
/// reports them even when they are fresh: the check holds whatever is
/// already in the target folder, where "did it compile" would not.
fn built_once() -> Result<Tally> {
    let mut tally = Tally::new(
        "checks that the stages' dependencies are built once",
        BUILT_AFTER_THE_STAGES.len(),
    );
    let stages = cargo_units(&["build", "--bins", "--examples"])?;
    for args in BUILT_AFTER_THE_STAGES {
        let name = format!("cargo::{}_builds_no_dependency_again", args.join("_").replace('-', ""));
        let again = built_again(&stages, &cargo_units(args)?);
        if again.is_empty() {
            tally.passed(&name, "it uses the stages' build of every crate they share");
        } else {
            tally.failed(
                &name,
                &format!(
                    "`cargo {}` builds again, in another way, {}",
                    args.join(" "),
                    again.join(", ")
                ),
            );
        }
    }
    tally.summary();
    Ok(tally)
}

/// The registry crates that `cargo ARGS` builds, each with its units' files.
fn cargo_units(args: &[&str]) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut command = cargo::command();
    command.args(args).arg("--message-format=json").stderr(Stdio::null());
    Ok(units(&process::stdout_of(&mut command)?))
}

/// From cargo's JSON messages: each registry crate (`name@version`) with
/// the files of its units.
fn units(messages: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut units: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for message in messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
    {
        let Some(id) = message["package_id"].as_str().filter(|id| id.starts_with("registry+")) else {
            continue;
        };
        let crate_name = id.rsplit('#').next().unwrap_or(id).to_string();
        let files = message["filenames"].as_array().into_iter().flatten();
        units
            .entry(crate_name)
            .or_default()
            .extend(files.filter_map(|file| file.as_str().map(str::to_string)));
    }
    units
}

/// The crates of `stages` that `later` builds with a unit of its own.
fn built_again(stages: &BTreeMap<String, BTreeSet<String>>, later: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    later
        .iter()
        .filter(|(crate_name, files)| stages.get(*crate_name).is_some_and(|built| !files.is_subset(built)))
        .map(|(crate_name, _)| crate_name.clone())
        .collect()
}

/// Renders both decks in a real browser, side by side: what became of each.
fn render_decks() -> Vec<(&'static str, SlideRender)> {
    let slides = repository_root().join("slides");
    // Each render mostly waits for Node and Chromium to start: two at once
    // take little more than the time of one.
    std::thread::scope(|scope| {
        let renders: Vec<_> = crate::slides::LANGUAGES
            .into_iter()
            .map(|language| (language, scope.spawn(|| render_deck(&slides, language))))
            .collect();
        renders
            .into_iter()
            .map(|(language, render)| {
                let outcome = render
                    .join()
                    .unwrap_or_else(|_| SlideRender::Failed("the render panicked".to_string()));
                (language, outcome)
            })
            .collect()
    })
}

/// One image per slide in each deck's render. Reported as ignored, with the
/// reason, where Marp, a browser or (for the Japanese deck) a Japanese font
/// is missing.
fn slides_rendered(outcomes: Vec<(&str, SlideRender)>) -> Tally {
    let mut tally = Tally::new("slide renders", outcomes.len());
    for (language, outcome) in outcomes {
        let name = format!("slides::{language}_renders_one_image_per_slide");
        match outcome {
            SlideRender::Missing(why) => tally.ignored(&name, &why),
            SlideRender::Rendered { images, slides } if images == slides => {
                tally.passed(&name, &format!("{images} slides"));
            }
            SlideRender::Rendered { images, slides } => {
                tally.failed(&name, &format!("{images} images for {slides} slides"));
            }
            SlideRender::Failed(why) => tally.failed(&name, &why),
        }
    }
    tally.summary();
    tally
}

/// What became of one deck's render.
enum SlideRender {
    /// Something the render needs is missing here: why, and the fix.
    Missing(String),
    Rendered {
        images: usize,
        slides: usize,
    },
    Failed(String),
}

/// The PNGs only: they prove that the deck renders in a real browser, one
/// image per slide. HTML and PDF, which `cargo maint slides` adds, cost as
/// much again (a Node and a browser start each) and CI renders them there.
fn render_deck(slides: &Path, language: &str) -> SlideRender {
    if let Some(why) = crate::slides::missing_for(slides, language) {
        return SlideRender::Missing(why);
    }
    let rendered = (|| -> Result<SlideRender> {
        let out = tempfile::tempdir()?;
        let expected = crate::slides::slide_count(&std::fs::read_to_string(slides.join(format!("{language}.md")))?);
        let images = crate::slides::render(slides, language, out.path(), &[crate::slides::Format::Png])?;
        Ok(SlideRender::Rendered {
            images,
            slides: expected,
        })
    })();
    rendered.unwrap_or_else(|err| SlideRender::Failed(format!("{err:#}")))
}

/// Results of checks that `cargo xtask test` runs itself, written as libtest
/// writes its own, so that they are read and added up the same way. Printed
/// after the test programs' output, whatever thread ran the checks.
struct Tally {
    counts: [u64; 3],
    report: String,
}

impl Tally {
    fn new(what: &str, count: usize) -> Tally {
        Tally {
            counts: [0; 3],
            report: format!("\nrunning {count} {what}\n"),
        }
    }

    fn passed(&mut self, name: &str, detail: &str) {
        self.report += &format!("test {name} ... ok ({detail})\n");
        self.counts[0] += 1;
    }

    fn failed(&mut self, name: &str, why: &str) {
        self.report += &format!("test {name} ... FAILED: {why}\n");
        self.counts[1] += 1;
    }

    fn ignored(&mut self, name: &str, why: &str) {
        self.report += &format!("test {name} ... ignored, {why}\n");
        self.counts[2] += 1;
    }

    fn summary(&mut self) {
        let [passed, failed, ignored] = self.counts;
        let verdict = if failed == 0 { "ok" } else { "FAILED" };
        self.report += &format!(
            "\ntest result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; 0 filtered out\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_built_in_another_way_is_named_and_a_new_one_is_not() {
        let message = |id: &str, file: &str| {
            format!(r#"{{"reason":"compiler-artifact","package_id":"{id}","filenames":["{file}"],"fresh":true}}"#)
        };
        let registry = "registry+https://github.com/rust-lang/crates.io-index#";
        let stages = units(
            &[
                message(&format!("{registry}tokio@1.54.1"), "/t/libtokio-aaaa.rlib"),
                message(&format!("{registry}serde@1.0.229"), "/t/libserde-bbbb.rlib"),
                message("path+file:///w/kit#0.1.0", "/t/libkit-cccc.rlib"),
                r#"{"reason":"build-finished","success":true}"#.to_string(),
            ]
            .join("\n"),
        );
        let later = units(
            &[
                message(&format!("{registry}tokio@1.54.1"), "/t/libtokio-dddd.rlib"),
                message(&format!("{registry}serde@1.0.229"), "/t/libserde-bbbb.rlib"),
                message(&format!("{registry}ctrlc@3.5.3"), "/t/libctrlc-eeee.rlib"),
                message("path+file:///w/kit#0.1.0", "/t/libkit-ffff.rlib"),
            ]
            .join("\n"),
        );
        assert_eq!(built_again(&stages, &later), ["tokio@1.54.1"]);
    }
}
