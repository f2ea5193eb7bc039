//! Reading what `GET /metrics` answered, for tests that check a service counted its work.

use std::collections::BTreeMap;

/// One sample of a Prometheus text exposition: its metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, with any `_bucket`, `_sum` or `_count` suffix.
    pub name: String,
    /// The labels, by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Every sample in `text`, skipping comments. Panics on a line that is not a sample: what a
/// service exposes must parse.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| parse(line).unwrap_or_else(|| panic!("not a sample: {line:?}")))
        .collect()
}

/// The value of the sample named `name` whose labels are exactly `labels`, if there is one.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples(text)
        .into_iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
}

/// The values label `label` takes on the samples named `name`.
pub fn label_values(text: &str, name: &str, label: &str) -> Vec<String> {
    let mut values: Vec<String> = samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter_map(|mut s| s.labels.remove(label))
        .collect();
    values.sort();
    values.dedup();
    values
}

fn parse(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            // Our label values never hold `",` or escapes, so splitting on it is exact here.
            for pair in body.split("\",").filter(|p| !p.is_empty()) {
                let (key, quoted) = pair.split_once('=')?;
                let value = quoted.trim_start_matches('"').trim_end_matches('"');
                labels.insert(key.to_owned(), value.to_owned());
            }
            (name, labels)
        }
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_total Things.\n# TYPE x_total counter\n\
        x_total{outcome=\"ack\",queue=\"ORDER\"} 3\nx_total{outcome=\"retried\",queue=\"ORDER\"} 0\n\
        up 1\nh_bucket{le=\"+Inf\"} 7\n";

    #[test]
    fn a_sample_is_found_by_its_exact_labels_in_any_order() {
        assert_eq!(
            value(TEXT, "x_total", &[("queue", "ORDER"), ("outcome", "ack")]),
            Some(3.0)
        );
        assert_eq!(value(TEXT, "x_total", &[("queue", "ORDER")]), None);
        assert_eq!(value(TEXT, "up", &[]), Some(1.0));
        assert_eq!(value(TEXT, "h_bucket", &[("le", "+Inf")]), Some(7.0));
    }

    #[test]
    fn label_values_are_listed_once_each() {
        assert_eq!(label_values(TEXT, "x_total", "outcome"), ["ack", "retried"]);
    }
}
