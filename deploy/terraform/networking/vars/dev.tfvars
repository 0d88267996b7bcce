environment        = "dev"
aws_region         = "eu-west-1"
vpc_cidr           = "10.20.0.0/16"
single_nat_gateway = true # one NAT gateway saves ~$33/month plus its public IPv4 address

flow_log_retention_days = 14
flow_log_traffic_type   = "REJECT"
