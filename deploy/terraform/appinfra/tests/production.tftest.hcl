# Issue 14's rules, planned (and applied where a value is only known then) against a mocked
# AWS provider: HTTPS and alarm subscribers outside dev, alarms, dashboard, scaling over both
# target groups, WAF and ECS Exec toggles, signing keys and the index database from Secrets
# Manager, and the two-region (dr) setup.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_elb_service_account" {
    defaults = { arn = "arn:aws:iam::156460612806:root" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mindproject-test-uploads-123456789012" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mindproject/test/token-signing-key-AbCdEf" }
  }
  mock_resource "aws_ecr_repository" {
    defaults = {
      arn            = "arn:aws:ecr:eu-west-1:123456789012:repository/mindproject/test"
      repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/test"
    }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/mindproject-test" }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/mindproject-test/0123456789abcdef"
      arn_suffix = "app/mindproject-test/0123456789abcdef"
      dns_name   = "mindproject-test-1234567890.eu-west-1.elb.amazonaws.com"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = {
      arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mindproject-test/0123456789abcdef"
      arn_suffix = "targetgroup/mindproject-test/0123456789abcdef"
    }
  }
  mock_resource "aws_lb_listener" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/mindproject-test/0123456789abcdef/0123456789abcdef" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-west-1:123456789012:mindproject-test-alarms" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/mindproject-test:1" }
  }
  mock_resource "aws_acm_certificate" {
    defaults = {
      arn                       = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
      domain_validation_options = [{ domain_name = "api.example.com", resource_record_name = "_x.api.example.com.", resource_record_type = "CNAME", resource_record_value = "_y.acm-validations.aws." }]
    }
  }
  mock_resource "aws_acm_certificate_validation" {
    defaults = { certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_rds_cluster" {
    defaults = {
      arn                = "arn:aws:rds:eu-west-1:123456789012:cluster:mindproject-dev-index"
      endpoint           = "mindproject-dev-index.cluster-abc.eu-west-1.rds.amazonaws.com"
      port               = 5432
      master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-abc-AbCdEf", kms_key_id = "k", secret_status = "active" }]
    }
  }
  mock_data "aws_kms_alias" {
    defaults = { target_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-1111-1111-1111-111111111111" }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/mindproject-test" }
  }
}

override_data {
  target = data.terraform_remote_state.networking
  values = {
    outputs = {
      vpc_id             = "vpc-0123456789abcdef0"
      vpc_cidr           = "10.20.0.0/16"
      availability_zones = ["eu-west-1a", "eu-west-1b"]
      public_subnet_ids  = ["subnet-public-a", "subnet-public-b"]
      private_subnet_ids = ["subnet-private-a", "subnet-private-b"]
    }
  }
}

variables {
  environment  = "dev"
  aws_region   = "eu-west-1"
  state_bucket = "mindproject-tfstate-123456789012-eu-west-1"
  image_tag    = "0123abc"
}

run "prod_without_certificate_is_refused" {
  command = plan

  variables {
    environment = "prod"
    alarm_email = "oncall@example.com"
  }

  expect_failures = [var.certificate_arn]
}

run "prod_without_alarm_subscriber_is_refused" {
  command = plan

  variables {
    environment     = "prod"
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
  }

  expect_failures = [var.alarm_email]
}

run "weak_tls_policy_is_refused" {
  command = plan

  variables {
    ssl_policy = "ELBSecurityPolicy-2016-08"
  }

  expect_failures = [var.ssl_policy]
}

run "zone_without_domain_is_refused" {
  command = plan

  variables {
    route53_zone_id = "Z0123456789ABCDEFGHIJ"
  }

  expect_failures = [var.domain_name]
}

