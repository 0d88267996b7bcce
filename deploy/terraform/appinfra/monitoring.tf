resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.app.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  # The stack's topic (mail) and, if given, the on-call tooling's own topic.
  alarm_actions = compact([aws_sns_topic.alarms.arn, var.alarm_sns_topic_arn])
}

# CloudWatch alarms and EventBridge (failed deployments) may publish to the topic.
resource "aws_sns_topic_policy" "alarms" {
  arn = aws_sns_topic.alarms.arn

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AlarmsAndEvents"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alarms.arn
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  })
}

# Share of requests answered with a 5xx, by the targets or by the ALB itself (502/503/504 when
# no target is healthy or a target hangs up). Also the rollback trigger of rolling deployments.
resource "aws_cloudwatch_metric_alarm" "http_5xx_rate" {
  alarm_name          = "${local.name}-5xx-rate"
  alarm_description   = "More than ${var.alarm_5xx_percent}% of requests got a 5xx in 3 of the last 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_5xx_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)"
    label       = "5xx percent"
    return_data = true
  }

  metric_query {
    id = "requests"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = aws_lb.main.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "target5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.main.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "elb5xx"

    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.main.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  for_each = aws_lb_target_group.app

  alarm_name          = "${local.name}-unhealthy-targets-${each.key}"
  alarm_description   = "A task in target group ${each.key} failed its ${var.health_check_path} health check for 3 minutes."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    LoadBalancer = aws_lb.main.arn_suffix
    TargetGroup  = each.value.arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "latency" {
  alarm_name          = "${local.name}-latency"
  alarm_description   = "Median target response time above ${var.alarm_latency_seconds} s for 15 minutes (the median, since the ALB counts an upload's transfer time in)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  extended_statistic  = "p50"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_latency_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    LoadBalancer = aws_lb.main.arn_suffix
  }
}

# p99 of the service's small requests, from its own access log (mindproject.access, JSON):
# neither uploads (PUT, PATCH) nor responses of 1 MiB or more, whose duration is the client's
# link speed. The same log feeds the dashboard's uploads, errors and bytes.
locals {
  metrics_namespace = "MindProject/${local.name}"

  log_metrics = {
    Requests = {
      pattern = "{ $.logger = \"mindproject.access\" }"
      value   = "1"
      unit    = "Count"
    }
    Uploads = {
      pattern = "{ $.logger = \"mindproject.access\" && $.method = \"PUT\" && $.path = \"/api/devices/*\" && $.status = 200 }"
      value   = "1"
      unit    = "Count"
    }
    ServerErrors = {
      pattern = "{ $.logger = \"mindproject.access\" && $.status >= 500 }"
      value   = "1"
      unit    = "Count"
    }
    ClientErrors = {
      pattern = "{ $.logger = \"mindproject.access\" && $.status >= 400 && $.status < 500 }"
      value   = "1"
      unit    = "Count"
    }
    BytesSent = {
      pattern = "{ $.logger = \"mindproject.access\" && $.bytes_sent > 0 }"
      value   = "$.bytes_sent"
      unit    = "Bytes"
    }
    SmallRequestDuration = {
      pattern = "{ $.logger = \"mindproject.access\" && $.method != \"PUT\" && $.method != \"PATCH\" && $.bytes_sent < 1048576 }"
      value   = "$.duration_ms"
      unit    = "Milliseconds"
    }
  }
}

resource "aws_cloudwatch_log_metric_filter" "app" {
  for_each = local.log_metrics

  name           = "${local.name}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.app.name
  pattern        = each.value.pattern

  metric_transformation {
    name      = each.key
    namespace = local.metrics_namespace
    value     = each.value.value
    unit      = each.value.unit
  }
}

resource "aws_cloudwatch_metric_alarm" "p99_latency" {
  alarm_name          = "${local.name}-p99-latency"
  alarm_description   = "p99 of the service's small requests (not uploads, responses < 1 MiB) above ${var.alarm_p99_latency_seconds} s for 15 minutes."
  namespace           = local.metrics_namespace
  metric_name         = "SmallRequestDuration"
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_p99_latency_seconds * 1000
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  depends_on = [aws_cloudwatch_log_metric_filter.app]
}

