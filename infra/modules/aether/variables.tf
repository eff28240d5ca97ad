# Inputs of the Aether module. Every variable has a description and, where a bad
# value would only fail at apply time (or, worse, silently), a validation.

variable "name_prefix" {
  description = "Prefix of every resource name (functions, roles, log groups, schedules)."
  type        = string
  default     = "aether"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-32 characters of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- bucket

variable "bucket_name" {
  description = "Name of the S3 bucket that holds the blocks (created by this module; globally unique)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !can(regex("\\.\\.", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 characters of lower-case letters, digits, '.' and '-'."
  }
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds blocks. Keep false outside experiments: it deletes all metrics."
  type        = bool
  default     = false
}

variable "bucket_versioning" {
  description = "Enable S3 versioning. Blocks are immutable and deleted on purpose by the compactor, so versioning mostly keeps garbage; if on, noncurrent versions expire after noncurrent_version_expiration_days."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "With bucket_versioning: days after which noncurrent (overwritten or deleted) object versions are removed."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number >= 1."
  }
}

variable "sse_algorithm" {
  description = "Default bucket encryption: \"aws:kms\" (SSE-KMS, with kms_key_arn or the AWS-managed aws/s3 key) or \"AES256\" (SSE-S3)."
  type        = string
  default     = "aws:kms"

  validation {
    condition     = contains(["aws:kms", "AES256"], var.sse_algorithm)
    error_message = "sse_algorithm must be \"aws:kms\" or \"AES256\"."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for SSE-KMS (bucket) and, if set, for the functions' environment and log groups. null = the AWS-managed keys."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or null."
  }
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which S3 aborts incomplete multipart uploads (parts of chunk files from an interrupted upload), so they stop costing storage."
  type        = number
  default     = 3

  validation {
    condition     = var.abort_incomplete_multipart_days >= 1 && floor(var.abort_incomplete_multipart_days) == var.abort_incomplete_multipart_days
    error_message = "abort_incomplete_multipart_days must be a whole number >= 1."
  }
}

variable "transition_storage_class" {
  description = "Optional lifecycle transition of block objects to a cheaper class that still answers GETs at once: STANDARD_IA, INTELLIGENT_TIERING or GLACIER_IR. null = none. Archive classes (GLACIER, DEEP_ARCHIVE) are refused: their objects need a restore before a GET, which breaks queries."
  type        = string
  default     = null

  validation {
    condition     = var.transition_storage_class == null || contains(["STANDARD_IA", "INTELLIGENT_TIERING", "GLACIER_IR"], coalesce(var.transition_storage_class, "none"))
    error_message = "transition_storage_class must be null, STANDARD_IA, INTELLIGENT_TIERING or GLACIER_IR (classes that serve GETs without a restore)."
  }
}

variable "transition_after_days" {
  description = "With transition_storage_class: object age in days before the transition (S3 requires >= 30 for STANDARD_IA)."
  type        = number
  default     = 30

  validation {
    condition     = var.transition_after_days >= 30 && floor(var.transition_after_days) == var.transition_after_days
    error_message = "transition_after_days must be a whole number >= 30 (S3's minimum for the infrequent-access classes)."
  }
}

# ---------------------------------------------------------------- retention

variable "retention_raw" {
  description = "Retention of raw blocks (compactor --retention.resolution-raw), e.g. 30d; 0d keeps them forever."
  type        = string
  default     = "30d"

  validation {
    condition     = can(regex("^[0-9]+(ms|s|m|h|d|w|y)$", var.retention_raw))
    error_message = "retention_raw must be a Prometheus duration such as 30d, 12w or 1y (0d = forever)."
  }
}

variable "retention_5m" {
  description = "Retention of 5m-downsampled blocks (--retention.resolution-5m), e.g. 180d; 0d keeps them forever."
  type        = string
  default     = "180d"

  validation {
    condition     = can(regex("^[0-9]+(ms|s|m|h|d|w|y)$", var.retention_5m))
    error_message = "retention_5m must be a Prometheus duration such as 180d or 26w (0d = forever)."
  }
}

