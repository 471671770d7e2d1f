//! Label selectors as Kubernetes defines them (`matchLabels` and `matchExpressions` with
//! `In`, `NotIn`, `Exists`, `DoesNotExist`), with one deliberate difference kept from the
//! SecretSync API: an empty selector selects nothing, never every cluster.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::names::{check_label_key, check_label_value};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A problem with a selector, at a field path relative to the selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorProblem {
    pub field: String,
    pub message: String,
}

impl LabelSelector {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether a cluster with `labels` is selected. Every term must hold; an empty selector
    /// matches nothing.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.is_empty()
            && self
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Every syntax problem, with the field it is in (`matchExpressions[1].values`).
    #[must_use]
    pub fn problems(&self) -> Vec<SelectorProblem> {
        let mut problems = Vec::new();
        let mut report = |field: String, result: Result<(), String>| {
            if let Err(message) = result {
                problems.push(SelectorProblem { field, message });
            }
        };
        if self.is_empty() {
            report(
                String::new(),
                Err("must have matchLabels or matchExpressions: an empty selector selects no cluster".to_owned()),
            );
        }
        for (key, value) in &self.match_labels {
            report(format!("matchLabels.{key}"), check_label_key(key));
            report(format!("matchLabels.{key}"), check_label_value(value));
        }
        for (index, requirement) in self.match_expressions.iter().enumerate() {
            let field = format!("matchExpressions[{index}]");
            report(format!("{field}.key"), check_label_key(&requirement.key));
            report(format!("{field}.values"), requirement.check_values());
            for value in &requirement.values {
                report(format!("{field}.values"), check_label_value(value));
            }
        }
        problems
    }
}

impl fmt::Display for LabelSelector {
    /// kubectl's selector syntax: `environment=production,region in (eu,us),!legacy`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut terms: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        terms.extend(self.match_expressions.iter().map(|r| match r.operator {
            Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
            Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
            Operator::Exists => r.key.clone(),
            Operator::DoesNotExist => format!("!{}", r.key),
        }));
        if terms.is_empty() {
            return f.write_str("<nothing>");
        }
        f.write_str(&terms.join(","))
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    fn check_values(&self) -> Result<(), String> {
        match (self.operator, self.values.is_empty()) {
            (Operator::In | Operator::NotIn, true) => Err(format!(
                "operator {:?} needs at least one value",
                self.operator
            )),
            (Operator::Exists | Operator::DoesNotExist, false) => {
                Err(format!("operator {:?} takes no values", self.operator))
            }
            _ => Ok(()),
        }
    }
}

/// A selector written as on the `kubectl` command line, e.g.
/// `sharding.secretsync.dev/key in (shard1,shard2),!legacy,tier=gold`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {text:?}: {message}")]
pub struct InvalidSelector {
    text: String,
    message: String,
}

impl std::str::FromStr for LabelSelector {
    type Err = InvalidSelector;

    /// Terms separated by commas (outside parentheses): `key=value` (or `==`), `key!=value`,
    /// `key in (a,b)`, `key notin (a,b)`, `key` (exists), `!key` (does not exist).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |message: String| InvalidSelector {
            text: text.to_owned(),
            message,
        };
        let mut selector = LabelSelector::default();
        for term in split_terms(text).map_err(invalid)? {
            parse_term(term, &mut selector).map_err(invalid)?;
        }
        if selector.is_empty() {
            return Err(invalid("it has no terms".to_owned()));
        }
        if let Some(problem) = selector.problems().into_iter().next() {
            return Err(invalid(format!("{}: {}", problem.field, problem.message)));
        }
        Ok(selector)
    }
}

fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(text[start..index].trim());
                start = index + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".to_owned());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".to_owned());
    }
    terms.push(text[start..].trim());
    if terms.iter().any(|t| t.is_empty()) {
        return Err("empty term".to_owned());
    }
    Ok(terms)
}

