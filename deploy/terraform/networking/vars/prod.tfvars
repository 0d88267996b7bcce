environment        = "prod"
aws_region         = "eu-west-1"
vpc_cidr           = "10.30.0.0/16"
availability_zones = ["eu-west-1a", "eu-west-1b"] # pinned: the subnets never move
single_nat_gateway = false                        # one NAT gateway per AZ: an AZ outage does not cut the other AZ off

flow_log_retention_days = 365
flow_log_traffic_type   = "ALL"
