//! The Notification aggregate: the read state of one notification, one short stream per
//! notification (stream id = the notification's id). Notifications themselves are
//! derived from file events by the `notifications` projector; only what a *user* does
//! to them — reading — is an event of its own, so the read table can be rebuilt from
//! the log. One stream per notification keeps the state a single flag (a per-user set of
//! read ids would grow without bound in every snapshot) and never contends with the
//! user's own stream (role changes, bans).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationCommand {
    /// Idempotent: reading a read notification records nothing.
    MarkRead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum NotificationEvent {
    NotificationRead,
}

impl DomainEvent for NotificationEvent {
    fn event_type(&self) -> String {
        match self {
            NotificationEvent::NotificationRead => "NotificationRead",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// Commands on notifications cannot fail in the aggregate: who may read which
/// notification is decided by the API against the read table (recipient only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {}

impl From<NotificationError> for crate::error::AppError {
    fn from(err: NotificationError) -> Self {
        match err {}
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub read: bool,
}

impl Notification {
    pub fn decide(
        &self,
        command: NotificationCommand,
    ) -> Result<Vec<NotificationEvent>, NotificationError> {
        Ok(match command {
            NotificationCommand::MarkRead if self.read => vec![],
            NotificationCommand::MarkRead => vec![NotificationEvent::NotificationRead],
        })
    }
}

impl Aggregate for Notification {
    const TYPE: &'static str = "notification";
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Error = NotificationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: NotificationCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), NotificationError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: NotificationEvent) {
        match event {
            NotificationEvent::NotificationRead => self.read = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[test]
    fn reading_records_one_event() {
        TestFramework::<Notification>::with(())
            .given_no_previous_events()
            .when(NotificationCommand::MarkRead)
            .then_expect_events(vec![NotificationEvent::NotificationRead]);
    }

    #[test]
    fn reading_twice_records_nothing_more() {
        TestFramework::<Notification>::with(())
            .given(vec![NotificationEvent::NotificationRead])
            .when(NotificationCommand::MarkRead)
            .then_expect_events(vec![]);
    }
}