fn parse_term(term: &str, selector: &mut LabelSelector) -> Result<(), String> {
    let mut require = |key: &str, operator, values: Vec<String>| {
        selector.match_expressions.push(Requirement {
            key: key.trim().to_owned(),
            operator,
            values,
        });
    };
    if let Some(key) = term.strip_prefix('!') {
        require(key, Operator::DoesNotExist, Vec::new());
    } else if let Some((key, value)) = term.split_once("!=") {
        require(key, Operator::NotIn, vec![value.trim().to_owned()]);
    } else if let Some((key, value)) = term.split_once('=') {
        let value = value.strip_prefix('=').unwrap_or(value);
        selector
            .match_labels
            .insert(key.trim().to_owned(), value.trim().to_owned());
    } else if let Some((key, rest)) = term.split_once(char::is_whitespace) {
        let rest = rest.trim_start();
        let (operator, list) = if let Some(list) = rest.strip_prefix("notin") {
            (Operator::NotIn, list)
        } else if let Some(list) = rest.strip_prefix("in") {
            (Operator::In, list)
        } else {
            return Err(format!("{term:?}: expected `in (...)` or `notin (...)`"));
        };
        let values = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("{term:?}: values go in parentheses"))?
            .split(',')
            .map(|v| v.trim().to_owned())
            .collect();
        require(key, operator, values);
    } else {
        require(term, Operator::Exists, Vec::new());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn selector(yaml: &str) -> LabelSelector {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn matches_like_kubernetes_except_that_empty_selects_nothing() {
        let prod_eu = labels(&[("environment", "production"), ("region", "eu-west")]);
        let staging = labels(&[("environment", "staging")]);
        let none = labels(&[]);
        let cases = [
            ("{}", [false, false, false]),
            (
                "matchLabels: {environment: production}",
                [true, false, false],
            ),
            (
                "matchLabels: {environment: production, region: us-east}",
                [false, false, false],
            ),
            (
                "matchExpressions: [{key: environment, operator: In, values: [production, staging]}]",
                [true, true, false],
            ),
            (
                "matchExpressions: [{key: environment, operator: NotIn, values: [production]}]",
                [false, true, true],
            ),
            (
                "matchExpressions: [{key: region, operator: Exists}]",
                [true, false, false],
            ),
            (
                "matchExpressions: [{key: region, operator: DoesNotExist}]",
                [false, true, true],
            ),
            (
                "{matchLabels: {environment: production}, matchExpressions: [{key: region, operator: In, values: [eu-west]}]}",
                [true, false, false],
            ),
        ];
        for (yaml, expected) in cases {
            let selector = selector(yaml);
            let got = [&prod_eu, &staging, &none].map(|l| selector.matches(l));
            assert_eq!(got, expected, "{yaml}");
        }
    }

    #[test]
    fn reports_each_problem_with_its_field() {
        let cases = [
            ("{}", ""),
            ("matchLabels: {'bad key': x}", "matchLabels.bad key"),
            ("matchLabels: {env: 'bad value'}", "matchLabels.env"),
            (
                "matchExpressions: [{key: env, operator: In}]",
                "matchExpressions[0].values",
            ),
            (
                "matchExpressions: [{key: env, operator: Exists, values: [a]}]",
                "matchExpressions[0].values",
            ),
            (
                "matchExpressions: [{key: env, operator: In, values: [a]}, {key: '-x', operator: Exists}]",
                "matchExpressions[1].key",
            ),
        ];
        for (yaml, field) in cases {
            let problems = selector(yaml).problems();
            assert_eq!(problems.len(), 1, "{yaml}: {problems:?}");
            assert_eq!(problems[0].field, field, "{yaml}");
        }
        assert!(
            selector("matchLabels: {environment: production}")
                .problems()
                .is_empty()
        );
    }

    #[test]
    fn parses_the_kubectl_syntax() {
        let parsed: LabelSelector =
            "sharding.secretsync.dev/key in (shard1, shard2),!legacy,tier=gold,zone!=eu,gpu"
                .parse()
                .expect("valid");
        let expected = selector(
            "matchLabels: {tier: gold}
matchExpressions:
- {key: sharding.secretsync.dev/key, operator: In, values: [shard1, shard2]}
- {key: legacy, operator: DoesNotExist}
- {key: zone, operator: NotIn, values: [eu]}
- {key: gpu, operator: Exists}",
        );
        assert_eq!(parsed, expected);
        assert!(parsed.matches(&labels(&[
            ("sharding.secretsync.dev/key", "shard2"),
            ("tier", "gold"),
            ("gpu", "yes")
        ])));
        let double: LabelSelector = "tier==gold".parse().expect("valid");
        assert_eq!(double.match_labels["tier"], "gold");
        let notin: LabelSelector = "key notin (a)".parse().expect("valid");
        assert_eq!(notin.match_expressions[0].operator, Operator::NotIn);
    }

    #[test]
    fn refuses_malformed_selectors_with_the_reason() {
        for (text, reason) in [
            ("", "empty term"),
            ("a in (x", "unbalanced"),
            ("a,,b", "empty term"),
            ("a in x", "parentheses"),
            ("a within (x)", "expected `in"),
            ("bad key!=x", "label key \"bad key\""),
            ("-bad=x", "matchLabels"),
        ] {
            let error = text.parse::<LabelSelector>().expect_err(text).to_string();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn displays_like_kubectl_selectors() {
        let yaml = "{matchLabels: {environment: production}, matchExpressions: [{key: region, operator: In, values: [eu, us]}, {key: legacy, operator: DoesNotExist}, {key: tier, operator: Exists}]}";
        assert_eq!(
            selector(yaml).to_string(),
            "environment=production,region in (eu,us),!legacy,tier"
        );
        assert_eq!(selector("{}").to_string(), "<nothing>");
    }

    #[test]
    fn refuses_unknown_operators_when_parsing() {
        assert!(
            serde_yaml::from_str::<LabelSelector>(
                "matchExpressions: [{key: a, operator: Like, values: [b]}]"
            )
            .is_err()
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn name() -> impl Strategy<Value = String> {
            "[a-z]([a-z0-9-]{0,8}[a-z0-9])?"
        }

        fn key() -> impl Strategy<Value = String> {
            (
                proptest::option::of(Just("sharding.secretsync.dev/")),
                name(),
            )
                .prop_map(|(prefix, name)| format!("{}{name}", prefix.unwrap_or_default()))
        }

        fn requirement() -> impl Strategy<Value = Requirement> {
            let values = || proptest::collection::vec(name(), 1..4);
            prop_oneof![
                (key(), values()).prop_map(|(key, values)| Requirement {
                    key,
                    operator: Operator::In,
                    values
                }),
                (key(), values()).prop_map(|(key, values)| Requirement {
                    key,
                    operator: Operator::NotIn,
                    values
                }),
                key().prop_map(|key| Requirement {
                    key,
                    operator: Operator::Exists,
                    values: Vec::new()
                }),
                key().prop_map(|key| Requirement {
                    key,
                    operator: Operator::DoesNotExist,
                    values: Vec::new()
                }),
            ]
        }

        fn selector() -> impl Strategy<Value = LabelSelector> {
            (
                proptest::collection::btree_map(key(), name(), 0..3),
                proptest::collection::vec(requirement(), 0..3),
            )
                .prop_filter("not empty", |(labels, expressions)| {
                    !labels.is_empty() || !expressions.is_empty()
                })
                .prop_map(|(match_labels, match_expressions)| LabelSelector {
                    match_labels,
                    match_expressions,
                })
        }

        proptest! {
            #[test]
            fn kubectl_text_round_trips(selector in selector()) {
                let text = selector.to_string();
                let parsed: LabelSelector = text.parse().expect("its own text parses");
                prop_assert_eq!(parsed, selector);
            }

            #[test]
            fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,40}") {
                let _ = text.parse::<LabelSelector>();
            }

            #[test]
            fn labels_the_selector_does_not_name_never_change_the_answer(
                selector in selector(),
                labels in proptest::collection::btree_map(key(), name(), 0..4),
                extra in name(),
            ) {
                let unrelated = format!("unrelated.example/{extra}");
                let mut more = labels.clone();
                more.insert(unrelated, "x".to_owned());
                prop_assert_eq!(selector.matches(&labels), selector.matches(&more));
            }
        }
    }
}
