//! The Job controller (upstream `pkg/controller/job`, 1.33 semantics).
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer from
//! creation; a finished pod is first recorded in
//! `status.uncountedTerminatedPods`, then loses its finalizer, then moves
//! into the `succeeded`/`failed` counters, so no pod is counted twice or
//! lost across restarts. Failure and success are first recorded as the
//! interim `FailureTarget`/`SuccessCriteriaMet` conditions; the terminal
//! `Failed`/`Complete` follows once no pod is terminating.
//!
//! Every sync reads the Job and its pods fresh from the API server (cheap in
//! process) and writes status with the Job's resourceVersion, so a stale
//! cache can never undo a count. Idle Jobs cost nothing: syncs are driven by
//! watch events, plus one timer for `activeDeadlineSeconds` or back-off.

pub mod pod_state;
pub mod policy;
pub mod ttl;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};

use self::pod_state as ps;
use self::policy::{BackoffRecord, FailureAction, IndexSet};
use crate::util::pods::{self as podutil, PodName};
use crate::util::selector::label_selector_query;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// Upstream's `MaxUncountedPods` and `MaxPodCreateDeletePerSync`.
const MAX_UNCOUNTED: usize = 500;
const MAX_CREATE_DELETE_PER_SYNC: i32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job {job}: {source}")]
    Api {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("job {0}: invalid spec: {1}")]
    Invalid(String, String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

struct Ctx {
    client: Client,
    recorder: Recorder,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
}

/// Runs the Job controller (until its task is aborted).
pub async fn run(client: Client) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "job-controller".into(),
                instance: None,
            },
        ),
        backoff: Mutex::new(HashMap::new()),
    });
    let orphans = release_orphan_pods(client.clone());
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "job sync");
            }
        });
    // One future: aborting `run` stops both.
    futures::join!(controller, orphans);
}

/// Upstream's orphan-pod handling: a pod that still holds the tracking
/// finalizer while its Job is gone (or it has no controller) would never be
/// deleted; take the finalizer off.
async fn release_orphan_pods(client: Client) {
    use kube::runtime::WatchStreamExt;
    let pods: Api<Pod> = Api::all(client.clone());
    let stream = watcher::watcher(pods, watcher::Config::default()).touched_objects();
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        let Ok(pod) = ev else { continue };
        if !has_finalizer(&pod) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .cloned();
        let orphan = match &owner {
            Some(r) if r.kind == "Job" => {
                let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
                match jobs.get_opt(&r.name).await {
                    Ok(Some(j)) => j.metadata.uid.as_deref() != Some(r.uid.as_str()),
                    Ok(None) => true,
                    Err(_) => false,
                }
            }
            Some(_) => false,
            None => true,
        };
        if !orphan {
            continue;
        }
        let kept: Vec<&String> = pod
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        let patch = json!({"metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "finalizers": kept,
        }});
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        match api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %format!("{ns}/{}", pod.name_any()), "released orphan pod from the job-tracking finalizer")
            }
            Err(e) => tracing::debug!(error = %e, "cannot release orphan pod"),
        }
    }
}

fn error_policy(_job: Arc<Job>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %err, "job sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

fn key(job: &Job) -> String {
    format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or(""),
        job.name_any()
    )
}

fn api_err(job: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |source| Error::Api {
        job: job.to_string(),
        source,
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| condition(s, "Complete").is_some() || condition(s, "Failed").is_some())
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `ensureJobConditionStatus`: whether the list changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref().unwrap_or("") != reason
            || c.message.as_deref().unwrap_or("") != message
        {
            *c = new_condition(type_, reason, message, now);
            c.status = status.into();
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(new_condition(type_, reason, message, now));
        return true;
    }
    false
}

fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

/// Everything a sync works from.
struct Sync<'a> {
    job: Job,
    name: String,
    ns: String,
    pods: Arc<Vec<Pod>>,
    indexed: bool,
    completions: i32,
    only_replace_failed: bool,
    now: Timestamp,
    ctx: &'a Ctx,
    requeue: Option<Duration>,
}

