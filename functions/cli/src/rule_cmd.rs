//! `aether rule`: flags -> the ruler (rule files, querier or embedded engine,
//! Alertmanagers, head, bucket state), served over HTTP (rules/alerts API,
//! metrics, health, reload) and gRPC (the StoreAPI of its results), ticking at
//! the groups' intervals until SIGTERM; SIGHUP and `POST /-/reload` reload the
//! rule files. Also `aether tools rules-check`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use model::Labels;
use rule::api::{ApiState, Reloader};
use rule::notifier::{AlertmanagerNotifier, QueuedNotifier};
use rule::querier::{EngineQuerier, HttpQuerier, RuleQuerier};
use rule::ruler::{BucketStateStore, RulerConfig};
use rule::{Head, Ruler};

use crate::components::RuleArgs;

fn duration(flag: &str, v: &str) -> anyhow::Result<Duration> {
    bucket::config::parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag} {v:?}: {e}"))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `--label name="value"` flags as labels (see [`rule::ruler::parse_labels`]).
pub fn parse_labels(flags: &[String]) -> anyhow::Result<Labels> {
    Ok(rule::ruler::parse_labels(flags)?)
}

/// Handles `aether [global flags] tools rules-check FILE...` before clap sees it;
/// `None` when the command line is something else.
pub fn intercept_rules_check() -> Option<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "tools")?;
    if args.get(i + 1).map(String::as_str) != Some("rules-check") {
        return None;
    }
    let files: Vec<PathBuf> = args[i + 2..]
        .iter()
        .filter(|a| !a.starts_with("--rules="))
        .map(PathBuf::from)
        .collect();
    if files.is_empty()
        || files
            .iter()
            .any(|f| f.as_os_str() == "--help" || f.as_os_str() == "-h")
    {
        println!("Checks rule files like `promtool check rules` (Thanos's partial_response_strategy allowed).\n\nUsage: aether tools rules-check FILE...");
        return Some(std::process::ExitCode::from(if files.is_empty() {
            2
        } else {
            0
        }));
    }
    let (out, err, ok) = rule::rulefile::check_files(&files);
    print!("{out}");
    eprint!("{err}");
    Some(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

use serve::shutdown_signal;

/// Runs `aether rule` until SIGTERM / Ctrl-C.
pub async fn run(a: RuleArgs) -> anyhow::Result<()> {
    let labels = parse_labels(&a.label)?;
    if labels.is_empty() {
        tracing::warn!("no --label: blocks from this ruler cannot be told apart from other rulers' in the bucket");
    }
    let eval_interval = duration("eval-interval", &a.eval_interval)?;
    let resend_delay = duration("resend-delay", &a.resend_delay)?;
    duration("for-grace-period", &a.for_grace_period)?;
    let query_timeout = duration("query.timeout", &a.query_timeout)?;
    let am_timeout = duration("alertmanagers.send-timeout", &a.alertmanagers_send_timeout)?;
    let block_duration = duration("tsdb.block-duration", &a.tsdb_block_duration)?;
    let retention = duration("tsdb.retention", &a.tsdb_retention)?;
    if eval_interval.is_zero() || block_duration.is_zero() {
        anyhow::bail!("--eval-interval and --tsdb.block-duration must be positive");
    }

    // Rules: a bad file at start is fatal (as Thanos); later reloads keep the last good.
    let paths = rule::rulefile::expand_globs(&a.rule_file)?;
    if paths.is_empty() {
        tracing::warn!(patterns = ?a.rule_file, "no rule files found");
    }
    let groups = rule::rulefile::load_files(&paths)?;

    let querier: Arc<dyn RuleQuerier> = match (a.query.is_empty(), a.endpoint.is_empty()) {
        (false, true) => Arc::new(HttpQuerier::new(a.query.clone(), query_timeout)?),
        (true, false) => {
            // The embedded engine over StoreAPI endpoints, with the querier's fan-out.
            let set = query::EndpointSet::new(
                &a.endpoint,
                &[],
                query::endpoints::grpc_connector(storeapi::grpc::ClientOptions::default()),
                query::Intervals::default(),
            )
            .map_err(|e| anyhow::anyhow!("--endpoint: {e}"))?;
            let engine = promql::Engine::new(promql::EngineOpts {
                timeout: query_timeout,
                ..Default::default()
            });
            let opts = query::QueryOptions {
                replica_labels: a.query_replica_label.clone(),
                dedup: !a.query_replica_label.is_empty(),
                ..Default::default()
            };
            Arc::new(EngineQuerier::new(engine, Arc::new(set), opts))
        }
        (false, false) => anyhow::bail!("give --query or --endpoint, not both"),
        (true, true) => {
            anyhow::bail!("no --query and no --endpoint: nothing to evaluate rules against")
        }
    };
    if a.alertmanagers_url.is_empty() {
        tracing::warn!("no --alertmanagers.url: alerts are evaluated but sent nowhere");
    }
    let am_sd_interval = duration(
        "alertmanagers.sd-dns-interval",
        &a.alertmanagers_sd_dns_interval,
    )?;
    let notifier = Arc::new(
        AlertmanagerNotifier::new(a.alertmanagers_url.clone(), am_timeout)?
            .with_discovery_interval(am_sd_interval),
    );

    let bucket = match (
        &a.objstore.objstore_config_file,
        &a.objstore.objstore_config,
    ) {
        (Some(_), Some(_)) => {
            anyhow::bail!("give either --objstore.config-file or --objstore.config, not both")
        }
        (Some(f), None) => Some(bucket::ObjstoreConfig::from_file(f)?.build()?),
        (None, Some(y)) => Some(bucket::ObjstoreConfig::parse(y)?.build()?),
        (None, None) => None,
    };
    // Knative: no disk that outlives the revision and no loop of our own.
    // A PingSource POSTs /-/tick; samples go to the bucket (as on Lambda).
    let mode = serve::Mode::detect()?;
    if let serve::Mode::Knative { .. } = mode {
        let Some(bucket) = bucket else {
            anyhow::bail!("in Knative mode the ruler keeps its samples and state in the bucket: give --objstore.config-file");
        };
        let cfg = RulerConfig {
            eval_interval_ms: millis(eval_interval),
            resend_delay_ms: millis(resend_delay),
            external_labels: labels.clone(),
            external_url: a.alert_query_url.clone(),
            alert_label_drop: a.alert_label_drop.clone(),
            spread_groups: false,
        };
        return run_knative(
            mode,
            &a,
            cfg,
            groups,
            querier,
            notifier,
            bucket,
            millis(block_duration),
        )
        .await;
    }
    // The bucket is checked before anything is created on disk.
    let data_dir = PathBuf::from(&a.data_dir);
    let head = Arc::new(Head::open(
        &data_dir,
        labels.clone(),
        millis(block_duration),
        millis(retention),
    )?);

    let state_store = match &bucket {
        Some(b) => BucketStateStore::new(Arc::clone(b), &labels),
        None => {
            tracing::warn!("no --objstore.config-file: blocks are not uploaded; rule state is kept in --data-dir");
            let local = data_dir.join("state");
            std::fs::create_dir_all(&local)?;
            BucketStateStore::new(bucket::ObjstoreConfig::filesystem(&local).build()?, &labels)
        }
    };
    let cfg = RulerConfig {
        eval_interval_ms: millis(eval_interval),
        resend_delay_ms: millis(resend_delay),
        external_labels: labels.clone(),
        external_url: a.alert_query_url.clone(),
        alert_label_drop: a.alert_label_drop.clone(),
        // A loop of our own: groups spread over their interval, as Prometheus.
        spread_groups: true,
    };
    let ruler = Arc::new(Ruler::new(
        cfg,
        groups,
        querier,
        // Sent in the background: a down Alertmanager never delays evaluations.
        Arc::new(QueuedNotifier::start(
            Arc::clone(&notifier) as Arc<dyn rule::notifier::Notifier>,
            256,
        )),
        Arc::clone(&head) as Arc<dyn rule::ruler::SampleSink>,
        Arc::new(state_store),
    ));
    if let Err(e) = ruler.refresh_state().await {
        tracing::warn!(error = %e, "reading the rule state from the bucket failed; it is read again at the first evaluation");
    }
    let reloader = Arc::new(Reloader::new(a.rule_file.clone(), Arc::clone(&ruler)));

    let http = tokio::net::TcpListener::bind(&a.server.http_address)
        .await
        .map_err(|e| anyhow::anyhow!("--http-address {}: {e}", a.server.http_address))?;
    let grpc = tokio::net::TcpListener::bind(&a.server.grpc_address)
        .await
        .map_err(|e| anyhow::anyhow!("--grpc-address {}: {e}", a.server.grpc_address))?;
    tracing::info!(http = %http.local_addr()?, grpc = %grpc.local_addr()?, labels = %labels, "ruler serving");

    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let api = rule::api::router(ApiState {
        ruler: Arc::clone(&ruler),
        reloader: Some(Arc::clone(&reloader)),
        head: Some(Arc::clone(&head)),
        alertmanagers: Some(Arc::clone(&notifier)),
    });
    let http_task = tokio::spawn({
        let stop = stopped();
        async move { axum::serve(http, api).with_graceful_shutdown(stop).await }
    });
    let grpc_task = tokio::spawn(storeapi::grpc::serve(
        Arc::clone(&head) as Arc<dyn storeapi::StoreApi>,
        grpc,
        stopped(),
    ));

    // Evaluation loop: tick whenever some group is due.
    let (loop_tx, loop_rx) = tokio::sync::watch::channel(false);
    let eval_task = tokio::spawn(rule::ruler::run_loop(
        Arc::clone(&ruler),
        Arc::new(rule::ruler::SystemClock),
        loop_rx,
    ));
    // Blocks: cut complete ranges and ship them.
    let ship_task = tokio::spawn({
        let head = Arc::clone(&head);
        let dir = data_dir.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let h = Arc::clone(&head);
                match tokio::task::spawn_blocking(move || h.cut_blocks()).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "cutting blocks failed"),
                    Err(e) => tracing::error!(error = %e, "cutting blocks panicked"),
                    Ok(Ok(_)) => {}
                }
                if let Some(b) = &bucket {
                    match rule::head::ship_blocks(&dir, b).await {
                        Ok(ids) if !ids.is_empty() => {
                            tracing::info!(blocks = ?ids, "uploaded blocks")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "shipping blocks failed"),
                    }
                }
            }
        }
    });
    // SIGHUP reloads the rule files.
    #[cfg(unix)]
    let hup_task = tokio::spawn({
        let reloader = Arc::clone(&reloader);
        async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                let r = Arc::clone(&reloader);
                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            }
        }
    });

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = loop_tx.send(true);
    let _ = eval_task.await;
    ship_task.abort();
    #[cfg(unix)]
    hup_task.abort();
    let _ = tx.send(true);
    http_task.await??;
    grpc_task.await??;
    Ok(())
}

