//! Two copies of stage 4 when the network, the clock or a process misbehave:
//! never two leaders at once (see kit/src/leader.rs). Each scenario is a
//! fault row of ROBUSTNESS.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Case;
use crate::cluster::{Scenario, Stage, seconds_of};
use crate::robustness;
use crate::step01::case;
use crate::step04::{expect_holder, fermat, lease_holder, lease_now, settled_answer};

pub fn cases() -> Vec<Case> {
    let rows = vec![
        case!(
            Stage::Step04,
            a_stopped_leader_is_replaced_when_its_lease_runs_out_and_writes_nothing_when_it_continues,
            needs_audit_log
        ),
        case!(
            Stage::Step04,
            a_leader_cut_off_in_the_middle_of_its_renewals_stops_before_the_other_takes_over,
            needs_audit_log
        ),
        case!(
            Stage::Step04,
            a_follower_whose_clock_is_ahead_waits_for_a_healthy_leader,
            needs_audit_log
        ),
    ];
    rows.into_iter()
        .map(|case| Case {
            lesson: false,
            group: Some("election"),
            ..case
        })
        .collect()
}

/// The line a leader logs when its renew deadline passes (unless it has
/// said already that the API server is out of reach).
const STOPS_LEADING: &str = "it stops leading, and another copy may take over";

/// The line a copy logs when it stops its controllers, having led.
const CONTROLLERS_STOP: &str = "the controllers stop until it leads again";

/// When copy `name`'s log first has a line containing `text`, in seconds
/// since 1970 (each line starts with its time).
fn logged_at(s: &Scenario<'_>, name: &str, text: &str) -> Option<f64> {
    s.copy_log(name)
        .lines()
        .find(|line| line.contains(text))
        .and_then(|line| line.split_whitespace().next())
        .and_then(seconds_of)
}

/// Waits until copy `name` has logged `text`.
async fn expect_logged(s: &Scenario<'_>, name: &str, text: &str) -> Result<f64> {
    s.eventually(&format!("copy {name} to log \"{text}\""), || async {
        logged_at(s, name, text).ok_or_else(|| format!("no \"{text}\" in its log"))
    })
    .await
}

/// Fails if the audit log recorded a write to a custom resource by copy
/// `pid` (each copy names its process in its User-Agent) received after
/// `after`; `who` and `when` say which copy and what `after` is.
fn expect_no_writes_after(s: &Scenario<'_>, pid: u32, after: f64, who: &str, when: &str) -> Result<()> {
    let process = format!("process {pid})");
    let late: Vec<String> = s
        .recorded_writes()?
        .into_iter()
        .filter(|write| write.user_agent.ends_with(&process) && write.received > after)
        .map(|write| format!("{} {} {}", write.verb, write.resource, write.name))
        .collect();
    ensure!(late.is_empty(), "{who} wrote {when}: {late:?}");
    Ok(())
}

