//! The devices section (issue 6: device plugins), on a real node: `kedge
//! server` with its agent and the built-in Intel GPU plugin pointed at a
//! fake host tree (`--accelerator-root`: sysfs files and mknod'd
//! /dev/dri nodes for two i915 cards, as the agent_devices end-to-end
//! test builds them). Needs root, containerd, runc and the CNI plugins;
//! elsewhere the section is one "skipped" row.
//!
//! - Device health event -> replacement Running: a Deployment of one pod
//!   with `limits: gpu.intel.com/i915: 1`; the sysfs directory of the card
//!   the pod got (read with `kubectl exec ... ls /dev/dri`) is removed; the
//!   plugin's rescan marks the device unhealthy, the agent fails the pod,
//!   the ReplicaSet makes a new one, the scheduler places it (allocatable
//!   is one card now) and the agent gives it the other card. Removal ->
//!   the new pod's Running event. The card comes back between runs.
//! - Allocation overhead: pod create -> Running with one fake GPU and
//!   without, alternating, same node, same run.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::apply::kubectl;
use crate::load::create_namespace;
use crate::report::{Row, Verdict};
use crate::sections::Plan;
use crate::stats::{fmt_num, median, ms, Summary};
use crate::testbed::{
    busybox_tarball, disk_pressure_tolerations, expect, get, name_of, post, Kedge, WatchStream,
    BUSYBOX,
};

const NS: &str = "bench-devices";
const RESOURCE: &str = "gpu.intel.com/i915";
const CARDS: u32 = 2;
const OVERHEAD_METRIC: &str = "Pod create -> Running, one fake GPU vs none (real node)";
const HEALTH_METRIC: &str =
    "Device unhealthy -> replacement pod Running (real node, fake Intel GPU)";
/// The built-in plugins' rescan interval (kedge-devices' default).
const RESCAN_S: u64 = 5;
/// A shell that exits at once on SIGTERM, so deletions do not wait for the grace period.
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

pub async fn devices(plan: &Plan) -> Vec<Row> {
    if let Some(reason) = kedge_kubelet::testing::real_runtime_skip_reason() {
        eprintln!(
            "\n[devices] SKIPPED: {reason}. The device rows need root (mknod for the fake \
             /dev/dri nodes), containerd, runc and the CNI plugins (scripts/setup.sh installs them).\n"
        );
        return vec![Row::new(
            "Device plugin rows",
            "skipped".to_string(),
            "",
            Verdict::Report,
            format!("not measured: {reason}; they need root, containerd, runc and CNI plugins"),
            json!({ "skipped": reason }),
        )];
    }
    let dir = plan.work.join("devices");
    let tree = plan.work.join("devices-host");
    let started = async {
        let tarball = busybox_tarball(plan, "devices")?;
        let _ = std::fs::remove_dir_all(&tree);
        for n in 0..CARDS {
            add_card(&tree, n)?;
        }
        let root = tree.display().to_string();
        Kedge::node(
            plan,
            &dir,
            &tarball,
            &["--accelerator-root", &root],
            "devices",
        )
    }
    .await;
    let mut node = match started {
        Ok(n) => n,
        Err(e) => return vec![Row::error("Device plugin rows", &e)],
    };
    let measured = measure(plan, &mut node, &tree).await;
    let measured = measured.map_err(|e| node.explain(e));
    node.shutdown(NS).await;
    drop(node);
    let _ = std::fs::remove_dir_all(&tree);
    match measured {
        Ok(rows) => rows,
        Err(e) => vec![Row::error("Device plugin rows", &e)],
    }
}

