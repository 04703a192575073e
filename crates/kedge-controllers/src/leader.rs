//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's
//! `leaderelection` semantics: a candidate takes the lease when it does not
//! exist, when it is free (`holderIdentity` empty) or when its holder has not
//! renewed it for `leaseDurationSeconds` *as observed by this candidate's own
//! clock* (so clock skew between servers does not matter); the leader renews
//! it every `retry_period` and steps down when it could not renew within
//! `renew_deadline`. Writes carry the resourceVersion they read, so two
//! candidates never both win one round.
//!
//! [`LeaderElector::run`] runs a future only while leading: when leadership
//! is lost the future is dropped (cancelling whatever it owns) and the
//! elector campaigns again; on shutdown a held lease is released so another
//! server takes over at once.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Upstream's defaults (kube-controller-manager `--leader-elect-*`).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The lease the controllers and the scheduler of `kedge server` share.
pub const CONTROLLERS_LEASE_NAMESPACE: &str = "kube-system";
pub const CONTROLLERS_LEASE_NAME: &str = "kedge-controllers";

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {namespace}/{name} is held by {holder:?}")]
    HeldByOther {
        namespace: String,
        name: String,
        holder: String,
    },
}

pub type Result<T> = std::result::Result<T, LeaderError>;

/// Which lease to hold, as whom, and the timings.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (`holderIdentity`); unique per server.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Upstream's default timings for the lease `namespace/name`.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElectionConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

/// What this candidate last saw of the lease, and when (its own clock).
#[derive(Debug, Clone)]
struct Observed {
    holder: String,
    renew_time: Option<jiff::Timestamp>,
    lease_duration: Duration,
    at: Instant,
}

/// Whether a candidate may write itself into a lease it read.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Ours already: renew.
    Renew,
    /// Free or expired: take it (a new leadership term).
    Acquire,
    /// Someone else holds a live lease.
    Wait(String),
}

fn verdict(observed: &Observed, identity: &str, now: Instant) -> Verdict {
    if observed.holder == identity {
        return Verdict::Renew;
    }
    if observed.holder.is_empty() || observed.at + observed.lease_duration <= now {
        return Verdict::Acquire;
    }
    Verdict::Wait(observed.holder.clone())
}

/// A candidate for one lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    observed: Option<Observed>,
    leading: watch::Sender<bool>,
}

