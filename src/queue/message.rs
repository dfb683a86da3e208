//! What a queue entry carries: enough to find the version, tenant first (invariant 3).
//! The worker reads everything else from the File aggregate, so a stale or repeated
//! message can never make it act on outdated facts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{FileId, TenantId, version_id};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub tenant_id: TenantId,
    pub file_id: FileId,
    pub version_number: u32,
    /// The job's id: the version's id (one processing job per version).
    pub job_id: Uuid,
}

impl JobMessage {
    pub fn process_version(tenant_id: TenantId, file_id: FileId, version_number: u32) -> Self {
        Self {
            tenant_id,
            file_id,
            version_number,
            job_id: version_id(file_id, version_number),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a job message serializes")
    }

    pub fn from_json(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }
}
