//! Who may do what: every role and ownership rule of Chronicle, in one place. Handlers
//! ask these functions (or take the role extractors of `roles.rs`, built on them); no
//! handler compares roles or owners itself.
//!
//! | caller | files | history, audit log | accounts, jobs |
//! |---|---|---|---|
//! | `user` | reads and changes its own | — | its own sessions |
//! | `admin` | reads and changes every file of the tenant | reads | manages users, invitations, jobs; revokes any session |
//! | `auditor` | reads every file, changes none | reads | — |
//!
//! Grants (docs/sharing.md) widen the file columns for one file: a `viewer` grant (to
//! the caller, or to its role) reads it like its owner does, an `editor` grant also
//! changes its content (rename, tags, new versions). Deleting, restoring, purging,
//! sharing and links stay with the owner and admins; legal holds with auditors and
//! admins. Every file route asks these functions with the file *as the log has it*, so
//! a grant works on every route that touches the file and a revocation takes effect on
//! the next request.
//!
//! **API keys** (docs/api-keys.md) act as their own principal with a role, and may be
//! narrowed to scopes: a key may do a thing only if its role allows it *and* its scopes
//! name it (`files:read`, `files:write`, `audit:read`, `feed:read`). A person, or a key
//! created with a role only, has every scope of the role (`Scopes::UNRESTRICTED`).
//! Administration (users, invitations, jobs, erasure) needs an unrestricted admin;
//! managing API keys needs an admin *person*: a key never mints or revokes keys, so a
//! leaked key cannot make itself successors that outlive its revocation.
//!
//! Two answers for a refusal: a resource the caller may not *read* is `404`, exactly
//! like one that does not exist, so neither ids nor existence leak; a caller who may
//! read it but not do what it asks gets `403` (it learns nothing new). Other tenants'
//! resources are never reached at all: stores and queries are bound to the caller's
//! tenant (`TenantContext`).

use uuid::Uuid;

use super::TenantContext;
use super::scopes::Scope;
use crate::aggregates::Role;
use crate::aggregates::file::{Access, File};
use crate::error::AppError;
use crate::ids::UserId;

/// The answer to a file the caller may not read, whether or not it exists.
pub fn file_not_found() -> AppError {
    AppError::NotFound("file not found".into())
}

/// Admins manage the tenant: users' roles and bans, erasure, invitations, jobs.
pub fn administers(caller: &TenantContext) -> bool {
    caller.role == Role::Admin && caller.scopes.is_unrestricted()
}

/// Creating, listing and revoking API keys: an admin signed in as a person.
pub fn manages_keys(caller: &TenantContext) -> bool {
    administers(caller) && !caller.via_key
}

/// Auditors and admins read the past: the audit log, its verification and export, a
/// file's events, and (unlike owners) a purged file's history and time travel.
pub fn reads_history(caller: &TenantContext) -> bool {
    matches!(caller.role, Role::Auditor | Role::Admin) && caller.scopes.has(Scope::AuditRead)
}

/// Auditors and admins read the tenant-wide event feed (`GET /v1/feed`): it shows every
/// change of the tenant, not only the caller's.
pub fn reads_feed(caller: &TenantContext) -> bool {
    matches!(caller.role, Role::Auditor | Role::Admin) && caller.scopes.has(Scope::FeedRead)
}

/// Users and admins create content (uploads); auditors only read.
pub fn writes(caller: &TenantContext) -> bool {
    matches!(caller.role, Role::User | Role::Admin) && caller.scopes.has(Scope::FilesWrite)
}

/// Whether the caller reads files at all (its own, or the tenant's by its role).
pub fn reads_files(caller: &TenantContext) -> bool {
    caller.scopes.has(Scope::FilesRead)
}

/// Whether the caller reads every file of the tenant, not only its own (listings,
/// tag counts).
pub fn reads_every_file(caller: &TenantContext) -> bool {
    matches!(caller.role, Role::Admin | Role::Auditor) && reads_files(caller)
}

