data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "terraform_remote_state" "appinfra" {
  backend = "s3"

  config = {
    bucket = var.state_bucket
    key    = local.appinfra_state_key
    region = local.state_region
  }
}

# Gated delivery: the environment built into, deployed and smoke-tested before this one.
data "terraform_remote_state" "preprod" {
  count   = var.preprod_environment != "" ? 1 : 0
  backend = "s3"

  config = {
    bucket = var.state_bucket
    key    = var.preprod_appinfra_state_key != "" ? var.preprod_appinfra_state_key : "${var.project}/${var.preprod_environment}/appinfra.tfstate"
    region = local.state_region
  }
}

locals {
  name       = "${var.project}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  state_region       = var.state_region != "" ? var.state_region : var.aws_region
  appinfra_state_key = var.appinfra_state_key != "" ? var.appinfra_state_key : "${var.project}/${var.environment}/appinfra.tfstate"
  app                = data.terraform_remote_state.appinfra.outputs

  blue_green = local.app.deployment_strategy == "blue_green"
  gated      = var.preprod_environment != ""
  preprod    = local.gated ? data.terraform_remote_state.preprod[0].outputs : null
  # The image is built once, into the first environment the pipeline deploys.
  build_target = {
    for k in ["ecr_repository_url", "ecr_repository_arn", "task_family", "container_name", "container_port", "deployment_strategy", "service_url"] :
    k => tostring(local.gated ? local.preprod[k] : local.app[k])
  }
  smoke_token_secret_arn = try(local.gated ? local.preprod.smoke_token_secret_arn : local.app.smoke_token_secret_arn, "")
  connection_arn         = var.connection_arn != "" ? var.connection_arn : aws_codestarconnections_connection.source[0].arn

  service_arn = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:service/${local.app.cluster_name}/${local.app.service_name}"

  tags = merge(var.tags, {
    Project     = var.project
    Environment = var.environment
    Stack       = "cicd"
    ManagedBy   = "terraform"
  })
}