run "prod_with_zone_gets_a_managed_certificate_and_https_only" {
  command = apply

  variables {
    environment         = "prod"
    route53_zone_id     = "Z0123456789ABCDEFGHIJ"
    domain_name         = "api.example.com"
    alarm_sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:oncall"
  }

  assert {
    condition     = length(aws_acm_certificate.app) == 1 && aws_acm_certificate.app[0].domain_name == "api.example.com" && aws_acm_certificate.app[0].validation_method == "DNS"
    error_message = "a zone without certificate_arn must give a managed ACM certificate validated by DNS"
  }
  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.https[0].certificate_arn == aws_acm_certificate_validation.app[0].certificate_arn
    error_message = "the HTTPS listener must use the validated managed certificate"
  }
  assert {
    condition     = length(aws_lb_listener.http_forward) == 0 && aws_lb_listener.http_redirect[0].default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "HTTP must only redirect to HTTPS"
  }
  assert {
    condition     = output.service_url == "https://api.example.com" && aws_route53_record.app[0].alias[0].name == aws_lb.main.dns_name
    error_message = "the service's name must point at the ALB, over HTTPS"
  }
  assert {
    condition     = contains(aws_cloudwatch_metric_alarm.cpu.alarm_actions, "arn:aws:sns:eu-west-1:123456789012:oncall") && contains(aws_cloudwatch_metric_alarm.http_5xx_rate.alarm_actions, aws_sns_topic.alarms.arn)
    error_message = "alarms must reach the on-call topic as well as the stack's own"
  }
  assert {
    condition     = aws_cloudwatch_event_target.deployment_failed_oncall[0].arn == "arn:aws:sns:eu-west-1:123456789012:oncall"
    error_message = "failed deployments must reach the on-call topic"
  }
}

run "defaults_alarms_keys_and_no_optional_parts" {
  command = plan

  variables {
    alarm_email = "oncall@example.com"
  }

  assert {
    condition     = aws_sns_topic_subscription.alarm_email[0].endpoint == "oncall@example.com" && aws_sns_topic_subscription.alarm_email[0].protocol == "email"
    error_message = "the alarm address must be subscribed"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.cpu.metric_name == "CPUUtilization" && aws_cloudwatch_metric_alarm.memory.metric_name == "MemoryUtilization" && aws_cloudwatch_metric_alarm.cpu.threshold == 85
    error_message = "CPU and memory alarms on the service"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.running_tasks.metric_name == "RunningTaskCount" && aws_cloudwatch_metric_alarm.running_tasks.comparison_operator == "LessThanThreshold" && aws_cloudwatch_metric_alarm.running_tasks.threshold == 2 && aws_cloudwatch_metric_alarm.running_tasks.treat_missing_data == "breaching"
    error_message = "an alarm when fewer than min_tasks tasks run (and when none reports)"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.p99_latency.extended_statistic == "p99" && aws_cloudwatch_metric_alarm.p99_latency.threshold == 2000
    error_message = "a p99 latency alarm"
  }
  assert {
    condition     = strcontains(aws_cloudwatch_event_rule.deployment_failed.event_pattern, "SERVICE_DEPLOYMENT_FAILED") && strcontains(aws_cloudwatch_event_rule.deployment_failed.event_pattern, "aws.codedeploy")
    error_message = "failed ECS and CodeDeploy deployments must raise an event to the alarm topic"
  }
  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.s3_errors)) == toset(["4xxErrors", "5xxErrors"]) && aws_s3_bucket_metric.uploads.filter[0].prefix == "telemetry/"
    error_message = "S3 4xx/5xx alarms from request metrics on the service's prefix"
  }
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.db) == 0 && length(aws_rds_cluster.index) == 0
    error_message = "no database (nor its alarms) unless enable_index_database"
  }
  assert {
    condition     = aws_cloudwatch_dashboard.app.dashboard_name == "mindproject-dev" && toset(keys(aws_cloudwatch_log_metric_filter.app)) == toset(["Requests", "Uploads", "ServerErrors", "ClientErrors", "BytesSent", "SmallRequestDuration"])
    error_message = "a dashboard fed by the service's access log (uploads, errors, bytes, latency)"
  }
  assert {
    condition     = length(aws_wafv2_web_acl.app) == 0 && length(aws_wafv2_web_acl_association.app) == 0
    error_message = "no WAF unless enable_waf"
  }
  assert {
    condition     = aws_ecs_service.app.enable_execute_command == false && length(aws_ecs_cluster.main.configuration) == 0 && length(aws_iam_role_policy.task_exec) == 0
    error_message = "no ECS Exec unless enable_execute_command"
  }
  assert {
    condition     = length(local.container_definition.mountPoints) == 1 && local.container_definition.readonlyRootFilesystem
    error_message = "without Exec only /tmp is writable"
  }
  assert {
    condition     = [for s in local.container_secrets : s.name] == ["MINDPROJECT_SECRET_KEY", "MINDPROJECT_PREVIOUS_SECRET_KEYS"]
    error_message = "current and previous signing keys must both be ECS secrets"
  }
  assert {
    condition     = length([for k, v in local.environment : k if strcontains(k, "SECRET") || k == "PGPASSWORD"]) == 0
    error_message = "no key or password in plain environment"
  }
  assert {
    condition     = aws_secretsmanager_secret.previous_signing_keys[0].name == "mindproject/dev/token-signing-keys-previous" && aws_secretsmanager_secret.signing_key.recovery_window_in_days == 7
    error_message = "a second secret for the retired keys"
  }
}

