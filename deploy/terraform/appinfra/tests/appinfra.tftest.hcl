# Offline apply against a mocked AWS provider (no account, no network). The networking
# stack's remote state is replaced by fixed outputs.

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

# The defaults, applied once and checked for everything that needs no other input (each run
# plans and applies the whole stack again, seconds each).
run "defaults" {
  command = apply

  # The service runs privately in both AZs.
  assert {
    condition     = toset(aws_ecs_service.app.network_configuration[0].subnets) == toset(["subnet-private-a", "subnet-private-b"])
    error_message = "tasks must run in the two private subnets from the networking stack"
  }
  assert {
    condition     = aws_ecs_service.app.network_configuration[0].assign_public_ip == false
    error_message = "tasks must not get public IPs"
  }
  assert {
    condition     = toset(aws_lb.main.subnets) == toset(["subnet-public-a", "subnet-public-b"]) && aws_lb.main.internal == false
    error_message = "the ALB must be internet-facing in the two public subnets"
  }
  assert {
    condition     = aws_ecs_service.app.desired_count == 2 && aws_appautoscaling_target.app.min_capacity == 2
    error_message = "two tasks by default, and autoscaling never below two"
  }
  assert {
    condition     = aws_ecs_service.app.launch_type == "FARGATE" && aws_ecs_task_definition.app.network_mode == "awsvpc"
    error_message = "the service must run on Fargate"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.tasks_from_alb.referenced_security_group_id == aws_security_group.alb.id && aws_vpc_security_group_ingress_rule.tasks_from_alb.from_port == 5000 && aws_vpc_security_group_ingress_rule.tasks_from_alb.to_port == 5000
    error_message = "tasks must accept the service port from the ALB's security group only"
  }
  assert {
    condition     = aws_vpc_security_group_egress_rule.tasks_https.from_port == 443 && aws_vpc_security_group_egress_rule.tasks_https.to_port == 443
    error_message = "tasks may only open HTTPS connections"
  }

  # The health check matches the app.
  assert {
    condition     = aws_lb_target_group.app["blue"].health_check[0].path == "/healthz" && aws_lb_target_group.app["blue"].health_check[0].matcher == "200"
    error_message = "the target group must health-check the app's liveness path /healthz and expect 200"
  }
  assert {
    condition     = aws_lb_target_group.app["blue"].port == 5000 && aws_lb_target_group.app["blue"].target_type == "ip"
    error_message = "the target group must reach the tasks on port 5000 by IP (awsvpc)"
  }
  assert {
    condition     = strcontains(jsondecode(aws_ecs_task_definition.app.container_definitions)[0].healthCheck.command[3], "http://127.0.0.1:5000/healthz")
    error_message = "the container health check must probe /healthz on the service port"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.app.container_definitions)[0].portMappings[0].containerPort == 5000
    error_message = "the container must expose port 5000"
  }

  # The task definition: hardening and settings.
  assert {
    condition     = jsondecode(aws_ecs_task_definition.app.container_definitions)[0].readonlyRootFilesystem == true
    error_message = "the container's root filesystem must be read-only"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.app.container_definitions)[0].user == "10001:10001"
    error_message = "the container must run as the numeric non-root user"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.app.container_definitions)[0].image == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mindproject/test:0123abc"
    error_message = "the image must come from the stack's ECR repository, tagged with image_tag"
  }
  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name => e.value }["MINDPROJECT_HOST"] == "0.0.0.0"
    error_message = "the service must listen on all interfaces inside the task"
  }
  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name => e.value }["MINDPROJECT_STORAGE"] == "s3://${aws_s3_bucket.uploads.id}/telemetry"
    error_message = "the service must store into the upload bucket under its prefix"
  }
  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name => e.value }["MINDPROJECT_AUTH"] == "token"
    error_message = "the deployed service must require tokens"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.app.container_definitions)[0].secrets[0].name == "MINDPROJECT_SECRET_KEY" && jsondecode(aws_ecs_task_definition.app.container_definitions)[0].secrets[0].valueFrom == aws_secretsmanager_secret.signing_key.arn
    error_message = "the signing key must come from Secrets Manager as a secret, not a plain variable"
  }
  assert {
    condition     = !contains([for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name], "MINDPROJECT_SECRET_KEY")
    error_message = "the signing key must not appear as a plain environment variable"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.app.container_definitions)[0].stopTimeout == 40 && { for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name => e.value }["MINDPROJECT_SHUTDOWN_GRACE_SECONDS"] == "30"
    error_message = "ECS must wait the app's shutdown grace (30 s) plus a margin before SIGKILL"
  }
  assert {
    condition     = aws_secretsmanager_secret.signing_key.kms_key_id == aws_kms_key.app.arn
    error_message = "the signing key must be encrypted with the stack's key"
  }

  # Deployment safety (rolling).
  assert {
    condition     = aws_ecs_service.app.deployment_controller[0].type == "ECS"
    error_message = "rolling is the default deployment strategy"
  }
  assert {
    condition     = aws_ecs_service.app.deployment_circuit_breaker[0].enable && aws_ecs_service.app.deployment_circuit_breaker[0].rollback
    error_message = "rolling deployments must have the circuit breaker with rollback"
  }
  assert {
    condition     = aws_ecs_service.app.alarms[0].rollback && contains(aws_ecs_service.app.alarms[0].alarm_names, aws_cloudwatch_metric_alarm.http_5xx_rate.alarm_name)
    error_message = "rolling deployments must roll back on the 5xx alarm"
  }
  assert {
    condition     = length(aws_lb_target_group.app) == 1
    error_message = "rolling needs a single target group"
  }
  assert {
    condition     = aws_appautoscaling_policy.cpu.policy_type == "TargetTrackingScaling" && aws_appautoscaling_policy.cpu.target_tracking_scaling_policy_configuration[0].predefined_metric_specification[0].predefined_metric_type == "ECSServiceAverageCPUUtilization" && length(aws_appautoscaling_policy.requests) == 1
    error_message = "the service must scale by target tracking (CPU and requests per target)"
  }

  # The load balancer, for long uploads (plain HTTP).
  assert {
    condition     = aws_lb.main.idle_timeout >= 600
    error_message = "the ALB idle timeout must allow minutes-long stalls of cellular uploads"
  }
  assert {
    condition     = tonumber({ for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name => e.value }["MINDPROJECT_BODY_TIMEOUT_SECONDS"]) < aws_lb.main.idle_timeout
    error_message = "the service must give up on a stalled upload before the ALB cuts the connection"
  }
  assert {
    condition     = tonumber({ for e in jsondecode(aws_ecs_task_definition.app.container_definitions)[0].environment : e.name => e.value }["MINDPROJECT_KEEPALIVE_SECONDS"]) > aws_lb.main.idle_timeout
    error_message = "the service's keep-alive must outlive the ALB's idle timeout (else the ALB may reuse a closing connection: 502)"
  }
  assert {
    condition     = aws_lb.main.drop_invalid_header_fields
    error_message = "the ALB must drop invalid headers"
  }
  assert {
    condition     = aws_lb_target_group.app["blue"].deregistration_delay == "300"
    error_message = "draining must leave in-flight uploads time to finish"
  }
  assert {
    condition     = length(aws_lb_listener.http_forward) == 1 && length(aws_lb_listener.https) == 0 && length(aws_lb_listener.http_redirect) == 0
    error_message = "without a certificate there is one plain HTTP listener"
  }
  assert {
    condition     = output.service_url == "http://mindproject-test-1234567890.eu-west-1.elb.amazonaws.com"
    error_message = "the service URL must be the ALB's address"
  }

  # The upload bucket is private and tidy.
  assert {
    condition = (aws_s3_bucket_public_access_block.uploads.block_public_acls && aws_s3_bucket_public_access_block.uploads.block_public_policy
    && aws_s3_bucket_public_access_block.uploads.ignore_public_acls && aws_s3_bucket_public_access_block.uploads.restrict_public_buckets)
    error_message = "all four public access blocks must be on"
  }
  assert {
    condition     = aws_s3_bucket_ownership_controls.uploads.rule[0].object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs must be disabled"
  }
  assert {
    condition     = length([for s in jsondecode(aws_s3_bucket_policy.uploads.policy).Statement : s if s.Effect == "Allow"]) == 0
    error_message = "the bucket policy must grant nothing to anyone"
  }
  assert {
    condition     = anytrue([for s in jsondecode(aws_s3_bucket_policy.uploads.policy).Statement : s.Effect == "Deny" && s.Principal == "*" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"])
    error_message = "the bucket policy must deny requests without TLS"
  }
  assert {
    condition     = aws_s3_bucket_versioning.uploads.versioning_configuration[0].status == "Enabled"
    error_message = "versioning must be on"
  }
  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.uploads.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
    error_message = "uploads must be encrypted with KMS"
  }
  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.uploads.rule : r.abort_incomplete_multipart_upload[0].days_after_initiation if r.id == "abort-incomplete-multipart-uploads"] == [3]
    error_message = "incomplete multipart uploads must be aborted after abort_incomplete_multipart_days"
  }
  assert {
    condition     = length([for r in aws_s3_bucket_lifecycle_configuration.uploads.rule : r if r.id == "upload-retention"]) == 0
    error_message = "no retention rule unless upload_retention_days is set"
  }
  assert {
    condition     = aws_s3_bucket_logging.uploads.target_bucket == aws_s3_bucket.logs.id
    error_message = "S3 access to the uploads must be logged"
  }

  # The task role has only the S3 actions the service uses.
  assert {
    condition = toset(flatten([for s in jsondecode(aws_iam_role_policy.task_s3.policy).Statement : s.Action])) == toset([
      "s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "s3:AbortMultipartUpload", "s3:ListBucketMultipartUploads",
    ])
    error_message = "the task role must allow exactly the six S3 actions the service uses"
  }
  assert {
    condition     = alltrue([for s in jsondecode(aws_iam_role_policy.task_s3.policy).Statement : s.Effect == "Allow" && alltrue([for a in flatten([s.Action]) : !strcontains(a, "*")])])
    error_message = "no wildcard actions"
  }
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.task_s3.policy).Statement : alltrue([
      for r in flatten([s.Resource]) : r == "arn:aws:s3:::mindproject-test-uploads-123456789012" || r == "arn:aws:s3:::mindproject-test-uploads-123456789012/telemetry/*"
    ])])
    error_message = "the task role may only touch the upload bucket, objects only under the service's prefix"
  }
  assert {
    condition     = [for s in jsondecode(aws_iam_role_policy.task_s3.policy).Statement : s.Condition.StringLike["s3:prefix"] if s.Sid == "ListPrefix"] == [["telemetry", "telemetry/*"]]
    error_message = "listing must be limited to the service's prefix"
  }
  assert {
    condition     = length(jsondecode(aws_iam_role_policy.execution.policy).Statement) == 5 && alltrue([for s in jsondecode(aws_iam_role_policy.execution.policy).Statement : s.Resource != "*" || s.Action == ["ecr:GetAuthorizationToken"]])
    error_message = "the execution role may use '*' only for ecr:GetAuthorizationToken"
  }
  assert {
    condition     = jsondecode(aws_iam_role.task.assume_role_policy).Statement[0].Principal.Service == "ecs-tasks.amazonaws.com"
    error_message = "only ECS tasks may assume the task role"
  }

  # Alarms.
  assert {
    condition     = strcontains(one([for q in aws_cloudwatch_metric_alarm.http_5xx_rate.metric_query : q.expression if q.return_data == true]), "target5xx") && aws_cloudwatch_metric_alarm.http_5xx_rate.threshold == 5
    error_message = "the 5xx alarm must watch the 5xx share of requests"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.unhealthy_targets["blue"].metric_name == "UnHealthyHostCount" && aws_cloudwatch_metric_alarm.latency.metric_name == "TargetResponseTime"
    error_message = "there must be unhealthy-target and latency alarms"
  }
  assert {
    condition     = aws_cloudwatch_log_group.app.retention_in_days == 30 && aws_cloudwatch_log_group.app.kms_key_id == aws_kms_key.app.arn
    error_message = "service logs must expire and be encrypted"
  }
  assert {
    condition     = aws_ecr_repository.app.image_scanning_configuration[0].scan_on_push && aws_ecr_repository.app.image_tag_mutability == "IMMUTABLE"
    error_message = "ECR must scan on push and keep tags immutable"
  }
  assert {
    condition     = length(jsondecode(aws_ecr_lifecycle_policy.app.policy).rules) == 2
    error_message = "ECR must expire old images"
  }
}

