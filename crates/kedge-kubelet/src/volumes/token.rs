//! Service account tokens for projected volumes, cached and refreshed as
//! upstream's token manager does (`pkg/kubelet/token/token_manager.go`): a
//! token is reused until 80% of its lifetime has passed or it is older than
//! 24 hours (each less a jitter of up to 10 s); a failed refresh keeps
//! serving the old token until it expires.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::source::{IssuedToken, ObjectSource};

const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_JITTER_SECS: f64 = 10.0;

/// What a projected `serviceAccountToken` source asks for.
#[derive(Debug, Clone)]
pub(crate) struct TokenRequest {
    pub namespace: String,
    pub service_account: String,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

impl TokenRequest {
    /// Non-confidential, safe to log (upstream's `keyFunc`).
    fn key(&self) -> String {
        format!(
            "{:?}/{:?}/{:?}/{}/{{Kind:\"Pod\", APIVersion:\"v1\", Name:{:?}, UID:{:?}}}",
            self.service_account,
            self.namespace,
            self.audience.iter().collect::<Vec<_>>(),
            self.expiration_seconds,
            self.pod_name,
            self.pod_uid,
        )
    }
}

#[derive(Debug, Clone)]
struct Cached {
    token: IssuedToken,
    expiration_seconds: i64,
    pod_uid: String,
}

/// The cache of issued tokens, shared by all pods of the agent.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, Cached>>,
}

fn after(now: SystemTime, t: SystemTime) -> bool {
    now > t
}

/// `requiresRefresh`, with the jitter (whole seconds, 0..=9) passed in.
fn requires_refresh(c: &Cached, now: SystemTime, jitter: Duration) -> bool {
    let secs = c.expiration_seconds.max(0) as u64;
    let exp = c.token.expiration;
    let iat = exp
        .checked_sub(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if after(now, iat + MAX_TTL - jitter) {
        return true;
    }
    let refresh_at = exp
        .checked_sub(Duration::from_secs(secs * 20 / 100) + jitter)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    after(now, refresh_at)
}

fn jitter() -> Duration {
    Duration::from_secs((rand::random::<f64>() * MAX_JITTER_SECS) as u64)
}

impl TokenCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `GetServiceAccountToken`: the cached token, or a new one.
    pub(crate) async fn get<S: ObjectSource>(
        &self,
        source: &S,
        req: &TokenRequest,
        now: SystemTime,
    ) -> Result<String, String> {
        let key = req.key();
        let cached = self.entries().get(&key).cloned();
        if let Some(c) = &cached {
            if !requires_refresh(c, now, jitter()) {
                return Ok(c.token.token.clone());
            }
        }
        let fetched = source
            .service_account_token(
                &req.namespace,
                &req.service_account,
                req.audience.clone(),
                req.expiration_seconds,
                &req.pod_name,
                &req.pod_uid,
            )
            .await;
        match (fetched, cached) {
            (Ok(token), _) => {
                tracing::debug!(key = %key, "service account token issued");
                let value = token.token.clone();
                self.entries().insert(
                    key,
                    Cached {
                        token,
                        expiration_seconds: req.expiration_seconds,
                        pod_uid: req.pod_uid.clone(),
                    },
                );
                Ok(value)
            }
            (Err(e), None) => Err(format!("failed to fetch token: {e}")),
            (Err(e), Some(c)) if after(now, c.token.expiration) => {
                Err(format!("token {key} expired and refresh failed: {e}"))
            }
            (Err(e), Some(c)) => {
                tracing::warn!(key = %key, error = %e, "couldn't update token; keeping the current one");
                Ok(c.token.token)
            }
        }
    }

    /// Drops the tokens of a pod (`DeleteServiceAccountToken`).
    pub(crate) fn forget_pod(&self, pod_uid: &str) {
        self.entries().retain(|_, c| c.pod_uid != pod_uid);
    }

    /// Drops expired tokens (upstream's periodic cleanup).
    pub(crate) fn drop_expired(&self, now: SystemTime) {
        self.entries()
            .retain(|_, c| !after(now, c.token.expiration));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::source::MemoryObjectSource;
    use std::sync::Arc;

    #[test]
    fn refresh_points() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = Cached {
            token: IssuedToken {
                token: "t".into(),
                expiration: t0 + Duration::from_secs(3600),
            },
            expiration_seconds: 3600,
            pod_uid: "u".into(),
        };
        let at = |s: u64| t0 + Duration::from_secs(s);
        let no_jitter = Duration::ZERO;
        assert!(!requires_refresh(&c, at(2879), no_jitter));
        assert!(!requires_refresh(&c, at(2880), no_jitter));
        assert!(requires_refresh(&c, at(2881), no_jitter));
        let max_jitter = Duration::from_secs(9);
        assert!(!requires_refresh(&c, at(2870), max_jitter));
        assert!(requires_refresh(&c, at(2872), max_jitter));
        // Long-lived tokens: refreshed after 24 hours.
        let day2 = Cached {
            token: IssuedToken {
                token: "t".into(),
                expiration: t0 + Duration::from_secs(7 * 86400),
            },
            expiration_seconds: 7 * 86400,
            pod_uid: "u".into(),
        };
        assert!(!requires_refresh(&day2, at(86400), no_jitter));
        assert!(requires_refresh(&day2, at(86401), no_jitter));
    }

    #[tokio::test]
    async fn cached_refreshed_and_kept_on_failure() {
        let now = Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000),
        ));
        let clock_now = now.clone();
        let source =
            MemoryObjectSource::new().with_clock(Arc::new(move || *clock_now.lock().unwrap()));
        let cache = TokenCache::default();
        let req = TokenRequest {
            namespace: "ns".into(),
            service_account: "default".into(),
            audience: Some("vault".into()),
            expiration_seconds: 3600,
            pod_name: "p".into(),
            pod_uid: "u1".into(),
        };
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000 + s);
        assert_eq!(cache.get(&source, &req, t(0)).await.unwrap(), "token-1");
        assert_eq!(cache.get(&source, &req, t(2000)).await.unwrap(), "token-1");
        assert_eq!(cache.get(&source, &req, t(2860)).await.unwrap(), "token-1");
        assert_eq!(source.token_requests().len(), 1);
        assert_eq!(
            source.token_requests()[0].audience.as_deref(),
            Some("vault")
        );

        // Past 80%: a new token, issued "now".
        *now.lock().unwrap() = t(2881);
        assert_eq!(cache.get(&source, &req, t(2881)).await.unwrap(), "token-2");

        // Refresh fails: the current token is served until it expires.
        source.fail_tokens(Some("apiserver down"));
        assert_eq!(
            cache.get(&source, &req, t(2881 + 2900)).await.unwrap(),
            "token-2"
        );
        let e = cache.get(&source, &req, t(2881 + 3601)).await.unwrap_err();
        assert!(
            e.contains("expired and refresh failed: apiserver down"),
            "{e}"
        );
        let other = TokenRequest {
            pod_uid: "u2".into(),
            ..req.clone()
        };
        assert_eq!(
            cache.get(&source, &other, t(0)).await.unwrap_err(),
            "failed to fetch token: apiserver down"
        );

        cache.drop_expired(t(2881 + 3601));
        assert_eq!(cache.len(), 0);
        source.fail_tokens(None);
        cache.get(&source, &req, t(10_000)).await.unwrap();
        cache.get(&source, &other, t(10_000)).await.unwrap();
        cache.forget_pod("u1");
        assert_eq!(cache.len(), 1);
    }
}
