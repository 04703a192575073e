//! Service-account tokens, as kube-apiserver makes and checks them
//! (`pkg/serviceaccount`): bound JWTs signed with the key in
//! `server/tls/service.key`, issued by the `serviceaccounts/token`
//! subresource ([`request`]) and by nothing else, never stored, and
//! authenticated by checking the signature, the time claims, the audience
//! and that the service account (and the pod, secret or node the token is
//! bound to) still exists with the same uid. [`admission`] is upstream's
//! `ServiceAccount` admission plugin, which gives pods the projected
//! `kube-api-access-*` volume that the kubelet fills with such a token.

pub(crate) mod admission;
pub(crate) mod request;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kedge_api::registry;
use kedge_api::{meta, ApiError};
use kedge_pki::ServiceAccountKey;
use kedge_store::{SqliteStore, Store};
use serde_json::{json, Map, Value};

use crate::auth::User;

/// The `iss` of every token (K3s's `--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The API server's audiences (K3s's `--api-audiences`): a token must name
/// one of them to authenticate here, and tokens requested without
/// audiences get all of them.
pub const API_AUDIENCES: &[&str] = &["https://kubernetes.default.svc.cluster.local", "k3s"];
/// The expiration the admission plugin asks for; pod-bound tokens with it
/// are extended to a year and warn after the hour (upstream's safe rollout
/// of bound tokens, `--service-account-extend-token-expiration`).
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
/// How long such an extended token really lives.
pub const EXPIRATION_EXTENSION_SECONDS: i64 = 24 * 365 * 60 * 60;
/// go-jose's `DefaultLeeway` for `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: i64 = 60;

/// `user.Info` extra keys upstream sets for service accounts.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// `system:serviceaccount:<ns>:<name>`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A `{name, uid}` reference in the `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    fn of(obj: &Value) -> ObjectRef {
        ObjectRef {
            name: meta::name(obj).to_string(),
            uid: meta::uid(obj).to_string(),
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("name".into(), json!(self.name));
        }
        if !self.uid.is_empty() {
            m.insert("uid".into(), json!(self.uid));
        }
        Value::Object(m)
    }

    fn from_json(v: Option<&Value>) -> Option<ObjectRef> {
        let v = v?.as_object()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Some(ObjectRef {
            name: s("name"),
            uid: s("uid"),
        })
    }
}

/// What a token is about: its service account and what it is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
}

/// The claims of a new token (`serviceaccount.Claims`), keys in the order
/// go-jose writes them (sorted, as a Go map marshals).
pub fn claims(
    subject: &Subject,
    audiences: &[String],
    now: i64,
    expiration_seconds: i64,
    warn_after_seconds: i64,
    jti: &str,
) -> Value {
    let mut k8s = Map::new();
    k8s.insert("namespace".into(), json!(subject.namespace));
    if let Some(n) = &subject.node {
        k8s.insert("node".into(), n.to_json());
    }
    if let Some(p) = &subject.pod {
        k8s.insert("pod".into(), p.to_json());
    }
    if let Some(s) = &subject.secret {
        k8s.insert("secret".into(), s.to_json());
    }
    k8s.insert("serviceaccount".into(), subject.service_account.to_json());
    if warn_after_seconds != 0 {
        k8s.insert("warnafter".into(), json!(now + warn_after_seconds));
    }
    // go-jose writes a single audience as a string.
    let aud = match audiences {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "aud": aud,
        "exp": now + expiration_seconds,
        "iat": now,
        "iss": ISSUER,
        "jti": jti,
        "kubernetes.io": Value::Object(k8s),
        "nbf": now,
        "sub": username(&subject.namespace, &subject.service_account.name),
    })
}

/// A token that authenticated: who, and for which of the requested audiences.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub audiences: Vec<String>,
}

/// Issues and authenticates service-account tokens.
pub struct ServiceAccountTokens {
    key: Arc<ServiceAccountKey>,
    store: Arc<SqliteStore>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The API server audiences as owned strings.
pub fn api_audiences() -> Vec<String> {
    API_AUDIENCES.iter().map(|s| s.to_string()).collect()
}

fn intersect(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| b.contains(x)).cloned().collect()
}