run "https_listener_and_redirect_with_certificate" {
  command = apply

  variables {
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.https[0].port == 443 && aws_lb_listener.https[0].protocol == "HTTPS"
    error_message = "a certificate must give an HTTPS listener on 443"
  }
  assert {
    condition     = startswith(aws_lb_listener.https[0].ssl_policy, "ELBSecurityPolicy-TLS13")
    error_message = "the HTTPS listener must use a TLS 1.2+/1.3 policy"
  }
  assert {
    condition     = length(aws_lb_listener.http_forward) == 0 && aws_lb_listener.http_redirect[0].default_action[0].type == "redirect" && aws_lb_listener.http_redirect[0].default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "with a certificate, HTTP must only redirect to HTTPS"
  }
  assert {
    condition     = startswith(output.service_url, "https://")
    error_message = "the service URL must be https when a certificate is set"
  }
}

run "optional_upload_retention" {
  command = apply

  variables {
    upload_retention_days = 400
  }

  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.uploads.rule : r.expiration[0].days if r.id == "upload-retention"] == [400]
    error_message = "upload_retention_days must add an expiration rule"
  }
  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.uploads.rule : r.filter[0].prefix if r.id == "upload-retention"] == ["telemetry/"]
    error_message = "the retention rule must only cover the service's prefix"
  }
}