resource "aws_kms_key" "cicd" {
  description             = "${local.name} pipeline artifacts and build logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsUse"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.aws_region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:/codebuild/${local.name}*"
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "cicd" {
  name          = "alias/${local.name}-cicd"
  target_key_id = aws_kms_key.cicd.key_id
}

# ---------------------------------------------------------------- source

# Created PENDING: approve it once in the console (Developer Tools > Settings > Connections).
resource "aws_codestarconnections_connection" "source" {
  count = var.connection_arn == "" ? 1 : 0

  name          = substr("${local.name}-source", 0, 32)
  provider_type = var.source_provider
}

# ---------------------------------------------------------------- artifact bucket

resource "aws_s3_bucket" "artifacts" {
  # checkov:skip=CKV_AWS_144:Pipeline artifacts are transient (expire after artifact_retention_days); no cross-region copy.
  # checkov:skip=CKV2_AWS_62:Nothing consumes artifact events.
  bucket        = "${local.name}-pipeline-${local.account_id}"
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.cicd.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-artifacts"
    status = "Enabled"

    filter {}

    expiration {
      days = var.artifact_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

resource "aws_s3_bucket_logging" "artifacts" {
  bucket        = aws_s3_bucket.artifacts.id
  target_bucket = local.app.logs_bucket
  target_prefix = "s3-access/${aws_s3_bucket.artifacts.id}/"
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

# ---------------------------------------------------------------- build

resource "aws_cloudwatch_log_group" "build" {
  # checkov:skip=CKV_AWS_338:Build logs are kept log_retention_days (30 by default); a year is not needed to debug builds.
  name              = "/codebuild/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.cicd.arn
}

resource "aws_codebuild_project" "app" {
  # checkov:skip=CKV_AWS_316:Privileged mode is what lets CodeBuild run `docker build`; the build runs only this repository's buildspec on the pipeline's branch.
  name           = local.name
  description    = "Tests ${var.project}, builds and pushes its image tagged by commit, and writes the deploy artefacts"
  service_role   = aws_iam_role.codebuild.arn
  build_timeout  = var.build_timeout_minutes
  encryption_key = aws_kms_key.cicd.arn

  source {
    type      = "CODEPIPELINE"
    buildspec = var.buildspec_path
  }

  artifacts {
    type = "CODEPIPELINE"
  }

  environment {
    type            = "LINUX_CONTAINER"
    compute_type    = var.codebuild_compute_type
    image           = var.codebuild_image
    privileged_mode = true

    environment_variable {
      name  = "ECR_REPOSITORY_URL"
      value = local.build_target.ecr_repository_url
    }
    environment_variable {
      name  = "TASK_FAMILY"
      value = local.build_target.task_family
    }
    environment_variable {
      name  = "CONTAINER_NAME"
      value = local.build_target.container_name
    }
    environment_variable {
      name  = "CONTAINER_PORT"
      value = tostring(local.build_target.container_port)
    }
    environment_variable {
      name  = "DEPLOYMENT_STRATEGY"
      value = local.build_target.deployment_strategy
    }
    environment_variable {
      name  = "SCAN_FAIL_SEVERITY"
      value = var.scan_fail_severity
    }
  }

  logs_config {
    cloudwatch_logs {
      group_name = aws_cloudwatch_log_group.build.name
      status     = "ENABLED"
    }
  }
}

# ---------------------------------------------------------------- blue/green (optional)

resource "aws_iam_role" "codedeploy" {
  count = local.blue_green ? 1 : 0

  name = "${local.name}-codedeploy"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "codedeploy.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "codedeploy" {
  count = local.blue_green ? 1 : 0

  role       = aws_iam_role.codedeploy[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSCodeDeployRoleForECS"
}

resource "aws_codedeploy_app" "app" {
  count = local.blue_green ? 1 : 0

  name             = local.name
  compute_platform = "ECS"
}

resource "aws_codedeploy_deployment_group" "app" {
  count = local.blue_green ? 1 : 0

  app_name               = aws_codedeploy_app.app[0].name
  deployment_group_name  = local.name
  service_role_arn       = aws_iam_role.codedeploy[0].arn
  deployment_config_name = var.blue_green_deployment_config

  ecs_service {
    cluster_name = local.app.cluster_name
    service_name = local.app.service_name
  }

  deployment_style {
    deployment_type   = "BLUE_GREEN"
    deployment_option = "WITH_TRAFFIC_CONTROL"
  }

  blue_green_deployment_config {
    deployment_ready_option {
      action_on_timeout = "CONTINUE_DEPLOYMENT"
    }

    terminate_blue_instances_on_deployment_success {
      action                           = "TERMINATE"
      termination_wait_time_in_minutes = var.blue_green_termination_wait_minutes
    }
  }

  load_balancer_info {
    target_group_pair_info {
      prod_traffic_route {
        listener_arns = [local.app.production_listener_arn]
      }

      target_group {
        name = local.app.target_group_names["blue"]
      }

      target_group {
        name = local.app.target_group_names["green"]
      }
    }
  }

  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]
  }

  alarm_configuration {
    enabled = true
    alarms  = local.app.alarm_names
  }
}

# ---------------------------------------------------------------- pipeline

locals {
  # What this environment's Deploy stage reads: the build's output, or (gated) the promotion's.
  release_artifact = local.gated ? "promote_output" : "build_output"

  deploy_action = local.blue_green ? {
    provider = "CodeDeployToECS"
    configuration = tomap({
      ApplicationName                = local.name
      DeploymentGroupName            = local.name
      TaskDefinitionTemplateArtifact = local.release_artifact
      TaskDefinitionTemplatePath     = "taskdef.json"
      AppSpecTemplateArtifact        = local.release_artifact
      AppSpecTemplatePath            = "appspec.yaml"
      Image1ArtifactName             = local.release_artifact
      Image1ContainerName            = "IMAGE1_NAME"
    })
    } : {
    provider = "ECS"
    configuration = tomap({
      ClusterName       = local.app.cluster_name
      ServiceName       = local.app.service_name
      FileName          = "imagedefinitions.json"
      DeploymentTimeout = "30"
    })
  }
}

resource "aws_codepipeline" "app" {
  name          = local.name
  role_arn      = aws_iam_role.pipeline.arn
  pipeline_type = "V2"

  artifact_store {
    type     = "S3"
    location = aws_s3_bucket.artifacts.bucket

    encryption_key {
      id   = aws_kms_key.cicd.arn
      type = "KMS"
    }
  }

  trigger {
    provider_type = "CodeStarSourceConnection"

    git_configuration {
      source_action_name = "Source"

      push {
        branches {
          includes = [var.branch]
        }
      }
    }
  }

  stage {
    name = "Source"

    action {
      name             = "Source"
      category         = "Source"
      owner            = "AWS"
      provider         = "CodeStarSourceConnection"
      version          = "1"
      namespace        = "SourceVariables"
      output_artifacts = ["source_output"]

      configuration = {
        ConnectionArn        = local.connection_arn
        FullRepositoryId     = var.repository_id
        BranchName           = var.branch
        OutputArtifactFormat = "CODE_ZIP"
        DetectChanges        = "false" # the V2 trigger above starts runs
      }
    }
  }

  # Build once -> deploy (preprod) -> smoke test -> [approval -> promote the same digest ->
  # deploy this environment]. Each stage holds one action; delivery.tf lists them.
  dynamic "stage" {
    for_each = local.stages

    content {
      name = stage.value.name

      action {
        name             = stage.value.action
        category         = stage.value.category
        owner            = "AWS"
        provider         = stage.value.provider
        version          = "1"
        run_order        = 1
        input_artifacts  = stage.value.inputs
        output_artifacts = stage.value.outputs
        namespace        = stage.value.namespace
        configuration    = stage.value.configuration
      }
    }
  }

  depends_on = [aws_codedeploy_deployment_group.app]
}