run "request_scaling_follows_the_live_target_group" {
  command = apply

  variables {
    deployment_strategy = "blue_green"
  }

  assert {
    condition     = length(aws_appautoscaling_policy.requests[0].target_tracking_scaling_policy_configuration[0].predefined_metric_specification) == 0
    error_message = "the request policy must not track one fixed target group"
  }
  assert {
    condition = toset(flatten([
      for m in aws_appautoscaling_policy.requests[0].target_tracking_scaling_policy_configuration[0].customized_metric_specification[0].metrics : [
        for s in m.metric_stat : [for d in s.metric[0].dimensions : d.value if d.name == "TargetGroup"] if s.metric[0].metric_name == "RequestCount"
      ]
    ])) == toset([aws_lb_target_group.app["blue"].arn_suffix, aws_lb_target_group.app["green"].arn_suffix]) && length(aws_appautoscaling_policy.requests[0].target_tracking_scaling_policy_configuration[0].customized_metric_specification[0].metrics) == 5
    error_message = "the request policy must add the requests of both target groups (blue and green)"
  }
  assert {
    condition     = one([for m in aws_appautoscaling_policy.requests[0].target_tracking_scaling_policy_configuration[0].customized_metric_specification[0].metrics : m.expression if m.return_data]) == "IF((FILL(healthy_blue, 0) + FILL(healthy_green, 0)) > 0, (FILL(requests_blue, 0) + FILL(requests_green, 0)) / (FILL(healthy_blue, 0) + FILL(healthy_green, 0)), 0)"
    error_message = "requests per healthy target over both groups"
  }
}

run "waf_and_exec_on" {
  command = plan

  variables {
    enable_execute_command       = true
    enable_waf                   = true
    waf_rate_limit_per_5_minutes = 5000
  }

  assert {
    condition     = aws_ecs_service.app.enable_execute_command
    error_message = "the service must allow ECS Exec"
  }
  assert {
    condition     = aws_ecs_cluster.main.configuration[0].execute_command_configuration[0].logging == "OVERRIDE" && aws_ecs_cluster.main.configuration[0].execute_command_configuration[0].log_configuration[0].cloud_watch_encryption_enabled && aws_ecs_cluster.main.configuration[0].execute_command_configuration[0].log_configuration[0].s3_bucket_encryption_enabled && aws_ecs_cluster.main.configuration[0].execute_command_configuration[0].log_configuration[0].s3_key_prefix == "ecs-exec"
    error_message = "sessions must be logged, encrypted, to CloudWatch Logs and S3"
  }
  assert {
    condition     = aws_cloudwatch_log_group.exec[0].name == "/ecs/mindproject-dev/exec-sessions"
    error_message = "an encrypted session log group"
  }
  assert {
    condition     = toset(jsondecode(aws_iam_role_policy.task_exec[0].policy).Statement[0].Action) == toset(["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"])
    error_message = "the task role needs the four ssmmessages actions"
  }
  assert {
    condition     = toset([for m in local.container_definition.mountPoints : m.containerPath]) == toset(["/tmp", "/var/lib/amazon/ssm", "/var/log/amazon/ssm"]) && local.container_definition.readonlyRootFilesystem
    error_message = "the root filesystem stays read-only; only the SSM agent's two folders become writable"
  }
  assert {
    condition     = length(aws_wafv2_web_acl_association.app) == 1 && aws_wafv2_web_acl.app[0].scope == "REGIONAL"
    error_message = "enable_waf must attach a regional web ACL to the ALB"
  }
  assert {
    condition     = [for r in aws_wafv2_web_acl.app[0].rule : r.statement[0].rate_based_statement[0].limit if r.name == "rate-per-ip"] == [5000]
    error_message = "a per-IP rate rule with the configured limit"
  }
  assert {
    condition     = contains([for r in aws_wafv2_web_acl.app[0].rule : try(r.statement[0].managed_rule_group_statement[0].name, "")], "AWSManagedRulesCommonRuleSet")
    error_message = "the AWS managed common rule set"
  }
}

