//! A pod's status computed as upstream's kubelet does
//! (`generateAPIPodStatus`, `getPhase`, `convertToAPIContainerStatuses`,
//! `pkg/kubelet/status/generate.go`), from what the runtime reports and what
//! the pod worker decided (waiting reasons, probe results).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// A container as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    /// The restart count this container was created with.
    pub attempt: u32,
    pub sandbox_id: String,
    pub state: RunState,
    /// Nanoseconds since the epoch (0 when unset).
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    /// The termination message (file or log tail) once exited.
    pub message: String,
    pub image_ref: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// Why a container is not running, as the worker decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

impl Waiting {
    pub fn new(reason: &str, message: impl Into<String>) -> Waiting {
        Waiting {
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything `compute` needs.
#[derive(Debug, Default)]
pub struct StatusInputs<'a> {
    pub containers: &'a [ObservedContainer],
    /// By container name.
    pub waiting: HashMap<String, Waiting>,
    /// Readiness by container id (absent: no readiness probe result yet).
    pub ready: HashMap<String, bool>,
    /// Startup probe passed, by container id (absent: no startup probe).
    pub started: HashMap<String, bool>,
    pub sandbox_ready: bool,
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    /// `containerd` (the runtime's name for container IDs).
    pub runtime_name: String,
    /// The phase is final and the worker says why (activeDeadlineSeconds...).
    pub failed: Option<(String, String)>,
}

/// RFC 3339 with seconds, as the API shows times.
pub fn rfc3339_nanos(nanos: i64) -> Option<String> {
    if nanos <= 0 {
        return None;
    }
    let ts = jiff::Timestamp::from_nanosecond(nanos as i128).ok()?;
    let ts = ts.round(jiff::Unit::Second).unwrap_or(ts);
    Some(format!("{ts}"))
}

pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    format!("{}", now.round(jiff::Unit::Second).unwrap_or(now))
}

fn spec_containers<'a>(pod: &'a Value, key: &str) -> &'a [Value] {
    pod["spec"][key]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Value) -> bool {
    c["restartPolicy"].as_str() == Some("Always")
}

/// The containers of `name`, newest first.
pub fn history<'a>(containers: &'a [ObservedContainer], name: &str) -> Vec<&'a ObservedContainer> {
    let mut v: Vec<&ObservedContainer> = containers.iter().filter(|c| c.name == name).collect();
    v.sort_by(|a, b| {
        b.attempt
            .cmp(&a.attempt)
            .then(b.created_at.cmp(&a.created_at))
    });
    v
}

fn terminated(c: &ObservedContainer, runtime: &str) -> Value {
    let mut t = Map::new();
    t.insert("exitCode".into(), json!(c.exit_code));
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    t.insert("reason".into(), json!(reason));
    if !c.message.is_empty() {
        t.insert("message".into(), json!(c.message));
    }
    t.insert(
        "startedAt".into(),
        json!(rfc3339_nanos(c.started_at).or_else(|| rfc3339_nanos(c.created_at))),
    );
    t.insert("finishedAt".into(), json!(rfc3339_nanos(c.finished_at)));
    t.insert("containerID".into(), json!(format!("{runtime}://{}", c.id)));
    Value::Object(t)
}

