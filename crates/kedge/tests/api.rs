//! Integration tests against the real `kedge server` binary over HTTPS.

mod common;

use common::*;
use serde_json::{json, Value};

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

async fn cm_names(c: &kube::Client) -> Vec<String> {
    let (s, v) = get_json(c, CM).await;
    assert_eq!(s, 200, "{v}");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().expect("name").to_string())
        .collect()
}

fn assert_status(v: &Value, code: u16, reason: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[tokio::test]
async fn bad_input_gets_upstream_status_and_stores_nothing() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let before = cm_names(&c).await;
    let (_, list0) = get_json(&c, CM).await;
    // The configmaps as stored (the list's own resourceVersion moves with
    // unrelated background writes such as leader-election renewals).
    let items0 = list0["items"].clone();

    // Malformed body: 400.
    let (s, v, _) = raw(
        &c,
        "POST",
        CM,
        Some("application/json"),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert_status(&v, 400, "BadRequest");

    // Wrong apiVersion for the URL: 400.
    let mut wrong = cm("a1");
    wrong["apiVersion"] = json!("apps/v1");
    let (s, v) = post_json(&c, CM, &wrong).await;
    assert_eq!(s, 400);
    assert_status(&v, 400, "BadRequest");
    assert!(
        v["message"].as_str().unwrap_or("").contains("apps/v1"),
        "{v}"
    );

    // Wrong kind for the URL: 400.
    let mut wrong = cm("a2");
    wrong["kind"] = json!("Secret");
    let (s, v) = post_json(&c, CM, &wrong).await;
    assert_eq!(s, 400, "{v}");
    assert_status(&v, 400, "BadRequest");

    // Invalid name: 422 with a cause on metadata.name.
    let (s, v) = post_json(&c, CM, &cm("Bad_Name")).await;
    assert_eq!(s, 422);
    assert_status(&v, 422, "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name", "{v}");
    assert_eq!(
        v["details"]["causes"][0]["reason"], "FieldValueInvalid",
        "{v}"
    );
    assert_eq!(v["details"]["kind"], "ConfigMap", "{v}");
    assert_eq!(v["details"]["name"], "Bad_Name", "{v}");

    // Missing required field: 422 with field path.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    let (s, v) = post_json(&c, "/api/v1/namespaces/default/pods", &pod).await;
    assert_eq!(s, 422);
    assert_eq!(v["details"]["causes"][0]["field"], "spec.containers", "{v}");
    assert_eq!(
        v["details"]["causes"][0]["reason"], "FieldValueRequired",
        "{v}"
    );

    // URL and body namespaces disagree: 400.
    let mut other = cm("a3");
    other["metadata"]["namespace"] = json!("kube-system");
    let (s, v) = post_json(&c, CM, &other).await;
    assert_eq!(s, 400);
    assert_status(&v, 400, "BadRequest");
    assert!(
        v["message"].as_str().unwrap_or("").contains("namespace"),
        "{v}"
    );

    // Unknown resource: 404.
    let (s, v) = post_json(&c, "/api/v1/namespaces/default/widgets", &cm("a4")).await;
    assert_eq!(s, 404);
    assert_status(&v, 404, "NotFound");
    let (s, _) = get_json(&c, "/apis/nope.example.com/v1/things").await;
    assert_eq!(s, 404);

    // Missing namespace: 404 naming the namespace.
    let (s, v) = post_json(&c, "/api/v1/namespaces/missing/configmaps", &cm("a5")).await;
    assert_eq!(s, 404);
    assert_eq!(v["message"], "namespaces \"missing\" not found", "{v}");

    // Body over 3 MiB: 413.
    let mut big = cm("a6");
    big["data"]["k"] = json!("x".repeat(3 * 1024 * 1024 + 10));
    let (s, v) = post_json(&c, CM, &big).await;
    assert_eq!(s, 413);
    assert_status(&v, 413, "RequestEntityTooLarge");

    // Unsupported media type: 415.
    let (s, v, _) = raw(
        &c,
        "POST",
        CM,
        Some("text/plain"),
        serde_json::to_vec(&cm("a7")).expect("json"),
    )
    .await;
    assert_eq!(s, 415);
    assert_status(&v, 415, "UnsupportedMediaType");

    // Nothing of the above was stored, and no write happened at all.
    assert_eq!(cm_names(&c).await, before);
    let (_, list1) = get_json(&c, CM).await;
    assert_eq!(list1["items"], items0);

    // Duplicate create: 409 AlreadyExists; the first object is unchanged.
    let (s, first) = post_json(&c, CM, &cm("dup")).await;
    assert_eq!(s, 201);
    let mut second = cm("dup");
    second["data"]["k"] = json!("other");
    let (s, v) = post_json(&c, CM, &second).await;
    assert_eq!(s, 409);
    assert_status(&v, 409, "AlreadyExists");
    let (_, got) = get_json(&c, &format!("{CM}/dup")).await;
    assert_eq!(got["data"]["k"], "v");
    assert_eq!(
        got["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn authentication_and_public_endpoints() {
    let srv = TestServer::start(&[]).await;
    let anon = srv.anonymous().await;
    for p in ["/healthz", "/livez", "/readyz"] {
        let (s, _, body) = raw(&anon, "GET", p, None, vec![]).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(&body[..], b"ok", "{p}");
    }
    let (s, _, body) = raw(&anon, "GET", "/readyz?verbose", None, vec![]).await;
    assert_eq!(s, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("[+]datastore ok") && text.contains("readyz check passed"),
        "{text}"
    );
    let (s, v) = get_json(&anon, "/version").await;
    assert_eq!(s, 200);
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "33");
    let gv = v["gitVersion"].as_str().expect("gitVersion");
    assert!(gv.starts_with("v1.33.") && gv.contains("+kedge."), "{gv}");

    for p in ["/api", "/api/v1/namespaces", "/apis/apps/v1/deployments"] {
        let (s, v) = get_json(&anon, p).await;
        assert_eq!(s, 401, "{p}");
        assert_status(&v, 401, "Unauthorized");
    }
    let bad = srv.with_token("wrong").await;
    let (s, _) = get_json(&bad, "/api/v1/namespaces").await;
    assert_eq!(s, 401);
    let good = srv.with_token(&srv.token).await;
    let (s, v) = get_json(&good, "/api/v1/namespaces").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn optimistic_concurrency_and_finalizers() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let (s, created) = post_json(&c, CM, &cm("occ")).await;
    assert_eq!(s, 201);
    let mut v1 = created.clone();
    v1["data"]["k"] = json!("v1");
    let (s, updated) = put_json(&c, &format!("{CM}/occ"), &v1).await;
    assert_eq!(s, 200, "{updated}");
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    // A replace with the old resourceVersion is a conflict and changes nothing.
    let mut stale = created.clone();
    stale["data"]["k"] = json!("stale");
    let (s, v) = put_json(&c, &format!("{CM}/occ"), &stale).await;
    assert_eq!(s, 409);
    assert_status(&v, 409, "Conflict");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("the object has been modified"),
        "{v}"
    );
    let (_, now) = get_json(&c, &format!("{CM}/occ")).await;
    assert_eq!(now["data"]["k"], "v1");
    // An identical update is not a write.
    let (s, same) = put_json(&c, &format!("{CM}/occ"), &now).await;
    assert_eq!(s, 200);
    assert_eq!(
        same["metadata"]["resourceVersion"],
        now["metadata"]["resourceVersion"]
    );

    // Delete preconditions.
    let (s, v, _) = raw(&c, "DELETE", &format!("{CM}/occ"), Some("application/json"),
        serde_json::to_vec(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}})).expect("json")).await;
    assert_eq!(s, 409, "{v}");

    // Finalizers hold an object after delete until they are removed.
    let mut f = cm("fin");
    f["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (s, _) = post_json(&c, CM, &f).await;
    assert_eq!(s, 201);
    let (s, v, _) = raw(&c, "DELETE", &format!("{CM}/fin"), None, vec![]).await;
    assert_eq!(s, 200, "{v}");
    let (s, held) = get_json(&c, &format!("{CM}/fin")).await;
    assert_eq!(s, 200);
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    let mut released = held.clone();
    released["metadata"]["finalizers"] = json!([]);
    let (s, _) = put_json(&c, &format!("{CM}/fin"), &released).await;
    assert_eq!(s, 200);
    let (s, _) = get_json(&c, &format!("{CM}/fin")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn paging_with_limit_and_continue() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let (s, _) = post_json(
        &c,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "paging"}}),
    )
    .await;
    assert_eq!(s, 201);
    let base = "/api/v1/namespaces/paging/configmaps";
    // The namespace controller publishes the cluster CA in every namespace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, v) = get_json(&c, &format!("{base}/kube-root-ca.crt")).await;
        if s == 200 {
            assert!(
                v["data"]["ca.crt"]
                    .as_str()
                    .is_some_and(|p| p.contains("BEGIN CERTIFICATE")),
                "{v}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kube-root-ca.crt not published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for i in 0..5 {
        let (s, _) = post_json(&c, base, &cm(&format!("c{i}"))).await;
        assert_eq!(s, 201);
    }
    let mut names = Vec::new();
    let mut cont: Option<String> = None;
    let mut remaining = Vec::new();
    let mut list_rv = None;
    loop {
        let path = match &cont {
            Some(t) => format!("{base}?limit=2&continue={t}"),
            None => format!("{base}?limit=2"),
        };
        let (s, v) = get_json(&c, &path).await;
        assert_eq!(s, 200, "{v}");
        for i in v["items"].as_array().expect("items") {
            let n = i["metadata"]["name"].as_str().expect("name").to_string();
            // Every namespace also holds the cluster CA bundle.
            if n != "kube-root-ca.crt" {
                names.push(n);
            }
        }
        let rv = v["metadata"]["resourceVersion"].clone();
        assert_eq!(
            *list_rv.get_or_insert(rv.clone()),
            rv,
            "pages of one list share its resourceVersion"
        );
        remaining.push(v["metadata"]["remainingItemCount"].as_u64());
        match v["metadata"]["continue"].as_str() {
            Some(t) => cont = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(names, vec!["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(remaining, vec![Some(4), Some(2), None]);
    let (s, v) = get_json(&c, &format!("{base}?limit=2&continue=garbage!")).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let (s, v) = post_json(&c, CM, &cm(&format!("durable-{i}"))).await;
            (
                s,
                v["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        }));
    }
    let mut acked = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (s, rv) = t.await.expect("join");
        assert_eq!(s, 201);
        acked.push((format!("durable-{i}"), rv));
    }
    srv.kill9();
    srv.spawn().await;
    let c = srv.client().await;
    for (name, rv) in acked {
        let (s, v) = get_json(&c, &format!("{CM}/{name}")).await;
        assert_eq!(s, 200, "{name} lost after kill -9");
        assert_eq!(v["metadata"]["resourceVersion"], rv.as_str());
    }
    // The revision counter continued: a new write gets a higher resourceVersion.
    let (_, v) = post_json(&c, CM, &cm("after")).await;
    let rv: i64 = v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("rv");
    assert!(rv > 50, "{rv}");
}

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let (s, v) = get_json(&c, "/api").await;
    assert_eq!(s, 200);
    assert_eq!(v["kind"], "APIVersions");
    let (s, v) = get_json(&c, "/apis").await;
    assert_eq!(s, 200);
    let groups: Vec<&str> = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for g in [
        "apps",
        "batch",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "rbac.authorization.k8s.io",
    ] {
        assert!(groups.contains(&g), "{g} missing from {groups:?}");
    }
    let (s, v) = get_json(&c, "/apis/apps/v1").await;
    assert_eq!(s, 200);
    let scale = v["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .expect("scale");
    assert_eq!(scale["group"], "autoscaling");
    assert_eq!(scale["kind"], "Scale");
    for (ver, accept) in [
        ("v2", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"),
        ("v2beta1", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"),
    ] {
        let (s, v, _) = raw_with(&c, "GET", "/apis", None, Some(accept), vec![]).await;
        assert_eq!(s, 200);
        assert_eq!(v["kind"], "APIGroupDiscoveryList");
        assert_eq!(v["apiVersion"], format!("apidiscovery.k8s.io/{ver}"));
        let apps = v["items"].as_array().expect("items").iter().find(|i| i["metadata"]["name"] == "apps").expect("apps");
        let deploy = apps["versions"][0]["resources"].as_array().expect("res").iter().find(|r| r["resource"] == "deployments").expect("deployments");
        assert_eq!(deploy["shortNames"][0], "deploy");
    }
}

#[tokio::test]
async fn tables_and_selectors() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    for (name, app) in [("a", "x"), ("b", "y"), ("c", "x")] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
        let (s, v) = post_json(&c, "/api/v1/namespaces/default/pods", &pod).await;
        assert_eq!(s, 201, "{v}");
    }
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let (s, t, _) = raw_with(
        &c,
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dx",
        None,
        Some(accept),
        vec![],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter(|c| c["priority"] == 0)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, vec!["Name", "Ready", "Status", "Restarts", "Age"]);
    let rows = t["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["cells"][0], "a");
    assert_eq!(rows[0]["cells"][2], "Pending");
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    let (s, v) = get_json(
        &c,
        "/api/v1/namespaces/default/pods?labelSelector=app+notin+(x)",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["items"].as_array().expect("items").len(), 1);
    let (s, v) = get_json(
        &c,
        "/api/v1/pods?fieldSelector=metadata.name%3Dc,status.phase%3DPending",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["items"][0]["metadata"]["name"], "c");
    let (s, v) = get_json(&c, "/api/v1/pods?fieldSelector=spec.bogus%3D1").await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = get_json(&c, "/api/v1/pods?labelSelector=app%20in%20(").await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn access_reviews_and_impersonation() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}});
    let (s, v) = post_json(
        &c,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &ssar,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"]["allowed"], true);
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "bob", "groups": ["dev"], "resourceAttributes": {"verb": "list", "resource": "pods"}}});
    let (s, v) = post_json(
        &c,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        &sar,
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(v["status"]["allowed"], false, "{v}");
    // Nothing is stored: reviews only answer POST.
    let (s, _) = get_json(&c, "/apis/authorization.k8s.io/v1/subjectaccessreviews").await;
    assert_eq!(s, 405);
    let tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": srv.token}});
    let (_, v) = post_json(&c, "/apis/authentication.k8s.io/v1/tokenreviews", &tr).await;
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    let tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "nope"}});
    let (_, v) = post_json(&c, "/apis/authentication.k8s.io/v1/tokenreviews", &tr).await;
    assert_eq!(v["status"]["authenticated"], false, "{v}");
    for ver in ["v1", "v1beta1"] {
        let ssr = json!({"apiVersion": format!("authentication.k8s.io/{ver}"), "kind": "SelfSubjectReview"});
        let (s, v) = post_json(
            &c,
            &format!("/apis/authentication.k8s.io/{ver}/selfsubjectreviews"),
            &ssr,
        )
        .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["status"]["userInfo"]["username"], "system:admin");
    }
    // Impersonation: an admin acting as bob is bob, who may do nothing.
    let req = http::Request::builder()
        .method("GET")
        .uri("/api/v1/namespaces/default/pods")
        .header("impersonate-user", "bob")
        .body(kube::client::Body::from(vec![]))
        .expect("request");
    let resp = c.send(req).await.expect("send");
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn core_and_events_k8s_io_events_are_two_views_of_one_object() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "kedge.io/test", "reportingInstance": "t1",
        "action": "Testing", "reason": "Tested", "type": "Normal", "note": "hello",
        "regarding": {"kind": "Pod", "name": "p1", "namespace": "default"}});
    let (s, v) = post_json(&c, "/apis/events.k8s.io/v1/namespaces/default/events", &ev).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["note"], "hello");
    let (s, core) = get_json(&c, "/api/v1/namespaces/default/events/e1").await;
    assert_eq!(s, 200);
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "hello");
    assert_eq!(core["involvedObject"]["name"], "p1");
    assert_eq!(core["reportingComponent"], "kedge.io/test");
    // Field selectors work in each view's own terms.
    let (_, l) = get_json(
        &c,
        "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp1",
    )
    .await;
    assert_eq!(l["items"].as_array().map(Vec::len), Some(1), "{l}");
    let (_, l) = get_json(
        &c,
        "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Dp1",
    )
    .await;
    assert_eq!(l["items"][0]["regarding"]["name"], "p1", "{l}");
    // A core update shows through the other view.
    let mut upd = core.clone();
    upd["message"] = json!("changed");
    let (s, _) = put_json(&c, "/api/v1/namespaces/default/events/e1", &upd).await;
    assert_eq!(s, 200);
    let (_, e) = get_json(&c, "/apis/events.k8s.io/v1/namespaces/default/events/e1").await;
    assert_eq!(e["note"], "changed");
    assert_eq!(e["apiVersion"], "events.k8s.io/v1");
}
