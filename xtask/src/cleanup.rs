//! Processes and folders to remove when a run ends, also when it is interrupted.
//!
//! Everything a control plane starts or creates is registered here. Normal
//! shutdown removes it through `Drop`; an interrupted test run calls
//! [`remove_everything`] from its signal handler, so no stray process or
//! temporary folder survives Ctrl-C.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

static PROCESSES: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static FOLDERS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

pub fn register_process(pid: u32) {
    lock(&PROCESSES).insert(pid);
}

pub fn forget_process(pid: u32) {
    lock(&PROCESSES).remove(&pid);
}

pub fn register_folder(path: PathBuf) {
    lock(&FOLDERS).insert(path);
}

pub fn forget_folder(path: &PathBuf) {
    lock(&FOLDERS).remove(path);
}

/// Kills every registered process and removes every registered folder.
pub fn remove_everything() {
    for pid in std::mem::take(&mut *lock(&PROCESSES)) {
        // A pid that has already exited is harmless; 0 or one out of range is never sent.
        crate::process::signal(pid, crate::process::SIGKILL);
    }
    for folder in std::mem::take(&mut *lock(&FOLDERS)) {
        let _ = std::fs::remove_dir_all(folder);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