fn container_status(spec: &Value, inputs: &StatusInputs<'_>, init: bool) -> Value {
    let name = spec["name"].as_str().unwrap_or("");
    let hist = history(inputs.containers, name);
    let runtime = inputs.runtime_name.as_str();
    let mut st = Map::new();
    st.insert("name".into(), json!(name));
    let mut state = json!({});
    let mut last_state = json!({});
    let mut ready = false;
    let mut started = Value::Bool(false);
    let mut restart_count = 0u32;
    let waiting = inputs.waiting.get(name);
    match hist.first() {
        Some(cur) => {
            restart_count = cur.attempt;
            st.insert(
                "containerID".into(),
                json!(format!("{runtime}://{}", cur.id)),
            );
            let prev = hist.get(1).filter(|p| p.state == RunState::Exited);
            match cur.state {
                RunState::Running => {
                    state = json!({"running": {"startedAt": rfc3339_nanos(cur.started_at)}});
                    if let Some(p) = prev {
                        last_state = json!({ "terminated": terminated(p, runtime) });
                    }
                    let startup_ok = inputs.started.get(&cur.id).copied().unwrap_or(true);
                    started = Value::Bool(startup_ok);
                    ready = startup_ok
                        && inputs
                            .ready
                            .get(&cur.id)
                            .copied()
                            .unwrap_or(spec["readinessProbe"].is_null());
                    if init && !is_sidecar(spec) {
                        ready = false;
                    }
                }
                RunState::Exited => match waiting {
                    Some(w) => {
                        state = waiting_json(w);
                        last_state = json!({ "terminated": terminated(cur, runtime) });
                    }
                    None => {
                        state = json!({ "terminated": terminated(cur, runtime) });
                        if let Some(p) = prev {
                            last_state = json!({ "terminated": terminated(p, runtime) });
                        }
                        // A completed init container counts as ready.
                        ready = init && cur.exit_code == 0;
                    }
                },
                RunState::Created | RunState::Unknown => {
                    state = waiting_json(waiting.unwrap_or(&Waiting::new("ContainerCreating", "")));
                    if let Some(p) = prev {
                        last_state = json!({ "terminated": terminated(p, runtime) });
                    }
                }
            }
            st.insert("imageID".into(), json!(cur.image_ref));
        }
        None => {
            let default = if init {
                Waiting::new("PodInitializing", "")
            } else {
                Waiting::new("ContainerCreating", "")
            };
            state = waiting_json(waiting.unwrap_or(&default));
            st.insert("imageID".into(), json!(""));
        }
    }
    st.insert("image".into(), spec["image"].clone());
    st.insert("lastState".into(), last_state);
    st.insert("ready".into(), json!(ready));
    st.insert("restartCount".into(), json!(restart_count));
    st.insert("started".into(), started);
    st.insert("state".into(), state);
    Value::Object(st)
}

fn waiting_json(w: &Waiting) -> Value {
    let mut m = Map::new();
    m.insert("reason".into(), json!(w.reason));
    if !w.message.is_empty() {
        m.insert("message".into(), json!(w.message));
    }
    json!({ "waiting": m })
}

