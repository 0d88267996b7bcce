resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "Service tasks: the service port from the ALB only; HTTPS out (S3, ECR, Secrets Manager, CloudWatch)"
  vpc_id      = local.net.vpc_id

  tags = { Name = "${local.name}-tasks" }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Service port from the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (S3 through the gateway endpoint, the rest through NAT)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_cloudwatch_log_group" "app" {
  # checkov:skip=CKV_AWS_338:Retention is a variable (30 days by default, longer in prod.tfvars); a year of request logs is a compliance choice, not a default.
  name              = "/ecs/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.app.arn
}

resource "aws_ecs_cluster" "main" {
  name = local.name

  dynamic "configuration" {
    for_each = var.enable_execute_command ? [1] : []

    content {
      execute_command_configuration {
        kms_key_id = aws_kms_key.app.arn
        logging    = "OVERRIDE"

        log_configuration {
          cloud_watch_encryption_enabled = true
          cloud_watch_log_group_name     = aws_cloudwatch_log_group.exec[0].name
          s3_bucket_name                 = aws_s3_bucket.logs.id
          s3_bucket_encryption_enabled   = true
          s3_key_prefix                  = "ecs-exec"
        }
      }
    }
  }

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

locals {
  storage_url = "s3://${aws_s3_bucket.uploads.id}/${var.storage_prefix}"

  container_secrets = concat(
    [{ name = "MINDPROJECT_SECRET_KEY", valueFrom = local.signing_key_ref }],
    [for ref in local.previous_keys_refs : { name = "MINDPROJECT_PREVIOUS_SECRET_KEYS", valueFrom = ref }],
    # The managed master secret is JSON {username, password}: ECS extracts the password key.
    [for arn in local.db_secret_arns : { name = "PGPASSWORD", valueFrom = "${arn}:password::" }],
  )

  environment = merge(var.extra_environment, local.index_environment, {
    MINDPROJECT_STORAGE                = local.storage_url
    MINDPROJECT_HOST                   = "0.0.0.0"
    MINDPROJECT_PORT                   = tostring(var.container_port)
    MINDPROJECT_WORKERS                = tostring(var.workers)
    MINDPROJECT_MAX_UPLOAD_BYTES       = tostring(var.max_upload_bytes)
    MINDPROJECT_LOG_LEVEL              = var.log_level
    MINDPROJECT_AUTH                   = "token"
    MINDPROJECT_SHUTDOWN_GRACE_SECONDS = tostring(var.shutdown_grace_seconds)
    MINDPROJECT_BODY_TIMEOUT_SECONDS   = tostring(var.body_timeout_seconds)
    # Idle keep-alive connections outlive the ALB's, so the ALB never reuses one we are closing.
    MINDPROJECT_KEEPALIVE_SECONDS = tostring(var.alb_idle_timeout_seconds + 5)
    AWS_REGION                    = var.aws_region
  })

  # Same probe as the Dockerfile's HEALTHCHECK (ECS ignores the image's own).
  health_probe = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.container_port}${var.health_check_path}', timeout=4)"

  container_definition = {
    name                   = local.container_name
    image                  = "${local.image_repository_url}:${var.image_tag}"
    essential              = true
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    # SIGTERM -> the service turns /readyz red and drains for shutdown_grace_seconds; ECS
    # sends SIGKILL only 10 s after that.
    stopTimeout = var.shutdown_grace_seconds + 10

    portMappings = [{
      name          = "http"
      containerPort = var.container_port
      protocol      = "tcp"
    }]

    environment = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    # Every secret comes from Secrets Manager through ECS (never plain environment): the
    # signing key, the keys retired by the last rotation, and the index database's password.
    secrets = local.container_secrets

    # The root filesystem is read-only; /tmp is a writable scratch volume on the task's
    # ephemeral storage (spooled request parts, if any); with ECS Exec, the SSM agent's two
    # state/log folders too (exec.tf).
    mountPoints = concat([{
      sourceVolume  = "tmp"
      containerPath = "/tmp"
      readOnly      = false
      }], [for name, path in local.exec_volumes : {
      sourceVolume  = name
      containerPath = path
      readOnly      = false
    }])

    healthCheck = {
      command     = ["CMD", "python3", "-c", local.health_probe]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 20
    }

    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }

    ulimits = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.app.name
        awslogs-region        = var.aws_region
        awslogs-stream-prefix = "app"
        mode                  = "non-blocking"
        max-buffer-size       = "4m"
      }
    }
  }
}

