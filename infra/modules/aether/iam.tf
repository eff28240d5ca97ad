# One least-privilege execution role per function.
#
#   query, store: read the bucket; write only the shared index cache
#                 (aether/... and <ULID>/aether-index-header-v1). query may also
#                 invoke the store function for fan-out.
#   compact:      read, write and delete anywhere in the bucket (new blocks, marks,
#                 deletions, the lease and the index cache under aether/).
#   rule:         read the bucket and write its blocks (<ULID>/...) and its state
#                 (aether/rule/...); never delete.
# Each function writes only to its own log group.

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "fn" {
  for_each = local.functions

  name               = "${local.function_names[each.key]}-lambda"
  description        = "Execution role of the ${local.function_names[each.key]} Lambda function"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

locals {
  # Object ARNs each function may write (s3:PutObject).
  put_resources = {
    query = [
      "${local.bucket_arn}/aether/*",
      "${local.bucket_arn}/*/aether-index-header-v1",
    ]
    store = [
      "${local.bucket_arn}/aether/*",
      "${local.bucket_arn}/*/aether-index-header-v1",
    ]
    compact = ["${local.bucket_arn}/*"]
    # Blocks live at <ULID>/..., a prefix IAM cannot narrow further.
    rule = ["${local.bucket_arn}/*"]
  }
  may_delete = { query = false, store = false, compact = true, rule = false }

  # Built from the name, not taken from the function resource: the function
  # depends on its role's policy, so the reverse reference would be a cycle.
  store_function_arn = "arn:${data.aws_partition.current.partition}:lambda:${local.region}:${data.aws_caller_identity.current.account_id}:function:${local.function_names.store}"
}

data "aws_iam_policy_document" "fn" {
  for_each = local.functions

  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }

  statement {
    sid       = "ReadObjects"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/*"]
  }

  statement {
    sid       = "WriteObjects"
    actions   = ["s3:PutObject"]
    resources = local.put_resources[each.key]
  }

  # Multipart uploads of large chunk files: abort what a failed upload left.
  statement {
    sid       = "AbortMultipart"
    actions   = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = local.put_resources[each.key]
  }

  dynamic "statement" {
    for_each = local.may_delete[each.key] ? [1] : []
    content {
      sid       = "DeleteObjects"
      actions   = ["s3:DeleteObject"]
      resources = ["${local.bucket_arn}/*"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "query" ? [1] : []
    content {
      sid     = "InvokeStoreRead"
      actions = ["lambda:InvokeFunction"]
      resources = [
        local.store_function_arn,
        "${local.store_function_arn}:*",
      ]
    }
  }

  # A customer-managed SSE-KMS key: decrypt what is read, generate data keys for writes.
  dynamic "statement" {
    for_each = var.kms_key_arn != null ? [1] : []
    content {
      sid       = "UseBucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn[each.key].arn}:*"]
  }
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.functions

  name   = "${local.function_names[each.key]}-access"
  role   = aws_iam_role.fn[each.key].id
  policy = data.aws_iam_policy_document.fn[each.key].json
}
