environment = "prod"
aws_region  = "eu-west-1"

# Required in practice for production: devices send bearer tokens.
# certificate_arn = "arn:aws:acm:eu-west-1:<account-id>:certificate/<id>"
certificate_arn = ""

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

# alarm_email = "oncall@example.com"

deployment_strategy = "blue_green"
