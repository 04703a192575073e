//! The pure parts of the Job controller: completion-index sets (the
//! `completedIndexes`/`failedIndexes` interval strings), pod failure policy
//! matching, success policy matching and the pod failure back-off.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{PodFailurePolicy, SuccessPolicy};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// Upstream's `DefaultJobPodFailureBackOff` and `MaxJobPodFailureBackOff`.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// A set of completion indexes kept as sorted, disjoint, non-adjacent
/// closed intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexSet(Vec<(i32, i32)>);

impl IndexSet {
    /// Parses "1,3-5,7"; entries that do not parse or lie outside
    /// `[0, completions)` are dropped (upstream logs and skips them).
    pub fn parse(s: &str, completions: i32) -> IndexSet {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(lo), Ok(hi)) = (lo, hi) else { continue };
            if lo < 0 || lo > hi || lo >= completions {
                continue;
            }
            out.extend((lo..=hi.min(completions - 1)).map(|i| (i, i)));
        }
        let mut set = IndexSet::default();
        set.insert_all(out.into_iter().map(|(i, _)| i));
        set
    }

    pub fn insert_all(&mut self, items: impl IntoIterator<Item = i32>) {
        let mut all: Vec<i32> = self
            .0
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .chain(items)
            .collect();
        all.sort_unstable();
        all.dedup();
        let mut ranges: Vec<(i32, i32)> = Vec::new();
        for i in all {
            match ranges.last_mut() {
                Some(last) if last.1 + 1 == i => last.1 = i,
                _ => ranges.push((i, i)),
            }
        }
        self.0 = ranges;
    }

    pub fn has(&self, i: i32) -> bool {
        self.0.iter().any(|&(a, b)| a <= i && i <= b)
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|&(a, b)| b - a + 1).sum()
    }
}

impl std::fmt::Display for IndexSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// What a pod failure policy rule does with a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    FailJob(String),
    FailIndex,
    Ignore,
    Count,
}

/// Upstream's `matchPodFailurePolicy`: the first rule that matches a failed
/// pod, as an action (`FailJob` carries upstream's message). `None` when no
/// rule matches (the failure counts).
pub fn match_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> Option<FailureAction> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let status = pod.status.as_ref();
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = rule.action.as_str();
        if let Some(req) = &rule.on_exit_codes {
            let statuses = status
                .into_iter()
                .flat_map(|s| {
                    s.container_statuses
                        .iter()
                        .flatten()
                        .chain(s.init_container_statuses.iter().flatten())
                })
                .collect::<Vec<&ContainerStatus>>();
            let hit = statuses.into_iter().find_map(|cs| {
                if req.container_name.as_deref().is_some_and(|n| n != cs.name) {
                    return None;
                }
                let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
                let listed = req.values.contains(&code);
                let matches = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                (code != 0 && matches).then(|| (cs.name.clone(), code))
            });
            if let Some((container, code)) = hit {
                return Some(to_action(action, || {
                    format!(
                        "Container {container} for pod {ns}/{name} failed with exit code {code} matching {action} rule at index {index}"
                    )
                }));
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conds = status.and_then(|s| s.conditions.as_ref());
            let hit = patterns.iter().find_map(|p| {
                conds?
                    .iter()
                    .find(|c| {
                        // The API server defaults an unset status to True.
                        let want = if p.status.is_empty() {
                            "True"
                        } else {
                            p.status.as_str()
                        };
                        c.type_ == p.type_ && c.status == want
                    })
                    .map(|c| c.type_.clone())
            });
            if let Some(cond) = hit {
                return Some(to_action(action, || {
                    format!("Pod {ns}/{name} has condition {cond} matching {action} rule at index {index}")
                }));
            }
        }
    }
    None
}

fn to_action(action: &str, msg: impl FnOnce() -> String) -> FailureAction {
    match action {
        "FailJob" => FailureAction::FailJob(msg()),
        "FailIndex" => FailureAction::FailIndex,
        "Ignore" => FailureAction::Ignore,
        _ => FailureAction::Count,
    }
}

