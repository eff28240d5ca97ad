//! `aether tools bucket lifecycle`: an S3 lifecycle configuration that fits the
//! compactor, printed (JSON for `aws s3api put-bucket-lifecycle-configuration`,
//! or the XML body of the REST call) and, with `--apply`, set on the bucket with
//! aws-sdk-s3.
//!
//! What it contains, and why:
//! - Always (unless `--abort-incomplete-uploads 0d`): abort multipart uploads
//!   left incomplete for N days. A crashed sidecar or compactor can leave them;
//!   they are invisible to listings (so the compactor cannot clean them) but
//!   billed.
//! - Never: an expiration of block objects by age. A block's objects are as old
//!   as its upload, not as its data (a compacted block holding two weeks of data
//!   is new), and deleting some files of a block breaks it. Blocks are deleted
//!   by the compactor's retention through deletion marks, which keeps queries
//!   consistent.
//! - Only with `--transition-after`: moving objects older than that to a colder
//!   storage class, and only to a class from which a plain GET still works at
//!   once (STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR). Archive
//!   classes (GLACIER, DEEP_ARCHIVE) are refused: the store, the querier and the
//!   compactor read every block they keep with range GETs, and an archived
//!   object answers `InvalidObjectState` until restored — queries would break.
//!   Objects under 128 KiB are left alone (S3 bills IA objects as at least 128
//!   KiB, so moving `meta.json` and markers costs more than it saves).
//!
//! Rules written here have IDs starting with `aether-`; `--apply` keeps any other
//! rule already on the bucket.

use std::time::Duration;

use bucket::config::{Backend, BucketLookupType, S3Config};
use bucket::ObjstoreConfig;

use crate::{Error, Result};

/// The SDK, for callers that inspect the rules [`apply`] returns.
pub use aws_sdk_s3;

/// Prefix of the IDs of the rules this tool writes.
pub const RULE_ID_PREFIX: &str = "aether-";

/// Objects at most this big are never transitioned (S3's IA minimum billable size).
pub const MIN_TRANSITION_SIZE: i64 = 128 * 1024;

/// Storage classes a lifecycle rule may move blocks to: every GET still works.
pub const READABLE_CLASSES: [&str; 4] = [
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
];

/// Classes refused: objects there must be restored before a GET.
pub const ARCHIVE_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleSpec {
    /// Retention per resolution (zero: forever), only to check the transition.
    pub retention_raw: Duration,
    pub retention_5m: Duration,
    pub retention_1h: Duration,
    /// Abort incomplete multipart uploads after this long (zero: no rule).
    pub abort_incomplete: Duration,
    /// Transition objects older than this ...
    pub transition_after: Option<Duration>,
    /// ... to this storage class.
    pub storage_class: String,
}

/// One rule, in S3's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    /// Key prefix the rule applies to ("" = the whole bucket).
    pub prefix: String,
    pub abort_incomplete_days: Option<i32>,
    /// (days, storage class, only objects larger than this many bytes)
    pub transition: Option<(i32, String, i64)>,
}

/// The rules plus notes for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rules: Vec<Rule>,
    pub notes: Vec<String>,
}

const DAY: u64 = 86_400;

/// Whole days, rounded up (S3 lifecycle counts in days).
fn days_ceil(d: Duration) -> Result<i32> {
    let days = d.as_secs().div_ceil(DAY);
    i32::try_from(days).map_err(|_| Error::Usage(format!("{d:?} is too long")))
}

fn fmt_days(d: Duration) -> String {
    format!("{}d", d.as_secs().div_ceil(DAY))
}

