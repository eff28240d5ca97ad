//! `aether tools bucket web`: one self-contained HTML page (no scripts or styles
//! from elsewhere) with an SVG timeline of the bucket's blocks: a row per stream
//! (external labels) and resolution, a rectangle per block from minTime to
//! maxTime, coloured by compaction level — the picture operators use to watch
//! compaction and downsampling at work. The bucket is listed on every request.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bucket::object_store::ObjectStore;
use bucket::ObjstoreConfig;
use futures::StreamExt;
use tsdb::meta::BlockMeta;
use ulid::Ulid;

use crate::bucket_inspect::{
    go_duration, labels_string, resolution_string, rfc3339, stream_labels,
};
use crate::{Error, Result};

/// Markers a block carries, as the page shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockMarks {
    pub deletion: bool,
    pub no_compact: bool,
}

/// Fill colours by compaction level (1, 2, 3, 4, 5+).
const LEVEL_COLOURS: [&str; 5] = ["#9ecae1", "#4292c6", "#2171b5", "#08519c", "#08306b"];

fn level_colour(level: u32) -> &'static str {
    LEVEL_COLOURS[(level.max(1) as usize - 1).min(LEVEL_COLOURS.len() - 1)]
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const LEFT: f64 = 340.0;
const PLOT_W: f64 = 1100.0;
const LANE_H: f64 = 14.0;
const ROW_PAD: f64 = 8.0;
const TOP: f64 = 30.0;

/// Assigns each block (sorted by minTime) the first lane whose last block ended
/// by its start, so overlapping blocks are drawn one above the other.
fn lanes(ms: &[&BlockMeta]) -> (Vec<usize>, usize) {
    let mut ends: Vec<i64> = Vec::new();
    let mut out = Vec::with_capacity(ms.len());
    for m in ms {
        let lane = match ends.iter().position(|&e| e <= m.min_time) {
            Some(l) => l,
            None => {
                ends.push(i64::MIN);
                ends.len() - 1
            }
        };
        ends[lane] = m.max_time;
        out.push(lane);
    }
    let n = ends.len().max(1);
    (out, n)
}

