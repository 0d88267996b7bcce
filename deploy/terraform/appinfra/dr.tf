# ---------------------------------------------------------------- two regions (dr_role)
# primary (prod) and secondary (dr): the same stacks, applied in two regions with
# vars/prod.tfvars and vars/dr.tfvars. docs/runbook.md is the failover/failback procedure.
#
# - Uploads: S3 replication from each bucket to its peer (two-way, so that after a failover the
#   uploads written in the dr region flow back), delete markers included, S3 Replication Time
#   Control (99.99 % of objects within 15 minutes: the uploads' RPO), objects re-encrypted with
#   the peer's key.
# - Index database (fleet mode): AWS Backup copies the cluster's snapshots to a vault in the
#   peer region on db_backup_copy_schedule (hourly by default: the index's RPO).
# - DNS: a failover alias record per region on domain_name; Route 53 health-checks /readyz
#   through each region's ALB and answers with the secondary while the primary is unhealthy.

locals {
  dr_enabled   = var.dr_role != "none"
  replicate    = local.dr_enabled && var.dr_region != "" && var.dr_peer_ready
  peer_name    = "${var.project}-${var.dr_environment}"
  peer_bucket  = "${local.peer_name}-uploads-${local.account_id}"
  peer_key_ref = "alias/${local.peer_name}-app"
  # Both buckets of a pair use the stack's own key (replicas must be encrypted with a key the
  # replication role may name in the other region; aws/s3 cannot be).
  uploads_cmk = local.dr_enabled
}

data "aws_kms_alias" "s3" {
  count = local.replicate ? 1 : 0

  name = "alias/aws/s3"
}

resource "aws_iam_role" "replication" {
  count = local.replicate ? 1 : 0

  name = "${local.name}-s3-replication"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "replication" {
  count = local.replicate ? 1 : 0

  name = "replicate-uploads"
  role = aws_iam_role.replication[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "SourceBucket"
        Effect   = "Allow"
        Action   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
        Resource = aws_s3_bucket.uploads.arn
      },
      {
        Sid      = "SourceObjects"
        Effect   = "Allow"
        Action   = ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"]
        Resource = "${aws_s3_bucket.uploads.arn}/*"
      },
      {
        Sid      = "DestinationObjects"
        Effect   = "Allow"
        Action   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
        Resource = "arn:${local.partition}:s3:::${local.peer_bucket}/*"
      },
      {
        Sid       = "DecryptSource"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [aws_kms_key.app.arn, data.aws_kms_alias.s3[0].target_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "s3.${var.aws_region}.amazonaws.com" } }
      },
      {
        Sid      = "EncryptReplicas"
        Effect   = "Allow"
        Action   = ["kms:Encrypt", "kms:GenerateDataKey"]
        Resource = "arn:${local.partition}:kms:${var.dr_region}:${local.account_id}:key/*"
        Condition = {
          StringEquals             = { "kms:ViaService" = "s3.${var.dr_region}.amazonaws.com" }
          "ForAnyValue:StringLike" = { "kms:ResourceAliases" = local.peer_key_ref }
        }
      },
    ]
  })
}

