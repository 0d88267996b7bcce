# ---------------------------------------------------------------- fleet index database (issue 12)
# enable_index_database: Aurora PostgreSQL Serverless v2 keeps the upload index; the bytes stay
# in S3. The service gets MINDPROJECT_INDEX=postgresql://user@host:5432/db and PGPASSWORD from
# the cluster's RDS-managed master secret (Secrets Manager, JSON key "password", rotated by RDS;
# ECS reads it at task start). Encrypted with the stack's key, TLS forced, reachable from the
# service's tasks only, Multi-AZ outside dev (variable validation), backups kept
# db_backup_retention_days and, in a primary environment, copied to the dr region (dr.tf).

locals {
  db_enabled     = var.enable_index_database
  db_username    = "mindproject"
  db_secret_arns = local.db_enabled ? [aws_rds_cluster.index[0].master_user_secret[0].secret_arn] : []

  # Passed to the container (ecs.tf). MINDPROJECT_INDEX is the fleet mode's setting (issue 12).
  index_environment = local.db_enabled ? {
    MINDPROJECT_INDEX = "postgresql://${local.db_username}@${aws_rds_cluster.index[0].endpoint}:${aws_rds_cluster.index[0].port}/${var.db_name}"
    PGSSLMODE         = "require"
  } : {}
}

resource "aws_security_group" "db" {
  count = local.db_enabled ? 1 : 0

  name        = "${local.name}-index-db"
  description = "Index database: PostgreSQL from the service tasks only"
  vpc_id      = local.net.vpc_id

  tags = { Name = "${local.name}-index-db" }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  count = local.db_enabled ? 1 : 0

  security_group_id            = aws_security_group.db[0].id
  description                  = "PostgreSQL from the service tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_db" {
  count = local.db_enabled ? 1 : 0

  security_group_id            = aws_security_group.tasks.id
  description                  = "PostgreSQL to the index database"
  referenced_security_group_id = aws_security_group.db[0].id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_subnet_group" "index" {
  count = local.db_enabled ? 1 : 0

  name        = "${local.name}-index"
  description = "Private subnets of ${local.name}"
  subnet_ids  = local.net.private_subnet_ids
}

resource "aws_rds_cluster_parameter_group" "index" {
  count = local.db_enabled ? 1 : 0

  name        = "${local.name}-index"
  family      = "aurora-postgresql${split(".", var.db_engine_version)[0]}"
  description = "${local.name} index: TLS only, DDL and slow statements logged"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Schema changes always, other statements when slower than a second (all of them would
  # cost more log volume than the uploads).
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "aws_rds_cluster" "index" {
  # checkov:skip=CKV_AWS_162:The service authenticates with the RDS-managed master password from Secrets Manager (issue 12: PGPASSWORD); IAM tokens would need app support.
  count = local.db_enabled ? 1 : 0

  cluster_identifier              = "${local.name}-index"
  engine                          = "aurora-postgresql"
  engine_mode                     = "provisioned"
  engine_version                  = var.db_engine_version
  database_name                   = var.db_name
  master_username                 = local.db_username
  manage_master_user_password     = true
  master_user_secret_kms_key_id   = aws_kms_key.app.arn
  storage_encrypted               = true
  kms_key_id                      = aws_kms_key.app.arn
  db_subnet_group_name            = aws_db_subnet_group.index[0].name
  vpc_security_group_ids          = [aws_security_group.db[0].id]
  db_cluster_parameter_group_name = aws_rds_cluster_parameter_group.index[0].name
  backup_retention_period         = var.db_backup_retention_days
  preferred_backup_window         = "02:00-03:00"
  copy_tags_to_snapshot           = true
  deletion_protection             = var.enable_deletion_protection
  skip_final_snapshot             = !var.enable_deletion_protection
  final_snapshot_identifier       = "${local.name}-index-final"
  enabled_cloudwatch_logs_exports = ["postgresql"]
  apply_immediately               = !var.enable_deletion_protection

  serverlessv2_scaling_configuration {
    min_capacity = var.db_min_acu
    max_capacity = var.db_max_acu
  }
}

resource "aws_rds_cluster_instance" "index" {
  # checkov:skip=CKV_AWS_118:Enhanced monitoring needs its own IAM role and costs per instance; Performance Insights (on) and the CloudWatch alarms below cover the service's needs.
  count = local.db_enabled ? var.db_instances : 0

  identifier                            = "${local.name}-index-${count.index}"
  cluster_identifier                    = aws_rds_cluster.index[0].id
  engine                                = aws_rds_cluster.index[0].engine
  engine_version                        = aws_rds_cluster.index[0].engine_version
  instance_class                        = "db.serverless"
  db_subnet_group_name                  = aws_db_subnet_group.index[0].name
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.app.arn
  performance_insights_retention_period = 7
  # Readers in the other AZ: the subnet group spans both, RDS spreads the instances.
  promotion_tier = count.index
}

# ---------------------------------------------------------------- database alarms

locals {
  db_alarms = local.db_enabled ? {
    cpu = {
      metric      = "CPUUtilization"
      statistic   = "Average"
      comparison  = "GreaterThanThreshold"
      threshold   = var.alarm_db_cpu_percent
      description = "Index database writer CPU above ${var.alarm_db_cpu_percent}% for 10 minutes (raise db_max_acu?)."
    }
    connections = {
      metric      = "DatabaseConnections"
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = var.alarm_db_connections
      description = "Index database writer holds more than ${var.alarm_db_connections} connections (tasks x workers x pool size)."
    }
    free-storage = {
      metric      = "FreeLocalStorage"
      statistic   = "Minimum"
      comparison  = "LessThanThreshold"
      threshold   = var.alarm_db_free_storage_bytes
      description = "Index database writer has less than ${var.alarm_db_free_storage_bytes} bytes of local storage left."
    }
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "db" {
  for_each = local.db_alarms

  alarm_name          = "${local.name}-index-db-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/RDS"
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 2
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    DBClusterIdentifier = aws_rds_cluster.index[0].cluster_identifier
    Role                = "WRITER"
  }
}
