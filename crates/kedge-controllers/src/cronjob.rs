//! The CronJob controller (upstream `pkg/controller/cronjob`, the v2
//! controller, 1.33 semantics): creates a Job named
//! `<cronjob>-<scheduled time in minutes since the epoch>` for each
//! schedule time, honouring `timeZone`, `concurrencyPolicy`,
//! `startingDeadlineSeconds`, `suspend` and the history limits, and keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.
//!
//! It sleeps until the next schedule time (one timer per CronJob) and
//! otherwise wakes only on CronJob and Job watch events.

pub mod schedule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use self::schedule::Schedule;
use crate::util::pods as podutil;
use crate::util::workload::{error_policy, Context, Error, ObjectSync};

/// The annotation with the Job's scheduled time (RFC 3339, in the
/// CronJob's time zone, UTC when it has none).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream gives up listing missed start times past this many.
const TOO_MANY_MISSED: u32 = 100;

/// Runs the CronJob controller (until its task is aborted).
pub async fn run(client: Client) {
    let ctx = Context::new(client.clone(), "cronjob-controller");
    Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default())
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

fn finished_condition(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// Minutes since the epoch: the suffix of a scheduled Job's name.
pub fn time_hash_in_minutes(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

/// Go's `time.RFC3339` rendering of `t` in `tz` (`Z` for UTC).
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    let offset = z.offset().seconds();
    let base = z.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if offset == 0 {
        format!("{base}Z")
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        format!("{base}{sign}{:02}:{:02}", o / 3600, (o % 3600) / 60)
    }
}

/// Upstream's `mostRecentScheduleTime`: the latest schedule time in
/// `(earliest, now]` and how many there were (capped past 100).
pub fn most_recent_schedule_time(
    sched: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, u32) {
    let mut t = earliest;
    let mut last = None;
    let mut n = 0;
    while let Some(next) = sched.next_after(t, tz) {
        if next > now {
            break;
        }
        last = Some(next);
        n += 1;
        t = next;
        if n > TOO_MANY_MISSED {
            // Jump close to now: only the most recent time matters.
            let back = now.as_second() - 7 * 24 * 3600;
            if t.as_second() < back {
                t = Timestamp::from_second(back).unwrap_or(t);
            }
            if n > TOO_MANY_MISSED + 100_000 {
                break;
            }
        }
    }
    (last, n)
}

/// The earliest time the controller still schedules from
/// (`lastScheduleTime`, else creation, moved up to `now -
/// startingDeadlineSeconds`).
fn earliest_time(cj: &CronJob, now: Timestamp) -> Timestamp {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
        let deadline = Timestamp::from_second(now.as_second() - sds).unwrap_or(now);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    earliest
}

/// The Job for one schedule time (upstream `getJobFromTemplate2`).
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Value {
    let spec = cj.spec.as_ref();
    let tpl = spec.map(|s| &s.job_template);
    let meta = tpl.and_then(|t| t.metadata.as_ref());
    let mut annotations: BTreeMap<String, String> =
        meta.and_then(|m| m.annotations.clone()).unwrap_or_default();
    let ann_tz = spec
        .and_then(|s| s.time_zone.as_deref())
        .and_then(|n| TimeZone::get(n).ok())
        .unwrap_or(TimeZone::UTC);
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339_in(scheduled, &ann_tz));
    let labels = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": format!("{}-{}", cj.name_any(), time_hash_in_minutes(scheduled)),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [podutil::controller_ref_to(cj)],
        },
        "spec": tpl.and_then(|t| t.spec.as_ref()).map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).unwrap_or_else(|| json!({})),
    })
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

type Sync<'a> = ObjectSync<'a, CronJob>;

impl Sync<'_> {
    fn jobs_api(&self) -> Api<Job> {
        self.api()
    }

    async fn delete_job(&self, name: &str) -> bool {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        self.delete_recorded::<Job>(name, &dp, format!("Deleted job {name}"), |e| {
            format!("Deleted job: {e}")
        })
        .await
        .is_ok()
    }
}