resource "aws_s3_bucket_replication_configuration" "uploads" {
  count = local.replicate ? 1 : 0

  bucket = aws_s3_bucket.uploads.id
  role   = aws_iam_role.replication[0].arn

  rule {
    id     = "to-${var.dr_environment}"
    status = "Enabled"

    filter {
      prefix = "${var.storage_prefix}/"
    }

    delete_marker_replication {
      status = "Enabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
      replica_modifications {
        status = "Enabled"
      }
    }

    destination {
      bucket        = "arn:${local.partition}:s3:::${local.peer_bucket}"
      storage_class = "STANDARD"

      encryption_configuration {
        replica_kms_key_id = "arn:${local.partition}:kms:${var.dr_region}:${local.account_id}:${local.peer_key_ref}"
      }

      replication_time {
        status = "Enabled"
        time {
          minutes = 15
        }
      }

      metrics {
        status = "Enabled"
        event_threshold {
          minutes = 15
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.uploads]
}

# Replication falling behind (objects older than 15 minutes not yet in the peer region) means
# the RPO is not met: page someone.
resource "aws_cloudwatch_metric_alarm" "replication_latency" {
  count = local.replicate ? 1 : 0

  alarm_name          = "${local.name}-s3-replication-behind"
  alarm_description   = "Uploads take more than 15 minutes to reach ${var.dr_region}: the RPO of docs/runbook.md is not met."
  namespace           = "AWS/S3"
  metric_name         = "ReplicationLatency"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 900
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    SourceBucket      = aws_s3_bucket.uploads.id
    DestinationBucket = local.peer_bucket
    RuleId            = "to-${var.dr_environment}"
  }
}

# ---------------------------------------------------------------- DNS failover on /readyz

resource "aws_route53_health_check" "app" {
  count = local.dr_enabled ? 1 : 0

  fqdn              = aws_lb.main.dns_name
  port              = local.https ? 443 : 80
  type              = local.https ? "HTTPS" : "HTTP"
  resource_path     = "/readyz"
  request_interval  = 10
  failure_threshold = 3
  measure_latency   = true
  enable_sni        = local.https

  tags = { Name = "${local.name}-readyz" }
}

resource "aws_route53_record" "failover" {
  count = local.dr_enabled ? 1 : 0

  zone_id         = var.route53_zone_id
  name            = var.domain_name
  type            = "A"
  set_identifier  = "${local.name}-${var.aws_region}"
  health_check_id = aws_route53_health_check.app[0].id

  failover_routing_policy {
    type = var.dr_role == "primary" ? "PRIMARY" : "SECONDARY"
  }

  alias {
    name                   = aws_lb.main.dns_name
    zone_id                = aws_lb.main.zone_id
    evaluate_target_health = true
  }
}

# ---------------------------------------------------------------- index database backups

# The vault this region keeps its own snapshots in, and receives the peer's copies in.
resource "aws_backup_vault" "index" {
  count = local.dr_enabled && local.db_enabled ? 1 : 0

  name          = "${local.name}-index"
  kms_key_arn   = aws_kms_key.app.arn
  force_destroy = var.force_destroy_buckets
}

resource "aws_iam_role" "backup" {
  count = local.replicate && local.db_enabled ? 1 : 0

  name = "${local.name}-backup"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "backup.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "backup" {
  count = local.replicate && local.db_enabled ? 1 : 0

  role       = aws_iam_role.backup[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_backup_plan" "index" {
  count = local.replicate && local.db_enabled ? 1 : 0

  name = "${local.name}-index"

  rule {
    rule_name         = "snapshot-and-copy-to-${var.dr_environment}"
    target_vault_name = aws_backup_vault.index[0].name
    schedule          = var.db_backup_copy_schedule
    start_window      = 60
    completion_window = 180

    lifecycle {
      delete_after = var.db_backup_retention_days
    }

    copy_action {
      destination_vault_arn = "arn:${local.partition}:backup:${var.dr_region}:${local.account_id}:backup-vault:${local.peer_name}-index"

      lifecycle {
        delete_after = var.db_backup_retention_days
      }
    }
  }
}

resource "aws_backup_selection" "index" {
  count = local.replicate && local.db_enabled ? 1 : 0

  name         = "${local.name}-index"
  plan_id      = aws_backup_plan.index[0].id
  iam_role_arn = aws_iam_role.backup[0].arn
  resources    = [aws_rds_cluster.index[0].arn]
}

# ---------------------------------------------------------------- images in the dr region
# The primary's registry replicates its repository to the dr region (same name, same digests),
# so that the dr service runs exactly the images prod ran, even when the primary region is down.
# Note: the replication configuration is one per registry and region: this replaces any other.

resource "aws_ecr_replication_configuration" "images" {
  count = var.dr_role == "primary" && var.dr_region != "" ? 1 : 0

  replication_configuration {
    rule {
      destination {
        region      = var.dr_region
        registry_id = local.account_id
      }

      repository_filter {
        filter      = aws_ecr_repository.app.name
        filter_type = "PREFIX_MATCH"
      }
    }
  }
}

locals {
  image_repository_url = var.image_repository_name != "" ? "${local.account_id}.dkr.ecr.${var.aws_region}.amazonaws.com/${var.image_repository_name}" : aws_ecr_repository.app.repository_url
  image_repository_arn = var.image_repository_name != "" ? "arn:${local.partition}:ecr:${var.aws_region}:${local.account_id}:repository/${var.image_repository_name}" : aws_ecr_repository.app.arn
}
