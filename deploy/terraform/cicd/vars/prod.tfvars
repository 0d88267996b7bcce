environment = "prod"
aws_region  = "eu-west-1"

repository_id   = "your-org/mindproject"
branch          = "main"
source_provider = "GitHub"

codebuild_compute_type = "BUILD_GENERAL1_MEDIUM"
force_destroy_buckets  = false
log_retention_days     = 90

# Used when the appinfra stack runs with deployment_strategy = "blue_green".
blue_green_deployment_config        = "CodeDeployDefault.ECSCanary10Percent5Minutes"
blue_green_termination_wait_minutes = 30