async fn measure(plan: &Plan, node: &mut Kedge, tree: &Path) -> Result<Vec<Row>> {
    let client = node.ready().await?;
    let name = node.node_name().to_string();
    wait_allocatable(&client, &name, CARDS).await?;
    create_namespace(&client, NS).await?;
    let mut rows = Vec::new();
    let pairs = if plan.quick { 5 } else { 10 };
    match overhead_rows(&client, &name, pairs).await {
        Ok(r) => rows.extend(r),
        Err(e) => rows.push(Row::error(OVERHEAD_METRIC, &node.explain(e))),
    }
    let runs = if plan.quick { 2 } else { 5 };
    let cache = node.dir.join("kubectl-cache");
    match health_rows(plan, node, &client, tree, &cache, runs).await {
        Ok(r) => rows.extend(r),
        Err(e) => rows.push(Row::error(HEALTH_METRIC, &node.explain(e))),
    }
    Ok(rows)
}

// ---- the fake host tree ----

/// Intel card `n` bound to i915: its sysfs files, and /dev/dri/cardN and
/// renderD(128+N) (made once; a restored card finds them in place).
fn add_card(tree: &Path, n: u32) -> Result<()> {
    let base = tree.join(format!("sys/class/drm/card{n}/device"));
    std::fs::create_dir_all(base.join(format!("drm/card{n}")))?;
    std::fs::create_dir_all(base.join(format!("drm/renderD{}", 128 + n)))?;
    std::fs::write(base.join("vendor"), "0x8086\n")?;
    std::fs::write(base.join("device"), "0x56a0\n")?;
    std::fs::write(base.join("class"), "0x030000\n")?;
    let driver = base.join("driver");
    if std::fs::symlink_metadata(&driver).is_err() {
        std::os::unix::fs::symlink("../../../../bus/pci/drivers/i915", &driver)?;
    }
    char_device(&tree.join(format!("dev/dri/card{n}")), 226, n)?;
    char_device(
        &tree.join(format!("dev/dri/renderD{}", 128 + n)),
        226,
        128 + n,
    )?;
    Ok(())
}

fn char_device(path: &Path, major: u32, minor: u32) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is NUL-terminated and outlives the call; mknod has no
    // memory preconditions.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    anyhow::ensure!(
        rc == 0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn card_dir(tree: &Path, card: &str) -> PathBuf {
    tree.join("sys/class/drm").join(card)
}

/// Waits until the Node's allocatable has `n` cards.
async fn wait_allocatable(client: &kube::Client, node: &str, n: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get(client, &format!("/api/v1/nodes/{node}")).await?;
        if v["status"]["allocatable"][RESOURCE] == n.to_string().as_str() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "allocatable {RESOURCE} not {n} within 30 s: {}",
            v["status"]["allocatable"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pod_spec(gpu: bool) -> Value {
    let mut c = json!({"name": "app", "image": BUSYBOX, "command": ["sh", "-c", SLEEPER]});
    if gpu {
        c["resources"] = json!({"limits": {RESOURCE: "1"}});
    }
    json!({
        "terminationGracePeriodSeconds": 1,
        "automountServiceAccountToken": false,
        "tolerations": disk_pressure_tolerations(),
        "containers": [c],
    })
}

// ---- allocation overhead ----

/// Create -> Running of one pod (nodeName set), then its deletion waited
/// for; ms.
async fn one_pod(
    client: &kube::Client,
    watch: &mut WatchStream,
    node: &str,
    name: &str,
    gpu: bool,
) -> Result<f64> {
    let mut spec = pod_spec(gpu);
    spec["nodeName"] = json!(node);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "labels": {"bench": "alloc"}}, "spec": spec});
    let t0 = Instant::now();
    post(client, &format!("/api/v1/namespaces/{NS}/pods"), &pod).await?;
    let (_, at) = watch
        .wait_for(Duration::from_secs(120), &format!("{name} Running"), |p| {
            name_of(p) == name && p["status"]["phase"] == "Running"
        })
        .await?;
    let path = format!("/api/v1/namespaces/{NS}/pods/{name}");
    expect(client, "DELETE", &path, None, None, &[200, 202]).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match watch.next_before(deadline).await? {
            Some((kind, p, _)) if kind == "DELETED" && name_of(&p) == name => break,
            Some(_) => {}
            None => anyhow::bail!("{name} not deleted within 60 s"),
        }
    }
    Ok(ms(at.duration_since(t0)))
}