impl Sync<'_> {
    fn spec(&self) -> &k8s_openapi::api::batch::v1::JobSpec {
        // `Sync` is only built for Jobs that have a spec.
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::batch::v1::JobSpec> =
            std::sync::OnceLock::new();
        self.job
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    fn suspended(&self) -> bool {
        self.spec().suspend == Some(true)
    }

    fn requeue_in(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    /// Upstream's `isPodFailed`.
    fn is_pod_failed(&self, pod: &Pod) -> bool {
        if podutil::phase(pod) == "Failed" {
            return true;
        }
        if self.only_replace_failed {
            return false;
        }
        podutil::is_pod_terminating(pod) && podutil::phase(pod) != "Succeeded"
    }

    fn valid_index(&self, pod: &Pod) -> Option<i32> {
        completion_index(pod).filter(|i| *i < self.completions)
    }

    fn api(&self) -> Api<Job> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let object = self.job.object_ref(&());
        crate::util::events::record(&self.ctx.recorder, &object, type_, reason, note).await;
    }

    /// Writes status (merge patch guarded by resourceVersion) and keeps the
    /// returned Job.
    async fn flush(&mut self, status: &JobStatus) -> Result<()> {
        let mut st = serde_json::to_value(status).unwrap_or(Value::Null);
        if let Some(o) = st.as_object_mut() {
            // Fields that a merge patch must clear when unset.
            for k in ["completionTime", "failedIndexes"] {
                o.entry(k).or_insert(Value::Null);
            }
        }
        let patch = json!({
            "metadata": {"resourceVersion": self.job.metadata.resource_version},
            "status": st,
        });
        let job = self
            .api()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(&self.name))?;
        self.job = job;
        Ok(())
    }

    async fn remove_finalizer(&self, pod: &Pod) -> std::result::Result<(), kube::Error> {
        let Some(fins) = pod.metadata.finalizers.as_ref() else {
            return Ok(());
        };
        let kept: Vec<&String> = fins.iter().filter(|f| *f != TRACKING_FINALIZER).collect();
        if kept.len() == fins.len() {
            return Ok(());
        }
        // The resourceVersion guards against losing a concurrent change
        // to the list (a 409 retries the sync).
        let patch = json!({"metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "finalizers": kept,
        }});
        match self
            .pods_api()
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_pod(&self, pod: &Pod) -> std::result::Result<(), kube::Error> {
        match self
            .pods_api()
            .delete(&pod.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                self.event(
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                )
                .await;
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                )
                .await;
                Err(e)
            }
        }
    }

    /// Upstream's `deleteJobPods`: finalizer off, then delete (the pods are
    /// not counted as failed). Returns (deleted ready, deleted).
    async fn delete_job_pods(&self, pods: &[&Pod]) -> (i32, i32, Option<kube::Error>) {
        let (mut ready, mut n, mut err) = (0, 0, None);
        for p in pods {
            let r = match self.remove_finalizer(p).await {
                Ok(()) => self.delete_pod(p).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => {
                    n += 1;
                    if podutil::is_pod_ready(p) {
                        ready += 1;
                    }
                }
                Err(e) => err = Some(e),
            }
        }
        (ready, n, err)
    }

    /// Upstream's `deleteActivePods`: delete, keeping finalizers.
    async fn delete_active_pods(&self, pods: &[&Pod]) -> (i32, i32, Option<kube::Error>) {
        let (mut ready, mut n, mut err) = (0, 0, None);
        for p in pods {
            match self.delete_pod(p).await {
                Ok(()) => {
                    n += 1;
                    if podutil::is_pod_ready(p) {
                        ready += 1;
                    }
                }
                Err(e) => err = Some(e),
            }
        }
        (ready, n, err)
    }
}

