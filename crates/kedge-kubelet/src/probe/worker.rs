//! The probe workers of one container, following upstream's
//! `pkg/kubelet/prober/worker.go` and `prober_manager.go`:
//!
//! - one task per configured probe; each probes once at start and then every
//!   `periodSeconds` (default 10), a probe taking at most `timeoutSeconds`
//!   (default 1);
//! - nothing is probed while fewer whole seconds than `initialDelaySeconds`
//!   have passed since the container started;
//! - liveness and readiness wait until the container has started: its
//!   startup probe succeeded, or it has none; the startup probe stops once it
//!   succeeded; readiness is probed at once when the container starts;
//! - initial results: liveness success, readiness failure, startup unknown;
//! - a result only changes after `successThreshold` (default 1) equal
//!   successes or `failureThreshold` (default 3) equal failures in a row; an
//!   attempt that could not run at all (a bad port, a runtime error) is
//!   retried up to three times and then ignored;
//! - after a liveness or startup failure the worker holds: the container is
//!   about to be restarted, and the next container gets new workers;
//! - when the container is no longer running, readiness turns false and the
//!   workers end.
//!
//! Reports go to the pod worker as [`ProbeEvent`]s: a `Record` for each
//! attempt upstream makes an event of (`Unhealthy`: `Liveness probe failed:
//! …`, `ProbeWarning`), and a `ResultChanged` when a result the kubelet acts
//! on changes. Unlike upstream, probing does not start after a random part
//! of the period when the agent restarts.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::debug;

use super::{run_probe, ProbeKind, ProbeResult, ProbeSettings, ProbeTarget};
use crate::cri::api::ContainerState;
use crate::cri::RuntimeService;

/// Event reason of failed (and errored) probes.
pub const UNHEALTHY_REASON: &str = "Unhealthy";
/// Event reason of probes that succeeded with a warning.
pub const PROBE_WARNING_REASON: &str = "ProbeWarning";

/// A report of one container's probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    pub event: ProbeEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEventKind {
    /// Record a `Warning` event on the container with this reason
    /// ([`UNHEALTHY_REASON`] or [`PROBE_WARNING_REASON`]) and message.
    Record {
        reason: &'static str,
        message: String,
    },
    /// The result changed: readiness (the container's `ready`), startup (its
    /// `started`; a failure means restart), liveness (a failure means restart).
    ResultChanged {
        success: bool,
        /// The output of the attempt that changed it.
        output: String,
        /// The probe's own `terminationGracePeriodSeconds`, which upstream
        /// uses instead of the pod's when it kills for a liveness or startup
        /// failure (unless the pod is being deleted).
        termination_grace_period_seconds: Option<i64>,
    },
}

impl ProbeEvent {
    /// For a liveness or startup failure: upstream's message for killing the
    /// container (`Container web failed liveness probe, will be restarted`).
    pub fn kill_message(&self) -> Option<String> {
        let ProbeEventKind::ResultChanged { success: false, .. } = self.event else {
            return None;
        };
        let what = match self.kind {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Startup => "startup",
            ProbeKind::Readiness => return None,
        };
        Some(format!(
            "Container {} failed {what} probe, will be restarted",
            self.container_name
        ))
    }
}

/// The `tokio` instant of a CRI `started_at` (nanoseconds since the epoch).
pub fn started_at_from_unix_nanos(nanos: i64) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let started = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    let ago = now_unix.saturating_sub(started);
    let now = Instant::now();
    now.checked_sub(ago).unwrap_or(now)
}

/// A result as the results manager keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Unknown,
    Success,
    Failure,
}

#[derive(Debug)]
struct State {
    /// `None`: no such probe.
    startup: Option<Current>,
    liveness: Option<Current>,
    readiness: Option<Current>,
    running: bool,
}

impl State {
    fn slot(&mut self, kind: ProbeKind) -> &mut Option<Current> {
        match kind {
            ProbeKind::Startup => &mut self.startup,
            ProbeKind::Liveness => &mut self.liveness,
            ProbeKind::Readiness => &mut self.readiness,
        }
    }

    fn started(&self) -> bool {
        self.running && self.startup.is_none_or(|r| r == Current::Success)
    }

    fn ready(&self) -> bool {
        self.started() && self.readiness.is_none_or(|r| r == Current::Success)
    }
}

struct Shared {
    state: Mutex<State>,
    /// upstream's `manualTriggerCh` of the readiness worker (one permit).
    readiness_trigger: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running probe workers of one container; dropping it stops them.
pub struct ContainerProbes {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<(ProbeKind, JoinHandle<()>)>>,
}

impl std::fmt::Debug for ContainerProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerProbes")
            .field("state", &*self.shared.lock())
            .finish()
    }
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (_, task) in tasks.drain(..) {
            task.abort();
        }
    }
}

