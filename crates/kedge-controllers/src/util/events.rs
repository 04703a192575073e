//! Recording an event about an object, as every controller does: reason
//! doubles as the action, failures are only logged (events are best effort).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

pub async fn record(
    recorder: &Recorder,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, object).await {
        tracing::debug!(error = %e, object = ?object.name, reason, "cannot record an event");
    }
}