/// `%q` of a Go string slice, as upstream's error messages print audiences.
fn go_quote_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

impl ServiceAccountTokens {
    pub fn new(key: Arc<ServiceAccountKey>, store: Arc<SqliteStore>) -> Self {
        ServiceAccountTokens { key, store }
    }

    /// Sign claims into a token.
    pub fn sign(&self, claims: &Value) -> Result<String, ApiError> {
        let payload = serde_json::to_vec(claims).map_err(ApiError::internal)?;
        self.key
            .sign_jwt(&payload)
            .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))
    }

    /// Whether `token` is a JWT that claims this server as its issuer (not
    /// yet verified): only those are ours to accept or reject.
    pub fn has_our_issuer(token: &str) -> bool {
        if token.trim_start().starts_with('{') {
            return false;
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return false;
        }
        let Ok(payload) = URL_SAFE_NO_PAD.decode(parts[1]) else {
            return false;
        };
        serde_json::from_slice::<Value>(&payload)
            .ok()
            .and_then(|v| v.get("iss").and_then(Value::as_str).map(|i| i == ISSUER))
            .unwrap_or(false)
    }

    /// Authenticate a token that [`has_our_issuer`](Self::has_our_issuer).
    /// `requested` are the audiences the caller wants (a TokenReview's),
    /// the API server's when `None`. The error is upstream's message.
    pub fn authenticate(
        &self,
        token: &str,
        requested: Option<&[String]>,
    ) -> Result<Authenticated, String> {
        let payload = self.key.verify_jwt(token).map_err(|e| e.to_string())?;
        let claims: Value = serde_json::from_slice(&payload)
            .map_err(|e| format!("square/go-jose: error in claims: {e}"))?;
        let now = jiff::Timestamp::now().as_second();
        let subject = check_claims(&claims, requested, now)?;
        let audiences = subject.1;
        let subject = subject.0;
        self.check_objects(&subject, now)?;
        let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
        Ok(Authenticated {
            user: user_for(&subject, jti),
            audiences,
        })
    }

    fn get(&self, plural: &str, ns: Option<&str>, name: &str) -> Result<Option<Value>, String> {
        let ri =
            registry::lookup("", "v1", plural).ok_or_else(|| format!("{plural} not served"))?;
        match self.store.get(&ri.key(ns, name)) {
            Ok(Some(s)) => serde_json::from_slice(&s.value)
                .map(Some)
                .map_err(|e| format!("stored {plural} {name} is corrupt: {e}")),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The objects named in the claims must still exist with the same uid
    /// (`serviceaccount.validator.Validate`).
    fn check_objects(&self, s: &Subject, now: i64) -> Result<(), String> {
        let ns = s.namespace.as_str();
        let sa_name = s.service_account.name.as_str();
        let deleted_long_ago = |obj: &Value| {
            meta::deletion_timestamp(obj)
                .and_then(meta::parse_time)
                .is_some_and(|t| t.as_second() < now - LEEWAY_SECONDS)
        };
        let sa = self
            .get("serviceaccounts", Some(ns), sa_name)?
            .ok_or_else(|| format!("serviceaccounts \"{sa_name}\" not found"))?;
        if meta::uid(&sa) != s.service_account.uid {
            return Err(format!(
                "service account UID ({}) does not match claim ({})",
                meta::uid(&sa),
                s.service_account.uid
            ));
        }
        if deleted_long_ago(&sa) {
            return Err(format!("service account {ns}/{sa_name} has been deleted"));
        }
        let invalidated = || "service account token has been invalidated".to_string();
        if let Some(r) = &s.secret {
            let secret = self
                .get("secrets", Some(ns), &r.name)?
                .ok_or_else(invalidated)?;
            if meta::uid(&secret) != r.uid {
                return Err(format!(
                    "secret UID ({}) does not match service account secret ref claim ({})",
                    meta::uid(&secret),
                    r.uid
                ));
            }
            if deleted_long_ago(&secret) {
                return Err(invalidated());
            }
        }
        if let Some(r) = &s.pod {
            let pod = self
                .get("pods", Some(ns), &r.name)?
                .ok_or_else(invalidated)?;
            if meta::uid(&pod) != r.uid {
                return Err(format!(
                    "pod UID ({}) does not match service account pod ref claim ({})",
                    meta::uid(&pod),
                    r.uid
                ));
            }
            if deleted_long_ago(&pod) {
                return Err(invalidated());
            }
        } else if let Some(r) = &s.node {
            let node = self.get("nodes", None, &r.name)?.ok_or_else(invalidated)?;
            if meta::uid(&node) != r.uid {
                return Err(format!(
                    "node UID ({}) does not match service account node ref claim ({})",
                    meta::uid(&node),
                    r.uid
                ));
            }
            if deleted_long_ago(&node) {
                return Err(invalidated());
            }
        }
        Ok(())
    }
}

/// Check issuer, audiences and time claims of verified claims; returns the
/// subject and the audiences it authenticates for.
fn check_claims(
    claims: &Value,
    requested: Option<&[String]>,
    now: i64,
) -> Result<(Subject, Vec<String>), String> {
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != ISSUER {
        return Err(format!("token issuer {iss:?} is invalid"));
    }
    let implicit = api_audiences();
    let mut token_auds: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if token_auds.is_empty() {
        token_auds = implicit.clone();
    }
    let requested = requested
        .filter(|r| !r.is_empty())
        .map(<[String]>::to_vec)
        .unwrap_or(implicit);
    let audiences = intersect(&token_auds, &requested);
    if audiences.is_empty() {
        return Err(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quote_list(&token_auds),
            go_quote_list(&requested)
        ));
    }
    let num = |k: &str| claims.get(k).and_then(Value::as_i64);
    if num("nbf").is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("service account token is not valid yet".into());
    }
    if num("exp").is_some_and(|exp| now - LEEWAY_SECONDS > exp) {
        return Err("service account token has expired".into());
    }
    if num("iat").is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
        return Err("service account token is issued in the future".into());
    }
    let k8s = claims.get("kubernetes.io");
    let namespace = k8s
        .and_then(|k| k.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let service_account =
        ObjectRef::from_json(k8s.and_then(|k| k.get("serviceaccount"))).unwrap_or_default();
    if namespace.is_empty() || service_account.name.is_empty() {
        return Err("service account token claims could not be validated".into());
    }
    Ok((
        Subject {
            namespace,
            service_account,
            pod: ObjectRef::from_json(k8s.and_then(|k| k.get("pod"))),
            secret: ObjectRef::from_json(k8s.and_then(|k| k.get("secret"))),
            node: ObjectRef::from_json(k8s.and_then(|k| k.get("node"))),
        },
        audiences,
    ))
}

