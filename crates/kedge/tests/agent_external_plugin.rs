//! End-to-end: an external device plugin, in its own process, registers
//! `example.com/widget` (three widgets) with the node agent over the v1beta1
//! API; the Node advertises them; pods that ask for widgets get exactly what
//! the plugin's Allocate returned (env, a read-only mount, device nodes), the
//! scheduler keeps a pod that asks for too many Pending until a holder goes,
//! and killing the plugin makes the widgets unallocatable at once.
//!
//! The plugin is `crates/kedge-devices/examples/widget-plugin/widget.rs`,
//! compiled into this test binary and run as a child process: the test runs
//! its own binary again with only `widget_plugin_process` selected.

mod common;

#[path = "../../kedge-devices/tests/builtin_support/mod.rs"]
mod builtin_support;
#[path = "../../kedge-devices/examples/widget-plugin/widget.rs"]
mod widget;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use builtin_support::FakeTree;
use common::cluster::{container_status, is_ready, skip, tail, Cluster, BUSYBOX};
use kedge_kubelet::RuntimeService;
use serde_json::Value;

/// The widget plugin's arguments, one a line, for the plugin process.
const PLUGIN_ARGS: &str = "KEDGE_TEST_WIDGET_PLUGIN_ARGS";
/// The test process's pid, for the plugin process to die with it.
const PLUGIN_PARENT: &str = "KEDGE_TEST_WIDGET_PLUGIN_PARENT";

