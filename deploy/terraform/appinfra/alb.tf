resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Load balancer: HTTP/HTTPS from the allowed ranges, to the tasks only"
  vpc_id      = local.net.vpc_id

  tags = { Name = "${local.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  # checkov:skip=CKV_AWS_260:Devices on public networks must reach the API; port 80 only redirects to HTTPS once certificate_arn is set.
  for_each = toset(var.allowed_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTP (redirected to HTTPS when a certificate is configured)"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = local.https ? toset(var.allowed_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the service tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_lb" "main" {
  # checkov:skip=CKV2_AWS_20:HTTP redirects to HTTPS whenever certificate_arn is set (aws_lb_listener.http_redirect); without a certificate (development) HTTP is all there is.
  # checkov:skip=CKV2_AWS_28:The WAF web ACL is optional (enable_waf, waf.tf: managed common rules + per-IP rate rule); it costs $5/month plus $1 per rule and $0.60 per million requests, so it is off by default.
  name                       = local.short_name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = local.net.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  idle_timeout               = var.alb_idle_timeout_seconds
  drop_invalid_header_fields = true
  enable_deletion_protection = var.enable_deletion_protection
  desync_mitigation_mode     = "defensive"

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "alb"
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.logs]
}

# "blue" always exists; "green" only for CodeDeploy blue/green, which shifts traffic between them.
locals {
  target_group_colours = local.blue_green ? ["blue", "green"] : ["blue"]
}

resource "aws_lb_target_group" "app" {
  for_each = toset(local.target_group_colours)

  # checkov:skip=CKV_AWS_378:TLS ends at the ALB; ALB-to-task traffic stays inside the VPC's private subnets, admitted by security group from the ALB only.
  name                 = "${local.short_name}-${each.key}"
  vpc_id               = local.net.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = var.container_port
  deregistration_delay = var.deregistration_delay_seconds

  health_check {
    enabled             = true
    path                = var.health_check_path
    protocol            = "HTTP"
    port                = "traffic-port"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  lifecycle {
    create_before_destroy = true
  }
}

# Without a certificate: HTTP on 80 serves the API (development).
resource "aws_lb_listener" "http_forward" {
  # checkov:skip=CKV_AWS_2:Only created when no certificate_arn is given (development); with one, port 80 redirects to HTTPS.
  # checkov:skip=CKV_AWS_103:Plain-HTTP listener of the no-certificate development setup; the HTTPS listener uses a TLS 1.2+ policy.
  count = local.https ? 0 : 1

  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app["blue"].arn
  }

  lifecycle {
    # CodeDeploy switches the forward target between blue and green.
    ignore_changes = [default_action]
  }
}

# With a certificate: HTTP redirects to HTTPS, HTTPS serves the API.
resource "aws_lb_listener" "http_redirect" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = local.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app["blue"].arn
  }

  lifecycle {
    ignore_changes = [default_action]
  }
}

locals {
  production_listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http_forward[0].arn
  service_host            = var.domain_name != "" ? var.domain_name : aws_lb.main.dns_name
  service_url             = local.https ? "https://${local.service_host}" : "http://${local.service_host}"
}
