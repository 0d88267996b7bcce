# Gated delivery (issue 14), offline against a mocked provider: prod's pipeline builds once into
# dev, deploys and smoke-tests dev, waits for an approval, promotes the same digest, deploys prod.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mindproject-test-pipeline-123456789012" }
  }
  mock_resource "aws_codestarconnections_connection" {
    defaults = { arn = "arn:aws:codestar-connections:eu-west-1:123456789012:connection/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_codebuild_project" {
    defaults = { arn = "arn:aws:codebuild:eu-west-1:123456789012:project/mindproject-test" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/codebuild/mindproject-test" }
  }
}

override_data {
  target = data.terraform_remote_state.appinfra
  values = {
    outputs = {
      deployment_strategy     = "blue_green"
      cluster_name            = "mindproject-prod"
      service_name            = "mindproject-prod"
      task_family             = "mindproject-prod"
      container_name          = "mindproject"
      container_port          = 5000
      ecr_repository_url      = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/prod"
      ecr_repository_arn      = "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/prod"
      task_role_arn           = "arn:aws:iam::123456789012:role/mindproject-prod-task"
      execution_role_arn      = "arn:aws:iam::123456789012:role/mindproject-prod-task-execution"
      logs_bucket             = "mindproject-prod-logs-123456789012"
      production_listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mindproject-prod/abc/def"
      target_group_names      = { blue = "mindproject-prod-blue", green = "mindproject-prod-green" }
      alarm_names             = ["mindproject-prod-5xx-rate", "mindproject-prod-latency", "mindproject-prod-p99-latency", "mindproject-prod-unhealthy-targets-blue", "mindproject-prod-unhealthy-targets-green"]
      service_url             = "https://api.example.com"
      smoke_token_secret_arn  = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mindproject/prod/smoke-device-token-AbCdEf"
    }
  }
}

override_data {
  target = data.terraform_remote_state.preprod
  values = {
    outputs = {
      deployment_strategy    = "rolling"
      cluster_name           = "mindproject-dev"
      service_name           = "mindproject-dev"
      task_family            = "mindproject-dev"
      container_name         = "mindproject"
      container_port         = 5000
      ecr_repository_url     = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/dev"
      ecr_repository_arn     = "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/dev"
      task_role_arn          = "arn:aws:iam::123456789012:role/mindproject-dev-task"
      execution_role_arn     = "arn:aws:iam::123456789012:role/mindproject-dev-task-execution"
      service_url            = "http://mindproject-dev-1234567890.eu-west-1.elb.amazonaws.com"
      smoke_token_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mindproject/dev/smoke-device-token-AbCdEf"
    }
  }
}

variables {
  environment         = "prod"
  aws_region          = "eu-west-1"
  state_bucket        = "mindproject-tfstate-123456789012-eu-west-1"
  repository_id       = "example/mindproject"
  preprod_environment = "dev"
  connection_arn      = "arn:aws:codeconnections:eu-west-1:123456789012:connection/11111111-2222-3333-4444-555555555555"
}

run "prod_without_a_gate_is_refused" {
  command = plan

  variables {
    preprod_environment = ""
  }

  expect_failures = [var.preprod_environment]
}

run "unknown_scan_severity_is_refused" {
  command = plan

  variables {
    scan_fail_severity = "SEVERE"
  }

  expect_failures = [var.scan_fail_severity]
}

# The defaults, applied once and checked for everything that needs no other input (each run
# plans and applies the whole stack again, seconds each).
run "gated_defaults" {
  command = apply

  # Approval precedes prod and the digest is promoted.
  assert {
    condition     = [for s in aws_codepipeline.app.stage : s.name] == ["Source", "Build", "Deploy-dev", "SmokeTest-dev", "Approve-prod", "Promote-prod", "Deploy-prod"]
    error_message = "build once, deploy dev, smoke-test dev, approve, promote, deploy prod: in that order"
  }
  assert {
    condition     = aws_codepipeline.app.stage[4].action[0].category == "Approval" && aws_codepipeline.app.stage[4].action[0].provider == "Manual" && strcontains(aws_codepipeline.app.stage[4].action[0].configuration.CustomData, "#{BuildVariables.IMAGE_DIGEST}")
    error_message = "a manual approval naming the image digest that passed dev"
  }
  assert {
    condition     = length([for i, s in aws_codepipeline.app.stage : i if s.action[0].category == "Deploy" && strcontains(s.name, "prod") && i < 4]) == 0
    error_message = "nothing deploys to prod before the approval"
  }
  assert {
    condition     = aws_codepipeline.app.stage[2].action[0].provider == "ECS" && aws_codepipeline.app.stage[2].action[0].configuration.ServiceName == "mindproject-dev" && one(aws_codepipeline.app.stage[2].action[0].input_artifacts) == "build_output"
    error_message = "the build's image goes to dev first"
  }
  assert {
    condition     = aws_codepipeline.app.stage[3].action[0].provider == "CodeBuild" && aws_codepipeline.app.stage[3].action[0].configuration.ProjectName == aws_codebuild_project.smoke.name && { for e in aws_codebuild_project.smoke.environment[0].environment_variable : e.name => e.value }["MINDPROJECT_URL"] == "http://mindproject-dev-1234567890.eu-west-1.elb.amazonaws.com"
    error_message = "the smoke test runs against dev"
  }
  assert {
    condition     = { for e in aws_codebuild_project.app.environment[0].environment_variable : e.name => e.value }["ECR_REPOSITORY_URL"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/dev" && { for e in aws_codebuild_project.app.environment[0].environment_variable : e.name => e.value }["SCAN_FAIL_SEVERITY"] == "HIGH"
    error_message = "the image is built once, into dev's repository, with the scan gate"
  }
  assert {
    condition     = { for e in aws_codebuild_project.promote[0].environment[0].environment_variable : e.name => e.value }["SOURCE_REPOSITORY_URL"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/dev" && { for e in aws_codebuild_project.promote[0].environment[0].environment_variable : e.name => e.value }["ECR_REPOSITORY_URL"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/prod" && aws_codebuild_project.promote[0].source[0].buildspec == "deploy/buildspec-promote.yml"
    error_message = "the promotion copies the tested digest from dev's repository into prod's"
  }
  assert {
    condition     = aws_codepipeline.app.stage[6].action[0].provider == "CodeDeployToECS" && one(aws_codepipeline.app.stage[6].action[0].input_artifacts) == "promote_output" && aws_codepipeline.app.stage[6].action[0].configuration.Image1ArtifactName == "promote_output"
    error_message = "prod is deployed blue/green from the promoted artefacts"
  }
  assert {
    condition     = aws_codedeploy_deployment_group.app[0].auto_rollback_configuration[0].enabled && contains(aws_codedeploy_deployment_group.app[0].alarm_configuration[0].alarms, "mindproject-prod-p99-latency")
    error_message = "prod rolls back automatically on its alarms"
  }

  # No pipeline role reads a signing key.
  assert {
    condition = alltrue(flatten([for p in [aws_iam_role_policy.pipeline.policy, aws_iam_role_policy.codebuild.policy, aws_iam_role_policy.promote[0].policy] : [
      for s in jsondecode(p).Statement : [for a in flatten([s.Action]) : !startswith(a, "secretsmanager:")]
    ]]))
    error_message = "the build, promotion and pipeline roles must not read secrets"
  }
  assert {
    condition     = [for s in jsondecode(aws_iam_role_policy.smoke.policy).Statement : s.Resource if contains(flatten([s.Action]), "secretsmanager:GetSecretValue")] == ["arn:aws:secretsmanager:eu-west-1:123456789012:secret:mindproject/dev/smoke-device-token-AbCdEf"]
    error_message = "the smoke test may read the dev smoke device token, and no other secret"
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.promote[0].policy).Statement : s.Resource if s.Sid == "PullTestedImage"]) == "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/dev" && one([for s in jsondecode(aws_iam_role_policy.promote[0].policy).Statement : s.Resource if s.Sid == "PushPromotedImage"]) == "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/prod"
    error_message = "the promotion pulls from dev's repository and pushes to prod's only"
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s.Resource if s.Sid == "PreprodRollingDeploy"]) == "arn:aws:ecs:eu-west-1:123456789012:service/mindproject-dev/mindproject-dev"
    error_message = "the pipeline may update the dev service (preprod) and nothing else there"
  }
}
