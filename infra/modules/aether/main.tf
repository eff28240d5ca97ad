# Aether on AWS: the bucket, and shared locals. IAM is in iam.tf, the functions in
# lambda.tf, the schedules in schedules.tf.

data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  region = data.aws_region.current.name

  # The four functions: one cargo-lambda binary each.
  all_functions = {
    query   = { bin = "aether-query-lambda", description = "Aether query: Prometheus HTTP API behind the Function URL" }
    store   = { bin = "aether-store-lambda", description = "Aether store-read: StoreAPI Series/LabelNames/LabelValues over the bucket" }
    compact = { bin = "aether-compact-lambda", description = "Aether compact: one compaction/downsampling/retention pass per invocation" }
    rule    = { bin = "aether-rule-lambda", description = "Aether rule: one rule evaluation tick per invocation" }
  }
  functions = { for k, v in local.all_functions : k => v if k != "rule" || var.enable_rule }

  function_names = { for k, _ in local.all_functions : k => "${var.name_prefix}-${k}" }

  # The Thanos objstore YAML every function reads. No keys: the execution role's
  # temporary credentials (AWS_ACCESS_KEY_ID/AWS_SESSION_TOKEN in the Lambda
  # environment) are picked up by the S3 client's default credential chain.
  objstore_config = yamlencode({
    type = "S3"
    config = {
      bucket   = aws_s3_bucket.blocks.bucket
      endpoint = "s3.${local.region}.${data.aws_partition.current.dns_suffix}"
      region   = local.region
    }
  })

  common_env = {
    AETHER_OBJSTORE_CONFIG = local.objstore_config
    AETHER_LOG_LEVEL       = var.log_level
  }

  function_env = {
    query = merge(
      {
        AETHER_STORE_FUNCTION = local.function_names.store
        AETHER_FANOUT         = tostring(var.fanout)
        # The handler streams unless told the URL is BUFFERED.
        AETHER_LAMBDA_STREAMING = var.function_url_invoke_mode == "RESPONSE_STREAM" ? "true" : "false"
        # Leave the function a few seconds to answer with the timeout error.
        AETHER_QUERY_TIMEOUT = "${max(var.timeout_s.query - 5, 1)}s"
      },
      length(var.replica_labels) > 0 ? { AETHER_REPLICA_LABELS = join(",", var.replica_labels) } : {},
      length(var.query_endpoints) > 0 ? { AETHER_ENDPOINTS = join(",", var.query_endpoints) } : {},
    )
    store = {}
    compact = {
      AETHER_RETENTION_RAW = var.retention_raw
      AETHER_RETENTION_5M  = var.retention_5m
      AETHER_RETENTION_1H  = var.retention_1h
    }
    rule = merge(
      length(var.alertmanagers) > 0 ? { AETHER_ALERTMANAGERS = join(",", var.alertmanagers) } : {},
      length(var.rule_labels) > 0 ? { AETHER_LABELS = join(",", [for k in sort(keys(var.rule_labels)) : "${k}=\"${var.rule_labels[k]}\""]) } : {},
    )
  }

  bucket_arn = aws_s3_bucket.blocks.arn
}

# ---------------------------------------------------------------- bucket

resource "aws_s3_bucket" "blocks" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost and is a user's choice, not a default.
  #checkov:skip=CKV_AWS_18:Server access logging needs a second bucket and is a user's choice; CloudTrail data events are the alternative.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; the compactor and stores discover blocks by listing.
  #checkov:skip=CKV_AWS_21:Versioning is the bucket_versioning variable (default off): blocks are immutable and deleted on purpose by the compactor, so versions would only keep garbage.
  bucket        = var.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "blocks" {
  bucket = aws_s3_bucket.blocks.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "blocks" {
  bucket                  = aws_s3_bucket.blocks.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "blocks" {
  bucket = aws_s3_bucket.blocks.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.sse_algorithm
      kms_master_key_id = var.sse_algorithm == "aws:kms" ? var.kms_key_arn : null
    }
    # With SSE-KMS, an S3 bucket key cuts KMS requests (and their cost) by orders of magnitude.
    bucket_key_enabled = var.sse_algorithm == "aws:kms"
  }
}

resource "aws_s3_bucket_versioning" "blocks" {
  count  = var.bucket_versioning ? 1 : 0
  bucket = aws_s3_bucket.blocks.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Lifecycle rules consistent with the compactor's retention:
#
# - Incomplete multipart uploads (a chunk file whose upload was interrupted) are
#   aborted after abort_incomplete_multipart_days: nothing ever reads them.
# - No rule expires current objects by age. A block's object age is not its data's
#   age (compaction rewrites 2-week-old samples into new objects; downsampled 1h
#   blocks must outlive raw ones, and S3 cannot tell them apart by key: every block
#   lives at <ULID>/), and an object rule would delete a block's files one by one,
#   leaving partial blocks that queries trip over. Retention is the compactor's
#   job: it writes deletion-mark.json, waits --delete-delay so no query still reads
#   the block, then deletes every object of the block. The aether/ prefix (bucket
#   index, compactor lease, ruler state) must never expire either.
# - An optional transition moves block objects only to classes that still answer a
#   GET at once (STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR), so queries keep
#   working; archive classes (GLACIER, DEEP_ARCHIVE) would need a restore before
#   each read and are refused by the variable's validation. Objects under 128 KiB
#   (meta.json, markers, index headers, the bucket index) stay in STANDARD: IA
#   classes bill them as 128 KiB and they are read on every query. Mind the IA
#   classes' minimum storage duration (30 days, GLACIER_IR 90): blocks the
#   compactor deletes earlier are billed for the minimum anyway.
# - With versioning on, noncurrent versions (left by the compactor's deletions and
#   the index cache's rewrites) expire after noncurrent_version_expiration_days.
resource "aws_s3_bucket_lifecycle_configuration" "blocks" {
  bucket = aws_s3_bucket.blocks.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  # Rules that do not apply stay in the configuration as Disabled (visible in the
  # console), rather than appearing and disappearing with the variables.
  rule {
    id     = "transition-large-objects"
    status = var.transition_storage_class == null ? "Disabled" : "Enabled"
    filter {
      object_size_greater_than = 131072
    }
    transition {
      days          = var.transition_after_days
      storage_class = coalesce(var.transition_storage_class, "STANDARD_IA")
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = var.bucket_versioning ? "Enabled" : "Disabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.blocks]
}

# Refuse plain-HTTP requests to the bucket.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.blocks.arn,
      "${aws_s3_bucket.blocks.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "blocks" {
  bucket = aws_s3_bucket.blocks.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.blocks]
}

# Rule files for the rule function, read from aether/rules/ in the bucket.
resource "aws_s3_object" "rule_files" {
  for_each = var.enable_rule ? toset(var.rule_files) : toset([])

  bucket       = aws_s3_bucket.blocks.id
  key          = "aether/rules/${basename(each.value)}"
  source       = each.value
  source_hash  = filemd5(each.value)
  content_type = "application/yaml"
  tags         = var.tags
}
