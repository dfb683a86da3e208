//! What this process last committed to each stream, so the stream's next command decides
//! without loading it (docs/architecture.md, "Deciding without a load").
//!
//! A remembered state is a presumption, never a fact: the append that follows a decision
//! on it is refused (duplicate sequence) if any other writer appended to the stream since,
//! and then the command is decided again on loaded state. A stream this process does not
//! remember is presumed empty the same way — a create then needs no load at all. Because
//! a decision on a presumed state stands only when its append commits, a refusal or a
//! decision that appends nothing is never answered from it either (`commands::execute`).
//!
//! Streams whose events hold personal data (`privacy::fields`) are never remembered: an
//! erasure in another process changes what loading them returns without appending to
//! them, and a remembered state would still hold the erased fields.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

/// Streams remembered per process; past it, an arbitrary entry makes room. A forgotten
/// stream only costs its next command a load.
const CAPACITY: usize = 4096;

/// The remembered states, keyed like the writer turns (`tenant/type/id`). Each value is a
/// `StoreContext<A>` of the stream's aggregate type.
#[derive(Default)]
pub struct Remembered {
    streams: Mutex<HashMap<String, Box<dyn Any + Send>>>,
}

impl Remembered {
    /// Takes the stream's remembered state out: the writer holding the stream's turn
    /// puts back what it commits, so a failed or refused command leaves nothing behind.
    pub(super) fn take<T: Any + Send>(&self, stream: &str) -> Option<T> {
        let entry = self.lock().remove(stream)?;
        entry.downcast::<T>().ok().map(|b| *b)
    }

    /// Looks at the stream's remembered state without taking it (`None` when none is
    /// remembered, or a writer has it out right now).
    pub(super) fn peek<T: Any + Send, R>(
        &self,
        stream: &str,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        self.lock().get(stream)?.downcast_ref::<T>().map(f)
    }

    pub(super) fn keep<T: Any + Send>(&self, stream: String, state: T) {
        let mut streams = self.lock();
        if streams.len() >= CAPACITY
            && !streams.contains_key(&stream)
            && let Some(evicted) = streams.keys().next().cloned()
        {
            streams.remove(&evicted);
        }
        streams.insert(stream, Box::new(state));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Box<dyn Any + Send>>> {
        self.streams
            .lock()
            .expect("remembered streams are never poisoned")
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_state_is_gone_until_kept_again() {
        let remembered = Remembered::default();
        remembered.keep("t/file/a".into(), 7u64);
        assert_eq!(remembered.take::<u64>("t/file/a"), Some(7));
        assert_eq!(remembered.take::<u64>("t/file/a"), None);
    }

    #[test]
    fn a_peeked_state_stays() {
        let remembered = Remembered::default();
        assert_eq!(remembered.peek("t/file/a", |n: &u64| *n), None);
        remembered.keep("t/file/a".into(), 7u64);
        assert_eq!(remembered.peek("t/file/a", |n: &u64| *n + 1), Some(8));
        assert_eq!(remembered.peek("t/file/a", |s: &String| s.clone()), None);
        assert_eq!(remembered.take::<u64>("t/file/a"), Some(7));
    }

    #[test]
    fn a_state_of_another_type_is_not_returned() {
        let remembered = Remembered::default();
        remembered.keep("t/file/a".into(), 7u64);
        assert_eq!(remembered.take::<String>("t/file/a"), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let remembered = Remembered::default();
        for i in 0..CAPACITY + 100 {
            remembered.keep(format!("t/file/{i}"), i);
        }
        assert_eq!(remembered.len(), CAPACITY);
    }
}