/// `ServiceAccountInfo.UserInfo()` plus `system:authenticated`.
fn user_for(s: &Subject, jti: &str) -> User {
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(p) = s
        .pod
        .as_ref()
        .filter(|p| !p.name.is_empty() && !p.uid.is_empty())
    {
        extra.insert(EXTRA_POD_NAME.into(), vec![p.name.clone()]);
        extra.insert(EXTRA_POD_UID.into(), vec![p.uid.clone()]);
    }
    if !jti.is_empty() {
        extra.insert(EXTRA_CREDENTIAL_ID.into(), vec![format!("JTI={jti}")]);
    }
    if let Some(n) = s.node.as_ref().filter(|n| !n.name.is_empty()) {
        extra.insert(EXTRA_NODE_NAME.into(), vec![n.name.clone()]);
        if !n.uid.is_empty() {
            extra.insert(EXTRA_NODE_UID.into(), vec![n.uid.clone()]);
        }
    }
    User {
        name: username(&s.namespace, &s.service_account.name),
        uid: s.service_account.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", s.namespace),
            "system:authenticated".into(),
        ],
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            namespace: "ns1".into(),
            service_account: ObjectRef {
                name: "robot".into(),
                uid: "sa-uid".into(),
            },
            pod: Some(ObjectRef {
                name: "p".into(),
                uid: "pod-uid".into(),
            }),
            secret: None,
            node: Some(ObjectRef {
                name: "n1".into(),
                uid: String::new(),
            }),
        }
    }

    #[test]
    fn claims_match_upstream_shape() {
        let c = claims(&subject(), &api_audiences(), 1000, 3600, 0, "7a4c-jti");
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "aud",
                "exp",
                "iat",
                "iss",
                "jti",
                "kubernetes.io",
                "nbf",
                "sub"
            ]
        );
        assert_eq!(c["aud"], json!(API_AUDIENCES));
        assert_eq!(c["exp"], 4600);
        assert_eq!(c["iat"], 1000);
        assert_eq!(c["nbf"], 1000);
        assert_eq!(c["iss"], ISSUER);
        assert_eq!(c["sub"], "system:serviceaccount:ns1:robot");
        assert_eq!(
            c["kubernetes.io"],
            json!({"namespace": "ns1", "node": {"name": "n1"}, "pod": {"name": "p", "uid": "pod-uid"},
                   "serviceaccount": {"name": "robot", "uid": "sa-uid"}})
        );
        assert!(c["kubernetes.io"].get("warnafter").is_none());
        // One audience is written as a string; warnafter when asked for.
        let c = claims(&subject(), &["vault".into()], 1000, 3600, 3607, "j");
        assert_eq!(c["aud"], "vault");
        assert_eq!(c["kubernetes.io"]["warnafter"], 4607);
    }

    #[test]
    fn claim_checks() {
        let c = claims(&subject(), &api_audiences(), 1000, 3600, 0, "j");
        let (s, auds) = check_claims(&c, None, 1000).unwrap();
        assert_eq!(s, subject());
        assert_eq!(auds, api_audiences());
        // Within the leeway after exp still passes; beyond it does not.
        assert!(check_claims(&c, None, 4600 + 60).is_ok());
        assert_eq!(
            check_claims(&c, None, 4600 + 61).unwrap_err(),
            "service account token has expired"
        );
        assert_eq!(
            check_claims(&c, None, 1000 - 61).unwrap_err(),
            "service account token is not valid yet"
        );
        // A TokenReview for another audience.
        let other = vec!["vault".to_string()];
        assert_eq!(
            check_claims(&c, Some(&other), 1000).unwrap_err(),
            "token audiences [\"https://kubernetes.default.svc.cluster.local\" \"k3s\"] is invalid for the target audiences [\"vault\"]"
        );
        // A token only for another audience does not authenticate here.
        let v = claims(&subject(), &other, 1000, 3600, 0, "j");
        assert!(check_claims(&v, None, 1000).is_err());
        let (_, auds) = check_claims(&v, Some(&other), 1000).unwrap();
        assert_eq!(auds, other);
        let mut wrong = c.clone();
        wrong["iss"] = json!("https://elsewhere");
        assert!(check_claims(&wrong, None, 1000).is_err());
    }

    #[test]
    fn user_info_as_upstream() {
        let u = user_for(&subject(), "abc");
        assert_eq!(u.name, "system:serviceaccount:ns1:robot");
        assert_eq!(u.uid, "sa-uid");
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns1",
                "system:authenticated"
            ]
        );
        assert_eq!(u.extra[EXTRA_POD_NAME], ["p"]);
        assert_eq!(u.extra[EXTRA_POD_UID], ["pod-uid"]);
        assert_eq!(u.extra[EXTRA_CREDENTIAL_ID], ["JTI=abc"]);
        assert_eq!(u.extra[EXTRA_NODE_NAME], ["n1"]);
        assert!(!u.extra.contains_key(EXTRA_NODE_UID));
    }

    #[test]
    fn issuer_sniffing() {
        let (key, _) = ServiceAccountKey::generate().unwrap();
        let c = claims(&subject(), &api_audiences(), 1000, 3600, 0, "j");
        let tok = key.sign_jwt(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert!(ServiceAccountTokens::has_our_issuer(&tok));
        assert!(!ServiceAccountTokens::has_our_issuer("static-token"));
        assert!(!ServiceAccountTokens::has_our_issuer("{\"a\":1}"));
        let other = key
            .sign_jwt(br#"{"iss":"https://accounts.example"}"#)
            .unwrap();
        assert!(!ServiceAccountTokens::has_our_issuer(&other));
    }
}