/// Two copies on hosts with different names. The leader is stopped
/// (SIGSTOP, as a debugger or a frozen VM stops it): its process still
/// exists, so only the Lease running out frees it, which is the path a
/// Pod of a Deployment takes. While it is stopped the Fermat changes. Then it
/// continues (SIGCONT): its renew deadline has long passed, so it stands
/// down and writes nothing, although its controllers wake up to changes.
async fn a_stopped_leader_is_replaced_when_its_lease_runs_out_and_writes_nothing_when_it_continues(
    mut s: Scenario<'_>,
) -> Result<()> {
    let kubeconfig = s.kubeconfig.clone();
    let first = s.start_copy(Stage::Step04, "copy-a", &kubeconfig, &[])?;
    expect_holder(&s, first).await?;
    let second = s.start_copy(Stage::Step04, "copy-b", &kubeconfig, &[])?;
    expect_logged(&s, "copy-b", "waiting to lead").await?;
    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");

    s.signal(first, "STOP")?;
    let stopped = Instant::now();
    let acquired = expect_holder(&s, second).await?;
    eprintln!(
        "    the other copy took the Lease {:.1} s after the leader was stopped",
        stopped.elapsed().as_secs_f64()
    );
    expect_logged(&s, "copy-b", "was not renewed for 10 s").await?;
    s.merge_patch("Fermat", "thirteen", r#"{"spec":{"number":5}}"#).await?;
    ensure!(settled_answer(&s, "thirteen", 5).await?, "5 was not found");

    let continued = Instant::now();
    s.signal(first, "CONT")?;
    // It is a follower again: it waits, and the tree stays as the leader made it.
    expect_logged(&s, "copy-a", "waiting to lead").await?;
    robustness::fault(
        &s,
        "X08",
        "of two copies on hosts named differently, the leader stopped (SIGSTOP) while its Fermat changes, then continued (SIGCONT)",
        &[("thirteen", 5)],
        continued,
    )
    .await?;
    expect_no_writes_after(
        &s,
        first,
        acquired,
        "the stopped leader",
        "after the other copy had taken the Lease",
    )?;
    ensure!(
        lease_holder(&s).await? == second,
        "the continued copy took the Lease back"
    );
    // It said why it stopped: its deadline had passed, not only the Lease taken.
    let stopped_at = expect_logged(&s, "copy-a", STOPS_LEADING).await?;
    let controllers_stopped_at = expect_logged(&s, "copy-a", CONTROLLERS_STOP).await?;
    ensure!(
        stopped_at <= controllers_stopped_at,
        "the controllers stopped before the copy said that its deadline had passed"
    );
    Ok(())
}

/// A TCP proxy between one copy and the API server that stops passing
/// bytes on every connection, open or new, at once (a laptop that changed
/// networks, a NAT that forgot the flows): the leader's renewal gets no
/// answer, and neither does anything else. It must stop leading within its
/// renew deadline, before the other copy takes the Lease; when the proxy
/// passes bytes again, the bytes it held go through (requests already sent),
/// and the old leader sends no new write.
async fn a_leader_cut_off_in_the_middle_of_its_renewals_stops_before_the_other_takes_over(
    mut s: Scenario<'_>,
) -> Result<()> {
    let proxy = Proxy::start(&s.kubeconfig).await?;
    let through_proxy = proxy.kubeconfig(&s.kubeconfig, &s.dir().join("through-proxy"))?;
    let first = s.start_copy(Stage::Step04, "copy-a", &through_proxy, &[])?;
    expect_holder(&s, first).await?;
    let kubeconfig = s.kubeconfig.clone();
    let second = s.start_copy(Stage::Step04, "copy-b", &kubeconfig, &[])?;
    expect_logged(&s, "copy-b", "waiting to lead").await?;
    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");

    // Renewals come every 2 s: this cut falls in the middle of one, or just before.
    proxy.cut();
    s.merge_patch("Fermat", "thirteen", r#"{"spec":{"number":5}}"#).await?;
    let acquired = expect_holder(&s, second).await?;
    ensure!(settled_answer(&s, "thirteen", 5).await?, "5 was not found");
    // The cut-off copy had stopped its controllers before the other took over.
    let stopped_at = logged_at(&s, "copy-a", CONTROLLERS_STOP).with_context(|| {
        format!(
            "the cut-off leader did not stop its controllers before the other copy took the Lease; its log:\n{}",
            s.copy_log("copy-a")
        )
    })?;
    ensure!(
        stopped_at < acquired,
        "the cut-off leader stopped leading {:.1} s after the other copy took the Lease",
        stopped_at - acquired
    );
    eprintln!(
        "    the cut-off leader stopped its controllers {:.1} s before the other copy took the Lease",
        acquired - stopped_at
    );

    let healed = Instant::now();
    proxy.heal();
    expect_logged(&s, "copy-a", "waiting to lead").await?;
    robustness::fault(
        &s,
        "X09",
        "of two copies, the leader's connections to the API server cut by a proxy (no bytes pass) in the middle of its renewals while its Fermat changes, then passing again",
        &[("thirteen", 5)],
        healed,
    )
    .await?;
    expect_no_writes_after(
        &s,
        first,
        acquired,
        "the cut-off leader",
        "after the other copy had taken the Lease",
    )?;
    Ok(())
}

/// A follower whose wall clock is 30 s ahead reads the leader's renewals as
/// 30 s old. It must wait all the same (it judges the Lease by when it saw
/// it change, not by the times written in it): the leader keeps the Lease
/// and is the only one to write, through several of its renewals.
async fn a_follower_whose_clock_is_ahead_waits_for_a_healthy_leader(mut s: Scenario<'_>) -> Result<()> {
    let kubeconfig = s.kubeconfig.clone();
    let first = s.start_copy(Stage::Step04, "copy-a", &kubeconfig, &[])?;
    expect_holder(&s, first).await?;
    let ahead = [("MATH_CONTROLLER_CLOCK_AHEAD_SECONDS", "30")];
    let second = s.start_copy(Stage::Step04, "copy-b", &kubeconfig, &ahead)?;
    expect_logged(&s, "copy-b", "waiting to lead").await?;
    // Three renewals by the leader after the follower started: each was a
    // chance for it to take the Lease.
    let renewals = std::sync::Mutex::new(Vec::new());
    s.eventually("the leader to renew the Lease three times", || async {
        let (holder, runs_out, _) = lease_now(&s).await.map_err(|err| err.to_string())?;
        ensure_holder(holder.as_deref(), first)?;
        let mut renewals = renewals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(runs_out) = runs_out
            && renewals.last() != Some(&runs_out)
        {
            renewals.push(runs_out);
        }
        match renewals.len() {
            4.. => Ok(()),
            seen => Err(format!("{} renewals", seen.saturating_sub(1))),
        }
    })
    .await?;
    let started = Instant::now();
    s.apply(&fermat("thirteen", 13)).await?;
    ensure!(settled_answer(&s, "thirteen", 13).await?, "13 was not found");
    let (holder, _, _) = lease_now(&s).await?;
    ensure_holder(holder.as_deref(), first).map_err(anyhow::Error::msg)?;
    expect_no_writes_after(&s, second, 0.0, "the follower", "while the leader led")?;
    ensure!(
        !s.copy_log("copy-b").contains("leading: this copy holds"),
        "the follower led"
    );
    robustness::fault(
        &s,
        "X10",
        "of two copies, the follower's clock 30 s ahead of the leader's; a Fermat created after three renewals",
        &[("thirteen", 13)],
        started,
    )
    .await
}

/// Whether the Lease's `holder` names process `pid` (`host…-pid-started`).
fn ensure_holder(holder: Option<&str>, pid: u32) -> Result<(), String> {
    let named = holder
        .and_then(|holder| holder.rsplit('-').nth(1))
        .and_then(|pid| pid.parse::<u32>().ok());
    match named {
        Some(named) if named == pid => Ok(()),
        _ => Err(format!("the Lease is held by {holder:?}, not by copy {pid}")),
    }
}

/// A TCP proxy in front of the API server that can stop passing bytes.
struct Proxy {
    address: String,
    passing: watch::Sender<bool>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the API server that `kubeconfig` names.
    async fn start(kubeconfig: &Path) -> Result<Proxy> {
        let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let server = config
            .clusters
            .first()
            .and_then(|cluster| cluster.cluster.as_ref())
            .and_then(|cluster| cluster.server.clone())
            .context("the kubeconfig names no server")?;
        let upstream = server.trim_start_matches("https://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let (passing, _) = watch::channel(true);
        let gate = passing.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let gate = gate.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::join!(
                        pump(from_client, to_server, gate.clone()),
                        pump(from_server, to_client, gate)
                    );
                });
            }
        });
        Ok(Proxy {
            address,
            passing,
            _accepting: accepting,
        })
    }

    /// A copy of `kubeconfig` whose server is this proxy, written at `path`.
    fn kubeconfig(&self, kubeconfig: &Path, path: &Path) -> Result<PathBuf> {
        crate::http_proxy::kubeconfig_through(kubeconfig, &self.address, path)
    }

    /// From now on, no byte passes, on any connection.
    fn cut(&self) {
        self.passing.send_replace(false);
    }

    /// Bytes pass again, those held first.
    fn heal(&self) {
        self.passing.send_replace(true);
    }
}

/// Copies bytes from `from` to `to` while `passing` says so; holds them otherwise.
async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mut passing: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if passing.wait_for(|passing| *passing).await.is_err() || from.readable().await.is_err() {
            return;
        }
        let read = match from.try_read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut sent = 0;
        while sent < read {
            if passing.wait_for(|passing| *passing).await.is_err() || to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buffer[sent..read]) {
                Ok(written) => sent += written,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    }
}
