//! `cargo maint soak`: the finished controller under a long run of faults,
//! outside CI. Fermats are created, edited and deleted while the API server
//! or etcd is killed for 5 to 60 s, the controller is killed (SIGKILL) and
//! started again, or everything is paused as a laptop's sleep pauses it
//! (SIGSTOP, then SIGCONT). After each fault the namespace must settle to
//! exactly what the Fermats want: nothing lost, nothing duplicated, nothing
//! left over (`tree::unsettled`), and the Fermats themselves as written.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kube::Client;

use crate::bench::Controller;
use crate::control_plane::ControlPlane;
use crate::tree::Kind;

/// How long to wait for the namespace to settle after a fault before
/// counting it as a stall.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);

/// One kind of fault, with how long it lasts.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    ApiServer(u64),
    Etcd(u64),
    ControllerKilled(u64),
    Sleep(u64),
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::ApiServer(_) => "kube-apiserver killed",
            Fault::Etcd(_) => "etcd killed",
            Fault::ControllerKilled(_) => "controller killed (SIGKILL)",
            Fault::Sleep(_) => "laptop sleep (everything paused)",
        }
    }
}

/// A small, seeded random source (xorshift), so that a run can be repeated.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// What happened to one fault.
pub struct Outcome {
    pub fault: Fault,
    /// From the end of the fault until the namespace settled; `None`: it did not within the limit.
    pub recovery: Option<f64>,
    /// Why it did not settle, or what was wrong once it did.
    pub problem: Option<String>,
    /// Warnings and errors the controller printed during the fault and its recovery.
    pub lines: usize,
    /// For a recovery slower than [`SLOW`]: what the namespace still waited
    /// for, every 5 s from then on (seconds since the settling began, why).
    pub waited_on: Vec<(u64, String)>,
}

/// A recovery slower than this is explained: what it waited for is kept.
const SLOW: u64 = 10;

/// Runs `faults` faults on `plane` (stage 4's CRDs and kube-controller-manager
/// running) against `program`, logging to `log`, with random choices from `seed`.
pub async fn run(plane: &ControlPlane, program: &Path, log: &Path, faults: usize, seed: u64) -> Result<Vec<Outcome>> {
    let client = plane.client().await?;
    let mut random = Random::new(seed);
    let mut controller = Controller::start(program, &plane.kubeconfig, log, None)?;
    let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
    let mut next_name = 0;
    let mut outcomes = Vec::new();
    for index in 0..faults {
        change_fermats(plane, &mut wanted, &mut random, &mut next_name);
        let fault = random_fault(&mut random);
        let from = std::fs::metadata(log).map(|meta| meta.len()).unwrap_or(0);
        eprint!("fault {}/{faults}: {} ", index + 1, describe(fault));
        match fault {
            Fault::ApiServer(seconds) | Fault::Etcd(seconds) => {
                let process = if matches!(fault, Fault::ApiServer(_)) {
                    "kube-apiserver"
                } else {
                    "etcd"
                };
                kill_for(plane, process, seconds).await?;
            }
            Fault::ControllerKilled(seconds) => {
                controller.kill();
                // Work arrives while no controller runs.
                change_fermats(plane, &mut wanted, &mut random, &mut next_name);
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                controller = Controller::start(program, &plane.kubeconfig, log, None)?;
            }
            Fault::Sleep(seconds) => pause_for(plane, controller.pid(), seconds).await,
        }
        let back = Instant::now();
        change_fermats(plane, &mut wanted, &mut random, &mut next_name);
        outcomes.push(outcome_of(fault, &client, &wanted, log, from, back).await);
    }
    Ok(outcomes)
}

/// The next fault: each kind as likely as the others, 5 to 60 s long (a
/// killed controller stays down 1 to 15 s).
fn random_fault(random: &mut Random) -> Fault {
    match random.between(0, 3) {
        0 => Fault::ApiServer(random.between(5, 60)),
        1 => Fault::Etcd(random.between(5, 60)),
        2 => Fault::ControllerKilled(random.between(1, 15)),
        _ => Fault::Sleep(random.between(5, 60)),
    }
}