run "blue_green_through_codedeploy" {
  command = apply

  variables {
    deployment_strategy = "blue_green"
  }

  assert {
    condition     = aws_ecs_service.app.deployment_controller[0].type == "CODE_DEPLOY"
    error_message = "blue/green hands deployments to CodeDeploy"
  }
  assert {
    condition     = toset(keys(aws_lb_target_group.app)) == toset(["blue", "green"]) && aws_lb_target_group.app["green"].health_check[0].path == "/healthz"
    error_message = "blue/green needs two target groups that both check /healthz"
  }
  assert {
    condition     = length(aws_ecs_service.app.deployment_circuit_breaker) == 0
    error_message = "the ECS circuit breaker does not apply to CodeDeploy-controlled services"
  }
  assert {
    condition     = output.target_group_names["green"] == aws_lb_target_group.app["green"].name && output.deployment_strategy == "blue_green"
    error_message = "the cicd stack needs both target group names and the strategy"
  }
}

run "rejects_idle_timeout_beyond_alb_limit" {
  command = plan

  variables {
    alb_idle_timeout_seconds = 5000
  }

  expect_failures = [var.alb_idle_timeout_seconds]
}

run "rejects_body_timeout_beyond_alb_idle_timeout" {
  command = plan

  variables {
    alb_idle_timeout_seconds = 300
    body_timeout_seconds     = 300
  }

  expect_failures = [var.body_timeout_seconds]
}

run "rejects_shutdown_grace_beyond_fargate_stop_timeout" {
  command = plan

  variables {
    shutdown_grace_seconds = 115
  }

  expect_failures = [var.shutdown_grace_seconds]
}
