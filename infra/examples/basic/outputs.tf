output "query_url" {
  description = "Prometheus HTTP API of the query function (SigV4-signed requests)."
  value       = module.aether.query_function_url
}

output "bucket" {
  description = "The blocks bucket."
  value       = module.aether.bucket_name
}

output "objstore_config" {
  description = "objstore YAML for sidecars and `aether tools` (add keys only where no role supplies credentials)."
  value       = module.aether.objstore_config
}

output "function_names" {
  description = "Lambda functions by role."
  value       = module.aether.function_names
}