/// Renders the page for `metas` (`marks` by block; missing means none).
/// `partial` are blocks without meta.json, listed under the picture.
pub fn render_page(
    metas: &[BlockMeta],
    marks: &HashMap<Ulid, BlockMarks>,
    partial: &[Ulid],
) -> String {
    let mut rows: BTreeMap<(BTreeMap<String, String>, i64), Vec<&BlockMeta>> = BTreeMap::new();
    for m in metas {
        rows.entry((stream_labels(m), m.resolution()))
            .or_default()
            .push(m);
    }
    let (t0, t1) = metas.iter().fold((i64::MAX, i64::MIN), |(a, b), m| {
        (a.min(m.min_time), b.max(m.max_time))
    });
    let span = (t1 - t0).max(1) as f64;
    let x = |t: i64| LEFT + (t - t0) as f64 / span * PLOT_W;

    let mut body = String::new();
    let mut y = TOP;
    for ((labels, res), ms) in rows.iter_mut() {
        ms.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
        let (lane_of, n_lanes) = lanes(ms);
        let h = n_lanes as f64 * LANE_H + ROW_PAD;
        let _ = writeln!(
            body,
            r#"<g class="row"><rect class="lane" x="0" y="{y:.1}" width="{:.1}" height="{h:.1}"/><text x="6" y="{:.1}"><tspan class="res">{}</tspan> {}</text>"#,
            LEFT + PLOT_W + 10.0,
            y + h / 2.0 + 4.0,
            esc(&format!("res={}", resolution_string(*res))),
            esc(&format!("{{{}}}", labels_string(labels))),
        );
        for (m, lane) in ms.iter().zip(lane_of) {
            let bx = x(m.min_time);
            let bw = (x(m.max_time) - bx).max(1.0);
            let by = y + ROW_PAD / 2.0 + lane as f64 * LANE_H;
            let mk = marks.get(&m.ulid).copied().unwrap_or_default();
            let mut classes = String::from("block");
            let mut notes = String::new();
            if mk.deletion {
                classes.push_str(" deleted");
                notes.push_str("\nmarked for deletion");
            }
            if mk.no_compact {
                classes.push_str(" nocompact");
                notes.push_str("\nmarked no-compact");
            }
            let title = format!(
                "{}\n{} – {} ({})\nlevel {}, resolution {}\n{} series, {} samples, {} chunks\nsource {}{}",
                m.ulid,
                rfc3339(m.min_time),
                rfc3339(m.max_time),
                go_duration(m.max_time - m.min_time),
                m.compaction.level,
                resolution_string(m.resolution()),
                m.stats.num_series,
                m.stats.num_samples,
                m.stats.num_chunks,
                m.thanos.as_ref().map(|t| t.source.as_str()).unwrap_or(""),
                notes
            );
            let _ = writeln!(
                body,
                r#"<rect class="{classes}" data-ulid="{}" x="{bx:.2}" y="{by:.1}" width="{bw:.2}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                m.ulid,
                LANE_H - 2.0,
                level_colour(m.compaction.level),
                esc(&title)
            );
        }
        body.push_str("</g>\n");
        y += h + 2.0;
    }

    // Time axis: about 8 ticks.
    let mut axis = String::new();
    if !metas.is_empty() {
        for i in 0..=8 {
            let t = t0 + ((t1 - t0) as f64 * f64::from(i) / 8.0) as i64;
            let tx = x(t);
            let _ = writeln!(
                axis,
                r#"<line class="tick" x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{y:.1}"/><text class="axis" x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP - 4.0,
                TOP - 8.0,
                esc(&rfc3339(t).replace('T', " "))
            );
        }
    }
    let height = y + 10.0;
    let width = LEFT + PLOT_W + 20.0;

    let mut legend = String::new();
    for (i, c) in LEVEL_COLOURS.iter().enumerate() {
        let plus = if i + 1 == LEVEL_COLOURS.len() {
            "+"
        } else {
            ""
        };
        let _ = write!(
            legend,
            r#"<span class="key"><i style="background:{c}"></i>level {}{plus}</span> "#,
            i + 1
        );
    }
    legend.push_str(r#"<span class="key"><i class="del"></i>marked for deletion</span> <span class="key"><i class="nc"></i>no-compact</span>"#);

    let mut extra = String::new();
    if !partial.is_empty() {
        extra.push_str("<h2>Partial blocks (no meta.json)</h2><ul>");
        for p in partial {
            let _ = write!(extra, "<li><code>{p}</code></li>");
        }
        extra.push_str("</ul>");
    }
    let empty = if metas.is_empty() {
        "<p>The bucket holds no blocks.</p>"
    } else {
        ""
    };

    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Aether bucket blocks</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; color: #222; }}
svg {{ font-size: 11px; }}
.lane {{ fill: #f6f8fa; }}
.res {{ font-weight: bold; }}
.axis {{ fill: #555; }}
.tick {{ stroke: #ddd; }}
.block {{ stroke: #fff; stroke-width: 0.5; }}
.block:hover {{ stroke: #e6550d; stroke-width: 2; }}
.block.deleted {{ opacity: 0.35; stroke: #d62728; stroke-dasharray: 2 2; }}
.block.nocompact {{ stroke: #ff7f0e; stroke-width: 1.5; }}
.key {{ margin-right: 1em; }}
.key i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }}
.key i.del {{ background: #9ecae1; opacity: 0.35; outline: 1px dashed #d62728; }}
.key i.nc {{ background: #fff; outline: 2px solid #ff7f0e; }}
</style></head>
<body>
<h1>Blocks</h1>
<p>{n} blocks in {rows} streams × resolutions. Hover a block for its details.</p>
<p>{legend}</p>
{empty}
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">
{axis}{body}</svg>
{extra}
</body></html>
"#,
        n = metas.len(),
        rows = rows.len(),
    )
}

/// Lists the bucket and reads each block's deletion and no-compact marks.
pub async fn load(
    store: &dyn ObjectStore,
) -> Result<(Vec<BlockMeta>, HashMap<Ulid, BlockMarks>, Vec<Ulid>)> {
    let metas = bucket::list_block_metas(store).await?;
    let ids: Vec<Ulid> = metas.metas.iter().map(|m| m.ulid).collect();
    let marks: Vec<Result<(Ulid, BlockMarks)>> = futures::stream::iter(ids)
        .map(|id| async move {
            let deletion = bucket::markers::read_deletion_mark(store, id)
                .await?
                .is_some();
            let no_compact = bucket::markers::read_no_compact_mark(store, id)
                .await?
                .is_some();
            Ok((
                id,
                BlockMarks {
                    deletion,
                    no_compact,
                },
            ))
        })
        .buffer_unordered(bucket::block::META_FETCH_CONCURRENCY)
        .collect()
        .await;
    let marks = marks.into_iter().collect::<Result<HashMap<_, _>>>()?;
    Ok((metas.metas, marks, metas.partial))
}

async fn page(State(store): State<Arc<dyn ObjectStore>>) -> impl IntoResponse {
    match load(store.as_ref()).await {
        Ok((metas, marks, partial)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render_page(&metas, &marks, &partial),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("listing the bucket: {e}\n"),
        ),
    }
}

/// The page's routes: `/` and Prometheus-style `/-/healthy`, `/-/ready`.
pub fn router(store: Arc<dyn ObjectStore>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "OK\n" }))
        .with_state(store)
}

/// Serves the page on `listener` until the process ends.
pub async fn serve(cfg: &ObjstoreConfig, listener: tokio::net::TcpListener) -> Result<()> {
    let store = cfg.build()?;
    axum::serve(listener, router(store))
        .await
        .map_err(|e| Error::io("serving HTTP", e))
}