/// Builds the rules for a bucket whose blocks live under `prefix`.
pub fn plan(spec: &LifecycleSpec, prefix: &str) -> Result<Plan> {
    let key_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", prefix.trim_matches('/'))
    };
    let mut rules = Vec::new();
    let mut notes = vec![
        "No expiration rule: blocks are deleted by `aether compact` (retention via deletion marks), never by object age.".to_string(),
    ];
    if !spec.abort_incomplete.is_zero() {
        rules.push(Rule {
            id: format!("{RULE_ID_PREFIX}abort-incomplete-multipart-uploads"),
            prefix: key_prefix.clone(),
            abort_incomplete_days: Some(days_ceil(spec.abort_incomplete)?),
            transition: None,
        });
    }
    if let Some(after) = spec.transition_after {
        let class = spec.storage_class.trim().to_ascii_uppercase();
        if ARCHIVE_CLASSES.contains(&class.as_str()) {
            return Err(Error::Usage(format!(
                "--transition-storage-class {class}: objects in an archive class must be restored before they can be read, so the store, the querier and the compactor would fail on every block moved there; use one of {}",
                READABLE_CLASSES.join(", ")
            )));
        }
        if !READABLE_CLASSES.contains(&class.as_str()) {
            return Err(Error::Usage(format!(
                "--transition-storage-class {class:?}: not a storage class blocks may move to (one of {})",
                READABLE_CLASSES.join(", ")
            )));
        }
        let days = days_ceil(after)?;
        if days < 1 {
            return Err(Error::Usage(
                "--transition-after must be at least 1d".into(),
            ));
        }
        if matches!(class.as_str(), "STANDARD_IA" | "ONEZONE_IA") && days < 30 {
            return Err(Error::Usage(format!(
                "--transition-after {}: S3 moves objects to {class} only after at least 30 days",
                fmt_days(after)
            )));
        }
        let kept: Vec<Duration> = [spec.retention_raw, spec.retention_5m, spec.retention_1h]
            .into_iter()
            .collect();
        if kept.iter().all(|r| !r.is_zero() && *r <= after) {
            notes.push(format!(
                "Every resolution is deleted by retention before {}: the transition rule will rarely apply.",
                fmt_days(after)
            ));
        }
        notes.push(format!(
            "Objects over 128 KiB older than {} move to {class}: still readable with a plain GET (queries keep working), with a per-GB retrieval fee and a 30-day minimum storage charge.",
            fmt_days(after)
        ));
        rules.push(Rule {
            id: format!("{RULE_ID_PREFIX}transition-{}", class.to_ascii_lowercase()),
            prefix: key_prefix,
            abort_incomplete_days: None,
            transition: Some((days, class, MIN_TRANSITION_SIZE)),
        });
    }
    if rules.is_empty() {
        notes.push(
            "No rule to write (--abort-incomplete-uploads 0d and no --transition-after).".into(),
        );
    }
    Ok(Plan { rules, notes })
}

fn json_rule(r: &Rule) -> serde_json::Value {
    use serde_json::json;
    let filter = match &r.transition {
        Some((_, _, size)) if r.prefix.is_empty() => json!({ "ObjectSizeGreaterThan": size }),
        Some((_, _, size)) => {
            json!({ "And": { "Prefix": r.prefix, "ObjectSizeGreaterThan": size } })
        }
        None => json!({ "Prefix": r.prefix }),
    };
    let mut v = json!({ "ID": r.id, "Status": "Enabled", "Filter": filter });
    if let Some(d) = r.abort_incomplete_days {
        v["AbortIncompleteMultipartUpload"] = json!({ "DaysAfterInitiation": d });
    }
    if let Some((d, class, _)) = &r.transition {
        v["Transitions"] = json!([{ "Days": d, "StorageClass": class }]);
    }
    v
}

/// The configuration as `aws s3api put-bucket-lifecycle-configuration
/// --lifecycle-configuration` takes it.
pub fn to_json(rules: &[Rule]) -> String {
    let v = serde_json::json!({ "Rules": rules.iter().map(json_rule).collect::<Vec<_>>() });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The body of S3's `PUT /?lifecycle`.
pub fn to_xml(rules: &[Rule]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n",
    );
    for r in rules {
        s.push_str("  <Rule>\n");
        s.push_str(&format!("    <ID>{}</ID>\n", xml_escape(&r.id)));
        match &r.transition {
            Some((_, _, size)) if r.prefix.is_empty() => s.push_str(&format!(
                "    <Filter><ObjectSizeGreaterThan>{size}</ObjectSizeGreaterThan></Filter>\n"
            )),
            Some((_, _, size)) => s.push_str(&format!(
                "    <Filter><And><Prefix>{}</Prefix><ObjectSizeGreaterThan>{size}</ObjectSizeGreaterThan></And></Filter>\n",
                xml_escape(&r.prefix)
            )),
            None => s.push_str(&format!(
                "    <Filter><Prefix>{}</Prefix></Filter>\n",
                xml_escape(&r.prefix)
            )),
        }
        s.push_str("    <Status>Enabled</Status>\n");
        if let Some(d) = r.abort_incomplete_days {
            s.push_str(&format!(
                "    <AbortIncompleteMultipartUpload><DaysAfterInitiation>{d}</DaysAfterInitiation></AbortIncompleteMultipartUpload>\n"
            ));
        }
        if let Some((d, class, _)) = &r.transition {
            s.push_str(&format!(
                "    <Transition><Days>{d}</Days><StorageClass>{}</StorageClass></Transition>\n",
                xml_escape(class)
            ));
        }
        s.push_str("  </Rule>\n");
    }
    s.push_str("</LifecycleConfiguration>\n");
    s
}

