//! Thread-per-core: one single-threaded tokio runtime per worker thread.
//!
//! The thread that calls [`crate::server::listener::serve_on`] is worker 0 and runs
//! the accept loop; [`Workers::start`] adds the others. The accept loop
//! hands each new connection to the next worker in turn, and everything
//! that connection does (its requests, the upstream connections from that
//! worker's own pool, their timers) then stays on one thread. Against
//! tokio's work-stealing runtime this saves the cross-core wake-ups and
//! context switches a proxy otherwise pays per request (docs/benchmarks.md
//! has the figures), the way nginx runs one event loop per worker process.
//!
//! A worker must never block: each one serves its connections alone.
//! Slow synchronous work (a config reload) goes to `spawn_blocking`.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The worker threads beyond the caller's. Dropping this (or calling
/// [`Workers::stop`]) ends them; whatever tasks they still hold are dropped
/// with their runtimes.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// How long a stopping worker waits for blocking work it started (a file
    /// read, a DNS lookup) before leaving it behind: the shutdown grace is over
    /// by then, and a hung mount must not hang the exit.
    pub const BLOCKING_WAIT: Duration = Duration::from_secs(1);

    /// How many workers to run when not told: one per core this process may
    /// use (the affinity mask and cgroup quota count, as in
    /// [`std::thread::available_parallelism`]).
    pub fn default_count() -> usize {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    /// Start `extra` worker threads, numbered 1 to `extra`, each running a
    /// single-threaded runtime until stopped.
    pub fn start(extra: usize) -> std::io::Result<Workers> {
        let mut workers = Workers {
            handles: Vec::with_capacity(extra),
            stops: Vec::with_capacity(extra),
            threads: Vec::with_capacity(extra),
        };
        for index in 1..=extra {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            workers.stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("pg-worker-{index}"))
                .spawn(move || {
                    // Tasks spawned through the handle run while this
                    // thread is inside `block_on`. A dropped sender also
                    // ends the wait.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                    runtime.shutdown_timeout(Self::BLOCKING_WAIT);
                })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Handles of workers 1 to N, for spawning connections onto them.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// End every worker thread and wait for it to finish.
    pub fn stop(mut self) {
        self.stops.clear();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, RecvTimeoutError};

    #[test]
    fn tasks_run_on_their_own_worker() {
        let workers = Workers::start(2).expect("start");
        assert_eq!(workers.handles().len(), 2);
        let seen: Vec<Option<String>> = workers
            .handles()
            .iter()
            .map(|handle| {
                let (tx, rx) = channel();
                handle.spawn(async move {
                    let name = std::thread::current().name().map(str::to_owned);
                    let _ = tx.send(name);
                });
                rx.recv_timeout(Duration::from_secs(5)).expect("task ran")
            })
            .collect();
        let names = [
            Some("pg-worker-1".to_owned()),
            Some("pg-worker-2".to_owned()),
        ];
        assert_eq!(seen, names);
        workers.stop();
    }

    #[test]
    fn stop_ends_the_threads_and_drops_what_they_still_hold() {
        let workers = Workers::start(1).expect("start");
        let handle = workers.handles()[0].clone();
        // A task that never finishes (a connection still open): its state,
        // here a sender, must be dropped when the worker stops.
        let (held, released) = channel::<()>();
        handle.spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        let (done, stopped) = channel();
        std::thread::spawn(move || {
            workers.stop();
            let _ = done.send(());
        });
        stopped
            .recv_timeout(Duration::from_secs(10))
            .expect("stop returned");
        assert_eq!(
            released.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Disconnected)
        );
        // A connection handed to a stopped worker is dropped, not leaked
        // (it would hold a connection permit forever).
        let (late, late_released) = channel::<()>();
        handle.spawn(async move {
            let _late = late;
            std::future::pending::<()>().await;
        });
        assert_eq!(
            late_released.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
