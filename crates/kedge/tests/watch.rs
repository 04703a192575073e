//! Watch semantics through `kube` (the Rust client) and raw HTTP.

mod common;

use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .expect("cm")
}

#[tokio::test]
async fn kube_watch_sees_events_and_bookmarks() {
    let srv = TestServer::start(&["--watch-bookmark-interval", "1"]).await;
    let client = srv.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("w0", json!({})))
        .await
        .expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");
    let wp = WatchParams::default().timeout(20);
    let mut stream = api.watch(&wp, &rv).await.expect("watch").boxed();
    api.create(&PostParams::default(), &cm("w1", json!({})))
        .await
        .expect("create");
    let mut saw_added = false;
    let mut saw_bookmark = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(saw_added && saw_bookmark) {
        let ev = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .expect("events within 10s")
            .expect("stream ok")
            .expect("stream open");
        match ev {
            WatchEvent::Added(o) => {
                assert_eq!(
                    o.metadata.name.as_deref(),
                    Some("w1"),
                    "only changes after rv {rv}"
                );
                saw_added = true;
            }
            WatchEvent::Bookmark(b) => {
                let brv: i64 = b.metadata.resource_version.parse().expect("numeric rv");
                assert!(brv >= rv.parse::<i64>().expect("rv"));
                saw_bookmark = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn label_change_is_seen_as_deleted_by_a_selector_watch() {
    let srv = TestServer::start(&[]).await;
    let client = srv.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("sel", json!({"tier": "a"})))
        .await
        .expect("create");
    let wp = WatchParams::default().labels("tier=a").timeout(20);
    let mut stream = api
        .watch(
            &wp,
            created.metadata.resource_version.as_deref().expect("rv"),
        )
        .await
        .expect("watch")
        .boxed();
    let mut changed = created.clone();
    changed.metadata.labels = Some([("tier".to_string(), "b".to_string())].into());
    api.replace("sel", &PostParams::default(), &changed)
        .await
        .expect("replace");
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open");
    match ev {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.labels.expect("labels")["tier"], "b"),
        other => panic!("expected DELETED, got {other:?}"),
    }
    changed.metadata.labels = Some([("tier".to_string(), "a".to_string())].into());
    changed.metadata.resource_version = None;
    api.replace("sel", &PostParams::default(), &changed)
        .await
        .expect("replace");
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open");
    assert!(matches!(ev, WatchEvent::Added(_)), "{ev:?}");
}

#[tokio::test]
async fn watch_from_a_revision_lost_by_restart_answers_410() {
    let mut srv = TestServer::start(&[]).await;
    let client = srv.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = api
        .create(&PostParams::default(), &cm("old", json!({})))
        .await
        .expect("create");
    api.create(&PostParams::default(), &cm("newer", json!({})))
        .await
        .expect("create");
    srv.kill9();
    srv.spawn().await;
    let client = srv.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = api
        .watch(
            &WatchParams::default().timeout(5),
            a.metadata.resource_version.as_deref().expect("rv"),
        )
        .await
        .expect("watch")
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open");
    match ev {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_runtime_watcher_recovers_across_a_restart() {
    for streaming in [false, true] {
        let mut srv = TestServer::start(&["--watch-bookmark-interval", "1"]).await;
        let port = srv.port;
        let client = srv.client().await;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        api.create(&PostParams::default(), &cm("before", json!({})))
            .await
            .expect("create");
        let cfg = if streaming {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut s = watcher(api, cfg).boxed();
            while let Some(ev) = s.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev {
                    let _ = tx.send(o.metadata.name.unwrap_or_default());
                }
            }
        });
        wait_for(&mut rx, "before")
            .await
            .expect("initial list seen");
        srv.kill9();
        srv.spawn().await;
        assert_eq!(srv.port, port);
        let api2: Api<ConfigMap> = Api::namespaced(srv.client().await, "default");
        api2.create(&PostParams::default(), &cm("after-restart", json!({})))
            .await
            .expect("create");
        wait_for(&mut rx, "after-restart")
            .await
            .expect("watcher recovered after the restart (410 -> relist)");
        task.abort();
    }
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    want: &str,
) -> Result<(), tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Some(n) if n == want => return,
                Some(_) => continue,
                None => panic!("watcher ended"),
            }
        }
    })
    .await
}
