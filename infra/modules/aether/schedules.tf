# EventBridge rules that run one compaction pass and one rule evaluation tick per
# invocation. The compactor's lease in the bucket keeps two passes from working on
# the same bucket at once, should one outlast the interval.

locals {
  schedules = merge(
    { compact = var.compact_schedule },
    var.enable_rule ? { rule = var.rule_schedule } : {},
  )
}

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each = local.schedules

  name                = "${local.function_names[each.key]}-schedule"
  description         = "Runs ${local.function_names[each.key]} on ${each.value}"
  schedule_expression = each.value
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.schedules

  rule = aws_cloudwatch_event_rule.schedule[each.key].name
  arn  = aws_lambda_function.fn[each.key].arn

  retry_policy {
    maximum_retry_attempts       = 0
    maximum_event_age_in_seconds = 60
  }
}

resource "aws_lambda_permission" "schedule" {
  for_each = local.schedules

  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}
