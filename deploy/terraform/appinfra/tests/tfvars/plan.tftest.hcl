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
  target = data.terraform_remote_state.networking
  values = {
    outputs = {
      vpc_id             = "vpc-0123456789abcdef0"
      public_subnet_ids  = ["subnet-public-a", "subnet-public-b"]
      private_subnet_ids = ["subnet-private-a", "subnet-private-b"]
    }
  }
}

variables {
  state_bucket = "mindproject-tfstate-123456789012-eu-west-1"
  image_tag    = "0123abc"
}

run "plan_with_environment_tfvars" {
  command = plan

  assert {
    condition     = aws_ecs_service.app.desired_count >= 2 && aws_appautoscaling_target.app.min_capacity >= 2
    error_message = "every environment runs at least two tasks, one per AZ"
  }
  assert {
    condition     = aws_lb_target_group.app["blue"].health_check[0].path == "/healthz"
    error_message = "every environment health-checks /healthz"
  }
}
