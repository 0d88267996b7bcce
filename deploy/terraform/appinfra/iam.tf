locals {
  ecs_tasks_trust = {
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:*" }
      }
    }]
  }

  # The S3 actions the service uses, and nothing else (the seed granted s3:*).
  # Objects: only under the service's prefix. Listing: only the service's prefix.
  task_s3_policy = {
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid      = "ObjectsUnderPrefix"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
        Resource = "${aws_s3_bucket.uploads.arn}/${var.storage_prefix}/*"
      },
      {
        Sid       = "ListPrefix"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = aws_s3_bucket.uploads.arn
        Condition = { StringLike = { "s3:prefix" = [var.storage_prefix, "${var.storage_prefix}/*"] } }
      },
      {
        Sid      = "ListMultipartUploads"
        Effect   = "Allow"
        Action   = ["s3:ListBucketMultipartUploads"]
        Resource = aws_s3_bucket.uploads.arn
      },
      ], local.uploads_cmk ? [{
        # Two-region pair: uploads are encrypted with the stack's key, used through S3 only.
        Sid       = "UploadsKeyThroughS3"
        Effect    = "Allow"
        Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = aws_kms_key.app.arn
        Condition = { StringEquals = { "kms:ViaService" = "s3.${var.aws_region}.amazonaws.com" } }
    }] : [])
  }

  execution_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "EcrLogin"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken"] # cannot be scoped to a resource
        Resource = "*"
      },
      {
        Sid      = "PullImage"
        Effect   = "Allow"
        Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
        Resource = local.image_repository_arn
      },
      {
        Sid      = "WriteLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.app.arn}:*"
      },
      {
        # The signing keys and (fleet mode) the database password: read by ECS at task start,
        # injected as secrets. Only this role may read them; the build and pipeline roles cannot.
        Sid      = "ReadTaskSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = concat(local.signing_secret_arns, local.db_secret_arns)
      },
      {
        Sid       = "DecryptTaskSecrets"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = aws_kms_key.app.arn
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${var.aws_region}.amazonaws.com" } }
      },
    ]
  }
}

# Used by ECS itself to start a task: pull the image, ship logs, fetch the signing key.
resource "aws_iam_role" "execution" {
  name               = "${local.name}-task-execution"
  assume_role_policy = jsonencode(local.ecs_tasks_trust)
}

resource "aws_iam_role_policy" "execution" {
  name   = "start-task"
  role   = aws_iam_role.execution.id
  policy = jsonencode(local.execution_policy)
}

# Assumed by the service's code: the upload bucket, under its prefix, and nothing else.
resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  assume_role_policy = jsonencode(local.ecs_tasks_trust)
}

resource "aws_iam_role_policy" "task_s3" {
  name   = "upload-bucket"
  role   = aws_iam_role.task.id
  policy = jsonencode(local.task_s3_policy)
}
