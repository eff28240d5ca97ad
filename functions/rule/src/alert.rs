//! The alert state machine of one alerting rule, as Prometheus's
//! `rules/alerting.go`: pure (no clock, no I/O; every call is given the
//! evaluation time in milliseconds), serialisable so that a stateless tick can
//! load it from and save it to the bucket.
//!
//! An alert (one label set of the rule's result) is *pending* from the first
//! evaluation that returns it, *firing* once it has been returned for `for`,
//! and *inactive* (resolved) when an evaluation no longer returns it, unless it
//! was firing and `keep_firing_for` has not passed since it stopped being
//! returned. Resolved alerts are kept for [`RESOLVED_RETENTION_MS`] so that the
//! Alertmanager keeps hearing that they are resolved.

use std::collections::BTreeMap;

use model::Labels;
use serde::{Deserialize, Serialize};

use crate::template;

/// How long a resolved alert is kept (and re-sent as resolved): 15 minutes.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// The metric of alert state series.
pub const ALERT_METRIC: &str = "ALERTS";
/// The metric keeping each active alert's activation time (for `for` restore).
pub const ALERT_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

/// State of an alert (or of a rule: the most severe of its alerts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    #[default]
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub state: AlertState,
    /// Identifying labels: the result's labels (without `__name__`), the rule's
    /// labels (templated) and `alertname`.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The value of the last evaluation that returned the alert.
    pub value: f64,
    pub active_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<i64>,
    #[serde(default)]
    pub valid_until: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Whether the alert is due to be sent at `ts` (Prometheus's `needsSending`).
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at.unwrap_or(i64::MIN);
        if self.resolved_at.is_some_and(|r| r > last) {
            return true;
        }
        last.saturating_add(resend_delay_ms) < ts
    }
}

/// What an alerting rule evaluates to and how it templates alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleSpec {
    pub name: String,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The persistent state of one alerting rule: its active alerts, keyed by
/// their labels' text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleState {
    pub active: BTreeMap<String, Alert>,
}

/// A failure of one evaluation of an alerting rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertEvalError {
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateLabelset,
    #[error("exceeded limit of {limit} with {count} alerts")]
    Limit { limit: usize, count: usize },
}

fn key(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", model::go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Context of alert templates.
#[derive(Debug, Clone, Default)]
pub struct TemplateContext {
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
}

impl AlertRuleState {
    /// One evaluation at `ts` of a rule whose query returned `result`. Returns the
    /// `ALERTS` and `ALERTS_FOR_STATE` samples to record (value 1 and the
    /// activation time in seconds).
    pub fn eval(
        &mut self,
        spec: &AlertRuleSpec,
        ts: i64,
        result: &[(Labels, f64)],
        ctx: &TemplateContext,
        limit: usize,
    ) -> Result<Vec<(Labels, f64)>, AlertEvalError> {
        let mut fresh: BTreeMap<String, Alert> = BTreeMap::new();
        for (metric, v) in result {
            let data: BTreeMap<String, String> = metric
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let expand = |text: &str| {
                template::expand_alert(
                    &spec.name,
                    text,
                    &data,
                    &ctx.external_labels,
                    &ctx.external_url,
                    *v,
                )
            };
            let mut labels = data.clone();
            labels.remove(model::METRIC_NAME);
            for (k, t) in &spec.labels {
                let val = expand(t);
                if val.is_empty() {
                    labels.remove(k);
                } else {
                    labels.insert(k.clone(), val);
                }
            }
            labels.insert("alertname".into(), spec.name.clone());
            let annotations = spec
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), expand(t)))
                .collect();
            let k = key(&labels);
            if fresh.contains_key(&k) {
                return Err(AlertEvalError::DuplicateLabelset);
            }
            fresh.insert(
                k,
                Alert {
                    state: AlertState::Pending,
                    labels,
                    annotations,
                    value: *v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    valid_until: 0,
                    keep_firing_since: None,
                },
            );
        }
        for (k, a) in &fresh {
            match self.active.get_mut(k) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations.clone();
                }
                _ => {
                    self.active.insert(k.clone(), a.clone());
                }
            }
        }
        let mut out = Vec::new();
        let mut num_active = 0;
        let mut remove = Vec::new();
        for (k, a) in self.active.iter_mut() {
            if !fresh.contains_key(k) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && spec.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < spec.keep_firing_for_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    remove.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            num_active += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= spec.for_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            out.push((alert_series(a, AlertState::as_str(a.state)), 1.0));
            out.push((for_state_series(a), (a.active_at / 1000) as f64));
        }
        for k in remove {
            self.active.remove(&k);
        }
        if limit > 0 && num_active > limit {
            self.active.clear();
            return Err(AlertEvalError::Limit {
                limit,
                count: num_active,
            });
        }
        Ok(out)
    }

    /// The rule's state: the most severe of its alerts'.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Alerts due for sending at `ts` (marked as sent, `valid_until` set), as
    /// Prometheus's `sendAlerts`.
    pub fn take_sendable(&mut self, ts: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts, resend_delay_ms) {
                a.last_sent_at = Some(ts);
                a.valid_until = ts + 4 * resend_delay_ms.max(interval_ms);
                out.push(a.clone());
            }
        }
        out
    }
}

