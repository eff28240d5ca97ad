# Offline tests of the module with a mocked AWS provider (no credentials, no
# network): `terraform test -var artifacts_dir=DIR` in infra/modules/aether, where
# DIR holds <bin>/bootstrap.zip files (any content). Run by
# tests/scripts/validate-deploy.sh when an AWS provider mirror is available.

mock_provider "aws" {
  # Values the provider validates (JSON policies, ARNs) or that names are built from.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition  = "aws"
      dns_suffix = "amazonaws.com"
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::aether-test-bucket"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/aether"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/aether"
    }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      arn = "arn:aws:lambda:eu-west-1:123456789012:function:aether"
    }
  }
  mock_resource "aws_cloudwatch_event_rule" {
    defaults = {
      arn = "arn:aws:events:eu-west-1:123456789012:rule/aether"
    }
  }
}

variables {
  bucket_name = "aether-test-bucket"
}

run "least_privilege_and_defaults" {
  command = apply

  # query and store write only the shared index cache, never delete.
  assert {
    condition = alltrue(flatten([
      for f in ["query", "store"] : [
        for s in data.aws_iam_policy_document.fn[f].statement : [
          for r in(contains(s.actions, "s3:PutObject") ? s.resources : []) :
          endswith(r, "/aether/*") || endswith(r, "/*/aether-index-header-v1")
        ]
      ]
    ]))
    error_message = "query/store may put objects only under aether/ and */aether-index-header-v1."
  }

  assert {
    condition = alltrue(flatten([
      for f in ["query", "store", "rule"] : [
        for s in data.aws_iam_policy_document.fn[f].statement : !contains(s.actions, "s3:DeleteObject")
      ]
    ]))
    error_message = "only compact may delete objects."
  }

  assert {
    condition     = anytrue([for s in data.aws_iam_policy_document.fn["compact"].statement : contains(s.actions, "s3:DeleteObject")])
    error_message = "compact must be able to delete blocks."
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.fn["query"].statement : s if contains(s.actions, "lambda:InvokeFunction")]) == 1
    error_message = "query must be able to invoke the store function."
  }

  assert {
    condition = alltrue(flatten([
      for f in ["store", "compact", "rule"] : [
        for s in data.aws_iam_policy_document.fn[f].statement : !contains(s.actions, "lambda:InvokeFunction")
      ]
    ]))
    error_message = "only query invokes other functions."
  }

  assert {
    condition     = aws_lambda_function_url.query.authorization_type == "AWS_IAM" && aws_lambda_function_url.query.invoke_mode == "RESPONSE_STREAM"
    error_message = "the query Function URL is AWS_IAM and streams by default."
  }

  assert {
    condition = alltrue([
      for f in aws_lambda_function.fn : f.runtime == "provided.al2023" && f.handler == "bootstrap" && f.architectures == tolist(["x86_64"])
    ])
    error_message = "functions run provided.al2023 / bootstrap / x86_64 by default."
  }

  assert {
    condition     = length(aws_lambda_function.fn) == 4 && length(aws_cloudwatch_log_group.fn) == 4
    error_message = "four functions, each with its own log group."
  }

  assert {
    condition = (
      aws_lambda_function.fn["query"].environment[0].variables["AETHER_STORE_FUNCTION"] == "aether-store" &&
      aws_lambda_function.fn["compact"].environment[0].variables["AETHER_RETENTION_RAW"] == "30d" &&
      aws_lambda_function.fn["compact"].environment[0].variables["AETHER_RETENTION_1H"] == "1y" &&
      aws_lambda_function.fn["rule"].environment[0].variables["AETHER_LABELS"] == "rule_replica=\"lambda\"" &&
      aws_lambda_function.fn["query"].environment[0].variables["AETHER_LAMBDA_STREAMING"] == "true" &&
      aws_lambda_function.fn["query"].environment[0].variables["AETHER_QUERY_TIMEOUT"] == "55s" &&
      aws_lambda_function.fn["query"].environment[0].variables["AETHER_REPLICA_LABELS"] == "replica,rule_replica"
    )
    error_message = "function environment as documented."
  }

  assert {
    condition     = !strcontains(aws_lambda_function.fn["store"].environment[0].variables["AETHER_OBJSTORE_CONFIG"], "access_key")
    error_message = "the objstore config holds no keys."
  }

  assert {
    condition     = aws_cloudwatch_event_rule.schedule["compact"].schedule_expression == "rate(5 minutes)" && aws_cloudwatch_event_rule.schedule["rule"].schedule_expression == "rate(1 minute)"
    error_message = "compact every 5 minutes, rule every minute."
  }

  assert {
    condition     = aws_s3_bucket_public_access_block.blocks.block_public_policy && aws_s3_bucket_public_access_block.blocks.restrict_public_buckets
    error_message = "public access is blocked."
  }

  assert {
    condition = alltrue([
      for r in aws_s3_bucket_lifecycle_configuration.blocks.rule : alltrue([for e in r.expiration : e.days == null || e.days == 0])
    ])
    error_message = "no lifecycle rule expires current objects by age."
  }
}

run "without_rule" {
  command = apply

  variables {
    enable_rule = false
  }

  assert {
    condition     = !contains(keys(aws_lambda_function.fn), "rule") && !contains(keys(aws_cloudwatch_event_rule.schedule), "rule")
    error_message = "enable_rule = false creates no rule function or schedule."
  }
}

run "buffered_url" {
  command = apply

  variables {
    function_url_invoke_mode = "BUFFERED"
  }

  assert {
    condition     = aws_lambda_function.fn["query"].environment[0].variables["AETHER_LAMBDA_STREAMING"] == "false"
    error_message = "a BUFFERED URL tells the function not to stream."
  }
}

run "refuses_archive_storage_class" {
  command = plan

  variables {
    transition_storage_class = "GLACIER"
  }

  expect_failures = [var.transition_storage_class]
}

run "refuses_bad_values" {
  command = plan

  variables {
    architecture           = "arm"
    function_url_auth_type = "PUBLIC"
    retention_raw          = "30 days"
    log_retention_days     = 10
  }

  expect_failures = [
    var.architecture,
    var.function_url_auth_type,
    var.retention_raw,
    var.log_retention_days,
  ]
}
