//! Lease-based leader election between `kedge_controllers::LeaderElector`s
//! against a real `kedge server --disable-agent`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get_json, TestServer};
use kedge_controllers::{LeaderElectionConfig, LeaderElector};

fn config(identity: &str) -> LeaderElectionConfig {
    let mut c = LeaderElectionConfig::new("kube-system", "test-election", identity);
    c.lease_duration = Duration::from_secs(3);
    c.renew_deadline = Duration::from_secs(2);
    c.retry_period = Duration::from_millis(300);
    c
}

/// Runs an elector in a task; the counter says how many of its
/// `on_leading` futures are running right now.
fn candidate(
    client: kube::Client,
    identity: &str,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<AtomicUsize>,
    tokio::sync::watch::Receiver<bool>,
    tokio::sync::oneshot::Sender<()>,
) {
    let running = Arc::new(AtomicUsize::new(0));
    let mut elector = LeaderElector::new(client, config(identity));
    let leading = elector.leading();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let r = running.clone();
    let task = tokio::spawn(async move {
        elector
            .run(
                || {
                    let r = r.clone();
                    async move {
                        struct Guard(Arc<AtomicUsize>);
                        impl Drop for Guard {
                            fn drop(&mut self) {
                                self.0.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                        let _g = Guard(r);
                        std::future::pending::<()>().await
                    }
                },
                async move {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    (task, running, leading, stop)
}

async fn wait(what: &str, within: Duration, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_takeover_when_it_stops_renewing() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client().await;
    // The server's own controllers hold their lease with upstream's timings.
    let mut lease = serde_json::Value::Null;
    for _ in 0..50 {
        let (s, v) = get_json(
            &c,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kedge-controllers",
        )
        .await;
        if s == 200 {
            lease = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15, "{lease}");
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{lease}"
    );

    let (ta, ra, la, _stop_a) = candidate(c.clone(), "a");
    wait("a leads", Duration::from_secs(5), || {
        ra.load(Ordering::SeqCst) == 1
    })
    .await;
    let (tb, rb, lb, stop_b) = candidate(c.clone(), "b");
    // b must not lead while a renews.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rb.load(Ordering::SeqCst), 0, "b leads while a renews");
    assert!(*la.borrow() && !*lb.borrow());
    let path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/test-election";
    let (_, l) = get_json(&c, path).await;
    assert_eq!(l["spec"]["holderIdentity"], "a");
    assert_eq!(l["spec"]["leaseTransitions"], 0);

    // a crashes: no release, it just stops renewing.
    ta.abort();
    let _ = ta.await;
    let took = wait("b takes over", Duration::from_secs(10), || {
        rb.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        took >= Duration::from_secs(2),
        "took over before the lease expired: {took:?}"
    );
    let (_, l) = get_json(&c, path).await;
    assert_eq!(l["spec"]["holderIdentity"], "b");
    assert_eq!(l["spec"]["leaseTransitions"], 1);

    // b shuts down cleanly: it releases the lease, so c takes it at once.
    let (tc, rc, _lc, _stop_c) = candidate(c.clone(), "c");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rc.load(Ordering::SeqCst), 0);
    let _ = stop_b.send(());
    let _ = tb.await;
    assert_eq!(rb.load(Ordering::SeqCst), 0, "b's work stops with it");
    let took = wait("c takes over", Duration::from_secs(5), || {
        rc.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        took < Duration::from_secs(3),
        "released lease taken in {took:?}"
    );
    tc.abort();
}