# ---------------------------------------------------------------- service health

resource "aws_cloudwatch_metric_alarm" "cpu" {
  alarm_name          = "${local.name}-cpu"
  alarm_description   = "Service CPU above ${var.alarm_cpu_percent}% for 10 minutes: autoscaling is at max_tasks or not keeping up."
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_cpu_percent
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    ClusterName = aws_ecs_cluster.main.name
    ServiceName = aws_ecs_service.app.name
  }
}

resource "aws_cloudwatch_metric_alarm" "memory" {
  alarm_name          = "${local.name}-memory"
  alarm_description   = "Service memory above ${var.alarm_memory_percent}% for 10 minutes (the service streams: growth means a leak or too many parallel transfers per task)."
  namespace           = "AWS/ECS"
  metric_name         = "MemoryUtilization"
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_memory_percent
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    ClusterName = aws_ecs_cluster.main.name
    ServiceName = aws_ecs_service.app.name
  }
}

# Fewer tasks running than the autoscaling floor for 5 minutes: tasks crash-loop, cannot pull the
# image or read their secrets, or Fargate has no capacity. Container Insights' task count;
# missing data (no task reports at all) is the worst case, so it breaches.
resource "aws_cloudwatch_metric_alarm" "running_tasks" {
  alarm_name          = "${local.name}-running-tasks"
  alarm_description   = "Fewer than min_tasks (${var.min_tasks}) tasks running for 5 minutes."
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "LessThanThreshold"
  threshold           = var.min_tasks
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    ClusterName = aws_ecs_cluster.main.name
    ServiceName = aws_ecs_service.app.name
  }

  lifecycle {
    precondition {
      condition     = var.container_insights
      error_message = "The running-task alarm reads Container Insights: keep container_insights = true."
    }
  }
}

# ---------------------------------------------------------------- failed deployments
# ECS (rolling: circuit breaker or alarm rollback) and CodeDeploy (blue/green) report failed
# deployments as events; EventBridge sends them to the alarm topic(s).

resource "aws_cloudwatch_event_rule" "deployment_failed" {
  name        = "${local.name}-deployment-failed"
  description = "A deployment of ${local.name} failed or was rolled back (ECS or CodeDeploy)"

  event_pattern = jsonencode({
    "$or" = [
      {
        source        = ["aws.ecs"]
        "detail-type" = ["ECS Deployment State Change"]
        resources     = ["arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:service/${local.name}/${local.name}"]
        detail        = { eventName = ["SERVICE_DEPLOYMENT_FAILED"] }
      },
      {
        source        = ["aws.codedeploy"]
        "detail-type" = ["CodeDeploy Deployment State-change Notification"]
        detail        = { application = [local.name], state = ["FAILURE", "STOP"] }
      },
    ]
  })
}

resource "aws_cloudwatch_event_target" "deployment_failed" {
  rule = aws_cloudwatch_event_rule.deployment_failed.name
  arn  = aws_sns_topic.alarms.arn
}

resource "aws_cloudwatch_event_target" "deployment_failed_oncall" {
  count = var.alarm_sns_topic_arn == "" ? 0 : 1

  rule = aws_cloudwatch_event_rule.deployment_failed.name
  arn  = var.alarm_sns_topic_arn
}

# ---------------------------------------------------------------- S3 errors seen by the service
# S3 request metrics on the service's prefix (what the task role touches): 4xx (denied, missing
# keys the service did not expect, precondition failures) and 5xx (S3 throttling/unavailable).

resource "aws_s3_bucket_metric" "uploads" {
  bucket = aws_s3_bucket.uploads.id
  name   = "service-prefix"

  filter {
    prefix = "${var.storage_prefix}/"
  }
}

