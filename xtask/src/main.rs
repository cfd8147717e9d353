//! `cargo xtask`: the workshop's tooling.
//!
//! ```text
//! cargo xtask up       start a local control plane in the background and print how to use it
//! cargo xtask down     stop it and remove its files
//! cargo xtask reset    delete the workshop's CRDs and objects from the current cluster: a clean slate
//! cargo xtask check [STAGE] [--all] [--watch]
//!                      check your workbench (exercises/): build, unit tests, the lesson's end-to-end
//!                      scenarios on a warm local plane; `--all` adds the robustness and outage ones
//! cargo xtask prepare  the night before: fetch and build everything, so the day needs no network
//! cargo xtask slides   render the slides (English and Japanese) to slides/out: HTML, PDF, PNGs
//! cargo xtask doctor [STAGE]
//!                      is this machine ready? each check with ✓, ! or ✗ and the fix
//! cargo xtask guides   write the code blocks of the guides (steps/) again from the code
//! cargo xtask build    build (once) or find the control-plane binaries and print their folder;
//!                      `--cross` also builds them for macOS (darwin/arm64, darwin/amd64)
//! cargo xtask test     run every test: unit tests, then end-to-end scenarios on real control planes
//! cargo xtask robustness
//!                      run the end-to-end scenarios and write ROBUSTNESS.md from the rows they record
//! cargo xtask tree [--namespace NS] [--once [--wait-settled] [--timeout SECONDS]]
//!                      the Fermat → Tuple → Number tree of a namespace, live; `--once` prints it as text
//! cargo xtask macos   type-check every crate and target for macOS (Apple silicon and Intel), with Zig
//!                      as the C compiler (fetched from PyPI once); linking needs Apple's SDK
//! cargo xtask soak [--faults N] [--seed S]
//!                      the finished controller under N random faults (API server, etcd, controller
//!                      killed, laptop sleep) while Fermats change; writes its section of ROBUSTNESS.md
//! cargo xtask bench [--smoke | --loop | --size K --runs N --release]
//!                      measure the finished controller against the API server's floor (BENCHMARKS.md);
//!                      `--loop`: the attendee's edit-compile-run loop
//! ```
//!
//! `cargo xtask test -- FILTER` passes FILTER on to `cargo test` (for example a stage name).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use xtask::assets::{self, Assets};
use xtask::check;
use xtask::control_plane::{self, ControlPlane, Lifetime};
use xtask::planes;
use xtask::robustness;
use xtask::{files_below, repository_root, say};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if xtask::find_repository_root().is_none() {
        eprintln!(
            "{}",
            say!(
                "error: `cargo xtask` works on the workshop's folder, and none contains this one: \
                 cd into the folder you cloned (the one with README.md and exercises/), then run it again",
                "エラー: `cargo xtask` はワークショップのフォルダーの中で動きます。ここはその中ではありません。\
                 クローンしたフォルダー（README.md と exercises/ があるところ）に cd してから、もう一度実行してください"
            )
        );
        return ExitCode::FAILURE;
    }
    let result = match args.first().map(String::as_str) {
        Some("up") => up(),
        Some("down") => down(),
        Some("reset") => reset(),
        Some("guides") => guides(),
        Some("check") => check(&args[1..]),
        Some("doctor") => doctor(&args[1..]),
        Some("prepare") => prepare(),
        Some("slides") => slides(),
        Some("build") => build(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("robustness") => robustness(),
        Some("bench") => bench(&args[1..]),
        Some("tree") => tree(&args[1..]),
        Some("macos") => macos(),
        Some("soak") => soak(&args[1..]),
        _ => Err(anyhow::anyhow!(
            "usage: cargo xtask up | down | reset | check [STAGE] [--all] [--watch] | doctor [STAGE] | prepare | slides | guides | build [--cross] | test [-- FILTER] | robustness | bench [--smoke | --loop] | tree [--namespace NS] [--once [--wait-settled]] | macos | soak [--faults N] [--seed S]"
        )),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask tree`: the ownership tree of a namespace, live in the
/// terminal, or once as text with `--once`.
fn tree(args: &[String]) -> Result<ExitCode> {
    let mut options = xtask::tree_live::Options {
        namespace: None,
        once: false,
        wait_settled: false,
        timeout: std::time::Duration::from_secs(60),
    };
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--once" => options.once = true,
            "--wait-settled" => options.wait_settled = true,
            "--namespace" | "-n" => {
                let namespace = words
                    .next()
                    .context("--namespace takes a name, as in `--namespace default`")?;
                options.namespace = Some(namespace.clone());
            }
            "--timeout" => {
                let seconds = (words.next())
                    .and_then(|value| value.parse::<u64>().ok())
                    .with_context(|| {
                        say!(
                            "--timeout takes a number of seconds, as in `--timeout 120`",
                            "--timeout には秒数を指定します（例: `--timeout 120`）"
                        )
                    })?;
                options.timeout = std::time::Duration::from_secs(seconds);
            }
            other => bail!(
                "{}",
                say!(
                    "`cargo xtask tree` does not know `{other}`: it takes --namespace NS, --once, --wait-settled and --timeout SECONDS",
                    "`cargo xtask tree` に `{other}` というオプションはありません。指定できるのは --namespace NS、--once、--wait-settled、--timeout SECONDS です"
                )
            ),
        }
    }
    if options.wait_settled && !options.once {
        bail!(
            "{}",
            say!(
                "--wait-settled goes with --once: the live tree shows settling as it happens",
                "--wait-settled は --once と一緒に使います。リアルタイムのツリーでは落ち着いていく様子がそのまま見えます"
            )
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(xtask::tree_live::run(options))?;
    Ok(ExitCode::SUCCESS)
}

fn up() -> Result<ExitCode> {
    let dir = planes::attendee_dir()?;
    let assets = assets::locate_or_build()?;
    match planes::find(&assets, &dir) {
        planes::Found::Running => {
            let who = planes::started_by(&dir).unwrap_or_else(|| say!("started earlier", "以前に起動"));
            eprintln!(
                "{}",
                say!(
                    "A local control plane is already running in {} ({who}): this shell can use it.\n\
                     To run a second one beside it, give it a folder of its own:\n\
                     \n    MATH_CONTROLLER_CLUSTER=/tmp/my-plane cargo xtask up\n",
                    "ローカルコントロールプレーンは {} ですでに動いています（{who}）。このシェルからそのまま使えます。\n\
                     もう 1 つ並べて動かすときは、専用のフォルダーを指定します。\n\
                     \n    MATH_CONTROLLER_CLUSTER=/tmp/my-plane cargo xtask up\n",
                    dir.display()
                )
            );
            print_usage(&dir, &assets, None);
            return Ok(ExitCode::SUCCESS);
        }
        // Part of it died (a crash, a killed process, a reboot): start over.
        planes::Found::Broken { running, recorded } => eprintln!(
            "{}",
            say!(
                "The local control plane in {} does not answer ({} of its {recorded} processes run): \
                 starting a new one. The objects of the old one are lost.",
                "{} のローカルコントロールプレーンが応答しません（{recorded} 個のプロセスのうち {} 個が動いています）。\
                 新しく起動し直します。古いほうのオブジェクトは失われます。",
                dir.display(),
                running.len()
            )
        ),
        planes::Found::Nothing => {}
    }
    eprintln!(
        "{}",
        say!(
            "Starting etcd, kube-apiserver and kube-controller-manager in {}…",
            "{} で etcd、kube-apiserver、kube-controller-manager を起動しています…",
            dir.display()
        )
    );
    let server = planes::start(&assets, &dir, None)?;
    print_usage(&dir, &assets, Some(&server));
    Ok(ExitCode::SUCCESS)
}

fn print_usage(dir: &std::path::Path, assets: &Assets, server: Option<&str>) {
    if let Some(server) = server {
        println!(
            "{}",
            say!(
                "The local control plane is running: Kubernetes {}, etcd {}, API server at {server}.",
                "ローカルコントロールプレーンが動いています: Kubernetes {}、etcd {}、API サーバーは {server}。",
                assets::kubernetes_version(),
                assets::etcd_version()
            )
        );
    }
    println!(
        "{}",
        say!(
            "Use it from this shell:\n\
             \n    export KUBECONFIG={}\n    export PATH=\"{}:$PATH\"   # a kubectl of the same version\n\
             \nThen install a stage's CRDs and run the stage, for example:\n\
             \n    cargo run --example step01_crd -- crd | kubectl apply --server-side -f -\n    cargo run --example step01_crd\n\
             \nIt has no nodes, so Pods never run; custom resources, controllers and garbage collection all work.\n\
             Stop it with `cargo xtask down`.",
            "使うシェルで次の 2 行を実行してください。\n\
             \n    export KUBECONFIG={}\n    export PATH=\"{}:$PATH\"   # 同じバージョンの kubectl\n\
             \nそれから段階の CRD をインストールして、その段階を実行します。たとえば:\n\
             \n    cargo run --example step01_crd -- crd | kubectl apply --server-side -f -\n    cargo run --example step01_crd\n\
             \nノードがないので Pod は動きません。カスタムリソース、コントローラー、ガベージコレクションはすべて動きます。\n\
             止めるときは `cargo xtask down` です。",
            dir.join("kubeconfig").display(),
            assets.dir.display()
        )
    );
}

fn down() -> Result<ExitCode> {
    let dir = planes::attendee_dir()?;
    let stopped = planes::stop(&dir)?;
    // The checker's plane goes with the usual one, not with a second one.
    let second = std::env::var_os("MATH_CONTROLLER_CLUSTER").is_some();
    let checker = !second && planes::stop(&planes::checker_dir()?)?;
    if stopped {
        println!(
            "{}",
            say!(
                "Stopped the local control plane and removed its files, objects included: \
                 the next `cargo xtask up` starts empty.",
                "ローカルコントロールプレーンを止め、オブジェクトも含めてそのファイルを削除しました。\
                 次の `cargo xtask up` は空の状態から始まります。"
            )
        );
    } else {
        println!(
            "{}",
            say!(
                "No local control plane is running in {}.",
                "{} で動いているローカルコントロールプレーンはありません。",
                dir.display()
            )
        );
    }
    if checker {
        println!(
            "{}",
            say!(
                "Stopped the checker's plane too (`cargo xtask check` starts it again when needed).",
                "チェッカーのコントロールプレーンも止めました（必要になれば `cargo xtask check` がまた起動します）。"
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The workshop's CRDs, as `kubectl delete crd` names them.
const WORKSHOP_CRDS: [&str; 3] = [
    "numbers.math.workshop.example",
    "tuples.math.workshop.example",
    "fermats.math.workshop.example",
];

/// A clean slate between stages: deletes the workshop's CRDs from the cluster
/// of the current kubeconfig context, and with them every Number, Tuple and
/// Fermat in every namespace. Nothing else is touched.
fn reset() -> Result<ExitCode> {
    let kubectl = || Command::new("kubectl");
    let context = match kubectl().args(["config", "current-context"]).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_string(),
        Ok(output) => bail!(
            "{}",
            say!(
                "kubectl has no current context ({}); run the `export` lines that `cargo xtask up` printed, \
                 or choose a context with `kubectl config use-context`",
                "kubectl に現在のコンテキストがありません（{}）。`cargo xtask up` が表示した `export` の行を実行するか、\
                 `kubectl config use-context` でコンテキストを選んでください",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        ),
        Err(err) => bail!(
            "{}",
            say!(
                "cannot run kubectl ({err}); run the `export` lines that `cargo xtask up` printed, or install kubectl",
                "kubectl を実行できません（{err}）。`cargo xtask up` が表示した `export` の行を実行するか、kubectl をインストールしてください"
            )
        ),
    };
    let installed = installed_stage();
    println!(
        "{}",
        say!(
            "Deleting every Number, Tuple and Fermat, and their CRDs, from context {context}…",
            "コンテキスト {context} から、すべての Number、Tuple、Fermat とその CRD を削除しています…"
        )
    );
    let deleted = kubectl()
        .args(["delete", "crd", "--ignore-not-found", "--wait=true"])
        .args(WORKSHOP_CRDS)
        .status()
        .context("cannot run kubectl")?;
    if !deleted.success() {
        bail!(
            "{}",
            say!(
                "kubectl could not delete the CRDs (see above)",
                "kubectl が CRD を削除できませんでした（上の出力を参照）"
            )
        );
    }
    // The stage after the one whose CRDs were there (stage 1 after the last).
    let next = match installed {
        Some(index) if index + 1 < check::STAGES.len() => check::STAGES[index + 1],
        _ => check::STAGES[0],
    };
    let which = match installed {
        Some(index) if index + 1 == check::STAGES.len() => say!(
            "Done: stage 4's CRDs were there, the last stage's. To start over with stage 1, install its CRDs:",
            "完了: 最後の段階である段階 4 の CRD が入っていました。段階 1 からやり直すときは、その CRD をインストールします。"
        ),
        Some(index) => say!(
            "Done: stage {}'s CRDs were there. Stage {} comes next; install its CRDs:",
            "完了: 段階 {} の CRD が入っていました。次は段階 {} です。その CRD をインストールします。",
            index + 1,
            index + 2
        ),
        None => say!(
            "Done: no stage's CRDs were there. Install those of the stage you start, as its guide's \"Run it\" \
             shows; for stage 1:",
            "完了: どの段階の CRD も入っていませんでした。始める段階の CRD を、ガイドの「実行する」のとおりに\
             インストールしてください。段階 1 なら次のとおりです。"
        ),
    };
    println!("{which}\n\n    cargo run --example {next} -- crd | kubectl apply --server-side -f -");
    Ok(ExitCode::SUCCESS)
}

/// The stage (0 for step01) whose CRDs the current cluster serves, told by
/// its kinds: Fermat from stage 4, Tuple from 3, Number's status from 2.
fn installed_stage() -> Option<usize> {
    let output = Command::new("kubectl")
        .args(["get", "crd", "--ignore-not-found", "-o"])
        .arg(r#"jsonpath={range .items[*]}{.metadata.name} {.spec.versions[0].subresources.status}{"\n"}{end}"#)
        .args(WORKSHOP_CRDS)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let has = |crd: &str| text.lines().any(|line| line.starts_with(crd));
    if has(WORKSHOP_CRDS[2]) {
        Some(3)
    } else if has(WORKSHOP_CRDS[1]) {
        Some(2)
    } else if text
        .lines()
        .any(|line| line.starts_with(WORKSHOP_CRDS[0]) && line.contains('{'))
    {
        Some(1)
    } else if has(WORKSHOP_CRDS[0]) {
        Some(0)
    } else {
        None
    }
}

/// `cargo xtask check [STAGE] [--all] [--watch]`.
fn check(args: &[String]) -> Result<ExitCode> {
    let watch = args.iter().any(|arg| arg == "--watch");
    let all = args.iter().any(|arg| arg == "--all");
    if let Some(unknown) = args
        .iter()
        .find(|arg| arg.starts_with("--") && !["--watch", "--all"].contains(&arg.as_str()))
    {
        bail!(
            "{}",
            say!(
                "`check` has no option {unknown}: it takes a stage, --all (robustness and outage scenarios too) and --watch",
                "`check` に {unknown} というオプションはありません。指定できるのは段階、--all（頑健性と障害のシナリオも実行）、--watch です"
            )
        );
    }
    let stage = args
        .iter()
        .find(|arg| !arg.starts_with("--"))
        .map(|name| stage_argument(name))
        .transpose()?;
    let exercises = repository_root().join("exercises");
    loop {
        let done = match stage {
            Some(stage) => check_stage(stage, all)?,
            None => check_progress()?,
        };
        if !watch {
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

/// `cargo xtask prepare`: everything the day needs, fetched and built while
/// there is a network, then a local control plane started once to prove it.
/// Afterwards `CARGO_NET_OFFLINE=true` and `GOPROXY=off` change nothing.
fn prepare() -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let step = |what: &str| println!("\n== {what} ({:.0} s so far)", started.elapsed().as_secs_f64());
    step("fetching every crate (cargo fetch)");
    run_cargo(&["fetch"])?;
    step("building the finished stages, the workbench, the tooling and every test");
    run_cargo(&["build", "--workspace", "--bins", "--examples", "--tests"])?;
    // `cargo run --bin` alone uses other features (see `test`).
    run_cargo(&["build", "--bins"])?;
    step("installing the slides' renderer (npm ci in slides/)");
    let npm = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("PUPPETEER_SKIP_DOWNLOAD", "true")
        .current_dir(repository_root().join("slides"))
        .status();
    match npm {
        Ok(status) if status.success() => {}
        // The slides are the instructor's, not the attendee's: go on without them.
        Ok(_) => println!("`npm ci` in slides/ failed (see above): the slides cannot be rendered here"),
        Err(_) => println!("npm is not installed: the slides cannot be rendered here (everything else can)"),
    }
    step("building or finding the control-plane binaries");
    let assets = assets::locate_or_build()?;
    println!("{}", assets.dir.display());
    step("starting a local control plane once, with stage 4's CRDs");
    let dir = tempfile::Builder::new().prefix("math-controller-prepare-").tempdir()?;
    let mut plane = ControlPlane::start(&assets, dir.path().join("plane"), Lifetime::Attached)?;
    let crds = Command::new(target_dir().join("debug").join("step04_fermat"))
        .arg("crd")
        .output()
        .context("cannot run step04_fermat")?;
    plane.install_crds(&String::from_utf8_lossy(&crds.stdout))?;
    plane.start_controller_manager()?;
    println!("it answers at {}", plane.server);
    drop(plane);

    let sizes: Vec<(String, u64)> = [
        ("target/ (builds)", target_dir()),
        ("control-plane binaries", assets.dir.clone()),
        ("cargo's crate cache", cargo_home().join("registry")),
    ]
    .into_iter()
    .map(|(what, dir)| (what.to_string(), disk_usage(&dir)))
    .collect();
    println!(
        "\nReady for a day without network, in {:.0} s:",
        started.elapsed().as_secs_f64()
    );
    for (what, bytes) in sizes {
        println!("  {what:<24} {:>6.1} GiB", bytes as f64 / (1u64 << 30) as f64);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_cargo(args: &[&str]) -> Result<()> {
    let status = cargo()
        .args(args)
        .current_dir(repository_root())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed (see above)", args.join(" "));
    }
    Ok(())
}

/// Where cargo keeps downloaded crates: CARGO_HOME, else ~/.cargo.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_default()
}

/// The bytes of every file below `dir` (0 if it does not exist).
fn disk_usage(dir: &std::path::Path) -> u64 {
    files_below(dir)
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|meta| meta.len())
        .sum()
}

/// `cargo xtask slides`: both languages to slides/out (HTML, PDF, one PNG a slide).
fn slides() -> Result<ExitCode> {
    let slides = repository_root().join("slides");
    let out = slides.join("out");
    for language in xtask::slides::LANGUAGES {
        let count = xtask::slides::render(&slides, language, &out)?;
        println!("slides/out/{language}.html, {language}.pdf and {count} PNGs");
    }
    Ok(ExitCode::SUCCESS)
}

/// Renders both decks in a real browser and checks one image per slide.
/// Reported as ignored, with the reason, where Marp, a browser or (for the
/// Japanese deck) a Japanese font is missing.
fn slides_render() -> Result<Tally> {
    let slides = repository_root().join("slides");
    let mut tally = Tally::new("slide renders", xtask::slides::LANGUAGES.len());
    for language in xtask::slides::LANGUAGES {
        let name = format!("slides::{language}_renders_one_image_per_slide");
        if let Some(why) = xtask::slides::missing_for(&slides, language) {
            tally.ignored(&name, &why);
            continue;
        }
        let out = tempfile::tempdir()?;
        let expected = xtask::slides::slide_count(&std::fs::read_to_string(slides.join(format!("{language}.md")))?);
        match xtask::slides::render(&slides, language, out.path()) {
            Ok(count) if count == expected => tally.passed(&name, &format!("{count} slides")),
            Ok(count) => tally.failed(&name, &format!("{count} images for {expected} slides")),
            Err(err) => tally.failed(&name, &format!("{err:#}")),
        }
    }
    tally.summary();
    Ok(tally)
}

/// Results of checks that `cargo xtask test` runs itself, printed as libtest
/// prints its own, so that they are read and added up the same way.
struct Tally {
    counts: [u64; 3],
}

impl Tally {
    fn new(what: &str, count: usize) -> Tally {
        println!("\nrunning {count} {what}");
        Tally { counts: [0; 3] }
    }

    fn passed(&mut self, name: &str, detail: &str) {
        println!("test {name} ... ok ({detail})");
        self.counts[0] += 1;
    }

    fn failed(&mut self, name: &str, why: &str) {
        println!("test {name} ... FAILED: {why}");
        self.counts[1] += 1;
    }

    fn ignored(&mut self, name: &str, why: &str) {
        println!("test {name} ... ignored, {why}");
        self.counts[2] += 1;
    }

    fn summary(&self) {
        let [passed, failed, ignored] = self.counts;
        let verdict = if failed == 0 { "ok" } else { "FAILED" };
        println!(
            "\ntest result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; 0 filtered out"
        );
    }
}

/// The stage a command line names (`step02`, `2`…), with the fix when it names none.
fn stage_argument(name: &str) -> Result<&'static str> {
    check::stage_named(name).with_context(|| {
        say!(
            "there is no stage {name:?}: name one of step01, step02, step03, step04",
            "段階 {name:?} はありません。step01、step02、step03、step04 のどれかを指定してください"
        )
    })
}

/// `cargo xtask doctor [STAGE]`: fails when anything a stage needs is missing.
fn doctor(args: &[String]) -> Result<ExitCode> {
    let stage = args.first().map(|name| stage_argument(name)).transpose()?;
    println!(
        "{}",
        say!(
            "The workshop in {}:",
            "ワークショップのフォルダー: {}",
            repository_root().display()
        )
    );
    let findings = xtask::doctor::for_repository(&repository_root(), &target_dir()).run(stage);
    for finding in &findings {
        println!("{}", finding.render());
    }
    let failed = findings
        .iter()
        .any(|finding| finding.level == xtask::doctor::Level::Fail);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Where cargo puts what it builds.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target"))
}

/// Runs a cargo command quietly and returns whether it succeeded, and what it printed.
fn cargo_output(args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> Result<(bool, String)> {
    let mut command = cargo();
    command.args(args).current_dir(repository_root());
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().context("cannot run cargo")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// Prints one check's line, and what to do about it if it failed.
fn print_outcome(stage: &str, kind: &str, outcome: &check::Outcome, hints: &check::Hints) {
    let mark = if outcome.passed { "✓" } else { "✗" };
    println!("  {mark} {kind}: {}", outcome.name.replace('_', " "));
    if !outcome.passed {
        for line in check::explain(xtask::lang::Language::of_reader(), stage, outcome, hints) {
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
    let hints = check::load_hints(&root, xtask::lang::Language::of_reader())
        .with_context(|| format!("cannot read {}", check::hints_file(xtask::lang::Language::English)))?;
    let (built, output) = cargo_output(&["build", "--example", stage], &[])?;
    if !built {
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
        return Ok(false);
    }
    println!("  ✓ {}", say!("it compiles", "コンパイルできる"));
    let (_, output) = cargo_output(&["test", "--example", stage, "--no-fail-fast"], &[])?;
    let mut unit = check::parse_test_output(&output);
    // The tests run in parallel: sorted, the lines stay in place from check to check.
    unit.sort_by(|a, b| a.name.cmp(&b.name));
    for outcome in &unit {
        print_outcome(stage, &say!("unit", "ユニットテスト"), outcome, &hints);
    }
    let unit_passed = unit.iter().all(|outcome| outcome.passed);
    let mut outcomes = unit;

    // The scenarios run programs by name: build the other stages too (a
    // scenario of stage 1 runs all four), ignoring a stage that is mid-edit.
    let _ = cargo_output(&["build", "--examples"], &[]);
    let examples = target_dir().join("debug").join("examples");
    let filter = format!("{stage}::");
    let mut env: Vec<(&str, std::ffi::OsString)> = vec![("E2E_PROGRAM_DIR", examples.into_os_string())];
    if !all {
        env.push(("E2E_SCOPE", "lesson".into()));
        env.push(("E2E_DEADLINE_SECS", LESSON_DEADLINE_SECS.into()));
    }
    // The scenarios wait on the cluster, not on the cores: run them side by side.
    let threads = if all { "--test-threads=6" } else { "--test-threads=8" };
    let ran = if !unit_passed {
        println!(
            "  - {}",
            say!(
                "end-to-end scenarios: they run once the unit tests pass.",
                "エンドツーエンドのシナリオ: ユニットテストがすべて通ってから実行します。"
            )
        );
        None
    } else if let Some(assets) = assets::locate() {
        let started = std::time::Instant::now();
        let crds = stage_crds(&target_dir().join("debug").join("examples").join(stage))?;
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
        Some(run_scenarios(&filter, threads, &env)?)
    } else if cluster_answers() {
        println!(
            "  {}",
            say!(
                "(no local control-plane binaries: the scenarios use your current kubeconfig context)",
                "（ローカルコントロールプレーンのバイナリがないので、シナリオは現在の kubeconfig コンテキストで実行します）"
            )
        );
        env.push(("USE_EXISTING_CLUSTER", "true".into()));
        Some(run_scenarios(&filter, threads, &env)?)
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
        None
    };
    let mut scenarios_passed = false;
    let mut beyond_lesson = 0;
    if let Some((_, output)) = ran {
        let scenarios = check::parse_test_output(&output);
        if scenarios.is_empty() {
            println!(
                "  ✗ {}",
                say!(
                    "the end-to-end scenarios did not run:",
                    "エンドツーエンドのシナリオを実行できませんでした:"
                )
            );
            println!(
                "      {}",
                control_plane::last_lines(&output, 5).replace('\n', "\n      ")
            );
            outcomes.push(check::Outcome {
                name: "end to end".to_string(),
                passed: false,
                why: None,
            });
        }
        print_scenarios(stage, &scenarios, &hints);
        let skipped = check::ignored_count(&output);
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
        beyond_lesson = output
            .lines()
            .find_map(|line| {
                line.strip_prefix("beyond the lesson: ")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        scenarios_passed = !scenarios.is_empty() && skipped == 0 && scenarios.iter().all(|outcome| outcome.passed);
        outcomes.extend(scenarios);
    }

    let passed = outcomes.iter().filter(|outcome| outcome.passed).count();
    let total = outcomes.len();
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
    let failures: Vec<&check::Outcome> = outcomes.iter().filter(|outcome| !outcome.passed).collect();
    if !failures.is_empty() || !scenarios_passed {
        // The parts with a todo! left count too: a part that no unit test
        // covers is still the next one to write.
        let open = check::open_parts(&root.join("exercises").join(stage));
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
        let sections = check::sections_to_read(stage, &failures, &hints, &open);
        if let Some(link) = sections.first().and_then(|section| check::section_link(section)) {
            println!("{}", say!("Next: {link}", "次に読む節: {link}"));
        }
        return Ok(false);
    }
    let scope = if all || beyond_lesson == 0 {
        say!(
            "its unit tests and all its end-to-end scenarios pass",
            "ユニットテストとエンドツーエンドのシナリオがすべて通りました"
        )
    } else {
        say!(
            "its unit tests and its lesson's scenarios pass (`--all` adds {beyond_lesson} robustness, \
             outage and load scenarios)",
            "ユニットテストと、この段階の内容を確かめるシナリオが通りました（`--all` で頑健性・障害・負荷の\
             シナリオ {beyond_lesson} 個が加わります）"
        )
    };
    let number = check::STAGES.iter().position(|s| *s == stage).unwrap_or_default() + 1;
    match check::GUIDES.get(number) {
        Some(guide) => {
            let guide = check::in_reader_language(guide);
            println!(
                "{}",
                say!(
                    "Stage {number} done: {scope}. Next: {guide}",
                    "段階 {number} 完了: {scope}。次は {guide}"
                )
            )
        }
        None => {
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
        }
    }
    Ok(true)
}

/// The CRDs that a built stage prints with `crd`.
fn stage_crds(program: &std::path::Path) -> Result<String> {
    let output = Command::new(program)
        .arg("crd")
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !output.status.success() {
        bail!(
            "`{} crd` failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs the end-to-end scenarios whose names contain `filter`.
fn run_scenarios(filter: &str, threads: &str, env: &[(&str, std::ffi::OsString)]) -> Result<(bool, String)> {
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(name, value)| (*name, value.as_os_str())).collect();
    cargo_output(&["test", "--test", "e2e", "--", filter, threads], &env)
}

/// The stages other than `checked` whose unit tests do not all pass yet.
fn stages_with_failing_unit_tests(checked: &str) -> Result<Vec<String>> {
    let mut open = Vec::new();
    for stage in check::STAGES.iter().filter(|stage| **stage != checked) {
        let (built, output) = cargo_output(&["test", "--example", stage, "--no-fail-fast"], &[])?;
        let outcomes = check::parse_test_output(&output);
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
    for stage in check::STAGES {
        let (built, output) = cargo_output(&["test", "--example", stage, "--no-fail-fast"], &[])?;
        let outcomes = check::parse_test_output(&output);
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

fn guides() -> Result<ExitCode> {
    let changed = xtask::guides::write_all(&repository_root())?;
    if changed.is_empty() {
        println!("Every guide already shows the code as it is.");
    }
    for guide in changed {
        println!("wrote {}", guide.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn build(args: &[String]) -> Result<ExitCode> {
    let assets = assets::locate_or_build()?;
    println!("{}", assets.dir.display());
    if args.iter().any(|arg| arg == "--cross") {
        for (goos, goarch) in assets::CROSS_PLATFORMS {
            println!("{}", assets::build_for(goos, goarch)?.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask soak [--faults N] [--seed S]`: outside CI, see soak.rs.
fn soak(args: &[String]) -> Result<ExitCode> {
    let mut faults = 50;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(1);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let value = words.next().and_then(|value| value.parse::<u64>().ok());
        match (word.as_str(), value) {
            ("--faults", Some(value)) => faults = value as usize,
            ("--seed", Some(value)) => seed = value,
            _ => bail!("`cargo xtask soak` takes --faults N and --seed S, as in `--faults 50 --seed 7`"),
        }
    }
    let assets = assets::locate_or_build()?;
    run_cargo(&["build", "--bins"])?;
    let target = target_dir();
    let program = target.join("debug").join("step04_fermat");
    let dir = tempfile::Builder::new().prefix("math-controller-soak-").tempdir()?;
    xtask::cleanup::register_folder(dir.path().to_path_buf());
    let mut plane = ControlPlane::start(&assets, dir.path().join("plane"), Lifetime::Attached)?;
    plane.install_crds(&stage_crds(&program)?)?;
    plane.start_controller_manager()?;
    let log = xtask::soak::fresh_log(&xtask::soak::folder(&target))?;
    eprintln!(
        "soaking with {faults} faults, seed {seed}; the controller logs to {}",
        log.display()
    );
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new()?;
    let outcomes = runtime.block_on(xtask::soak::run(&plane, &program, &log, faults, seed))?;
    let section = xtask::soak::report(&outcomes, seed, started.elapsed().as_secs_f64() / 60.0);
    println!("\n{section}");
    let document = repository_root().join(robustness::DOCUMENT);
    let committed = std::fs::read_to_string(&document).unwrap_or_default();
    let kept = robustness::split_soak(&committed).0.trim_end();
    std::fs::write(&document, format!("{kept}\n\n{}\n\n{section}", robustness::SOAK_MARKER))
        .with_context(|| format!("cannot write {}", document.display()))?;
    println!("wrote {}", document.display());
    let settled = outcomes.iter().all(|outcome| outcome.recovery.is_some());
    Ok(if settled { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `cargo xtask macos`: the workspace type-checked for both kinds of Mac.
fn macos() -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let (zig_dir, zigbuild) = xtask::macos::tools(&xtask::macos::tools_dir()?)?;
    xtask::macos::add_targets()?;
    let targets = xtask::macos::TARGETS.join(" and ");
    eprintln!("type-checking every crate and target for {targets}…");
    let status = xtask::macos::check_command(&repository_root(), &zig_dir, &zigbuild, &xtask::macos::target_dir()?)
        .status()
        .context("cannot run cargo-zigbuild")?;
    if !status.success() {
        bail!("the workspace does not type-check for macOS (see above)");
    }
    println!(
        "every crate and target type-checks for {targets} ({:.0} s); not linked: that needs Apple's SDK",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds what the tests need, then runs them all. The end-to-end scenarios
/// start their own control planes (or use an existing cluster, see
/// tests/e2e/main.rs).
fn test(extra: &[String]) -> Result<ExitCode> {
    assets::locate_or_build()?;
    // The scenarios run the finished stages as separately built programs,
    // exactly as attendees run them. Building the examples too proves that
    // every workbench compiles as it is handed out.
    run_cargo(&["build", "--bins", "--examples"])?;
    // Built with the examples, the stages' dependencies get the features of
    // the dev-dependencies too; `cargo run --bin` alone builds them again
    // without (half a minute): do it now, not in front of the attendee.
    run_cargo(&["build", "--bins"])?;
    let report = fresh_report_file()?;
    let mut tested = cargo()
        .args(["test", "--workspace"])
        .args(extra)
        .env(robustness::REPORT_ENV, &report)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    // Pass the output through, and add up the test binaries' results.
    let mut totals = [0u64; 3];
    let stdout = tested.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(counts) = test_result_counts(&line) {
            for (total, count) in totals.iter_mut().zip(counts) {
                *total += count;
            }
        }
    }
    let status = tested.wait()?;
    let own_checks = [
        exercises_are_unsolved()?,
        slides_render()?,
        robustness_document_is_current(&report, !extra.is_empty())?,
    ];
    for tally in &own_checks {
        for (total, count) in totals.iter_mut().zip(tally.counts) {
            *total += count;
        }
    }
    let [passed, failed, ignored] = totals;
    println!("\ntotal: {passed} passed, {failed} failed, {ignored} skipped");
    Ok(
        if status.success() && own_checks.iter().all(|tally| tally.counts[1] == 0) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// An empty file for the rows that the scenarios record, in the target folder.
fn fresh_report_file() -> Result<PathBuf> {
    let dir = target_dir().join("robustness");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let report = dir.join("report.jsonl");
    std::fs::write(&report, "").with_context(|| format!("cannot write {}", report.display()))?;
    Ok(report)
}

/// ROBUSTNESS.md shows the rows that this run's scenarios recorded (times
/// aside). The run's own rendering is left beside the report for a look.
fn robustness_document_is_current(report: &std::path::Path, filtered: bool) -> Result<Tally> {
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
                    "{} is stale: this run recorded other rows (see {}); run `cargo xtask robustness`",
                    robustness::DOCUMENT,
                    beside.display()
                ),
            );
        }
    }
    tally.summary();
    Ok(tally)
}

/// `cargo xtask robustness`: runs the end-to-end scenarios and writes
/// ROBUSTNESS.md from the rows they record, with this run's times.
fn robustness() -> Result<ExitCode> {
    assets::locate_or_build()?;
    run_cargo(&["build", "--bins", "--examples"])?;
    let report = fresh_report_file()?;
    let status = cargo()
        .args(["test", "--test", "e2e"])
        .env(robustness::REPORT_ENV, &report)
        .current_dir(repository_root())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("some scenarios failed (see above): ROBUSTNESS.md is left as it was");
    }
    let rows = robustness::read(&report)?;
    let document = repository_root().join(robustness::DOCUMENT);
    let committed = std::fs::read_to_string(&document).unwrap_or_default();
    let soak = robustness::split_soak(&committed).1;
    let rendered = robustness::render(&rows, &assets::kubernetes_version());
    let written = if soak.is_empty() {
        rendered
    } else {
        format!("{rendered}\n{soak}")
    };
    std::fs::write(&document, written).with_context(|| format!("cannot write {}", document.display()))?;
    println!("wrote {} ({} rows)", document.display(), rows.len());
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask bench [--smoke]`: the benchmark on a control plane of its
/// own. `--smoke`: one Fermat, one run, the debug build (CI runs it so that
/// the benchmark cannot rot); otherwise the full plan, which also rewrites
/// the figures in BENCHMARKS.md and the plot.
fn bench(args: &[String]) -> Result<ExitCode> {
    if args.iter().any(|arg| arg == "--loop") {
        return attendee_loop();
    }
    // `--size K` (repeatable), `--runs N` and `--release` narrow the full plan, to measure one option quickly.
    let (mut smoke, mut release_only, mut sizes, mut runs) = (false, false, Vec::new(), None);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--smoke" => smoke = true,
            "--release" => release_only = true,
            "--size" | "--runs" => {
                let Some(value) = words
                    .next()
                    .and_then(|value| value.parse::<usize>().ok())
                    .filter(|&v| v > 0)
                else {
                    bail!("{word} takes a whole number above 0, as in `cargo xtask bench --size 30 --runs 1`");
                };
                if word == "--size" {
                    sizes.push(value);
                } else {
                    runs = Some(value);
                }
            }
            other => bail!(
                "`cargo xtask bench` does not know `{other}`: it takes --smoke, --loop, or --size K, --runs N and --release"
            ),
        }
    }
    let assets = assets::locate_or_build()?;
    run_cargo(&["build", "--bins"])?;
    let target = target_dir();
    let mut builds = vec![("debug".to_string(), target.join("debug").join("step04_fermat"))];
    if !smoke || release_only {
        run_cargo(&["build", "--release", "--bin", "step04_fermat"])?;
        builds.push(("release".to_string(), target.join("release").join("step04_fermat")));
    }
    // A narrowed run measures an option: its figures stay out of BENCHMARKS.md.
    let narrowed = !sizes.is_empty() || runs.is_some() || release_only;
    if release_only {
        builds.retain(|(build, _)| build == "release");
    }
    let plan = if smoke {
        xtask::bench::Plan {
            sizes: vec![1],
            repetitions: 1,
            builds,
            idle: std::time::Duration::from_secs(20),
            floor_concurrency: vec![16],
        }
    } else {
        xtask::bench::Plan {
            sizes: if sizes.is_empty() {
                vec![1, 10, 30]
            } else {
                sizes.clone()
            },
            repetitions: runs.unwrap_or(3),
            builds,
            idle: std::time::Duration::from_secs(60),
            floor_concurrency: vec![4, 16, 64],
        }
    };
    let dir = tempfile::Builder::new().prefix("math-controller-bench-").tempdir()?;
    xtask::cleanup::register_folder(dir.path().to_path_buf());
    let mut plane = ControlPlane::start(&assets, dir.path().join("plane"), Lifetime::Attached)?;
    plane.install_crds(&stage_crds(&target.join("debug").join("step04_fermat"))?)?;
    plane.start_controller_manager()?;
    eprintln!("benchmarking on a control plane of its own…");
    let runtime = tokio::runtime::Runtime::new()?;
    let results = runtime.block_on(xtask::bench::run(&plane, &plan))?;
    let command = format!("cargo xtask bench {}", args.join(" "));
    let command = command.trim_end();
    let report = xtask::bench::report(&results, &machine(), command);
    println!("\n{report}");
    let out = target.join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&xtask::bench::to_json(&results))?,
    )?;
    std::fs::write(out.join("settle.svg"), xtask::bench::plot(&results))?;
    if !smoke && !narrowed {
        let document = repository_root().join("BENCHMARKS.md");
        let text = std::fs::read_to_string(&document).with_context(|| format!("cannot read {}", document.display()))?;
        let (start, end) = (
            "<!-- figures: written by cargo xtask bench -->",
            "<!-- end of figures -->",
        );
        let (before, rest) = text.split_once(start).context("BENCHMARKS.md has no figures marker")?;
        let (_, after) = rest
            .split_once(end)
            .context("BENCHMARKS.md has no end-of-figures marker")?;
        std::fs::write(&document, format!("{before}{start}\n{report}{end}{after}"))?;
        std::fs::write(
            repository_root().join("benchmarks").join("settle.svg"),
            xtask::bench::plot(&results),
        )?;
        println!("wrote {} and benchmarks/settle.svg", document.display());
    }
    drop(plane);
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask bench --loop`: the attendee's edit-compile-run loop, timed.
/// A copy of the repository with a target folder of its own gets a cold
/// `cargo build --examples`, then three rebuilds of stage 4 after a one-line
/// edit in its reconcile; last, `cargo xtask test` with nothing to rebuild,
/// in this repository. Rewrites the loop section of BENCHMARKS.md.
fn attendee_loop() -> Result<ExitCode> {
    let root = repository_root();
    let copy = tempfile::Builder::new().prefix("math-controller-loop-").tempdir()?;
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .context("cannot run git: the loop copies the repository's files as git lists them")?;
    if !listed.status.success() {
        bail!(
            "`git ls-files` failed: {}",
            String::from_utf8_lossy(&listed.stderr).trim()
        );
    }
    for path in String::from_utf8(listed.stdout)?.split('\0').filter(|p| !p.is_empty()) {
        let to = copy.path().join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(root.join(path), &to).with_context(|| format!("cannot copy {path}"))?;
    }
    let timed = |args: &[&str], dir: &std::path::Path| -> Result<f64> {
        let started = std::time::Instant::now();
        let status = cargo()
            .args(args)
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", copy.path().join("target"))
            .status()?;
        if !status.success() {
            bail!("`cargo {}` failed", args.join(" "));
        }
        Ok(started.elapsed().as_secs_f64())
    };
    eprintln!("cold build of the workbench in a fresh copy…");
    let cold = timed(&["build", "--examples"], copy.path())?;
    let source = copy.path().join("exercises/step04_fermat/fermat.rs");
    let original = std::fs::read_to_string(&source)?;
    let line = "    let name = fermat.name_any();\n";
    if !original.contains(line) {
        bail!("exercises/step04_fermat/fermat.rs no longer has the line this measure edits: {line:?}");
    }
    let mut rebuilds = Vec::new();
    for edit in [
        "    let name = fermat.name_any().to_string();\n",
        line,
        "    let name = fermat.name_any().clone();\n",
    ] {
        std::fs::write(&source, original.replacen(line, edit, 1))?;
        rebuilds.push(timed(&["build", "--example", "step04_fermat"], copy.path())?);
    }
    drop(copy);
    eprintln!("`cargo xtask test` with nothing to rebuild…");
    run_cargo(&["build", "--bins", "--examples"])?;
    let log_path = target_dir().join("bench").join("loop-test.log");
    std::fs::create_dir_all(log_path.parent().context("no folder")?)?;
    let log = std::fs::File::create(&log_path)?;
    let started = std::time::Instant::now();
    let status = cargo()
        .args(["xtask", "test"])
        .current_dir(&root)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    let test = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "`cargo xtask test` failed (see {}): its time means nothing",
            log_path.display()
        );
    }
    let (min, median, max) = xtask::bench::spread(rebuilds);
    let report = format!(
        "Measured with `cargo xtask bench --loop` on {}.\n\n\
         | step | seconds |\n|---|---|\n\
         | cold `cargo build --examples` (all four workbenches, dependencies included) | {cold:.1} |\n\
         | rebuild of stage 4 after a one-line edit in its reconcile (min / median / max of 3) | {min:.1} / {median:.1} / {max:.1} |\n\
         | `cargo xtask test` with nothing to rebuild | {test:.1} |\n",
        machine()
    );
    println!("\n{report}");
    let document = root.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&document)?;
    let (start, end) = (
        "<!-- loop: written by cargo xtask bench --loop -->",
        "<!-- end of loop -->",
    );
    let (before, rest) = text.split_once(start).context("BENCHMARKS.md has no loop marker")?;
    let (_, after) = rest
        .split_once(end)
        .context("BENCHMARKS.md has no end-of-loop marker")?;
    std::fs::write(&document, format!("{before}{start}\n{report}{end}{after}"))?;
    println!("wrote {}", document.display());
    Ok(ExitCode::SUCCESS)
}

