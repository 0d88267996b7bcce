# ---------------------------------------------------------------- managed certificate and DNS
# With route53_zone_id + domain_name and no certificate_arn: an ACM certificate validated by DNS
# records in that zone (renewed by ACM as long as the records stay). With a zone, the service's
# name points at the ALB: a plain alias, or a failover alias in a two-region setup (dr.tf).

resource "aws_acm_certificate" "app" {
  count = local.managed_cert ? 1 : 0

  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "certificate_validation" {
  # Keyed by the (known) domain name, so that the plan does not wait for ACM's answer.
  for_each = local.managed_cert ? toset([var.domain_name]) : toset([])

  zone_id         = var.route53_zone_id
  name            = one([for o in aws_acm_certificate.app[0].domain_validation_options : o.resource_record_name if o.domain_name == each.key])
  type            = one([for o in aws_acm_certificate.app[0].domain_validation_options : o.resource_record_type if o.domain_name == each.key])
  records         = [one([for o in aws_acm_certificate.app[0].domain_validation_options : o.resource_record_value if o.domain_name == each.key])]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "app" {
  count = local.managed_cert ? 1 : 0

  certificate_arn         = aws_acm_certificate.app[0].arn
  validation_record_fqdns = [for r in aws_route53_record.certificate_validation : r.fqdn]
}

locals {
  certificate_arn = local.managed_cert ? aws_acm_certificate_validation.app[0].certificate_arn : var.certificate_arn
}

# Single-region: the service's name is an alias of the ALB.
resource "aws_route53_record" "app" {
  count = var.route53_zone_id != "" && var.dr_role == "none" ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.main.dns_name
    zone_id                = aws_lb.main.zone_id
    evaluate_target_health = true
  }
}