/// Upstream's `matchSuccessPolicy` (Indexed Jobs): the message of the first
/// rule that the succeeded indexes satisfy.
pub fn match_success_policy(
    policy: &SuccessPolicy,
    completions: i32,
    succeeded: &IndexSet,
) -> Option<String> {
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(ix), count) => {
                let wanted = IndexSet::parse(ix, completions);
                let hits = wanted
                    .0
                    .iter()
                    .flat_map(|&(a, b)| a..=b)
                    .filter(|&i| succeeded.has(i))
                    .count() as i32;
                match count {
                    Some(c) => hits >= c,
                    None => hits == wanted.total(),
                }
            }
            (None, Some(c)) => succeeded.total() >= c,
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// When a pod finished (the latest container finish time, else its
/// deletion or creation time).
pub fn finish_time(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let latest = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    latest
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Upstream's back-off record: failures since the last success and when
/// the last one happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after newly finished pods (`(finish time, succeeded)`).
    pub fn with_finished(mut self, mut finished: Vec<(Timestamp, bool)>) -> BackoffRecord {
        finished.sort();
        for (t, ok) in finished {
            if ok {
                self = BackoffRecord::default();
            } else {
                self.failures_after_last_success += 1;
                self.last_failure = Some(self.last_failure.map_or(t, |l| l.max(t)));
            }
        }
        self
    }

    /// Time left before the next pod may be created.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        remaining_after(self.failures_after_last_success, last, now)
    }
}

/// `10s * 2^(failures-1)`, capped at 10 minutes, counted from `last`.
pub fn remaining_after(failures: u32, last: Timestamp, now: Timestamp) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exp = failures.saturating_sub(1).min(16);
    let backoff = DEFAULT_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_sets_round_trip_and_merge() {
        let mut s = IndexSet::parse("1,3-5,7", 10);
        assert_eq!(s.to_string(), "1,3-5,7");
        assert_eq!(s.total(), 5);
        assert!(s.has(4) && !s.has(2));
        s.insert_all([2, 6]);
        assert_eq!(s.to_string(), "1-7");
        assert_eq!(IndexSet::parse("0-3,9", 5).to_string(), "0-3");
        assert_eq!(IndexSet::parse("", 5).to_string(), "");
        assert_eq!(IndexSet::parse("x,2", 5).to_string(), "2");
    }

    fn failed_pod(exit: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [{
                "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit}}
            }]}
        }))
        .expect("pod")
    }

    fn policy(v: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(v).expect("policy")
    }

    #[test]
    fn failure_policy_rules_in_order() {
        let p = policy(json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}}
        ]}));
        assert_eq!(
            match_failure_policy(&p, &failed_pod(42, json!([]))),
            Some(FailureAction::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()
            ))
        );
        assert_eq!(
            match_failure_policy(&p, &failed_pod(1, json!([]))),
            Some(FailureAction::Count)
        );
        assert_eq!(
            match_failure_policy(
                &p,
                &failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]))
            ),
            Some(FailureAction::Ignore)
        );
        // Exit code 0 never matches, even NotIn.
        let only_notin = policy(
            json!({"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}),
        );
        assert_eq!(
            match_failure_policy(&only_notin, &failed_pod(0, json!([]))),
            None
        );
        let cond = policy(
            json!({"rules": [{"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue"}]}]}),
        );
        assert_eq!(
            match_failure_policy(
                &cond,
                &failed_pod(1, json!([{"type": "ConfigIssue", "status": "True"}]))
            ),
            Some(FailureAction::FailJob(
                "Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()
            ))
        );
        assert_eq!(
            match_failure_policy(
                &cond,
                &failed_pod(1, json!([{"type": "ConfigIssue", "status": "False"}]))
            ),
            None
        );
    }

    #[test]
    fn success_policy() {
        let p: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2", "succeededCount": 2},
            {"succeededCount": 4}
        ]}))
        .expect("policy");
        assert_eq!(
            match_success_policy(&p, 5, &IndexSet::parse("0,4", 5)),
            None
        );
        assert_eq!(
            match_success_policy(&p, 5, &IndexSet::parse("0,2", 5)).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            match_success_policy(&p, 5, &IndexSet::parse("0,3-5", 6)).as_deref(),
            Some("Matched rules at index 1")
        );
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().expect("ts");
        let t = |s: i64| {
            t0.checked_add(jiff::SignedDuration::from_secs(s))
                .expect("ts")
        };
        let r = BackoffRecord::default().with_finished(vec![(t(0), false)]);
        assert_eq!(r.remaining(t(4)), Duration::from_secs(6));
        let r = r.with_finished(vec![(t(20), false)]);
        assert_eq!(r.remaining(t(20)), Duration::from_secs(20));
        let r = r.with_finished(vec![(t(30), true)]);
        assert_eq!(r.remaining(t(30)), Duration::ZERO);
        let many = BackoffRecord {
            failures_after_last_success: 30,
            last_failure: Some(t0),
        };
        assert_eq!(many.remaining(t0), MAX_BACKOFF);
    }
}