async fn overhead_rows(client: &kube::Client, node: &str, pairs: usize) -> Result<Vec<Row>> {
    eprintln!("[devices] allocation overhead: {pairs} pods with a GPU, {pairs} without");
    let mut watch = WatchStream::open(
        client,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector=bench%3Dalloc"),
        None,
    )
    .await?;
    // One unmeasured pod each way.
    one_pod(client, &mut watch, node, "warm-gpu", true).await?;
    one_pod(client, &mut watch, node, "warm-plain", false).await?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which goes first.
        for gpu in [i % 2 == 0, i % 2 != 0] {
            let name = format!("{}-{i}", if gpu { "gpu" } else { "plain" });
            let t = one_pod(client, &mut watch, node, &name, gpu).await?;
            if gpu {
                with.push(t);
            } else {
                without.push(t);
            }
        }
    }
    let (w, wo) = (Summary::of(with.clone()), Summary::of(without.clone()));
    let (mw, mwo) = (median(&with), median(&without));
    Ok(vec![Row::new(
        OVERHEAD_METRIC,
        format!(
            "{} vs {} ms p50 ({}{} ms, {}x; p99 {} vs {})",
            fmt_num(mw),
            fmt_num(mwo),
            if mw >= mwo { "+" } else { "" },
            fmt_num(mw - mwo),
            fmt_num(mw / mwo),
            fmt_num(w.p99),
            fmt_num(wo.p99)
        ),
        "report",
        Verdict::Report,
        format!(
            "busybox pods (nodeName set, no token volume), with limits {RESOURCE}: 1 (fake card: the \
             plugin's Allocate, device nodes and env in the container) and without, alternating, each \
             Running then deleted before the next; POST -> Running on a watch; {pairs} of each after \
             one unmeasured pod each way"
        ),
        json!({"with_gpu_ms": with, "without_ms": without, "with": w, "without": wo}),
    )])
}

// ---- health event -> replacement Running ----

