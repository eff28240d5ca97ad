//! Flags of `aether tools …`, named as promtool and `thanos tools` name them.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct ToolsArgs {
    #[command(subcommand)]
    pub command: ToolsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ToolsCommand {
    /// TSDB block tools (as `promtool tsdb`).
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
    },
    /// Bucket tools (as `thanos tools bucket`).
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Writes deterministic, realistic demo history (a fleet of API servers) as
    /// blocks or as OpenMetrics text.
    #[command(name = "demo-data")]
    DemoData(DemoArgs),
}

/// The compactor's retention flags, per resolution (Thanos's names).
#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// Retention of raw blocks (0d: forever).
    #[arg(long = "retention.resolution-raw", default_value = "0d")]
    pub raw: String,
    /// Retention of 5m-downsampled blocks (0d: forever).
    #[arg(long = "retention.resolution-5m", default_value = "0d")]
    pub res_5m: String,
    /// Retention of 1h-downsampled blocks (0d: forever).
    #[arg(long = "retention.resolution-1h", default_value = "0d")]
    pub res_1h: String,
}

#[derive(Args, Debug)]
pub struct BucketConfigArgs {
    /// Path to a Thanos objstore YAML file.
    #[arg(long = "objstore.config-file")]
    pub file: Option<String>,
    /// Thanos objstore YAML inline.
    #[arg(long = "objstore.config")]
    pub inline: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum BucketCommand {
    /// Lists the blocks in the bucket.
    Ls {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        /// Output: text or json.
        #[arg(short = 'o', long = "output", default_value = "text")]
        output: String,
    },
    /// Prints a table of the bucket's blocks (ULID, times, stats, level,
    /// resolution, source, labels), sorted by labels then minTime.
    Inspect {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        /// Output: table, tsv or json.
        #[arg(short = 'o', long = "output", default_value = "table")]
        output: String,
    },
    /// Adds or removes a deletion, no-compact or no-downsample mark on blocks.
    Mark {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        /// ULID of a block to mark; repeatable.
        #[arg(long = "id", required = true)]
        ids: Vec<String>,
        /// deletion-mark.json, no-compact-mark.json or no-downsample-mark.json.
        #[arg(long = "marker")]
        marker: String,
        /// Why the block is marked (required when adding).
        #[arg(long = "details", default_value = "")]
        details: String,
        /// Remove the marker instead of adding it.
        #[arg(long = "remove")]
        remove: bool,
    },
    /// Reports overlapping blocks, partial uploads, unreadable metas and (with
    /// --issues index) index problems. Exits non-zero when it finds any.
    Verify {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        /// Checks to run: overlaps, partial, meta, index (repeatable; default all
        /// but index). Thanos's overlapped_blocks and index_known_issues work too.
        #[arg(short = 'i', long = "issues", value_delimiter = ',')]
        issues: Vec<String>,
    },
    /// Serves a page with a timeline of the blocks per stream and resolution.
    Web {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        /// Listen address.
        #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
        http_address: String,
    },
    /// Marks for deletion the blocks older than the retention of their resolution.
    Retention {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Prints (and with --apply sets) an S3 lifecycle configuration that fits the
    /// compactor: incomplete multipart uploads aborted after
    /// --abort-incomplete-uploads; NO expiration by object age (blocks are deleted by
    /// `aether compact` retention through deletion marks: an object's age is its
    /// upload time, not its data's age); with --transition-after, objects older
    /// than that move to --transition-storage-class, which must stay readable with
    /// a plain GET (STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR).
    /// GLACIER and DEEP_ARCHIVE are refused: archived objects must be restored
    /// before a GET, so queries and compaction would fail on them. The retentions
    /// are checked against --transition-after.
    Lifecycle {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        #[command(flatten)]
        retention: RetentionArgs,
        /// Abort multipart uploads still incomplete after this long (whole days,
        /// rounded up; 0d: no such rule).
        #[arg(long = "abort-incomplete-uploads", default_value = "7d")]
        abort_incomplete: String,
        /// Move objects (over 128 KiB) older than this to a colder class.
        #[arg(long = "transition-after")]
        transition_after: Option<String>,
        /// The class for --transition-after (must stay readable with a plain GET).
        #[arg(long = "transition-storage-class", default_value = "STANDARD_IA")]
        storage_class: String,
        /// Set the configuration on the bucket (aws-sdk-s3), keeping rules whose ID
        /// does not start with `aether-`, and print what the bucket then has.
        #[arg(long = "apply")]
        apply: bool,
        /// Output format: json (for `aws s3api put-bucket-lifecycle-configuration`)
        /// or xml (the REST body).
        #[arg(short = 'o', long = "output", default_value = "json")]
        output: String,
    },
    /// Uploads local blocks (each subdirectory of --path) the bucket doesn't have.
    #[command(name = "upload-blocks")]
    UploadBlocks {
        #[command(flatten)]
        objstore: BucketConfigArgs,
        /// Directory holding block directories.
        #[arg(long = "path", default_value = "./data")]
        path: PathBuf,
        /// External label name=value for blocks without a thanos section; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory to write 2h blocks into.
    #[arg(
        long = "out",
        value_name = "DIR",
        required_unless_present = "openmetrics"
    )]
    pub out: Option<PathBuf>,
    /// Write OpenMetrics text to this file instead of blocks.
    #[arg(long = "openmetrics", value_name = "FILE")]
    pub openmetrics: Option<PathBuf>,
    /// How much history, ending now (e.g. 7d, 12h).
    #[arg(long = "history", default_value = "7d")]
    pub history: String,
    /// Leave this much before now out (the part a live Prometheus holds), e.g. 2h.
    #[arg(long = "until-ago", default_value = "0s")]
    pub until_ago: String,
    /// Scrape interval of the generated samples.
    #[arg(long = "interval", default_value = "30s")]
    pub interval: String,
    /// Number of API instances (about 40 series each).
    #[arg(long = "instances", default_value_t = 4)]
    pub instances: usize,
    /// Block duration for --out.
    #[arg(long = "block-duration", default_value = "2h")]
    pub block_duration: String,
}

#[derive(Subcommand, Debug)]
pub enum TsdbCommand {
    /// Prints every sample, as `promtool tsdb dump` does.
    Dump(DumpArgs),
    /// Prints series and label cardinality and bytes per sample of a block.
    Analyze(AnalyzeArgs),
    /// Creates blocks from another format (as `promtool tsdb create-blocks-from`).
    #[command(name = "create-blocks-from")]
    CreateBlocksFrom {
        #[command(subcommand)]
        source: CreateFrom,
    },
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// A block directory, or a data directory holding blocks.
    #[arg(long = "block", value_name = "DIR")]
    pub block: Option<PathBuf>,
    /// Same as --block (positional, as promtool takes it).
    #[arg(value_name = "DIR", conflicts_with = "block")]
    pub dir: Option<PathBuf>,
    /// Earliest timestamp to print, in ms.
    #[arg(long = "min-time", default_value_t = i64::MIN, allow_negative_numbers = true)]
    pub min_time: i64,
    /// Latest timestamp to print, in ms.
    #[arg(long = "max-time", default_value_t = i64::MAX, allow_negative_numbers = true)]
    pub max_time: i64,
    /// Series selector, e.g. '{__name__="up", job=~"a|b"}'; may be repeated (union).
    #[arg(long = "match")]
    pub matches: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// A block directory, or a data directory (its newest block is analyzed).
    #[arg(long = "block", value_name = "DIR")]
    pub block: Option<PathBuf>,
    /// Same as --block (positional).
    #[arg(value_name = "DIR", conflicts_with = "block")]
    pub dir: Option<PathBuf>,
    /// How many items to show in each list.
    #[arg(long = "limit", default_value_t = 20)]
    pub limit: usize,
}

#[derive(Subcommand, Debug)]
pub enum CreateFrom {
    /// From an OpenMetrics text file (timestamps in seconds, ending in `# EOF`).
    Openmetrics(BackfillArgs),
}

#[derive(Args, Debug)]
pub struct BackfillArgs {
    /// The OpenMetrics input file.
    pub input: PathBuf,
    /// Where to write the blocks (default: ./data).
    #[arg(default_value = "data")]
    pub output: PathBuf,
    /// Time span of each block (2h like promtool; longer spans make fewer blocks).
    #[arg(
        long = "block-duration",
        alias = "max-block-duration",
        default_value = "2h"
    )]
    pub block_duration: String,
}