async fn reconcile(cached: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(s) = ObjectSync::fetch(&ctx, cached.as_ref()).await? else {
        return Ok(Action::await_change());
    };
    let jobs: Vec<Job> = s.list_controlled("").await?;
    let now = Timestamp::now();
    let mut status = s.obj.status.clone().unwrap_or_default();
    let old_status = status.clone();
    let mut active = status.active.clone().unwrap_or_default();

    // Reconcile the active list with the Jobs that exist.
    for j in &jobs {
        let in_active = active.iter().any(|r| r.uid == j.metadata.uid);
        match (in_active, finished_condition(j)) {
            (false, None) => {
                s.event(
                    EventType::Warning,
                    "UnexpectedJob",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        j.name_any()
                    ),
                )
                .await;
            }
            (true, Some(cond)) => {
                active.retain(|r| r.uid != j.metadata.uid);
                s.event(
                    EventType::Normal,
                    "SawCompletedJob",
                    format!("Saw completed job: {}, condition: {cond}", j.name_any()),
                )
                .await;
            }
            _ => {}
        }
        if finished_condition(j) == Some("Complete") {
            if let Some(ct) = j.status.as_ref().and_then(|st| st.completion_time.as_ref()) {
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|l| l.0 < ct.0)
                {
                    status.last_successful_time = Some(ct.clone());
                }
            }
        }
    }
    let mut kept = Vec::new();
    for r in active {
        let exists = jobs.iter().any(|j| j.metadata.uid == r.uid);
        if exists {
            kept.push(r);
            continue;
        }
        let name = r.name.clone().unwrap_or_default();
        match s.jobs_api().get_opt(&name).await.map_err(s.err())? {
            Some(j) if j.metadata.uid == r.uid => kept.push(r),
            _ => {
                s.event(
                    EventType::Normal,
                    "MissingJob",
                    format!("Active job went missing: {name}"),
                )
                .await;
            }
        }
    }
    active = kept;

    let spec = s.obj.spec.clone().unwrap_or_default();
    let mut requeue = None;
    if s.obj.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true) {
        requeue = schedule_next(&s, &spec, &mut status, &mut active, now).await?;
    }
    status.active = Some(active.clone());
    cleanup_finished_jobs(&s, &spec, &jobs).await;
    if status != old_status {
        let patch = json!({
            "metadata": {"resourceVersion": s.obj.metadata.resource_version},
            "status": {
                "active": status.active,
                "lastScheduleTime": status.last_schedule_time,
                "lastSuccessfulTime": status.last_successful_time,
            }
        });
        match s
            .api::<CronJob>()
            .patch_status(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(100)))
            }
            Err(e) => return Err(s.err()(e)),
        }
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The part of upstream's `syncCronJob` that starts a Job when one is due.
/// Returns when to look again.
async fn schedule_next(
    s: &Sync<'_>,
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
    active: &mut Vec<ObjectReference>,
    now: Timestamp,
) -> Result<Option<Duration>, Error> {
    let tz = match spec.time_zone.as_deref() {
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => {
                s.event(
                    EventType::Warning,
                    "UnknownTimeZone",
                    format!("invalid timeZone: {name:?}: {e}"),
                )
                .await;
                return Ok(None);
            }
        },
        None => TimeZone::system(),
    };
    let sched = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            s.event(
                EventType::Warning,
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            )
            .await;
            return Ok(None);
        }
    };
    // With status.lastScheduleTime fresh from this sync.
    let mut view = s.obj.clone();
    view.status = Some(status.clone());
    let earliest = earliest_time(&view, now);
    let (most_recent, missed) = if earliest > now {
        (None, 0)
    } else {
        most_recent_schedule_time(&sched, &tz, earliest, now)
    };
    let wait_for_next = |from: Timestamp| -> Option<Duration> {
        let next = sched.next_after(from, &tz)?;
        let ms = next.as_millisecond() - now.as_millisecond();
        Some(Duration::from_millis(ms.max(0) as u64 + 100))
    };
    let next_wait = wait_for_next(most_recent.unwrap_or(now).max(now));
    if missed > TOO_MANY_MISSED {
        s.event(
            EventType::Warning,
            "TooManyMissedTimes",
            format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        )
        .await;
    }
    let Some(scheduled) = most_recent else {
        return Ok(next_wait);
    };
    if let Some(sds) = spec.starting_deadline_seconds {
        if scheduled.as_second() + sds < now.as_second() {
            s.event(
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled
                        .to_zoned(tz.clone())
                        .strftime("%a, %d %b %Y %H:%M:%S %z")
                ),
            )
            .await;
            return Ok(next_wait);
        }
    }
    let job_name = format!("{}-{}", s.name, time_hash_in_minutes(scheduled));
    let already = status
        .last_schedule_time
        .as_ref()
        .is_some_and(|t| t.0 == scheduled);
    if already
        || active
            .iter()
            .any(|r| r.name.as_deref() == Some(job_name.as_str()))
    {
        return Ok(next_wait);
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        s.event(
            EventType::Normal,
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .into(),
        )
        .await;
        return Ok(next_wait);
    }
    if policy == "Replace" {
        let mut left = Vec::new();
        for r in active.drain(..) {
            let name = r.name.clone().unwrap_or_default();
            if !s.delete_job(&name).await {
                left.push(r);
            }
        }
        *active = left;
    }
    let job: Job = match serde_json::from_value(job_from_template(&s.obj, scheduled)) {
        Ok(j) => j,
        Err(e) => {
            s.event(
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {e}"),
            )
            .await;
            return Ok(next_wait);
        }
    };
    match s.jobs_api().create(&PostParams::default(), &job).await {
        Ok(created) => {
            s.event(
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {}", created.name_any()),
            )
            .await;
            active.push(job_ref(&created));
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Created before (a crash between create and status write):
            // adopt it if it is ours and still running.
            if let Some(j) = s.jobs_api().get_opt(&job_name).await.map_err(s.err())? {
                let ours = podutil::controlled_by(&j.metadata, s.uid());
                if ours
                    && finished_condition(&j).is_none()
                    && !active.iter().any(|r| r.uid == j.metadata.uid)
                {
                    active.push(job_ref(&j));
                }
            }
        }
        Err(e) => {
            s.event(
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {e}"),
            )
            .await;
            return Err(s.err()(e));
        }
    }
    status.last_schedule_time = Some(Time(scheduled));
    Ok(next_wait)
}