fn micro_now() -> MicroTime {
    // The API keeps microseconds; truncate so what we write is what we read.
    let now = jiff::Timestamp::now();
    let micros = now.as_microsecond();
    MicroTime(jiff::Timestamp::from_microsecond(micros).unwrap_or(now))
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> Self {
        let (leading, _) = watch::channel(false);
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            leading,
        }
    }

    /// `true` while this candidate leads.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    fn api_err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: `Ok(())` when this
    /// candidate holds the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<()> {
        let now = Instant::now();
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(c) => c,
            Err(e) => return Err(self.api_err(e)),
        };
        let Some(mut lease) = current else {
            let spec = LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds()),
                acquire_time: Some(micro_now()),
                renew_time: Some(micro_now()),
                lease_transitions: Some(0),
                ..Default::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            let created = self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(|e| self.api_err(e))?;
            self.observe(&created, now);
            return Ok(());
        };
        self.observe(&lease, now);
        let observed = self
            .observed
            .clone()
            .ok_or_else(|| LeaderError::HeldByOther {
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                holder: String::new(),
            })?;
        let spec = lease.spec.get_or_insert_with(Default::default);
        match verdict(&observed, &self.config.identity, Instant::now()) {
            Verdict::Wait(holder) => {
                return Err(LeaderError::HeldByOther {
                    namespace: self.config.namespace.clone(),
                    name: self.config.name.clone(),
                    holder,
                })
            }
            Verdict::Renew => {}
            Verdict::Acquire => {
                spec.acquire_time = Some(micro_now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.lease_seconds());
        spec.renew_time = Some(micro_now());
        // The read resourceVersion makes this a compare-and-swap.
        let updated = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.api_err(e))?;
        self.observe(&updated, Instant::now());
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Record what the lease says; the observation time moves only when the
    /// record changed.
    fn observe(&mut self, lease: &Lease, now: Instant) {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let renew_time = spec.renew_time.map(|t| t.0);
        let lease_duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
        );
        let same = self
            .observed
            .as_ref()
            .is_some_and(|o| o.holder == holder && o.renew_time == renew_time);
        let at = match &self.observed {
            Some(o) if same => o.at,
            _ => now,
        };
        self.observed = Some(Observed {
            holder,
            renew_time,
            lease_duration,
            at,
        });
    }

    /// Give the lease up (as client-go's `ReleaseOnCancel`): an empty holder
    /// and a one-second duration, so the next candidate takes it at once.
    pub async fn release(&mut self) -> Result<()> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.api_err(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(micro_now());
        spec.acquire_time = Some(micro_now());
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.api_err(e))?;
        Ok(())
    }

    /// Campaign until leading, then run `on_leading()` while the lease is
    /// renewed; when it cannot be renewed within the renew deadline the
    /// future is dropped and the campaign starts over. Returns when
    /// `shutdown` resolves (releasing the lease if held) or when
    /// `on_leading()`'s future finishes while leading.
    pub async fn run<F, Fut>(&mut self, mut on_leading: F, shutdown: impl Future<Output = ()>)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        loop {
            // Campaign.
            loop {
                match self.try_acquire_or_renew().await {
                    Ok(()) => break,
                    Err(LeaderError::HeldByOther { .. }) => {}
                    Err(e) => tracing::debug!(error = %e, "leader election: cannot acquire"),
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                }
            }
            tracing::info!(
                lease = %format!("{}/{}", self.config.namespace, self.config.name),
                identity = %self.config.identity,
                "became leader"
            );
            self.leading.send_replace(true);
            let work = on_leading();
            tokio::pin!(work);
            let mut last_renew = Instant::now();
            let outcome = loop {
                tokio::select! {
                    _ = &mut shutdown => break Outcome::Shutdown,
                    _ = &mut work => break Outcome::Finished,
                    _ = tokio::time::sleep(self.config.retry_period) => {}
                }
                let deadline = last_renew + self.config.renew_deadline;
                let attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew());
                match attempt.await {
                    Ok(Ok(())) => last_renew = Instant::now(),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "leader election: cannot renew the lease");
                        if matches!(e, LeaderError::HeldByOther { .. }) {
                            break Outcome::Lost;
                        }
                    }
                    Err(_) => {}
                }
                if Instant::now() >= deadline {
                    break Outcome::Lost;
                }
            };
            self.leading.send_replace(false);
            match outcome {
                Outcome::Lost => {
                    tracing::warn!(identity = %self.config.identity, "lost leadership; campaigning again");
                }
                Outcome::Finished | Outcome::Shutdown => {
                    if let Err(e) = self.release().await {
                        tracing::warn!(error = %e, "leader election: cannot release the lease");
                    }
                    return;
                }
            }
        }
    }
}

enum Outcome {
    Lost,
    Finished,
    Shutdown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: &str, at: Instant) -> Observed {
        Observed {
            holder: holder.into(),
            renew_time: None,
            lease_duration: Duration::from_secs(15),
            at,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_lease_of_another_holder_is_respected_until_it_expires() {
        let t0 = Instant::now();
        let o = seen("a", t0);
        assert_eq!(verdict(&o, "b", t0), Verdict::Wait("a".into()));
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(verdict(&o, "b", Instant::now()), Verdict::Wait("a".into()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(verdict(&o, "b", Instant::now()), Verdict::Acquire);
    }

    #[tokio::test(start_paused = true)]
    async fn own_and_free_leases() {
        let t0 = Instant::now();
        assert_eq!(verdict(&seen("a", t0), "a", t0), Verdict::Renew);
        assert_eq!(verdict(&seen("", t0), "b", t0), Verdict::Acquire);
    }

    #[test]
    fn micro_time_has_no_nanoseconds() {
        let t = micro_now();
        assert_eq!(t.0.subsec_nanosecond() % 1000, 0);
    }
}
