use super::*;
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            deletion_timestamp: deleting.then(|| Time(jiff::Timestamp::now())),
            ..Default::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pdb(disrupted: &[(&str, jiff::Timestamp)]) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("b".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(2)),
            ..Default::default()
        }),
        status: Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(
                disrupted
                    .iter()
                    .map(|(n, t)| (n.to_string(), Time(*t)))
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

#[test]
fn healthy_counts_and_allowed_disruptions() {
    let now = jiff::Timestamp::now();
    let (a, b, c, d) = (
        pod("a", true, false),
        pod("b", true, false),
        pod("c", false, false),
        pod("d", true, true),
    );
    let pods = [&a, &b, &c, &d];
    let r = compute(&pdb(&[]), &pods, (4, 2), now);
    assert_eq!(
        r.current_healthy, 2,
        "not ready and terminating pods are not healthy"
    );
    assert_eq!(r.disruptions_allowed, 0);
    let r = compute(&pdb(&[]), &pods, (4, 1), now);
    assert_eq!(r.disruptions_allowed, 1);
    assert_eq!(r.expected_pods, 4);
    // No expected pods: nothing may be disrupted.
    let r = compute(&pdb(&[]), &pods, (0, 0), now);
    assert_eq!(r.disruptions_allowed, 0);
}

#[test]
fn disrupted_pods_are_not_healthy_until_they_time_out() {
    let now = jiff::Timestamp::now();
    let (a, b) = (pod("a", true, false), pod("b", true, false));
    let fresh = now - jiff::SignedDuration::from_secs(10);
    let stale = now - jiff::SignedDuration::from_secs(300);
    let r = compute(
        &pdb(&[("a", fresh), ("b", stale), ("gone", fresh)]),
        &[&a, &b],
        (2, 1),
        now,
    );
    assert_eq!(r.current_healthy, 1);
    assert_eq!(r.disrupted_pods.keys().collect::<Vec<_>>(), vec!["a"]);
    let recheck = r.recheck.expect("recheck");
    assert!(recheck > now && recheck <= now + jiff::SignedDuration::from_secs(120));
}

#[test]
fn percentages_round_up() {
    assert_eq!(
        scaled(&IntOrString::String("50%".into()), 3).expect("ok"),
        2
    );
    assert_eq!(
        scaled(&IntOrString::String("10%".into()), 10).expect("ok"),
        1
    );
    assert_eq!(scaled(&IntOrString::Int(3), 10).expect("ok"), 3);
    assert!(scaled(&IntOrString::String("x".into()), 10).is_err());
}

#[test]
fn selectors() {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    assert!(!selects(None, Some(&labels)));
    assert!(
        !selects(Some(&LabelSelector::default()), Some(&labels)),
        "empty selects nothing"
    );
    let sel = LabelSelector {
        match_labels: Some([("app".to_string(), "web".to_string())].into()),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "DoesNotExist".into(),
            values: None,
        }]),
    };
    assert!(selects(Some(&sel), Some(&labels)));
    let mut other = labels.clone();
    other.insert("tier".into(), "x".into());
    assert!(!selects(Some(&sel), Some(&other)));
    let in_sel = LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "app".into(),
            operator: "In".into(),
            values: Some(vec!["db".into(), "web".into()]),
        }]),
    };
    assert!(selects(Some(&in_sel), Some(&labels)));
    assert!(!selects(Some(&in_sel), None));
}
