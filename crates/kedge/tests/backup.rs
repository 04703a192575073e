//! `kedge backup` while the server runs, `kedge restore` while it is
//! stopped: after a restart the objects from before the backup exist and
//! those made after it do not.

mod common;

use common::TestServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"k": name}
    }))
    .expect("config map")
}

use common::kedge_with_data_dir as kedge;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_running_then_restore() {
    let mut server = TestServer::start(&[]).await;
    let data = server.data_dir();
    let file = server.dir.path().join("kedge-backup.db");
    let file_s = file.to_str().expect("utf8").to_owned();

    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    for i in 0..20 {
        cms.create(&PostParams::default(), &config_map(&format!("before-{i}")))
            .await
            .expect("create");
    }
    let out = kedge(&["backup", "--to", &file_s], &data);
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut last_rv = 0u64;
    for i in 0..5 {
        let cm = cms
            .create(&PostParams::default(), &config_map(&format!("after-{i}")))
            .await
            .expect("create");
        last_rv = rv(&cm);
    }

    // Refused while the server holds the datastore.
    let out = kedge(&["restore", "--from", &file_s], &data);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop kedge"), "{err}");

    server.stop();
    let out = kedge(&["restore", "--from", &file_s], &data);
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db_dir = data.join("server").join("db");
    let kept: Vec<String> = std::fs::read_dir(&db_dir)
        .expect("db dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.db.bak-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");

    server.spawn().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
    for i in 0..20 {
        let cm = cms
            .get(&format!("before-{i}"))
            .await
            .expect("restored object");
        assert_eq!(
            cm.data.and_then(|d| d.get("k").cloned()),
            Some(format!("before-{i}"))
        );
    }
    for i in 0..5 {
        assert!(cms
            .get_opt(&format!("after-{i}"))
            .await
            .expect("get")
            .is_none());
    }
    // The restored datastore takes writes, and never reuses a
    // resourceVersion handed out before the restore.
    let cm = cms
        .create(&PostParams::default(), &config_map("after-restore"))
        .await
        .expect("create after restore");
    assert!(rv(&cm) > last_rv, "{} <= {last_rv}", rv(&cm));
}

fn rv(cm: &ConfigMap) -> u64 {
    cm.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("numeric resourceVersion")
}
