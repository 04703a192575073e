//! Service-account tokens against a real `kedge server`: the TokenRequest
//! subresource (raw and through `kubectl create token`), authentication
//! with the tokens it returns (SelfSubjectReview, TokenReview, `kubectl
//! auth whoami`), their invalidation, and the ServiceAccount admission that
//! gives pods the projected `kube-api-access-*` volume.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{get_json, post_json, raw, TestServer};
use serde_json::{json, Value};

const NS: &str = "sat";
const AUDIENCES: [&str; 2] = ["https://kubernetes.default.svc.cluster.local", "k3s"];
const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn token_path(ns: &str, sa: &str) -> String {
    format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token")
}

async fn request_token(c: &kube::Client, sa: &str, spec: Value) -> (u16, Value) {
    post_json(
        c,
        &token_path(NS, sa),
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
    )
    .await
}

/// A TokenRequest that must fail: (status, the Status message, or the body
/// when it has none).
async fn token_error(c: &kube::Client, sa: &str, spec: Value) -> (u16, String) {
    let (code, v) = request_token(c, sa, spec).await;
    let message = v["message"].as_str().map(str::to_owned);
    (code, message.unwrap_or_else(|| v.to_string()))
}

/// A TokenRequest spec bound to an object.
fn bound_to(kind: &str, name: &str) -> Value {
    json!({"boundObjectRef": {"apiVersion": "v1", "kind": kind, "name": name}})
}

