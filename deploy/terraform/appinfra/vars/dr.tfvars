# Disaster-recovery environment: the prod service, warm, in a second region. It receives the
# uploads (two-way S3 replication), database snapshots and the images (ECR replication) of prod,
# and takes traffic through the Route 53 failover record when prod's /readyz fails.
# docs/runbook.md is the procedure.
environment = "dr"
aws_region  = "eu-central-1"

# Same zone and name as prod: the failover record pair (REPLACE the examples).
route53_zone_id = "ZREPLACEWITHYOURZONEID"
domain_name     = "api.example.com"
alarm_email     = "oncall@example.com"

# Warm standby: two tasks, scaled out like prod when traffic arrives.
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

# Deployed by `IMAGE_TAG=<prod's tag> ./bootstrap.sh -e dr -a create` (and in a failover,
# docs/runbook.md), not by the pipeline: rolling is enough.
deployment_strategy = "rolling"
# The images prod ran, replicated by ECR from eu-west-1.
image_repository_name = "mindproject/prod"

enable_waf                   = true
enable_execute_command       = true
previous_signing_keys_secret = true
secret_recovery_window_days  = 30

enable_index_database = false
db_instances          = 2
db_max_acu            = 16

dr_role        = "secondary"
dr_region      = "eu-west-1"
dr_environment = "prod"