/// Not a test on its own: the widget plugin's process, started by
/// `an_external_plugin_s_widgets_reach_pods` (with [`PLUGIN_ARGS`] set); does
/// nothing otherwise.
#[test]
#[ignore = "the plugin process of an_external_plugin_s_widgets_reach_pods, which starts it"]
fn widget_plugin_process() {
    let Ok(args) = std::env::var(PLUGIN_ARGS) else {
        return;
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a signal number for this
    // process; it takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() };
    if std::env::var(PLUGIN_PARENT).ok() != Some(parent.to_string()) {
        // The test is already gone.
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let config = widget::WidgetConfig::from_args(args.lines().map(str::to_owned))
        .unwrap_or_else(|e| panic!("widget plugin arguments: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let _plugin = widget::WidgetPlugin::start(config)
            .await
            .unwrap_or_else(|e| panic!("widget plugin: {e}"));
        // Serves until the test kills this process.
        std::future::pending::<()>().await;
    });
}

/// The plugin's process: killed and reaped on drop, whatever the test did.
struct PluginProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl PluginProcess {
    fn start(args: &[&str], log: &Path) -> PluginProcess {
        let exe = std::env::current_exe().expect("this test binary");
        let out = std::fs::File::create(log).expect("plugin log");
        let err = out.try_clone().expect("plugin log");
        // Spawned from the test's own thread: PR_SET_PDEATHSIG fires when it ends.
        let child = Command::new(exe)
            .args([
                "widget_plugin_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PLUGIN_ARGS, args.join("\n"))
            .env(PLUGIN_PARENT, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the widget plugin process");
        PluginProcess {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crashing plugin: its socket stays, its connections close.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn widget_pod(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: "{BUSYBOX}"
    command: ["sleep", "3600"]
    resources: {{limits: {{"example.com/widget": 2}}}}
"#
    )
}

/// What a container sees of its widgets: `$WIDGETS`, the shared file, each
/// widget node's type and major:minor, whether each allocated node is
/// writable, whether the share is read-only.
const LOOK: &str = r#"echo "$WIDGETS"
cat /opt/widget/greeting
for d in /dev/widget-*; do stat -c '%n %F %t:%T' "$d"; done
for id in $(echo "$WIDGETS" | tr , ' '); do echo probe > "/dev/$id" && echo "$id writable"; done
touch /opt/widget/new 2>/dev/null && echo share writable || echo share read-only"#;

/// What [`LOOK`] prints for a container holding `ids` (in Allocate's order).
fn expected_look(ids: &[&str], greeting: &str) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort();
    let mut out = format!("{}\n{greeting}", ids.join(","));
    for id in &sorted {
        out.push_str(&format!("/dev/{id} character special file 1:3\n"));
    }
    for id in ids {
        out.push_str(&format!("{id} writable\n"));
    }
    out.push_str("share read-only\n");
    out
}

fn look(c: &Cluster, pod: &str) -> String {
    let o = c.kubectl(33, &["exec", pod, "--", "sh", "-c", LOOK]);
    assert!(
        o.status.success(),
        "kubectl exec {pod}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

use common::condition_or_null as condition;

async fn node(c: &Cluster) -> Value {
    let client = c.server.client().await;
    common::get_json(&client, &format!("/api/v1/nodes/{}", c.node))
        .await
        .1
}

/// Waits until the Node's `AcceleratorHealthy` condition has `status` (and
/// returns it).
async fn accelerators_healthy(c: &Cluster, status: &str) -> Value {
    let what = format!("Node condition AcceleratorHealthy={status}");
    common::wait_for(&c.server, &what, Duration::from_secs(10), || async {
        let cond = condition(&node(c).await, "AcceleratorHealthy").clone();
        (cond["status"] == status).then_some(cond)
    })
    .await
}

/// Waits until the Node's widgets are `allocatable` (and returns the Node).
async fn wait_widgets(c: &Cluster, plugin: &PluginProcess, allocatable: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = node(c).await;
        if n["status"]["allocatable"]["example.com/widget"] == allocatable {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "allocatable example.com/widget never became {allocatable}: {:#}\nplugin log:\n{}\nagent log:\n{}",
            n["status"],
            plugin.log(),
            tail(&c.server.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_plugin_s_widgets_reach_pods() {
    if skip("an_external_plugin_s_widgets_reach_pods") || !builtin_support::is_root() {
        return;
    }
    let started = Instant::now();
    // The widgets' host side: device nodes with /dev/null's numbers and a
    // directory with a file to share.
    let tree = FakeTree::new();
    for n in 0..3 {
        tree.char_device(&format!("/dev/widget-{n}"), 1, 3);
    }
    let greeting = format!(
        "hello from the widget plugin of test {}\n",
        std::process::id()
    );
    tree.file("/share/greeting", &greeting);
    let kubelet_root = tempfile::tempdir().expect("kubelet root");
    let kroot = kubelet_root.path().display().to_string();
    let c = Cluster::start_with(&["--kubelet-root-dir", &kroot]).await;

    let (dev, share) = (tree.host("/dev"), tree.host("/share"));
    let plugin_args = [
        "--kubelet-root",
        kroot.as_str(),
        "--dev-dir",
        dev.as_str(),
        "--share-dir",
        share.as_str(),
    ];
    let mut plugin = PluginProcess::start(&plugin_args, &tree.path("/plugin.log"));

    // The Node advertises the three widgets.
    let n = wait_widgets(&c, &plugin, "3").await;
    assert_eq!(n["status"]["capacity"]["example.com/widget"], "3");
    eprintln!("widgets advertised after {:?}", started.elapsed());

    // A pod asking for two, through the scheduler, runs with exactly what
    // Allocate returned for the two it got (the plugin prefers the highest).
    c.apply(&widget_pod("widgets-a"));
    let pod = c
        .wait_pod(
            "default",
            "widgets-a",
            Duration::from_secs(60),
            "Ready",
            is_ready,
        )
        .await;
    assert_eq!(
        look(&c, "widgets-a"),
        expected_look(&["widget-2", "widget-1"], &greeting)
    );
    // Allocate's annotations went into the CRI container config.
    let id = container_status(&pod, "app")["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("containerd://"))
        .unwrap_or_else(|| panic!("no container ID: {pod:#}"))
        .to_owned();
    let status = c
        .cri()
        .await
        .container_status(&id, false)
        .await
        .expect("CRI container status")
        .status
        .expect("a status");
    assert_eq!(
        status
            .annotations
            .get("example.com/widgets")
            .map(String::as_str),
        Some("widget-2;widget-1")
    );
    eprintln!("first pod checked after {:?}", started.elapsed());

    // A second pod asking for two does not fit: the scheduler says why.
    c.apply(&widget_pod("widgets-b"));
    let pod = c
        .wait_pod(
            "default",
            "widgets-b",
            Duration::from_secs(20),
            "Unschedulable",
            |p| condition(p, "PodScheduled")["reason"] == "Unschedulable",
        )
        .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    let scheduled = condition(&pod, "PodScheduled");
    assert!(
        scheduled["message"].as_str().is_some_and(
            |m| m.starts_with("0/1 nodes are available: 1 Insufficient example.com/widget.")
        ),
        "{scheduled}"
    );

    // Deleting the first frees its widgets: the second is scheduled and runs
    // with two of them.
    let o = c.kubectl(33, &["delete", "pod", "widgets-a", "--wait=false"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    c.wait_pod(
        "default",
        "widgets-b",
        Duration::from_secs(60),
        "Ready",
        is_ready,
    )
    .await;
    assert_eq!(
        look(&c, "widgets-b"),
        expected_look(&["widget-2", "widget-1"], &greeting)
    );
    let log = plugin.log();
    assert_eq!(
        log.matches(r#"Allocate devices=["widget-2", "widget-1"]"#)
            .count(),
        2,
        "one Allocate per pod:\n{log}"
    );
    eprintln!("second pod checked after {:?}", started.elapsed());

    // A killed plugin's widgets are unallocatable at once; the capacity stays
    // until the grace period ends.
    let killed = Instant::now();
    plugin.kill();
    let n = wait_widgets(&c, &plugin, "0").await;
    eprintln!("plugin killed to allocatable 0: {:?}", killed.elapsed());
    assert_eq!(n["status"]["capacity"]["example.com/widget"], "3");
    let unhealthy = accelerators_healthy(&c, "False").await;
    assert!(
        unhealthy["message"]
            .as_str()
            .is_some_and(|m| m.contains("example.com/widget widget-2")),
        "{unhealthy}"
    );

    // The plugin comes back (a restart, an upgrade of its DaemonSet): it
    // registers again over its stale socket, the widgets are allocatable
    // again, and the pod that held two kept running with them throughout, as
    // upstream (a lost plugin is not a failed device).
    let mut plugin = PluginProcess::start(&plugin_args, &tree.path("/plugin-2.log"));
    wait_widgets(&c, &plugin, "3").await;
    assert_eq!(
        look(&c, "widgets-b"),
        expected_look(&["widget-2", "widget-1"], &greeting)
    );
    let (_, pod) = c.pod("default", "widgets-b").await;
    assert_eq!(pod["status"]["phase"], "Running", "{:#}", pod["status"]);
    assert_eq!(container_status(&pod, "app")["restartCount"], 0);
    let events = c.events("default", "widgets-b").await;
    assert!(
        !events.iter().any(|e| e.starts_with("DeviceUnhealthy")),
        "{events:?}"
    );
    accelerators_healthy(&c, "True").await;
    plugin.kill();
    eprintln!("total {:?}", started.elapsed());
}
