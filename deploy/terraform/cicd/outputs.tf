output "pipeline_name" {
  description = "CodePipeline name (`aws codepipeline start-pipeline-execution --name ...`)."
  value       = aws_codepipeline.app.name
}

output "pipeline_console_url" {
  description = "The pipeline in the AWS console."
  value       = "https://${var.aws_region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/${aws_codepipeline.app.name}/view?region=${var.aws_region}"
}

output "connection_arn" {
  description = "Source connection; a newly created one is PENDING until approved in the console."
  value       = local.connection_arn
}

output "codebuild_project" {
  description = "CodeBuild project name."
  value       = aws_codebuild_project.app.name
}

output "deployment_strategy" {
  description = "How the Deploy stage rolls out: rolling (ECS) or blue_green (CodeDeploy)."
  value       = local.app.deployment_strategy
}

output "codedeploy_application" {
  description = "CodeDeploy application (blue_green only, else null)."
  value       = local.blue_green ? aws_codedeploy_app.app[0].name : null
}

output "service_url" {
  description = "Base URL of the service (from the appinfra stack)."
  value       = local.app.service_url
}

output "default_tags" {
  description = "Tags the provider applies to every resource of this stack."
  value       = local.tags
}

output "stage_names" {
  description = "The pipeline's stages in order (gated: build once, deploy and smoke-test preprod, approve, promote the digest, deploy)."
  value       = [for s in local.stages : s.name]
}
