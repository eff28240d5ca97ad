//! The stateless evaluation tick: [`Ruler::tick`] evaluates every group due at a
//! time, records the results, sends alerts, and keeps what must survive in the
//! bucket.
//!
//! A group with interval `I` is evaluated at the slot times `k*I` (plus the
//! group's own offset when [`RulerConfig::spread_groups`]); a tick at `t`
//! evaluates each group whose current slot (the latest not after `t`) is after
//! its last evaluation (so a second tick for the same time evaluates nothing). The state
//! (each group's last evaluation, each alerting rule's alerts with their `for`
//! timers and send times, each rule's health and the series it produced last
//! time for staleness markers) is one JSON object in the bucket, read at the
//! start of a tick and written back with a conditional PUT (`If-Match` the
//! version read, `If-None-Match: *` when new): when two ticks race, one write
//! wins and the loser records and sends nothing. Only the winner then appends
//! its samples to the [`SampleSink`] and notifies.
//!
//! Everything is injected (querier, notifier, sink, state store), so the
//! long-lived `aether rule` and a one-tick-per-invocation function share this.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use bucket::object_store::{
    path::Path as ObjPath, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use model::Labels;
use serde::{Deserialize, Serialize};

use crate::alert::{AlertRuleSpec, AlertRuleState, AlertState, TemplateContext};
use crate::head::{AppendStats, Head};
use crate::notifier::{rfc3339_ms, AmAlert, Notifier};
use crate::querier::RuleQuerier;
use crate::rulefile::{PartialResponseStrategy, Rule, RuleGroup, RuleKind};
use crate::{Error, Result};

/// Where evaluated samples go.
pub trait SampleSink: Send + Sync {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<AppendStats>;
}

impl SampleSink for Head {
    fn append(&self, samples: &[(Labels, i64, f64)]) -> Result<AppendStats> {
        Head::append(self, samples)
    }
}

/// The health of a rule after its last evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// `ok`, `err` or `unknown`.
    pub health: String,
    #[serde(default)]
    pub last_error: String,
    /// Unix ms of the last evaluation (0: never).
    #[serde(default)]
    pub last_eval: i64,
    /// Seconds the last evaluation took.
    #[serde(default)]
    pub eval_seconds: f64,
    /// Alerting rules: their alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertRuleState>,
    /// The series written at the last evaluation (for staleness markers).
    #[serde(default)]
    pub series: Vec<Labels>,
}

/// One group's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Unix ms of the last evaluation slot.
    pub last_eval: i64,
    #[serde(default)]
    pub eval_seconds: f64,
    /// Keyed by [`rule_keys`]: name and labels, so that a rule keeps its state
    /// (alerts, series for staleness) when a reload moves it in its group.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleStatus>,
}

/// Everything a ruler keeps between ticks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RulerState {
    pub version: u32,
    /// Keyed by `<file>;<group name>`.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupState>,
}

/// The key of a group in the state and in metrics (Prometheus's `file;name`).
pub fn group_key(g: &RuleGroup) -> String {
    format!("{};{}", g.file, g.name)
}

/// The state keys of a group's rules, in order: the rule's name and labels (as
/// Prometheus matches rules across a reload), with `#n` for the n-th rule of
/// the same name and labels in the group.
pub fn rule_keys(g: &RuleGroup) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    g.rules
        .iter()
        .map(|r| {
            let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let base = format!("{}{{{}}}", r.name(), labels.join(", "));
            let n = seen.entry(base.clone()).or_insert(0);
            let key = format!("{base}#{n}");
            *n += 1;
            key
        })
        .collect()
}

/// Prometheus's offset of a group within its interval: the hash of the labels
/// `{file, name}` modulo the interval in nanoseconds, here in milliseconds.
pub fn group_offset_ms(g: &RuleGroup, interval_ms: i64) -> i64 {
    let h = model::prometheus_hash([("file", g.file.as_str()), ("name", g.name.as_str())]);
    let interval_ns = u64::try_from(interval_ms)
        .unwrap_or(1)
        .max(1)
        .saturating_mul(1_000_000);
    i64::try_from(h % interval_ns / 1_000_000).unwrap_or(0)
}