run "index_database_when_enabled" {
  command = apply

  variables {
    enable_index_database = true
  }

  assert {
    condition     = aws_rds_cluster.index[0].engine == "aurora-postgresql" && aws_rds_cluster.index[0].storage_encrypted && aws_rds_cluster.index[0].manage_master_user_password && aws_rds_cluster.index[0].backup_retention_period == 14
    error_message = "an encrypted Aurora PostgreSQL cluster with a managed master password and backups"
  }
  assert {
    condition     = aws_rds_cluster.index[0].serverlessv2_scaling_configuration[0].max_capacity == 8 && aws_rds_cluster_instance.index[0].instance_class == "db.serverless"
    error_message = "Serverless v2"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.db_from_tasks[0].referenced_security_group_id == aws_security_group.tasks.id && aws_vpc_security_group_ingress_rule.db_from_tasks[0].from_port == 5432 && length(aws_vpc_security_group_ingress_rule.db_from_tasks) == 1
    error_message = "the database admits PostgreSQL from the tasks' security group only"
  }
  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name => e.value }["MINDPROJECT_INDEX"] == "postgresql://mindproject@mindproject-dev-index.cluster-abc.eu-west-1.rds.amazonaws.com:5432/mindproject"
    error_message = "the task must get MINDPROJECT_INDEX"
  }
  assert {
    condition     = { for s in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].secrets : s.name => s.valueFrom }["PGPASSWORD"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-abc-AbCdEf:password::"
    error_message = "PGPASSWORD must come from the managed secret's password key"
  }
  assert {
    condition     = contains(one([for s in jsondecode(aws_iam_role_policy.execution.policy).Statement : s.Resource if s.Sid == "ReadTaskSecrets"]), "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-abc-AbCdEf")
    error_message = "the execution role must read the database secret"
  }
  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.db)) == toset(["cpu", "connections", "free-storage"])
    error_message = "database alarms: CPU, connections, free storage"
  }
}

run "prod_index_database_must_be_multi_az" {
  command = plan

  variables {
    environment           = "prod"
    certificate_arn       = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
    alarm_email           = "oncall@example.com"
    enable_index_database = true
    db_instances          = 1
  }

  expect_failures = [var.db_instances]
}

