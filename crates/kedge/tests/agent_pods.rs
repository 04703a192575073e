//! End-to-end: `kedge server` with its node agent runs real pods on a
//! private containerd, driven by kubectl 1.27 (SPDY) and 1.33 (WebSocket).
//! Needs root, containerd and runc (CI has them after scripts/setup.sh);
//! elsewhere each test prints a loud SKIP and passes.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::cluster::{container_status, is_ready, skip, tail, Cluster, BUSYBOX};
use kedge_kubelet::cri::api::{ContainerFilter, PodSandboxFilter};
use kedge_kubelet::RuntimeService;
use serde_json::Value;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What CRI still has for a pod uid: (sandboxes, containers).
async fn cri_leftovers(c: &Cluster, uid: &str) -> (usize, usize) {
    let cri = c.cri().await;
    let sel: std::collections::HashMap<String, String> =
        [("io.kubernetes.pod.uid".to_owned(), uid.to_owned())]
            .into_iter()
            .collect();
    let sandboxes = cri
        .list_pod_sandbox(Some(PodSandboxFilter {
            label_selector: sel.clone(),
            ..Default::default()
        }))
        .await
        .expect("list sandboxes");
    let containers = cri
        .list_containers(Some(ContainerFilter {
            label_selector: sel,
            ..Default::default()
        }))
        .await
        .expect("list containers");
    (sandboxes.len(), containers.len())
}

fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// `kubectl port-forward` on a free local port; returns the child and port.
fn port_forward(c: &Cluster, minor: u32, pod: &str, remote: u16) -> (std::process::Child, u16) {
    let local = common::free_port();
    let child =
        std::process::Command::new(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"))
            .arg("--kubeconfig")
            .arg(c.server.kubeconfig())
            .args([
                "port-forward",
                &format!("pod/{pod}"),
                &format!("{local}:{remote}"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl port-forward");
    (child, local)
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: kedge.local/busybox:1.36
    command: ["sh", "-c", "echo hello from $(POD_NAME); echo oops >&2; mkdir -p /www; echo page-of-$(POD_NAME) > /www/index.html; exec httpd -f -p 8080 -h /www"]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    ports: [{containerPort: 8080, name: http}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_and_stream_with_kubectl_1_27_and_1_33() {
    if skip("pods_run_and_stream_with_kubectl_1_27_and_1_33") {
        return;
    }
    let c = Cluster::start().await;
    c.apply(&WEB.replace("NODE", &c.node));
    let pod = c
        .wait_pod(
            "default",
            "web",
            Duration::from_secs(60),
            "Running and Ready",
            |p| p["status"]["phase"] == "Running" && is_ready(p),
        )
        .await;
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_owned();
    let st = container_status(&pod, "app");
    assert_eq!(st["restartCount"], 0);
    assert!(st["containerID"]
        .as_str()
        .is_some_and(|id| id.starts_with("containerd://")));
    assert!(pod["status"]["podIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.")));
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");

    for minor in [27, 33] {
        // Logs: what the container printed, both streams.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = c.kubectl(minor, &["logs", "web"]);
            if out(&o).contains("hello from web") && out(&o).contains("oops") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl 1.{minor} logs: {} {}",
                out(&o),
                err(&o)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Exec: output of both streams and the exit code.
        let o = c.kubectl(
            minor,
            &[
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo out-$((6*7)); echo err >&2; exit 3",
            ],
        );
        assert_eq!(o.status.code(), Some(3), "1.{minor} exec: {}", err(&o));
        assert_eq!(out(&o), "out-42\n");
        assert!(
            err(&o).contains("err"),
            "1.{minor} exec stderr: {}",
            err(&o)
        );
        // Exec with stdin.
        let o = c.kubectl_stdin(minor, &["exec", "-i", "web", "--", "cat"], Some(b"piped\n"));
        assert!(o.status.success(), "1.{minor} exec -i: {}", err(&o));
        assert_eq!(out(&o), "piped\n");
        // cp both ways.
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("in.txt");
        std::fs::write(&src, format!("copied by 1.{minor}\n")).expect("write");
        let o = c.kubectl(
            minor,
            &["cp", src.to_str().expect("utf8"), "web:/tmp/in.txt"],
        );
        assert!(o.status.success(), "1.{minor} cp to pod: {}", err(&o));
        let o = c.kubectl(minor, &["exec", "web", "--", "cat", "/tmp/in.txt"]);
        assert_eq!(out(&o), format!("copied by 1.{minor}\n"));
        let back = dir.path().join("back.txt");
        let o = c.kubectl(
            minor,
            &["cp", "web:/www/index.html", back.to_str().expect("utf8")],
        );
        assert!(o.status.success(), "1.{minor} cp from pod: {}", err(&o));
        assert_eq!(
            std::fs::read_to_string(&back).expect("copied file"),
            "page-of-web\n"
        );
        // Port-forward to busybox httpd.
        let (mut child, local) = port_forward(&c, minor, "web", 8080);
        let deadline = Instant::now() + Duration::from_secs(15);
        let page = loop {
            match http_get(local, "/index.html") {
                Ok(b) if b.contains("page-of-web") => break b,
                other => {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let o = child.wait_with_output().expect("pf output");
                        panic!(
                            "1.{minor} port-forward: {other:?}\n{}{}\n{}",
                            out(&o),
                            err(&o),
                            tail(&c.server.log(), 40)
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        assert!(page.starts_with("HTTP/1."), "{page}");
        let _ = child.kill();
        let _ = child.wait();
    }

    // Events for each step.
    let events = c.events("default", "web").await;
    for want in [
        "Pulled: ",
        "Created: Created container: app",
        "Started: Started container app",
    ] {
        assert!(
            events.iter().any(|e| e.starts_with(want)),
            "no {want:?} event in {events:?}"
        );
    }

    // Deletion: graceful stop, then nothing left in the runtime.
    let o = c.kubectl(33, &["delete", "pod", "web", "--wait=true"]);
    assert!(o.status.success(), "delete: {}", err(&o));
    c.wait_gone("default", "web", Duration::from_secs(30)).await;
    assert_eq!(cri_leftovers(&c, &uid).await, (0, 0));
    let events = c.events("default", "web").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Killing: Stopping container app")),
        "{events:?}"
    );
}

fn terminated_times(st: &Value) -> Option<(String, String)> {
    let t = &st["lastState"]["terminated"];
    Some((
        t["startedAt"].as_str()?.to_owned(),
        t["finishedAt"].as_str()?.to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_show_upstream_reasons_and_back_off() {
    if skip("failures_show_upstream_reasons_and_back_off") {
        return;
    }
    let c = Cluster::start().await;
    let node = &c.node;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: app, image: "{BUSYBOX}", command: ["sh", "-c", "date +%s; exit 2"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: noimage}}
spec:
  nodeName: {node}
  containers:
  - {{name: app, image: "kedge.local/does-not-exist:1"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: oom}}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: app
    image: "{BUSYBOX}"
    command: ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
    resources: {{limits: {{memory: 20Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: done}}
spec:
  nodeName: {node}
  restartPolicy: OnFailure
  containers:
  - {{name: app, image: "{BUSYBOX}", command: ["sh", "-c", "echo bye > /dev/termination-log; exit 0"]}}
"#
    ));

    // OOMKilled, and the pod fails (restartPolicy Never).
    let pod = c
        .wait_pod(
            "default",
            "oom",
            Duration::from_secs(60),
            "Failed with OOMKilled",
            |p| p["status"]["phase"] == "Failed",
        )
        .await;
    let t = &container_status(&pod, "app")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{pod:#}");
    assert_eq!(t["exitCode"], 137);

    // Completed with its termination message; the pod Succeeded.
    let pod = c
        .wait_pod(
            "default",
            "done",
            Duration::from_secs(60),
            "Succeeded",
            |p| p["status"]["phase"] == "Succeeded",
        )
        .await;
    let t = &container_status(&pod, "app")["state"]["terminated"];
    assert_eq!(t["reason"], "Completed");
    assert_eq!(t["message"], "bye\n");

    // A missing image: ErrImagePull, then ImagePullBackOff, with events.
    c.wait_pod(
        "default",
        "noimage",
        Duration::from_secs(30),
        "ErrImagePull",
        |p| container_status(p, "app")["state"]["waiting"]["reason"] == "ErrImagePull",
    )
    .await;
    let pod = c
        .wait_pod(
            "default",
            "noimage",
            Duration::from_secs(30),
            "ImagePullBackOff",
            |p| container_status(p, "app")["state"]["waiting"]["reason"] == "ImagePullBackOff",
        )
        .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    let msg = container_status(&pod, "app")["state"]["waiting"]["message"].clone();
    assert_eq!(
        msg,
        "Back-off pulling image \"kedge.local/does-not-exist:1\""
    );
    let events = c.events("default", "noimage").await;
    assert!(
        events.iter().any(|e| e.starts_with("Failed: Failed to pull image \"kedge.local/does-not-exist:1\"")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "Failed: Error: ErrImagePull"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("BackOff: Back-off pulling image")),
        "{events:?}"
    );

    // Crash loop: restarts after 0 s, then 10 s, then 20 s (upstream's
    // back-off), with CrashLoopBackOff in between.
    let mut gaps = Vec::new();
    let mut last_finish: Option<jiff::Timestamp> = None;
    let mut seen_restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut saw_backoff = false;
    while seen_restarts < 3 {
        let (_, pod) = c.pod("default", "crash").await;
        let st = container_status(&pod, "app").clone();
        if st["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            saw_backoff = true;
            let m = st["state"]["waiting"]["message"].as_str().unwrap_or("");
            assert!(
                m.starts_with("back-off ")
                    && m.contains("restarting failed container=app pod=crash_default("),
                "{m}"
            );
        }
        let rc = st["restartCount"].as_i64().unwrap_or(0);
        if rc > seen_restarts {
            // The new container's start against the previous one's finish.
            if let (Some((_, finished)), Some(started)) = (
                terminated_times(&st),
                st["state"]["running"]["startedAt"]
                    .as_str()
                    .or(st["state"]["terminated"]["startedAt"].as_str()),
            ) {
                let f: jiff::Timestamp = finished.parse().expect("finishedAt");
                let s: jiff::Timestamp = started.parse().expect("startedAt");
                if rc == seen_restarts + 1 && last_finish != Some(f) {
                    gaps.push((rc, s.duration_since(f).as_secs()));
                    last_finish = Some(f);
                }
            }
            seen_restarts = rc;
        }
        assert!(
            Instant::now() < deadline,
            "crash loop: restarts {seen_restarts}, gaps {gaps:?}: {pod:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_backoff, "never saw CrashLoopBackOff");
    let (_, pod) = c.pod("default", "crash").await;
    let st = container_status(&pod, "app");
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 2);
    assert_eq!(st["lastState"]["terminated"]["reason"], "Error");
    // Restart 2 waited about 10 s, restart 3 about 20 s (second resolution).
    let gap = |n: i64| gaps.iter().find(|(rc, _)| *rc == n).map(|(_, g)| *g);
    if let Some(g) = gap(2) {
        assert!((9..=13).contains(&g), "second restart after {g}s: {gaps:?}");
    }
    if let Some(g) = gap(3) {
        assert!((19..=23).contains(&g), "third restart after {g}s: {gaps:?}");
    }
    assert!(
        gap(3).is_some() || gap(2).is_some(),
        "no gap measured: {gaps:?}"
    );
    let events = c.events("default", "crash").await;
    assert!(
        events.iter().any(|e| e.starts_with(
            "BackOff: Back-off restarting failed container app in pod crash_default("
        )),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_kedge_and_containerd_leave_pods_running() {
    if skip("restarts_of_kedge_and_containerd_leave_pods_running") {
        return;
    }
    let mut c = Cluster::start().await;
    c.apply(&WEB.replace("NODE", &c.node));
    let pod = c
        .wait_pod("default", "web", Duration::from_secs(60), "Ready", is_ready)
        .await;
    let id = container_status(&pod, "app")["containerID"].clone();

    // kedge restarts: the same container keeps running and is adopted.
    c.server.stop();
    c.server.spawn().await;
    c.wait_node_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = c
        .wait_pod(
            "default",
            "web",
            Duration::from_secs(30),
            "Ready after restart",
            is_ready,
        )
        .await;
    let st = container_status(&pod, "app");
    assert_eq!(st["containerID"], id, "the container was replaced: {pod:#}");
    assert_eq!(st["restartCount"], 0);
    let o = c.kubectl(33, &["exec", "web", "--", "echo", "still-here"]);
    assert_eq!(out(&o), "still-here\n", "{}", err(&o));

    // containerd killed: the supervisor restarts it, the pod runs on, and
    // new pods still start.
    let pid_file = kedge_kubelet::ContainerdPaths::new(&c.data_dir()).pid_file;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("containerd pid file")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: kill(2) of the test's own containerd child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: Option<i32> = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if now.is_some_and(|p| p != pid) {
            break;
        }
        assert!(Instant::now() < deadline, "containerd was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = c.kubectl(33, &["exec", "web", "--", "echo", "survived"]);
    assert_eq!(out(&o), "survived\n", "{}", err(&o));
    let pod = c.pod("default", "web").await.1;
    assert_eq!(container_status(&pod, "app")["containerID"], id);
    c.apply(
        &WEB.replace("NODE", &c.node)
            .replace("name: web, namespace", "name: web2, namespace"),
    );
    let web2 = c
        .wait_pod(
            "default",
            "web2",
            Duration::from_secs(60),
            "Ready",
            is_ready,
        )
        .await;
    let uid2 = web2["metadata"]["uid"].as_str().expect("uid").to_owned();

    // A pod removed from the API while the agent is down: its sandbox and
    // containers are removed when the agent starts again.
    c.server.stop();
    c.server.spawn_without_agent().await;
    let o = c.kubectl(
        33,
        &["delete", "pod", "web2", "--grace-period=0", "--force"],
    );
    assert!(o.status.success(), "force delete: {}", err(&o));
    c.server.stop();
    c.server.spawn().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while cri_leftovers(&c, &uid2).await != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "the orphaned pod is still in the runtime: {}",
            tail(&c.server.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The other pod was adopted, untouched.
    let pod = c.pod("default", "web").await.1;
    assert_eq!(container_status(&pod, "app")["containerID"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_env_and_probes_work_inside_containers() {
    if skip("volumes_env_and_probes_work_inside_containers") {
        return;
    }
    let c = Cluster::start().await;
    let node = &c.node;
    c.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{greeting: hello, app.conf: "a=1\n"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec}}
stringData: {{password: s3cret, user: admin}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vols, labels: {{tier: backend}}, annotations: {{note: "x y"}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: "{BUSYBOX}"
    command: ["sh", "-c", "sleep 3600"]
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}}}
    - {{name: MISSING, valueFrom: {{configMapKeyRef: {{name: nope, key: x, optional: true}}}}}}
    - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: MEM_LIMIT, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: COMBINED, value: "$(GREETING)-$(PASSWORD)"}}
    envFrom:
    - {{prefix: CFG_, configMapRef: {{name: cfg}}}}
    resources: {{limits: {{memory: 64Mi}}}}
    readinessProbe:
      exec: {{command: ["test", "-f", "/tmp/ready"]}}
      periodSeconds: 1
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: info, mountPath: /etc/info}}
    - {{name: all, mountPath: /etc/all}}
    - {{name: scratch, mountPath: /scratch}}
  volumes:
  - {{name: cfg, configMap: {{name: cfg}}}}
  - {{name: sec, secret: {{secretName: sec, items: [{{key: password, path: pw/file, mode: 0400}}]}}}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
  - name: all
    projected:
      sources:
      - configMap: {{name: cfg, items: [{{key: greeting, path: g}}]}}
      - secret: {{name: sec, items: [{{key: user, path: u}}]}}
      - downwardAPI: {{items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
  - {{name: scratch, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: "{BUSYBOX}"
    command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {{command: ["cat", "/tmp/healthy"]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ));

    // Running but not Ready until the readiness probe passes.
    let pod = c
        .wait_pod("default", "vols", Duration::from_secs(60), "Running", |p| {
            p["status"]["phase"] == "Running"
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, pod2) = c.pod("default", "vols").await;
    assert!(!is_ready(&pod2), "ready before its probe passed: {pod2:#}");
    assert_eq!(container_status(&pod2, "app")["ready"], false);
    let ip = pod["status"]["podIP"].as_str().expect("pod IP").to_owned();

    let sh = |script: &str| {
        let o = c.kubectl(33, &["exec", "vols", "--", "sh", "-c", script]);
        assert!(o.status.success(), "{script}: {}", err(&o));
        out(&o)
    };
    assert_eq!(
        sh("echo $GREETING $PASSWORD [$MISSING] $MY_IP $MEM_LIMIT $COMBINED $CFG_greeting"),
        format!("hello s3cret [] {ip} 64 hello-s3cret hello\n")
    );
    assert_eq!(sh("cat /etc/cfg/greeting /etc/cfg/app.conf"), "helloa=1\n");
    assert_eq!(sh("cat /etc/sec/pw/file"), "s3cret");
    assert_eq!(sh("stat -L -c %a /etc/sec/pw/file"), "400\n");
    assert_eq!(sh("ls /etc/sec"), "pw\n");
    assert_eq!(sh("cat /etc/info/labels"), "tier=\"backend\"");
    assert_eq!(sh("cat /etc/info/name"), "vols");
    assert_eq!(
        sh("cat /etc/all/g /etc/all/u /etc/all/ns"),
        "helloadmindefault"
    );
    assert_eq!(
        sh("grep ' /scratch ' /proc/mounts | cut -d' ' -f3"),
        "tmpfs\n"
    );
    // The service account token and CA from the admission-added volume.
    let token = sh("cat /var/run/secrets/kubernetes.io/serviceaccount/token");
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    assert_eq!(
        sh("cat /var/run/secrets/kubernetes.io/serviceaccount/namespace"),
        "default"
    );
    assert!(
        sh("cat /var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
            .contains("BEGIN CERTIFICATE")
    );
    // /etc/hosts is kedge's.
    let hosts = sh("cat /etc/hosts");
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file."),
        "{hosts}"
    );
    assert!(hosts.contains(&format!("{ip}\tvols")), "{hosts}");
    // The token authenticates as the pod's service account.
    let review = c.kubectl(33, &["auth", "whoami", "--token", &token, "-o", "json"]);
    assert!(
        out(&review).contains("system:serviceaccount:default:default"),
        "{} {}",
        out(&review),
        err(&review)
    );

    // Readiness follows the probe.
    sh("touch /tmp/ready");
    c.wait_pod(
        "default",
        "vols",
        Duration::from_secs(20),
        "Ready",
        is_ready,
    )
    .await;

    // Liveness: the failing probe restarts the container.
    let pod = c
        .wait_pod(
            "default",
            "live",
            Duration::from_secs(60),
            "restarted by liveness",
            |p| container_status(p, "app")["restartCount"].as_i64() >= Some(1),
        )
        .await;
    assert_eq!(
        container_status(&pod, "app")["lastState"]["terminated"]["exitCode"],
        137
    );
    let events = c.events("default", "live").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Unhealthy: Liveness probe failed:")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "Killing: Container app failed liveness probe, will be restarted"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_and_graceful_deletion_honours_them() {
    if skip("hooks_run_and_graceful_deletion_honours_them") {
        return;
    }
    let c = Cluster::start().await;
    let host_dir = c.server.dir.path().join("hostdata");
    std::fs::create_dir_all(&host_dir).expect("host dir");
    let node = &c.node;
    let host = host_dir.display();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 10
  containers:
  - name: app
    image: "{BUSYBOX}"
    command: ["sh", "-c", "trap 'echo term >> /host/log; exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "echo started > /tmp/poststart"]}}}}
      preStop: {{exec: {{command: ["sh", "-c", "echo prestop >> /host/log"]}}}}
    volumeMounts: [{{name: host, mountPath: /host}}]
  volumes:
  - {{name: host, hostPath: {{path: "{host}", type: Directory}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: badhost}}
spec:
  nodeName: {node}
  containers:
  - {{name: app, image: "{BUSYBOX}", command: ["sleep", "3600"], volumeMounts: [{{name: h, mountPath: /h}}]}}
  volumes:
  - {{name: h, hostPath: {{path: "{host}/missing", type: Directory}}}}
"#
    ));
    c.wait_pod(
        "default",
        "hooks",
        Duration::from_secs(60),
        "Ready",
        is_ready,
    )
    .await;
    let o = c.kubectl(33, &["exec", "hooks", "--", "cat", "/tmp/poststart"]);
    assert_eq!(out(&o), "started\n", "{}", err(&o));

    // A hostPath of the wrong type: FailedMount with upstream's message.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = c.events("default", "badhost").await;
        if events.iter().any(|e| {
            e.starts_with("FailedMount: ")
                && e.contains(&format!(
                    "hostPath type check failed: {host}/missing is not a directory"
                ))
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no FailedMount event: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, pod) = c.pod("default", "badhost").await;
    assert_eq!(pod["status"]["phase"], "Pending");

    // Deletion: preStop first, then SIGTERM, which the container handles.
    let started = Instant::now();
    let o = c.kubectl(27, &["delete", "pod", "hooks"]);
    assert!(o.status.success(), "{}", err(&o));
    c.wait_gone("default", "hooks", Duration::from_secs(30))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the container handled SIGTERM; deletion should not wait for the grace period"
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("log")).expect("hook output"),
        "prestop\nterm\n"
    );
}