/// upstream's `getPhase` (1.33, with sidecars).
pub fn phase(pod: &Value, init_statuses: &[Value], statuses: &[Value]) -> &'static str {
    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let inits = spec_containers(pod, "initContainers");
    let mut pending_init = 0;
    let mut failed_init = 0;
    for (spec, st) in inits.iter().zip(init_statuses) {
        let state = &st["state"];
        if is_sidecar(spec) {
            if state["running"].is_object() && st["started"] == true {
                continue;
            }
            pending_init += 1;
            continue;
        }
        if let Some(t) = state["terminated"].as_object() {
            if t["exitCode"].as_i64() == Some(0) {
                continue;
            }
            failed_init += 1;
            continue;
        }
        if state["waiting"].is_object()
            && st["lastState"]["terminated"]["exitCode"]
                .as_i64()
                .is_some_and(|c| c != 0)
        {
            failed_init += 1;
            continue;
        }
        pending_init += 1;
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for st in statuses {
        let state = &st["state"];
        if state["running"].is_object() {
            running += 1;
        } else if let Some(t) = state["terminated"].as_object() {
            stopped += 1;
            if t["exitCode"].as_i64() == Some(0) {
                succeeded += 1;
            }
        } else if state["waiting"].is_object() {
            if st["lastState"]["terminated"].is_object() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if waiting > 0 || pending_init > 0 || (failed_init > 0 && running == 0 && stopped == 0) {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    old: &Value,
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let prev = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let transition = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut c = Map::new();
    c.insert("type".into(), json!(kind));
    c.insert("status".into(), json!(status));
    c.insert("lastProbeTime".into(), Value::Null);
    c.insert("lastTransitionTime".into(), transition);
    if let Some(r) = reason {
        c.insert("reason".into(), json!(r));
    }
    if let Some(m) = message {
        c.insert("message".into(), json!(m));
    }
    Value::Object(c)
}

/// The pod's status. `pod` is the pod as the API has it (its current status
/// gives transition times, startTime and the PodScheduled condition).
pub fn compute(pod: &Value, inputs: &StatusInputs<'_>) -> Value {
    let old = &pod["status"];
    let now = now_rfc3339();
    let init_statuses: Vec<Value> = spec_containers(pod, "initContainers")
        .iter()
        .map(|c| container_status(c, inputs, true))
        .collect();
    let statuses: Vec<Value> = spec_containers(pod, "containers")
        .iter()
        .map(|c| container_status(c, inputs, false))
        .collect();
    let mut phase = phase(pod, &init_statuses, &statuses);
    // A pod that has finished stays finished.
    if matches!(old["phase"].as_str(), Some("Succeeded" | "Failed")) {
        phase = if old["phase"] == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let mut st = Map::new();
    let mut failed_reason = None;
    if let Some((reason, message)) = &inputs.failed {
        phase = "Failed";
        failed_reason = Some((reason.clone(), message.clone()));
    }
    st.insert("phase".into(), json!(phase));

    let terminal = matches!(phase, "Succeeded" | "Failed");
    let mut conditions = Vec::new();
    conditions.push(condition(
        old,
        "PodReadyToStartContainers",
        inputs.sandbox_ready && !terminal,
        None,
        None,
        &now,
    ));
    let incomplete_init: Vec<&str> = spec_containers(pod, "initContainers")
        .iter()
        .zip(&init_statuses)
        .filter(|(spec, st)| {
            if is_sidecar(spec) {
                !(st["state"]["running"].is_object() && st["started"] == true)
            } else {
                st["state"]["terminated"]["exitCode"].as_i64() != Some(0)
            }
        })
        .map(|(spec, _)| spec["name"].as_str().unwrap_or(""))
        .collect();
    let initialized =
        incomplete_init.is_empty() || (terminal && old_condition_true(old, "Initialized"));
    conditions.push(if initialized {
        condition(old, "Initialized", true, None, None, &now)
    } else {
        condition(
            old,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            )),
            &now,
        )
    });
    let unready: Vec<&str> = spec_containers(pod, "containers")
        .iter()
        .zip(&statuses)
        .filter(|(_, st)| st["ready"] != true)
        .map(|(spec, _)| spec["name"].as_str().unwrap_or(""))
        .collect();
    let unready_init: Vec<&str> = spec_containers(pod, "initContainers")
        .iter()
        .zip(&init_statuses)
        .filter(|(spec, st)| is_sidecar(spec) && st["ready"] != true)
        .map(|(spec, _)| spec["name"].as_str().unwrap_or(""))
        .collect();
    let (ready, reason, message) = if terminal {
        (false, Some("PodCompleted"), None)
    } else if !unready.is_empty() || !unready_init.is_empty() {
        let mut names: Vec<&str> = unready_init.clone();
        names.extend(&unready);
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                names.join(" ")
            )),
        )
    } else {
        (true, None, None)
    };
    conditions.push(condition(
        old,
        "ContainersReady",
        ready,
        reason,
        message.clone(),
        &now,
    ));
    conditions.push(condition(old, "Ready", ready, reason, message, &now));
    // PodScheduled belongs to the scheduler: keep it as it is.
    if let Some(c) = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
    {
        conditions.push(c.clone());
    } else {
        conditions.push(condition(old, "PodScheduled", true, None, None, &now));
    }
    st.insert("conditions".into(), Value::Array(conditions));

    if let Some(h) = inputs.host_ips.first() {
        st.insert("hostIP".into(), json!(h));
        st.insert(
            "hostIPs".into(),
            Value::Array(inputs.host_ips.iter().map(|ip| json!({"ip": ip})).collect()),
        );
    }
    let host_network = pod["spec"]["hostNetwork"] == true;
    let pod_ips: &[String] = if host_network {
        &inputs.host_ips
    } else {
        &inputs.pod_ips
    };
    if let Some(ip) = pod_ips.first() {
        st.insert("podIP".into(), json!(ip));
        st.insert(
            "podIPs".into(),
            Value::Array(pod_ips.iter().map(|ip| json!({"ip": ip})).collect()),
        );
    } else if let Some(ip) = old["podIP"].as_str() {
        // Keep the address a finished pod had.
        st.insert("podIP".into(), json!(ip));
        st.insert("podIPs".into(), old["podIPs"].clone());
    }
    st.insert(
        "startTime".into(),
        if old["startTime"].is_string() {
            old["startTime"].clone()
        } else {
            json!(now)
        },
    );
    if !init_statuses.is_empty() {
        st.insert("initContainerStatuses".into(), Value::Array(init_statuses));
    }
    st.insert("containerStatuses".into(), Value::Array(statuses));
    st.insert(
        "qosClass".into(),
        json!(crate::podspec::pod_qos(pod).as_str()),
    );
    if let Some((reason, message)) = failed_reason {
        st.insert("reason".into(), json!(reason));
        st.insert("message".into(), json!(message));
    } else if let (Some(r), true) = (old["reason"].as_str(), terminal) {
        st.insert("reason".into(), json!(r));
        st.insert("message".into(), old["message"].clone());
    }
    Value::Object(st)
}

fn old_condition_true(old: &Value, kind: &str) -> bool {
    old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .is_some_and(|c| c["status"] == "True")
}

