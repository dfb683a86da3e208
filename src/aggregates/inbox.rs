//! The Inbox aggregate: how far one user has read their notifications as a whole, one
//! stream per user (stream id = the user's id). "Mark all read" is one event here rather
//! than one `NotificationRead` per notification: an API client that has uploaded 200,000
//! files would otherwise append 200,000 events to clear its badge. Not the User
//! aggregate: reading would contend with role changes and bans on the user's stream, and
//! the user stream holds personal data.
//!
//! `seq` is the recipient's notification sequence (1, 2, 3 … in catch-up order, the
//! `notifications` table's `seq`): `InboxRead { up_to_seq }` reads every notification of
//! the user up to and including that one. The API records the newest `seq` the user has
//! when asking, so a notification that arrives meanwhile stays unread.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxCommand {
    /// Reads every notification up to `seq`. Idempotent: reading up to a point already
    /// read records nothing.
    ReadUpTo { seq: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum InboxEvent {
    InboxRead { up_to_seq: u64 },
}

impl DomainEvent for InboxEvent {
    fn event_type(&self) -> String {
        match self {
            InboxEvent::InboxRead { .. } => "InboxRead",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// Commands on an inbox cannot fail in the aggregate: whose inbox it is, and how far it
/// reaches, is decided by the API against the read table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {}

impl From<InboxError> for crate::error::AppError {
    fn from(err: InboxError) -> Self {
        match err {}
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbox {
    /// Every notification up to this `seq` is read (0: none by this means).
    pub read_up_to: u64,
}

impl Inbox {
    pub fn decide(&self, command: InboxCommand) -> Result<Vec<InboxEvent>, InboxError> {
        Ok(match command {
            InboxCommand::ReadUpTo { seq } if seq <= self.read_up_to => vec![],
            InboxCommand::ReadUpTo { seq } => vec![InboxEvent::InboxRead { up_to_seq: seq }],
        })
    }
}

impl Aggregate for Inbox {
    const TYPE: &'static str = "inbox";
    type Command = InboxCommand;
    type Event = InboxEvent;
    type Error = InboxError;
    type Services = ();

    async fn handle(
        &mut self,
        command: InboxCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), InboxError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: InboxEvent) {
        match event {
            InboxEvent::InboxRead { up_to_seq } => self.read_up_to = self.read_up_to.max(up_to_seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[test]
    fn reading_up_to_a_point_records_it() {
        TestFramework::<Inbox>::with(())
            .given_no_previous_events()
            .when(InboxCommand::ReadUpTo { seq: 7 })
            .then_expect_events(vec![InboxEvent::InboxRead { up_to_seq: 7 }]);
    }

    #[test]
    fn reading_up_to_a_point_already_read_records_nothing() {
        for seq in [0, 3, 7] {
            TestFramework::<Inbox>::with(())
                .given(vec![InboxEvent::InboxRead { up_to_seq: 7 }])
                .when(InboxCommand::ReadUpTo { seq })
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn reading_further_records_the_new_point() {
        TestFramework::<Inbox>::with(())
            .given(vec![InboxEvent::InboxRead { up_to_seq: 7 }])
            .when(InboxCommand::ReadUpTo { seq: 9 })
            .then_expect_events(vec![InboxEvent::InboxRead { up_to_seq: 9 }]);
    }
}
