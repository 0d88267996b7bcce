# ---------------------------------------------------------------- ECS Exec (enable_execute_command)
# Operator access without SSH or a bastion: `aws ecs execute-command` opens an SSM session in a
# running task (docs/deploy.md). Sessions are encrypted with the stack's key and logged (every
# command and its output) to an encrypted log group and to the log bucket.
#
# Read-only root filesystem: ECS bind-mounts the SSM agent into the container, but the agent
# writes its state and logs under /var/lib/amazon/ssm and /var/log/amazon/ssm. AWS documents
# ECS Exec as unsupported with readonlyRootFilesystem; the known working layout
# (aws/containers-roadmap#1359, amazon-ecs-exec-checker#21) gives exactly those two paths
# writable task volumes, which is what this does. Everything else stays read-only.

locals {
  exec_volumes = var.enable_execute_command ? {
    "ssm-state" = "/var/lib/amazon/ssm"
    "ssm-logs"  = "/var/log/amazon/ssm"
  } : {}
}

resource "aws_cloudwatch_log_group" "exec" {
  # checkov:skip=CKV_AWS_338:Session logs are kept log_retention_days like the service's logs (90 days in prod.tfvars); longer is a compliance choice.
  count = var.enable_execute_command ? 1 : 0

  name              = "/ecs/${local.name}/exec-sessions"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.app.arn
}

locals {
  exec_task_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "SessionManagerChannels"
        Effect   = "Allow"
        Action   = ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]
        Resource = "*" # the ssmmessages actions have no resource types
      },
      {
        Sid      = "SessionLogGroup"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:/ecs/${local.name}/exec-sessions:*"
      },
      {
        Sid      = "SessionLogGroupLookup"
        Effect   = "Allow"
        Action   = ["logs:DescribeLogGroups"] # no resource-level permissions
        Resource = "*"
      },
      {
        Sid      = "SessionLogObjects"
        Effect   = "Allow"
        Action   = ["s3:PutObject"]
        Resource = "${aws_s3_bucket.logs.arn}/ecs-exec/*"
      },
      {
        Sid      = "SessionLogBucketEncryption"
        Effect   = "Allow"
        Action   = ["s3:GetEncryptionConfiguration"]
        Resource = aws_s3_bucket.logs.arn
      },
      {
        Sid      = "SessionEncryption"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = aws_kms_key.app.arn
      },
    ]
  }
}

resource "aws_iam_role_policy" "task_exec" {
  count = var.enable_execute_command ? 1 : 0

  name   = "ecs-exec"
  role   = aws_iam_role.task.id
  policy = jsonencode(local.exec_task_policy)
}
