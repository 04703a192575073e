//! Label selectors as the controllers use them (apimachinery's
//! `LabelSelectorAsSelector` and `labels.SelectorFromSet`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A selector that can be matched against labels.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// matchLabels and matchExpressions (apps/v1). An empty one matches
    /// everything.
    Label(LabelSelector),
    /// A plain map (ReplicationController): every pair must be present. An
    /// empty map matches nothing, as `labels.SelectorFromSet` of an empty
    /// set is used only after defaulting has filled it.
    Set(BTreeMap<String, String>),
}

pub type Labels = BTreeMap<String, String>;

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Label(s) => label_selector_matches(s, labels),
            Selector::Set(set) => {
                !set.is_empty() && set.iter().all(|(k, v)| labels.get(k) == Some(v))
            }
        }
    }

    /// Whether this selector selects every object (an empty LabelSelector).
    pub fn is_everything(&self) -> bool {
        match self {
            Selector::Label(s) => {
                s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
            }
            Selector::Set(_) => false,
        }
    }

    /// The selector in the `labelSelector` query syntax.
    pub fn to_query(&self) -> String {
        match self {
            Selector::Label(s) => label_selector_query_lenient(s),
            Selector::Set(set) => set
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// `metav1.LabelSelectorAsSelector(s).Matches(labels)`; an unknown operator
/// matches nothing.
pub fn label_selector_matches(s: &LabelSelector, labels: &Labels) -> bool {
    if let Some(ml) = &s.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// One requirement in the query syntax; `None` for an unknown operator.
fn requirement_query(e: &LabelSelectorRequirement) -> Option<String> {
    let mut values: Vec<&str> = e.values.iter().flatten().map(String::as_str).collect();
    values.sort_unstable();
    match e.operator.as_str() {
        "In" => Some(format!("{} in ({})", e.key, values.join(","))),
        "NotIn" => Some(format!("{} notin ({})", e.key, values.join(","))),
        "Exists" => Some(e.key.clone()),
        "DoesNotExist" => Some(format!("!{}", e.key)),
        _ => None,
    }
}

fn match_labels_query(s: &LabelSelector) -> impl Iterator<Item = String> + '_ {
    s.match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
}

/// `metav1.LabelSelectorAsSelector(s).String()`: `None` when an operator
/// is unknown (upstream's conversion error; the controller selects
/// nothing).
pub fn label_selector_query(s: &LabelSelector) -> Option<String> {
    let mut parts: Vec<String> = match_labels_query(s).collect();
    for e in s.match_expressions.iter().flatten() {
        parts.push(requirement_query(e)?);
    }
    Some(parts.join(","))
}

/// [`label_selector_query`] that renders an unknown operator as `!key`.
fn label_selector_query_lenient(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = match_labels_query(s).collect();
    for e in s.match_expressions.iter().flatten() {
        parts.push(requirement_query(e).unwrap_or_else(|| format!("!{}", e.key)));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions() {
        let s = LabelSelector {
            match_labels: Some(labels(&[("app", "web")]).into_iter().collect()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let sel = Selector::Label(s);
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "b")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])));
        assert!(!sel.matches(&labels(&[("tier", "a")])));
        assert_eq!(sel.to_query(), "app=web,tier in (a,b),!canary");
        let Selector::Label(ls) = &sel else {
            unreachable!()
        };
        assert_eq!(
            label_selector_query(ls).as_deref(),
            Some("app=web,tier in (a,b),!canary")
        );
        let mut bad = ls.clone();
        bad.match_expressions = Some(vec![LabelSelectorRequirement {
            key: "x".into(),
            operator: "Near".into(),
            values: None,
        }]);
        assert_eq!(
            label_selector_query(&bad),
            None,
            "an unknown operator selects nothing"
        );
        assert!(!sel.is_everything());
        assert!(Selector::Label(LabelSelector::default()).is_everything());
    }

    #[test]
    fn set_selectors_need_every_pair_and_empty_matches_nothing() {
        let sel = Selector::Set(labels(&[("app", "web"), ("v", "1")]));
        assert!(sel.matches(&labels(&[("app", "web"), ("v", "1"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        assert!(!Selector::Set(Labels::new()).matches(&labels(&[("app", "web")])));
    }
}
