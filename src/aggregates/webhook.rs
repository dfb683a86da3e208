//! The WebhookEndpoint aggregate: where a tenant wants its events sent (docs/webhooks.md).
//! One stream per endpoint (stream id = the endpoint's id). The signing secret is not in
//! the log — the log is exported to auditors — only its fingerprint (SHA-256, hex), so
//! an auditor can tell when it changed; the secret itself is in `webhook_secrets`.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookCommand {
    Create {
        url: String,
        event_types: Vec<String>,
        secret_fingerprint: String,
    },
    /// Changes what is given; idempotent (nothing given or nothing changed records
    /// nothing).
    Update {
        url: Option<String>,
        event_types: Option<Vec<String>>,
    },
    Enable,
    /// `automatic`: the dispatcher's, after a run of failures (admins are notified).
    Disable {
        automatic: bool,
        reason: String,
    },
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames)]
pub enum WebhookEvent {
    WebhookEndpointCreated {
        url: String,
        event_types: Vec<String>,
        secret_fingerprint: String,
    },
    WebhookEndpointUpdated {
        url: String,
        event_types: Vec<String>,
    },
    WebhookEndpointEnabled,
    WebhookEndpointDisabled {
        automatic: bool,
        reason: String,
    },
    WebhookEndpointDeleted,
}

impl DomainEvent for WebhookEvent {
    fn event_type(&self) -> String {
        match self {
            WebhookEvent::WebhookEndpointCreated { .. } => "WebhookEndpointCreated",
            WebhookEvent::WebhookEndpointUpdated { .. } => "WebhookEndpointUpdated",
            WebhookEvent::WebhookEndpointEnabled => "WebhookEndpointEnabled",
            WebhookEvent::WebhookEndpointDisabled { .. } => "WebhookEndpointDisabled",
            WebhookEvent::WebhookEndpointDeleted => "WebhookEndpointDeleted",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook endpoint not found")]
    NotFound,
    #[error("the webhook endpoint exists already")]
    Exists,
}

impl From<WebhookError> for crate::error::AppError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::NotFound => crate::error::AppError::NotFound(err.to_string()),
            WebhookError::Exists => crate::error::AppError::AlreadyExists(err.to_string()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub exists: bool,
    pub deleted: bool,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
}

impl WebhookEndpoint {
    pub fn decide(&self, command: WebhookCommand) -> Result<Vec<WebhookEvent>, WebhookError> {
        use WebhookCommand as C;
        use WebhookEvent as E;
        if let C::Create {
            url,
            event_types,
            secret_fingerprint,
        } = command
        {
            return if self.exists {
                Err(WebhookError::Exists)
            } else {
                Ok(vec![E::WebhookEndpointCreated {
                    url,
                    event_types,
                    secret_fingerprint,
                }])
            };
        }
        if !self.exists || self.deleted {
            return Err(WebhookError::NotFound);
        }
        Ok(match command {
            C::Create { .. } => unreachable!("handled above"),
            C::Update { url, event_types } => {
                let url = url.unwrap_or_else(|| self.url.clone());
                let event_types = event_types.unwrap_or_else(|| self.event_types.clone());
                if url == self.url && event_types == self.event_types {
                    vec![]
                } else {
                    vec![E::WebhookEndpointUpdated { url, event_types }]
                }
            }
            C::Enable if self.enabled => vec![],
            C::Enable => vec![E::WebhookEndpointEnabled],
            C::Disable { .. } if !self.enabled => vec![],
            C::Disable { automatic, reason } => {
                vec![E::WebhookEndpointDisabled { automatic, reason }]
            }
            C::Delete => vec![E::WebhookEndpointDeleted],
        })
    }
}

impl Aggregate for WebhookEndpoint {
    const TYPE: &'static str = "webhook_endpoint";
    type Command = WebhookCommand;
    type Event = WebhookEvent;
    type Error = WebhookError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WebhookCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WebhookError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: WebhookEvent) {
        match event {
            WebhookEvent::WebhookEndpointCreated {
                url, event_types, ..
            } => {
                self.exists = true;
                self.enabled = true;
                self.url = url;
                self.event_types = event_types;
            }
            WebhookEvent::WebhookEndpointUpdated { url, event_types } => {
                self.url = url;
                self.event_types = event_types;
            }
            WebhookEvent::WebhookEndpointEnabled => self.enabled = true,
            WebhookEvent::WebhookEndpointDisabled { .. } => self.enabled = false,
            WebhookEvent::WebhookEndpointDeleted => {
                self.deleted = true;
                self.enabled = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn created() -> WebhookEvent {
        WebhookEvent::WebhookEndpointCreated {
            url: "https://example.com/hook".into(),
            event_types: vec!["FileCreated".into()],
            secret_fingerprint: "ab".into(),
        }
    }

    #[test]
    fn an_endpoint_is_created_once() {
        TestFramework::<WebhookEndpoint>::with(())
            .given(vec![created()])
            .when(WebhookCommand::Create {
                url: "https://example.com/other".into(),
                event_types: vec![],
                secret_fingerprint: "cd".into(),
            })
            .then_expect_error(WebhookError::Exists);
    }

    #[test]
    fn disabling_twice_records_once_and_a_deleted_endpoint_is_gone() {
        let disable = || WebhookCommand::Disable {
            automatic: true,
            reason: "20 failures".into(),
        };
        TestFramework::<WebhookEndpoint>::with(())
            .given(vec![
                created(),
                WebhookEvent::WebhookEndpointDisabled {
                    automatic: true,
                    reason: "x".into(),
                },
            ])
            .when(disable())
            .then_expect_events(vec![]);
        TestFramework::<WebhookEndpoint>::with(())
            .given(vec![created(), WebhookEvent::WebhookEndpointDeleted])
            .when(WebhookCommand::Enable)
            .then_expect_error(WebhookError::NotFound);
        TestFramework::<WebhookEndpoint>::with(())
            .given_no_previous_events()
            .when(disable())
            .then_expect_error(WebhookError::NotFound);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        TestFramework::<WebhookEndpoint>::with(())
            .given(vec![created()])
            .when(WebhookCommand::Update {
                url: Some("https://example.com/hook".into()),
                event_types: None,
            })
            .then_expect_events(vec![]);
    }
}