/// SelfSubjectReview as the token's bearer: (status, userInfo).
async fn whoami(s: &TestServer, token: &str) -> (u16, Value) {
    let c = s.with_token(token).await;
    let (code, v) = post_json(
        &c,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .await;
    (code, v["status"]["userInfo"].clone())
}

async fn wait_for(c: &kube::Client, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = get_json(c, path).await;
        if code == 200 {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} never appeared: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_gone(c: &kube::Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = get_json(c, path).await;
        if code == 404 {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, spec_extra: Value) -> Value {
    let mut spec = json!({
        "initContainers": [{"name": "init", "image": "busybox:1.36"}],
        "containers": [{"name": "app", "image": "busybox:1.36"}],
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

async fn setup(s: &TestServer) -> kube::Client {
    let c = s.client().await;
    let (code, v) = post_json(
        &c,
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = post_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    c
}

#[tokio::test]
async fn token_request_issues_tokens_that_authenticate() {
    let mut s = TestServer::start(&[]).await;
    let c = setup(&s).await;
    let sa = wait_for(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/robot"),
    )
    .await;
    let sa_uid = sa["metadata"]["uid"].as_str().expect("uid").to_string();

    // Discovery lists the subresource as upstream does.
    let (_, disc) = get_json(&c, "/api/v1").await;
    let sub = disc["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .cloned()
        .expect("serviceaccounts/token in discovery");
    assert_eq!(
        sub,
        json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
               "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
    );

    let before = now();
    let (code, tr) = request_token(&c, "robot", json!({})).await;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(tr["metadata"]["name"], "robot");
    assert_eq!(tr["metadata"]["namespace"], NS);
    assert_eq!(tr["spec"]["audiences"], json!(AUDIENCES));
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert_eq!(tr["spec"]["boundObjectRef"], Value::Null);
    let token = tr["status"]["token"].as_str().expect("token").to_string();
    let claims = payload(&token);
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(claims["sub"], format!("system:serviceaccount:{NS}:robot"));
    assert_eq!(claims["aud"], json!(AUDIENCES));
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(iat >= before && iat <= now(), "{claims}");
    assert_eq!(claims["nbf"], iat);
    assert_eq!(claims["exp"].as_i64(), Some(iat + 3600));
    assert_eq!(claims["jti"].as_str().map(str::len), Some(36), "{claims}");
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": NS, "serviceaccount": {"name": "robot", "uid": sa_uid}})
    );
    let exp_ts = tr["status"]["expirationTimestamp"].as_str().expect("ts");
    assert!(exp_ts.ends_with('Z'), "{exp_ts}");

    // The token authenticates as the service account.
    let (code, info) = whoami(&s, &token).await;
    assert_eq!(code, 201, "{info}");
    assert_eq!(
        info["username"],
        format!("system:serviceaccount:{NS}:robot")
    );
    assert_eq!(info["uid"], sa_uid);
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{NS}"),
            "system:authenticated"
        ])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/credential-id"],
        json!([format!("JTI={}", claims["jti"].as_str().unwrap_or(""))])
    );
    // ... and is not an admin: upstream's Forbidden.
    let sa_client = s.with_token(&token).await;
    let (code, v) = get_json(&sa_client, &format!("/api/v1/namespaces/{NS}/pods")).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        format!("pods is forbidden: User \"system:serviceaccount:{NS}:robot\" cannot list resource \"pods\" in API group \"\" in the namespace \"{NS}\"")
    );

    // TokenReview by an admin.
    let review = |t: &str, auds: Value| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t, "audiences": auds}});
    let (code, v) = post_json(
        &c,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &review(&token, json!([])),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    assert_eq!(
        v["status"]["user"]["username"],
        format!("system:serviceaccount:{NS}:robot")
    );
    assert_eq!(v["status"]["user"]["uid"], sa_uid);
    assert_eq!(v["status"]["audiences"], json!(AUDIENCES));
    let (_, v) = post_json(
        &c,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &review(&token, json!(["k3s"])),
    )
    .await;
    assert_eq!(v["status"]["audiences"], json!(["k3s"]), "{v}");
    let (_, v) = post_json(
        &c,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &review(&token, json!(["vault"])),
    )
    .await;
    assert_eq!(v["status"]["authenticated"], false, "{v}");

    // A token for another audience only does not authenticate here.
    let (code, tr) = request_token(&c, "robot", json!({"audiences": ["vault"]})).await;
    assert_eq!(code, 201, "{tr}");
    let vault = tr["status"]["token"].as_str().expect("token").to_string();
    assert_eq!(payload(&vault)["aud"], "vault");
    assert_eq!(whoami(&s, &vault).await.0, 401);

    // Tampered: another subject in the payload, same signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = payload(&token);
    forged["kubernetes.io"]["serviceaccount"]["name"] = json!("default");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json")),
        parts[2]
    );
    let (code, v) = whoami(&s, &tampered).await;
    assert_eq!(code, 401, "{v}");
    let (code, v, _) = raw(&s.with_token(&tampered).await, "GET", "/api", None, vec![]).await;
    assert_eq!(code, 401);
    assert_eq!(v["reason"], "Unauthorized");
    assert_eq!(v["message"], "Unauthorized");

    // Tokens signed with the server's key file: valid times pass, expired
    // ones (beyond the minute of leeway) do not.
    let pem = std::fs::read(s.data_dir().join("server/tls/service.key")).expect("service.key");
    let key = kedge_pki::ServiceAccountKey::from_pem(&pem, "service.key").expect("key");
    let mut fresh = payload(&token);
    fresh["jti"] = json!("00000000-0000-0000-0000-000000000001");
    let sign = |c: &Value| {
        key.sign_jwt(&serde_json::to_vec(c).expect("json"))
            .expect("sign")
    };
    assert_eq!(whoami(&s, &sign(&fresh)).await.0, 201);
    let mut expired = fresh.clone();
    let t = now();
    expired["iat"] = json!(t - 7200);
    expired["nbf"] = json!(t - 7200);
    expired["exp"] = json!(t - 120);
    assert_eq!(whoami(&s, &sign(&expired)).await.0, 401);
    let (_, v) = post_json(
        &c,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &review(&sign(&expired), json!([])),
    )
    .await;
    assert_eq!(v["status"]["authenticated"], false);
    assert_eq!(v["status"]["error"], "service account token has expired");

    // The key survives a restart: tokens issued before still work.
    s.kill9();
    s.spawn().await;
    assert_eq!(whoami(&s, &token).await.0, 201);
    let c = s.client().await;

    // A deleted (and recreated) service account invalidates its tokens.
    let (code, _, _) = raw(
        &c,
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/robot"),
        None,
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    wait_gone(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/robot"),
    )
    .await;
    assert_eq!(whoami(&s, &token).await.0, 401);
    let (code, _) = post_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(whoami(&s, &token).await.0, 401);
    let (_, v) = post_json(
        &c,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &review(&token, json!([])),
    )
    .await;
    assert!(
        v["status"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("service account UID (")),
        "{v}"
    );
}

#[tokio::test]
async fn token_request_validation_matches_upstream() {
    let s = TestServer::start(&[]).await;
    let c = setup(&s).await;
    wait_for(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/robot"),
    )
    .await;

    assert_eq!(
        token_error(&c, "robot", json!({"expirationSeconds": 60})).await,
        (422, "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes".into())
    );
    assert_eq!(
        token_error(&c, "nobody", json!({})).await,
        (404, "serviceaccounts \"nobody\" not found".into())
    );
    let (code, _) = get_json(&c, &token_path(NS, "robot")).await;
    assert_eq!(code, 405);
    let (code, v) = post_json(
        &c,
        &token_path(NS, "robot"),
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {"name": "other"}}),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(
        v["message"],
        "TokenRequest.authentication.k8s.io \"robot\" is invalid: metadata.name: Invalid value: \"other\": must match the service account name if specified"
    );
    assert_eq!(
        token_error(&c, "robot", bound_to("Pod", "ghost")).await,
        (404, "pods \"ghost\" not found".into())
    );
    assert_eq!(
        token_error(&c, "robot", bound_to("ConfigMap", "kube-root-ca.crt")).await,
        (
            400,
            "cannot bind token to object of type /v1, Kind=ConfigMap".into()
        )
    );

    // A pod running as another service account.
    let (code, v) = post_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/pods"),
        &pod("p-default", json!({})),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        token_error(&c, "robot", bound_to("Pod", "p-default")).await,
        (400, "cannot bind token for serviceaccount \"robot\" to pod running with different serviceaccount name.".into())
    );

    // Bound to a Secret with a stale uid: a Conflict.
    let (code, _) = post_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/secrets"),
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}}),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(
        token_error(&c, "robot", json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Secret", "name": "s1", "uid": "stale"}})).await,
        (409, "Operation cannot be fulfilled on Secret \"s1\": the UID in the bound object reference (stale) does not match the UID in record. The object might have been deleted and then recreated".into())
    );
    // Bound to the Secret: deleting it invalidates the token.
    let (code, tr) = request_token(&c, "robot", bound_to("Secret", "s1")).await;
    assert_eq!(code, 201, "{tr}");
    let token = tr["status"]["token"].as_str().expect("token").to_string();
    assert_eq!(payload(&token)["kubernetes.io"]["secret"]["name"], "s1");
    assert_eq!(whoami(&s, &token).await.0, 201);
    let (code, _, _) = raw(
        &c,
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/secrets/s1"),
        None,
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(whoami(&s, &token).await.0, 401);
}

#[tokio::test]
async fn pods_get_the_projected_token_volume() {
    let s = TestServer::start(&[]).await;
    let c = setup(&s).await;
    wait_for(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/default"),
    )
    .await;
    let pods = format!("/api/v1/namespaces/{NS}/pods");

    let (code, p) = post_json(
        &c,
        &pods,
        &pod(
            "web",
            json!({"containers": [
                {"name": "app", "image": "busybox:1.36"},
                {"name": "own", "image": "busybox:1.36", "volumeMounts": [{"name": "x", "mountPath": MOUNT_PATH}]},
            ], "volumes": [{"name": "x", "emptyDir": {}}]}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{p}");
    let spec = &p["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let vols = spec["volumes"].as_array().expect("volumes");
    assert_eq!(vols.len(), 2, "{spec}");
    let name = vols[1]["name"].as_str().expect("name");
    let suffix = name.strip_prefix("kube-api-access-").expect("prefix");
    assert_eq!(suffix.len(), 5);
    assert!(
        suffix
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{name}"
    );
    assert_eq!(
        vols[1]["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]})
    );
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(
        spec["containers"][1]["volumeMounts"],
        json!([{"name": "x", "mountPath": MOUNT_PATH}])
    );

    // Automounting off on the pod, or on its service account.
    let (code, p) = post_json(
        &c,
        &pods,
        &pod("quiet", json!({"automountServiceAccountToken": false})),
    )
    .await;
    assert_eq!(code, 201, "{p}");
    assert!(p["spec"].get("volumes").is_none(), "{p}");
    assert!(
        p["spec"]["containers"][0].get("volumeMounts").is_none(),
        "{p}"
    );
    let (code, _) = post_json(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "silent"},
                "automountServiceAccountToken": false, "imagePullSecrets": [{"name": "regcred"}]}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, p) = post_json(
        &c,
        &pods,
        &pod("silent", json!({"serviceAccountName": "silent"})),
    )
    .await;
    assert_eq!(code, 201, "{p}");
    assert!(p["spec"].get("volumes").is_none(), "{p}");
    assert_eq!(p["spec"]["serviceAccount"], "silent");
    assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));

    // An unknown service account is refused as upstream does.
    let (code, v) = post_json(
        &c,
        &pods,
        &pod("lost", json!({"serviceAccountName": "missing"})),
    )
    .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        format!("pods \"lost\" is forbidden: error looking up service account {NS}/missing: serviceaccount \"missing\" not found")
    );

    // A token bound to the pod, asked for as the kubelet does: a year long,
    // warning after the hour, and invalid once the pod is gone.
    let (_, web) = get_json(&c, &format!("{pods}/web")).await;
    let uid = web["metadata"]["uid"].as_str().expect("uid").to_string();
    let (code, tr) = post_json(
        &c,
        &token_path(NS, "default"),
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3607,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": uid}}}),
    )
    .await;
    assert_eq!(code, 201, "{tr}");
    let token = tr["status"]["token"].as_str().expect("token").to_string();
    let claims = payload(&token);
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(claims["exp"].as_i64(), Some(iat + 24 * 365 * 3600));
    assert_eq!(
        claims["kubernetes.io"]["warnafter"].as_i64(),
        Some(iat + 3607)
    );
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({"name": "web", "uid": uid})
    );
    let (code, info) = whoami(&s, &token).await;
    assert_eq!(code, 201, "{info}");
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["web"])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([uid])
    );
    let (code, _, _) = raw(
        &c,
        "DELETE",
        &format!("{pods}/web?gracePeriodSeconds=0"),
        None,
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    wait_gone(&c, &format!("{pods}/web")).await;
    assert_eq!(whoami(&s, &token).await.0, 401);
}

