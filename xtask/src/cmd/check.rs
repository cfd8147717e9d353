//! `cargo xtask check [STAGE] [--all] [--watch]`: is the attendee's stage
//! done? Builds the stage of the workbench, runs its unit tests, then its
//! lesson's end-to-end scenarios on a warm local plane; prints each check
//! with ✓ or ✗, and for a ✗ the hint and the guide section to read.

use std::ffi::OsString;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};

use crate::cargo::{self, target_dir};
use crate::catalogue::{GUIDES, STAGES};
use crate::check::{self, Hints, Outcome};
use crate::lang::Language;
use crate::{assets, control_plane, planes, repository_root, say};

#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(value_parser = super::stage_argument, help = say!(
        "the stage to check (step01…step04, or 1…4); without one, the unit tests of every stage",
        "チェックする段階（step01〜step04、または 1〜4）。省略すると全段階のユニットテストだけ"
    ))]
    stage: Option<&'static str>,
    #[arg(long, help = say!(
        "also the robustness, outage and load scenarios, with CI's deadlines",
        "頑健性・障害・負荷のシナリオも、CI と同じ待ち時間で実行"
    ))]
    all: bool,
    #[arg(long, help = say!(
        "check again each time a file in exercises/ is saved",
        "exercises/ のファイルを保存するたびにもう一度チェック"
    ))]
    watch: bool,
}