/// The key of rule `i` in states written before [`rule_keys`] (by position).
fn legacy_rule_key(i: usize, r: &Rule) -> String {
    format!("{i}:{}", r.name())
}

/// A staleness marker for each of `series` at `ts`.
fn stale_markers<'a, I>(series: I, ts: i64) -> impl Iterator<Item = (Labels, i64, f64)> + 'a
where
    I: IntoIterator<Item = &'a Labels>,
    I::IntoIter: 'a,
{
    series
        .into_iter()
        .map(move |l| (l.clone(), ts, f64::from_bits(model::STALE_NAN_BITS)))
}

/// Loads and conditionally saves the ruler state.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The state and an opaque version (None when there is no state yet).
    async fn load(&self) -> Result<(RulerState, Option<UpdateVersion>)>;
    /// Saves if the stored version is still `expected`; `Ok(false)` when another
    /// writer got there first.
    async fn save(&self, state: &RulerState, expected: Option<UpdateVersion>) -> Result<bool>;
}

/// The state as one object in the bucket.
pub struct BucketStateStore {
    store: Arc<dyn ObjectStore>,
    key: ObjPath,
}

/// A hash of a ruler's labels naming its objects in the bucket: FNV-1a over the
/// labels' text, stable across builds and platforms.
pub(crate) fn labels_hash(labels: &Labels) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in labels.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The bucket prefix of a ruler with `labels`: `aether/rule/<hash>`.
pub(crate) fn ruler_prefix(labels: &Labels) -> String {
    format!("aether/rule/{:016x}", labels_hash(labels))
}

/// The state object of a ruler with `labels`: `aether/rule/<hash>/state.json`.
pub fn state_key(labels: &Labels) -> String {
    format!("{}/state.json", ruler_prefix(labels))
}

impl BucketStateStore {
    pub fn new(store: Arc<dyn ObjectStore>, labels: &Labels) -> Self {
        BucketStateStore {
            store,
            key: ObjPath::from(state_key(labels)),
        }
    }
}

#[async_trait]
impl StateStore for BucketStateStore {
    async fn load(&self) -> Result<(RulerState, Option<UpdateVersion>)> {
        let r = match self.store.get(&self.key).await {
            Ok(r) => r,
            Err(bucket::object_store::Error::NotFound { .. }) => {
                return Ok((
                    RulerState {
                        version: 1,
                        ..Default::default()
                    },
                    None,
                ))
            }
            Err(e) => return Err(Error::Storage(format!("GET {}: {e}", self.key))),
        };
        let version = UpdateVersion {
            e_tag: r.meta.e_tag.clone(),
            version: r.meta.version.clone(),
        };
        let b = r
            .bytes()
            .await
            .map_err(|e| Error::Storage(format!("GET {}: {e}", self.key)))?;
        let state = serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(key = %self.key, error = %e, "ruler state does not parse; starting afresh");
            RulerState { version: 1, ..Default::default() }
        });
        Ok((state, Some(version)))
    }

    async fn save(&self, state: &RulerState, expected: Option<UpdateVersion>) -> Result<bool> {
        let payload =
            PutPayload::from(serde_json::to_vec(state).map_err(|e| Error::Storage(e.to_string()))?);
        let mode = match expected {
            Some(v) if v.e_tag.is_some() || v.version.is_some() => PutMode::Update(v),
            Some(_) => PutMode::Overwrite,
            None => PutMode::Create,
        };
        match self
            .store
            .put_opts(&self.key, payload.clone(), PutOptions::from(mode))
            .await
        {
            Ok(_) => Ok(true),
            Err(bucket::object_store::Error::AlreadyExists { .. })
            | Err(bucket::object_store::Error::Precondition { .. }) => Ok(false),
            // A store without conditional writes (local filesystem): plain PUT.
            Err(bucket::object_store::Error::NotImplemented { .. }) => self
                .store
                .put(&self.key, payload)
                .await
                .map(|_| true)
                .map_err(|e| Error::Storage(format!("PUT {}: {e}", self.key))),
            Err(e) => Err(Error::Storage(format!("PUT {}: {e}", self.key))),
        }
    }
}