async fn reconcile(cached: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action> {
    let ns = cached.metadata.namespace.clone().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let job = match api.get_opt(&name).await.map_err(api_err(&name))? {
        Some(j) if j.metadata.uid == cached.metadata.uid => j,
        _ => {
            ctx.backoff.lock().map(|mut b| b.remove(&key(&cached))).ok();
            return Ok(Action::await_change());
        }
    };
    // A Job the API server let through without a usable spec or selector
    // cannot be synced; retrying would not change that (a spec update
    // triggers a new sync).
    let Some(spec) = job.spec.clone() else {
        tracing::warn!(error = %Error::Invalid(name, "no spec".into()), "skipping job");
        return Ok(Action::await_change());
    };
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let Some(selector) = spec.selector.as_ref().and_then(label_selector_query) else {
        tracing::warn!(error = %Error::Invalid(name, "invalid selector".into()), "skipping job");
        return Ok(Action::await_change());
    };
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_err(&name))?
        .items
        .into_iter()
        .filter(|p| podutil::controlled_by(&p.metadata, &uid))
        .collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let only_replace_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();
    let mut s = Sync {
        completions: spec.completions.unwrap_or(0),
        job,
        name,
        ns,
        pods: Arc::new(pods),
        indexed,
        only_replace_failed,
        now: Timestamp::now(),
        ctx: &ctx,
        requeue: None,
    };
    if is_finished(&s.job) || s.job.metadata.deletion_timestamp.is_some() {
        // Finished or going: no pod keeps the tracking finalizer.
        let mut err = None;
        for p in s.pods.iter().filter(|p| has_finalizer(p)) {
            if let Err(e) = s.remove_finalizer(p).await {
                err = Some(e);
            }
        }
        if let Some(e) = err {
            return Err(api_err(&s.name)(e));
        }
        if is_finished(&s.job) {
            ctx.backoff.lock().map(|mut b| b.remove(&key(&s.job))).ok();
        }
        return Ok(Action::await_change());
    }
    match sync_job(&mut s).await {
        Ok(()) => {}
        Err(Error::Api { source, .. }) if is_conflict(&source) => {
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        Err(e) => return Err(e),
    }
    Ok(match s.requeue {
        Some(d) => Action::requeue(d + Duration::from_millis(50)),
        None => Action::await_change(),
    })
}

/// Upstream's `syncJob` for a Job that is not finished.
async fn sync_job(s: &mut Sync<'_>) -> Result<()> {
    let spec = s.spec().clone();
    let mut status = s.job.status.clone().unwrap_or_default();
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let unc_succ: HashSet<String> = uncounted
        .succeeded
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let unc_fail: HashSet<String> = uncounted
        .failed
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let uid_of = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();

    let all_pods = Arc::clone(&s.pods);
    let active_pods: Vec<&Pod> = all_pods
        .iter()
        .filter(|p| podutil::is_pod_active(p))
        .collect();
    let mut terminating = s
        .pods
        .iter()
        .filter(|p| podutil::is_pod_terminating(p) && !podutil::is_pod_terminal(p))
        .count() as i32;
    let mut ready = active_pods
        .iter()
        .filter(|p| podutil::is_pod_ready(p))
        .count() as i32;
    let mut active = active_pods.len() as i32;

    // Newly finished pods: still holding the finalizer, not yet uncounted.
    let valid = |p: &Pod, unc: &HashSet<String>| {
        has_finalizer(p) && !unc.contains(&uid_of(p)) && (!s.indexed || s.valid_index(p).is_some())
    };
    let new_succeeded: Vec<&Pod> = s
        .pods
        .iter()
        .filter(|p| valid(p, &unc_succ) && podutil::phase(p) == "Succeeded")
        .collect();
    let new_failed: Vec<&Pod> = s
        .pods
        .iter()
        .filter(|p| valid(p, &unc_fail) && s.is_pod_failed(p))
        .collect();
    let counted_failure = |p: &Pod| match &spec.pod_failure_policy {
        Some(pfp) => policy::match_failure_policy(pfp, p) != Some(FailureAction::Ignore),
        None => true,
    };
    let mut succeeded =
        status.succeeded.unwrap_or(0) + new_succeeded.len() as i32 + unc_succ.len() as i32;
    let failed = status.failed.unwrap_or(0)
        + new_failed.iter().filter(|p| counted_failure(p)).count() as i32
        + unc_fail.len() as i32;

    if status.start_time.is_none() && !s.suspended() {
        status.start_time = Some(Time(s.now));
    }

    let job_key = key(&s.job);
    let old_backoff = s
        .ctx
        .backoff
        .lock()
        .ok()
        .and_then(|b| b.get(&job_key).copied())
        .unwrap_or_default();
    let finished: Vec<(Timestamp, bool)> = new_succeeded
        .iter()
        .map(|p| (policy::finish_time(p).unwrap_or(s.now), true))
        .chain(
            new_failed
                .iter()
                .filter(|p| counted_failure(p))
                .map(|p| (policy::finish_time(p).unwrap_or(s.now), false)),
        )
        .collect();
    let new_backoff = old_backoff.with_finished(finished);

    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let exceeds_backoff = failed > backoff_limit;
    let conds = status.conditions.clone().unwrap_or_default();
    let mut finished_cond: Option<JobCondition> = conds
        .iter()
        .find(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
        .cloned();
    if finished_cond.is_none() {
        if let Some(ft) = conds
            .iter()
            .find(|c| c.type_ == "FailureTarget" && c.status == "True")
        {
            finished_cond = Some(new_condition(
                "Failed",
                ft.reason.as_deref().unwrap_or(""),
                ft.message.as_deref().unwrap_or(""),
                s.now,
            ));
        } else if let Some(pfp) = &spec.pod_failure_policy {
            let msg = s.pods.iter().filter(|p| s.is_pod_failed(p)).find_map(|p| {
                match policy::match_failure_policy(pfp, p) {
                    Some(FailureAction::FailJob(m)) => Some(m),
                    _ => None,
                }
            });
            if let Some(m) = msg {
                finished_cond = Some(new_condition(
                    "FailureTarget",
                    "PodFailurePolicy",
                    &m,
                    s.now,
                ));
            }
        }
    }
    if finished_cond.is_none() {
        if exceeds_backoff || past_backoff_limit_on_failure(&spec, &s.pods, backoff_limit) {
            finished_cond = Some(new_condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                s.now,
            ));
        } else if let (Some(ads), Some(start), false) = (
            spec.active_deadline_seconds,
            &status.start_time,
            s.suspended(),
        ) {
            let elapsed = s.now.as_second() - start.0.as_second();
            if elapsed >= ads {
                finished_cond = Some(new_condition(
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    s.now,
                ));
            } else {
                let left = start.0.as_millisecond() + ads * 1000 - s.now.as_millisecond();
                s.requeue_in(Duration::from_millis(left.max(0) as u64));
            }
        }
    }

    let prev_succeeded_indexes = IndexSet::parse(
        status.completed_indexes.as_deref().unwrap_or(""),
        s.completions,
    );
    let mut succeeded_indexes = prev_succeeded_indexes.clone();
    let mut failed_indexes = IndexSet::default();
    if s.indexed {
        succeeded_indexes.insert_all(
            s.pods
                .iter()
                .filter(|p| podutil::phase(p) == "Succeeded" && has_finalizer(p))
                .filter_map(|p| s.valid_index(p)),
        );
        succeeded = succeeded_indexes.total();
        if spec.backoff_limit_per_index.is_some() {
            failed_indexes = calculate_failed_indexes(s, &spec, &status);
            if finished_cond.is_none() {
                if spec
                    .max_failed_indexes
                    .is_some_and(|m| failed_indexes.total() > m)
                {
                    finished_cond = Some(new_condition(
                        "FailureTarget",
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                        s.now,
                    ));
                } else if failed_indexes.total() > 0
                    && failed_indexes.total() + succeeded_indexes.total() >= s.completions
                {
                    finished_cond = Some(new_condition(
                        "FailureTarget",
                        "FailedIndexes",
                        "Job has failed indexes",
                        s.now,
                    ));
                }
            }
        }
        if finished_cond.is_none() {
            if let Some(msg) = spec
                .success_policy
                .as_ref()
                .and_then(|sp| policy::match_success_policy(sp, s.completions, &succeeded_indexes))
            {
                finished_cond = Some(new_condition(
                    "SuccessCriteriaMet",
                    "SuccessPolicy",
                    &msg,
                    s.now,
                ));
            }
        }
    }

    let mut manage_err = None;
    let mut conditions = conds;
    if finished_cond.is_some() {
        let (dr, deleted, err) = s.delete_active_pods(&active_pods).await;
        if deleted != active {
            finished_cond = None;
        }
        active -= deleted;
        terminating += deleted;
        ready -= dr;
        manage_err = err;
    } else {
        let (new_active, err) = manage_job(
            s,
            &spec,
            &active_pods,
            succeeded,
            &succeeded_indexes,
            &failed_indexes,
            terminating,
            new_backoff,
        )
        .await;
        if new_active < active {
            // Pods deleted by manageJob (suspend, excess) are terminating.
            terminating += active - new_active;
            ready = ready.min(new_active);
        }
        active = new_active;
        manage_err = manage_err.or(err);
        let complete = match spec.completions {
            None => succeeded > 0 && active == 0,
            Some(c) => succeeded >= c && active == 0,
        };
        if complete {
            finished_cond = Some(new_condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                s.now,
            ));
        } else if s.suspended() {
            if ensure_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                s.now,
            ) {
                s.event(EventType::Normal, "Suspended", "Job suspended".into())
                    .await;
            }
        } else if ensure_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            s.now,
        ) {
            s.event(EventType::Normal, "Resumed", "Job resumed".into())
                .await;
            status.start_time = Some(Time(s.now));
        }
    }
    status.conditions = Some(conditions);
    status.active = Some(active);
    status.ready = Some(ready);
    status.terminating = Some(terminating);

    track_and_remove_finalizers(
        s,
        &spec,
        status,
        finished_cond,
        &prev_succeeded_indexes,
        succeeded_indexes,
        failed_indexes,
        terminating,
        new_backoff,
    )
    .await?;
    match manage_err {
        Some(e) => Err(api_err(&s.name)(e)),
        None => Ok(()),
    }
}