pub fn run(options: Options) -> Result<ExitCode> {
    let exercises = repository_root().join("exercises");
    loop {
        let done = match options.stage {
            Some(stage) => check_stage(stage, options.all)?,
            None => check_progress()?,
        };
        if !options.watch {
            return Ok(if done { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        println!(
            "\n{}",
            say!(
                "Watching exercises/ for changes: save a file to check again, Ctrl-C to stop.",
                "exercises/ の変更を監視しています。ファイルを保存するともう一度チェックします。止めるときは Ctrl-C。"
            )
        );
        let seen = check::newest_change(&exercises);
        while check::newest_change(&exercises) == seen {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        println!();
    }
}

/// How long a lesson scenario waits for the cluster before it fails: a
/// finished stage settles in a few seconds on the warm plane, so a check
/// that is red says so in well under half a minute. `--all` waits as CI does.
const LESSON_DEADLINE_SECS: &str = "15";

/// Checks one stage of the workbench; returns whether every check passed.
fn check_stage(stage: &str, all: bool) -> Result<bool> {
    let root = repository_root();
    println!(
        "{}",
        say!(
            "Checking {}",
            "{} をチェックします",
            root.join("exercises").join(stage).display()
        )
    );
    let hints = check::load_hints(&root, Language::of_reader())
        .with_context(|| format!("cannot read {}", check::hints_file(Language::English)))?;
    if !compiles(stage)? {
        return Ok(false);
    }
    let mut outcomes = unit_tests(stage, &hints)?;
    let unit_passed = outcomes.iter().all(|outcome| outcome.passed);
    let scenarios = if unit_passed {
        run_lesson_scenarios(stage, all)?.map(|output| scenario_outcomes(stage, &output, &hints))
    } else {
        println!(
            "  - {}",
            say!(
                "end-to-end scenarios: they run once the unit tests pass.",
                "エンドツーエンドのシナリオ: ユニットテストがすべて通ってから実行します。"
            )
        );
        None
    };
    let scenarios_passed = scenarios.as_ref().is_some_and(|ran| ran.all_passed);
    let beyond_lesson = scenarios.as_ref().map_or(0, |ran| ran.beyond_lesson);
    outcomes.extend(scenarios.into_iter().flat_map(|ran| ran.outcomes));
    print_count(&outcomes, unit_passed);
    let failures: Vec<&Outcome> = outcomes.iter().filter(|outcome| !outcome.passed).collect();
    if !failures.is_empty() || !scenarios_passed {
        point_to_next_section(stage, &failures, &hints);
        return Ok(false);
    }
    print_stage_done(stage, all, beyond_lesson)?;
    Ok(true)
}

/// Builds the stage; prints its first errors when it does not compile.
fn compiles(stage: &str) -> Result<bool> {
    let (built, output) = cargo::output(&["build", "--example", stage], &[])?;
    if built {
        println!("  ✓ {}", say!("it compiles", "コンパイルできる"));
        return Ok(true);
    }
    println!("  ✗ {}", say!("it compiles", "コンパイルできる"));
    let errors: Vec<&str> = output
        .lines()
        .skip_while(|line| !line.starts_with("error"))
        .take(25)
        .collect();
    println!("      {}", errors.join("\n      "));
    println!(
        "\n{}",
        say!(
            "Fix the first error, then check again.",
            "最初のエラーを直してから、もう一度チェックしてください。"
        )
    );
    Ok(false)
}

/// Runs the stage's unit tests and prints a line for each.
fn unit_tests(stage: &str, hints: &Hints) -> Result<Vec<Outcome>> {
    let (_, mut unit) = check::workbench_unit_tests(stage)?;
    // The tests run in parallel: sorted, the lines stay in place from check to check.
    unit.sort_by(|a, b| a.name.cmp(&b.name));
    for outcome in &unit {
        print_outcome(stage, &say!("unit", "ユニットテスト"), outcome, hints);
    }
    Ok(unit)
}

/// Runs the stage's end-to-end scenarios (the lesson's, or all with
/// `--all`) on the checker's warm plane, or on the current kubeconfig
/// context where there are no local control-plane binaries; their output,
/// or `None` when no cluster can run them.
fn run_lesson_scenarios(stage: &str, all: bool) -> Result<Option<String>> {
    // The scenarios run programs by name: build the other stages too (a
    // scenario of stage 1 runs all four), ignoring a stage that is mid-edit.
    let _ = cargo::output(&["build", "--examples"], &[]);
    let examples = target_dir().join("debug").join("examples");
    let mut env: Vec<(&str, OsString)> = vec![("E2E_PROGRAM_DIR", examples.clone().into_os_string())];
    if !all {
        env.push(("E2E_SCOPE", "lesson".into()));
        env.push(("E2E_DEADLINE_SECS", LESSON_DEADLINE_SECS.into()));
    }
    if let Some(assets) = assets::locate() {
        let started = std::time::Instant::now();
        let crds = cargo::stage_crds(&examples.join(stage))?;
        let (dir, started_as) = planes::warm_checker_plane(&assets, &crds)?;
        if let Some(why) = started_as {
            println!(
                "  - {}",
                say!(
                    "started the checker's control plane with this stage's CRDs in {:.0} s: {why}.\n    \
                     It stays up for the next checks; `cargo xtask down` stops it.",
                    "この段階の CRD を入れて、チェッカーのコントロールプレーンを {:.0} 秒で起動しました（{why}ため）。\n    \
                     次のチェックでもそのまま使います。止めるときは `cargo xtask down` です。",
                    started.elapsed().as_secs_f64()
                )
            );
        }
        env.push(("E2E_PLANE", dir.into_os_string()));
    } else if cluster_answers() {
        println!(
            "  {}",
            say!(
                "(no local control-plane binaries: the scenarios use your current kubeconfig context)",
                "（ローカルコントロールプレーンのバイナリがないので、シナリオは現在の kubeconfig コンテキストで実行します）"
            )
        );
        env.push(("USE_EXISTING_CLUSTER", "true".into()));
    } else {
        println!(
            "  - {}",
            say!(
                "end-to-end scenarios not run: no cluster answers. Start one with `cargo xtask up` \
                 (or kind, minikube, k3d) and check again.",
                "エンドツーエンドのシナリオは実行していません。応答するクラスターがありません。\
                 `cargo xtask up`（または kind、minikube、k3d）でクラスターを起動して、もう一度チェックしてください。"
            )
        );
        return Ok(None);
    }
    build_scenarios_once();
    // The scenarios wait on the cluster, not on the cores: run them side by side.
    let threads = if all { "--test-threads=6" } else { "--test-threads=8" };
    let filter = format!("{stage}::");
    // A failure shows the last lines of the program's log: its panic, not a
    // backtrace that a RUST_BACKTRACE set for other work would add.
    env.push(("RUST_BACKTRACE", "0".into()));
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(name, value)| (*name, value.as_os_str())).collect();
    let (_, output) = cargo::output(
        &[
            "test",
            "--package",
            "workshop-tests",
            "--test",
            "e2e",
            "--",
            &filter,
            threads,
        ],
        &env,
    )?;
    Ok(Some(output))
}

/// What the scenarios' run told.
struct Scenarios {
    outcomes: Vec<Outcome>,
    /// Every scenario ran, none skipped, and all passed.
    all_passed: bool,
    /// The scenarios that `--all` would add.
    beyond_lesson: usize,
}

/// Reads the scenarios' output and prints a line for each scenario.
/// Builds the end-to-end scenarios, saying so first, when they have never
/// been built: the first check that reaches them compiles them (about
/// 20 s on two cores), which would otherwise pass in silence.
fn build_scenarios_once() {
    let deps = target_dir().join("debug").join("deps");
    let built = std::fs::read_dir(&deps).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().starts_with("e2e-"))
    });
    if !built {
        println!(
            "  - {}",
            say!(
                "building the end-to-end scenarios, once (about 20 s)…",
                "エンドツーエンドのシナリオをビルドしています。初回だけで、20 秒ほどかかります…"
            )
        );
        let _ = cargo::output(
            &["test", "--no-run", "--package", "workshop-tests", "--test", "e2e"],
            &[],
        );
    }
}