variable "retention_1h" {
  description = "Retention of 1h-downsampled blocks (--retention.resolution-1h), e.g. 1y; 0d keeps them forever."
  type        = string
  default     = "1y"

  validation {
    condition     = can(regex("^[0-9]+(ms|s|m|h|d|w|y)$", var.retention_1h))
    error_message = "retention_1h must be a Prometheus duration such as 1y or 52w (0d = forever)."
  }
}

# ---------------------------------------------------------------- functions

variable "artifacts_dir" {
  description = "Directory with the cargo-lambda build output: <artifacts_dir>/<bin>/bootstrap.zip for aether-query-lambda, aether-store-lambda, aether-compact-lambda and aether-rule-lambda (`cargo lambda build --release --output-format zip`)."
  type        = string
}

variable "architecture" {
  description = "Lambda architecture: x86_64, or arm64 when the zips were built for aarch64 (`cargo lambda build --release --arm64`)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be \"x86_64\" or \"arm64\"."
  }
}

variable "memory_mb" {
  description = "Memory (MB) per function; CPU grows with it. Keys: query, store, compact, rule."
  type = object({
    query   = number
    store   = number
    compact = number
    rule    = number
  })
  default = {
    query   = 1024
    store   = 1024
    compact = 3008
    rule    = 512
  }

  validation {
    condition     = alltrue([for v in values(var.memory_mb) : v >= 128 && v <= 10240 && floor(v) == v])
    error_message = "every memory_mb value must be a whole number between 128 and 10240."
  }
}

variable "timeout_s" {
  description = "Timeout (seconds) per function. compact stops at a safe point before its deadline and the next scheduled run continues. Keys: query, store, compact, rule."
  type = object({
    query   = number
    store   = number
    compact = number
    rule    = number
  })
  default = {
    query   = 60
    store   = 30
    compact = 900
    rule    = 55
  }

  validation {
    condition     = alltrue([for v in values(var.timeout_s) : v >= 1 && v <= 900 && floor(v) == v])
    error_message = "every timeout_s value must be a whole number of seconds between 1 and 900 (Lambda's limit)."
  }
}

variable "ephemeral_storage_mb" {
  description = "Size of /tmp (MB) for the compact function, which spools merged blocks there before uploading them."
  type        = number
  default     = 4096

  validation {
    condition     = var.ephemeral_storage_mb >= 512 && var.ephemeral_storage_mb <= 10240
    error_message = "ephemeral_storage_mb must be between 512 and 10240."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions per function (-1 = unreserved, counts against the account pool). compact and rule default to 1: one pass / one tick at a time is all they need."
  type = object({
    query   = number
    store   = number
    compact = number
    rule    = number
  })
  default = {
    query   = -1
    store   = -1
    compact = 1
    rule    = 1
  }

  validation {
    condition     = alltrue([for v in values(var.reserved_concurrency) : v == -1 || (v >= 0 && floor(v) == v)])
    error_message = "every reserved_concurrency value must be -1 or a whole number >= 0."
  }
}

variable "fanout" {
  description = "Largest number of store-read invocations one query runs in parallel (AETHER_FANOUT)."
  type        = number
  default     = 4

  validation {
    condition     = var.fanout >= 1 && var.fanout <= 256 && floor(var.fanout) == var.fanout
    error_message = "fanout must be a whole number between 1 and 256."
  }
}

variable "replica_labels" {
  description = "Labels that mark replicas of one stream, deduplicated by the query function (AETHER_REPLICA_LABELS, like --query.replica-label)."
  type        = list(string)
  default     = ["replica", "rule_replica"]

  validation {
    condition     = alltrue([for l in var.replica_labels : can(regex("^[a-zA-Z_][a-zA-Z0-9_]*$", l))])
    error_message = "replica_labels must be Prometheus label names."
  }
}

variable "query_endpoints" {
  description = "Extra StoreAPI endpoints (host:port) the query function reads over gRPC besides the bucket (AETHER_ENDPOINTS), e.g. sidecars for fresh data. They must be reachable from Lambda (the module attaches no VPC)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.query_endpoints : can(regex("^[^,\\s]+:[0-9]+$", e))])
    error_message = "query_endpoints entries must be host:port without commas or spaces."
  }
}