/// Settings of a ruler.
#[derive(Debug, Clone)]
pub struct RulerConfig {
    /// `--eval-interval`: groups without `interval`.
    pub eval_interval_ms: i64,
    /// `--resend-delay`.
    pub resend_delay_ms: i64,
    /// `--label`s: external labels of the results and labels of the alerts.
    pub external_labels: Labels,
    /// Base of alerts' generator URLs (`--alert.query-url`).
    pub external_url: String,
    /// Labels removed from alerts before sending (`--alert.label-drop`, e.g. the
    /// replica label, so that HA rulers' alerts deduplicate in Alertmanager).
    pub alert_label_drop: Vec<String>,
    /// Spread groups over their interval as Prometheus does: each group is
    /// evaluated at its own offset (a hash of its file and name, Prometheus's
    /// `EvalTimestamp`), so that groups don't all query at once. The long-lived
    /// ruler's choice; one-tick-per-invocation rulers (Lambda, Knative) keep
    /// groups at the multiples of their interval, so that a tick on a schedule
    /// evaluates the slot it was scheduled for rather than one up to an
    /// interval older.
    pub spread_groups: bool,
}

impl Default for RulerConfig {
    fn default() -> Self {
        RulerConfig {
            eval_interval_ms: 60_000,
            resend_delay_ms: 60_000,
            external_labels: Labels::empty(),
            external_url: String::new(),
            alert_label_drop: Vec::new(),
            spread_groups: false,
        }
    }
}

/// Counters of one group, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct GroupMetrics {
    pub evaluations: u64,
    pub failures: u64,
    pub last_duration_s: f64,
    pub last_eval_ms: i64,
    pub interval_s: f64,
    pub rules: usize,
    pub warnings: u64,
}

/// Counters of the ruler.
#[derive(Debug, Default)]
pub struct RulerMetrics {
    pub groups: Mutex<BTreeMap<String, GroupMetrics>>,
    pub ticks: AtomicU64,
    pub lost_races: AtomicU64,
    pub samples_appended: AtomicU64,
    pub samples_out_of_order: AtomicU64,
    pub alerts_sent: AtomicU64,
    pub notify_failures: AtomicU64,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Groups evaluated (keys) at their slot times.
    pub evaluated: Vec<(String, i64)>,
    /// Samples recorded.
    pub appended: usize,
    /// Alerts sent.
    pub alerts_sent: usize,
    /// Another tick saved its state first; this one recorded and sent nothing.
    pub lost_race: bool,
}

/// One group evaluated by a tick, in a [`TickSummary`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvaluatedGroup {
    pub group: String,
    /// The evaluation time (slot), ms.
    pub slot: i64,
}

/// A tick's answer, as the Knative and Lambda entry points return it (JSON keys are
/// the field names).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TickSummary {
    /// When the tick ran, ms.
    pub at: i64,
    pub evaluated: Vec<EvaluatedGroup>,
    /// Samples recorded.
    pub samples: usize,
    pub alerts_sent: usize,
    pub lost_race: bool,
    /// Blocks cut and uploaded by the tick.
    pub blocks: Vec<String>,
}

