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
  assert {
    condition     = var.environment == "dev" || (length(aws_lb_listener.https) == 1 && length(aws_lb_listener.http_forward) == 0)
    error_message = "every environment but dev serves HTTPS only (HTTP redirects)"
  }
  assert {
    condition     = var.environment == "dev" || var.alarm_email != "" || var.alarm_sns_topic_arn != ""
    error_message = "every environment but dev has an alarm subscriber"
  }
  assert {
    condition     = var.environment != "prod" || (var.dr_role == "primary" && length(aws_s3_bucket_replication_configuration.uploads) == 1 && length(aws_route53_record.failover) == 1)
    error_message = "prod replicates to the dr region and has a failover record"
  }
  assert {
    condition     = var.environment != "dr" || (var.dr_role == "secondary" && [for r in aws_route53_record.failover : r.failover_routing_policy[0].type] == ["SECONDARY"])
    error_message = "dr is the secondary of the failover pair"
  }
}