/// `aether rule` as a Knative service: the HTTP API on `$PORT`, and one
/// evaluation tick per `POST /-/tick` (a PingSource), with the state and the
/// recorded samples in the bucket (`rule::bucket_sink`), as the Lambda
/// function does.
#[allow(clippy::too_many_arguments)]
async fn run_knative(
    mode: serve::Mode,
    a: &RuleArgs,
    cfg: RulerConfig,
    groups: Vec<rule::rulefile::RuleGroup>,
    querier: Arc<dyn RuleQuerier>,
    notifier: Arc<AlertmanagerNotifier>,
    bucket: Arc<dyn bucket::object_store::ObjectStore>,
    block_duration_ms: i64,
) -> anyhow::Result<()> {
    let labels = cfg.external_labels.clone();
    let grace = (2 * cfg.eval_interval_ms).max(300_000);
    let sink = Arc::new(rule::bucket_sink::BucketSink::new(
        Arc::clone(&bucket),
        labels.clone(),
        block_duration_ms,
    ));
    let ruler = Arc::new(Ruler::new(
        cfg,
        groups,
        querier,
        Arc::clone(&notifier) as Arc<dyn rule::notifier::Notifier>,
        Arc::clone(&sink) as Arc<dyn rule::ruler::SampleSink>,
        Arc::new(BucketStateStore::new(Arc::clone(&bucket), &labels)),
    ));
    let reloader = Arc::new(Reloader::new(a.rule_file.clone(), Arc::clone(&ruler)));
    let tmp = PathBuf::from(&a.data_dir).join("blocks");
    let tick = {
        let (ruler, sink) = (Arc::clone(&ruler), Arc::clone(&sink));
        move || {
            let (ruler, sink, tmp) = (Arc::clone(&ruler), Arc::clone(&sink), tmp.clone());
            async move {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or_default();
                let report = match ruler.tick(now).await {
                    Ok(r) => r,
                    Err(e) => {
                        return (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("tick failed: {e}\n"),
                        )
                    }
                };
                let blocks = match sink.cut(now, grace, &tmp).await {
                    Ok(b) => b,
                    Err(e) => {
                        return (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cutting blocks failed: {e}\n"),
                        )
                    }
                };
                (
                    axum::http::StatusCode::OK,
                    format!(
                        "{}\n",
                        serde_json::to_string(&report.summary(now, &blocks)).unwrap_or_default()
                    ),
                )
            }
        }
    };
    let api = rule::api::router(ApiState {
        ruler: Arc::clone(&ruler),
        reloader: Some(reloader),
        head: None,
        alertmanagers: Some(notifier),
    })
    .route("/-/tick", axum::routing::post(tick));
    let listeners = serve::bind(mode, &a.server.http_address, None).await?;
    tracing::info!(?mode, http = %listeners.http.local_addr()?, labels = %labels, "ruler serving; ticks on POST /-/tick");
    serve::serve(listeners, api, None, shutdown_signal()).await?;
    Ok(())
}