/// Upstream's `pastBackoffLimitOnFailure` (restartPolicy OnFailure).
fn past_backoff_limit_on_failure(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    pods: &[Pod],
    limit: i32,
) -> bool {
    if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        != Some("OnFailure")
    {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(podutil::phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Upstream's `calculateFailedIndexes`: the recorded failed indexes plus
/// those whose newest failed pod used up `backoffLimitPerIndex` or hit a
/// FailIndex rule.
fn calculate_failed_indexes(
    s: &Sync<'_>,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    status: &JobStatus,
) -> IndexSet {
    let mut set = IndexSet::parse(
        status.failed_indexes.as_deref().unwrap_or(""),
        s.completions,
    );
    let limit = spec.backoff_limit_per_index.unwrap_or(0);
    let newly = s
        .pods
        .iter()
        .filter(|p| has_finalizer(p) && s.is_pod_failed(p))
        .filter_map(|p| {
            let ix = s.valid_index(p)?;
            let action = spec
                .pod_failure_policy
                .as_ref()
                .and_then(|pfp| policy::match_failure_policy(pfp, p));
            match action {
                Some(FailureAction::FailIndex) => Some(ix),
                Some(FailureAction::Ignore) => None,
                _ => (annotation_count(p, INDEX_FAILURE_COUNT) + 1 > limit).then_some(ix),
            }
        })
        .collect::<Vec<_>>();
    set.insert_all(newly);
    set
}

/// The newest failed pod of each index (for carrying failure counts and
/// per-index back-off over to the replacement).
fn last_failed_per_index<'p>(s: &Sync<'_>, pods: &'p [Pod]) -> BTreeMap<i32, &'p Pod> {
    let mut out: BTreeMap<i32, &Pod> = BTreeMap::new();
    for p in pods.iter().filter(|p| s.is_pod_failed(p)) {
        let Some(ix) = s.valid_index(p) else { continue };
        let newer = out.get(&ix).is_none_or(|q| {
            annotation_count(p, INDEX_FAILURE_COUNT)
                + annotation_count(p, INDEX_IGNORED_FAILURE_COUNT)
                >= annotation_count(q, INDEX_FAILURE_COUNT)
                    + annotation_count(q, INDEX_IGNORED_FAILURE_COUNT)
        });
        if newer {
            out.insert(ix, p);
        }
    }
    out
}

/// Upstream's `activePodsForRemoval`: for Indexed Jobs pods with invalid or
/// repeated indexes first, then by [`ps::deletion_order`].
fn active_pods_for_removal<'p>(s: &Sync<'_>, pods: &[&'p Pod], at_least: usize) -> Vec<&'p Pod> {
    let mut rm: Vec<&Pod> = Vec::new();
    let mut left: Vec<&Pod> = Vec::new();
    if s.indexed {
        let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
        for p in pods {
            match s.valid_index(p) {
                Some(ix) => by_index.entry(ix).or_default().push(p),
                None => rm.push(p),
            }
        }
        for (_, mut group) in by_index {
            group.sort_by(|a, b| ps::deletion_order(a, b));
            let keep = group.pop();
            rm.extend(group);
            left.extend(keep);
        }
    } else {
        left = pods.to_vec();
    }
    if rm.len() < at_least {
        left.sort_by(|a, b| ps::deletion_order(a, b));
        let n = (at_least - rm.len()).min(left.len());
        rm.extend(left.drain(..n));
    }
    rm
}

/// Upstream's `manageJob`: returns the new number of active pods.
#[allow(clippy::too_many_arguments)]
async fn manage_job(
    s: &mut Sync<'_>,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    active_pods: &[&Pod],
    succeeded: i32,
    succeeded_indexes: &IndexSet,
    failed_indexes: &IndexSet,
    terminating: i32,
    backoff: BackoffRecord,
) -> (i32, Option<kube::Error>) {
    let mut active = active_pods.len() as i32;
    let parallelism = spec.parallelism.unwrap_or(1);
    if s.suspended() {
        let rm = active_pods_for_removal(s, active_pods, active_pods.len());
        let (_, removed, err) = s.delete_job_pods(&rm).await;
        return (active - removed, err);
    }
    let want_active = match spec.completions {
        None if succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    };
    let rm_at_least = (active - want_active).max(0) as usize;
    let mut rm = active_pods_for_removal(s, active_pods, rm_at_least);
    rm.truncate(MAX_CREATE_DELETE_PER_SYNC as usize);
    if !rm.is_empty() {
        let (_, removed, err) = s.delete_job_pods(&rm).await;
        return (active - removed, err);
    }
    let term = if s.only_replace_failed {
        terminating
    } else {
        0
    };
    let mut diff = want_active - term - active;
    if diff <= 0 {
        return (active, None);
    }
    if spec.backoff_limit_per_index.is_none() {
        let left = backoff.remaining(s.now);
        if !left.is_zero() {
            s.requeue_in(left);
            return (active, None);
        }
    }
    diff = diff.min(MAX_CREATE_DELETE_PER_SYNC);
    let pods_snapshot = Arc::clone(&s.pods);
    let last_failed = last_failed_per_index(s, &pods_snapshot);
    let mut indexes: Vec<Option<i32>> = Vec::new();
    if s.indexed {
        let busy: HashSet<i32> = active_pods
            .iter()
            .filter_map(|p| s.valid_index(p))
            .collect();
        let mut min_wait: Option<Duration> = None;
        for ix in 0..s.completions {
            if indexes.len() as i32 >= diff {
                break;
            }
            if succeeded_indexes.has(ix) || failed_indexes.has(ix) || busy.contains(&ix) {
                continue;
            }
            if spec.backoff_limit_per_index.is_some() {
                if let Some(p) = last_failed.get(&ix) {
                    let failures = annotation_count(p, INDEX_FAILURE_COUNT) as u32 + 1;
                    let left = policy::remaining_after(
                        failures,
                        policy::finish_time(p).unwrap_or(s.now),
                        s.now,
                    );
                    if !left.is_zero() {
                        min_wait = Some(min_wait.map_or(left, |m: Duration| m.min(left)));
                        continue;
                    }
                }
            }
            indexes.push(Some(ix));
        }
        if let Some(w) = min_wait {
            s.requeue_in(w);
        }
    } else {
        indexes = vec![None; diff as usize];
    }

    let mut template = spec.template.clone();
    {
        let meta = template.metadata.get_or_insert_with(Default::default);
        let fins = meta.finalizers.get_or_insert_with(Vec::new);
        if !fins.iter().any(|f| f == TRACKING_FINALIZER) {
            fins.push(TRACKING_FINALIZER.into());
        }
    }
    if s.indexed {
        add_completion_index_env(&mut template);
    }
    let owner = podutil::controller_ref_to(&s.job);
    let pods_api = s.pods_api();
    let mut err = None;
    let mut created = 0;
    let mut batch = 1usize;
    let mut queue = indexes.into_iter();
    'outer: loop {
        let chunk: Vec<Option<i32>> = queue.by_ref().take(batch).collect();
        if chunk.is_empty() {
            break;
        }
        for ix in chunk {
            let mut tpl = template.clone();
            let generate_name = match ix {
                Some(i) => {
                    let meta = tpl.metadata.get_or_insert_with(Default::default);
                    meta.annotations
                        .get_or_insert_with(Default::default)
                        .insert(COMPLETION_INDEX.into(), i.to_string());
                    meta.labels
                        .get_or_insert_with(Default::default)
                        .insert(COMPLETION_INDEX.into(), i.to_string());
                    if spec.backoff_limit_per_index.is_some() {
                        let (f, ig) = match last_failed.get(&i) {
                            Some(p) => {
                                let ignored = spec
                                    .pod_failure_policy
                                    .as_ref()
                                    .and_then(|pfp| policy::match_failure_policy(pfp, p))
                                    == Some(FailureAction::Ignore);
                                let f = annotation_count(p, INDEX_FAILURE_COUNT);
                                let ig = annotation_count(p, INDEX_IGNORED_FAILURE_COUNT);
                                if ignored {
                                    (f, ig + 1)
                                } else {
                                    (f + 1, ig)
                                }
                            }
                            None => (0, 0),
                        };
                        let ann = meta.annotations.get_or_insert_with(Default::default);
                        ann.insert(INDEX_FAILURE_COUNT.into(), f.to_string());
                        if ig > 0 {
                            ann.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ig.to_string());
                        }
                    }
                    if let Some(ps) = tpl.spec.as_mut() {
                        ps.hostname = Some(format!("{}-{i}", s.name));
                    }
                    format!("{}-{i}-", s.name)
                }
                None => format!("{}-", s.name),
            };
            let pod =
                podutil::pod_from_typed_template(&tpl, &owner, PodName::Generate(&generate_name));
            let pod: Pod = match serde_json::from_value(pod) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(job = %s.name, error = %e, "cannot build pod");
                    break 'outer;
                }
            };
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    created += 1;
                    s.event(
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    )
                    .await;
                }
                Err(e) => {
                    s.event(
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    )
                    .await;
                    err = Some(e);
                }
            }
        }
        if err.is_some() {
            break;
        }
        batch *= 2;
    }
    active += created;
    (active, err)
}

