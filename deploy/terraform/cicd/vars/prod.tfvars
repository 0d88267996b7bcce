environment = "prod"
aws_region  = "eu-west-1"

repository_id   = "your-org/mindproject"
branch          = "main"
source_provider = "GitHub"

codebuild_compute_type = "BUILD_GENERAL1_MEDIUM"
force_destroy_buckets  = false
log_retention_days     = 90

# Gated delivery: every push to main is tested, built once, scanned, deployed to dev and
# smoke-tested there; after a manual approval the same image digest goes to prod.
preprod_environment = "dev"
scan_fail_severity  = "HIGH"
# approval_sns_topic_arn = "arn:aws:sns:eu-west-1:<account-id>:releases"

# Used when the appinfra stack runs with deployment_strategy = "blue_green".
blue_green_deployment_config        = "CodeDeployDefault.ECSCanary10Percent5Minutes"
blue_green_termination_wait_minutes = 30