/// This machine, in a few words: CPU model, cores, memory.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!(
        "{model}, {cores} cores, {memory_gib:.0} GiB, Kubernetes {}",
        assets::kubernetes_version()
    )
}

/// Every workbench, as handed out, fails its own unit tests: none is solved
/// already. Skipped (and counted so) when `exercises/` has local changes,
/// as it does on an instructor's machine after trying the exercises.
fn exercises_are_unsolved() -> Result<Tally> {
    let changed = Command::new("git")
        .args(["status", "--porcelain", "--", "exercises"])
        .current_dir(repository_root())
        .output()
        .map(|output| !output.status.success() || !output.stdout.is_empty())
        .unwrap_or(true);
    let mut tally = Tally::new(
        "checks that the workbench is not solved as handed out",
        check::STAGES.len(),
    );
    for stage in check::STAGES {
        let name = format!("exercises::{stage}_is_not_solved_as_handed_out");
        if changed {
            tally.ignored(&name, "exercises/ has local changes");
            continue;
        }
        let (passed, output) = cargo_output(&["test", "--example", stage, "--no-fail-fast"], &[])?;
        let failing = check::parse_test_output(&output)
            .iter()
            .filter(|outcome| !outcome.passed)
            .count();
        if !passed && failing > 0 {
            tally.passed(&name, &format!("{failing} unit tests fail"));
        } else {
            tally.failed(&name, "every unit test passes, or none ran");
        }
    }
    tally.summary();
    Ok(tally)
}

/// A cargo command without the variables that `cargo run` set for this
/// program: build scripts that watch them (ring's watches CARGO_MANIFEST_DIR)
/// would otherwise rebuild on every switch between `cargo xtask` and plain cargo.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref());
        if set_by_cargo_run {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// The passed, failed and ignored counts of a libtest summary line
/// (`test result: ok. 21 passed; 0 failed; 0 ignored; …`).
fn test_result_counts(line: &str) -> Option<[u64; 3]> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            let part = part
                .trim()
                .trim_start_matches("ok.")
                .trim_start_matches("FAILED.")
                .trim();
            let (number, name) = part.split_once(' ')?;
            (name == word).then(|| number.parse().ok()).flatten()
        })
    };
    Some([count("passed")?, count("failed")?, count("ignored")?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_of_passing_and_failing_runs_are_counted() {
        let ok = "test result: ok. 21 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 8.21s";
        assert_eq!(test_result_counts(ok), Some([21, 0, 2]));
        let failed = "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(test_result_counts(failed), Some([3, 1, 0]));
        assert_eq!(test_result_counts("running 21 tests"), None);
    }
}