/// Whether two statuses differ in anything but timestamps of conditions
/// that did not change (so equal statuses are not written again).
pub fn differs(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = v["conditions"].as_array_mut() {
            for c in cs {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastProbeTime");
                }
            }
        }
        v
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "app", "image": "busybox"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        })
    }

    fn obs(name: &str, attempt: u32, state: RunState, exit: i32) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: "s".into(),
            state,
            created_at: 1_700_000_000_000_000_000 + attempt as i64,
            started_at: 1_700_000_001_000_000_000,
            finished_at: if state == RunState::Exited {
                1_700_000_002_000_000_000
            } else {
                0
            },
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image_ref: "sha256:abc".into(),
        }
    }

    fn inputs(cs: &[ObservedContainer]) -> StatusInputs<'_> {
        StatusInputs {
            containers: cs,
            sandbox_ready: true,
            pod_ips: vec!["10.42.0.5".into()],
            host_ips: vec!["192.168.1.2".into()],
            runtime_name: "containerd".into(),
            ..Default::default()
        }
    }

    #[test]
    fn running_container_makes_a_ready_running_pod() {
        let cs = [obs("app", 0, RunState::Running, 0)];
        let st = compute(&pod("Always"), &inputs(&cs));
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["podIP"], "10.42.0.5");
        assert_eq!(st["hostIPs"][0]["ip"], "192.168.1.2");
        let c = &st["containerStatuses"][0];
        assert_eq!(c["ready"], true);
        assert_eq!(c["started"], true);
        assert_eq!(c["containerID"], "containerd://app0");
        assert_eq!(c["state"]["running"]["startedAt"], "2023-11-14T22:13:21Z");
        let ready = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(st["qosClass"], "BestEffort");
        // PodScheduled is kept as the scheduler wrote it.
        let sched = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .unwrap();
        assert_eq!(sched["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        let cs = [
            obs("app", 1, RunState::Exited, 2),
            obs("app", 0, RunState::Exited, 2),
        ];
        let mut inp = inputs(&cs);
        inp.waiting.insert(
            "app".into(),
            Waiting::new(
                "CrashLoopBackOff",
                "back-off 10s restarting failed container=app pod=p_ns(u)",
            ),
        );
        let st = compute(&pod("Always"), &inp);
        let c = &st["containerStatuses"][0];
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 2);
        assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(c["restartCount"], 1);
        assert_eq!(st["phase"], "Running");
        let ready = &st["conditions"][2];
        assert_eq!(ready["type"], "ContainersReady");
        assert_eq!(ready["reason"], "ContainersNotReady");
        assert_eq!(ready["message"], "containers with unready status: [app]");
    }

    #[test]
    fn phases_follow_restart_policy() {
        let ok = [obs("app", 0, RunState::Exited, 0)];
        assert_eq!(compute(&pod("Never"), &inputs(&ok))["phase"], "Succeeded");
        assert_eq!(
            compute(&pod("OnFailure"), &inputs(&ok))["phase"],
            "Succeeded"
        );
        assert_eq!(compute(&pod("Always"), &inputs(&ok))["phase"], "Running");
        let bad = [obs("app", 0, RunState::Exited, 1)];
        let st = compute(&pod("Never"), &inputs(&bad));
        assert_eq!(st["phase"], "Failed");
        assert_eq!(
            st["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Error"
        );
        let none: [ObservedContainer; 0] = [];
        let st = compute(&pod("Always"), &inputs(&none));
        assert_eq!(st["phase"], "Pending");
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
    }

    #[test]
    fn init_containers_gate_initialized() {
        let mut p = pod("Always");
        p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
        let cs = [obs("init", 0, RunState::Running, 0)];
        let st = compute(&p, &inputs(&cs));
        assert_eq!(st["phase"], "Pending");
        let init = &st["conditions"][1];
        assert_eq!(init["status"], "False");
        assert_eq!(init["reason"], "ContainersNotInitialized");
        assert_eq!(init["message"], "containers with incomplete status: [init]");
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        let cs = [
            obs("init", 0, RunState::Exited, 0),
            obs("app", 0, RunState::Running, 0),
        ];
        let st = compute(&p, &inputs(&cs));
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["conditions"][1]["status"], "True");
        assert_eq!(st["initContainerStatuses"][0]["ready"], true);
        assert_eq!(
            st["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
    }

    #[test]
    fn transition_times_only_move_on_change() {
        let cs = [obs("app", 0, RunState::Running, 0)];
        let mut p = pod("Always");
        let first = compute(&p, &inputs(&cs));
        p["status"] = first.clone();
        p["status"]["conditions"][3]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        let second = compute(&p, &inputs(&cs));
        assert_eq!(
            second["conditions"][3]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert!(!differs(&p["status"], &second));
    }
}