/// Upstream's `cleanupFinishedJobs`: keep the newest
/// `successfulJobsHistoryLimit` Complete and `failedJobsHistoryLimit`
/// Failed Jobs (by start time), delete the rest.
async fn cleanup_finished_jobs(
    s: &Sync<'_>,
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    jobs: &[Job],
) {
    for (cond, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished_condition(j) == Some(cond))
            .collect();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        done.sort_by(|a, b| by_start_time(a, b));
        for j in done.into_iter().take(excess) {
            s.delete_job(&j.name_any()).await;
        }
    }
}

/// Upstream's `byJobStartTime`: started Jobs oldest first, unstarted last,
/// ties by name.
fn by_start_time(a: &Job, b: &Job) -> std::cmp::Ordering {
    let st = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    match (st(a), st(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.name_any().cmp(&b.name_any()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn cronjob(v: Value) -> CronJob {
        serde_json::from_value(v).expect("cronjob")
    }

    #[test]
    fn job_names_and_scheduled_annotation() {
        let cj = cronjob(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u1"},
            "spec": {"schedule": "0 9 * * *", "timeZone": "Europe/Berlin", "jobTemplate": {
                "metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
            }}
        }));
        let t = ts("2025-01-15T08:00:00Z");
        let job = job_from_template(&cj, t);
        assert_eq!(
            job["metadata"]["name"],
            json!(format!("hello-{}", t.as_second() / 60))
        );
        assert_eq!(job["metadata"]["name"], json!("hello-28948800"));
        assert_eq!(
            job["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            json!("2025-01-15T09:00:00+01:00")
        );
        assert_eq!(job["metadata"]["annotations"]["x"], json!("y"));
        assert_eq!(job["metadata"]["labels"]["a"], json!("b"));
        assert_eq!(
            job["metadata"]["ownerReferences"][0]["kind"],
            json!("CronJob")
        );
        assert_eq!(
            job["metadata"]["ownerReferences"][0]["controller"],
            json!(true)
        );
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["image"],
            json!("i")
        );
        let utc = cronjob(
            json!({"metadata": {"name": "u"}, "spec": {"schedule": "* * * * *", "jobTemplate": {}}}),
        );
        assert_eq!(
            job_from_template(&utc, t)["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            json!("2025-01-15T08:00:00Z")
        );
    }

    #[test]
    fn most_recent_and_missed_times() {
        let s = Schedule::parse("*/10 * * * *").expect("parse");
        let (last, n) = most_recent_schedule_time(
            &s,
            &TimeZone::UTC,
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-01T00:35:00Z"),
        );
        assert_eq!(last, Some(ts("2025-01-01T00:30:00Z")));
        assert_eq!(n, 3);
        let (none, n) = most_recent_schedule_time(
            &s,
            &TimeZone::UTC,
            ts("2025-01-01T00:30:00Z"),
            ts("2025-01-01T00:35:00Z"),
        );
        assert_eq!((none, n), (None, 0));
        let every_minute = Schedule::parse("* * * * *").expect("parse");
        let (last, n) = most_recent_schedule_time(
            &every_minute,
            &TimeZone::UTC,
            ts("2025-01-01T00:00:00Z"),
            ts("2025-01-02T00:00:30Z"),
        );
        assert_eq!(last, Some(ts("2025-01-02T00:00:00Z")));
        assert!(n > TOO_MANY_MISSED);
    }

    #[test]
    fn starting_deadline_moves_earliest_up() {
        let cj = cronjob(json!({
            "metadata": {"name": "c", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"schedule": "* * * * *", "startingDeadlineSeconds": 120, "jobTemplate": {}},
        }));
        assert_eq!(
            earliest_time(&cj, ts("2025-01-01T01:00:00Z")),
            ts("2025-01-01T00:58:00Z")
        );
        assert_eq!(
            earliest_time(&cj, ts("2025-01-01T00:01:00Z")),
            ts("2025-01-01T00:00:00Z")
        );
    }

    #[test]
    fn rfc3339_matches_go() {
        let t = ts("2025-07-01T12:00:00Z");
        assert_eq!(rfc3339_in(t, &TimeZone::UTC), "2025-07-01T12:00:00Z");
        assert_eq!(
            rfc3339_in(t, &TimeZone::get("America/New_York").expect("tz")),
            "2025-07-01T08:00:00-04:00"
        );
        assert_eq!(
            rfc3339_in(t, &TimeZone::get("Asia/Kolkata").expect("tz")),
            "2025-07-01T17:30:00+05:30"
        );
    }

    #[test]
    fn history_order() {
        let j = |name: &str, start: Option<&str>| -> Job {
            serde_json::from_value(
                json!({"metadata": {"name": name}, "status": {"startTime": start}}),
            )
            .expect("job")
        };
        let mut v = [
            j("c", None),
            j("b", Some("2025-01-02T00:00:00Z")),
            j("a", Some("2025-01-01T00:00:00Z")),
        ];
        v.sort_by(by_start_time);
        let names: Vec<String> = v.iter().map(|x| x.name_any()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