fn scenario_outcomes(stage: &str, output: &str, hints: &Hints) -> Scenarios {
    let mut outcomes = check::parse_test_output(output);
    if outcomes.is_empty() {
        println!(
            "  ✗ {}",
            say!(
                "the end-to-end scenarios did not run:",
                "エンドツーエンドのシナリオを実行できませんでした:"
            )
        );
        println!(
            "      {}",
            control_plane::last_lines(output, 5).replace('\n', "\n      ")
        );
    }
    print_scenarios(stage, &outcomes, hints);
    let skipped = check::ignored_count(output);
    if skipped > 0 {
        println!(
            "  - {}",
            say!(
                "{skipped} scenarios skipped: they need the local control plane \
                 (`cargo xtask build` builds it once), not counted either way",
                "{skipped} 個のシナリオを飛ばしました。ローカルコントロールプレーンが必要です\
                 （`cargo xtask build` で一度だけビルドします）。成功にも失敗にも数えません"
            )
        );
    }
    let beyond_lesson = output
        .lines()
        .find_map(|line| {
            line.strip_prefix("beyond the lesson: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let all_passed = !outcomes.is_empty() && skipped == 0 && outcomes.iter().all(|outcome| outcome.passed);
    if outcomes.is_empty() {
        outcomes.push(Outcome {
            name: "end to end".to_string(),
            passed: false,
            why: None,
        });
    }
    Scenarios {
        outcomes,
        all_passed,
        beyond_lesson,
    }
}

/// "N of M checks pass.", the build ("it compiles", which passed to get
/// here) counted among them as the list shows it.
fn print_count(outcomes: &[Outcome], unit_passed: bool) {
    let passed = outcomes.iter().filter(|outcome| outcome.passed).count() + 1;
    let total = outcomes.len() + 1;
    let later = if unit_passed {
        String::new()
    } else {
        say!(
            " (the end-to-end scenarios come once the unit tests pass)",
            "（エンドツーエンドのシナリオは、ユニットテストがすべて通ってから実行します）"
        )
    };
    println!(
        "\n{}",
        if passed == total {
            say!(
                "{passed} of {total} checks pass{later}.",
                "{total} 個のチェックがすべて通りました。"
            )
        } else {
            say!(
                "{passed} of {total} checks pass{later}.",
                "{total} 個のチェックのうち {passed} 個が通りました{later}。"
            )
        }
    );
}

/// The parts still open and the guide section to read next.
fn point_to_next_section(stage: &str, failures: &[&Outcome], hints: &Hints) {
    // The parts with a todo! left count too: a part that no unit test
    // covers is still the next one to write.
    let open = check::open_parts(&repository_root().join("exercises").join(stage));
    if !open.is_empty() {
        let listed: Vec<String> = open
            .iter()
            .map(|(section, place)| {
                say!(
                    "{section} (exercises/{stage}/{place})",
                    "{section}（exercises/{stage}/{place}）"
                )
            })
            .collect();
        println!(
            "{}",
            say!(
                "Parts still open (a todo! is left): {}",
                "まだ書いていない部分（todo! が残っています）: {}",
                listed.join(say!(", ", "、").as_str())
            )
        );
    }
    let open: Vec<String> = open.into_iter().map(|(section, _)| section).collect();
    let sections = check::sections_to_read(stage, failures, hints, &open);
    if let Some(link) = sections.first().and_then(|section| check::section_link(section)) {
        println!("{}", say!("Next: {link}", "次に読む節: {link}"));
    }
}

/// "Stage N done", and what comes next.
fn print_stage_done(stage: &str, all: bool, beyond_lesson: usize) -> Result<()> {
    let scope = if all || beyond_lesson == 0 {
        say!(
            "its unit tests and all its end-to-end scenarios pass",
            "ユニットテストとエンドツーエンドのシナリオがすべて通りました"
        )
    } else if beyond_lesson == 1 {
        say!(
            "its unit tests and its lesson's scenarios pass (`--all` adds 1 robustness, outage or load scenario)",
            "ユニットテストと、この段階の内容を確かめるシナリオが通りました（`--all` で頑健性・障害・負荷の\
             シナリオ 1 個が加わります）"
        )
    } else {
        say!(
            "its unit tests and its lesson's scenarios pass (`--all` adds {beyond_lesson} robustness, \
             outage and load scenarios)",
            "ユニットテストと、この段階の内容を確かめるシナリオが通りました（`--all` で頑健性・障害・負荷の\
             シナリオ {beyond_lesson} 個が加わります）"
        )
    };
    let number = STAGES.iter().position(|s| *s == stage).unwrap_or_default() + 1;
    if let Some(guide) = GUIDES.get(number) {
        let guide = check::in_reader_language(guide);
        println!(
            "{}",
            say!(
                "Stage {number} done: {scope}. Next: {guide}",
                "段階 {number} 完了: {scope}。次は {guide}"
            )
        );
        return Ok(());
    }
    println!(
        "{}",
        say!("Stage {number} done: {scope}.", "段階 {number} 完了: {scope}。")
    );
    let open = stages_with_failing_unit_tests(stage)?;
    if open.is_empty() {
        println!(
            "{}",
            say!(
                "All four stages done: the cluster decides Fermat's theorem with your code.",
                "4 つの段階がすべて完了: 自分のコードで、クラスターがフェルマーの定理を判定します。"
            )
        );
    } else {
        println!(
            "{}",
            say!(
                "Still open: {} (`cargo xtask check` shows each stage's progress).",
                "まだ終わっていない段階: {}（`cargo xtask check` で各段階の進み具合を表示します）。",
                open.join(", ")
            )
        );
    }
    Ok(())
}

/// Prints one check's line, and what to do about it if it failed.
fn print_outcome(stage: &str, kind: &str, outcome: &check::Outcome, hints: &check::Hints) {
    let mark = if outcome.passed { "✓" } else { "✗" };
    println!("  {mark} {kind}: {}", outcome.name.replace('_', " "));
    if !outcome.passed {
        for line in check::explain(crate::lang::Language::of_reader(), stage, outcome, hints) {
            println!("      {line}");
        }
    }
}

/// Prints the scenarios' lines; a panic that stopped several of them is
/// told in full once, then named.
fn print_scenarios(stage: &str, scenarios: &[check::Outcome], hints: &check::Hints) {
    let mut panics_told: Vec<String> = Vec::new();
    for outcome in scenarios {
        let panic = outcome
            .why
            .as_deref()
            .filter(|why| why.starts_with("the controller panicked"))
            .map(|why| why.lines().take(2).collect::<Vec<_>>().join("\n"));
        match panic {
            Some(panic) if panics_told.contains(&panic) => {
                println!("  ✗ {}: {}", end_to_end(), outcome.name.replace('_', " "));
                println!(
                    "      {}",
                    say!("the same panic as above", "上と同じ panic で止まりました")
                );
            }
            _ => {
                print_outcome(stage, &end_to_end(), outcome, hints);
                panics_told.extend(panic);
            }
        }
    }
}

/// The label of an end-to-end scenario's line.
fn end_to_end() -> String {
    say!("end to end", "エンドツーエンド")
}

/// The stages other than `checked` whose unit tests do not all pass yet.
fn stages_with_failing_unit_tests(checked: &str) -> Result<Vec<String>> {
    let mut open = Vec::new();
    for stage in STAGES.iter().filter(|stage| **stage != checked) {
        let (built, outcomes) = check::workbench_unit_tests(stage)?;
        let failing = outcomes.iter().filter(|outcome| !outcome.passed).count();
        if !built && outcomes.is_empty() {
            open.push(say!("{stage} does not compile", "{stage} はコンパイルできない"));
        } else if failing > 0 {
            open.push(say!(
                "{stage} fails {failing} unit tests",
                "{stage} はユニットテストが {failing} 個失敗"
            ));
        }
    }
    Ok(open)
}

/// Whether the current kubeconfig context answers.
fn cluster_answers() -> bool {
    Command::new("kubectl")
        .args(["get", "--raw=/readyz", "--request-timeout=5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Progress over the four stages: their unit tests only (quick).
fn check_progress() -> Result<bool> {
    println!(
        "{}\n",
        say!(
            "Progress (unit tests; `cargo xtask check STAGE` also runs the end-to-end scenarios):",
            "進み具合（ユニットテスト。`cargo xtask check STAGE` ならエンドツーエンドのシナリオも実行します）:"
        )
    );
    let mut all_done = true;
    for stage in STAGES {
        let (built, outcomes) = check::workbench_unit_tests(stage)?;
        let passed = outcomes.iter().filter(|outcome| outcome.passed).count();
        let done = built && passed == outcomes.len() && !outcomes.is_empty();
        all_done &= done;
        let total = outcomes.len();
        let mark = if done { "✓" } else { "✗" };
        let state = if !built && outcomes.is_empty() {
            say!("✗ does not compile", "✗ コンパイルできない")
        } else {
            say!(
                "{mark} {passed} of {total} unit tests pass",
                "{mark} ユニットテスト {total} 個のうち {passed} 個が通る"
            )
        };
        println!("  {stage:<14} {state}");
    }
    Ok(all_done)
}
