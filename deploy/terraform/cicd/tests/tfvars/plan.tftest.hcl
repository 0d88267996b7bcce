# Plan the stack with an environment's tfvars: `terraform test -test-directory=tests/tfvars
# -var-file=vars/<env>.tfvars` (tests/deploy/test_terraform.py runs it for dev and prod).
# Catches tfvars that name unknown variables or fail a validation. Mocked provider, offline.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"] }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
}

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
      alarm_names             = ["mindproject-test-5xx-rate"]
      service_url             = "http://mindproject-test.eu-west-1.elb.amazonaws.com"
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
      service_url            = "http://mindproject-dev.eu-west-1.elb.amazonaws.com"
      smoke_token_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mindproject/dev/smoke-device-token-AbCdEf"
    }
  }
}

variables {
  state_bucket = "mindproject-tfstate-123456789012-eu-west-1"
}

run "plan_with_environment_tfvars" {
  command = plan

  assert {
    condition     = length(aws_codepipeline.app.stage) == (var.preprod_environment == "" ? 4 : 7)
    error_message = "dev: build, deploy, smoke test; elsewhere the gated seven-stage pipeline"
  }
  assert {
    condition     = var.environment == "dev" || contains([for s in aws_codepipeline.app.stage : s.action[0].provider], "Manual")
    error_message = "every environment but dev waits for a manual approval"
  }
}
