//! Aggregates: commands → events → state. Pure, no I/O; tested as given/when/then.

pub mod api_key;
pub mod file;
pub mod notification;
pub mod session;
pub mod tenant;
pub mod upload;
pub mod user;

pub use api_key::{ApiKey, ApiKeyCommand, ApiKeyError, ApiKeyEvent};
pub use file::{File, FileCommand, FileError, FileEvent};
pub use notification::{Notification, NotificationCommand, NotificationEvent};
pub use session::{Session, SessionCommand, SessionError, SessionEvent};
pub use tenant::{Tenant, TenantCommand, TenantError, TenantEvent};
pub use upload::{Upload, UploadCommand, UploadError, UploadEvent};
pub use user::{Role, User, UserCommand, UserError, UserEvent};