fn pick_dir(flag: Option<PathBuf>, pos: Option<PathBuf>) -> crate::Result<PathBuf> {
    flag.or(pos)
        .ok_or_else(|| crate::Error::Usage("give a block or data directory (--block DIR)".into()))
}

/// Runs one `aether tools` command.
pub async fn run(args: ToolsArgs) -> crate::Result<()> {
    match args.command {
        ToolsCommand::Tsdb { command } => match command {
            TsdbCommand::Dump(a) => {
                let dir = pick_dir(a.block, a.dir)?;
                let out = std::io::stdout().lock();
                crate::dump::dump(&dir, a.min_time, a.max_time, &a.matches, out).await
            }
            TsdbCommand::Analyze(a) => {
                let dir = pick_dir(a.block, a.dir)?;
                let out = std::io::stdout().lock();
                crate::analyze::analyze(&dir, a.limit, out).await
            }
            TsdbCommand::CreateBlocksFrom {
                source: CreateFrom::Openmetrics(a),
            } => {
                let dur = crate::backfill::parse_duration(&a.block_duration)?;
                let blocks = crate::backfill::from_openmetrics_file(&a.input, &a.output, dur)?;
                for m in &blocks {
                    println!(
                        "BLOCK ULID {} MIN TIME {} MAX TIME {} SERIES {} SAMPLES {}",
                        m.ulid, m.min_time, m.max_time, m.stats.num_series, m.stats.num_samples
                    );
                }
                Ok(())
            }
        },
        ToolsCommand::DemoData(a) => demo_data(a),
        ToolsCommand::Bucket { command } => bucket_command(command).await,
    }
}

