//! Container probes and lifecycle hooks, as upstream's kubelet runs them
//! (`pkg/kubelet/prober`, `pkg/probe/{exec,http,tcp,grpc}`,
//! `pkg/kubelet/lifecycle/handlers.go`).
//!
//! - [`run_probe`]: one probe attempt of any kind (exec through CRI
//!   `ExecSync`, httpGet, tcpSocket, grpc) with its result and output.
//! - [`ContainerProbes`]: the startup, liveness and readiness workers of one
//!   running container, with upstream's timing and threshold rules; it
//!   reports through a channel ([`ProbeEvent`]) and answers whether the
//!   container is started and ready.
//! - [`run_handler`]: a `postStart` / `preStop` handler (exec, httpGet,
//!   sleep) with upstream's failure messages.
//!
//! This module decides nothing about restarts: the pod worker restarts a
//! container whose liveness or startup result turned to failure, records the
//! events, and computes the pod's conditions from readiness.

mod grpc;
mod http;
mod lifecycle;
mod worker;

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tracing::debug;

use crate::cri::{CriError, RuntimeService};
use crate::podspec::expand;

pub use grpc::{HealthCheckRequest, HealthCheckResponse, ServingStatus, HEALTH_CHECK_PATH};
pub use http::{HttpGetRequest, HttpGetResponse, MAX_BODY};
pub use lifecycle::{
    run_handler, HookError, HookTarget, HookWarning, FAILED_POST_START_HOOK_REASON,
    FAILED_PRE_STOP_HOOK_REASON, POST_START_HOOK_ERROR, PRE_STOP_HOOK_FAILED_MESSAGE,
};
pub use worker::{
    started_at_from_unix_nanos, ContainerProbes, ProbeEvent, ProbeEventKind, PROBE_WARNING_REASON,
    UNHEALTHY_REASON,
};

/// `major.minor` in the `User-Agent` of probes and hooks.
pub const KUBE_MINOR_VERSION: &str = "1.33";

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// The container field holding this probe.
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startupProbe",
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
        }
    }
}

impl fmt::Display for ProbeKind {
    /// As upstream's `probeType.String()`: `Liveness`, `Readiness`, `Startup`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        })
    }
}

/// One attempt's result (upstream's `probe.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// Succeeded, with something to warn about (an HTTP redirect to another host).
    Warning,
    Failure,
    Unknown,
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeResult::Success => "success",
            ProbeResult::Warning => "warning",
            ProbeResult::Failure => "failure",
            ProbeResult::Unknown => "unknown",
        })
    }
}

/// A probe that could not be run at all (upstream: `probe.Unknown` with an
/// error; the worker ignores such an attempt).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The port is neither a number nor a named port of the container.
    #[error("{0}")]
    Port(String),
    #[error("missing probe handler for {pod}:{container}")]
    NoHandler { pod: String, container: String },
    /// The runtime failed the exec for another reason than its timeout.
    #[error("{}", go_cri_error(.0))]
    Exec(#[source] CriError),
}

/// One attempt: result and output (the exec output, HTTP body, or what went
/// wrong), as upstream's `runProbe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub result: ProbeResult,
    pub output: String,
}

/// Effective settings of a probe, with upstream's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSettings {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// Probe-level `terminationGracePeriodSeconds` (liveness and startup).
    pub termination_grace_period_seconds: Option<i64>,
}

impl ProbeSettings {
    /// Reads a probe's settings; absent or non-positive values get the API
    /// defaults (period 10 s, timeout 1 s, success 1, failure 3).
    pub fn of(probe: &Value) -> ProbeSettings {
        let int = |name: &str| probe.get(name).and_then(Value::as_i64);
        let positive = |name: &str, default: i64| int(name).filter(|v| *v > 0).unwrap_or(default);
        let seconds = |v: i64| Duration::from_secs(u64::try_from(v).unwrap_or(0));
        ProbeSettings {
            initial_delay: seconds(int("initialDelaySeconds").unwrap_or(0).max(0)),
            period: seconds(positive("periodSeconds", 10)),
            timeout: seconds(positive("timeoutSeconds", 1)),
            success_threshold: u32::try_from(positive("successThreshold", 1)).unwrap_or(1),
            failure_threshold: u32::try_from(positive("failureThreshold", 3)).unwrap_or(3),
            termination_grace_period_seconds: int("terminationGracePeriodSeconds"),
        }
    }
}

/// Where a probe runs.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    pub pod: &'a Value,
    /// The container's spec (ports, env).
    pub container: &'a Value,
    pub container_id: &'a str,
    pub pod_ip: &'a str,
}

/// Runs one attempt of `probe` (a container's `livenessProbe`,
/// `readinessProbe` or `startupProbe`).
pub async fn run_probe<R: RuntimeService>(
    runtime: &R,
    probe: &Value,
    target: ProbeTarget<'_>,
) -> Result<ProbeOutcome, ProbeError> {
    let timeout = ProbeSettings::of(probe).timeout;
    let outcome = |result, output: String| Ok(ProbeOutcome { result, output });
    if let Some(exec) = non_null(probe, "exec") {
        let command = expand_static_env(exec, target.container);
        return exec_probe(runtime, target.container_id, command, timeout).await;
    }
    if let Some(action) = non_null(probe, "httpGet") {
        let request = HttpGetRequest::from_action(action, target.container, target.pod_ip, "probe")
            .map_err(ProbeError::Port)?;
        debug!(url = %request.url(), "HTTP probe");
        let (result, output) = http_probe(&request, timeout).await;
        return outcome(result, output);
    }
    if let Some(action) = non_null(probe, "tcpSocket") {
        let port = resolve_container_port(action.get("port"), target.container)
            .map_err(ProbeError::Port)?;
        let host = match action.get("host").and_then(Value::as_str) {
            Some(host) if !host.is_empty() => host,
            _ => target.pod_ip,
        };
        let (result, output) = tcp_probe(host, port, timeout).await;
        return outcome(result, output);
    }
    if let Some(action) = non_null(probe, "grpc") {
        let port = action
            .get("port")
            .and_then(Value::as_i64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                ProbeError::Port(format!(
                    "invalid port number: {}",
                    action.get("port").cloned().unwrap_or(Value::Null)
                ))
            })?;
        let service = action.get("service").and_then(Value::as_str).unwrap_or("");
        let (result, output) = grpc::probe(target.pod_ip, port, service, timeout).await;
        return outcome(result, output);
    }
    Err(ProbeError::NoHandler {
        pod: crate::podspec::format_pod(target.pod),
        container: target
            .container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    })
}