variable "function_url_auth_type" {
  description = "Auth of the query Function URL: AWS_IAM (callers sign with SigV4; default) or NONE (public: anyone on the internet can query your metrics)."
  type        = string
  default     = "AWS_IAM"

  validation {
    condition     = contains(["AWS_IAM", "NONE"], var.function_url_auth_type)
    error_message = "function_url_auth_type must be \"AWS_IAM\" or \"NONE\"."
  }
}

variable "function_url_invoke_mode" {
  description = "Invoke mode of the query Function URL: RESPONSE_STREAM (responses up to 20 MB, sent as produced) or BUFFERED (6 MB limit). The function is told which (AETHER_LAMBDA_STREAMING)."
  type        = string
  default     = "RESPONSE_STREAM"

  validation {
    condition     = contains(["BUFFERED", "RESPONSE_STREAM"], var.function_url_invoke_mode)
    error_message = "function_url_invoke_mode must be \"BUFFERED\" or \"RESPONSE_STREAM\"."
  }
}

variable "compact_schedule" {
  description = "EventBridge schedule expression for the compact function (one pass per invocation)."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate\\([0-9]+ (minute|minutes|hour|hours|day|days)\\)|cron\\(.+\\))$", var.compact_schedule))
    error_message = "compact_schedule must be an EventBridge expression such as \"rate(5 minutes)\" or \"cron(0/5 * * * ? *)\"."
  }
}

variable "rule_schedule" {
  description = "EventBridge schedule expression for the rule function (one evaluation tick per invocation; EventBridge's finest grain is 1 minute)."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate\\([0-9]+ (minute|minutes|hour|hours|day|days)\\)|cron\\(.+\\))$", var.rule_schedule))
    error_message = "rule_schedule must be an EventBridge expression such as \"rate(1 minute)\"."
  }
}

variable "enable_rule" {
  description = "Create the rule function and its schedule (needs rule files in the bucket under aether/rules/, see rule_files)."
  type        = bool
  default     = true
}

variable "rule_files" {
  description = "Local Prometheus rule files uploaded to the bucket as aether/rules/<file name>, where the rule function reads them."
  type        = list(string)
  default     = []
}

variable "alertmanagers" {
  description = "Alertmanager base URLs the rule function sends alerts to (AETHER_ALERTMANAGERS), e.g. https://alertmanager.example.com. Must be reachable from Lambda."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for u in var.alertmanagers : can(regex("^https?://[^,\\s]+$", u))])
    error_message = "every alertmanagers entry must be an http(s) URL without commas or spaces."
  }
}

variable "rule_labels" {
  description = "Labels the ruler attaches to its alerts and recorded series (AETHER_LABELS, like `aether rule --label`), e.g. { rule_replica = \"lambda\" }."
  type        = map(string)
  default     = { rule_replica = "lambda" }

  validation {
    condition     = alltrue([for k in keys(var.rule_labels) : can(regex("^[a-zA-Z_][a-zA-Z0-9_]*$", k))])
    error_message = "rule_labels keys must be Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*)."
  }

  validation {
    condition     = alltrue([for v in values(var.rule_labels) : !can(regex("[\",\\\\]", v))])
    error_message = "rule_labels values must not contain '\"', ',' or '\\' (AETHER_LABELS is a comma-separated name=\"value\" list)."
  }
}

variable "log_level" {
  description = "Log level of every function (AETHER_LOG_LEVEL: debug, info, warn, error, or a RUST_LOG-style filter)."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Retention of each function's CloudWatch log group, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "tracing_mode" {
  description = "X-Ray tracing of the functions: PassThrough (default, no X-Ray cost) or Active."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode must be \"PassThrough\" or \"Active\"."
  }
}