/// Kills one of the plane's processes, and starts it again `seconds` later.
async fn kill_for(plane: &ControlPlane, process: &str, seconds: u64) -> Result<()> {
    plane.kill(process);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    plane.restart(process)
}

/// Pauses the plane's processes and the controller's (SIGSTOP) for `seconds`,
/// as a laptop's sleep would, then lets them go on (SIGCONT).
async fn pause_for(plane: &ControlPlane, controller: u32, seconds: u64) {
    let mut pids = plane.pids();
    pids.push(controller);
    for pid in &pids {
        crate::process::signal(*pid, crate::process::SIGSTOP);
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    for pid in &pids {
        crate::process::signal(*pid, crate::process::SIGCONT);
    }
}

/// Waits until the namespace settles after `fault` (over at `back`), prints
/// how that went, and returns it; `from` is where in `log` the fault began.
async fn outcome_of(
    fault: Fault,
    client: &Client,
    wanted: &BTreeMap<String, i64>,
    log: &Path,
    from: u64,
    back: Instant,
) -> Outcome {
    let mut waited_on = Vec::new();
    let (recovery, problem) = match settle(client, wanted, &mut waited_on).await {
        Ok(()) => (Some(back.elapsed().as_secs_f64()), None),
        Err(err) => (None, Some(format!("{err:#}"))),
    };
    let lines = warnings_since(log, from);
    match (&recovery, &problem) {
        (Some(seconds), _) => eprintln!("→ settled {seconds:.1} s after, {lines} warnings"),
        (None, Some(problem)) => eprintln!("→ NOT SETTLED: {problem}"),
        _ => {}
    }
    Outcome {
        fault,
        recovery,
        problem,
        lines,
        waited_on,
    }
}

fn describe(fault: Fault) -> String {
    match fault {
        Fault::ApiServer(s) | Fault::Etcd(s) | Fault::ControllerKilled(s) | Fault::Sleep(s) => {
            format!("{} for {s} s", fault.name())
        }
    }
}

/// Creates, edits or deletes a Fermat (n from 2 to 30), keeping 2 to 6.
fn change_fermats(plane: &ControlPlane, wanted: &mut BTreeMap<String, i64>, random: &mut Random, next: &mut usize) {
    let choice = match wanted.len() {
        0..=2 => 0,
        6.. => 2,
        _ => random.between(0, 2),
    };
    let n = random.between(2, 30) as i64;
    let (name, yaml, delete) = match choice {
        // A new Fermat.
        0 => {
            *next += 1;
            let name = format!("s{next}");
            (name.clone(), Some(fermat(&name, n)), false)
        }
        // Another n for one of them.
        1 => {
            let Some(name) = one_of(wanted, random) else { return };
            (name.clone(), Some(fermat(&name, n)), false)
        }
        _ => {
            let Some(name) = one_of(wanted, random) else { return };
            (name, None, true)
        }
    };
    let output = if delete {
        plane
            .kubectl()
            .args(["delete", "fermat", &name, "--wait=false", "--request-timeout=10s"])
            .output()
    } else {
        apply(plane, yaml.as_deref().unwrap_or_default())
    };
    // Refused while the API server is away: then it is not wanted either.
    if output.is_ok_and(|output| output.status.success()) {
        if delete {
            wanted.remove(&name);
        } else {
            wanted.insert(name, n);
        }
    }
}

/// The name of one of the `wanted` Fermats, chosen at random.
fn one_of(wanted: &BTreeMap<String, i64>, random: &mut Random) -> Option<String> {
    wanted
        .keys()
        .nth(random.between(0, wanted.len() as u64 - 1) as usize)
        .cloned()
}

/// Runs `kubectl apply` on `yaml`; returns its output, whether it succeeded or not.
fn apply(plane: &ControlPlane, yaml: &str) -> std::io::Result<Output> {
    use std::io::Write;
    plane
        .kubectl()
        .args(["apply", "-f", "-", "--request-timeout=10s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut input) = child.stdin.take() {
                input.write_all(yaml.as_bytes())?;
            }
            child.wait_with_output()
        })
}

