//! `aether tools`: operator tools over TSDB blocks (dump, analyze, backfill from
//! OpenMetrics) and, later, over buckets.
