//! Other programs, run and stopped: an external command run to its end with
//! its exit status checked, and signals sent to processes by id (the control
//! planes', the controller's under test).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use nix::sys::signal::Signal::{SIGCONT, SIGINT, SIGKILL, SIGSTOP, SIGTERM};

/// How a command reads in a message: its program and arguments.
pub fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `command` to its end and returns what it printed on stdout; an
/// error that names the command and quotes its stderr when it cannot start
/// or does not succeed.
pub fn stdout_of(command: &mut Command) -> Result<String> {
    let output = checked(command)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` to its end (its stdin empty) and returns its output, or
/// an error that names it and quotes its stderr when it fails.
pub fn checked(command: &mut Command) -> Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{}`", describe(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// Runs `command` with its output on the terminal; an error that names it
/// when it cannot start or does not succeed (its stderr is already on screen).
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status}, see above)", describe(command));
    }
    Ok(())
}

/// The process `pid` as nix names it; never a group or every process, which
/// a pid of 0 or one that does not fit a pid_t would mean.
fn pid_of(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().filter(|&pid| pid > 0).map(Pid::from_raw)
}

/// Sends `signal` to process `pid`; a process already gone is no error.
pub fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = pid_of(pid) {
        let _ = kill(pid, signal);
    }
}

/// Whether a process with this id exists and has not been reaped, as a
/// zombie would (a zombie is an exited child not yet waited for).
pub fn is_running(pid: u32) -> bool {
    // No signal: only checks that the process exists.
    let exists = pid_of(pid).is_some_and(|pid| kill(pid, None).is_ok());
    exists && !is_zombie(pid)
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[cfg(not(target_os = "linux"))]
fn is_zombie(pid: u32) -> bool {
    is_zombie_by_ps(pid)
}

/// Without `/proc`, `ps` says the state (BSD and macOS `ps` take the same flags).
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn is_zombie_by_ps(pid: u32) -> bool {
    Command::new("ps")
        .args(["-o", "stat=", "-p", &pid.to_string()])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim_start().starts_with('Z'))
}

/// Sends SIGTERM to `pids` (last started first), and SIGKILL to any still
/// running ten seconds later.
pub fn stop_processes(pids: &[u32]) {
    for &pid in pids.iter().rev() {
        signal(pid, SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| is_running(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for &pid in pids {
        if is_running(pid) {
            signal(pid, SIGKILL);
        }
    }
}

/// Kills `pids` at once (SIGKILL) and waits until they are gone: for a
/// plane whose files are removed next, there is nothing to shut down cleanly,
/// and kube-apiserver takes 10 s to end on SIGTERM.
pub fn kill_processes(pids: &[u32]) {
    for &pid in pids {
        signal(pid, SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&pid| is_running(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `command` in a session of its own when it is spawned: the
/// terminal's Ctrl-C does not reach it, and it can outlive this program.
pub fn in_own_session(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
}

/// Asks the kernel to kill the process `command` starts when the thread
/// that starts it ends, so that even a killed test run leaves no process
/// behind (Linux only: elsewhere, see [`kill_when_parent_ends`]).
#[cfg(target_os = "linux")]
pub fn killed_with_parent_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(SIGKILL)?;
            Ok(())
        });
    }
}

/// Kills `child` once `parent` has ended, for systems without Linux's
/// `PR_SET_PDEATHSIG`: a small shell loop in a session of its own checks both
/// once a second, and ends by itself when the child ends first. Returns the
/// watchdog's process id.
pub fn kill_when_parent_ends(parent: u32, child: u32) -> Result<u32> {
    let script = r#"while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -0 "$0" 2>/dev/null || kill -9 "$1" 2>/dev/null; exit 0"#;
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", script, &parent.to_string(), &child.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    in_own_session(&mut command);
    let watchdog = command.spawn().context("cannot start the watchdog shell (/bin/sh)")?;
    // Dropping a `Child` neither kills nor waits for it; its parent may be
    // gone by the time it ends.
    Ok(watchdog.id())
}

/// Clock ticks per second, the unit of the CPU times in `/proc/PID/stat`.
pub fn clock_ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Child;

    use super::*;

    #[test]
    fn a_failed_command_is_named_with_its_stderr() {
        let err = stdout_of(Command::new("sh").args(["-c", "echo out; echo broken >&2; exit 3"])).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("`sh -c echo out; echo broken >&2; exit 3` failed"),
            "{text}"
        );
        assert!(text.ends_with(": broken"), "{text}");
        assert_eq!(stdout_of(Command::new("sh").args(["-c", "echo out"])).unwrap(), "out\n");
        let missing = stdout_of(&mut Command::new("no-such-program-here")).unwrap_err();
        assert!(format!("{missing:#}").starts_with("cannot run `no-such-program-here`"));
    }

    #[test]
    fn no_pid_that_means_a_group_or_every_process_counts_as_running() {
        assert!(!is_running(0));
        assert!(!is_running(u32::MAX));
        assert!(is_running(std::process::id()));
    }

    fn sleeper() -> Child {
        Command::new("sleep").arg("600").spawn().expect("sleep starts")
    }

    /// Polls until the process has ended; gives up after a minute so that a
    /// broken watchdog fails the test instead of hanging it.
    fn ended(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while is_running(pid) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    #[test]
    fn the_watchdog_kills_the_child_when_the_parent_ends() {
        let mut parent = sleeper();
        let mut child = sleeper();
        kill_when_parent_ends(parent.id(), child.id()).unwrap();
        assert!(is_running(child.id()));
        parent.kill().unwrap();
        parent.wait().unwrap();
        assert!(ended(child.id()), "the child outlived its parent");
        child.wait().unwrap();
    }

    #[test]
    fn the_watchdog_leaves_when_the_child_ends_first() {
        let mut parent = sleeper();
        let mut child = sleeper();
        let watchdog = kill_when_parent_ends(parent.id(), child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(ended(watchdog), "the watchdog kept running after the child ended");
        assert!(is_running(parent.id()), "the watchdog killed the parent");
        parent.kill().unwrap();
        parent.wait().unwrap();
    }

    #[test]
    fn a_zombie_is_not_running() {
        let mut child = Command::new("true").spawn().unwrap();
        // Not waited for yet: once it has exited, it is a zombie.
        let pid = child.id();
        assert!(ended(pid));
        assert!(is_zombie_by_ps(pid), "ps does not see the zombie that /proc shows");
        child.wait().unwrap();
        assert!(!is_zombie_by_ps(pid));
    }
}
