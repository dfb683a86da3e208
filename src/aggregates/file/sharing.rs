//! Sharing and protection of a file: grants to users or roles, links that work without
//! an account, and legal holds. Each is an event on the file's stream, so every grant,
//! link and hold is in the verifiable history (docs/sharing.md). Who may *use* a grant
//! or place a hold is the policy's (src/auth/policy.rs); the rules here are about the
//! file's state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{File, FileError, FileEvent, FileStatus};
use crate::aggregates::Role;
use crate::ids::UserId;

/// Who a grant is for: one user of the tenant, or every holder of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    User(UserId),
    Role(Role),
}

/// What a grant allows. `Viewer` reads (metadata, versions, content, thumbnails);
/// `Editor` also changes the content: rename, tags, new versions, version restores.
/// Deleting, purging and sharing stay with the owner and admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Viewer,
    Editor,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Viewer => "viewer",
            Access::Editor => "editor",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: Grantee,
    pub access: Access,
}

/// A link as the log has it. The token itself is never stored: only its SHA-256, so
/// neither the log nor an export can be used to download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub link_id: Uuid,
    pub token_sha256: String,
    /// `None`: the file's current version at the time of each download.
    pub version_number: Option<u32>,
    pub expires_at: DateTime<Utc>,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
    pub max_downloads: Option<u32>,
    #[serde(default)]
    pub revoked: bool,
}

/// The longest accepted hold reason, in bytes.
const MAX_REASON_LEN: usize = 1000;

impl File {
    /// The access a grant gives `user` (with `role`), if any: the stronger of the user's
    /// own grant and its role's.
    pub fn granted_access(&self, user: UserId, role: Role) -> Option<Access> {
        self.grants
            .iter()
            .filter(|g| g.grantee == Grantee::User(user) || g.grantee == Grantee::Role(role))
            .map(|g| g.access)
            .max()
    }

    /// A live link by id.
    pub fn link(&self, link_id: Uuid) -> Option<&Link> {
        self.links.iter().find(|l| l.link_id == link_id)
    }

    /// Refuses what a legal hold forbids (delete, purge, version retention).
    pub(super) fn not_held(&self) -> Result<(), FileError> {
        if self.legal_hold.is_some() {
            return Err(FileError::LegalHold);
        }
        Ok(())
    }

    pub(super) fn decide_share(
        &self,
        grantee: Grantee,
        access: Access,
    ) -> Result<Vec<FileEvent>, FileError> {
        self.live()?;
        if let Grantee::User(user) = grantee
            && self.owner_id == Some(user)
        {
            return Err(FileError::Invalid {
                field: "grantee",
                reason: "the owner already has every right to the file",
            });
        }
        if grantee == Grantee::Role(Role::SystemWorker) {
            return Err(FileError::Invalid {
                field: "grantee",
                reason: "role must be user, admin or auditor",
            });
        }
        let same = self
            .grants
            .iter()
            .any(|g| g.grantee == grantee && g.access == access);
        Ok(if same {
            vec![]
        } else {
            vec![FileEvent::FileShared { grantee, access }]
        })
    }

    pub(super) fn decide_unshare(&self, grantee: Grantee) -> Result<Vec<FileEvent>, FileError> {
        if !self.exists {
            return Err(FileError::NotFound);
        }
        // Revoking a grant that does not exist is a no-op: DELETE is idempotent.
        Ok(if self.grants.iter().any(|g| g.grantee == grantee) {
            vec![FileEvent::FileUnshared { grantee }]
        } else {
            vec![]
        })
    }

    pub(super) fn decide_hold(&self, reason: String) -> Result<Vec<FileEvent>, FileError> {
        if !self.exists {
            return Err(FileError::NotFound);
        }
        if reason.trim().is_empty() || reason.len() > MAX_REASON_LEN {
            return Err(FileError::Invalid {
                field: "reason",
                reason: "must be 1 to 1000 bytes, not blank",
            });
        }
        if reason.chars().any(char::is_control) {
            return Err(FileError::Invalid {
                field: "reason",
                reason: "must not contain control characters",
            });
        }
        if self.legal_hold.is_some() {
            return Err(FileError::LegalHold);
        }
        Ok(vec![FileEvent::LegalHoldPlaced { reason }])
    }

    pub(super) fn decide_release(&self) -> Result<Vec<FileEvent>, FileError> {
        if !self.exists {
            return Err(FileError::NotFound);
        }
        // Releasing a file that is not held is a no-op (DELETE is idempotent).
        Ok(if self.legal_hold.is_some() {
            vec![FileEvent::LegalHoldReleased]
        } else {
            vec![]
        })
    }

    pub(super) fn decide_link(&self, link: Link) -> Result<Vec<FileEvent>, FileError> {
        self.live()?;
        match link.version_number {
            Some(n) => {
                let version = self.version(n)?;
                if version.status != FileStatus::Completed {
                    return Err(FileError::WrongStatus {
                        status: version.status,
                        action: "link to it",
                    });
                }
            }
            None if self.current_version().is_none() => {
                return Err(FileError::WrongStatus {
                    status: self.versions.last().map(|v| v.status).unwrap_or_default(),
                    action: "link to it (no completed version yet)",
                });
            }
            None => {}
        }
        if link.max_downloads == Some(0) {
            return Err(FileError::Invalid {
                field: "max_downloads",
                reason: "must be at least 1",
            });
        }
        if self.link(link.link_id).is_some() {
            return Err(FileError::AlreadyExists);
        }
        Ok(vec![FileEvent::LinkCreated(link)])
    }

    pub(super) fn decide_revoke_link(&self, link_id: Uuid) -> Result<Vec<FileEvent>, FileError> {
        if !self.exists {
            return Err(FileError::NotFound);
        }
        match self.link(link_id) {
            None => Err(FileError::LinkNotFound),
            Some(l) if l.revoked => Ok(vec![]),
            Some(_) => Ok(vec![FileEvent::LinkRevoked { link_id }]),
        }
    }

    pub(super) fn apply_sharing(&mut self, event: FileEvent) {
        match event {
            FileEvent::FileShared { grantee, access } => {
                self.grants.retain(|g| g.grantee != grantee);
                self.grants.push(Grant { grantee, access });
            }
            FileEvent::FileUnshared { grantee } => self.grants.retain(|g| g.grantee != grantee),
            FileEvent::LegalHoldPlaced { reason } => self.legal_hold = Some(reason),
            FileEvent::LegalHoldReleased => self.legal_hold = None,
            FileEvent::LinkCreated(link) => self.links.push(link),
            FileEvent::LinkRevoked { link_id } => {
                if let Some(l) = self.links.iter_mut().find(|l| l.link_id == link_id) {
                    l.revoked = true;
                }
            }
            _ => {}
        }
    }
}
