//! Aggregates: commands → events → state. Pure, no I/O; tested as given/when/then.

pub mod file;
pub mod notification;
pub mod session;
pub mod tenant;
pub mod upload;
pub mod user;
pub mod webhook;

pub use file::{File, FileCommand, FileError, FileEvent};
pub use notification::{Notification, NotificationCommand, NotificationEvent};
pub use session::{Session, SessionCommand, SessionError, SessionEvent};
pub use tenant::{Tenant, TenantCommand, TenantError, TenantEvent};
pub use upload::{Upload, UploadCommand, UploadError, UploadEvent};
pub use user::{Role, User, UserCommand, UserError, UserEvent};
pub use webhook::{WebhookCommand, WebhookEndpoint, WebhookError, WebhookEvent};
