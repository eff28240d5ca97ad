output "query_function_url" {
  description = "Base URL of the Prometheus HTTP API (append api/v1/query, ...). With AWS_IAM auth, sign requests with SigV4 (service \"lambda\")."
  value       = aws_lambda_function_url.query.function_url
}

output "bucket_name" {
  description = "The bucket holding the blocks (use it in objstore YAML for sidecars and tools)."
  value       = aws_s3_bucket.blocks.bucket
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.blocks.arn
}

output "objstore_config" {
  description = "The Thanos objstore YAML the functions use (no keys: credentials come from the environment)."
  value       = local.objstore_config
}

output "function_names" {
  description = "Lambda function names by role (query, store, compact, rule)."
  value       = { for k, f in aws_lambda_function.fn : k => f.function_name }
}

output "function_arns" {
  description = "Lambda function ARNs by role."
  value       = { for k, f in aws_lambda_function.fn : k => f.arn }
}

output "role_arns" {
  description = "Execution role ARNs by role."
  value       = { for k, r in aws_iam_role.fn : k => r.arn }
}

output "log_groups" {
  description = "CloudWatch log group names by role."
  value       = { for k, g in aws_cloudwatch_log_group.fn : k => g.name }
}

output "query_invoke_policy_json" {
  description = "An IAM policy that lets a principal (Grafana's role, a user) call the query Function URL when its auth is AWS_IAM."
  value = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["lambda:InvokeFunctionUrl"]
      Resource = aws_lambda_function.fn["query"].arn
      Condition = {
        StringEquals = { "lambda:FunctionUrlAuthType" = "AWS_IAM" }
      }
    }]
  })
}