fn fermat(name: &str, n: i64) -> String {
    use crate::catalogue::{GROUP, VERSION};
    format!("apiVersion: {GROUP}/{VERSION}\nkind: Fermat\nmetadata:\n  name: {name}\nspec:\n  number: {n}\n")
}

/// Waits until the namespace has settled and holds exactly the `wanted` Fermats.
/// Past [`SLOW`] seconds, what it still waits for goes to `waited_on` (and stderr).
async fn settle(client: &Client, wanted: &BTreeMap<String, i64>, waited_on: &mut Vec<(u64, String)>) -> Result<()> {
    let mut note = |seconds: u64, why: &str| {
        if seconds >= SLOW {
            eprint!("\n    still waiting after {seconds} s: {why}");
            waited_on.push((seconds, why.to_string()));
        }
    };
    let snapshot = crate::tree_live::snapshot_telling(client, "default", true, SETTLE_LIMIT, Some(&mut note)).await?;
    let fermats: BTreeMap<String, i64> = snapshot
        .objects()
        .iter()
        .filter(|object| object.kind == Kind::Fermat)
        .map(|object| (object.name.clone(), object.spec["number"].as_i64().unwrap_or(0)))
        .collect();
    if &fermats != wanted {
        bail!("the Fermats are {fermats:?}, where {wanted:?} were written");
    }
    Ok(())
}

/// The warnings and errors in `log` after byte `from`.
fn warnings_since(log: &Path, from: u64) -> usize {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned();
    text.lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .count()
}

/// The soak's figures as a Markdown section for ROBUSTNESS.md.
pub fn report(outcomes: &[Outcome], seed: u64, minutes: f64) -> String {
    let mut recoveries: Vec<f64> = outcomes.iter().filter_map(|outcome| outcome.recovery).collect();
    recoveries.sort_by(f64::total_cmp);
    let stalls: Vec<&Outcome> = outcomes.iter().filter(|outcome| outcome.recovery.is_none()).collect();
    let median = recoveries.get(recoveries.len() / 2).copied().unwrap_or(0.0);
    let mut out = String::new();
    out.push_str("## Soak\n\n");
    out.push_str(&format!(
        "Written by `cargo maint soak --faults {} --seed {seed}` ({minutes:.0} minutes), outside CI.\n\
         Between faults, Fermats (n from 2 to 30, 2 to 6 at a time) are created, edited and\n\
         deleted; after each fault the namespace must settle to exactly what they want within\n\
         {} s: nothing lost, duplicated or left over.\n\n",
        outcomes.len(),
        SETTLE_LIMIT.as_secs()
    ));
    out.push_str("| fault (5 to 60 s; a killed controller is down 1 to 15 s) | count | settled | recovery min / median / max (s) | warnings and errors per fault (max) |\n|---|---|---|---|---|\n");
    let kinds = [
        Fault::ApiServer(0),
        Fault::Etcd(0),
        Fault::ControllerKilled(0),
        Fault::Sleep(0),
    ];
    for kind in kinds {
        out.push_str(&kind_row(kind, outcomes));
    }
    out.push_str(&format!(
        "\nAll {} faults: recovery {:.1} / {median:.1} / {:.1} s (min / median / max); lost 0, left over 0 in every \
         settled one; {} did not settle.\n",
        outcomes.len(),
        recoveries.first().copied().unwrap_or(0.0),
        recoveries.last().copied().unwrap_or(0.0),
        stalls.len()
    ));
    for stall in stalls {
        out.push_str(&stall_item(stall));
    }
    let mut slow: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| outcome.recovery.is_some() && !outcome.waited_on.is_empty())
        .collect();
    slow.sort_by(|a, b| b.recovery.unwrap_or(0.0).total_cmp(&a.recovery.unwrap_or(0.0)));
    if !slow.is_empty() {
        out.push_str(&format!(
            "\nThe recoveries slower than {SLOW} s, slowest first, with what the namespace still waited for \
             every 5 s from {SLOW} s on:\n\n"
        ));
        let gc_only = slow
            .iter()
            .filter(|outcome| {
                outcome
                    .waited_on
                    .iter()
                    .all(|(_, why)| waits_for_the_garbage_collector(why))
            })
            .count();
        for outcome in &slow {
            out.push_str(&slow_item(outcome));
        }
        out.push_str(&format!(
            "\n{gc_only} of these {} waited for nothing but kube-controller-manager's garbage collector: the \
             controller's own objects had settled, and the Numbers of a Tuple deleted during the fault waited to be \
             deleted. The garbage collector retries a deletion that failed with its work queue's backoff, which \
             doubles at each failure (in a soak's kube-controller-manager log, `error syncing item` came 0.08, \
             0.16, 0.32 … 10.24 s apart during an outage): a deletion that failed all through an outage is tried \
             again only after a delay of the same order as the outage, and a Fermat deleted during the fault waits \
             for two such deletions in turn, its Tuples' and then their Numbers' (where the reason above changes \
             from one to the other). That is the cluster's pace, not the controller's.\n",
            slow.len()
        ));
    }
    out.push_str("\nThe controller's log of the run is kept in `target/soak/controller.log`.\n");
    out
}