resource "aws_cloudwatch_metric_alarm" "s3_errors" {
  for_each = toset(["4xxErrors", "5xxErrors"])

  alarm_name          = "${local.name}-s3-${lower(each.key)}"
  alarm_description   = "The service's S3 requests got more than ${var.alarm_s3_error_count} ${each.key} in 5 minutes."
  namespace           = "AWS/S3"
  metric_name         = each.key
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_s3_error_count
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    BucketName = aws_s3_bucket.uploads.id
    FilterId   = aws_s3_bucket_metric.uploads.name
  }
}

# ---------------------------------------------------------------- dashboard

locals {
  alb_metric = { LoadBalancer = aws_lb.main.arn_suffix }
  app_metric = { ClusterName = aws_ecs_cluster.main.name, ServiceName = aws_ecs_service.app.name }

  dashboard_widgets = [
    {
      title   = "Uploads stored / requests per minute (service access log)"
      metrics = [[local.metrics_namespace, "Uploads", { stat = "Sum" }], [local.metrics_namespace, "Requests", { stat = "Sum" }]]
    },
    {
      title   = "Errors per minute: service 5xx/4xx, ALB 5xx, S3 4xx/5xx"
      metrics = [[local.metrics_namespace, "ServerErrors", { stat = "Sum" }], [local.metrics_namespace, "ClientErrors", { stat = "Sum" }], ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", aws_lb.main.arn_suffix, { stat = "Sum" }], ["AWS/S3", "4xxErrors", "BucketName", aws_s3_bucket.uploads.id, "FilterId", "service-prefix", { stat = "Sum" }], ["AWS/S3", "5xxErrors", "BucketName", aws_s3_bucket.uploads.id, "FilterId", "service-prefix", { stat = "Sum" }]]
    },
    {
      title   = "Bytes: received + sent through the ALB, sent by the service"
      metrics = [["AWS/ApplicationELB", "ProcessedBytes", "LoadBalancer", aws_lb.main.arn_suffix, { stat = "Sum" }], [local.metrics_namespace, "BytesSent", { stat = "Sum" }]]
    },
    {
      title   = "Latency: small requests p50/p99 (ms, service log), ALB target p50/p99 (s)"
      metrics = [[local.metrics_namespace, "SmallRequestDuration", { stat = "p50" }], [local.metrics_namespace, "SmallRequestDuration", { stat = "p99" }], ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", aws_lb.main.arn_suffix, { stat = "p50", yAxis = "right" }], ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", aws_lb.main.arn_suffix, { stat = "p99", yAxis = "right" }]]
    },
    {
      title   = "Tasks: running (Container Insights), CPU and memory %"
      metrics = [["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.app.name, { stat = "Minimum" }], ["AWS/ECS", "CPUUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.app.name, { stat = "Average", yAxis = "right" }], ["AWS/ECS", "MemoryUtilization", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.app.name, { stat = "Average", yAxis = "right" }]]
    },
  ]
}

resource "aws_cloudwatch_dashboard" "app" {
  dashboard_name = local.name

  dashboard_body = jsonencode({
    widgets = concat([
      for i, w in local.dashboard_widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = w.title
          region  = var.aws_region
          view    = "timeSeries"
          stacked = false
          period  = 60
          metrics = w.metrics
        }
      }
      ], [{
        type   = "alarm"
        x      = 0
        y      = ceil(length(local.dashboard_widgets) / 2) * 6
        width  = 24
        height = 4
        properties = {
          title  = "Alarms"
          alarms = local.all_alarm_arns
        }
    }])
  })
}

locals {
  all_alarm_arns = concat(
    [aws_cloudwatch_metric_alarm.http_5xx_rate.arn, aws_cloudwatch_metric_alarm.latency.arn, aws_cloudwatch_metric_alarm.p99_latency.arn, aws_cloudwatch_metric_alarm.cpu.arn, aws_cloudwatch_metric_alarm.memory.arn, aws_cloudwatch_metric_alarm.running_tasks.arn],
    [for a in aws_cloudwatch_metric_alarm.unhealthy_targets : a.arn],
    [for a in aws_cloudwatch_metric_alarm.s3_errors : a.arn],
    [for a in aws_cloudwatch_metric_alarm.db : a.arn],
  )
}
