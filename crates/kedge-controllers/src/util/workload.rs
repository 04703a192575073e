//! What the controllers built on kube-runtime's `Controller` (DaemonSet,
//! StatefulSet, CronJob) share around one sync: their context, error and
//! retry policy, the live object, events, listing what the object controls,
//! deleting with an event, and writing status only when it changed.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::pods::controlled_by;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `object` is `<kind> <namespace>/<name>`, e.g. `daemonset ns/web`.
    #[error("{object}: {source}")]
    Api {
        object: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    fn is_conflict(&self) -> bool {
        let Error::Api { source, .. } = self;
        matches!(source, kube::Error::Api(s) if s.code == 409)
    }
}

/// The client and the event recorder of one controller.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
}

impl Context {
    /// `controller` is the events' reporting component, as upstream names
    /// it (`daemonset-controller`).
    pub fn new(client: Client, controller: &str) -> Arc<Self> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: controller.into(),
                instance: None,
            },
        );
        Arc::new(Context { client, recorder })
    }
}

/// The `error_policy` of these controllers: log, and retry in two seconds.
pub fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// A write conflict (the object changed under the sync) is retried soon
/// rather than after the error back-off.
pub fn requeue_on_conflict(result: Result<Action, Error>) -> Result<Action, Error> {
    match result {
        Err(e) if e.is_conflict() => Ok(Action::requeue(Duration::from_millis(100))),
        r => r,
    }
}

/// Keeps the sooner of a pending requeue and `d`.
pub fn requeue_sooner(requeue: &mut Option<Duration>, d: Duration) {
    *requeue = Some(requeue.map_or(d, |r| r.min(d)));
}

fn api_error<K: Resource<DynamicType = ()>>(ns: &str, name: &str, source: kube::Error) -> Error {
    Error::Api {
        object: format!("{} {ns}/{name}", K::kind(&()).to_lowercase()),
        source,
    }
}

/// One sync of one object, as the API server has it now (not the
/// controller's cached copy).
pub struct ObjectSync<'a, K> {
    pub ctx: &'a Context,
    pub obj: K,
    pub name: String,
    pub ns: String,
}

impl<'a, K> ObjectSync<'a, K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    /// Reads `cached`'s object fresh; `None` when it is gone.
    pub async fn fetch(ctx: &'a Context, cached: &K) -> Result<Option<Self>, Error> {
        let ns = cached.namespace().unwrap_or_default();
        let name = cached.name_any();
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(found) => Ok(found.map(|obj| ObjectSync { ctx, obj, name, ns })),
            Err(source) => Err(api_error::<K>(&ns, &name, source)),
        }
    }

    pub fn err(&self) -> impl Fn(kube::Error) -> Error + '_ {
        move |source| api_error::<K>(&self.ns, &self.name, source)
    }

    pub fn uid(&self) -> &str {
        self.obj.meta().uid.as_deref().unwrap_or("")
    }

    /// Records an event about the object (best effort).
    pub async fn event(&self, type_: EventType, reason: &str, note: String) {
        let object = self.obj.object_ref(&());
        super::events::record(&self.ctx.recorder, &object, type_, reason, note).await;
    }

    /// The API of a kind in the object's namespace.
    pub fn api<T>(&self) -> Api<T>
    where
        T: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// The objects of the namespace matching `selector` (the label query
    /// syntax; "" for all) that the object controls.
    pub async fn list_controlled<T>(&self, selector: &str) -> Result<Vec<T>, Error>
    where
        T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let listed = self
            .api::<T>()
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(self.err())?;
        Ok(listed
            .items
            .into_iter()
            .filter(|o| controlled_by(o.meta(), self.uid()))
            .collect())
    }

    /// Deletes `name`; one already gone counts as deleted. Records
    /// `SuccessfulDelete` with the note `deleted`, or `FailedDelete` with
    /// the note `failed` gives.
    pub async fn delete_recorded<T>(
        &self,
        name: &str,
        params: &DeleteParams,
        deleted: String,
        failed: impl FnOnce(&kube::Error) -> String,
    ) -> Result<(), kube::Error>
    where
        T: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        match self.api::<T>().delete(name, params).await {
            Ok(_) => {
                self.event(EventType::Normal, "SuccessfulDelete", deleted)
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                self.event(EventType::Warning, "FailedDelete", failed(&e))
                    .await;
                Err(e)
            }
        }
    }

    /// Writes `status` (the fields this controller owns) with the object's
    /// resourceVersion, unless each already has that value in `old` (a
    /// missing field counts as 0).
    pub async fn patch_status_if_changed(&self, old: &Value, status: Value) -> Result<(), Error> {
        let changed = status
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| old.get(k).unwrap_or(&json!(0)) != v);
        if !changed {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": self.obj.meta().resource_version},
            "status": status,
        });
        self.api::<K>()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(self.err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> Error {
        Error::Api {
            object: "daemonset ns/web".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure("m", "r").with_code(code),
            )),
        }
    }

    #[test]
    fn conflicts_are_retried_soon_and_other_errors_kept() {
        let a = requeue_on_conflict(Err(api_error(409))).expect("a conflict is retried");
        assert_eq!(a, Action::requeue(Duration::from_millis(100)));
        let e = requeue_on_conflict(Err(api_error(500))).expect_err("kept");
        assert!(e.to_string().starts_with("daemonset ns/web: "), "{e}");
    }

    #[test]
    fn the_sooner_requeue_wins() {
        let mut r = None;
        requeue_sooner(&mut r, Duration::from_secs(5));
        requeue_sooner(&mut r, Duration::from_secs(9));
        assert_eq!(r, Some(Duration::from_secs(5)));
        requeue_sooner(&mut r, Duration::from_secs(2));
        assert_eq!(r, Some(Duration::from_secs(2)));
    }
}
