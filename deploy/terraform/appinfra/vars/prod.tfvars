environment = "prod"
aws_region  = "eu-west-1"

# HTTPS is required outside dev (variable validation). Either an ACM certificate of this region:
# certificate_arn = "arn:aws:acm:eu-west-1:<account-id>:certificate/<id>"
# or, as here, a Route 53 zone: a managed certificate validated by DNS and the service's name.
# REPLACE both with your zone and name (bootstrap.sh refuses to apply the example values).
route53_zone_id = "ZREPLACEWITHYOURZONEID"
domain_name     = "api.example.com"
ssl_policy      = "ELBSecurityPolicy-TLS13-1-2-2021-06"

# Alarms must reach someone outside dev: an address (confirm the subscription mail) and/or an
# existing SNS topic of your on-call tooling. REPLACE the example.
alarm_email = "oncall@example.com"
# alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:<account-id>:pagerduty"

desired_count = 2
min_tasks     = 2
max_tasks     = 20
task_cpu      = 1024
task_memory   = 2048
workers       = 2

alb_idle_timeout_seconds     = 900
deregistration_delay_seconds = 300
enable_deletion_protection   = true
force_destroy_buckets        = false
log_retention_days           = 90
access_logs_retention_days   = 365

noncurrent_version_retention_days = 30
abort_incomplete_multipart_days   = 3
# upload_retention_days = 400

deployment_strategy = "blue_green"

# Edge and operator access.
enable_waf             = true
enable_execute_command = true

# Signing keys: current + previous, both from Secrets Manager; a 30-day restore window.
previous_signing_keys_secret = true
secret_recovery_window_days  = 30

# Fleet mode (issue 12): Aurora PostgreSQL Serverless v2 index, Multi-AZ.
enable_index_database = false
db_instances          = 2
db_min_acu            = 0.5
db_max_acu            = 16

# Second region: uploads (and database snapshots) replicated to the dr environment, DNS
# failover on /readyz (docs/runbook.md).
dr_role        = "primary"
dr_region      = "eu-central-1"
dr_environment = "dr"
