use super::*;
use crate::endpointslice::{desired_groups, MAX_ENDPOINTS_PER_SLICE};
use serde_json::json;

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("service")
}

fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running",
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("pod")
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn web() -> Service {
    service(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10",
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                           {"name": "raw", "port": 81, "targetPort": 9090, "protocol": "TCP"}]},
    }))
}

#[test]
fn ready_and_not_ready_addresses_with_named_ports() {
    let a = pod(
        "a",
        "10.42.0.5",
        true,
        json!({"spec": {"hostname": "a", "subdomain": "web"}}),
    );
    let b = pod("b", "10.42.0.4", false, json!({}));
    let c = pod("c", "", true, json!({}));
    let subsets = desired_subsets(&web(), &[&a, &b, &c]);
    assert_eq!(subsets.len(), 1);
    let s = &subsets[0];
    let ready = s.addresses.as_ref().expect("ready");
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].ip, "10.42.0.5");
    assert_eq!(ready[0].hostname.as_deref(), Some("a"));
    assert_eq!(ready[0].node_name.as_deref(), Some("n1"));
    let tr = ready[0].target_ref.as_ref().expect("targetRef");
    assert_eq!(
        (tr.kind.as_deref(), tr.name.as_deref(), tr.uid.as_deref()),
        (Some("Pod"), Some("a"), Some("uid-a"))
    );
    let nr = s.not_ready_addresses.as_ref().expect("not ready");
    assert_eq!(nr[0].ip, "10.42.0.4");
    let ports = s.ports.as_ref().expect("ports");
    assert_eq!(
        ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        vec![8080, 9090]
    );
}

#[test]
fn publish_not_ready_and_terminating_pods() {
    let mut svc = web();
    let b = pod("b", "10.42.0.4", false, json!({}));
    let t = pod(
        "t",
        "10.42.0.9",
        true,
        json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
    );
    let s = desired_subsets(&svc, &[&b, &t]);
    assert_eq!(s[0].addresses, None, "terminating pods leave Endpoints");
    svc.spec.as_mut().expect("spec").publish_not_ready_addresses = Some(true);
    let s = desired_subsets(&svc, &[&b, &t]);
    assert_eq!(s[0].addresses.as_ref().map(Vec::len), Some(2));
    // A pod that finished (restartPolicy Never) is out.
    let done = pod(
        "d",
        "10.42.0.7",
        false,
        json!({"spec": {"restartPolicy": "Never"}, "status": {"phase": "Succeeded"}}),
    );
    assert!(desired_subsets(&web(), &[&done]).is_empty());
}

#[test]
fn pods_without_the_named_port_group_separately() {
    let a = pod("a", "10.42.0.5", true, json!({}));
    let other: Pod = {
        let mut p = pod("o", "10.42.0.6", true, json!({}));
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[0].ports = None;
        }
        p
    };
    let subsets = desired_subsets(&web(), &[&a, &other]);
    assert_eq!(subsets.len(), 2, "{subsets:?}");
}

#[test]
fn selector_rules() {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    assert_eq!(selects(&web(), Some(&labels)), Some(true));
    assert_eq!(selects(&web(), None), Some(false));
    let none =
        service(json!({"metadata": {"name": "kubernetes"}, "spec": {"ports": [{"port": 443}]}}));
    assert_eq!(
        selects(&none, Some(&labels)),
        None,
        "services without selectors are not ours"
    );
}

#[test]
fn slices_carry_conditions_and_split_at_one_hundred() {
    let t = pod(
        "t",
        "10.42.0.9",
        false,
        json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
    );
    let r = pod("r", "10.42.0.8", true, json!({}));
    let (groups, missing) = desired_groups(&web(), &[&t, &r], |_| Some(Some("z1".into())));
    assert!(missing.is_empty());
    let eps: Vec<_> = groups.values().flatten().collect();
    assert_eq!(eps.len(), 2, "terminating pods stay in slices");
    let term = eps
        .iter()
        .find(|e| e.addresses[0] == "10.42.0.9")
        .expect("t");
    let c = term.conditions.as_ref().expect("conditions");
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(false), Some(false), Some(true))
    );
    let ready = eps
        .iter()
        .find(|e| e.addresses[0] == "10.42.0.8")
        .expect("r");
    assert_eq!(ready.zone.as_deref(), Some("z1"));
    assert_eq!(ready.conditions.as_ref().and_then(|c| c.ready), Some(true));
    // Unknown nodes hold their pods back.
    let (groups, missing) = desired_groups(&web(), &[&r], |_| None);
    assert!(groups.is_empty());
    assert_eq!(missing, vec![("r".to_string(), "n1".to_string())]);
    assert_eq!(MAX_ENDPOINTS_PER_SLICE, 100);
}
