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

run "plan_with_environment_tfvars" {
  command = plan

  assert {
    condition     = length(aws_subnet.private) == 2 && length(aws_subnet.public) == 2
    error_message = "every environment gets two public and two private subnets"
  }
  assert {
    condition     = length(aws_nat_gateway.main) == (var.single_nat_gateway ? 1 : 2)
    error_message = "NAT gateways must follow single_nat_gateway"
  }
}
