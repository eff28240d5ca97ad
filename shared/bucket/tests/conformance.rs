//! One suite of bucket behaviours, run against a real SeaweedFS S3 server
//! (harness::S3Server) and against a FILESYSTEM bucket. Each case gets its own key
//! prefix, so one server serves the whole suite.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bucket::block::{self, debug_meta_path, meta_path, UploadOptions};
use bucket::config::{Backend, ObjstoreConfig};
use bucket::object_store::path::Path;
use bucket::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use bucket::{Error, MarkerKind, NoCompactReason, ObjectRange, RequestKind, RequestStats};
use tsdb::meta::{BlockMeta, ThanosMeta};
use tsdb::RangeRead;
use ulid::Ulid;

const MIB: usize = 1024 * 1024;

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A fake block directory `<parent>/<ULID>` with a meta.json, two chunk segments
/// (one large enough for multipart), an index and tombstones.
fn make_block(parent: &FsPath, big_chunk: usize) -> (Ulid, PathBuf) {
    let id = Ulid::new();
    let dir = parent.join(id.to_string());
    std::fs::create_dir_all(dir.join("chunks")).unwrap();
    let mut meta = BlockMeta::new(id, 1_000, 7_201_000);
    meta.stats.num_series = 3;
    meta.thanos = Some(ThanosMeta::new(
        "sidecar",
        [("cluster".to_string(), "eu1".to_string())].into(),
    ));
    meta.write_dir(&dir).unwrap();
    std::fs::write(dir.join("chunks/000001"), bytes(big_chunk, 1)).unwrap();
    std::fs::write(dir.join("chunks/000002"), bytes(MIB + 123, 2)).unwrap();
    std::fs::write(dir.join("index"), bytes(3 * MIB + 7, 3)).unwrap();
    std::fs::write(dir.join("tombstones"), bytes(17, 4)).unwrap();
    (id, dir)
}

fn small_parts() -> UploadOptions {
    UploadOptions {
        part_size: 5 * MIB as u64,
        ..UploadOptions::default()
    }
}

struct Case {
    store: Arc<dyn ObjectStore>,
    stats: Arc<RequestStats>,
    tmp: tempfile::TempDir,
}

/// Builds a store for one case: the suite's config with the case's prefix.
fn case(base: &ObjstoreConfig, name: &str) -> Case {
    let mut cfg = base.clone();
    cfg.prefix = format!("{}/{name}", cfg.prefix)
        .trim_matches('/')
        .to_string();
    let (store, stats) = cfg.build_with_stats().unwrap();
    Case {
        store,
        stats,
        tmp: tempfile::tempdir().unwrap(),
    }
}

