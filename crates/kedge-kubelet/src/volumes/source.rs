//! Where volume content comes from: ConfigMaps, Secrets and service account
//! tokens, behind [`ObjectSource`].
//!
//! [`KubeObjectSource`] asks the API server (raw JSON over a `kube::Client`);
//! [`MemoryObjectSource`] keeps objects in memory for tests of everything
//! above it, and issues tokens the way the API server's TokenRequest does.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::Clock;

/// A token issued by the API server's TokenRequest subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// `status.token`.
    pub token: String,
    /// `status.expirationTimestamp`.
    pub expiration: SystemTime,
}

/// The kubelet's view of the objects volumes project. `Ok(None)` is NotFound;
/// `Err` carries the reason a lookup failed (the caller adds which volume).
pub trait ObjectSource: Send + Sync {
    /// The ConfigMap as the API server returns it (raw JSON).
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Value>, String>> + Send;

    /// The Secret as the API server returns it (raw JSON, `data` base64).
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Value>, String>> + Send;

    /// `POST .../serviceaccounts/{service_account}/token`, bound to the pod.
    /// `audience` `None` asks for the API server's own audiences.
    fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: Option<String>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> impl Future<Output = Result<IssuedToken, String>> + Send;
}

/// An [`ObjectSource`] over the API server.
#[derive(Clone)]
pub struct KubeObjectSource {
    client: kube::Client,
}

impl KubeObjectSource {
    pub fn new(client: kube::Client) -> KubeObjectSource {
        KubeObjectSource { client }
    }

    async fn get(&self, path: String) -> Result<Option<Value>, String> {
        let req = http::Request::get(&path)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| format!("cannot build GET {path}: {e}"))?;
        match self.client.request::<Value>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(kube::Error::Api(status)) => Err(status.message.clone()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Names go into URL paths: refuse what would change the path.
fn path_segment(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['/', '?', '#', '%']) || name == "." || name == ".." {
        return Err(format!("invalid {kind} name {name:?}"));
    }
    Ok(())
}

impl ObjectSource for KubeObjectSource {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        path_segment("namespace", namespace)?;
        path_segment("configmap", name)?;
        self.get(format!("/api/v1/namespaces/{namespace}/configmaps/{name}"))
            .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        path_segment("namespace", namespace)?;
        path_segment("secret", name)?;
        self.get(format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
            .await
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: Option<String>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<IssuedToken, String> {
        path_segment("namespace", namespace)?;
        path_segment("serviceaccount", service_account)?;
        let mut spec = json!({
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid},
        });
        if let Some(aud) = audience {
            spec["audiences"] = json!([aud]);
        }
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": spec,
        });
        let path =
            format!("/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token");
        let req = http::Request::post(&path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| format!("cannot build POST {path}: {e}"))?;
        let resp: Value = match self.client.request(req).await {
            Ok(v) => v,
            Err(kube::Error::Api(status)) => return Err(status.message.clone()),
            Err(e) => return Err(e.to_string()),
        };
        token_from_response(&resp)
    }
}

/// Reads `status.token` and `status.expirationTimestamp` of a TokenRequest.
pub(crate) fn token_from_response(resp: &Value) -> Result<IssuedToken, String> {
    let token = resp
        .pointer("/status/token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the TokenRequest response has no status.token")?;
    let exp = resp
        .pointer("/status/expirationTimestamp")
        .and_then(Value::as_str)
        .ok_or("the TokenRequest response has no status.expirationTimestamp")?;
    let ts: jiff::Timestamp = exp
        .parse()
        .map_err(|e| format!("bad status.expirationTimestamp {exp:?}: {e}"))?;
    Ok(IssuedToken {
        token: token.to_string(),
        expiration: SystemTime::from(ts),
    })
}

/// One TokenRequest [`MemoryObjectSource`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestRecord {
    pub namespace: String,
    pub service_account: String,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

#[derive(Default)]
struct MemoryState {
    config_maps: BTreeMap<(String, String), Value>,
    secrets: BTreeMap<(String, String), Value>,
    token_requests: Vec<TokenRequestRecord>,
    fail_tokens: Option<String>,
    fail_lookups: Option<String>,
}

/// An in-memory [`ObjectSource`]: objects put in are what lookups find;
/// tokens are `token-<n>` valid for the requested seconds from the clock.
#[derive(Clone)]
pub struct MemoryObjectSource {
    state: Arc<Mutex<MemoryState>>,
    clock: Clock,
}

impl Default for MemoryObjectSource {
    fn default() -> Self {
        MemoryObjectSource {
            state: Arc::default(),
            clock: Arc::new(SystemTime::now),
        }
    }
}

impl MemoryObjectSource {
    pub fn new() -> MemoryObjectSource {
        MemoryObjectSource::default()
    }