fn non_null<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// The exec probe's command with `$(VAR)` expanded from the container's
/// literal `env` values only (upstream's `ExpandContainerCommandOnlyStatic`).
fn expand_static_env(exec: &Value, container: &Value) -> Vec<String> {
    let env: Vec<(&str, &str)> = container
        .get("env")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|e| {
                    let name = e.get("name")?.as_str()?;
                    let value = e.get("value")?.as_str()?;
                    Some((name, value))
                })
                .collect()
        })
        .unwrap_or_default();
    exec.get("command")
        .and_then(Value::as_array)
        .map(|cmd| {
            cmd.iter()
                .map(|arg| {
                    expand(arg.as_str().unwrap_or(""), |name| {
                        // The last definition wins, as in a Go map built in order.
                        env.iter()
                            .rev()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| (*v).to_owned())
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn exec_probe<R: RuntimeService>(
    runtime: &R,
    container_id: &str,
    command: Vec<String>,
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let joined = command.join(" ");
    match runtime.exec_sync(container_id, command, timeout).await {
        Ok(response) => {
            // upstream's exec prober reads at most 10 KiB of stdout + stderr.
            let mut data = response.stdout;
            data.extend_from_slice(&response.stderr);
            data.truncate(MAX_BODY);
            let output = String::from_utf8_lossy(&data).into_owned();
            let result = if response.exit_code == 0 {
                ProbeResult::Success
            } else {
                ProbeResult::Failure
            };
            Ok(ProbeOutcome { result, output })
        }
        Err(err) if err.code() == Some(tonic::Code::DeadlineExceeded) => Ok(ProbeOutcome {
            result: ProbeResult::Failure,
            output: format!("command {joined:?} timed out"),
        }),
        Err(err) => Err(ProbeError::Exec(err)),
    }
}

/// upstream's `DoHTTPProbe` on a built request.
pub async fn http_probe(request: &HttpGetRequest, timeout: Duration) -> (ProbeResult, String) {
    match request.send(timeout).await {
        Err(message) => (ProbeResult::Failure, message),
        Ok(response) => {
            let body = String::from_utf8_lossy(&response.body).into_owned();
            match response.status {
                200..=299 => (ProbeResult::Success, body),
                300..=399 => (
                    ProbeResult::Warning,
                    format!("Probe terminated redirects, Response body: {body}"),
                ),
                code => (
                    ProbeResult::Failure,
                    format!("HTTP probe failed with statuscode: {code}"),
                ),
            }
        }
    }
}

/// upstream's `DoTCPProbe`: a connection that opens is a success.
pub async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> (ProbeResult, String) {
    match tokio::time::timeout(timeout, http::connect(host, port)).await {
        Ok(Ok(_stream)) => (ProbeResult::Success, String::new()),
        Ok(Err(message)) => (ProbeResult::Failure, message),
        Err(_) => (
            ProbeResult::Failure,
            format!("dial tcp {}: i/o timeout", http::join_host_port(host, port)),
        ),
    }
}

/// upstream's `probe.ResolveContainerPort`: a number, or the name of one of
/// the container's ports, or a number written as a string; 1-65535.
pub(crate) fn resolve_container_port(
    port: Option<&Value>,
    container: &Value,
) -> Result<u16, String> {
    let number = match port {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(Value::String(name)) => {
            let named = container
                .get("ports")
                .and_then(Value::as_array)
                .and_then(|ports| {
                    ports
                        .iter()
                        .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
                })
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64));
            match named {
                Some(n) => n,
                None => name
                    .parse::<i64>()
                    .map_err(|_| format!("strconv.Atoi: parsing {name:?}: invalid syntax"))?,
            }
        }
        other => {
            return Err(format!(
                "intOrString had no kind: {}",
                other.cloned().unwrap_or(Value::Null)
            ))
        }
    };
    match u16::try_from(number) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port number: {number}")),
    }
}

/// Go's `time.Duration.String()` for whole and fractional seconds: `1s`,
/// `1.5s`, `2m0s`, `1h0m0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let nanos = d.subsec_nanos();
    let secs = if nanos == 0 {
        format!("{}s", total % 60)
    } else {
        let frac = format!("{nanos:09}");
        format!("{}.{}s", total % 60, frac.trim_end_matches('0'))
    };
    match (total / 3600, (total / 60) % 60) {
        (0, 0) if total < 60 => {
            if total == 0 && nanos == 0 {
                "0s".to_owned()
            } else {
                secs
            }
        }
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// A CRI error as Go's gRPC status prints (`rpc error: code = NotFound desc = …`).
pub(crate) fn go_cri_error(err: &CriError) -> String {
    match err {
        CriError::Rpc { status, .. } => format!(
            "rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