async fn health_rows(
    plan: &Plan,
    node: &Kedge,
    client: &kube::Client,
    tree: &Path,
    cache: &Path,
    runs: usize,
) -> Result<Vec<Row>> {
    let node_name = node.node_name().to_string();
    let mut watch = WatchStream::open(
        client,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3Digpu"),
        None,
    )
    .await?;
    let spec = pod_spec(true);
    post(
        client,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "igpu", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "igpu"}},
                     "template": {"metadata": {"labels": {"app": "igpu"}}, "spec": spec}},
        }),
    )
    .await?;
    let mut done: HashSet<String> = HashSet::new();
    let (mut samples, mut failed, mut bound) = (Vec::new(), Vec::new(), Vec::new());
    // The pod to take a card from: the Deployment's first, then each
    // run's replacement.
    let (mut pod, _) = watch
        .wait_for(
            Duration::from_secs(120),
            "the Deployment's pod Running",
            |p| p["status"]["phase"] == "Running",
        )
        .await?;
    for i in 0..runs {
        let name = name_of(&pod).to_string();
        let out = kubectl(
            &plan.kubectl,
            &node.kubeconfig(),
            cache,
            &["exec", "-n", NS, &name, "--", "ls", "/dev/dri"],
        )
        .await?;
        let cards: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("card"))
            .collect();
        anyhow::ensure!(
            cards.len() == 1,
            "{name} should see exactly one card in /dev/dri, saw {:?}",
            out.stdout
        );
        let card = cards[0].to_string();
        let t0 = Instant::now();
        std::fs::remove_dir_all(card_dir(tree, &card))
            .with_context(|| format!("removing {card} from the fake sysfs"))?;
        let (mut failed_at, mut bound_at) = (None, None);
        let (replacement, at) = watch
            .wait_for(Duration::from_secs(60), "a replacement pod Running", |p| {
                let n = name_of(p);
                if n == name && p["status"]["phase"] == "Failed" {
                    failed_at.get_or_insert(Instant::now());
                }
                if n != name
                    && !done.contains(n)
                    && p["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|s| !s.is_empty())
                {
                    bound_at.get_or_insert(Instant::now());
                }
                n != name && !done.contains(n) && p["status"]["phase"] == "Running"
            })
            .await?;
        let t = ms(at.duration_since(t0));
        samples.push(t);
        failed.push(failed_at.map_or(f64::NAN, |f| ms(f.duration_since(t0))));
        bound.push(bound_at.map_or(f64::NAN, |b| ms(b.duration_since(t0))));
        eprintln!(
            "[devices] {card} removed: {} Running after {} ms",
            name_of(&replacement),
            fmt_num(t)
        );
        done.insert(name.clone());
        // The card comes back; the failed pod goes.
        let n: u32 = card
            .trim_start_matches("card")
            .parse()
            .with_context(|| format!("card name {card}"))?;
        add_card(tree, n)?;
        wait_allocatable(client, &node_name, CARDS).await?;
        expect(
            client,
            "DELETE",
            &format!("/api/v1/namespaces/{NS}/pods/{name}"),
            None,
            None,
            &[200, 202, 404],
        )
        .await?;
        eprintln!("[devices] health run {}/{runs} done", i + 1);
        pod = replacement;
    }
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(0.0, f64::max);
    Ok(vec![Row::new(
        HEALTH_METRIC,
        format!(
            "{} ms (min {}, max {})",
            fmt_num(median(&samples)),
            fmt_num(min),
            fmt_num(max)
        ),
        "report",
        Verdict::Report,
        format!(
            "2 fake i915 cards (--accelerator-root tree); Deployment of 1 pod with limits {RESOURCE}: 1; \
             the sysfs dir of the pod's card removed -> the replacement pod's Running event (the other \
             card); old pod Failed after {} ms (the plugin rescans every {RESCAN_S} s), replacement bound \
             after {} ms; card restored between runs; {}",
            fmt_num(median(&failed)),
            fmt_num(median(&bound)),
            if runs == 1 {
                "1 run".to_string()
            } else {
                format!("median of {runs}")
            }
        ),
        json!({"samples_ms": samples, "failed_ms": failed, "bound_ms": bound}),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_pods_ask_for_one_card_and_plain_ones_for_none() {
        let g = pod_spec(true);
        assert_eq!(g["containers"][0]["resources"]["limits"][RESOURCE], "1");
        let p = pod_spec(false);
        assert!(p["containers"][0]["resources"].is_null());
        assert_eq!(p["automountServiceAccountToken"], false);
    }

    #[test]
    fn fake_cards_have_sysfs_files_and_a_driver_link() {
        let dir = std::env::temp_dir().join(format!("kedge-bench-cards-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // mknod needs root; the files and the link do not.
        let r = add_card(&dir, 1);
        let base = dir.join("sys/class/drm/card1/device");
        assert_eq!(
            std::fs::read_to_string(base.join("vendor")).ok().as_deref(),
            Some("0x8086\n")
        );
        assert!(base.join("drm/renderD129").is_dir());
        assert_eq!(
            std::fs::read_link(base.join("driver")).ok(),
            Some(PathBuf::from("../../../../bus/pci/drivers/i915"))
        );
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            r.expect("add_card as root");
            use std::os::unix::fs::FileTypeExt;
            let kind = std::fs::metadata(dir.join("dev/dri/card1")).map(|m| m.file_type());
            assert!(kind.is_ok_and(|k| k.is_char_device()));
            // Restoring a card whose nodes exist succeeds.
            std::fs::remove_dir_all(card_dir(&dir, "card1")).expect("remove");
            add_card(&dir, 1).expect("restore");
            assert!(base.join("vendor").is_file());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