fn alert_series(a: &Alert, state: &str) -> Labels {
    let mut pairs: Vec<(String, String)> = a.labels.clone().into_iter().collect();
    pairs.push((model::METRIC_NAME.into(), ALERT_METRIC.into()));
    pairs.push(("alertstate".into(), state.into()));
    Labels::from_pairs(pairs)
}

fn for_state_series(a: &Alert) -> Labels {
    let mut pairs: Vec<(String, String)> = a.labels.clone().into_iter().collect();
    pairs.push((model::METRIC_NAME.into(), ALERT_FOR_STATE_METRIC.into()));
    Labels::from_pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(for_s: i64, keep_s: i64) -> AlertRuleSpec {
        AlertRuleSpec {
            name: "HTTPRequestRateLow".into(),
            for_ms: for_s * 1000,
            keep_firing_for_ms: keep_s * 1000,
            labels: BTreeMap::from([("severity".into(), "{{ \"critical\" }}".into())]),
            annotations: BTreeMap::from([(
                "summary".into(),
                "{{ $labels.instance }} at {{ $value }}".into(),
            )]),
        }
    }

    fn series(instance: &str) -> Labels {
        Labels::from_pairs([
            ("__name__", "http_requests"),
            ("job", "app"),
            ("instance", instance),
        ])
    }

    fn alerts_states(out: &[(Labels, f64)]) -> Vec<(String, String)> {
        out.iter()
            .filter(|(l, _)| l.metric_name() == Some("ALERTS"))
            .map(|(l, _)| {
                (
                    l.get("instance").unwrap_or("").to_string(),
                    l.get("alertstate").unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        // As alerting_test.go's TestAlertingRuleLabelsUpdate / the promqltest
        // alert tests: for 10m, evaluated every 5m.
        let s = spec(600, 0);
        let ctx = TemplateContext::default();
        let mut st = AlertRuleState::default();
        let m = 60_000;
        let out = st.eval(&s, 0, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        assert_eq!(alerts_states(&out), vec![("0".into(), "pending".into())]);
        let a = st.active.values().next().unwrap();
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.labels["alertname"], "HTTPRequestRateLow");
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(a.annotations["summary"], "0 at 1");
        let out = st.eval(&s, 5 * m, &[(series("0"), 2.0)], &ctx, 0).unwrap();
        assert_eq!(alerts_states(&out), vec![("0".into(), "pending".into())]);
        assert_eq!(
            st.active.values().next().unwrap().annotations["summary"],
            "0 at 2"
        );
        let out = st.eval(&s, 10 * m, &[(series("0"), 3.0)], &ctx, 0).unwrap();
        assert_eq!(alerts_states(&out), vec![("0".into(), "firing".into())]);
        let for_state: Vec<f64> = out
            .iter()
            .filter(|(l, _)| l.metric_name() == Some("ALERTS_FOR_STATE"))
            .map(|p| p.1)
            .collect();
        assert_eq!(for_state, vec![0.0]);
        assert_eq!(st.state(), AlertState::Firing);
        // Gone: resolved, no samples, kept for resending.
        let out = st.eval(&s, 15 * m, &[], &ctx, 0).unwrap();
        assert!(out.is_empty());
        let a = st.active.values().next().unwrap();
        assert_eq!(a.state, AlertState::Inactive);
        assert_eq!(a.resolved_at, Some(15 * m));
        // Dropped once the retention has passed.
        st.eval(&s, 15 * m + RESOLVED_RETENTION_MS, &[], &ctx, 0)
            .unwrap();
        assert_eq!(st.active.len(), 1);
        st.eval(&s, 15 * m + RESOLVED_RETENTION_MS + 1, &[], &ctx, 0)
            .unwrap();
        assert!(st.active.is_empty());
    }

    #[test]
    fn pending_that_goes_away_is_forgotten_and_restarts() {
        let s = spec(600, 0);
        let ctx = TemplateContext::default();
        let mut st = AlertRuleState::default();
        st.eval(&s, 0, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        st.eval(&s, 60_000, &[], &ctx, 0).unwrap();
        assert!(st.active.is_empty());
        st.eval(&s, 120_000, &[(series("0"), 1.0)], &ctx, 0)
            .unwrap();
        assert_eq!(st.active.values().next().unwrap().active_at, 120_000);
    }

    #[test]
    fn zero_for_fires_at_once() {
        let s = spec(0, 0);
        let mut st = AlertRuleState::default();
        let out = st
            .eval(&s, 0, &[(series("0"), 1.0)], &TemplateContext::default(), 0)
            .unwrap();
        assert_eq!(alerts_states(&out), vec![("0".into(), "firing".into())]);
    }

    #[test]
    fn keep_firing_for() {
        // alerting_test.go TestKeepFiringFor: for 1m, keep_firing_for 1m.
        let s = spec(60, 60);
        let ctx = TemplateContext::default();
        let mut st = AlertRuleState::default();
        let m = 60_000;
        st.eval(&s, 0, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        let out = st.eval(&s, m, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        assert_eq!(alerts_states(&out), vec![("0".into(), "firing".into())]);
        // Not returned any more, but still firing for keep_firing_for.
        let out = st.eval(&s, 2 * m, &[], &ctx, 0).unwrap();
        assert_eq!(alerts_states(&out), vec![("0".into(), "firing".into())]);
        let out = st.eval(&s, 2 * m + 30_000, &[], &ctx, 0).unwrap();
        assert_eq!(alerts_states(&out), vec![("0".into(), "firing".into())]);
        let out = st.eval(&s, 3 * m, &[], &ctx, 0).unwrap();
        assert!(out.is_empty());
        assert_eq!(st.state(), AlertState::Inactive);
        // Returned again while keeping: the keep timer resets.
        let mut st = AlertRuleState::default();
        st.eval(&s, 0, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        st.eval(&s, m, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        st.eval(&s, 2 * m, &[], &ctx, 0).unwrap();
        st.eval(&s, 2 * m + 10_000, &[(series("0"), 1.0)], &ctx, 0)
            .unwrap();
        assert_eq!(st.active.values().next().unwrap().keep_firing_since, None);
    }

    #[test]
    fn limit_and_duplicates() {
        let s = spec(0, 0);
        let ctx = TemplateContext::default();
        let mut st = AlertRuleState::default();
        let two = [(series("0"), 1.0), (series("1"), 1.0)];
        assert_eq!(
            st.eval(&s, 0, &two, &ctx, 1).unwrap_err(),
            AlertEvalError::Limit { limit: 1, count: 2 }
        );
        assert!(st.active.is_empty());
        assert!(st.eval(&s, 0, &two, &ctx, 2).is_ok());
        // Two results that differ only in __name__ collide once it is dropped.
        let dup = [
            (Labels::from_pairs([("__name__", "a"), ("x", "1")]), 1.0),
            (Labels::from_pairs([("__name__", "b"), ("x", "1")]), 1.0),
        ];
        assert_eq!(
            AlertRuleState::default()
                .eval(&s, 0, &dup, &ctx, 0)
                .unwrap_err(),
            AlertEvalError::DuplicateLabelset
        );
    }

    #[test]
    fn sending_and_resending() {
        let s = spec(0, 0);
        let ctx = TemplateContext::default();
        let mut st = AlertRuleState::default();
        let m = 60_000;
        st.eval(&s, 0, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        let sent = st.take_sendable(0, m, 10_000);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].valid_until, 4 * m);
        // Not again before the resend delay, then again after it.
        st.eval(&s, 30_000, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        assert!(st.take_sendable(30_000, m, 10_000).is_empty());
        st.eval(&s, m + 1, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        assert_eq!(st.take_sendable(m + 1, m, 10_000).len(), 1);
        // Resolved: sent at once, with resolved_at.
        st.eval(&s, m + 2, &[], &ctx, 0).unwrap();
        let sent = st.take_sendable(m + 2, m, 10_000);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].resolved_at, Some(m + 2));
        // Pending alerts are never sent.
        let s = spec(600, 0);
        let mut st = AlertRuleState::default();
        st.eval(&s, 0, &[(series("0"), 1.0)], &ctx, 0).unwrap();
        assert!(st.take_sendable(0, m, 10_000).is_empty());
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = spec(600, 0);
        let mut st = AlertRuleState::default();
        st.eval(&s, 0, &[(series("0"), 1.0)], &TemplateContext::default(), 0)
            .unwrap();
        let j = serde_json::to_string(&st).unwrap();
        let back: AlertRuleState = serde_json::from_str(&j).unwrap();
        assert_eq!(back, st);
    }
}