/// Whether the caller may read a file owned by `owner` (a row of a read table).
pub fn can_read_owned_by(caller: &TenantContext, owner: Uuid) -> bool {
    reads_every_file(caller) || (reads_files(caller) && owner == caller.user_id.0)
}

/// The access a grant on `file` gives the caller (to it, or to its role).
pub fn granted(caller: &TenantContext, file: &File) -> Option<Access> {
    file.granted_access(caller.user_id, caller.role)
}

/// Whether the caller may read `file` as the log has it: it exists, is not purged, and
/// its owner's files are readable to the caller or a grant lets it read this one.
pub fn can_read(caller: &TenantContext, file: &File) -> bool {
    file.exists && !file.purged && (owner_readable(caller, file) || granted(caller, file).is_some())
}

/// Whether the caller may change `file`'s content (rename, tag, upload or restore a
/// version): `404` unless it may read it; `403` for auditors and `viewer` grantees.
pub fn can_change(caller: &TenantContext, file: &File) -> Result<(), AppError> {
    if !can_read(caller, file) {
        return Err(file_not_found());
    }
    changes_files(caller)?;
    if owner_readable(caller, file) || granted(caller, file) == Some(Access::Editor) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "a viewer may read this file but not change it".into(),
        ))
    }
}

/// Whether the caller may delete, restore, share or link `file`: its owner or an admin.
/// `404` unless it may read it, `403` for anyone else who may (auditors, grantees).
pub fn can_manage(caller: &TenantContext, file: &File) -> Result<(), AppError> {
    if !can_read(caller, file) {
        return Err(file_not_found());
    }
    changes_files(caller)?;
    manages(caller, file)
}

/// Whether the caller may purge `file`: the rule of `can_manage`, except that a file
/// already purged stays within reach of those who could purge it (a retried purge
/// answers as the first did).
pub fn can_purge(caller: &TenantContext, file: &File) -> Result<(), AppError> {
    if !(file.exists && (owner_readable(caller, file) || can_read(caller, file))) {
        return Err(file_not_found());
    }
    changes_files(caller)?;
    manages(caller, file)
}

/// Legal holds: auditors and admins who may read the file; `404` for those who may not
/// read it, `403` for those who may read it with another role.
pub fn can_hold(caller: &TenantContext, file: &File) -> Result<(), AppError> {
    if !(file.exists && (owner_readable(caller, file) || can_read(caller, file))) {
        return Err(file_not_found());
    }
    if reads_history(caller) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "only auditors and admins place or release legal holds".into(),
        ))
    }
}

/// The bytes exactly as uploaded (metadata included) go to the file's owner or an
/// admin; an auditor, who reads the file, gets `403`.
pub fn can_download_original(caller: &TenantContext, file: &File) -> Result<(), AppError> {
    if file.owner_id == Some(caller.user_id) || administers(caller) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "only the file's owner or an admin may download the original".into(),
        ))
    }
}

/// Whether a version of file `file` may name the earlier version it duplicates, in
/// file `original` (owned by `original_owner`, `None` if unknown). Another file is
/// named only to a caller who may read it: to anyone else its id would prove that
/// someone holds these exact bytes.
pub fn can_see_duplicate_of(
    caller: &TenantContext,
    file: Uuid,
    original: Uuid,
    original_owner: Option<Uuid>,
    original_purged: bool,
) -> bool {
    original == file
        || (!original_purged && original_owner.is_some_and(|o| can_read_owned_by(caller, o)))
}

/// Sessions: one's own, and an admin any of the tenant's. Anything else is `404`.
pub fn can_revoke_session(caller: &TenantContext, started_by: Option<UserId>) -> bool {
    started_by == Some(caller.user_id) || administers(caller)
}

/// A resumable upload belongs to the user who started it, admins included: nobody
/// else may resume, inspect or terminate it (`404`).
pub fn owns_upload(caller: &TenantContext, started_by: Option<UserId>) -> bool {
    started_by == Some(caller.user_id)
}

fn manages(caller: &TenantContext, file: &File) -> Result<(), AppError> {
    if file.owner_id == Some(caller.user_id) || administers(caller) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "only the file's owner or an admin may do this".into(),
        ))
    }
}

