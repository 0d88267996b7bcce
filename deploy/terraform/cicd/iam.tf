locals {
  # The roles the deployed task definitions name; the pipeline may pass exactly these to ECS.
  task_roles = concat(
    [local.app.task_role_arn, local.app.execution_role_arn],
    local.gated ? [local.preprod.task_role_arn, local.preprod.execution_role_arn] : [],
  )

  codebuild_policy = {
    Version = "2012-10-17"
    Statement = [
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
      {
        Sid      = "EcrLogin"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"] # cannot be scoped to a resource
        Resource = "*"
      },
      {
        Sid    = "PushImage"
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
          "ecr:DescribeImageScanFindings", "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage",
          "ecr:UploadLayerPart",
        ]
        # Built once, into the first environment the pipeline deploys (gated: preprod's).
        Resource = local.build_target.ecr_repository_arn
      },
      {
        Sid      = "ReadTaskDefinition"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTaskDefinition"] # does not support resource-level permissions
        Resource = "*"
      },
    ]
  }

  pipeline_policy = {
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid      = "Artifacts"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:GetBucketVersioning"]
        Resource = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]
      },
      {
        Sid      = "ArtifactKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.cicd.arn
      },
      {
        Sid      = "Source"
        Effect   = "Allow"
        Action   = ["codestar-connections:UseConnection", "codeconnections:UseConnection"]
        Resource = local.connection_arn
      },
      {
        Sid      = "Build"
        Effect   = "Allow"
        Action   = ["codebuild:BatchGetBuilds", "codebuild:StartBuild"]
        Resource = concat([aws_codebuild_project.app.arn, aws_codebuild_project.smoke.arn], aws_codebuild_project.promote[*].arn)
      },
      {
        Sid      = "RegisterTaskDefinitions"
        Effect   = "Allow"
        Action   = ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"] # no resource-level permissions
        Resource = "*"
      },
      {
        # New revisions carry the family's tags (Project, Environment, ...).
        Sid       = "TagNewTaskDefinitions"
        Effect    = "Allow"
        Action    = ["ecs:TagResource"]
        Resource  = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:task-definition/${local.app.task_family}:*"
        Condition = { StringEquals = { "ecs:CreateAction" = "RegisterTaskDefinition" } }
      },
      {
        Sid      = "PassTaskRoles"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = local.task_roles
        Condition = {
          StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" }
        }
      },
      ],
      [for s in local.blue_green_statements : s if local.blue_green],
      [for s in local.rolling_statements : s if !local.blue_green],
      [for s in local.preprod_statements : s if local.gated],
      var.approval_sns_topic_arn == "" ? [] : [{
        Sid      = "ApprovalNotification"
        Effect   = "Allow"
        Action   = ["sns:Publish"]
        Resource = var.approval_sns_topic_arn
      }],
    )
  }

  blue_green_statements = [
    {
      Sid    = "BlueGreenDeploy"
      Effect = "Allow"
      Action = [
        "codedeploy:CreateDeployment", "codedeploy:GetApplication", "codedeploy:GetApplicationRevision",
        "codedeploy:GetDeployment", "codedeploy:RegisterApplicationRevision",
      ]
      Resource = [
        "arn:${local.partition}:codedeploy:${var.aws_region}:${local.account_id}:application:${local.name}",
        "arn:${local.partition}:codedeploy:${var.aws_region}:${local.account_id}:deploymentgroup:${local.name}/${local.name}",
      ]
    },
    {
      Sid      = "BlueGreenConfig"
      Effect   = "Allow"
      Action   = ["codedeploy:GetDeploymentConfig"]
      Resource = "arn:${local.partition}:codedeploy:${var.aws_region}:${local.account_id}:deploymentconfig:${var.blue_green_deployment_config}"
    },
  ]

  preprod_service_arn = local.gated ? "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:service/${local.preprod.cluster_name}/${local.preprod.service_name}" : ""

  # Gated: the preprod environment is deployed by the ECS action.
  preprod_statements = [
    {
      Sid      = "PreprodRollingDeploy"
      Effect   = "Allow"
      Action   = ["ecs:DescribeServices", "ecs:UpdateService"]
      Resource = local.preprod_service_arn
    },
    {
      Sid       = "PreprodRollingDeployWatch"
      Effect    = "Allow"
      Action    = ["ecs:DescribeTasks", "ecs:ListTasks"]
      Resource  = "*"
      Condition = { ArnEquals = { "ecs:cluster" = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:cluster/${try(local.preprod.cluster_name, "")}" } }
    },
  ]

  rolling_statements = [
    {
      Sid      = "RollingDeploy"
      Effect   = "Allow"
      Action   = ["ecs:DescribeServices", "ecs:UpdateService"]
      Resource = local.service_arn
    },
    {
      Sid       = "RollingDeployWatch"
      Effect    = "Allow"
      Action    = ["ecs:DescribeTasks", "ecs:ListTasks"]
      Resource  = "*"
      Condition = { ArnEquals = { "ecs:cluster" = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:cluster/${local.app.cluster_name}" } }
    },
  ]
}

resource "aws_iam_role" "codebuild" {
  name = "${local.name}-codebuild"
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

resource "aws_iam_role_policy" "codebuild" {
  name   = "test-build-push"
  role   = aws_iam_role.codebuild.id
  policy = jsonencode(local.codebuild_policy)
}

resource "aws_iam_role" "pipeline" {
  name = "${local.name}-pipeline"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "codepipeline.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "pipeline" {
  name   = "source-build-deploy"
  role   = aws_iam_role.pipeline.id
  policy = jsonencode(local.pipeline_policy)
}