    /// Tokens expire relative to this clock.
    pub fn with_clock(mut self, clock: Clock) -> MemoryObjectSource {
        self.clock = clock;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(obj: &Value) -> (String, String) {
        let s = |k: &str| {
            obj.pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        (s("namespace"), s("name"))
    }

    /// Adds or replaces a ConfigMap (by its metadata.namespace/name).
    pub fn put_config_map(&self, cm: Value) {
        self.state().config_maps.insert(Self::key(&cm), cm);
    }

    /// Adds or replaces a Secret (by its metadata.namespace/name).
    pub fn put_secret(&self, secret: Value) {
        self.state().secrets.insert(Self::key(&secret), secret);
    }

    pub fn remove_config_map(&self, namespace: &str, name: &str) {
        self.state()
            .config_maps
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Makes every token request fail with `reason` (`None`: succeed again).
    pub fn fail_tokens(&self, reason: Option<&str>) {
        self.state().fail_tokens = reason.map(str::to_string);
    }

    /// Makes every ConfigMap/Secret lookup fail with `reason`.
    pub fn fail_lookups(&self, reason: Option<&str>) {
        self.state().fail_lookups = reason.map(str::to_string);
    }

    /// The token requests answered so far, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequestRecord> {
        self.state().token_requests.clone()
    }
}

impl ObjectSource for MemoryObjectSource {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        let st = self.state();
        if let Some(reason) = &st.fail_lookups {
            return Err(reason.clone());
        }
        Ok(st
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        let st = self.state();
        if let Some(reason) = &st.fail_lookups {
            return Err(reason.clone());
        }
        Ok(st
            .secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: Option<String>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<IssuedToken, String> {
        let now = (self.clock)();
        let mut st = self.state();
        if let Some(reason) = &st.fail_tokens {
            return Err(reason.clone());
        }
        st.token_requests.push(TokenRequestRecord {
            namespace: namespace.into(),
            service_account: service_account.into(),
            audience,
            expiration_seconds,
            pod_name: pod_name.into(),
            pod_uid: pod_uid.into(),
        });
        Ok(IssuedToken {
            token: format!("token-{}", st.token_requests.len()),
            expiration: now + Duration::from_secs(expiration_seconds.max(0) as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_parsing() {
        let t = token_from_response(&json!({
            "status": {"token": "abc", "expirationTimestamp": "2030-01-02T03:04:05Z"}
        }))
        .unwrap();
        assert_eq!(t.token, "abc");
        let secs = t
            .expiration
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(secs, 1_893_553_445);
        assert!(token_from_response(&json!({"status": {"token": "abc"}})).is_err());
        assert!(token_from_response(&json!({"status": {
            "token": "", "expirationTimestamp": "2030-01-02T03:04:05Z"}}))
        .is_err());
        assert!(token_from_response(&json!({"status": {
            "token": "a", "expirationTimestamp": "yesterday"}}))
        .is_err());
    }

    /// The wire contract with the API server: paths, methods, the
    /// TokenRequest body, and how Status answers map to results. (The real
    /// API server is exercised by the agent's end-to-end tests.)
    #[tokio::test]
    async fn kube_source_requests() {
        type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let log = log.clone();
            async move {
                use http_body_util::BodyExt as _;
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let body = req.into_body().collect().await?.to_bytes();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((method, path.clone(), body));
                let (code, answer) = match path.as_str() {
                    "/api/v1/namespaces/ns/configmaps/present" => (
                        200,
                        json!({"kind": "ConfigMap", "metadata": {"name": "present"}, "data": {"k": "v"}}),
                    ),
                    "/api/v1/namespaces/ns/serviceaccounts/default/token" => (
                        201,
                        json!({"kind": "TokenRequest", "status": {
                            "token": "jwt", "expirationTimestamp": "2030-01-02T03:04:05Z"}}),
                    ),
                    "/api/v1/namespaces/ns/secrets/broken" => (
                        500,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "code": 500, "reason": "InternalError", "message": "etcd is sad"}),
                    ),
                    _ => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "code": 404, "reason": "NotFound", "message": "not found"}),
                    ),
                };
                http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(answer.to_string().into_bytes()))
                    .map_err(kube::Error::HttpError)
            }
        });
        let source = KubeObjectSource::new(kube::Client::new(svc, "default"));
        let cm = source.config_map("ns", "present").await.unwrap().unwrap();
        assert_eq!(cm["data"]["k"], "v");
        assert_eq!(source.config_map("ns", "absent").await.unwrap(), None);
        assert_eq!(source.secret("ns", "absent").await.unwrap(), None);
        assert_eq!(
            source.secret("ns", "broken").await.unwrap_err(),
            "etcd is sad"
        );
        let t = source
            .service_account_token("ns", "default", Some("vault".into()), 3607, "web", "u-1")
            .await
            .unwrap();
        assert_eq!(t.token, "jwt");
        let seen = seen.lock().unwrap().clone();
        let (method, path, body) = seen.last().unwrap();
        assert_eq!(method, "POST");
        assert_eq!(path, "/api/v1/namespaces/ns/serviceaccounts/default/token");
        assert_eq!(
            *body,
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": ["vault"],
                    "expirationSeconds": 3607,
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u-1"},
                },
            })
        );
        assert_eq!(seen[0].0, "GET");
        assert!(source
            .service_account_token("ns", "missing", None, 3600, "web", "u-1")
            .await
            .is_err());
    }

    #[test]
    fn names_cannot_change_the_path() {
        assert!(path_segment("configmap", "a/b").is_err());
        assert!(path_segment("configmap", "..").is_err());
        assert!(path_segment("configmap", "").is_err());
        assert!(path_segment("configmap", "kube-root-ca.crt").is_ok());
    }
}