async fn bucket_command(c: BucketCommand) -> crate::Result<()> {
    use crate::bucket_tools as bt;
    match c {
        BucketCommand::Ls { objstore, output } => {
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let json = match output.as_str() {
                "json" => true,
                "text" | "wide" => false,
                o => {
                    return Err(crate::Error::Usage(format!(
                        "invalid -o {o:?}: want text or json"
                    )))
                }
            };
            bt::ls(&cfg, json, std::io::stdout().lock()).await
        }
        BucketCommand::Inspect { objstore, output } => {
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let format = crate::bucket_inspect::InspectFormat::parse(&output)?;
            crate::bucket_inspect::inspect(&cfg, format, std::io::stdout().lock()).await
        }
        BucketCommand::Mark {
            objstore,
            ids,
            marker,
            details,
            remove,
        } => {
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let ids = ids
                .iter()
                .map(|s| {
                    ulid::Ulid::from_string(s)
                        .map_err(|e| crate::Error::Usage(format!("invalid --id {s:?}: {e}")))
                })
                .collect::<crate::Result<Vec<_>>>()?;
            bt::mark(
                &cfg,
                &ids,
                &marker,
                &details,
                remove,
                std::io::stdout().lock(),
            )
            .await?;
            Ok(())
        }
        BucketCommand::Verify { objstore, issues } => {
            use crate::bucket_verify::{self as bv, Issue};
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let issues = if issues.is_empty() {
                Issue::DEFAULT.to_vec()
            } else {
                issues
                    .iter()
                    .map(|s| Issue::parse(s))
                    .collect::<crate::Result<_>>()?
            };
            let report = bv::verify(&cfg, &issues).await?;
            report.write(std::io::stdout().lock())?;
            match report.issue_count() {
                0 => Ok(()),
                n => Err(crate::Error::Failed(format!("verify found {n} issues"))),
            }
        }
        BucketCommand::Web {
            objstore,
            http_address,
        } => {
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let listener = tokio::net::TcpListener::bind(&http_address)
                .await
                .map_err(|e| crate::Error::io(format!("listen on {http_address}"), e))?;
            eprintln!(
                "serving the bucket's blocks on http://{}/",
                listener
                    .local_addr()
                    .map_err(|e| crate::Error::io("local address", e))?
            );
            crate::bucket_web::serve(&cfg, listener).await
        }
        BucketCommand::Retention {
            objstore,
            retention:
                RetentionArgs {
                    raw,
                    res_5m,
                    res_1h,
                },
        } => {
            use crate::backfill::parse_duration;
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let retention = bt::Retention {
                raw: parse_duration(&raw)?,
                res_5m: parse_duration(&res_5m)?,
                res_1h: parse_duration(&res_1h)?,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| crate::Error::Usage(format!("system clock before 1970: {e}")))?
                .as_millis() as i64;
            let marked =
                bt::apply_retention(&cfg, retention, now, std::io::stdout().lock()).await?;
            println!("{} blocks marked for deletion", marked.len());
            Ok(())
        }
        BucketCommand::Lifecycle {
            objstore,
            retention:
                RetentionArgs {
                    raw,
                    res_5m,
                    res_1h,
                },
            abort_incomplete,
            transition_after,
            storage_class,
            apply,
            output,
        } => {
            use crate::bucket_lifecycle as lc;
            let dur = |flag: &str, v: &str| {
                bucket::config::parse_duration(v)
                    .map_err(|e| crate::Error::Usage(format!("--{flag}: {e}")))
            };
            let spec = lc::LifecycleSpec {
                retention_raw: dur("retention.resolution-raw", &raw)?,
                retention_5m: dur("retention.resolution-5m", &res_5m)?,
                retention_1h: dur("retention.resolution-1h", &res_1h)?,
                abort_incomplete: dur("abort-incomplete-uploads", &abort_incomplete)?,
                transition_after: transition_after
                    .as_deref()
                    .map(|v| dur("transition-after", v))
                    .transpose()?,
                storage_class,
            };
            let xml = match output.as_str() {
                "json" => false,
                "xml" => true,
                o => return Err(crate::Error::Usage(format!("-o {o}: want json or xml"))),
            };
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let plan = lc::plan(&spec, &cfg.prefix)?;
            for n in &plan.notes {
                eprintln!("note: {n}");
            }
            if xml {
                print!("{}", lc::to_xml(&plan.rules));
            } else {
                println!("{}", lc::to_json(&plan.rules));
            }
            if apply {
                let now = lc::apply(&cfg, &plan.rules).await?;
                eprintln!(
                    "applied: the bucket now has {} lifecycle rule(s): {}",
                    now.len(),
                    now.iter()
                        .map(|r| r.id().unwrap_or("(no id)").to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
        BucketCommand::UploadBlocks {
            objstore,
            path,
            labels,
        } => {
            let cfg = bt::load_config(objstore.file.as_deref(), objstore.inline.as_deref())?;
            let labels = labels
                .iter()
                .map(|l| bt::parse_label(l))
                .collect::<crate::Result<_>>()?;
            let (up, skipped) =
                bt::upload_blocks(&cfg, &path, &labels, std::io::stdout().lock()).await?;
            println!("{up} blocks uploaded, {skipped} already in the bucket");
            Ok(())
        }
    }
}

fn demo_data(a: DemoArgs) -> crate::Result<()> {
    use crate::backfill::parse_duration;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| crate::Error::Usage(format!("system clock before 1970: {e}")))?
        .as_millis() as i64;
    let end = now - parse_duration(&a.until_ago)?;
    let spec = crate::demo::DemoSpec {
        start: end - parse_duration(&a.history)?,
        end,
        interval: parse_duration(&a.interval)?,
        instances: a.instances,
    };
    if let Some(path) = a.openmetrics {
        let f = std::fs::File::create(&path)
            .map_err(|e| crate::Error::io(format!("create {}", path.display()), e))?;
        return crate::demo::write_openmetrics(&spec, std::io::BufWriter::new(f));
    }
    let out = a.out.unwrap_or_else(|| PathBuf::from("data"));
    let metas = crate::demo::write_blocks(&spec, parse_duration(&a.block_duration)?, &out)?;
    let samples: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    println!(
        "wrote {} blocks, {} samples, {} series, into {}",
        metas.len(),
        samples,
        crate::demo::series(&spec).len(),
        out.display()
    );
    Ok(())
}