/// The S3 part of an objstore config, or a usage error for other backends.
pub fn s3_config(cfg: &ObjstoreConfig) -> Result<&S3Config> {
    match &cfg.backend {
        Backend::S3(s) => Ok(s),
        _ => Err(Error::Usage(
            "lifecycle --apply needs an S3 bucket (type: S3 in the objstore config)".into(),
        )),
    }
}

fn is_aws_host(host: &str) -> bool {
    let h = host.split(['/', ':']).next().unwrap_or("");
    h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn")
}

/// An S3 client configured as the objstore config says: endpoint (`insecure`
/// for http), region, static keys if given, else the AWS chain (environment,
/// profile, web identity, instance metadata).
pub async fn client(s3: &S3Config) -> aws_sdk_s3::Client {
    use aws_config::BehaviorVersion;
    use aws_sdk_s3::config::{Credentials, Region};
    let region = if s3.region.is_empty() {
        "us-east-1".to_string()
    } else {
        s3.region.clone()
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region));
    if !s3.access_key.is_empty() {
        let token = Some(s3.session_token.expose().to_string()).filter(|t| !t.is_empty());
        loader = loader.credentials_provider(Credentials::new(
            s3.access_key.clone(),
            s3.secret_key.expose().to_string(),
            token,
            None,
            "objstore-config",
        ));
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk);
    let endpoint = s3.endpoint.trim().trim_end_matches('/');
    if !endpoint.is_empty() {
        let url = if endpoint.contains("://") {
            endpoint.to_string()
        } else if s3.insecure {
            format!("http://{endpoint}")
        } else {
            format!("https://{endpoint}")
        };
        let path_style = match s3.bucket_lookup_type {
            BucketLookupType::Path => true,
            BucketLookupType::VirtualHosted => false,
            BucketLookupType::Auto => !is_aws_host(endpoint.split("://").last().unwrap_or("")),
        };
        b = b.endpoint_url(url).force_path_style(path_style);
    } else if s3.bucket_lookup_type == BucketLookupType::Path {
        b = b.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

fn sdk_rule(r: &Rule) -> Result<aws_sdk_s3::types::LifecycleRule> {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleRule, LifecycleRuleAndOperator,
        LifecycleRuleFilter, Transition, TransitionStorageClass,
    };
    let filter = match &r.transition {
        Some((_, _, size)) if r.prefix.is_empty() => LifecycleRuleFilter::builder()
            .object_size_greater_than(*size)
            .build(),
        Some((_, _, size)) => LifecycleRuleFilter::builder()
            .and(
                LifecycleRuleAndOperator::builder()
                    .prefix(&r.prefix)
                    .object_size_greater_than(*size)
                    .build(),
            )
            .build(),
        None => LifecycleRuleFilter::builder().prefix(&r.prefix).build(),
    };
    let mut b = LifecycleRule::builder()
        .id(&r.id)
        .status(ExpirationStatus::Enabled)
        .filter(filter);
    if let Some(d) = r.abort_incomplete_days {
        b = b.abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(d)
                .build(),
        );
    }
    if let Some((d, class, _)) = &r.transition {
        b = b.transitions(
            Transition::builder()
                .days(*d)
                .storage_class(TransitionStorageClass::from(class.as_str()))
                .build(),
        );
    }
    b.build()
        .map_err(|e| Error::Usage(format!("lifecycle rule {}: {e}", r.id)))
}

fn sdk_err<E>(what: &str, bucket: &str, e: aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let detail = match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("(no message)")),
        None => format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)),
    };
    let hint = if detail.starts_with("NotImplemented") {
        " (this S3 server does not support that rule; print the configuration with -o json and apply what it supports by hand)"
    } else {
        ""
    };
    Error::Failed(format!("{what} on bucket {bucket}: {detail}{hint}"))
}

/// The rules on the bucket now (empty when it has no lifecycle configuration).
pub async fn current_rules(
    client: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Vec<aws_sdk_s3::types::LifecycleRule>> {
    match client
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => Ok(out.rules.unwrap_or_default()),
        Err(e) => {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            if e.code() == Some("NoSuchLifecycleConfiguration") {
                Ok(Vec::new())
            } else {
                Err(sdk_err("GetBucketLifecycleConfiguration", bucket, e))
            }
        }
    }
}

