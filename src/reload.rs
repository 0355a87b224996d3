//! What triggers a reload: SIGHUP, and with `--watch` a change of any file
//! the config depends on.
//!
//! Watching polls file metadata (length, modification time, inode) once a
//! second rather than using inotify: it sees Kubernetes' atomic symlink
//! swaps of ConfigMap and Secret volumes, editors that replace files, and
//! network file systems alike, at the cost of one `stat` per file per
//! second. A reload that fails is logged and leaves the old config serving;
//! the next change tries again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{fingerprint, Fingerprint, WatchedFile};
use crate::state::Gate;

/// How often watched files are looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Reload `gate` from its config file and log the outcome, off the worker
/// threads: reading files and compiling rules must not stall the
/// connections of the worker that got the signal.
pub async fn reload_in_background(gate: &Arc<Gate>, cause: &'static str) {
    let gate = Arc::clone(gate);
    if let Err(error) = tokio::task::spawn_blocking(move || reload_and_log(&gate, cause)).await {
        tracing::error!(%error, cause, "reload task failed");
    }
}

/// Reload `gate` from its config file and log the outcome; whether the
/// new config is in force.
pub fn reload_and_log(gate: &Gate, cause: &str) -> bool {
    match gate.reload_from_source() {
        Ok(()) => {
            let config = gate.config();
            tracing::info!(cause, version = %config.version, "configuration reloaded");
            true
        }
        Err(error) => {
            tracing::error!(cause, %error, "reload refused; the previous configuration keeps serving");
            false
        }
    }
}

/// Take SIGHUP over now (its default action ends the process), and
/// return the task that reloads on every one, forever. Call it before the
/// gate says it is listening: a SIGHUP sent on that cue must reload.
#[cfg(unix)]
pub fn on_sighup(gate: Arc<Gate>) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            reload_in_background(&gate, "SIGHUP").await;
        }
    })
}

/// The task that reloads whenever a file the config depends on changes,
/// forever. It compares against the files as they were when the config in
/// force read them, so a change made at any time after that counts, even
/// before the task first runs.
pub async fn watch_files(gate: Arc<Gate>, interval: Duration) {
    let mut seen = as_read(&gate.config().watched);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // `stat` can hang on a stuck network mount: never on a worker.
        let watched = Arc::clone(&gate);
        let previous = seen.clone();
        match tokio::task::spawn_blocking(move || look_once(&watched, previous)).await {
            Ok(next) => seen = next,
            Err(error) => tracing::error!(%error, "file watch task failed"),
        }
    }
}

/// One look at the watched files: reload if any changed since `seen`, and
/// return what to compare against next time.
fn look_once(gate: &Gate, seen: Vec<(PathBuf, Fingerprint)>) -> Vec<(PathBuf, Fingerprint)> {
    let now: Vec<_> = gate
        .config()
        .watched
        .iter()
        .map(|file| (file.path.clone(), fingerprint(&file.path)))
        .collect();
    if now == seen {
        return seen;
    }
    if reload_and_log(gate, "file change") {
        // What the new config depends on (a reload may add or drop secret
        // files), as its reload read them: a change that landed during the
        // reload is seen on the next tick, not lost.
        as_read(&gate.config().watched)
    } else {
        // Refused: try again on the next change, not on every tick.
        now
    }
}

fn as_read(files: &[WatchedFile]) -> Vec<(PathBuf, Fingerprint)> {
    files
        .iter()
        .map(|file| (file.path.clone(), file.as_read))
        .collect()
}
