//! One writer per stream at a time, inside one process: commands on the same stream wait
//! their turn (first come, first served) instead of racing each other to the append and
//! throwing work away on a conflict. Commands on different streams never wait for each
//! other. Costs no I/O and holds no database connection while waiting.
//!
//! Across processes the event log's optimistic check still decides (a duplicate
//! `(stream, sequence)` is refused); `commands::execute` retries those conflicts.
//! docs/architecture.md, "Concurrent writers", has the reasoning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};

/// The turn locks of the streams being written right now. Cheap to share (`Arc`).
#[derive(Default)]
pub struct StreamWriters {
    locks: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_stream: HashMap<String, Weak<TurnLock<()>>>,
    /// Size after the last sweep of dead entries; the next sweep runs at twice this.
    swept_at: usize,
}

/// Held while a command loads, decides and appends; the next writer of the stream goes
/// when it is dropped.
pub struct Turn {
    _guard: OwnedMutexGuard<()>,
}

impl StreamWriters {
    /// Waits until no other command of this process writes `stream`. Tokio's mutex is
    /// fair: writers get their turn in arrival order, so none can starve.
    pub async fn turn(&self, stream: String) -> Turn {
        let lock = {
            let mut table = self.locks.lock().expect("stream table is never poisoned");
            let existing = table.by_stream.get(&stream).and_then(Weak::upgrade);
            match existing {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(TurnLock::new(()));
                    table.by_stream.insert(stream, Arc::downgrade(&lock));
                    table.sweep();
                    lock
                }
            }
        };
        Turn {
            _guard: lock.lock_owned().await,
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.locks.lock().unwrap().by_stream.len()
    }
}

impl Table {
    /// Drops the entries of streams nobody writes any more: amortised O(1) per insert,
    /// and the table stays proportional to the streams in flight.
    fn sweep(&mut self) {
        if self.by_stream.len() < (2 * self.swept_at).max(64) {
            return;
        }
        self.by_stream.retain(|_, lock| lock.strong_count() > 0);
        self.swept_at = self.by_stream.len();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn writers_of_one_stream_take_turns_and_other_streams_do_not_wait() {
        let writers = Arc::new(StreamWriters::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (writers, inside) = (writers.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = writers.turn("s".into()).await;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "one at a time");
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        let held = writers.turn("s".into()).await;
        // Another stream is free while "s" is held.
        tokio::time::timeout(Duration::from_secs(1), writers.turn("t".into()))
            .await
            .expect("another stream does not wait");
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn finished_streams_are_forgotten() {
        let writers = StreamWriters::default();
        for i in 0..1000 {
            drop(writers.turn(format!("stream-{i}")).await);
        }
        assert!(writers.tracked() <= 128, "{}", writers.tracked());
    }
}