impl TickReport {
    /// The tick's answer: this report, its time and the blocks it cut.
    pub fn summary(&self, at: i64, blocks: &[ulid::Ulid]) -> TickSummary {
        TickSummary {
            at,
            evaluated: self
                .evaluated
                .iter()
                .map(|(group, slot)| EvaluatedGroup {
                    group: group.clone(),
                    slot: *slot,
                })
                .collect(),
            samples: self.appended,
            alerts_sent: self.alerts_sent,
            lost_race: self.lost_race,
            blocks: blocks.iter().map(|b| b.to_string()).collect(),
        }
    }
}

/// The ruler handler.
pub struct Ruler {
    cfg: RulerConfig,
    groups: RwLock<Arc<Vec<RuleGroup>>>,
    querier: Arc<dyn RuleQuerier>,
    notifier: Arc<dyn Notifier>,
    sink: Arc<dyn SampleSink>,
    state: Arc<dyn StateStore>,
    last_state: RwLock<RulerState>,
    tick_lock: tokio::sync::Mutex<()>,
    pub metrics: RulerMetrics,
}

impl Ruler {
    pub fn new(
        cfg: RulerConfig,
        groups: Vec<RuleGroup>,
        querier: Arc<dyn RuleQuerier>,
        notifier: Arc<dyn Notifier>,
        sink: Arc<dyn SampleSink>,
        state: Arc<dyn StateStore>,
    ) -> Self {
        Ruler {
            cfg,
            groups: RwLock::new(Arc::new(groups)),
            querier,
            notifier,
            sink,
            state,
            last_state: RwLock::new(RulerState::default()),
            tick_lock: tokio::sync::Mutex::new(()),
            metrics: RulerMetrics::default(),
        }
    }

    pub fn config(&self) -> &RulerConfig {
        &self.cfg
    }

    /// Replaces the rule groups (a reload); state of rules that remain is kept.
    pub fn set_groups(&self, groups: Vec<RuleGroup>) {
        *self.groups.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(groups);
    }