resource "aws_ecs_task_definition" "app" {
  family                   = local.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.container_definition])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = "tmp"
  }

  dynamic "volume" {
    for_each = local.exec_volumes

    content {
      name = volume.key
    }
  }
}

resource "aws_ecs_service" "app" {
  name                               = local.name
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.app.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_ecs_managed_tags            = true
  enable_execute_command             = var.enable_execute_command
  health_check_grace_period_seconds  = 30
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_controller {
    type = local.blue_green ? "CODE_DEPLOY" : "ECS"
  }

  # Rolling updates stop and roll back by themselves when new tasks fail to become healthy,
  # or when the 5xx alarm fires during the deployment. (CodeDeploy has its own rollback.)
  dynamic "deployment_circuit_breaker" {
    for_each = local.blue_green ? [] : [1]

    content {
      enable   = true
      rollback = true
    }
  }

  dynamic "alarms" {
    for_each = local.blue_green ? [] : [1]

    content {
      enable      = true
      rollback    = true
      alarm_names = [aws_cloudwatch_metric_alarm.http_5xx_rate.alarm_name]
    }
  }

  network_configuration {
    subnets          = local.net.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.app["blue"].arn
    container_name   = local.container_name
    container_port   = var.container_port
  }

  lifecycle {
    # Autoscaling owns the count; the pipeline (or CodeDeploy) owns the running revision and,
    # for blue/green, which target group is live. Terraform registers new task definition
    # revisions; see docs/deploy.md for rolling one out.
    ignore_changes = [desired_count, task_definition, load_balancer]
  }

  depends_on = [aws_lb_listener.http_forward, aws_lb_listener.https, aws_iam_role_policy.execution]
}

# ---------------------------------------------------------------- autoscaling

resource "aws_appautoscaling_target" "app" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.app.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${local.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.app.service_namespace
  resource_id        = aws_appautoscaling_target.app.resource_id
  scalable_dimension = aws_appautoscaling_target.app.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# Requests per task, over whichever target group serves traffic. A predefined
# ALBRequestCountPerTarget metric names ONE target group: after the first blue/green deployment
# moves traffic to green, a policy on blue sees zero requests and scales in. Instead, metric
# math adds the RequestCount of every target group (only the live one carries production
# traffic; CodeDeploy's test traffic is nil here) and divides by the healthy targets of all of
# them. During a deployment both groups have healthy targets, so the figure is briefly halved:
# at worst a scale-in after the 300 s cooldown, which the CPU policy and min_tasks bound. The
# alternative, the load balancer's own RequestCount, would also count HTTP->HTTPS redirects and
# WAF blocks that never reach a task.
locals {
  request_metric_groups = { for colour, tg in aws_lb_target_group.app : colour => tg.arn_suffix }
  requests_sum          = "(${join(" + ", [for c in keys(local.request_metric_groups) : "FILL(requests_${c}, 0)"])})"
  healthy_sum           = "(${join(" + ", [for c in keys(local.request_metric_groups) : "FILL(healthy_${c}, 0)"])})"
}

resource "aws_appautoscaling_policy" "requests" {
  count = var.requests_per_target > 0 ? 1 : 0

  name               = "${local.name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.app.service_namespace
  resource_id        = aws_appautoscaling_target.app.resource_id
  scalable_dimension = aws_appautoscaling_target.app.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    customized_metric_specification {
      metrics {
        id          = "per_target"
        label       = "Requests per healthy target, all target groups"
        expression  = "IF(${local.healthy_sum} > 0, ${local.requests_sum} / ${local.healthy_sum}, 0)"
        return_data = true
      }

      dynamic "metrics" {
        for_each = local.request_metric_groups

        content {
          id          = "requests_${metrics.key}"
          return_data = false

          metric_stat {
            stat = "Sum"

            metric {
              namespace   = "AWS/ApplicationELB"
              metric_name = "RequestCount"

              dimensions {
                name  = "LoadBalancer"
                value = aws_lb.main.arn_suffix
              }
              dimensions {
                name  = "TargetGroup"
                value = metrics.value
              }
            }
          }
        }
      }

      dynamic "metrics" {
        for_each = local.request_metric_groups

        content {
          id          = "healthy_${metrics.key}"
          return_data = false

          metric_stat {
            stat = "Average"

            metric {
              namespace   = "AWS/ApplicationELB"
              metric_name = "HealthyHostCount"

              dimensions {
                name  = "LoadBalancer"
                value = aws_lb.main.arn_suffix
              }
              dimensions {
                name  = "TargetGroup"
                value = metrics.value
              }
            }
          }
        }
      }
    }
  }
}