impl ContainerProbes {
    /// Starts the probes of container `container_name` of `pod` (a regular
    /// container or a restartable init container), whose running instance is
    /// `container_id`, started at `started_at` (see
    /// [`started_at_from_unix_nanos`]). Must be called inside a tokio runtime.
    pub fn start<R: RuntimeService + 'static>(
        runtime: Arc<R>,
        pod: &Value,
        container_name: &str,
        container_id: &str,
        pod_ip: &str,
        started_at: Instant,
        tx: mpsc::UnboundedSender<ProbeEvent>,
    ) -> ContainerProbes {
        let container = crate::podspec::all_containers(pod)
            .find(|c| c.get("name").and_then(Value::as_str) == Some(container_name))
            .cloned()
            .unwrap_or(Value::Null);
        let specs: Vec<(ProbeKind, Value)> = [
            ProbeKind::Startup,
            ProbeKind::Readiness,
            ProbeKind::Liveness,
        ]
        .into_iter()
        .filter_map(|kind| {
            let spec = container.get(kind.field()).filter(|p| p.is_object())?;
            Some((kind, spec.clone()))
        })
        .collect();
        let has = |kind: ProbeKind| specs.iter().any(|(k, _)| *k == kind);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                startup: has(ProbeKind::Startup).then_some(Current::Unknown),
                liveness: has(ProbeKind::Liveness).then_some(Current::Success),
                readiness: has(ProbeKind::Readiness).then_some(Current::Failure),
                running: true,
            }),
            readiness_trigger: Notify::new(),
        });
        let context = Arc::new(Context {
            pod: pod.clone(),
            container,
            container_name: container_name.to_owned(),
            container_id: container_id.to_owned(),
            pod_ip: pod_ip.to_owned(),
            started_at,
            tx,
        });
        let mut tasks = Vec::new();
        for (kind, spec) in specs {
            let worker = Worker {
                runtime: runtime.clone(),
                kind,
                settings: ProbeSettings::of(&spec),
                spec,
                context: context.clone(),
                shared: shared.clone(),
                last_result: None,
                result_run: 0,
                on_hold: false,
            };
            tasks.push((kind, tokio::spawn(worker.run())));
        }
        ContainerProbes {
            shared,
            tasks: Mutex::new(tasks),
        }
    }

    /// upstream's `started`: running, and its startup probe succeeded (or it
    /// has none).
    pub fn started(&self) -> bool {
        self.shared.lock().started()
    }

    /// upstream's `ready`: started, and its readiness probe succeeded (or it
    /// has none).
    pub fn ready(&self) -> bool {
        self.shared.lock().ready()
    }

    /// Whether the liveness result is (still) success.
    pub fn live(&self) -> bool {
        self.shared.lock().liveness != Some(Current::Failure)
    }

    /// Probe readiness now rather than at the next period, as upstream does
    /// whenever it computes the status of a started container that is not
    /// ready. Does nothing without a readiness probe.
    pub fn trigger_readiness(&self) {
        self.shared.readiness_trigger.notify_one();
    }

    /// The pod is being deleted: liveness and startup stop and count as
    /// successes, so that nothing restarts the container while it shuts
    /// down (upstream's `StopLivenessAndStartup`). Readiness goes on.
    pub fn stop_liveness_and_startup(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|(kind, task)| {
            if *kind == ProbeKind::Readiness {
                true
            } else {
                task.abort();
                false
            }
        });
        let mut state = self.shared.lock();
        for kind in [ProbeKind::Liveness, ProbeKind::Startup] {
            if let Some(slot) = state.slot(kind) {
                *slot = Current::Success;
            }
        }
    }
}

/// What every worker of the container shares, read-only.
struct Context {
    pod: Value,
    container: Value,
    container_name: String,
    container_id: String,
    pod_ip: String,
    started_at: Instant,
    tx: mpsc::UnboundedSender<ProbeEvent>,
}

struct Worker<R> {
    runtime: Arc<R>,
    kind: ProbeKind,
    spec: Value,
    settings: ProbeSettings,
    context: Arc<Context>,
    shared: Arc<Shared>,
    last_result: Option<bool>,
    result_run: u32,
    on_hold: bool,
}