async fn upload_and_download(base: &ObjstoreConfig) {
    let c = case(base, "roundtrip");
    let (id, dir) = make_block(c.tmp.path(), 12 * MIB + 5);
    c.stats.start_log();
    let up = block::upload_block_with(&*c.store, &dir, None, &small_parts())
        .await
        .unwrap();
    let log = c.stats.take_log();
    assert_eq!(up.ulid, id);
    assert_eq!(up.files, 5);
    assert_eq!(up.multipart_files, 1, "only chunks/000001 is >= part size");
    assert_eq!(
        up.bytes,
        (12 * MIB + 5 + MIB + 123 + 3 * MIB + 7 + 17) as u64
    );
    let s = c.stats.snapshot();
    assert_eq!(s.multipart_uploads, 1);
    assert_eq!(s.multipart_parts, 3, "12 MiB in 5 MiB parts");

    // Order: chunk segments, index, tombstones, HEAD checks, debug meta, meta.json last.
    let writes: Vec<String> = log
        .iter()
        .filter(|(k, _)| matches!(k, RequestKind::Put | RequestKind::MultipartStart))
        .map(|(_, p)| match p.split_once(&format!("{id}/")[..]) {
            _ if p.contains("debug/metas/") => "debug-meta".to_string(),
            Some((_, rel)) => rel.to_string(),
            None => p.clone(),
        })
        .collect();
    assert_eq!(
        writes,
        [
            "chunks/000001",
            "chunks/000002",
            "index",
            "tombstones",
            "debug-meta",
            "meta.json"
        ]
    );
    let heads = log.iter().filter(|(k, _)| *k == RequestKind::Head).count();
    assert_eq!(heads, 4, "every data file is verified by HEAD");
    let first_head = log
        .iter()
        .position(|(k, _)| *k == RequestKind::Head)
        .unwrap();
    let last_data_write = log
        .iter()
        .rposition(|(k, p)| {
            matches!(k, RequestKind::MultipartPart | RequestKind::Put) && p.ends_with("tombstones")
        })
        .unwrap();
    assert!(first_head > last_data_write);

    // thanos.files like Thanos: chunks/NNNNNN, index, meta.json without size.
    let files = &up.meta.thanos.as_ref().unwrap().files;
    let listed: Vec<(&str, u64)> = files
        .iter()
        .map(|f| (f.rel_path.as_str(), f.size_bytes))
        .collect();
    assert_eq!(
        listed,
        [
            ("chunks/000001", (12 * MIB + 5) as u64),
            ("chunks/000002", (MIB + 123) as u64),
            ("index", (3 * MIB + 7) as u64),
            ("meta.json", 0),
            ("tombstones", 17),
        ]
    );
    // The local meta.json is untouched.
    assert!(BlockMeta::read_dir(&dir)
        .unwrap()
        .thanos
        .unwrap()
        .files
        .is_empty());

    // In the bucket: listed, complete, meta equal, debug copy present.
    assert_eq!(block::list_blocks(&*c.store).await.unwrap(), vec![id]);
    assert!(block::block_exists_complete(&*c.store, id).await.unwrap());
    let fetched = block::fetch_meta(&*c.store, id).await.unwrap().unwrap();
    assert_eq!(fetched, up.meta);
    let debug = c
        .store
        .get(&debug_meta_path(id))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(BlockMeta::from_json(&debug).unwrap(), up.meta);
    let raw_meta = c
        .store
        .get(&meta_path(id))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw_meta).unwrap();
    assert_eq!(
        json["thanos"]["files"][3],
        serde_json::json!({"rel_path": "meta.json"})
    );
    assert_eq!(json["thanos"]["labels"]["cluster"], "eu1");

    // Download back, byte-identical, into a fresh dir and then over an existing one.
    let out = c.tmp.path().join("dl");
    let dest = out.join(id.to_string());
    for _ in 0..2 {
        let m = block::download_block(&*c.store, id, &dest).await.unwrap();
        assert_eq!(m, up.meta);
        for rel in ["chunks/000001", "chunks/000002", "index", "tombstones"] {
            assert!(
                std::fs::read(dir.join(rel)).unwrap() == std::fs::read(dest.join(rel)).unwrap(),
                "{rel} differs"
            );
        }
        assert_eq!(
            std::fs::read(dest.join("meta.json")).unwrap(),
            raw_meta.to_vec()
        );
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![id.to_string()], "no temp dirs left behind");
    }
    // Markers are not downloaded.
    bucket::mark_for_deletion(&*c.store, id, "test")
        .await
        .unwrap();
    block::download_block(&*c.store, id, &dest).await.unwrap();
    assert!(!dest.join("deletion-mark.json").exists());

    // A meta override is uploaded instead of the local meta.
    let mut other = BlockMeta::read_dir(&dir).unwrap();
    other.thanos.as_mut().unwrap().source = "compactor".into();
    let up2 = block::upload_block(&*c.store, &dir, Some(&other))
        .await
        .unwrap();
    assert_eq!(up2.meta.thanos.as_ref().unwrap().source, "compactor");
    assert_eq!(
        up2.multipart_files, 0,
        "default 16 MiB parts: all single PUTs"
    );
    let fetched = block::fetch_meta(&*c.store, id).await.unwrap().unwrap();
    assert_eq!(fetched.thanos.unwrap().source, "compactor");
}

