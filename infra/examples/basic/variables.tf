variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "aether"
}

variable "bucket_name" {
  description = "Globally unique name of the bucket to create for the blocks."
  type        = string
}

variable "artifacts_dir" {
  description = "cargo-lambda's output directory (holds <bin>/bootstrap.zip)."
  type        = string
  default     = "../../../target/lambda"
}

variable "architecture" {
  description = "x86_64 or arm64, matching how the zips were built."
  type        = string
  default     = "x86_64"
}

variable "rule_files" {
  description = "Prometheus rule files for the rule function (uploaded to aether/rules/)."
  type        = list(string)
  default     = []
}

variable "alertmanagers" {
  description = "Alertmanager URLs for the rule function."
  type        = list(string)
  default     = []
}
