//! The `grpc` probe: `grpc.health.v1.Health/Check` over plaintext HTTP/2, as
//! upstream's `pkg/probe/grpc` (which mimics `grpc_health_probe`): every
//! problem is a failure, never an error, and the messages are upstream's.

use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::http::join_host_port;
use super::{go_duration, ProbeResult, KUBE_MINOR_VERSION};

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

/// The path of the health check method.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The protobuf enum name Go prints (`NOT_SERVING`; a number it does not know
/// as the number).
fn status_name(status: i32) -> String {
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Unknown) => "UNKNOWN".to_owned(),
        Ok(ServingStatus::Serving) => "SERVING".to_owned(),
        Ok(ServingStatus::NotServing) => "NOT_SERVING".to_owned(),
        Ok(ServingStatus::ServiceUnknown) => "SERVICE_UNKNOWN".to_owned(),
        Err(_) => status.to_string(),
    }
}

/// Probes `host:port` for `service` ("" = the server as a whole).
pub async fn probe(
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> (ProbeResult, String) {
    let addr = join_host_port(host, port);
    let deadline = Instant::now() + timeout;
    let connected = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(endpoint) => {
            let endpoint = endpoint
                .user_agent(format!("kube-probe/{KUBE_MINOR_VERSION}"))
                .map(|e| e.connect_timeout(timeout));
            match endpoint {
                Ok(endpoint) => connect_until(&endpoint, deadline).await,
                Err(err) => Err(Some(err.to_string())),
            }
        }
        Err(err) => Err(Some(err.to_string())),
    };
    let channel = match connected {
        Ok(channel) => channel,
        // grpc-go's blocking dial retries until the deadline.
        Err(None) => {
            let limit = go_duration(timeout);
            let message = format!(
                "timeout: failed to connect service {addr:?} within {limit}: context deadline exceeded"
            );
            return (ProbeResult::Failure, message);
        }
        Err(Some(err)) => {
            return (
                ProbeResult::Failure,
                format!("error: failed to connect service at {addr:?}: {err}"),
            )
        }
    };

    let mut client = tonic::client::Grpc::new(channel);
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        client
            .unary::<_, HealthCheckResponse, _>(
                request,
                PathAndQuery::from_static(HEALTH_CHECK_PATH),
                tonic_prost::ProstCodec::default(),
            )
            .await
    };
    let timed_out = || {
        (
            ProbeResult::Failure,
            format!(
                "timeout: health rpc did not complete within {}",
                go_duration(timeout)
            ),
        )
    };
    let response = match tokio::time::timeout_at(deadline, call).await {
        Err(_) => return timed_out(),
        Ok(Err(status)) => {
            return match status.code() {
                tonic::Code::Unimplemented => (
                    ProbeResult::Failure,
                    format!(
                        "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                        status.message()
                    ),
                ),
                // tonic enforces the deadline it sent as `grpc-timeout`
                // itself, answering Cancelled.
                tonic::Code::DeadlineExceeded => timed_out(),
                tonic::Code::Cancelled if status.message() == "Timeout expired" => timed_out(),
                code => (
                    ProbeResult::Failure,
                    format!(
                        "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
                        status.message()
                    ),
                ),
            };
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    if response.status != ServingStatus::Serving as i32 {
        return (
            ProbeResult::Failure,
            format!(
                "service unhealthy (responded with {:?})",
                status_name(response.status)
            ),
        );
    }
    (ProbeResult::Success, "service healthy".to_owned())
}

/// Connects, retrying refused connections until `deadline` (`Err(None)`).
async fn connect_until(endpoint: &Endpoint, deadline: Instant) -> Result<Channel, Option<String>> {
    let mut backoff = Duration::from_millis(20);
    loop {
        let attempt = tokio::time::timeout_at(deadline, endpoint.connect()).await;
        match attempt {
            Ok(Ok(channel)) => return Ok(channel),
            Ok(Err(_)) => {}
            Err(_) => return Err(None),
        }
        if Instant::now() + backoff >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(None);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
