//! Mutual exclusion between compactor passes on one bucket: a lease object
//! (`aether/compactor-lease.json`: holder and expiry) taken and renewed with
//! conditional PUTs (`If-None-Match: *` to create, `If-Match: <etag>` to take over
//! an expired lease or renew ours). A pass that cannot take the lease does
//! nothing; a pass that loses it stops before its next bucket change.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::clock::Clock;

/// Where the lease lives (not a ULID: Thanos ignores it).
pub const LEASE_PATH: &str = "aether/compactor-lease.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseBody {
    pub holder: String,
    /// Unix ms after which anyone may take the lease over.
    pub expires_ms: i64,
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    holder: String,
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
    version: Mutex<UpdateVersion>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {LEASE_PATH}: {0}")]
    Store(#[from] object_store::Error),
}

enum PutOutcome {
    Won(UpdateVersion),
    Lost,
}

async fn put(
    store: &dyn ObjectStore,
    body: &LeaseBody,
    mode: PutMode,
) -> Result<PutOutcome, LeaseError> {
    let key = Path::from(LEASE_PATH);
    let payload = PutPayload::from(serde_json::to_vec(body).expect("lease json"));
    match store
        .put_opts(&key, payload.clone(), PutOptions::from(mode))
        .await
    {
        Ok(r) => Ok(PutOutcome::Won(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        })),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::Lost),
        Err(object_store::Error::NotImplemented { .. }) => {
            tracing::warn!("the object store has no conditional PUT: the compactor lease is not exclusive; run one compactor per bucket");
            let r = store.put(&key, payload).await?;
            Ok(PutOutcome::Won(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

impl Lease {
    /// Takes the lease for `ttl_ms` if it is free or expired; `None` when another
    /// holder has it.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        holder: &str,
        ttl_ms: i64,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Lease>, LeaseError> {
        let key = Path::from(LEASE_PATH);
        let now = clock.now_ms();
        let body = LeaseBody {
            holder: holder.to_string(),
            expires_ms: now + ttl_ms,
        };
        let mode = match store.get(&key).await {
            Err(object_store::Error::NotFound { .. }) => PutMode::Create,
            Err(e) => return Err(e.into()),
            Ok(r) => {
                let version = UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r.bytes().await?;
                match serde_json::from_slice::<LeaseBody>(&bytes) {
                    Ok(cur) if cur.holder != holder && cur.expires_ms > now => {
                        tracing::info!(holder = %cur.holder, expires_ms = cur.expires_ms, "another compactor holds the lease");
                        return Ok(None);
                    }
                    _ => {}
                }
                if version.e_tag.is_none() && version.version.is_none() {
                    PutMode::Overwrite
                } else {
                    PutMode::Update(version)
                }
            }
        };
        match put(&*store, &body, mode).await? {
            PutOutcome::Lost => Ok(None),
            PutOutcome::Won(v) => Ok(Some(Lease {
                store,
                holder: holder.to_string(),
                ttl_ms,
                clock,
                version: Mutex::new(v),
            })),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Extends the lease; `false` when it was lost (someone took it over).
    pub async fn renew(&self) -> Result<bool, LeaseError> {
        let mut v = self.version.lock().await;
        let body = LeaseBody {
            holder: self.holder.clone(),
            expires_ms: self.clock.now_ms() + self.ttl_ms,
        };
        let mode = if v.e_tag.is_none() && v.version.is_none() {
            PutMode::Overwrite
        } else {
            PutMode::Update(v.clone())
        };
        match put(&*self.store, &body, mode).await? {
            PutOutcome::Won(nv) => {
                *v = nv;
                Ok(true)
            }
            PutOutcome::Lost => Ok(false),
        }
    }

    /// Lease lifetime in ms.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// Gives the lease up (expires it, conditionally on still holding it).
    pub async fn release(&self) {
        let v = self.version.lock().await.clone();
        let body = LeaseBody {
            holder: self.holder.clone(),
            expires_ms: 0,
        };
        let mode = if v.e_tag.is_none() && v.version.is_none() {
            PutMode::Overwrite
        } else {
            PutMode::Update(v)
        };
        if let Err(e) = put(&*self.store, &body, mode).await {
            tracing::warn!(error = %e, "releasing the compactor lease failed; it expires by itself");
        }
    }
}
