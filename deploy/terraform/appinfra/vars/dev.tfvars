environment = "dev"
aws_region  = "eu-west-1"

# No certificate: plain HTTP on port 80. Set an ACM certificate ARN to get HTTPS.
certificate_arn = ""

desired_count = 2
min_tasks     = 2
max_tasks     = 4
task_cpu      = 512
task_memory   = 1024

# Throwaway environment: quick drains, deletable buckets and ALB, short logs.
deregistration_delay_seconds = 60
enable_deletion_protection   = false
force_destroy_buckets        = true
log_retention_days           = 14
access_logs_retention_days   = 14
log_level                    = "debug"

deployment_strategy = "rolling"

# Throwaway: a destroyed signing-key secret is deleted at once, so create works again the same day.
secret_recovery_window_days = 0
