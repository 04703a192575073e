//! The TTL-after-finished controller (upstream
//! `pkg/controller/ttlafterfinished`): a finished Job with
//! `ttlSecondsAfterFinished` is deleted (foreground, so its pods go first)
//! that many seconds after it finished. One timer per such Job; nothing
//! polls.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job {job}: {source}")]
    Api {
        job: String,
        #[source]
        source: kube::Error,
    },
}

/// When a finished Job finished: its Complete or Failed condition's
/// transition time (upstream's `jobFinishTime`).
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// How long until the Job expires (`Some(ZERO)`: now); `None` when it has
/// no TTL or has not finished.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_time(job)?;
    let expire_ms = finished.as_millisecond() + i64::from(ttl) * 1000;
    let left = expire_ms - now.as_millisecond();
    Some(Duration::from_millis(left.max(0) as u64))
}

/// Runs the controller (until its task is aborted).
pub async fn run(client: Client) {
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

fn error_policy(_job: Arc<Job>, err: &Error, _client: Arc<Client>) -> Action {
    tracing::warn!(error = %err, "ttl-after-finished");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(job: Arc<Job>, client: Arc<Client>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    match time_left(&job, Timestamp::now()) {
        None => return Ok(Action::await_change()),
        Some(d) if !d.is_zero() => return Ok(Action::requeue(d + Duration::from_millis(50))),
        Some(_) => {}
    }
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let api: Api<Job> = Api::namespaced((*client).clone(), &ns);
    let err = |source| Error::Api {
        job: format!("{ns}/{name}"),
        source,
    };
    // Check the fresh object: the TTL or the Job may have changed.
    let Some(fresh) = api.get_opt(&name).await.map_err(err)? else {
        return Ok(Action::await_change());
    };
    match time_left(&fresh, Timestamp::now()) {
        None => return Ok(Action::await_change()),
        Some(d) if !d.is_zero() => return Ok(Action::requeue(d + Duration::from_millis(50))),
        Some(_) => {}
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            resource_version: fresh.metadata.resource_version.clone(),
            uid: fresh.metadata.uid.clone(),
        }),
        ..Default::default()
    };
    tracing::info!(job = %format!("{ns}/{name}"), "deleting finished job past its TTL");
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_counts_from_the_terminal_condition() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"ttlSecondsAfterFinished": 10, "template": {}},
            "status": {"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2025-01-01T00:00:02Z"}
            ]}
        }))
        .expect("job");
        let at = |s: &str| s.parse::<Timestamp>().expect("ts");
        assert_eq!(
            time_left(&job, at("2025-01-01T00:00:05Z")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            time_left(&job, at("2025-01-01T00:01:00Z")),
            Some(Duration::ZERO)
        );
        let mut running = job.clone();
        running.status = None;
        assert_eq!(time_left(&running, at("2025-01-01T00:00:05Z")), None);
    }
}
