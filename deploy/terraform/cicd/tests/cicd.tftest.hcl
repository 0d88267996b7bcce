# Offline apply against a mocked AWS provider. The appinfra stack's remote state is replaced by
# fixed outputs, once with a rolling and once with a blue/green service.

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
      deployment_strategy     = "rolling"
      cluster_name            = "mindproject-test"
      service_name            = "mindproject-test"
      task_family             = "mindproject-test"
      container_name          = "mindproject"
      container_port          = 5000
      ecr_repository_url      = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/test"
      ecr_repository_arn      = "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/test"
      task_role_arn           = "arn:aws:iam::123456789012:role/mindproject-test-task"
      execution_role_arn      = "arn:aws:iam::123456789012:role/mindproject-test-task-execution"
      logs_bucket             = "mindproject-test-logs-123456789012"
      production_listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mindproject-test/abc/def"
      target_group_names      = { blue = "mindproject-test-blue" }
      alarm_names             = ["mindproject-test-5xx-rate", "mindproject-test-latency", "mindproject-test-unhealthy-targets-blue"]
      service_url             = "http://mindproject-test-1234567890.eu-west-1.elb.amazonaws.com"
    }
  }
}

variables {
  environment   = "dev"
  aws_region    = "eu-west-1"
  state_bucket  = "mindproject-tfstate-123456789012-eu-west-1"
  repository_id = "example/mindproject"
}

