//! External labels: the labels a store adds to every series it serves (its
//! Prometheus's `external_labels`, a block's `thanos.labels`).

use model::{Labels, Matcher};

/// The series labels with the external labels attached; an external label
/// overrides a series label of the same name (Thanos's `ExtendSortedLabels`).
pub fn attach(series: &Labels, external: &Labels) -> Labels {
    if external.is_empty() {
        return series.clone();
    }
    Labels::from_pairs(
        series
            .iter()
            .chain(external.iter())
            .map(|l| (l.name.as_str(), l.value.as_str())),
    )
}

/// The labels without the named ones (e.g. replica labels for
/// `without_replica_labels`, or external labels before writing to a TSDB).
pub fn strip(labels: &Labels, names: &[&str]) -> Labels {
    labels.without(names)
}

/// Whether a store whose series all carry one of `label_sets` may hold series
/// matching all `matchers` (Thanos's `LabelSetsMatch`): true if it has no label
/// sets, or if some label set has no label that a matcher rejects. Matchers on
/// names outside a label set cannot be judged and do not exclude it. Used to
/// skip stores that cannot answer.
pub fn label_sets_match(matchers: &[Matcher], label_sets: &[Labels]) -> bool {
    label_sets.is_empty()
        || label_sets.iter().any(|ls| {
            matchers
                .iter()
                .all(|m| ls.get(m.name()).is_none_or(|v| m.matches(v)))
        })
}

/// Splits request matchers for a store with external labels `external` (as a
/// sidecar does before asking Prometheus, which lacks those labels): `None` if a
/// matcher on an external label rejects its value, so nothing can match;
/// otherwise the matchers left after dropping those the external labels satisfy.
pub fn split_matchers(matchers: &[Matcher], external: &Labels) -> Option<Vec<Matcher>> {
    let mut rest = Vec::with_capacity(matchers.len());
    for m in matchers {
        match external.get(m.name()) {
            Some(v) if m.matches(v) => {}
            Some(_) => return None,
            None => rest.push(m.clone()),
        }
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::MatchType;

    fn l(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p.iter().copied())
    }

    #[test]
    fn attach_overrides_and_sorts() {
        let s = l(&[("__name__", "up"), ("region", "x"), ("job", "a")]);
        let e = l(&[("region", "eu"), ("replica", "0")]);
        assert_eq!(
            attach(&s, &e).to_string(),
            r#"{__name__="up", job="a", region="eu", replica="0"}"#
        );
        assert_eq!(
            strip(&attach(&s, &e), &["replica"]).to_string(),
            r#"{__name__="up", job="a", region="eu"}"#
        );
    }

    #[test]
    fn label_sets_matching() {
        let eu = l(&[("region", "eu")]);
        let us = l(&[("region", "us")]);
        let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
        assert!(label_sets_match(
            &[m(MatchType::Equal, "region", "eu")],
            &[]
        ));
        assert!(label_sets_match(
            &[m(MatchType::Equal, "region", "eu")],
            &[us.clone(), eu.clone()]
        ));
        assert!(!label_sets_match(
            &[m(MatchType::Equal, "region", "eu")],
            std::slice::from_ref(&us)
        ));
        assert!(label_sets_match(
            &[m(MatchType::Equal, "job", "x")],
            std::slice::from_ref(&us)
        ));
        assert!(!label_sets_match(
            &[m(MatchType::Regex, "region", "e.*")],
            std::slice::from_ref(&us)
        ));
        // `region=""` asks for series without the label: a store that adds it
        // to every series has none.
        assert!(!label_sets_match(
            &[m(MatchType::Equal, "region", "")],
            &[eu]
        ));
    }

    #[test]
    fn split() {
        let e = l(&[("region", "eu")]);
        let ms = vec![
            Matcher::equal("region", "eu"),
            Matcher::equal("__name__", "up"),
        ];
        let rest = split_matchers(&ms, &e).unwrap();
        assert_eq!(rest, vec![Matcher::equal("__name__", "up")]);
        assert!(split_matchers(&[Matcher::equal("region", "us")], &e).is_none());
    }
}
