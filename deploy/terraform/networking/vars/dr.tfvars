# Disaster-recovery region: the same network as prod, in a second region (docs/runbook.md).
environment        = "dr"
aws_region         = "eu-central-1"
vpc_cidr           = "10.40.0.0/16"
availability_zones = ["eu-central-1a", "eu-central-1b"]
single_nat_gateway = false

flow_log_retention_days = 365
flow_log_traffic_type   = "ALL"