fn kubectl(minor: u32) -> Option<String> {
    let p = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
    std::path::Path::new(&p).exists().then_some(p)
}

#[tokio::test]
async fn kubectl_create_token_and_whoami() {
    let s = TestServer::start(&[]).await;
    let c = setup(&s).await;
    wait_for(
        &c,
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/robot"),
    )
    .await;
    let ca = s.data_dir().join("server/tls/server-ca.crt");
    let server = format!("https://127.0.0.1:{}", s.port);
    let mut ran = 0;
    for minor in [27, 33] {
        let Some(bin) = kubectl(minor) else {
            eprintln!("SKIPPING kubectl 1.{minor}: not installed");
            continue;
        };
        ran += 1;
        let out = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .args(["create", "token", "robot", "-n", NS, "--duration", "15m"])
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl 1.{minor} create token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let claims = payload(&token);
        assert_eq!(
            claims["exp"]
                .as_i64()
                .zip(claims["iat"].as_i64())
                .map(|(e, i)| e - i),
            Some(900),
            "{claims}"
        );
        let out = Command::new(&bin)
            .arg("--kubeconfig=/dev/null")
            .arg(format!("--server={server}"))
            .arg("--certificate-authority")
            .arg(&ca)
            .arg(format!("--token={token}"))
            .args(["auth", "whoami", "-o", "json"])
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl 1.{minor} auth whoami: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            v["status"]["userInfo"]["username"],
            format!("system:serviceaccount:{NS}:robot"),
            "kubectl 1.{minor}: {v}"
        );
        // The same token is not an admin.
        let out = Command::new(&bin)
            .arg("--kubeconfig=/dev/null")
            .arg(format!("--server={server}"))
            .arg("--certificate-authority")
            .arg(&ca)
            .arg(format!("--token={token}"))
            .args(["get", "pods", "-n", NS])
            .output()
            .expect("run kubectl");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("pods is forbidden: User \"system:serviceaccount:sat:robot\" cannot list resource \"pods\""),
            "kubectl 1.{minor}: {err}"
        );
    }
    assert!(
        ran > 0,
        "no kubectl found under /usr/lib/google-cloud-sdk/bin"
    );
}
