//! `aether store`: the store-read handler. Serves the blocks of a bucket over the
//! Thanos StoreAPI, from a cold start with nothing on local disk.
//!
//! - [`BucketStore`] (the handler, [`handler`]): bucket index -> blocks overlapping
//!   the request (resolution <= `max_resolution_window`, external labels that can
//!   match) -> per block: index header (memory -> local scratch dir -> the bucket's
//!   cached header object -> built from the index and written back) -> postings ->
//!   series -> chunks trimmed to the range (coalesced range GETs through an LRU) ->
//!   merged across blocks with `storeapi::merge`. It implements
//!   [`storeapi::StoreApi`], holds nothing but caches and starts no background
//!   task, so a pod (gRPC, [`server`]), an in-process querier or a Lambda entry
//!   point can all call it.
//! - [`config`]: settings and flag parsing (`--min-time`, `--index-cache-size`).
//! - [`cache`]: the in-memory LRU of postings, series and chunk byte ranges.
//! - [`aggr`]: stored chunks to wire chunks, splitting downsampled aggregates.
//!
//! The shared index cache itself (bucket index, per-block headers) lives in the
//! `bucket` crate: `bucket::bucket_index`, `bucket::header_cache`.

pub mod aggr;
pub mod cache;
pub mod config;
pub mod handler;
pub mod server;

pub use config::{parse_bytes, StoreConfig, TimeBound};
pub use handler::BucketStore;
