# Example root module: Aether on AWS with the seed's retention (raw 30 days, 5m
# downsampled 180 days, 1h downsampled 1 year).
#
#   cargo lambda build --release --output-format zip   # at the repository root
#   cd infra/examples/basic
#   terraform init
#   terraform apply -var bucket_name=my-org-aether-metrics
#
# Credentials come from your AWS environment (profile, SSO, environment
# variables); nothing in these files holds a key.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "app.kubernetes.io/part-of" = "aether"
      "managed-by"                = "terraform"
    }
  }
}

module "aether" {
  source = "../../modules/aether"

  name_prefix   = var.name_prefix
  bucket_name   = var.bucket_name
  artifacts_dir = var.artifacts_dir
  architecture  = var.architecture

  # The seed's retention. The bucket's lifecycle rules never expire blocks by
  # object age (see the module's main.tf): the compactor applies these.
  retention_raw = "30d"
  retention_5m  = "180d"
  retention_1h  = "1y"

  abort_incomplete_multipart_days = 3
  sse_algorithm                   = "aws:kms"
  function_url_auth_type          = "AWS_IAM"
  compact_schedule                = "rate(5 minutes)"
  rule_schedule                   = "rate(1 minute)"

  rule_files    = var.rule_files
  alertmanagers = var.alertmanagers
  rule_labels   = { rule_replica = "lambda" }

  log_retention_days = 30
}
