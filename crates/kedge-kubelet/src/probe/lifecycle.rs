//! `postStart` and `preStop` handlers, as upstream's
//! `pkg/kubelet/lifecycle/handlers.go` runs them:
//!
//! - `exec`: the command through CRI `ExecSync` (not `$(VAR)`-expanded); a
//!   non-zero exit is a failure, with the output in the message;
//! - `httpGet`: a GET as probes send it but with `User-Agent:
//!   kube-lifecycle/1.33`; any HTTP answer is a success (the status code is
//!   not looked at); an HTTPS request answered in plain HTTP is retried over
//!   HTTP without the `Authorization` header, with a warning event;
//! - `sleep`: waits `seconds` (zero allowed, as 1.33 does).
//!
//! The caller gives the time limit: for `preStop`, what is left of the
//! termination grace period (upstream stops waiting then and kills the
//! container); for `postStart`, what it chooses (upstream has none).
//!
//! What the caller does with a failure, as upstream's kuberuntime:
//! `postStart`: a `Warning` event [`FAILED_POST_START_HOOK_REASON`] with
//! [`HookError`]'s message, kill the container, and report the start as
//! failed with [`POST_START_HOOK_ERROR`]; `preStop`: a `Warning` event
//! [`FAILED_PRE_STOP_HOOK_REASON`] with [`PRE_STOP_HOOK_FAILED_MESSAGE`]
//! (not the output: it could hold secrets), then stop the container anyway.

use std::time::Duration;

use serde_json::Value;

use super::http::{HttpGetRequest, HTTP_RESPONSE_TO_HTTPS};
use super::{go_cri_error, go_duration};
use crate::cri::{CriError, RuntimeService};
use crate::podspec::format_pod;

/// The error a failed `postStart` gives the container start (upstream's `ErrPostStartHook`).
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";
/// Event reason of a failed `postStart` hook.
pub const FAILED_POST_START_HOOK_REASON: &str = "FailedPostStartHook";
/// Event reason of a failed `preStop` hook.
pub const FAILED_PRE_STOP_HOOK_REASON: &str = "FailedPreStopHook";
/// The `preStop` failure event's message.
pub const PRE_STOP_HOOK_FAILED_MESSAGE: &str = "PreStopHook failed";

/// The container a hook runs for.
#[derive(Debug, Clone, Copy)]
pub struct HookTarget<'a> {
    pub pod: &'a Value,
    /// The container's spec (its name and ports).
    pub container: &'a Value,
    pub container_id: &'a str,
    /// The pod's IP: the host of an `httpGet` without one.
    pub pod_ip: &'a str,
}

/// A hook that failed or did not finish in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// upstream's message, e.g. `Exec lifecycle hook ([sh -c exit 3]) for
    /// Container "web" in Pod "web-0_default(uid)" failed - error: command
    /// 'sh -c exit 3' exited with 3: , message: ""`.
    #[error("{0}")]
    Failed(String),
    /// Still running when the time limit passed.
    #[error(
        "lifecycle hook for Container {container:?} in Pod {pod:?} did not complete within {limit}"
    )]
    TimedOut {
        container: String,
        pod: String,
        limit: String,
    },
}

/// Something to record as a `Warning` event on the pod although the hook
/// succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookWarning {
    pub reason: &'static str,
    pub message: String,
}

/// Runs `handler` (a container's `lifecycle.postStart` or `lifecycle.preStop`)
/// within `limit`.
pub async fn run_handler<R: RuntimeService>(
    runtime: &R,
    handler: &Value,
    target: HookTarget<'_>,
    limit: Duration,
) -> Result<Option<HookWarning>, HookError> {
    let pod = format_pod(target.pod);
    let container = target
        .container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let run = run_unbounded(runtime, handler, target, limit, &pod, &container);
    match tokio::time::timeout(limit, run).await {
        Ok(result) => result,
        Err(_) => Err(HookError::TimedOut {
            container,
            pod,
            limit: go_duration(limit),
        }),
    }
}

async fn run_unbounded<R: RuntimeService>(
    runtime: &R,
    handler: &Value,
    target: HookTarget<'_>,
    limit: Duration,
    pod: &str,
    container: &str,
) -> Result<Option<HookWarning>, HookError> {
    let present = |key: &str| handler.get(key).filter(|v| !v.is_null());
    if let Some(exec) = present("exec") {
        let command: Vec<String> = exec
            .get("command")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .map(|a| a.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let (error, output) = match runtime
            .exec_sync(target.container_id, command.clone(), limit)
            .await
        {
            Ok(response) => {
                let mut output = response.stdout;
                output.extend_from_slice(&response.stderr);
                if response.exit_code == 0 {
                    return Ok(None);
                }
                (
                    format!(
                        "command '{}' exited with {}: {}",
                        command.join(" "),
                        response.exit_code,
                        String::from_utf8_lossy(&response.stderr)
                    ),
                    output,
                )
            }
            Err(err) => (exec_error_text(&err, &command), Vec::new()),
        };
        return Err(HookError::Failed(format!(
            "Exec lifecycle hook ([{}]) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {:?}",
            command.join(" "),
            String::from_utf8_lossy(&output)
        )));
    }
    if let Some(action) = present("httpGet") {
        let path = action.get("path").and_then(Value::as_str).unwrap_or("");
        let failed = |error: String| {
            HookError::Failed(format!(
                "HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {error}"
            ))
        };
        if target.pod_ip.is_empty()
            && action
                .get("host")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Err(failed(
                "failed to find networking container: the pod has no IP".to_owned(),
            ));
        }
        let request =
            HttpGetRequest::from_action(action, target.container, target.pod_ip, "lifecycle")
                .map_err(failed)?;
        return match request.send(limit).await {
            Ok(_) => Ok(None),
            Err(error) if error.contains(HTTP_RESPONSE_TO_HTTPS) && request.scheme == "https" => {
                let mut plain = request.clone();
                plain.scheme = "http".to_owned();
                plain.headers.retain(|(name, _)| name != "Authorization");
                match plain.send(limit).await {
                    Ok(_) => Ok(Some(HookWarning {
                        reason: "LifecycleHTTPFallback",
                        message: format!(
                            "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
                            super::http::join_host_port(&request.host, request.port)
                        ),
                    })),
                    Err(_) => Err(failed(error)),
                }
            }
            Err(error) => Err(failed(error)),
        };
    }
    if let Some(sleep) = present("sleep") {
        let seconds = sleep.get("seconds").and_then(Value::as_i64).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(u64::try_from(seconds).unwrap_or(0))).await;
        return Ok(None);
    }
    Err(HookError::Failed(format!(
        "Cannot run handler: invalid handler: {handler}"
    )))
}

fn exec_error_text(err: &CriError, command: &[String]) -> String {
    if err.code() == Some(tonic::Code::DeadlineExceeded) {
        format!("command {:?} timed out", command.join(" "))
    } else {
        go_cri_error(err)
    }
}