/// Sets `rules` on the bucket: rules with our ID prefix are replaced, others kept.
/// Returns the rules on the bucket afterwards (read back).
pub async fn apply(
    cfg: &ObjstoreConfig,
    rules: &[Rule],
) -> Result<Vec<aws_sdk_s3::types::LifecycleRule>> {
    use aws_sdk_s3::types::BucketLifecycleConfiguration;
    let s3 = s3_config(cfg)?;
    let bucket = s3.bucket.trim();
    let client = client(s3).await;
    let mut all: Vec<aws_sdk_s3::types::LifecycleRule> = current_rules(&client, bucket)
        .await?
        .into_iter()
        .filter(|r| !r.id().unwrap_or("").starts_with(RULE_ID_PREFIX))
        .collect();
    for r in rules {
        all.push(sdk_rule(r)?);
    }
    if all.is_empty() {
        client
            .delete_bucket_lifecycle()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| sdk_err("DeleteBucketLifecycle", bucket, e))?;
        return Ok(Vec::new());
    }
    let conf = BucketLifecycleConfiguration::builder()
        .set_rules(Some(all))
        .build()
        .map_err(|e| Error::Usage(format!("lifecycle configuration: {e}")))?;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(conf)
        .send()
        .await
        .map_err(|e| sdk_err("PutBucketLifecycleConfiguration", bucket, e))?;
    current_rules(&client, bucket).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(days: u64) -> Duration {
        Duration::from_secs(days * DAY)
    }

    fn spec() -> LifecycleSpec {
        LifecycleSpec {
            retention_raw: d(30),
            retention_5m: d(180),
            retention_1h: d(365),
            abort_incomplete: d(7),
            transition_after: None,
            storage_class: "STANDARD_IA".into(),
        }
    }

    #[test]
    fn default_is_only_abort_incomplete_uploads_and_never_expires() {
        let p = plan(&spec(), "").unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].abort_incomplete_days, Some(7));
        let j = to_json(&p.rules);
        assert!(j.contains("\"DaysAfterInitiation\": 7"), "{j}");
        assert!(!j.contains("Expiration"), "{j}");
        let x = to_xml(&p.rules);
        assert!(
            x.contains("<DaysAfterInitiation>7</DaysAfterInitiation>"),
            "{x}"
        );
        assert!(x.contains("<Filter><Prefix></Prefix></Filter>"), "{x}");
        assert!(!x.contains("Expiration"));
    }

    #[test]
    fn prefix_and_rounding() {
        let mut s = spec();
        s.abort_incomplete = Duration::from_secs(36 * 3600);
        let p = plan(&s, "tenant-a/").unwrap();
        assert_eq!(p.rules[0].prefix, "tenant-a/");
        assert_eq!(p.rules[0].abort_incomplete_days, Some(2));
        s.abort_incomplete = Duration::ZERO;
        assert!(plan(&s, "").unwrap().rules.is_empty());
    }

    #[test]
    fn transitions_only_to_readable_classes() {
        let mut s = spec();
        s.transition_after = Some(d(90));
        let p = plan(&s, "").unwrap();
        assert_eq!(p.rules.len(), 2);
        assert_eq!(
            p.rules[1].transition,
            Some((90, "STANDARD_IA".into(), MIN_TRANSITION_SIZE))
        );
        // Raw blocks are gone after 30d, 5m/1h are kept longer: useful, no note.
        assert!(!p.notes.iter().any(|n| n.contains("rarely")));
        let j = to_json(&p.rules);
        assert!(j.contains("\"ObjectSizeGreaterThan\": 131072"), "{j}");
        for bad in ["GLACIER", "deep_archive"] {
            s.storage_class = bad.into();
            let e = plan(&s, "").unwrap_err().to_string();
            assert!(e.contains("restored"), "{e}");
        }
        s.storage_class = "REDUCED_REDUNDANCY".into();
        assert!(plan(&s, "").is_err());
        s.storage_class = "STANDARD_IA".into();
        s.transition_after = Some(d(10));
        assert!(plan(&s, "").unwrap_err().to_string().contains("30 days"));
        s.storage_class = "INTELLIGENT_TIERING".into();
        assert!(plan(&s, "").is_ok());
        // Everything expires before the transition: say so.
        s.transition_after = Some(d(400));
        let p = plan(&s, "").unwrap();
        assert!(
            p.notes.iter().any(|n| n.contains("rarely")),
            "{:?}",
            p.notes
        );
    }
}
