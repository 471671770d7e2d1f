//! Kubernetes Events for every write to a leaf, on the SecretSync object (or, when there is
//! none, on the source Secret), so that `kubectl describe` shows what secretsync did and
//! from which commit. Never holds secret data.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::{AuditAction, AuditRecord};

/// Publishes Events in the management cluster as `secretsync`.
#[derive(Clone)]
pub struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    #[must_use]
    pub fn new(mgmt: kube::Client) -> Self {
        // The pod name tells replicas apart; outside a pod, the host's name.
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok();
        let reporter = Reporter {
            controller: "secretsync".to_owned(),
            instance,
        };
        EventPublisher {
            recorder: Recorder::new(mgmt, reporter),
        }
    }

    /// Publishes one Event for `record` about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        record: &AuditRecord,
    ) -> Result<(), kube::Error> {
        let (reason, action, verb) = match record.action {
            AuditAction::Apply => ("Applied", "Apply", "applied to"),
            AuditAction::Prune => ("Pruned", "Prune", "pruned from"),
        };
        let at = record
            .revision
            .as_deref()
            .map(|revision| format!(" at {revision}"))
            .unwrap_or_default();
        let note = format!(
            "Secret {} {verb} cluster {}{at}",
            record.target, record.cluster
        );
        let event = Event {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        self.recorder.publish(&event, regarding).await
    }
}

/// A reference to a SecretSync object.
#[must_use]
pub fn secret_sync_reference(namespace: &str, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(crate::manifest::API_VERSION.to_owned()),
        kind: Some(crate::manifest::KIND.to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid,
        ..ObjectReference::default()
    }
}

/// A reference to a Secret of the management cluster.
#[must_use]
pub fn secret_reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Secret".to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}