# The defaults, applied once and checked for everything that needs no other input (each run
# plans and applies the whole stack again, seconds each).
run "rolling_defaults" {
  command = apply

  # The pipeline: source, build, deploy (rolling).
  assert {
    condition     = [for s in aws_codepipeline.app.stage : s.name] == ["Source", "Build", "Deploy", "SmokeTest"]
    error_message = "the dev pipeline must have Source, Build, Deploy and SmokeTest stages"
  }
  assert {
    condition     = aws_codepipeline.app.stage[0].action[0].configuration.FullRepositoryId == "example/mindproject" && aws_codepipeline.app.stage[0].action[0].configuration.BranchName == "main"
    error_message = "the source must be the configured repository and branch"
  }
  assert {
    condition     = aws_codepipeline.app.stage[1].action[0].provider == "CodeBuild" && aws_codepipeline.app.stage[1].action[0].configuration.ProjectName == aws_codebuild_project.app.name
    error_message = "the Build stage must run the CodeBuild project"
  }
  assert {
    condition     = strcontains(aws_codepipeline.app.stage[1].action[0].configuration.EnvironmentVariables, "#{SourceVariables.CommitId}")
    error_message = "the build must get the commit id to tag the image with"
  }
  assert {
    condition     = aws_codepipeline.app.stage[2].action[0].provider == "ECS" && aws_codepipeline.app.stage[2].action[0].configuration.FileName == "imagedefinitions.json" && aws_codepipeline.app.stage[2].action[0].configuration.ServiceName == "mindproject-test"
    error_message = "a rolling service must be deployed by the ECS action from imagedefinitions.json"
  }
  assert {
    condition     = length(aws_codedeploy_app.app) == 0 && length(aws_codedeploy_deployment_group.app) == 0
    error_message = "no CodeDeploy resources for a rolling service"
  }
  assert {
    condition     = aws_codebuild_project.app.source[0].buildspec == "deploy/buildspec.yml" && aws_codebuild_project.app.environment[0].privileged_mode
    error_message = "CodeBuild must use the repository's buildspec and may run docker"
  }
  assert {
    condition     = { for e in aws_codebuild_project.app.environment[0].environment_variable : e.name => e.value }["ECR_REPOSITORY_URL"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/test"
    error_message = "CodeBuild must push to the appinfra stack's repository"
  }
  assert {
    condition     = one(aws_codepipeline.app.artifact_store).encryption_key[0].type == "KMS"
    error_message = "pipeline artifacts must be encrypted with the stack's key"
  }
  assert {
    condition     = output.service_url == "http://mindproject-test-1234567890.eu-west-1.elb.amazonaws.com"
    error_message = "the service URL must be passed through"
  }

  # Least privilege (rolling).
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s.Resource if s.Sid == "PassTaskRoles"]) == ["arn:aws:iam::123456789012:role/mindproject-test-task", "arn:aws:iam::123456789012:role/mindproject-test-task-execution"]
    error_message = "the pipeline may pass only the service's two roles"
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s.Condition.StringEquals["iam:PassedToService"] if s.Sid == "PassTaskRoles"]) == "ecs-tasks.amazonaws.com"
    error_message = "the roles may be passed to ECS tasks only"
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s.Resource if s.Sid == "RollingDeploy"]) == "arn:aws:ecs:eu-west-1:123456789012:service/mindproject-test/mindproject-test"
    error_message = "the pipeline may update only the service"
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s.Resource if s.Sid == "TagNewTaskDefinitions"]) == "arn:aws:ecs:eu-west-1:123456789012:task-definition/mindproject-test:*"
    error_message = "the pipeline may tag only new revisions of the service's task definition family"
  }
  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.codebuild.policy).Statement : s.Resource if s.Sid == "PushImage"]) == "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/test"
    error_message = "CodeBuild may push to the service's repository only"
  }
  assert {
    condition = alltrue(flatten([for p in [aws_iam_role_policy.pipeline.policy, aws_iam_role_policy.codebuild.policy] : [
      for s in jsondecode(p).Statement : [for a in flatten([s.Action]) : !endswith(a, ":*") && a != "*"]
    ]]))
    error_message = "no wildcard actions in the pipeline's and the build's policies"
  }
  assert {
    condition = alltrue(flatten([for p in [aws_iam_role_policy.pipeline.policy, aws_iam_role_policy.codebuild.policy] : [
      for s in jsondecode(p).Statement : s.Resource != "*" || contains([["ecr:GetAuthorizationToken"], ["ecs:DescribeTaskDefinition"], ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"], ["ecs:DescribeTasks", "ecs:ListTasks"]], s.Action)
    ]]))
    error_message = "'*' resources only for actions that cannot be scoped"
  }
  assert {
    condition     = length([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s if startswith(s.Sid, "BlueGreen")]) == 0
    error_message = "no CodeDeploy permissions for a rolling service"
  }

  # The artifact bucket is private.
  assert {
    condition = (aws_s3_bucket_public_access_block.artifacts.block_public_acls && aws_s3_bucket_public_access_block.artifacts.block_public_policy
    && aws_s3_bucket_public_access_block.artifacts.ignore_public_acls && aws_s3_bucket_public_access_block.artifacts.restrict_public_buckets)
    error_message = "the artifact bucket must block public access"
  }
  assert {
    condition     = jsondecode(aws_s3_bucket_policy.artifacts.policy).Statement[0].Effect == "Deny" && jsondecode(aws_s3_bucket_policy.artifacts.policy).Statement[0].Condition.Bool["aws:SecureTransport"] == "false"
    error_message = "the artifact bucket must refuse non-TLS access"
  }
  assert {
    condition     = length(aws_codestarconnections_connection.source) == 1 && aws_codestarconnections_connection.source[0].provider_type == "GitHub"
    error_message = "a source connection is created when none is given"
  }
}

run "blue_green_through_codedeploy" {
  command = apply

  override_data {
    target = data.terraform_remote_state.appinfra
    values = {
      outputs = {
        deployment_strategy     = "blue_green"
        cluster_name            = "mindproject-test"
        service_name            = "mindproject-test"
        task_family             = "mindproject-test"
        container_name          = "mindproject"
        container_port          = 5000
        ecr_repository_url      = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/test"
        ecr_repository_arn      = "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/test"
        task_role_arn           = "arn:aws:iam::123456789012:role/mindproject-test-task"
        execution_role_arn      = "arn:aws:iam::123456789012:role/mindproject-test-task-execution"
        logs_bucket             = "mindproject-test-logs-123456789012"
        production_listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mindproject-test/abc/def"
        target_group_names      = { blue = "mindproject-test-blue", green = "mindproject-test-green" }
        alarm_names             = ["mindproject-test-5xx-rate", "mindproject-test-latency", "mindproject-test-unhealthy-targets-blue", "mindproject-test-unhealthy-targets-green"]
        service_url             = "https://api.example.com"
      }
    }
  }

  variables {
    connection_arn = "arn:aws:codeconnections:eu-west-1:123456789012:connection/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = aws_codepipeline.app.stage[2].action[0].provider == "CodeDeployToECS" && aws_codepipeline.app.stage[2].action[0].configuration.AppSpecTemplatePath == "appspec.yaml" && aws_codepipeline.app.stage[2].action[0].configuration.TaskDefinitionTemplatePath == "taskdef.json"
    error_message = "a blue/green service must be deployed by CodeDeploy from taskdef.json and appspec.yaml"
  }
  assert {
    condition     = aws_codedeploy_deployment_group.app[0].deployment_style[0].deployment_type == "BLUE_GREEN" && aws_codedeploy_deployment_group.app[0].ecs_service[0].service_name == "mindproject-test"
    error_message = "CodeDeploy must run blue/green deployments of the service"
  }
  assert {
    condition     = [for tg in aws_codedeploy_deployment_group.app[0].load_balancer_info[0].target_group_pair_info[0].target_group : tg.name] == ["mindproject-test-blue", "mindproject-test-green"]
    error_message = "CodeDeploy must shift traffic between the blue and green target groups"
  }
  assert {
    condition     = aws_codedeploy_deployment_group.app[0].auto_rollback_configuration[0].enabled && contains(aws_codedeploy_deployment_group.app[0].auto_rollback_configuration[0].events, "DEPLOYMENT_STOP_ON_ALARM") && length(aws_codedeploy_deployment_group.app[0].alarm_configuration[0].alarms) == 4
    error_message = "CodeDeploy must roll back on failure and on the service's alarms"
  }
  assert {
    condition     = length(aws_codestarconnections_connection.source) == 0 && aws_codepipeline.app.stage[0].action[0].configuration.ConnectionArn == "arn:aws:codeconnections:eu-west-1:123456789012:connection/11111111-2222-3333-4444-555555555555"
    error_message = "an existing connection must be used as given"
  }
  assert {
    condition     = length([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s if s.Sid == "RollingDeploy"]) == 0 && length([for s in jsondecode(aws_iam_role_policy.pipeline.policy).Statement : s if s.Sid == "BlueGreenDeploy"]) == 1
    error_message = "the pipeline role gets CodeDeploy permissions instead of ECS UpdateService"
  }
}

run "rejects_bad_repository_id" {
  command = plan

  variables {
    repository_id = "not a repo"
  }

  expect_failures = [var.repository_id]
}
