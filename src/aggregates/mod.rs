//! Aggregates: commands → events → state. Pure, no I/O; tested as given/when/then.

pub mod api_key;
pub mod file;
pub mod inbox;
pub mod notification;
pub mod scope;
pub mod session;
pub mod tenant;
pub mod upcast;
pub mod upload;
pub mod user;
pub mod webhook;

pub use api_key::{ApiKey, ApiKeyCommand, ApiKeyError, ApiKeyEvent};
pub use file::{File, FileCommand, FileError, FileEvent};
pub use inbox::{Inbox, InboxCommand, InboxEvent};
pub use notification::{Notification, NotificationCommand, NotificationEvent};
pub use session::{Session, SessionCommand, SessionError, SessionEvent};
pub use tenant::{Tenant, TenantCommand, TenantError, TenantEvent};
pub use upload::{Upload, UploadCommand, UploadError, UploadEvent};
pub use user::{Role, User, UserCommand, UserError, UserEvent};
pub use webhook::{WebhookCommand, WebhookEndpoint, WebhookError, WebhookEvent};

/// What a personal field reads as once its user's key is destroyed (and what a pre-v2
/// plaintext field of an erased user reads as): aggregates replay erased events too.
pub const ERASED: &str = "[erased]";
