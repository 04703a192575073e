//! Watch-fed caches (client-go's informers), in two forms:
//!
//! - [`Cache`] and [`run`]: one watch per kind keeps a map of the objects
//!   by namespace and name, and tells a handler what changed, with the
//!   previous object on updates. After a re-list the objects that vanished
//!   meanwhile are reported as deleted, so no change is lost.
//! - [`watch_all`]: a kube-runtime reflector store and the stream of watch
//!   events that fills it, for controllers whose own loop polls the
//!   events, so everything lives inside the controller's future and stops
//!   with it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

type Key = (String, String);

/// The objects of one kind, shared between the watch loop and the workers.
pub struct Cache<K> {
    objects: Arc<RwLock<BTreeMap<Key, Arc<K>>>>,
    ready: watch::Sender<bool>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            objects: self.objects.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Cache<K> {
    pub fn new() -> Self {
        Cache {
            objects: Arc::new(RwLock::new(BTreeMap::new())),
            ready: watch::channel(false).0,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Key, Arc<K>>> {
        self.objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Key, Arc<K>>> {
        self.objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let from = (namespace.to_string(), String::new());
        self.read()
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Puts an object in (tests; the watch loop does it otherwise).
    pub fn insert(&self, namespace: &str, name: &str, obj: K) {
        self.write()
            .insert((namespace.to_string(), name.to_string()), Arc::new(obj));
    }

    /// Waits until the first full list has been loaded.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// What the watch saw.
pub enum Change<K> {
    Added(Arc<K>),
    Updated {
        old: Arc<K>,
        new: Arc<K>,
    },
    Deleted(Arc<K>),
    /// A (re-)list finished: the cache holds a complete view again.
    Synced,
}

/// `(namespace, name)` of an object.
pub fn key_of<K: Resource>(obj: &K) -> Key {
    let md = obj.meta();
    (
        md.namespace.clone().unwrap_or_default(),
        md.name.clone().unwrap_or_default(),
    )
}

/// Watches `api` forever, keeping `cache` current and calling `on` with each
/// change after the cache has it.
pub async fn run<K>(
    api: Api<K>,
    config: watcher::Config,
    cache: Cache<K>,
    mut on: impl FnMut(Change<K>),
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let kind = std::any::type_name::<K>();
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut relist: Option<BTreeMap<Key, Arc<K>>> = None;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(kind, error = %e, "watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(obj) => {
                let key = key_of(&obj);
                let new = Arc::new(obj);
                if let Some(buf) = relist.as_mut() {
                    buf.insert(key.clone(), new.clone());
                }
                let old = cache.write().insert(key, new.clone());
                on(changed(old, new));
            }
            watcher::Event::InitDone => {
                let listed = relist.take().unwrap_or_default();
                let gone: Vec<Arc<K>> = {
                    let mut objects = cache.write();
                    let gone_keys: Vec<Key> = objects
                        .keys()
                        .filter(|k| !listed.contains_key(*k))
                        .cloned()
                        .collect();
                    gone_keys
                        .into_iter()
                        .filter_map(|k| objects.remove(&k))
                        .collect()
                };
                for obj in gone {
                    on(Change::Deleted(obj));
                }
                cache.ready.send_replace(true);
                on(Change::Synced);
            }
            watcher::Event::Apply(obj) => {
                let new = Arc::new(obj);
                let old = cache.write().insert(key_of(new.as_ref()), new.clone());
                on(changed(old, new));
            }
            watcher::Event::Delete(obj) => {
                let old = cache.write().remove(&key_of(&obj));
                on(Change::Deleted(old.unwrap_or_else(|| Arc::new(obj))));
            }
        }
    }
}

fn changed<K>(old: Option<Arc<K>>, new: Arc<K>) -> Change<K> {
    match old {
        Some(old) => Change::Updated { old, new },
        None => Change::Added(new),
    }
}

/// A cache of every `K` (optionally filtered by `config`) and the stream of
/// watch events that keeps it current. The stream retries with backoff on
/// errors and never ends; poll it, or the cache stays empty.
pub fn watch_all<K>(
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
