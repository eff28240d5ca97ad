# The four functions (provided.al2023, one cargo-lambda binary each), their log
# groups, and the query function's URL.

resource "aws_cloudwatch_log_group" "fn" {
  for_each = local.functions

  #checkov:skip=CKV_AWS_158:Log groups use CloudWatch's default encryption unless kms_key_arn is set (its key policy must then allow logs.amazonaws.com).
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (default 30 days); a year of debug logs is a cost, not a control.
  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_lambda_function" "fn" {
  for_each = local.functions

  #checkov:skip=CKV_AWS_117:The functions only talk to S3, Lambda and Alertmanager over TLS with IAM auth; a VPC would add NAT cost without a control. Users who need one add vpc_config.
  #checkov:skip=CKV_AWS_116:Invocations are synchronous (query, store) or scheduled ticks that the next schedule repeats (compact, rule, with retries off): a dead-letter queue would hold nothing worth replaying.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the user owns; the zips are built from source by cargo-lambda.
  #checkov:skip=CKV_AWS_50:X-Ray tracing is the tracing_mode variable (default PassThrough, no X-Ray cost).
  #checkov:skip=CKV_AWS_173:The environment holds no secret (the objstore config has no keys; the role supplies credentials); it is encrypted with kms_key_arn when set, else with the AWS-managed key.
  #checkov:skip=CKV_AWS_115:Reserved concurrency is the reserved_concurrency variable (compact and rule default to 1; query and store to the account pool so queries are not capped by default).
  function_name = local.function_names[each.key]
  description   = each.value.description
  role          = aws_iam_role.fn[each.key].arn

  filename         = "${var.artifacts_dir}/${each.value.bin}/bootstrap.zip"
  source_code_hash = filebase64sha256("${var.artifacts_dir}/${each.value.bin}/bootstrap.zip")
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]

  memory_size                    = var.memory_mb[each.key]
  timeout                        = var.timeout_s[each.key]
  reserved_concurrent_executions = var.reserved_concurrency[each.key]
  kms_key_arn                    = var.kms_key_arn

  ephemeral_storage {
    size = each.key == "compact" ? var.ephemeral_storage_mb : 512
  }

  environment {
    variables = merge(local.common_env, local.function_env[each.key])
  }

  tracing_config {
    mode = var.tracing_mode
  }

  tags = var.tags

  depends_on = [
    aws_cloudwatch_log_group.fn,
    aws_iam_role_policy.fn,
  ]
}

# Scheduled functions: no retries. A failed compaction pass or rule tick is
# followed by the next scheduled one (compact resumes where it stopped; a rule
# tick evaluates at its own time), and a late retry would only overlap it.
resource "aws_lambda_function_event_invoke_config" "scheduled" {
  for_each = { for k, v in local.functions : k => v if contains(["compact", "rule"], k) }

  function_name                = aws_lambda_function.fn[each.key].function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

# The Prometheus HTTP API: https://<id>.lambda-url.<region>.on.aws/api/v1/query...
resource "aws_lambda_function_url" "query" {
  function_name      = aws_lambda_function.fn["query"].function_name
  authorization_type = var.function_url_auth_type
  invoke_mode        = var.function_url_invoke_mode
}

# A public URL (auth NONE) also needs a resource policy that lets anyone call it.
resource "aws_lambda_permission" "query_url_public" {
  count = var.function_url_auth_type == "NONE" ? 1 : 0

  statement_id           = "FunctionURLAllowPublicAccess"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.fn["query"].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}
