//! Single-flight: concurrent requests for one key share one load (the cache
//! stampede: 1,000 simultaneous misses must not become 1,000 database reads).
//!
//! The load runs in its own task, so a caller that gives up (client disconnect,
//! timeout) neither cancels it for the others nor leaves a half-run load behind. The
//! key leaves the in-flight map as soon as the load ends — success, error or panic —
//! so a failure is never remembered: the next caller starts a fresh load.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// The shared outcome of one load; `None` when the load task panicked.
type Flight<V> = Shared<BoxFuture<'static, Option<V>>>;

pub struct SingleFlight<V> {
    in_flight: Arc<Mutex<HashMap<String, Flight<V>>>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        Self {
            in_flight: Arc::default(),
        }
    }
}

/// Removes the key when the load ends, however it ends (a panic unwinds through here).
struct Land<V> {
    in_flight: Arc<Mutex<HashMap<String, Flight<V>>>>,
    key: String,
}

impl<V> Drop for Land<V> {
    fn drop(&mut self) {
        lock(&self.in_flight).remove(&self.key);
    }
}

/// The map is only touched in short, non-panicking critical sections; a poisoned lock
/// still holds a consistent map.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<V: Clone + Send + Sync + 'static> SingleFlight<V> {
    /// Returns the result of the load in flight for `key`, or starts `load` (only when
    /// none is). `None` if the load panicked.
    pub async fn run<F>(&self, key: &str, load: F) -> Option<V>
    where
        F: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut map = lock(&self.in_flight);
            match map.get(key) {
                Some(flight) => flight.clone(),
                None => {
                    let land = Land {
                        in_flight: self.in_flight.clone(),
                        key: key.to_string(),
                    };
                    // Spawned while the map is locked: the task's `Land` cannot remove
                    // the entry before it is inserted.
                    let task = tokio::spawn(async move {
                        let _land = land;
                        load.await
                    });
                    let flight = task.map(Result::ok).boxed().shared();
                    map.insert(key.to_string(), flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// Loads currently in flight (for tests and diagnostics).
    pub fn in_flight(&self) -> usize {
        lock(&self.in_flight).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_thousand_concurrent_callers_share_one_load() {
        let flights = Arc::new(SingleFlight::<u64>::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut callers = Vec::new();
        for _ in 0..1000 {
            let (flights, loads, gate) = (flights.clone(), loads.clone(), gate.clone());
            callers.push(tokio::spawn(async move {
                flights
                    .run("k", async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        42
                    })
                    .await
            }));
        }
        // Let every caller join before the load may finish.
        while flights.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_one();
        for c in callers {
            assert_eq!(c.await.unwrap(), Some(42));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0, "the key is released after the load");
    }

    #[tokio::test]
    async fn a_failed_load_is_not_remembered() {
        let flights = SingleFlight::<Result<u32, String>>::default();
        let first = flights.run("k", async { Err("db down".to_string()) }).await;
        assert_eq!(first, Some(Err("db down".into())));
        let second = flights.run("k", async { Ok(7) }).await;
        assert_eq!(second, Some(Ok(7)), "the next caller loads afresh");
    }

    #[tokio::test]
    async fn a_panicking_load_releases_the_key() {
        let flights = SingleFlight::<u32>::default();
        let first = flights.run("k", async { panic!("boom") }).await;
        assert_eq!(first, None);
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(flights.run("k", async { 1 }).await, Some(1));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_cancel_the_load_for_others() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let load = {
            let loads = loads.clone();
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                5
            }
        };
        let quitter = tokio::time::timeout(Duration::from_millis(10), flights.run("k", load));
        assert!(quitter.await.is_err(), "the first caller timed out");
        // The load goes on: a second caller joins it instead of starting another.
        let joined = flights.run("k", async { 99 }).await;
        assert_eq!(joined, Some(5));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn different_keys_load_independently() {
        let flights = SingleFlight::<&'static str>::default();
        let (a, b) = tokio::join!(
            flights.run("a", async { "A" }),
            flights.run("b", async { "B" })
        );
        assert_eq!((a, b), (Some("A"), Some("B")));
    }
}