async fn partial_and_corrupt(base: &ObjstoreConfig) {
    let c = case(base, "partial");
    let (complete, dir) = make_block(c.tmp.path(), MIB);
    block::upload_block(&*c.store, &dir, None).await.unwrap();

    // A partial upload: data but no meta.json.
    let partial = Ulid::new();
    c.store
        .put(
            &block::chunk_path(partial, 1),
            PutPayload::from(vec![1u8; 10]),
        )
        .await
        .unwrap();
    c.store
        .put(&block::index_path(partial), PutPayload::from(vec![2u8; 10]))
        .await
        .unwrap();
    // A block whose meta.json is garbage.
    let corrupt = Ulid::new();
    c.store
        .put(&meta_path(corrupt), PutPayload::from_static(b"{not json"))
        .await
        .unwrap();
    // Things at the root that are not blocks.
    c.store
        .put(&Path::from("not-a-block/x"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    c.store
        .put(&Path::from("stray-file"), PutPayload::from_static(b"x"))
        .await
        .unwrap();

    let mut all = vec![complete, partial, corrupt];
    all.sort();
    assert_eq!(block::list_blocks(&*c.store).await.unwrap(), all);
    let metas = block::list_block_metas(&*c.store).await.unwrap();
    assert_eq!(metas.metas.len(), 1);
    assert_eq!(metas.metas[0].ulid, complete);
    assert_eq!(metas.partial, vec![partial]);
    assert_eq!(metas.corrupted.len(), 1);
    assert_eq!(metas.corrupted[0].0, corrupt);

    assert!(block::fetch_meta(&*c.store, partial)
        .await
        .unwrap()
        .is_none());
    assert!(!block::block_exists_complete(&*c.store, partial)
        .await
        .unwrap());
    let e = block::fetch_meta(&*c.store, corrupt).await.unwrap_err();
    assert!(
        e.to_string().contains(&format!("{corrupt}/meta.json")),
        "{e}"
    );
    assert!(!e.is_transient());
    let e = block::download_block(&*c.store, partial, &c.tmp.path().join("p"))
        .await
        .unwrap_err();
    assert!(e.is_not_found() && !e.is_transient(), "{e}");
    assert!(
        e.to_string().contains(&format!("{partial}/meta.json")),
        "{e}"
    );
    assert!(!c.tmp.path().join("p").exists());

    // A complete meta whose files are missing in the bucket fails the download.
    c.store
        .delete(&block::chunk_path(complete, 2))
        .await
        .unwrap();
    let e = block::download_block(&*c.store, complete, &c.tmp.path().join("q"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("chunks/000002"), "{e}");

    // Bad local dirs are clear errors.
    let e = block::upload_block(&*c.store, &c.tmp.path().join("missing"), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidBlockDir { .. }), "{e}");
    let no_index = c.tmp.path().join(Ulid::new().to_string());
    std::fs::create_dir_all(no_index.join("chunks")).unwrap();
    let e = block::upload_block(&*c.store, &no_index, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("meta.json"), "{e}");
}

async fn markers(base: &ObjstoreConfig) {
    let c = case(base, "markers");
    let id = Ulid::new();
    assert_eq!(
        bucket::read_deletion_mark(&*c.store, id).await.unwrap(),
        None
    );
    assert!(bucket::mark_for_deletion(&*c.store, id, "compacted")
        .await
        .unwrap());
    assert!(!bucket::mark_for_deletion(&*c.store, id, "twice")
        .await
        .unwrap());
    let d = bucket::read_deletion_mark(&*c.store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.id, d.version, d.details.as_str()), (id, 1, "compacted"));

    assert!(
        bucket::mark_no_compact(&*c.store, id, NoCompactReason::IndexSizeExceeding, "")
            .await
            .unwrap()
    );
    let n = bucket::read_no_compact_mark(&*c.store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.reason, NoCompactReason::IndexSizeExceeding);
    let raw = c
        .store
        .get(&MarkerKind::NoCompact.path(id))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["reason"], "index-size-exceeding");
    assert_eq!(v["id"], id.to_string());
    assert!(v.get("details").is_none());

    assert!(bucket::mark_no_downsample(&*c.store, id, "manual", "why")
        .await
        .unwrap());
    let nd = bucket::read_no_downsample_mark(&*c.store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((nd.reason.as_str(), nd.details.as_str()), ("manual", "why"));

    for k in MarkerKind::ALL {
        bucket::remove_marker(&*c.store, id, k).await.unwrap();
        bucket::remove_marker(&*c.store, id, k).await.unwrap();
    }
    assert_eq!(
        bucket::read_deletion_mark(&*c.store, id).await.unwrap(),
        None
    );
    assert_eq!(
        bucket::read_no_compact_mark(&*c.store, id).await.unwrap(),
        None
    );
    assert_eq!(
        bucket::read_no_downsample_mark(&*c.store, id)
            .await
            .unwrap(),
        None
    );
}

async fn delete_order(base: &ObjstoreConfig) {
    let c = case(base, "delete");
    let (id, dir) = make_block(c.tmp.path(), MIB);
    let (keep, keep_dir) = make_block(c.tmp.path(), MIB);
    block::upload_block(&*c.store, &dir, None).await.unwrap();
    block::upload_block(&*c.store, &keep_dir, None)
        .await
        .unwrap();
    bucket::mark_for_deletion(&*c.store, id, "").await.unwrap();
    bucket::mark_no_compact(&*c.store, id, NoCompactReason::Manual, "")
        .await
        .unwrap();

    c.stats.start_log();
    let st = block::delete_block(&*c.store, id).await.unwrap();
    let log = c.stats.take_log();
    assert_eq!(
        st.deleted, 7,
        "meta, 2 chunks, index, tombstones, 2 markers"
    );
    let deletes: Vec<&str> = log
        .iter()
        .filter(|(k, _)| *k == RequestKind::Delete)
        .map(|(_, p)| p.as_str())
        .collect();
    // 7 objects, then the emptied directory keys (for SeaweedFS), deepest first.
    assert_eq!(deletes.len(), 9, "{deletes:?}");
    assert!(
        deletes[0].ends_with(&format!("{id}/meta.json")),
        "{deletes:?}"
    );
    assert!(
        deletes[6].ends_with(&format!("{id}/deletion-mark.json")),
        "{deletes:?}"
    );
    assert!(deletes[7].ends_with(&format!("{id}/chunks")), "{deletes:?}");
    assert_eq!(deletes[8], id.to_string());

    assert!(block::list_block_files(&*c.store, id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(block::list_blocks(&*c.store).await.unwrap(), vec![keep]);
    assert!(block::block_exists_complete(&*c.store, keep).await.unwrap());
    // debug/metas is kept, as Thanos keeps it.
    c.store.head(&debug_meta_path(id)).await.unwrap();
    // Deleting again (or a block that never existed) is fine.
    assert_eq!(block::delete_block(&*c.store, id).await.unwrap().deleted, 0);
}

async fn object_range(base: &ObjstoreConfig) {
    let c = case(base, "range");
    let data = bytes(4 * MIB, 9);
    let key = Path::from("obj/index");
    c.store
        .put(&key, PutPayload::from(data.clone()))
        .await
        .unwrap();
    c.stats.reset();

    let r = ObjectRange::new(c.store.clone(), key.clone());
    assert_eq!(r.size().await.unwrap(), data.len() as u64);
    assert_eq!(c.stats.heads(), 1);
    let got = r.read(1000..2000).await.unwrap();
    assert_eq!(&got[..], &data[1000..2000]);
    assert_eq!(c.stats.get_ranges(), 1);
    assert!(r.read(0..data.len() as u64 + 1).await.is_err());
    assert!(r.read(10..10).await.unwrap().is_empty());

    // Close ranges (< 512 KiB apart) coalesce: 3 ranges in 2 clusters -> 2 GETs.
    c.stats.reset();
    let ranges = [
        0..100,
        300_000..300_100,
        (3 * MIB as u64)..(3 * MIB as u64 + 4096),
        150..160,
    ];
    let out = r.read_many(&ranges).await.unwrap();
    for (rg, b) in ranges.iter().zip(&out) {
        assert_eq!(&b[..], &data[rg.start as usize..rg.end as usize]);
    }
    assert_eq!(c.stats.gets(), 2);
    assert_eq!(c.stats.heads(), 0, "size is cached");

    // With no coalescing every range is its own GET.
    c.stats.reset();
    let r0 = ObjectRange::with_size(c.store.clone(), key.clone(), data.len() as u64)
        .with_coalesce_gap(0);
    let out = r0.read_many(&ranges).await.unwrap();
    assert_eq!(out[2].len(), 4096);
    assert_eq!(c.stats.gets(), 4);
    assert_eq!(c.stats.heads(), 0);

    // A missing object is an error naming bucket and key.
    let missing = ObjectRange::new(c.store.clone(), "obj/nope");
    let e = missing.read(0..1).await.unwrap_err().to_string();
    assert!(e.contains("obj/nope"), "{e}");
}

async fn run_suite(base: ObjstoreConfig) {
    upload_and_download(&base).await;
    partial_and_corrupt(&base).await;
    markers(&base).await;
    delete_order(&base).await;
    object_range(&base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3() {
    let server = tokio::task::spawn_blocking(|| harness::S3Server::start("aether-test"))
        .await
        .unwrap()
        .expect("starting SeaweedFS (run tests/scripts/install-deps.sh)");
    let cfg = ObjstoreConfig::parse(&server.objstore_yaml()).unwrap();
    assert!(matches!(cfg.backend, Backend::S3(_)));
    let mut cfg = cfg;
    cfg.prefix = "suite".into();
    run_suite(cfg).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: filesystem\nconfig:\n  directory: {}\nprefix: suite\n",
        dir.path().join("bucket").display()
    );
    run_suite(ObjstoreConfig::parse(&yaml).unwrap()).await;
}