fn owner_readable(caller: &TenantContext, file: &File) -> bool {
    file.owner_id
        .is_some_and(|owner| can_read_owned_by(caller, owner.0))
}

/// A caller who can read files but may not change them gets 403: nothing new leaks.
fn changes_files(caller: &TenantContext) -> Result<(), AppError> {
    if caller.role == Role::Auditor {
        return Err(AppError::Forbidden(
            "auditors may read files but not change them".into(),
        ));
    }
    if !caller.scopes.has(Scope::FilesWrite) {
        return Err(AppError::Forbidden(
            "this API key may not change files (it lacks the files:write scope)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;

    fn caller(role: Role) -> TenantContext {
        TenantContext::person(
            TenantId(Uuid::now_v7()),
            UserId(Uuid::now_v7()),
            role,
            Uuid::now_v7(),
        )
    }

    fn key(role: Role, scopes: &[Scope]) -> TenantContext {
        TenantContext::key(&crate::auth::api_keys::KeyGrant {
            tenant_id: Uuid::now_v7(),
            key_id: Uuid::now_v7(),
            role,
            scopes: if scopes.is_empty() {
                crate::auth::Scopes::UNRESTRICTED
            } else {
                crate::auth::Scopes::only(scopes.iter().copied())
            },
            expires_at: None,
            last_used_at: None,
        })
    }

    fn file_of(owner: UserId) -> File {
        File {
            exists: true,
            owner_id: Some(owner),
            ..File::default()
        }
    }

    fn status(result: Result<(), AppError>) -> u16 {
        match result {
            Ok(()) => 200,
            Err(AppError::NotFound(_)) => 404,
            Err(AppError::Forbidden(_)) => 403,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn files_read_and_change_by_role_and_owner() {
        let owner = caller(Role::User);
        let file = file_of(owner.user_id);
        // (caller, may read, change answer, original answer)
        let cases = [
            (owner, true, 200, 200),
            (caller(Role::User), false, 404, 403),
            (caller(Role::Admin), true, 200, 200),
            (caller(Role::Auditor), true, 403, 403),
        ];
        for (who, read, change, original) in cases {
            assert_eq!(can_read(&who, &file), read, "{:?} reads", who.role);
            assert_eq!(status(can_change(&who, &file)), change, "{:?}", who.role);
            assert_eq!(status(can_purge(&who, &file)), change, "{:?}", who.role);
            assert_eq!(
                status(can_download_original(&who, &file)),
                original,
                "{:?}",
                who.role
            );
        }
    }

    #[test]
    fn grants_widen_reading_and_editing_but_not_managing() {
        use crate::aggregates::file::{Grant, Grantee};
        let owner = caller(Role::User);
        let viewer = caller(Role::User);
        let editor = caller(Role::User);
        let stranger = caller(Role::User);
        let file = File {
            grants: vec![
                Grant {
                    grantee: Grantee::User(viewer.user_id),
                    access: Access::Viewer,
                },
                Grant {
                    grantee: Grantee::User(editor.user_id),
                    access: Access::Editor,
                },
            ],
            ..file_of(owner.user_id)
        };
        // (caller, read, change, manage, hold)
        let cases = [
            (owner, true, 200, 200, 403),
            (viewer, true, 403, 403, 403),
            (editor, true, 200, 403, 403),
            (stranger, false, 404, 404, 404),
            (caller(Role::Auditor), true, 403, 403, 200),
            (caller(Role::Admin), true, 200, 200, 200),
        ];
        for (who, read, change, manage, hold) in cases {
            assert_eq!(can_read(&who, &file), read);
            assert_eq!(status(can_change(&who, &file)), change);
            assert_eq!(status(can_manage(&who, &file)), manage);
            assert_eq!(status(can_purge(&who, &file)), manage);
            assert_eq!(status(can_hold(&who, &file)), hold);
        }
        // A grant to a role reaches every holder of the role.
        let by_role = File {
            grants: vec![Grant {
                grantee: Grantee::Role(Role::User),
                access: Access::Viewer,
            }],
            ..file_of(owner.user_id)
        };
        assert!(can_read(&stranger, &by_role));
        assert_eq!(status(can_change(&stranger, &by_role)), 403);
    }

    #[test]
    fn a_purged_file_is_unreadable_but_its_purge_can_be_repeated() {
        let owner = caller(Role::User);
        let file = File {
            purged: true,
            ..file_of(owner.user_id)
        };
        assert!(!can_read(&owner, &file));
        assert_eq!(status(can_change(&owner, &file)), 404);
        assert_eq!(status(can_purge(&owner, &file)), 200);
        assert_eq!(status(can_purge(&caller(Role::User), &file)), 404);
        let missing = File::default();
        assert_eq!(status(can_purge(&caller(Role::Admin), &missing)), 404);
    }

    #[test]
    fn roles_only_rules() {
        let user = caller(Role::User);
        let admin = caller(Role::Admin);
        let auditor = caller(Role::Auditor);
        assert!(administers(&admin) && !administers(&user) && !administers(&auditor));
        assert!(reads_history(&admin) && reads_history(&auditor) && !reads_history(&user));
        assert!(writes(&user) && writes(&admin) && !writes(&auditor));
        assert!(reads_every_file(&admin) && reads_every_file(&auditor));
        assert!(!reads_every_file(&user));
    }

    #[test]
    fn keys_have_the_rights_of_their_role_narrowed_by_their_scopes() {
        // A key with a role only: the role's rights, but never key management.
        let admin_key = key(Role::Admin, &[]);
        assert!(administers(&admin_key) && !manages_keys(&admin_key));
        assert!(manages_keys(&caller(Role::Admin)) && !manages_keys(&caller(Role::User)));
        assert!(reads_history(&admin_key) && reads_feed(&admin_key) && writes(&admin_key));
        // Narrowed: only what the scopes name, and no administration.
        let reader = key(Role::Admin, &[Scope::FilesRead]);
        assert!(!administers(&reader) && !writes(&reader) && !reads_history(&reader));
        assert!(reads_every_file(&reader) && !reads_feed(&reader));
        let mine = file_of(reader.user_id);
        assert!(can_read(&reader, &mine));
        assert_eq!(status(can_change(&reader, &mine)), 403);
        let writer = key(Role::User, &[Scope::FilesWrite]);
        assert!(writes(&writer) && !reads_files(&writer));
        assert!(!can_read(&writer, &file_of(writer.user_id)));
        let feed = key(Role::Auditor, &[Scope::FeedRead]);
        assert!(reads_feed(&feed) && !reads_history(&feed) && !reads_files(&feed));
        // People: users never read the feed; auditors and admins do.
        assert!(!reads_feed(&caller(Role::User)));
        assert!(reads_feed(&caller(Role::Auditor)) && reads_feed(&caller(Role::Admin)));
    }

    #[test]
    fn sessions_uploads_and_duplicates() {
        let user = caller(Role::User);
        let other = caller(Role::User);
        let admin = caller(Role::Admin);
        assert!(can_revoke_session(&user, Some(user.user_id)));
        assert!(!can_revoke_session(&user, Some(other.user_id)));
        assert!(can_revoke_session(&admin, Some(other.user_id)));
        assert!(owns_upload(&user, Some(user.user_id)));
        assert!(
            !owns_upload(&admin, Some(user.user_id)),
            "admins too get 404"
        );
        assert!(!owns_upload(&user, None));

        let (file, original) = (Uuid::now_v7(), Uuid::now_v7());
        let theirs = Some(other.user_id.0);
        assert!(can_see_duplicate_of(&user, file, file, theirs, true));
        assert!(!can_see_duplicate_of(&user, file, original, theirs, false));
        assert!(can_see_duplicate_of(&admin, file, original, theirs, false));
        assert!(!can_see_duplicate_of(&admin, file, original, theirs, true));
        assert!(can_see_duplicate_of(
            &user,
            file,
            original,
            Some(user.user_id.0),
            false
        ));
    }
}
