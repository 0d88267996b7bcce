# ---------------------------------------------------------------- gated delivery
# Without preprod_environment (dev):  Source -> Build -> Deploy -> SmokeTest.
# With preprod_environment = "dev" (prod):
#   Source -> Build (make test, build ONCE, push to dev's repository, ECR scan gate)
#          -> Deploy-dev (ECS rolling, image pinned by digest) -> SmokeTest-dev
#          -> Approve-prod (manual) -> Promote-prod (copy the SAME digest to prod's repository,
#             verified) -> Deploy-prod (CodeDeploy blue/green, rollback on alarms).
# No role of the pipeline can read a signing key: the smoke test reads only a device token
# for one test device (the dev stack's smoke-token secret).

locals {
  smoke_target = local.build_target

  build_stage = {
    name      = "Build"
    action    = "TestBuildScanPush"
    category  = "Build"
    provider  = "CodeBuild"
    inputs    = ["source_output"]
    outputs   = ["build_output"]
    namespace = "BuildVariables"
    configuration = {
      ProjectName = aws_codebuild_project.app.name
      # With CODE_ZIP sources CodeBuild does not see the commit: hand it over explicitly.
      EnvironmentVariables = jsonencode([{ name = "COMMIT_ID", value = "#{SourceVariables.CommitId}", type = "PLAINTEXT" }])
    }
  }

  smoke_stage = {
    name          = local.gated ? "SmokeTest-${var.preprod_environment}" : "SmokeTest"
    action        = "SmokeTest"
    category      = "Test"
    provider      = "CodeBuild"
    inputs        = ["source_output"]
    outputs       = []
    namespace     = null
    configuration = { ProjectName = aws_codebuild_project.smoke.name }
  }

  this_deploy_stage = {
    name          = local.gated ? "Deploy-${var.environment}" : "Deploy"
    action        = local.blue_green ? "BlueGreen" : "Rolling"
    category      = "Deploy"
    provider      = local.deploy_action.provider
    inputs        = [local.release_artifact]
    outputs       = []
    namespace     = null
    configuration = local.deploy_action.configuration
  }

  gated_stages = [
    local.build_stage,
    {
      name      = "Deploy-${var.preprod_environment}"
      action    = "Rolling"
      category  = "Deploy"
      provider  = "ECS"
      inputs    = ["build_output"]
      outputs   = []
      namespace = null
      configuration = {
        ClusterName       = try(local.preprod.cluster_name, "")
        ServiceName       = try(local.preprod.service_name, "")
        FileName          = "imagedefinitions.json"
        DeploymentTimeout = "30"
      }
    },
    local.smoke_stage,
    {
      name      = "Approve-${var.environment}"
      action    = "Approve"
      category  = "Approval"
      provider  = "Manual"
      inputs    = []
      outputs   = []
      namespace = null
      configuration = merge({
        CustomData         = "Promote #{BuildVariables.IMAGE_DIGEST} (commit #{SourceVariables.CommitId}) to ${var.environment}: it passed make test, the image scan (${var.scan_fail_severity}+) and the smoke test on ${var.preprod_environment}."
        ExternalEntityLink = local.build_target.service_url
      }, var.approval_sns_topic_arn == "" ? {} : { NotificationArn = var.approval_sns_topic_arn })
    },
    {
      name      = "Promote-${var.environment}"
      action    = "PromoteDigest"
      category  = "Build"
      provider  = "CodeBuild"
      inputs    = ["source_output", "build_output"]
      outputs   = ["promote_output"]
      namespace = null
      configuration = {
        ProjectName   = "${local.name}-promote"
        PrimarySource = "source_output"
      }
    },
    local.this_deploy_stage,
  ]

  direct_stages = [local.build_stage, local.this_deploy_stage, local.smoke_stage]

  # (Through JSON: the two lists hold stages of different shapes.)
  stages = jsondecode(local.gated ? jsonencode(local.gated_stages) : jsonencode(local.direct_stages))
}

# ---------------------------------------------------------------- smoke test