run "dr_primary_replicates_and_fails_over" {
  command = plan

  variables {
    environment           = "prod"
    alarm_email           = "oncall@example.com"
    route53_zone_id       = "Z0123456789ABCDEFGHIJ"
    domain_name           = "api.example.com"
    dr_role               = "primary"
    dr_region             = "eu-central-1"
    enable_index_database = true
    db_instances          = 2
  }

  assert {
    condition     = aws_s3_bucket_replication_configuration.uploads[0].rule[0].destination[0].bucket == "arn:aws:s3:::mindproject-dr-uploads-123456789012" && aws_s3_bucket_replication_configuration.uploads[0].rule[0].delete_marker_replication[0].status == "Enabled"
    error_message = "uploads must replicate to the dr bucket, deletes included"
  }
  assert {
    condition     = aws_s3_bucket_replication_configuration.uploads[0].rule[0].destination[0].replication_time[0].time[0].minutes == 15 && aws_s3_bucket_replication_configuration.uploads[0].rule[0].destination[0].encryption_configuration[0].replica_kms_key_id == "arn:aws:kms:eu-central-1:123456789012:alias/mindproject-dr-app"
    error_message = "replication with a 15-minute time control, re-encrypted with the dr key"
  }
  assert {
    condition     = aws_route53_record.failover[0].failover_routing_policy[0].type == "PRIMARY" && aws_route53_health_check.app[0].resource_path == "/readyz" && aws_route53_health_check.app[0].type == "HTTPS" && length(aws_route53_record.app) == 0
    error_message = "a PRIMARY failover record health-checked on /readyz (and no plain record)"
  }
  assert {
    condition     = one(one(aws_backup_plan.index[0].rule).copy_action).destination_vault_arn == "arn:aws:backup:eu-central-1:123456789012:backup-vault:mindproject-dr-index"
    error_message = "database snapshots must be copied to the dr region"
  }
  assert {
    condition     = one(aws_secretsmanager_secret.signing_key.replica).region == "eu-central-1" && one(aws_secretsmanager_secret.previous_signing_keys[0].replica).region == "eu-central-1"
    error_message = "the signing keys must be replicated to the dr region (same tokens there)"
  }
  assert {
    condition     = aws_ecr_replication_configuration.images[0].replication_configuration[0].rule[0].destination[0].region == "eu-central-1"
    error_message = "the images must be replicated to the dr region"
  }
}

run "dr_secondary" {
  command = plan

  variables {
    environment     = "dr"
    aws_region      = "eu-central-1"
    alarm_email     = "oncall@example.com"
    route53_zone_id = "Z0123456789ABCDEFGHIJ"
    domain_name     = "api.example.com"
    dr_role         = "secondary"
    dr_region       = "eu-west-1"
    dr_environment  = "prod"
  }

  assert {
    condition     = aws_route53_record.failover[0].failover_routing_policy[0].type == "SECONDARY" && aws_route53_record.failover[0].name == "api.example.com"
    error_message = "the dr region answers as SECONDARY"
  }
  assert {
    condition     = aws_s3_bucket_replication_configuration.uploads[0].rule[0].destination[0].bucket == "arn:aws:s3:::mindproject-prod-uploads-123456789012"
    error_message = "uploads written in the dr region flow back (failback)"
  }
  assert {
    condition     = aws_kms_alias.app.name == "alias/mindproject-dr-app"
    error_message = "the key alias the primary's replication names must exist in the dr stack"
  }
  assert {
    condition     = [for s in local.container_secrets : s.valueFrom] == ["mindproject/prod/token-signing-key", "mindproject/prod/token-signing-keys-previous"]
    error_message = "the dr service must verify prod's tokens: the keys come from the replicas of prod's secrets"
  }
}

run "dr_needs_a_zone" {
  command = plan

  variables {
    dr_role = "primary"
  }

  expect_failures = [var.dr_role]
}

run "dr_first_pass_without_the_peer" {
  command = plan

  variables {
    environment     = "dr"
    aws_region      = "eu-central-1"
    alarm_email     = "oncall@example.com"
    route53_zone_id = "Z0123456789ABCDEFGHIJ"
    domain_name     = "api.example.com"
    dr_role         = "secondary"
    dr_region       = "eu-west-1"
    dr_environment  = "prod"
    dr_peer_ready   = false
  }

  assert {
    condition     = length(aws_s3_bucket_replication_configuration.uploads) == 0 && length(aws_iam_role.replication) == 0 && length(aws_route53_record.failover) == 1
    error_message = "before the peer exists: no replication towards it, but the failover record and the rest"
  }
}