/// Upstream's `addCompletionIndexEnvVariables`: `JOB_COMPLETION_INDEX` from
/// the completion index annotation, in every container and init container.
fn add_completion_index_env(template: &mut k8s_openapi::api::core::v1::PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let env = EnvVar {
        name: "JOB_COMPLETION_INDEX".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let list = c.env.get_or_insert_with(Vec::new);
        if !list.iter().any(|e| e.name == env.name) {
            list.push(env.clone());
        }
    }
}

/// Upstream's `trackJobStatusAndRemoveFinalizers` and
/// `flushUncountedAndRemoveFinalizers`.
#[allow(clippy::too_many_arguments)]
async fn track_and_remove_finalizers(
    s: &mut Sync<'_>,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    mut status: JobStatus,
    mut finished_cond: Option<JobCondition>,
    prev_succeeded_indexes: &IndexSet,
    mut succeeded_indexes: IndexSet,
    failed_indexes: IndexSet,
    terminating: i32,
    new_backoff: BackoffRecord,
) -> Result<()> {
    let old = s.job.status.clone().unwrap_or_default();
    let uid_of = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let mut with_finalizer: HashSet<String> = s
        .pods
        .iter()
        .filter(|p| has_finalizer(p))
        .map(uid_of)
        .collect();
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut needs_flush = clean_uncounted(&mut status, &mut uncounted, &with_finalizer);
    if status != old {
        needs_flush = true;
    }
    let unc_succ: HashSet<String> = uncounted
        .succeeded
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let unc_fail: HashSet<String> = uncounted
        .failed
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let all_pods = Arc::clone(&s.pods);
    let mut pods: Vec<&Pod> = all_pods.iter().collect();
    if s.indexed {
        pods.sort_by_key(|p| completion_index(p).unwrap_or(i32::MAX));
    }
    let failing = finished_cond
        .as_ref()
        .is_some_and(|c| c.type_ != "SuccessCriteriaMet" && c.type_ != "Complete");
    let mut to_remove: Vec<&Pod> = Vec::new();
    let mut new_indexes: Vec<i32> = Vec::new();
    for pod in pods {
        if !has_finalizer(pod) {
            continue;
        }
        let failed = s.is_pod_failed(pod);
        let can_remove = finished_cond.is_some() || podutil::phase(pod) == "Succeeded" || failed;
        if !can_remove {
            continue;
        }
        to_remove.push(pod);
        let uid = uid_of(pod);
        if podutil::phase(pod) == "Succeeded" && !unc_fail.contains(&uid) {
            if s.indexed {
                if let Some(ix) = s.valid_index(pod) {
                    if !prev_succeeded_indexes.has(ix) {
                        new_indexes.push(ix);
                        needs_flush = true;
                    }
                }
            } else if !unc_succ.contains(&uid) {
                needs_flush = true;
                uncounted.succeeded.get_or_insert_with(Vec::new).push(uid);
            }
        } else if (failed || failing)
            && !unc_fail.contains(&uid)
            && (!s.indexed || s.valid_index(pod).is_some())
        {
            let counts = match &spec.pod_failure_policy {
                Some(pfp) => policy::match_failure_policy(pfp, pod) != Some(FailureAction::Ignore),
                None => true,
            };
            if counts {
                needs_flush = true;
                uncounted.failed.get_or_insert_with(Vec::new).push(uid);
            }
        }
        let n = new_indexes.len()
            + uncounted.succeeded.as_ref().map_or(0, Vec::len)
            + uncounted.failed.as_ref().map_or(0, Vec::len);
        if n >= MAX_UNCOUNTED {
            break;
        }
    }
    if s.indexed {
        succeeded_indexes.insert_all(new_indexes);
        let txt = succeeded_indexes.to_string();
        if Some(&txt) != old.completed_indexes.as_ref() {
            needs_flush = true;
        }
        status.succeeded = Some(succeeded_indexes.total());
        status.completed_indexes = Some(txt);
        if spec.backoff_limit_per_index.is_some() {
            let f = failed_indexes.to_string();
            if status.failed_indexes.as_ref() != Some(&f) {
                needs_flush = true;
            }
            status.failed_indexes = Some(f);
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(fc) = finished_cond.take() {
        finished_cond = Some(match fc.type_.as_str() {
            "FailureTarget" => {
                conditions.push(fc.clone());
                needs_flush = true;
                new_condition(
                    "Failed",
                    fc.reason.as_deref().unwrap_or(""),
                    fc.message.as_deref().unwrap_or(""),
                    s.now,
                )
            }
            "SuccessCriteriaMet" => {
                if !conditions
                    .iter()
                    .any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
                {
                    conditions.push(fc.clone());
                    needs_flush = true;
                }
                new_condition(
                    "Complete",
                    fc.reason.as_deref().unwrap_or(""),
                    fc.message.as_deref().unwrap_or(""),
                    s.now,
                )
            }
            _ => fc,
        });
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(uncounted.succeeded.clone().unwrap_or_default()),
        failed: Some(uncounted.failed.clone().unwrap_or_default()),
    });

    // 1. Record the uncounted pods (and interim conditions).
    if needs_flush {
        s.flush(&status).await?;
        if let Ok(mut b) = s.ctx.backoff.lock() {
            b.insert(key(&s.job), new_backoff);
        }
        needs_flush = false;
    }
    // 2. Remove the finalizers.
    let mut rm_err = None;
    for p in &to_remove {
        match s.remove_finalizer(p).await {
            Ok(()) => {
                with_finalizer.remove(&uid_of(p));
            }
            Err(e) => rm_err = Some(e),
        }
    }
    // 3. Count them.
    if clean_uncounted(&mut status, &mut uncounted, &with_finalizer) {
        needs_flush = true;
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(uncounted.succeeded.clone().unwrap_or_default()),
        failed: Some(uncounted.failed.clone().unwrap_or_default()),
    });
    if let Some(e) = rm_err {
        if needs_flush {
            s.flush(&status).await?;
        }
        return Err(api_err(&s.name)(e));
    }
    // 4. Terminal condition once nothing is uncounted or terminating.
    let mut job_finished = false;
    if let Some(fc) = &finished_cond {
        let pending = uncounted.succeeded.as_ref().map_or(0, Vec::len)
            + uncounted.failed.as_ref().map_or(0, Vec::len);
        if pending == 0 && terminating == 0 {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            ensure_condition(
                conds,
                &fc.type_,
                "True",
                fc.reason.as_deref().unwrap_or(""),
                fc.message.as_deref().unwrap_or(""),
                s.now,
            );
            if fc.type_ == "Complete" {
                status.completion_time = Some(Time(s.now));
            }
            job_finished = true;
            needs_flush = true;
        }
    }
    if needs_flush {
        s.flush(&status).await?;
        if job_finished {
            if let Some(fc) = &finished_cond {
                if fc.type_ == "Complete" {
                    if spec
                        .completions
                        .is_some_and(|c| status.succeeded.unwrap_or(0) > c)
                    {
                        s.event(
                            EventType::Warning,
                            "TooManySucceededPods",
                            "Too many succeeded pods running after completion count reached".into(),
                        )
                        .await;
                    }
                    s.event(EventType::Normal, "Completed", "Job completed".into())
                        .await;
                } else {
                    s.event(
                        EventType::Warning,
                        fc.reason.as_deref().unwrap_or("Failed"),
                        fc.message.clone().unwrap_or_default(),
                    )
                    .await;
                }
            }
        }
    }
    Ok(())
}

