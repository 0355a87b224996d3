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

use crate::config::{fingerprint, Config, Fingerprint};
use crate::ops::state::Gate;

/// How often watched files are looked at.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Reload `gate` from its config file and log the outcome, off the worker
/// threads: reading files and compiling rules must not stall the
/// connections of the worker that got the signal.
pub(crate) async fn reload_in_background(gate: &Arc<Gate>, cause: &'static str) {
    let gate = Arc::clone(gate);
    if let Err(error) = tokio::task::spawn_blocking(move || reload_and_log(&gate, cause)).await {
        tracing::error!(%error, cause, "reload task failed");
    }
}

/// Reload `gate` from its config file and log the outcome; whether the
/// new config is in force.
pub(crate) fn reload_and_log(gate: &Gate, cause: &str) -> bool {
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
/// before the task first runs, and a reload by SIGHUP moves what it
/// compares against with it.
pub async fn watch_files(gate: Arc<Gate>, interval: Duration) {
    let mut refused: Option<Refused> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // `stat` can hang on a stuck network mount: never on a worker.
        let watched = Arc::clone(&gate);
        let previous = refused.take();
        match tokio::task::spawn_blocking(move || look_once(&watched, previous)).await {
            Ok(next) => refused = next,
            Err(error) => tracing::error!(%error, "file watch task failed"),
        }
    }
}

/// A reload the watch tried and the gate refused: what the files looked
/// like then, so the same broken state is not retried on every tick.
struct Refused {
    /// The config that stayed in force; a reload since (say by SIGHUP)
    /// makes this moot.
    in_force: Arc<Config>,
    /// The files of the config in force and those the refused config
    /// names (a secret file it needs may appear later), as they were.
    seen: Vec<(PathBuf, Fingerprint)>,
}

/// One look at the watched files: reload if any changed since the config
/// in force read them, or since a refused reload. Returns the refusal to
/// remember, if this look made one.
fn look_once(gate: &Gate, refused: Option<Refused>) -> Option<Refused> {
    let config = gate.config();
    let (seen, still_refused) = match refused {
        Some(refused) if Arc::ptr_eq(&refused.in_force, &config) => (refused.seen, true),
        _ => (
            config
                .watched
                .iter()
                .map(|file| (file.path.clone(), file.as_read))
                .collect(),
            false,
        ),
    };
    let now = fingerprints(seen.iter().map(|(path, _)| path.clone()));
    if now == seen {
        return still_refused.then_some(Refused {
            in_force: config,
            seen,
        });
    }
    // The files the new config names, as they are before the reload reads
    // them, for the case it is refused.
    let named = fingerprints(Config::named_files(&config.source).into_iter());
    if reload_and_log(gate, "file change") {
        return None;
    }
    let mut seen = now;
    for (path, print) in named {
        if !seen.iter().any(|(known, _)| *known == path) {
            seen.push((path, print));
        }
    }
    Some(Refused {
        in_force: gate.config(),
        seen,
    })
}

fn fingerprints(paths: impl Iterator<Item = PathBuf>) -> Vec<(PathBuf, Fingerprint)> {
    paths
        .map(|path| {
            let print = fingerprint(&path);
            (path, print)
        })
        .collect()
}
