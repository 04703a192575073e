//! A watched, cached view of one kind (client-go's informer): a kube-runtime
//! reflector whose events the controller's own loop polls, so everything it
//! spawns lives inside the controller's future and stops with it.

use std::fmt::Debug;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// A cache of every `K` (optionally filtered by `config`) and the stream of
/// watch events that keeps it current. The stream retries with backoff on
/// errors and never ends; poll it, or the cache stays empty.
pub(crate) fn watch_all<K>(
    client: &kube::Client,
    config: watcher::Config,
) -> (Store<K>, BoxStream<'static, watcher::Event<K>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api = Api::<K>::all(client.clone());
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .filter_map(move |r| {
            let kind = kind.clone();
            async move {
                match r {
                    Ok(ev) => Some(ev),
                    Err(e) => {
                        tracing::debug!(kind = %kind, error = %e, "watch failed; retrying");
                        None
                    }
                }
            }
        })
        .boxed();
    (reader, stream)
}

/// `namespace/name` of an object.
pub(crate) fn key_of<K: Resource>(obj: &K) -> (String, String) {
    let md = obj.meta();
    (
        md.namespace.clone().unwrap_or_default(),
        md.name.clone().unwrap_or_default(),
    )
}
