//! Where a chunk request's time goes: each phase's duration, logged at `debug` under
//! the target `chronicle::tus::phases` when the request ends (`chronicle bench upload`
//! reads them with `BENCH_SERVER_RUST_LOG`). A handful of clock reads per request.

use std::fmt::Write;
use std::time::{Duration, Instant};

use uuid::Uuid;

pub struct Phases {
    last: Instant,
    started: Instant,
    spent: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// Counting from `started` (when the request's handler began).
    pub fn since(started: Instant) -> Self {
        Phases {
            last: started,
            started,
            spent: Vec::with_capacity(8),
        }
    }

    /// `phase` ended now: it took the time since the previous one ended.
    pub fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.spent.push((phase, now - self.last));
        self.last = now;
    }

    /// Like `mark`, with the last `inner` of it counted as the phase `inner_phase`.
    pub fn mark_split(&mut self, phase: &'static str, inner_phase: &'static str, inner: Duration) {
        let now = Instant::now();
        let whole = now - self.last;
        self.spent.push((phase, whole.saturating_sub(inner)));
        self.spent.push((inner_phase, inner.min(whole)));
        self.last = now;
    }

    pub fn log(&self, upload: Uuid, bytes: u64) {
        if !tracing::enabled!(target: "chronicle::tus::phases", tracing::Level::DEBUG) {
            return;
        }
        let mut line = String::new();
        for (phase, spent) in &self.spent {
            let _ = write!(line, "{phase}={:.3} ", spent.as_secs_f64() * 1e3);
        }
        let _ = write!(
            line,
            "total={:.3}",
            self.started.elapsed().as_secs_f64() * 1e3
        );
        tracing::debug!(target: "chronicle::tus::phases", %upload, bytes, "ms: {line}");
    }
}
