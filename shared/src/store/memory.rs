use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::model::*;
use crate::ids::{CreationToken, WorkspaceId};

/// An in-process store with the same semantics as [`super::DynamoStore`],
/// for unit tests of the handlers.
type Records = HashMap<WorkspaceId, (WorkflowRecord, Vec<AuditEvent>)>;
type Creations = HashMap<CreationToken, (super::CreationRecord, Vec<AuditEvent>)>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Records>,
    /// Events appended for workspaces that have no record yet.
    orphan_events: Mutex<HashMap<WorkspaceId, Vec<AuditEvent>>>,
    creations: Mutex<Creations>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn creations(&self) -> Result<std::sync::MutexGuard<'_, Creations>, StoreError> {
        self.creations.lock().map_err(|_| StoreError::Backend {
            message: "memory store lock poisoned".into(),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Records>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Backend {
            message: "memory store lock poisoned".into(),
        })
    }
}

#[async_trait]
impl WorkflowStore for MemoryStore {
    async fn load(&self, workspace: &WorkspaceId) -> Result<Option<WorkflowRecord>, StoreError> {
        Ok(self.lock()?.get(workspace).map(|(r, _)| r.clone()))
    }

    async fn save(
        &self,
        expected: Option<Expected>,
        next: &WorkflowRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut map = self.lock()?;
        let conflict = || StoreError::VersionConflict {
            workspace: next.workspace_id.to_string(),
            expected: expected.map_or(0, |e| e.version),
        };
        match (map.get_mut(&next.workspace_id), expected) {
            (None, None) => {
                map.insert(next.workspace_id.clone(), (next.clone(), vec![event.clone()]));
                Ok(())
            }
            (Some((rec, events)), Some(exp)) if rec.version == exp.version && rec.status == exp.status => {
                *rec = next.clone();
                events.push(event.clone());
                Ok(())
            }
            _ => Err(conflict()),
        }
    }

    async fn append(&self, workspace: &WorkspaceId, event: &AuditEvent) -> Result<(), StoreError> {
        let mut map = self.lock()?;
        match map.get_mut(workspace) {
            Some((_, events)) => events.push(event.clone()),
            None => {
                self.orphan_events
                    .lock()
                    .map_err(|_| StoreError::Backend {
                        message: "lock poisoned".into(),
                    })?
                    .entry(workspace.clone())
                    .or_default()
                    .push(event.clone());
            }
        }
        Ok(())
    }

    async fn events(&self, workspace: &WorkspaceId) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events: Vec<AuditEvent> = self
            .orphan_events
            .lock()
            .map_err(|_| StoreError::Backend {
                message: "lock poisoned".into(),
            })?
            .get(workspace)
            .cloned()
            .unwrap_or_default();
        events.extend(
            self.lock()?
                .get(workspace)
                .map(|(_, e)| e.clone())
                .unwrap_or_default(),
        );
        // Stable: events written in the same millisecond keep their order.
        events.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(events)
    }

    async fn list(&self, status: Option<Status>) -> Result<Vec<WorkflowRecord>, StoreError> {
        let mut out: Vec<WorkflowRecord> = self
            .lock()?
            .values()
            .map(|(r, _)| r.clone())
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect();
        out.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
        Ok(out)
    }

    async fn by_key(&self, key_arn: &str) -> Result<Vec<WorkflowRecord>, StoreError> {
        let mut out: Vec<WorkflowRecord> = self
            .lock()?
            .values()
            .map(|(r, _)| r.clone())
            .filter(|r| r.key_arn.as_deref() == Some(key_arn))
            .collect();
        out.sort_by(|a, b| a.workspace_id.cmp(&b.workspace_id));
        Ok(out)
    }

    async fn load_creation(
        &self,
        token: &CreationToken,
    ) -> Result<Option<super::CreationRecord>, StoreError> {
        Ok(self.creations()?.get(token).map(|(r, _)| r.clone()))
    }

    async fn save_creation(
        &self,
        expected: Option<u64>,
        next: &super::CreationRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut map = self.creations()?;
        match (map.get_mut(&next.token), expected) {
            (None, None) => {
                map.insert(next.token.clone(), (next.clone(), vec![event.clone()]));
                Ok(())
            }
            (Some((rec, events)), Some(v)) if rec.version == v => {
                *rec = next.clone();
                events.push(event.clone());
                Ok(())
            }
            _ => Err(StoreError::VersionConflict {
                workspace: format!("creation {}", next.token),
                expected: expected.unwrap_or(0),
            }),
        }
    }

    async fn creation_events(&self, token: &CreationToken) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .creations()?
            .get(token)
            .map(|(_, e)| e.clone())
            .unwrap_or_default())
    }
}