    pub fn groups(&self) -> Arc<Vec<RuleGroup>> {
        Arc::clone(&self.groups.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The state as of the last tick of this process (or last [`Ruler::refresh_state`]).
    pub fn last_state(&self) -> RulerState {
        self.last_state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads the state from the store (for the API of a process that doesn't tick).
    pub async fn refresh_state(&self) -> Result<()> {
        let (s, _) = self.state.load().await?;
        *self.last_state.write().unwrap_or_else(|e| e.into_inner()) = s;
        Ok(())
    }

    /// A group's interval in ms.
    pub fn interval_ms(&self, g: &RuleGroup) -> i64 {
        g.interval
            .map(|d| d.as_millis() as i64)
            .unwrap_or(self.cfg.eval_interval_ms)
            .max(1)
    }

    /// The evaluation slot of `g` at `at`: the latest of its evaluation times
    /// not after `at` (see [`RulerConfig::spread_groups`]).
    pub fn slot(&self, g: &RuleGroup, at: i64) -> i64 {
        let i = self.interval_ms(g);
        let off = if self.cfg.spread_groups {
            group_offset_ms(g, i)
        } else {
            0
        };
        (at - off).div_euclid(i) * i + off
    }

    /// The earliest time after `at` at which some group is due.
    pub fn next_due(&self, at: i64) -> i64 {
        self.groups()
            .iter()
            .map(|g| self.slot(g, at) + self.interval_ms(g))
            .min()
            .unwrap_or(at + self.cfg.eval_interval_ms)
    }

    /// Evaluates every group due at `at` (Unix ms). See the module docs.
    pub async fn tick(&self, at: i64) -> Result<TickReport> {
        let _serial = self.tick_lock.lock().await;
        self.metrics.ticks.fetch_add(1, Ordering::Relaxed);
        let groups = self.groups();
        let (old, version) = self.state.load().await?;
        let mut next = RulerState {
            version: 1,
            groups: BTreeMap::new(),
        };
        let mut report = TickReport::default();
        let mut samples: Vec<(Labels, i64, f64)> = Vec::new();
        let mut alerts: Vec<AmAlert> = Vec::new();
        let mut group_metrics: Vec<(String, GroupMetrics)> = Vec::new();
        for g in groups.iter() {
            let key = group_key(g);
            let interval = self.interval_ms(g);
            let slot = self.slot(g, at);
            let prev = old.groups.get(&key).cloned().unwrap_or_default();
            if prev.last_eval >= slot {
                next.groups.insert(key, prev);
                continue;
            }
            let started = Instant::now();
            let (gs, gm) = self
                .eval_group(g, slot, prev, &mut samples, &mut alerts)
                .await;
            let mut gm = gm;
            gm.last_duration_s = started.elapsed().as_secs_f64();
            gm.interval_s = interval as f64 / 1000.0;
            let mut gs = gs;
            gs.eval_seconds = gm.last_duration_s;
            report.evaluated.push((key.clone(), slot));
            group_metrics.push((key.clone(), gm));
            next.groups.insert(key, gs);
        }
        // Groups gone from the rule files: their series go stale now (as
        // Prometheus marks a removed group's series stale when it stops it).
        let mut removed = 0usize;
        for (key, gs) in &old.groups {
            if !next.groups.contains_key(key) {
                removed += 1;
                for st in gs.rules.values() {
                    samples.extend(stale_markers(&st.series, at));
                }
                tracing::info!(group = %key, "rule group removed; its series are marked stale");
            }
        }
        if report.evaluated.is_empty() && removed == 0 {
            *self.last_state.write().unwrap_or_else(|e| e.into_inner()) = old;
            return Ok(report);
        }
        if !self.state.save(&next, version).await? {
            tracing::info!(
                at,
                "another tick saved the ruler state first; dropping this tick's results"
            );
            self.metrics.lost_races.fetch_add(1, Ordering::Relaxed);
            report.lost_race = true;
            report.evaluated.clear();
            return Ok(report);
        }
        let stats = self.sink.append(&samples)?;
        report.appended = stats.appended;
        self.metrics
            .samples_appended
            .fetch_add(stats.appended as u64, Ordering::Relaxed);
        self.metrics
            .samples_out_of_order
            .fetch_add(stats.out_of_order as u64, Ordering::Relaxed);
        if !alerts.is_empty() {
            match self.notifier.send(&alerts).await {
                Ok(()) => {
                    report.alerts_sent = alerts.len();
                    self.metrics
                        .alerts_sent
                        .fetch_add(alerts.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.metrics.notify_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "sending alerts failed; they are resent at the next resend");
                }
            }
        }
        {
            let mut m = self
                .metrics
                .groups
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let live: Vec<String> = groups.iter().map(group_key).collect();
            m.retain(|k, _| live.contains(k));
            for (k, gm) in group_metrics {
                let e = m.entry(k).or_default();
                e.evaluations += gm.evaluations;
                e.failures += gm.failures;
                e.warnings += gm.warnings;
                e.last_duration_s = gm.last_duration_s;
                e.last_eval_ms = gm.last_eval_ms;
                e.interval_s = gm.interval_s;
                e.rules = gm.rules;
            }
        }
        *self.last_state.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(report)
    }

    async fn eval_group(
        &self,
        g: &RuleGroup,
        ts: i64,
        mut prev: GroupState,
        samples: &mut Vec<(Labels, i64, f64)>,
        alerts: &mut Vec<AmAlert>,
    ) -> (GroupState, GroupMetrics) {
        let mut gs = GroupState {
            last_eval: ts,
            eval_seconds: 0.0,
            rules: BTreeMap::new(),
        };
        let mut gm = GroupMetrics {
            last_eval_ms: ts,
            rules: g.rules.len(),
            ..Default::default()
        };
        let eval_ts = ts - g.query_offset.map(|d| d.as_millis() as i64).unwrap_or(0);
        let interval = self.interval_ms(g);
        let ctx = TemplateContext {
            external_labels: self
                .cfg
                .external_labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            external_url: self.cfg.external_url.clone(),
        };
        let keys = rule_keys(g);
        for (i, (r, key)) in g.rules.iter().zip(keys).enumerate() {
            let prev_rule = prev
                .rules
                .remove(&key)
                .or_else(|| prev.rules.remove(&legacy_rule_key(i, r)))
                .unwrap_or_default();
            gm.evaluations += 1;
            let started = Instant::now();
            let mut status = RuleStatus {
                health: "ok".into(),
                last_error: String::new(),
                last_eval: ts,
                eval_seconds: 0.0,
                alerts: None,
                series: Vec::new(),
            };
            let result = self
                .querier
                .query(&r.expr, eval_ts, g.partial_response_strategy)
                .await;
            let result = result.and_then(|o| {
                if !o.warnings.is_empty() {
                    gm.warnings += 1;
                    if g.partial_response_strategy == PartialResponseStrategy::Abort {
                        return Err(Error::Query(format!(
                            "partial response with the abort strategy: {}",
                            o.warnings.join("; ")
                        )));
                    }
                    tracing::warn!(group = %g.name, rule = r.name(), warnings = ?o.warnings, "partial response (warn strategy)");
                }
                Ok(o.samples)
            });
            let produced: Result<Vec<(Labels, f64)>> = match (&r.kind, result) {
                (_, Err(e)) => Err(e),
                (RuleKind::Record(name), Ok(v)) => record(name, r, v, g.limit),
                (RuleKind::Alert(name), Ok(v)) => {
                    let spec = AlertRuleSpec {
                        name: name.clone(),
                        for_ms: r.for_.as_millis() as i64,
                        keep_firing_for_ms: r.keep_firing_for.as_millis() as i64,
                        labels: r.labels.clone(),
                        annotations: r.annotations.clone(),
                    };
                    let mut st = prev_rule.alerts.clone().unwrap_or_default();
                    let out = st
                        .eval(&spec, eval_ts, &v, &ctx, g.limit)
                        .map_err(|e| Error::Query(e.to_string()));
                    for a in st.take_sendable(eval_ts, self.cfg.resend_delay_ms, interval) {
                        alerts.push(self.to_am(&r.expr, a));
                    }
                    status.alerts = Some(st);
                    out
                }
            };
            match produced {
                Ok(out) => {
                    let now: std::collections::BTreeSet<&Labels> =
                        out.iter().map(|p| &p.0).collect();
                    // Staleness markers for series gone since the last evaluation.
                    samples.extend(stale_markers(
                        prev_rule.series.iter().filter(|l| !now.contains(l)),
                        eval_ts,
                    ));
                    status.series = out.iter().map(|p| p.0.clone()).collect();
                    samples.extend(out.into_iter().map(|(l, v)| (l, eval_ts, v)));
                }
                Err(e) => {
                    gm.failures += 1;
                    tracing::warn!(group = %g.name, rule = r.name(), error = %e, "rule evaluation failed");
                    status.health = "err".into();
                    status.last_error = e.to_string();
                    if status.alerts.is_none() {
                        status.alerts = prev_rule.alerts.clone();
                    }
                    // Keep the previous series so they go stale once the rule works again.
                    status.series = prev_rule.series.clone();
                }
            }
            status.eval_seconds = started.elapsed().as_secs_f64();
            gs.rules.insert(key, status);
        }
        // Rules gone from the group since its last evaluation: their series go
        // stale (Prometheus's `staleSeries` after a reload).
        for st in prev.rules.values() {
            samples.extend(stale_markers(&st.series, eval_ts));
        }
        (gs, gm)
    }

    fn to_am(&self, expr: &str, a: crate::alert::Alert) -> AmAlert {
        let mut labels = a.labels.clone();
        for l in self.cfg.external_labels.iter() {
            labels
                .entry(l.name.clone())
                .or_insert_with(|| l.value.clone());
        }
        for d in &self.cfg.alert_label_drop {
            labels.remove(d);
        }
        let starts = a.fired_at.unwrap_or(a.active_at);
        let ends = a.resolved_at.unwrap_or(a.valid_until);
        let q: String = form_urlencoded(expr);
        AmAlert {
            labels,
            annotations: a.annotations,
            starts_at: rfc3339_ms(starts),
            ends_at: rfc3339_ms(ends),
            generator_url: format!(
                "{}/graph?g0.expr={q}&g0.tab=1",
                self.cfg.external_url.trim_end_matches('/')
            ),
        }
    }

    /// The state of an alerting rule (for the API).
    pub fn rule_state(status: Option<&RuleStatus>) -> AlertState {
        status
            .and_then(|s| s.alerts.as_ref())
            .map(|a| a.state())
            .unwrap_or_default()
    }
}

/// Where the evaluation loop gets the time from.
pub trait Clock: Send + Sync {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The long-lived ruler's loop: sleeps until some group is due (by `clock`),
/// ticks, and again, until `stop` turns true. Tick failures are logged (and the
/// next tick retries: the state was not saved).
pub async fn run_loop(
    ruler: Arc<Ruler>,
    clock: Arc<dyn Clock>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = clock.now_ms();
        let next = ruler.next_due(now);
        let wait = std::time::Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        match ruler.tick(next.max(clock.now_ms())).await {
            Ok(r) if r.lost_race => {}
            Ok(r) if !r.evaluated.is_empty() => tracing::debug!(
                groups = r.evaluated.len(),
                samples = r.appended,
                alerts = r.alerts_sent,
                "evaluated"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "evaluation tick failed"),
        }
    }
}

/// Go's `url.QueryEscape`.
fn form_urlencoded(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A recording rule's output: `__name__` set, rule labels applied, checked for
/// duplicates and the limit.
fn record(name: &str, r: &Rule, v: Vec<(Labels, f64)>, limit: usize) -> Result<Vec<(Labels, f64)>> {
    let mut out: Vec<(Labels, f64)> = Vec::with_capacity(v.len());
    for (l, val) in v {
        let mut pairs: BTreeMap<String, String> = l
            .iter()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        pairs.insert(model::METRIC_NAME.into(), name.into());
        for (k, lv) in &r.labels {
            if lv.is_empty() {
                pairs.remove(k);
            } else {
                pairs.insert(k.clone(), lv.clone());
            }
        }
        out.push((Labels::from_pairs(pairs), val));
    }
    let mut sorted: Vec<&Labels> = out.iter().map(|p| &p.0).collect();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::Query(
            "vector contains metrics with the same labelset after applying rule labels".into(),
        ));
    }
    if limit > 0 && out.len() > limit {
        return Err(Error::Query(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        )));
    }
    Ok(out)
}

/// Thanos's `--label name="value"` values (the value a double-quoted string)
/// as labels; names must be valid and not repeat.
pub fn parse_labels(flags: &[String]) -> Result<Labels> {
    let mut pairs = Vec::new();
    for f in flags {
        let (name, value) = f
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--label {f:?}: want name=\"value\"")))?;
        if !crate::rulefile::is_valid_label_name(name) {
            return Err(Error::Config(format!(
                "--label {f:?}: invalid label name {name:?}"
            )));
        }
        if !value.starts_with('"') {
            return Err(Error::Config(format!(
                "--label {f:?}: the value must be a quoted string (name=\"value\")"
            )));
        }
        let v: String = serde_json::from_str(value).map_err(|e| {
            Error::Config(format!(
                "--label {f:?}: the value must be a quoted string: {e}"
            ))
        })?;
        if pairs.iter().any(|(n, _): &(String, String)| n == name) {
            return Err(Error::Config(format!(
                "--label {f:?}: label {name:?} given twice"
            )));
        }
        pairs.push((name.to_string(), v));
    }
    Ok(Labels::from_pairs(pairs))
}