resource "aws_codebuild_project" "smoke" {
  name           = "${local.name}-smoke"
  description    = "Smoke test of ${local.gated ? var.preprod_environment : var.environment} after a deployment: health, readiness, auth, and the seed's three calls with a test device token"
  service_role   = aws_iam_role.smoke.arn
  build_timeout  = 15
  encryption_key = aws_kms_key.cicd.arn

  source {
    type      = "CODEPIPELINE"
    buildspec = "deploy/buildspec-smoke.yml"
  }

  artifacts {
    type = "CODEPIPELINE"
  }

  environment {
    type         = "LINUX_CONTAINER"
    compute_type = "BUILD_GENERAL1_SMALL"
    image        = var.codebuild_image

    environment_variable {
      name  = "MINDPROJECT_URL"
      value = local.smoke_target.service_url
    }
    environment_variable {
      name  = "SMOKE_TOKEN_SECRET_ARN"
      value = local.smoke_token_secret_arn
    }
  }

  logs_config {
    cloudwatch_logs {
      group_name = aws_cloudwatch_log_group.build.name
      status     = "ENABLED"
    }
  }
}

# ---------------------------------------------------------------- promotion (gated only)

resource "aws_codebuild_project" "promote" {
  count = local.gated ? 1 : 0

  name           = "${local.name}-promote"
  description    = "Copies the image digest that passed ${var.preprod_environment} into ${var.environment}'s repository (digest verified) and writes ${var.environment}'s deploy artefacts"
  service_role   = aws_iam_role.promote[0].arn
  build_timeout  = 20
  encryption_key = aws_kms_key.cicd.arn

  source {
    type      = "CODEPIPELINE"
    buildspec = "deploy/buildspec-promote.yml"
  }

  artifacts {
    type = "CODEPIPELINE"
  }

  environment {
    type         = "LINUX_CONTAINER"
    compute_type = "BUILD_GENERAL1_SMALL"
    image        = var.codebuild_image

    environment_variable {
      name  = "SOURCE_REPOSITORY_URL"
      value = local.preprod.ecr_repository_url
    }
    environment_variable {
      name  = "ECR_REPOSITORY_URL"
      value = local.app.ecr_repository_url
    }
    environment_variable {
      name  = "TASK_FAMILY"
      value = local.app.task_family
    }
    environment_variable {
      name  = "CONTAINER_NAME"
      value = local.app.container_name
    }
    environment_variable {
      name  = "CONTAINER_PORT"
      value = tostring(local.app.container_port)
    }
    environment_variable {
      name  = "DEPLOYMENT_STRATEGY"
      value = local.app.deployment_strategy
    }
  }

  logs_config {
    cloudwatch_logs {
      group_name = aws_cloudwatch_log_group.build.name
      status     = "ENABLED"
    }
  }

  lifecycle {
    precondition {
      condition     = local.preprod.deployment_strategy == "rolling"
      error_message = "The preprod environment of a gated pipeline deploys with the ECS action: give it deployment_strategy = rolling."
    }
  }
}

locals {
  common_build_statements = [
    {
      Sid      = "BuildLogs"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "${aws_cloudwatch_log_group.build.arn}:*"
    },
    {
      Sid      = "PipelineArtifacts"
      Effect   = "Allow"
      Action   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
      Resource = "${aws_s3_bucket.artifacts.arn}/*"
    },
    {
      Sid      = "ArtifactKey"
      Effect   = "Allow"
      Action   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
      Resource = aws_kms_key.cicd.arn
    },
  ]

  smoke_policy = {
    Version = "2012-10-17"
    Statement = concat(local.common_build_statements, local.smoke_token_secret_arn == "" ? [] : [
      {
        # A device token for the smoke-test device only: it can touch that device's uploads and
        # nothing else. No signing key.
        Sid      = "SmokeDeviceToken"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = local.smoke_token_secret_arn
      },
    ])
  }

  promote_policy = local.gated ? {
    Version = "2012-10-17"
    Statement = concat(local.common_build_statements, [
      {
        Sid      = "EcrLogin"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"] # cannot be scoped to a resource
        Resource = "*"
      },
      {
        Sid      = "PullTestedImage"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"]
        Resource = local.preprod.ecr_repository_arn
      },
      {
        Sid    = "PushPromotedImage"
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
          "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
        ]
        Resource = local.app.ecr_repository_arn
      },
      {
        Sid      = "ReadTaskDefinition"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTaskDefinition"] # does not support resource-level permissions
        Resource = "*"
      },
    ])
  } : null
}

resource "aws_iam_role" "smoke" {
  name = "${local.name}-smoke"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "codebuild.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "smoke" {
  name   = "smoke-test"
  role   = aws_iam_role.smoke.id
  policy = jsonencode(local.smoke_policy)
}

resource "aws_iam_role" "promote" {
  count = local.gated ? 1 : 0

  name = "${local.name}-promote"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "codebuild.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "promote" {
  count = local.gated ? 1 : 0

  name   = "promote-digest"
  role   = aws_iam_role.promote[0].id
  policy = jsonencode(local.promote_policy)
}
