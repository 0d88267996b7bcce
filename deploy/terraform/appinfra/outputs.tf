output "service_url" {
  description = "Base URL of the service (append /api/devices/...)."
  value       = local.service_url
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (point a CNAME or alias record at it)."
  value       = aws_lb.main.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the load balancer, for Route 53 alias records."
  value       = aws_lb.main.zone_id
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.main.name
}

output "service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.app.name
}

output "task_family" {
  description = "Task definition family; the pipeline registers new revisions in it."
  value       = aws_ecs_task_definition.app.family
}

output "task_definition_arn" {
  description = "Task definition revision Terraform registered last."
  value       = aws_ecs_task_definition.app.arn
}

output "container_name" {
  description = "Name of the service container in the task definition."
  value       = local.container_name
}

output "container_port" {
  description = "Port the service container listens on."
  value       = var.container_port
}

output "ecr_repository_url" {
  description = "ECR repository the images are pushed to."
  value       = aws_ecr_repository.app.repository_url
}

output "ecr_repository_arn" {
  description = "ARN of the ECR repository."
  value       = aws_ecr_repository.app.arn
}

output "ecr_repository_name" {
  description = "Name of the ECR repository."
  value       = aws_ecr_repository.app.name
}

output "upload_bucket" {
  description = "Bucket holding the uploads."
  value       = aws_s3_bucket.uploads.id
}

output "storage_url" {
  description = "MINDPROJECT_STORAGE value of the service."
  value       = local.storage_url
}

output "logs_bucket" {
  description = "Bucket holding ALB and S3 access logs."
  value       = aws_s3_bucket.logs.id
}

output "logs_bucket_arn" {
  description = "ARN of the access-log bucket."
  value       = aws_s3_bucket.logs.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the service."
  value       = aws_cloudwatch_log_group.app.name
}

output "signing_key_secret_arn" {
  description = "Secrets Manager secret holding MINDPROJECT_SECRET_KEY."
  value       = aws_secretsmanager_secret.signing_key.arn
}

output "task_role_arn" {
  description = "Role the service's code runs as."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "Role ECS uses to start the tasks."
  value       = aws_iam_role.execution.arn
}

output "deployment_strategy" {
  description = "rolling or blue_green; the cicd stack builds its deploy stage from it."
  value       = var.deployment_strategy
}

output "production_listener_arn" {
  description = "Listener carrying production traffic (HTTPS when a certificate is set, else HTTP)."
  value       = local.production_listener_arn
}

output "target_group_names" {
  description = "Target groups by colour (green only with blue_green)."
  value       = { for k, tg in aws_lb_target_group.app : k => tg.name }
}

output "alarm_names" {
  description = "CloudWatch alarms of the service; CodeDeploy rolls back when one fires."
  value       = concat([aws_cloudwatch_metric_alarm.http_5xx_rate.alarm_name, aws_cloudwatch_metric_alarm.latency.alarm_name, aws_cloudwatch_metric_alarm.p99_latency.alarm_name], [for a in aws_cloudwatch_metric_alarm.unhealthy_targets : a.alarm_name])
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

output "default_tags" {
  description = "Tags the provider applies to every resource of this stack."
  value       = local.tags
}

output "smoke_token_secret_arn" {
  description = "Secret holding the smoke-test device's token (read by the pipeline's smoke test)."
  value       = aws_secretsmanager_secret.smoke_token.arn
}

output "previous_signing_keys_secret_arn" {
  description = "Secret holding MINDPROJECT_PREVIOUS_SECRET_KEYS (null when previous_signing_keys_secret is off)."
  value       = one(aws_secretsmanager_secret.previous_signing_keys[*].arn)
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the service."
  value       = aws_cloudwatch_dashboard.app.dashboard_name
}

output "image_repository_url" {
  description = "Repository the task definition pulls from (the stack's own, or image_repository_name's)."
  value       = local.image_repository_url
}