impl<R: RuntimeService + 'static> Worker<R> {
    async fn run(mut self) {
        let period = self.settings.period;
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let shared = self.shared.clone();
        while self.do_probe().await {
            if self.kind == ProbeKind::Readiness {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shared.readiness_trigger.notified() => {}
                }
            } else {
                ticker.tick().await;
            }
        }
        debug!(
            container = %self.context.container_name,
            probe = %self.kind,
            "probe worker ended"
        );
    }

    /// One round; false ends the worker.
    async fn do_probe(&mut self) -> bool {
        match self
            .runtime
            .container_status(&self.context.container_id, false)
            .await
        {
            Ok(response) => {
                let running = response
                    .status
                    .is_some_and(|s| s.state == ContainerState::ContainerRunning as i32);
                if !running {
                    self.container_stopped();
                    return false;
                }
            }
            Err(err) if err.is_not_found() => {
                self.container_stopped();
                return false;
            }
            Err(err) => {
                debug!(container = %self.context.container_name, %err, "cannot read container status before probing");
                return true;
            }
        }
        if self.on_hold {
            return true;
        }
        // upstream: int32(time.Since(startedAt).Seconds()) < initialDelaySeconds
        let since_start = Instant::now().saturating_duration_since(self.context.started_at);
        if since_start.as_secs() < self.settings.initial_delay.as_secs() {
            return true;
        }
        let started = self.shared.lock().started();
        if started == (self.kind == ProbeKind::Startup) {
            // Startup is done once started; the others wait for it.
            return true;
        }
        let Some((success, output)) = self.probe().await else {
            return true;
        };
        if self.last_result == Some(success) {
            self.result_run += 1;
        } else {
            self.last_result = Some(success);
            self.result_run = 1;
        }
        let threshold = if success {
            self.settings.success_threshold
        } else {
            self.settings.failure_threshold
        };
        if self.result_run < threshold {
            return true;
        }
        self.set(success, output);
        if !success && self.kind != ProbeKind::Readiness {
            // The container will be restarted; hold until then.
            self.on_hold = true;
            self.result_run = 0;
        }
        true
    }

    /// upstream's `prober.probe`: up to three attempts while the probe cannot
    /// run; records the events; `None` when it never ran.
    async fn probe(&self) -> Option<(bool, String)> {
        let target = ProbeTarget {
            pod: &self.context.pod,
            container: &self.context.container,
            container_id: &self.context.container_id,
            pod_ip: &self.context.pod_ip,
        };
        let mut last_error = None;
        let mut outcome = None;
        for _ in 0..3 {
            match run_probe(self.runtime.as_ref(), &self.spec, target).await {
                Ok(o) => {
                    outcome = Some(o);
                    break;
                }
                Err(err) => last_error = Some(err),
            }
        }
        let Some(outcome) = outcome else {
            let err = last_error.map(|e| e.to_string()).unwrap_or_default();
            debug!(container = %self.context.container_name, probe = %self.kind, %err, "probe errored");
            self.record(
                UNHEALTHY_REASON,
                format!(
                    "{} probe errored and resulted in {} state: {err}",
                    self.kind,
                    ProbeResult::Unknown
                ),
            );
            return None;
        };
        match outcome.result {
            ProbeResult::Success => Some((true, outcome.output)),
            ProbeResult::Warning => {
                self.record(
                    PROBE_WARNING_REASON,
                    format!("{} probe warning: {}", self.kind, outcome.output),
                );
                Some((true, outcome.output))
            }
            ProbeResult::Failure => {
                debug!(container = %self.context.container_name, probe = %self.kind, output = %outcome.output, "probe failed");
                self.record(
                    UNHEALTHY_REASON,
                    format!("{} probe failed: {}", self.kind, outcome.output),
                );
                Some((false, outcome.output))
            }
            ProbeResult::Unknown => Some((false, outcome.output)),
        }
    }

    fn set(&self, success: bool, output: String) {
        let new = if success {
            Current::Success
        } else {
            Current::Failure
        };
        let (changed, now_started) = {
            let mut state = self.shared.lock();
            let slot = state.slot(self.kind);
            let changed = *slot != Some(new);
            *slot = Some(new);
            (changed, state.started())
        };
        if !changed {
            return;
        }
        if self.kind == ProbeKind::Startup && now_started {
            // upstream probes readiness as soon as the status shows the
            // container started.
            self.shared.readiness_trigger.notify_one();
        }
        let termination_grace_period_seconds = match self.kind {
            ProbeKind::Readiness => None,
            _ => self.settings.termination_grace_period_seconds,
        };
        self.send(ProbeEventKind::ResultChanged {
            success,
            output,
            termination_grace_period_seconds,
        });
    }

    fn container_stopped(&self) {
        let was_ready = {
            let mut state = self.shared.lock();
            state.running = false;
            let slot = state.slot(self.kind);
            let was_success = *slot == Some(Current::Success);
            if self.kind == ProbeKind::Readiness {
                *slot = Some(Current::Failure);
            }
            was_success && self.kind == ProbeKind::Readiness
        };
        if was_ready {
            self.send(ProbeEventKind::ResultChanged {
                success: false,
                output: "container is not running".to_owned(),
                termination_grace_period_seconds: None,
            });
        }
    }

    fn record(&self, reason: &'static str, message: String) {
        self.send(ProbeEventKind::Record { reason, message });
    }

    fn send(&self, event: ProbeEventKind) {
        // The receiver is gone only when the pod worker is; nothing to do then.
        let _ = self.context.tx.send(ProbeEvent {
            container_name: self.context.container_name.clone(),
            container_id: self.context.container_id.clone(),
            kind: self.kind,
            event,
        });
    }
}