/// Upstream's `cleanUncountedPodsWithoutFinalizers`: uncounted pods that no
/// longer hold the finalizer move into the counters.
fn clean_uncounted(
    status: &mut JobStatus,
    uncounted: &mut UncountedTerminatedPods,
    with_finalizer: &HashSet<String>,
) -> bool {
    let mut changed = false;
    let succ = uncounted.succeeded.get_or_insert_with(Vec::new);
    let before = succ.len();
    succ.retain(|u| with_finalizer.contains(u));
    if succ.len() != before {
        changed = true;
        status.succeeded = Some(status.succeeded.unwrap_or(0) + (before - succ.len()) as i32);
    }
    let fail = uncounted.failed.get_or_insert_with(Vec::new);
    let before = fail.len();
    fail.retain(|u| with_finalizer.contains(u));
    if fail.len() != before {
        changed = true;
        status.failed = Some(status.failed.unwrap_or(0) + (before - fail.len()) as i32);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_condition_does_not_add_false() {
        let now = Timestamp::now();
        let mut list = Vec::new();
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert!(list.is_empty());
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(!ensure_condition(
            &mut list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(ensure_condition(
            &mut list,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, "False");
        assert_eq!(list[0].reason.as_deref(), Some("JobResumed"));
    }

    #[test]
    fn uncounted_pods_move_to_counters_once_finalizer_is_gone() {
        let mut status = JobStatus {
            succeeded: Some(1),
            failed: Some(2),
            ..Default::default()
        };
        let mut unc = UncountedTerminatedPods {
            succeeded: Some(vec!["a".into(), "b".into()]),
            failed: Some(vec!["c".into()]),
        };
        let with: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &mut unc, &with));
        assert_eq!(status.succeeded, Some(2));
        assert_eq!(status.failed, Some(3));
        assert_eq!(unc.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(unc.failed, Some(vec![]));
        assert!(!clean_uncounted(&mut status, &mut unc, &with));
    }

    #[test]
    fn completion_index_env_uses_the_annotation() {
        let mut tpl: k8s_openapi::api::core::v1::PodTemplateSpec = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}
        }))
        .expect("template");
        add_completion_index_env(&mut tpl);
        add_completion_index_env(&mut tpl);
        let v = serde_json::to_value(&tpl).expect("json");
        for path in ["/spec/containers/0/env", "/spec/initContainers/0/env"] {
            assert_eq!(
                v.pointer(path),
                Some(
                    &json!([{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}])
                )
            );
        }
    }

    #[test]
    fn on_failure_restarts_count_against_backoff_limit() {
        let spec: k8s_openapi::api::batch::v1::JobSpec = serde_json::from_value(json!({
            "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "a"}]}}
        }))
        .expect("spec");
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "a", "image": "", "imageID": "", "ready": false, "restartCount": 2}]}}))
        .expect("pod");
        assert!(past_backoff_limit_on_failure(
            &spec,
            std::slice::from_ref(&pod),
            2
        ));
        assert!(!past_backoff_limit_on_failure(
            &spec,
            std::slice::from_ref(&pod),
            3
        ));
        assert!(past_backoff_limit_on_failure(
            &spec,
            std::slice::from_ref(&pod),
            0
        ));
    }
}
