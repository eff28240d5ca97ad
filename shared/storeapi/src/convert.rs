//! Conversions between the wire messages ([`crate::pb`]) and the data model
//! ([`model::Labels`], [`model::Matcher`]).

use std::cmp::Ordering;

use model::{Label, Labels, MatchType, Matcher};

use crate::pb::{self, label_matcher::Type as PbMatchType};
use crate::{Error, Result};

/// Wire labels of a label set.
pub fn labels_to_pb(labels: &Labels) -> Vec<pb::Label> {
    labels
        .iter()
        .map(|l| pb::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// A label set from wire labels. Received labels are untrusted: they are sorted,
/// duplicate names keep the last value, and empty values are dropped (Prometheus
/// treats them as absent).
pub fn labels_from_pb(labels: &[pb::Label]) -> Labels {
    if labels_are_canonical(labels) {
        Labels::from_sorted(
            labels
                .iter()
                .map(|l| Label::new(l.name.clone(), l.value.clone()))
                .collect(),
        )
    } else {
        Labels::from_pairs(labels.iter().map(|l| (l.name.clone(), l.value.clone())))
    }
}

/// Like [`labels_from_pb`], taking ownership (no string copies when the labels
/// are already sorted, unique and non-empty, as stores send them).
pub fn labels_from_pb_owned(labels: Vec<pb::Label>) -> Labels {
    if labels_are_canonical(&labels) {
        Labels::from_sorted(
            labels
                .into_iter()
                .map(|l| Label::new(l.name, l.value))
                .collect(),
        )
    } else {
        Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
    }
}

fn labels_are_canonical(labels: &[pb::Label]) -> bool {
    labels.windows(2).all(|w| w[0].name < w[1].name) && labels.iter().all(|l| !l.value.is_empty())
}

/// Compares two wire label lists in Prometheus's series order (`labels.Compare`,
/// the same order as [`Labels`]' `Ord`): label by label, name then value, then
/// by length.
pub fn compare_pb_labels(a: &[pb::Label], b: &[pb::Label]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let c = x.name.cmp(&y.name).then_with(|| x.value.cmp(&y.value));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

/// The wire form of a matcher.
pub fn matcher_to_pb(m: &Matcher) -> pb::LabelMatcher {
    let t = match m.kind() {
        MatchType::Equal => PbMatchType::Eq,
        MatchType::NotEqual => PbMatchType::Neq,
        MatchType::Regex => PbMatchType::Re,
        MatchType::NotRegex => PbMatchType::Nre,
    };
    pb::LabelMatcher {
        r#type: t as i32,
        name: m.name().to_string(),
        value: m.value().to_string(),
    }
}

/// Wire forms of matchers.
pub fn matchers_to_pb(ms: &[Matcher]) -> Vec<pb::LabelMatcher> {
    ms.iter().map(matcher_to_pb).collect()
}

/// A matcher from its wire form. An unknown type or a regular expression that
/// does not compile is [`Error::InvalidArgument`] naming the matcher.
pub fn matcher_from_pb(m: &pb::LabelMatcher) -> Result<Matcher> {
    let kind = match PbMatchType::try_from(m.r#type) {
        Ok(PbMatchType::Eq) => MatchType::Equal,
        Ok(PbMatchType::Neq) => MatchType::NotEqual,
        Ok(PbMatchType::Re) => MatchType::Regex,
        Ok(PbMatchType::Nre) => MatchType::NotRegex,
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "unknown label matcher type {} for label {:?}",
                m.r#type, m.name
            )))
        }
    };
    Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| {
        Error::InvalidArgument(format!(
            "bad matcher {}{}{:?}: {e}",
            m.name,
            kind.as_str(),
            m.value
        ))
    })
}

/// Matchers from their wire forms; the first bad one is the error.
pub fn matchers_from_pb(ms: &[pb::LabelMatcher]) -> Result<Vec<Matcher>> {
    ms.iter().map(matcher_from_pb).collect()
}

/// The labels of a wire series as a label set (see [`labels_from_pb`]).
pub fn series_labels(s: &pb::Series) -> Labels {
    labels_from_pb(&s.labels)
}

/// A label set as the Info API's `ZLabelSet`.
pub fn zlabel_set(labels: &Labels) -> pb::ZLabelSet {
    pb::ZLabelSet {
        labels: labels_to_pb(labels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_sanitize() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1")]);
        let p = labels_to_pb(&l);
        assert_eq!(p[0].name, "a");
        assert_eq!(labels_from_pb(&p), l);
        assert_eq!(labels_from_pb_owned(p), l);
        let messy = vec![
            pb::Label {
                name: "z".into(),
                value: "1".into(),
            },
            pb::Label {
                name: "a".into(),
                value: "".into(),
            },
            pb::Label {
                name: "m".into(),
                value: "x".into(),
            },
        ];
        assert_eq!(labels_from_pb(&messy).to_string(), r#"{m="x", z="1"}"#);
    }

    #[test]
    fn pb_compare_matches_model_order() {
        let sets = [
            Labels::from_pairs([("__name__", "a")]),
            Labels::from_pairs([("__name__", "a"), ("x", "1")]),
            Labels::from_pairs([("__name__", "a"), ("w", "9")]),
            Labels::from_pairs([("__name__", "b")]),
            Labels::empty(),
        ];
        for a in &sets {
            for b in &sets {
                assert_eq!(
                    compare_pb_labels(&labels_to_pb(a), &labels_to_pb(b)),
                    a.cmp(b),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn matchers_round_trip() {
        for kind in [
            MatchType::Equal,
            MatchType::NotEqual,
            MatchType::Regex,
            MatchType::NotRegex,
        ] {
            let m = Matcher::new(kind, "job", "a.*").unwrap();
            let back = matcher_from_pb(&matcher_to_pb(&m)).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn bad_matchers_are_invalid_argument() {
        let bad = pb::LabelMatcher {
            r#type: PbMatchType::Re as i32,
            name: "job".into(),
            value: "(".into(),
        };
        let e = matcher_from_pb(&bad).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("job=~\"(\""), "{e}");
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
        let unknown = pb::LabelMatcher {
            r#type: 7,
            name: "job".into(),
            value: "x".into(),
        };
        assert!(matches!(
            matcher_from_pb(&unknown),
            Err(Error::InvalidArgument(m)) if m.contains("unknown label matcher type 7")
        ));
    }
}