/// The table's row for the faults of `kind`: how many, how many settled,
/// their recovery times, and the most warnings one of them caused.
fn kind_row(kind: Fault, outcomes: &[Outcome]) -> String {
    let of_kind: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| outcome.fault.name() == kind.name())
        .collect();
    let mut times: Vec<f64> = of_kind.iter().filter_map(|outcome| outcome.recovery).collect();
    times.sort_by(f64::total_cmp);
    let span = match (times.first(), times.get(times.len() / 2), times.last()) {
        (Some(min), Some(median), Some(max)) => format!("{min:.1} / {median:.1} / {max:.1}"),
        _ => "-".to_string(),
    };
    let lines = of_kind.iter().map(|outcome| outcome.lines).max().unwrap_or(0);
    format!(
        "| {} | {} | {} | {span} | {lines} |\n",
        kind.name(),
        of_kind.len(),
        times.len()
    )
}

/// Whether a reason of the tree's (`tree::unsettled`, in either language)
/// is an object that waits for the garbage collector.
fn waits_for_the_garbage_collector(why: &str) -> bool {
    why.contains("waits for the garbage collector") || why.contains("ガベージコレクターを待っています")
}

/// A list item for a slow recovery: the fault, how long, and what it waited for.
fn slow_item(outcome: &Outcome) -> String {
    // One entry per run of the same reason: "10–70 s: …".
    let mut runs: Vec<(u64, u64, &str)> = Vec::new();
    for (seconds, why) in &outcome.waited_on {
        match runs.last_mut() {
            Some((_, last, same)) if *same == why.as_str() => *last = *seconds,
            _ => runs.push((*seconds, *seconds, why)),
        }
    }
    let waits: Vec<String> = runs
        .iter()
        .map(|(first, last, why)| match first == last {
            true => format!("{first} s: {why}"),
            false => format!("{first}–{last} s: {why}"),
        })
        .collect();
    format!(
        "- {}, settled after {:.1} s; {}\n",
        describe(outcome.fault),
        outcome.recovery.unwrap_or(0.0),
        waits.join("; ")
    )
}

/// A list item for a fault that did not settle: the fault, and the last
/// line of why.
fn stall_item(stall: &Outcome) -> String {
    format!(
        "\n- {}: {}\n",
        describe(stall.fault),
        stall
            .problem
            .as_deref()
            .unwrap_or_default()
            .lines()
            .last()
            .unwrap_or_default()
    )
}

/// Where a soak keeps its files, below the target folder.
pub fn folder(target: &Path) -> PathBuf {
    target.join("soak")
}

/// A file to append the controller's output to, created empty.
pub fn fresh_log(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let log = dir.join("controller.log");
    File::create(&log)?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_source_repeats_with_its_seed_and_stays_in_range() {
        let (mut a, mut b) = (Random::new(7), Random::new(7));
        for _ in 0..100 {
            let value = a.between(5, 60);
            assert_eq!(value, b.between(5, 60));
            assert!((5..=60).contains(&value));
        }
    }
}
