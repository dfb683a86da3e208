//! Queuing from a request: the jobs a use case's commit asks for go to Redis before the
//! request answers, within a deadline and behind a breaker (src/breaker.rs). Redis only
//! carries jobs — Postgres records them — so a dispatch that fails or is skipped costs
//! the job nothing but time: the worker's reconciler queues it again from the log
//! (src/worker/reconcile.rs). The request never fails for it and never waits on a dead
//! Redis for more than the deadline, once a second.

use std::sync::Arc;
use std::time::Duration;

use super::{JobMessage, Queue};
use crate::breaker::Breaker;

/// How long a request waits for Redis to take its jobs.
pub const DEADLINE: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Dispatch {
    queue: Queue,
    breaker: Arc<Breaker>,
}

impl Dispatch {
    pub fn new(queue: Queue) -> Self {
        Self {
            queue,
            breaker: Arc::new(Breaker::new(
                "job dispatch",
                "new jobs wait for the reconciler (JOB_RECONCILE_SECS)",
            )),
        }
    }

    /// Queues `jobs`; whether Redis took them (`false`: failed, timed out or skipped).
    pub async fn send(&self, jobs: &[JobMessage]) -> bool {
        if jobs.is_empty() {
            return true;
        }
        if self.breaker.is_open() {
            return false;
        }
        match tokio::time::timeout(DEADLINE, self.queue.enqueue_all(jobs)).await {
            Ok(Ok(())) => {
                self.breaker.close();
                true
            }
            Ok(Err(err)) => {
                self.breaker.trip(&err);
                false
            }
            Err(_) => {
                self.breaker.trip(&format!("no answer within {DEADLINE:?}"));
                false
            }
        }
    }
}
