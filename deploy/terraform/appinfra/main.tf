data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "terraform_remote_state" "networking" {
  backend = "s3"

  config = {
    bucket = var.state_bucket
    key    = local.networking_state_key
    region = local.state_region
  }
}

locals {
  name = "${var.project}-${var.environment}"
  # ALB and target group names are limited to 32 characters.
  short_name = substr(local.name, 0, 26)

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  state_region         = var.state_region != "" ? var.state_region : var.aws_region
  networking_state_key = var.networking_state_key != "" ? var.networking_state_key : "${var.project}/${var.environment}/networking.tfstate"
  net                  = data.terraform_remote_state.networking.outputs

  blue_green = var.deployment_strategy == "blue_green"
  # HTTPS with the given certificate, or with a managed one when a Route 53 zone is given.
  https          = var.certificate_arn != "" || var.route53_zone_id != ""
  managed_cert   = var.certificate_arn == "" && var.route53_zone_id != ""
  container_name = "mindproject"

  tags = merge(var.tags, {
    Project     = var.project
    Environment = var.environment
    Stack       = "appinfra"
    ManagedBy   = "terraform"
  })
}

# One customer-managed key for this stack's logs, secret and alarm topic.
resource "aws_kms_key" "app" {
  description             = "${local.name} service logs, token signing key and alarm topic"
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
            "kms:EncryptionContext:aws:logs:arn" = [
              "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:/ecs/${local.name}*",
              "arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:aws-waf-logs-${local.name}",
            ]
          }
        }
      },
      {
        Sid       = "AlarmsAndEventsPublishToEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "app" {
  name          = "alias/${local.name}-app"
  target_key_id = aws_kms_key.app.key_id
}

# ---------------------------------------------------------------- token signing key
# Terraform creates the secret but never its value, so the key is in no state or plan file.
# bootstrap.sh stores a random key (aws secretsmanager get-random-password) the first time;
# docs/deploy.md shows the same by hand, and how to rotate it.

resource "aws_secretsmanager_secret" "signing_key" {
  # checkov:skip=CKV2_AWS_57:Automatic rotation needs a rotation Lambda and would swap the key under running tasks, invalidating device tokens; rotation is a deliberate, staged step (docs/deploy.md).
  name                    = "${var.project}/${var.environment}/token-signing-key"
  description             = "MINDPROJECT_SECRET_KEY: signs and verifies the service's bearer tokens. Value set outside Terraform."
  kms_key_id              = aws_kms_key.app.arn
  recovery_window_in_days = var.secret_recovery_window_days

  # primary: a read-only replica in the dr region, so the dr service verifies the same tokens.
  dynamic "replica" {
    for_each = var.dr_role == "primary" && local.replicate ? [var.dr_region] : []

    content {
      region     = replica.value
      kms_key_id = "alias/${var.project}-${var.dr_environment}-app"
    }
  }
}

# The keys retired by the last rotation (comma-separated), still accepted for verification:
# MINDPROJECT_PREVIOUS_SECRET_KEYS, injected by ECS from this secret, never plain environment.
resource "aws_secretsmanager_secret" "previous_signing_keys" {
  # checkov:skip=CKV2_AWS_57:Holds keys retired by a staged, manual rotation (docs/deploy.md); an automatic rotation Lambda would defeat the staging.
  count = var.previous_signing_keys_secret ? 1 : 0

  name                    = "${var.project}/${var.environment}/token-signing-keys-previous"
  description             = "MINDPROJECT_PREVIOUS_SECRET_KEYS: retired token signing keys, still accepted for verification during a rotation. Value set outside Terraform."
  kms_key_id              = aws_kms_key.app.arn
  recovery_window_in_days = var.secret_recovery_window_days

  # primary: a read-only replica in the dr region, so the dr service verifies the same tokens.
  dynamic "replica" {
    for_each = var.dr_role == "primary" && local.replicate ? [var.dr_region] : []

    content {
      region     = replica.value
      kms_key_id = "alias/${var.project}-${var.dr_environment}-app"
    }
  }
}

locals {
  # secondary (dr): the keys are the primary's, read from their replicas in this region (ECS
  # accepts a secret's name in the task's region); the stack's own secrets stay unused.
  keys_from_peer = var.dr_role == "secondary"
  peer_secret    = "arn:${local.partition}:secretsmanager:${var.aws_region}:${local.account_id}:secret:${var.project}/${var.dr_environment}"

  signing_key_ref     = local.keys_from_peer ? "${var.project}/${var.dr_environment}/token-signing-key" : aws_secretsmanager_secret.signing_key.arn
  previous_keys_refs  = local.keys_from_peer ? (var.previous_signing_keys_secret ? ["${var.project}/${var.dr_environment}/token-signing-keys-previous"] : []) : aws_secretsmanager_secret.previous_signing_keys[*].arn
  signing_secret_arns = local.keys_from_peer ? ["${local.peer_secret}/token-signing-key-??????", "${local.peer_secret}/token-signing-keys-previous-??????"] : concat([aws_secretsmanager_secret.signing_key.arn], aws_secretsmanager_secret.previous_signing_keys[*].arn)
}

# A DEVICE token for one test device (pipeline-smoke), read by the pipeline's smoke test: it can
# upload and read that device's files and nothing else. bootstrap.sh stores it; no signing key
# ever leaves the task and the execution role.
resource "aws_secretsmanager_secret" "smoke_token" {
  # checkov:skip=CKV2_AWS_57:A device token minted by bootstrap.sh with a 90-day lifetime; re-running bootstrap.sh replaces it (docs/deploy.md), no rotation Lambda.
  name                    = "${var.project}/${var.environment}/smoke-device-token"
  description             = "Bearer token of the pipeline-smoke device, for the pipeline's smoke test. Value set by bootstrap.sh."
  kms_key_id              = aws_kms_key.app.arn
  recovery_window_in_days = var.secret_recovery_window_days
}
