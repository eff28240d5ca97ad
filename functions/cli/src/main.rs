//! `aether`: one binary for every Aether component. Flags follow Thanos's names where
//! the concept is the same, so Thanos command lines run with `aether` in place of
//! `thanos`. This file only parses flags, sets up logging and calls the component
//! libraries.

mod compact_cmd;
mod components;
mod query_cmd;
mod rule_cmd;
mod store_cmd;

use clap::{Parser, Subcommand};

/// mimalloc: large query buffers are reused instead of being returned to the
/// kernel and faulted in again (a third off some PromQL range queries at 100k
/// series; docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "aether",
    version,
    about = "Long-term storage and global query for Prometheus"
)]
struct Cli {
    /// Log filtering level: debug, info, warn, error.
    #[arg(long = "log.level", global = true, default_value = "info")]
    log_level: String,
    /// Log format: logfmt (human-readable text) or json.
    #[arg(long = "log.format", global = true, default_value = "logfmt")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ships Prometheus blocks to the bucket and serves fresh data over the StoreAPI.
    Sidecar(components::SidecarArgs),
    /// Serves the bucket's blocks over the StoreAPI (store-read).
    Store(components::StoreArgs),
    /// PromQL and the Prometheus HTTP API over every store and sidecar.
    Query(components::QueryArgs),
    /// Compacts, downsamples and applies retention to the bucket.
    Compact(components::CompactArgs),
    /// Evaluates recording and alerting rules.
    Rule(Box<components::RuleArgs>),
    /// Operator tools for TSDB blocks and buckets.
    Tools(tools::cli::ToolsArgs),
}

fn init_logging(level: &str, format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .map_err(|e| anyhow::anyhow!("invalid --log.level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "logfmt" | "text" => builder.init(),
        other => anyhow::bail!("invalid --log.format {other:?}: want logfmt or json"),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // `aether tools rules-check FILE...` lives here, not in the tools crate (which
    // must not depend on the ruler).
    if let Some(code) = rule_cmd::intercept_rules_check() {
        return code;
    }
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level, &cli.log_format) {
        eprintln!("aether: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aether: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Tools(args) => tools::cli::run(args).await.map_err(anyhow::Error::from),
            Command::Sidecar(a) => components::run_sidecar(a).await,
            Command::Store(a) => store_cmd::run(a).await,
            Command::Query(a) => query_cmd::run(a).await,
            Command::Compact(a) => compact_cmd::run(a).await,
            Command::Rule(a) => rule_cmd::run(*a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A broken pipe (e.g. `aether tools tsdb dump | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("aether: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
