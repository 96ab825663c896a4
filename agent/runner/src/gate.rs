//! The gate between the runner layer and whoever embeds it: how many tasks run, and a drain
//! switch that makes the layer refuse new tasks (its instances show themselves `busy`) so the
//! embedder can wait for the running ones to finish. Draining never cuts a running task.
//! A hold refuses new tasks too, for as long as the embedder keeps it, whatever a drain does
//! meanwhile (an undrain does not lift it).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Shared between the runner layer (which starts tasks through it) and the embedder (which
/// drains it).
#[derive(Debug, Clone, Default)]
pub struct TaskGate {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    running: AtomicUsize,
    draining: AtomicBool,
    held: AtomicBool,
    idle: Notify,
}

/// A running task; dropping it marks the task finished.
#[derive(Debug)]
pub struct TaskGuard {
    inner: Arc<Inner>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.inner.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl TaskGate {
    /// A gate with no task running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a task, unless the gate is draining (or held).
    pub fn try_start(&self) -> Option<TaskGuard> {
        if self.draining() {
            return None;
        }
        self.inner.running.fetch_add(1, Ordering::SeqCst);
        // Re-check: a drain that began in between must not miss this task.
        if self.draining() {
            drop(TaskGuard {
                inner: self.inner.clone(),
            });
            return None;
        }
        Some(TaskGuard {
            inner: self.inner.clone(),
        })
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Whether new tasks are refused (drained or held).
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst) || self.held()
    }

    /// Whether new tasks are refused by a hold.
    pub fn held(&self) -> bool {
        self.inner.held.load(Ordering::SeqCst)
    }

    /// Refuse new tasks until [`Self::release`], whatever [`Self::undrain`] does meanwhile.
    pub fn hold(&self) {
        self.inner.held.store(true, Ordering::SeqCst);
    }

    /// Lifts the hold (a drain still in force stays).
    pub fn release(&self) {
        self.inner.held.store(false, Ordering::SeqCst);
    }

    /// Refuse new tasks from now on.
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Accept tasks again.
    pub fn undrain(&self) {
        self.inner.draining.store(false, Ordering::SeqCst);
    }

    /// Waits until no task runs, up to `limit`; true when idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.idle.notified();
            if self.running() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.running() == 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_refuses_new_tasks_and_waits_for_running_ones() {
        let gate = TaskGate::new();
        let task = gate.try_start().expect("accepting");
        gate.drain();
        assert!(gate.try_start().is_none(), "draining refuses new tasks");
        assert!(
            !gate.wait_idle(Duration::from_millis(50)).await,
            "a task still runs"
        );
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_idle(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(task);
        assert!(waiter.await.expect("join"), "idle once the task finished");
        gate.undrain();
        assert!(gate.try_start().is_some());
    }

    #[test]
    fn a_hold_outlasts_an_undrain_and_a_release_leaves_a_drain() {
        let gate = TaskGate::new();
        gate.hold();
        assert!(gate.draining() && gate.held());
        gate.drain();
        gate.undrain();
        assert!(gate.try_start().is_none(), "held after an undrain");
        gate.drain();
        gate.release();
        assert!(gate.try_start().is_none(), "released, still drained");
        gate.undrain();
        assert!(gate.try_start().is_some());
    }
}
