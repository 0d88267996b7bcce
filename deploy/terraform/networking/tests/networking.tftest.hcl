# Offline plan-and-apply against a mocked AWS provider: no account, no network.
# Asserts the shape the rest of the deployment relies on.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = {
      names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mock"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/vpc/mock/flow-logs"
    }
  }
  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    }
  }
}

variables {
  environment = "prod"
  aws_region  = "eu-west-1"
}

# The defaults, applied once and checked for everything that needs no other input (each run
# plans and applies the whole stack again, seconds each).
run "defaults" {
  command = apply

  # Two AZs, two public and two private subnets.
  assert {
    condition     = length(aws_subnet.public) == 2 && length(aws_subnet.private) == 2
    error_message = "expected exactly two public and two private subnets"
  }
  assert {
    condition     = length(distinct(aws_subnet.private[*].availability_zone)) == 2 && length(distinct(aws_subnet.public[*].availability_zone)) == 2
    error_message = "the subnets of each tier must be spread over two distinct AZs"
  }
  assert {
    condition     = toset(aws_subnet.private[*].availability_zone) == toset(["eu-west-1a", "eu-west-1b"])
    error_message = "the first two available AZs must be used when none are given"
  }
  assert {
    condition     = alltrue([for s in concat(aws_subnet.public, aws_subnet.private) : !s.map_public_ip_on_launch])
    error_message = "no subnet may hand out public IPs automatically"
  }
  assert {
    condition     = alltrue([for c in concat(aws_subnet.public[*].cidr_block, aws_subnet.private[*].cidr_block) : cidrsubnet(c, 0, 0) == c && startswith(c, "10.20.")])
    error_message = "subnets must be carved out of the VPC CIDR"
  }
  assert {
    condition     = length(distinct(concat(aws_subnet.public[*].cidr_block, aws_subnet.private[*].cidr_block))) == 4
    error_message = "subnet CIDRs must not overlap"
  }
  assert {
    condition     = output.private_subnet_ids == aws_subnet.private[*].id && length(output.public_subnet_ids) == 2
    error_message = "outputs must expose both subnet tiers for the other stacks"
  }

  # One NAT gateway per AZ by default.
  assert {
    condition     = length(aws_nat_gateway.main) == 2 && length(aws_eip.nat) == 2
    error_message = "expected one NAT gateway (and EIP) per AZ by default"
  }
  assert {
    condition     = toset(aws_nat_gateway.main[*].subnet_id) == toset(aws_subnet.public[*].id)
    error_message = "the NAT gateways must sit in the public subnets, one in each"
  }
  assert {
    condition     = aws_route.private_nat[0].nat_gateway_id == aws_nat_gateway.main[0].id && aws_route.private_nat[1].nat_gateway_id == aws_nat_gateway.main[1].id
    error_message = "each private route table must use the NAT gateway of its own AZ"
  }
  assert {
    condition     = aws_route.public_internet.gateway_id == aws_internet_gateway.main.id && aws_route.public_internet.destination_cidr_block == "0.0.0.0/0"
    error_message = "public subnets must route to the internet gateway"
  }

  # S3 gateway endpoint and flow logs.
  assert {
    condition     = aws_vpc_endpoint.s3.vpc_endpoint_type == "Gateway" && aws_vpc_endpoint.s3.service_name == "com.amazonaws.eu-west-1.s3"
    error_message = "expected an S3 gateway endpoint"
  }
  assert {
    condition     = toset(aws_vpc_endpoint.s3.route_table_ids) == toset(aws_route_table.private[*].id)
    error_message = "the S3 endpoint must serve both private route tables"
  }
  assert {
    condition     = aws_flow_log.vpc.vpc_id == aws_vpc.main.id && aws_flow_log.vpc.traffic_type == "ALL" && aws_flow_log.vpc.log_destination == aws_cloudwatch_log_group.flow_logs.arn
    error_message = "flow logs must record all traffic of the VPC into the log group"
  }
  assert {
    condition     = aws_cloudwatch_log_group.flow_logs.retention_in_days == 90 && aws_cloudwatch_log_group.flow_logs.kms_key_id == aws_kms_key.logs.arn
    error_message = "flow logs must expire and be encrypted with the stack's key"
  }
  assert {
    condition     = length(aws_default_security_group.default.ingress) == 0 && length(aws_default_security_group.default.egress) == 0
    error_message = "the default security group must allow nothing"
  }
  assert {
    condition     = output.default_tags["Environment"] == "prod" && output.default_tags["Project"] == "mindproject" && output.default_tags["Stack"] == "networking"
    error_message = "resources must carry the Project and Environment tags"
  }
}

run "single_nat_gateway_saves_cost" {
  command = apply

  variables {
    environment        = "dev"
    single_nat_gateway = true
  }

  assert {
    condition     = length(aws_nat_gateway.main) == 1 && length(aws_eip.nat) == 1
    error_message = "single_nat_gateway must create exactly one NAT gateway"
  }
  assert {
    condition     = alltrue([for r in aws_route.private_nat : r.nat_gateway_id == aws_nat_gateway.main[0].id])
    error_message = "both private route tables must use the single NAT gateway"
  }
}

run "explicit_availability_zones" {
  command = plan

  variables {
    availability_zones = ["eu-west-1b", "eu-west-1c"]
  }

  assert {
    condition     = aws_subnet.private[0].availability_zone == "eu-west-1b" && aws_subnet.private[1].availability_zone == "eu-west-1c"
    error_message = "explicit availability_zones must be honoured"
  }
}

run "rejects_three_azs" {
  command = plan

  variables {
    availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  }

  expect_failures = [var.availability_zones]
}

run "rejects_bad_environment_name" {
  command = plan

  variables {
    environment = "Prod_1"
  }

  expect_failures = [var.environment]
}

run "rejects_tiny_vpc" {
  command = plan

  variables {
    vpc_cidr = "10.0.0.0/26"
  }

  expect_failures = [var.vpc_cidr]
}
