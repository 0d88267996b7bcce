environment = "dev"
aws_region  = "eu-west-1"

# The repository the pipeline builds (fork of MindProject), and its branch.
# The dev pipeline deploys a work branch straight to dev (no approval: dev only). main is
# delivered by prod's gated pipeline, which deploys dev first: do not point this one at main.
repository_id   = "your-org/mindproject"
branch          = "dev"
source_provider = "GitHub"
# connection_arn = "arn:aws:codeconnections:eu-west-1:<account-id>:connection/<id>"

codebuild_compute_type = "BUILD_GENERAL1_MEDIUM"
force_destroy_buckets  = true
log_retention_days     = 14
