# ---------------------------------------------------------------- identity and wiring

variable "project" {
  description = "Project name, used as a prefix for every resource name and as the Project tag."
  type        = string
  default     = "mindproject"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.project))
    error_message = "project must be 3-22 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment environment (dev, prod, ...); must match the networking stack's."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lowercase letters or digits, starting with a letter (e.g. dev, prod)."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into (the networking stack's region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like an AWS region name, e.g. eu-west-1."
  }
}

variable "state_bucket" {
  description = "S3 bucket holding the Terraform states; the networking stack's outputs are read from it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket))
    error_message = "state_bucket must be a valid S3 bucket name."
  }
}

variable "state_region" {
  description = "Region of the state bucket. Empty: aws_region."
  type        = string
  default     = ""
}

variable "networking_state_key" {
  description = "Key of the networking stack's state in the state bucket. Empty: <project>/<environment>/networking.tfstate."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Extra tags applied to every resource (merged over Project, Environment, Stack and ManagedBy)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- load balancer

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener. Given: HTTPS on 443 and HTTP redirects to it. Empty: a managed certificate when route53_zone_id is set, else plain HTTP on 80 (allowed in dev only)."
  type        = string
  default     = ""

  validation {
    condition     = var.certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be empty or an ACM certificate ARN."
  }

  # Devices send bearer tokens: outside dev, plain HTTP is refused.
  validation {
    condition     = var.environment == "dev" || var.certificate_arn != "" || var.route53_zone_id != ""
    error_message = "HTTPS is required outside dev: set certificate_arn (an ACM certificate in this region) or route53_zone_id + domain_name (a managed certificate validated by DNS)."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name. Given: an alias record for the service, and (without certificate_arn) a managed ACM certificate validated by DNS in this zone."
  type        = string
  default     = ""

  validation {
    condition     = var.route53_zone_id == "" || can(regex("^Z[A-Z0-9]{1,31}$", var.route53_zone_id))
    error_message = "route53_zone_id must be empty or a hosted zone id (Z...)."
  }
}

variable "domain_name" {
  description = "Name devices use for the service (e.g. api.example.com), in route53_zone_id. Needed with route53_zone_id."
  type        = string
  default     = ""

  validation {
    condition     = (var.domain_name == "" && var.route53_zone_id == "") || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name must be a lower-case DNS name, and is required when route53_zone_id is set."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener: one of the TLS 1.2+ ELB policies (TLS 1.3 ones preferred)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition = contains([
      "ELBSecurityPolicy-TLS13-1-2-2021-06",
      "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
      "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
      "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
      "ELBSecurityPolicy-TLS13-1-3-2021-06",
      "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
      "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
      "ELBSecurityPolicy-FS-1-2-Res-2020-10",
      "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    ], var.ssl_policy)
    error_message = "ssl_policy must be a TLS 1.2+ ELB security policy (e.g. ELBSecurityPolicy-TLS13-1-2-2021-06); TLS 1.0/1.1 policies are refused."
  }
}

variable "allowed_ingress_cidrs" {
  description = "IPv4 ranges that may reach the load balancer (devices and operators). Narrow it when the fleet's egress ranges are known."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_ingress_cidrs) > 0 && alltrue([for c in var.allowed_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_ingress_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

variable "alb_idle_timeout_seconds" {
  description = "ALB idle timeout: how long a connection may carry no bytes. Uploads of GiBs over cellular links stall for minutes and the server finalises a large upload after its last byte, so this is far above the 60 s default."
  type        = number
  default     = 900

  validation {
    condition     = var.alb_idle_timeout_seconds >= 60 && var.alb_idle_timeout_seconds <= 4000
    error_message = "alb_idle_timeout_seconds must be between 60 and 4000 (the ALB maximum)."
  }
}

variable "body_timeout_seconds" {
  description = "Longest wait of the service for the next piece of a request body (MINDPROJECT_BODY_TIMEOUT_SECONDS): how long a stalled cellular upload may pause. Below the ALB idle timeout, so the service answers before the ALB cuts the connection."
  type        = number
  default     = 600

  validation {
    condition     = var.body_timeout_seconds >= 10 && var.body_timeout_seconds < var.alb_idle_timeout_seconds
    error_message = "body_timeout_seconds must be at least 10 and below alb_idle_timeout_seconds."
  }
}

variable "deregistration_delay_seconds" {
  description = "How long the ALB keeps draining a target (no new requests, in-flight ones continue) before ECS stops the task. Long uploads finish in this window."
  type        = number
  default     = 300

  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be between 0 and 3600."
  }
}

variable "health_check_path" {
  description = "Liveness path of the service, checked by the ALB target group and the container health check."
  type        = string
  default     = "/healthz"

  validation {
    condition     = startswith(var.health_check_path, "/")
    error_message = "health_check_path must start with /."
  }
}

variable "enable_deletion_protection" {
  description = "Protect the ALB from deletion (turn off in throwaway environments so `destroy` works)."
  type        = bool
  default     = true
}

variable "access_logs_retention_days" {
  description = "Days to keep ALB access logs and S3 server access logs."
  type        = number
  default     = 90

  validation {
    condition     = var.access_logs_retention_days >= 1
    error_message = "access_logs_retention_days must be at least 1."
  }
}

# ---------------------------------------------------------------- service

variable "image_tag" {
  description = "Image tag (the commit) that Terraform's task definition names; bootstrap.sh passes the commit it pushed. The pipeline deploys newer ones."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid image tag."
  }
}

variable "container_port" {
  description = "Port the service listens on inside the task."
  type        = number
  default     = 5000
}

variable "task_cpu" {
  description = "Fargate task CPU units (256 = 0.25 vCPU)."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB (must fit task_cpu's allowed range)."
  type        = number
  default     = 1024

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880
    error_message = "task_memory must be between 512 and 122880 MiB."
  }
}

variable "cpu_architecture" {
  description = "Task CPU architecture: X86_64 or ARM64 (Graviton, ~20% cheaper; the image must be built for it)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "desired_count" {
  description = "Tasks to start with (autoscaling moves it between min_tasks and max_tasks)."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count must be at least 1."
  }
}

variable "min_tasks" {
  description = "Autoscaling floor. Two keeps a task in each AZ."
  type        = number
  default     = 2

  validation {
    condition     = var.min_tasks >= 1
    error_message = "min_tasks must be at least 1."
  }
}

variable "max_tasks" {
  description = "Autoscaling ceiling."
  type        = number
  default     = 10

  validation {
    condition     = var.max_tasks >= 1 && var.max_tasks <= 1000
    error_message = "max_tasks must be between 1 and 1000."
  }
}

variable "cpu_target_percent" {
  description = "Target average CPU utilisation for target-tracking autoscaling."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent >= 10 && var.cpu_target_percent <= 90
    error_message = "cpu_target_percent must be between 10 and 90."
  }
}

variable "requests_per_target" {
  description = "Target ALB requests per task per minute for a second target-tracking policy; 0 turns it off."
  type        = number
  default     = 3000

  validation {
    condition     = var.requests_per_target >= 0
    error_message = "requests_per_target must be 0 (off) or positive."
  }
}

variable "workers" {
  description = "Server worker processes per task (MINDPROJECT_WORKERS)."
  type        = number
  default     = 2

  validation {
    condition     = var.workers >= 1 && var.workers <= 32
    error_message = "workers must be between 1 and 32."
  }
}

variable "max_upload_bytes" {
  description = "Largest accepted upload in bytes (MINDPROJECT_MAX_UPLOAD_BYTES); larger ones get 413."
  type        = number
  default     = 10737418240

  validation {
    condition     = var.max_upload_bytes >= 1024
    error_message = "max_upload_bytes must be at least 1024."
  }
}

variable "log_level" {
  description = "Service log level (MINDPROJECT_LOG_LEVEL)."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error"], var.log_level)
    error_message = "log_level must be debug, info, warning or error."
  }
}

variable "shutdown_grace_seconds" {
  description = "Seconds the service finishes in-flight requests after SIGTERM (MINDPROJECT_SHUTDOWN_GRACE_SECONDS). ECS waits this plus 10 s before SIGKILL, so at most 110."
  type        = number
  default     = 30

  validation {
    condition     = var.shutdown_grace_seconds >= 1 && var.shutdown_grace_seconds <= 110
    error_message = "shutdown_grace_seconds must be between 1 and 110 (Fargate's stopTimeout is at most 120 s)."
  }
}

variable "extra_environment" {
  description = "More environment variables for the service container (no secrets here: they end up in the task definition)."
  type        = map(string)
  default     = {}
}

variable "deployment_strategy" {
  description = "rolling: ECS rolling update with circuit breaker and automatic rollback. blue_green: CodeDeploy shifts traffic between two target groups (set up by the cicd stack)."
  type        = string
  default     = "rolling"

  validation {
    condition     = contains(["rolling", "blue_green"], var.deployment_strategy)
    error_message = "deployment_strategy must be rolling or blue_green."
  }
}

variable "container_insights" {
  description = "Enable CloudWatch Container Insights on the cluster (per-task metrics; billed as custom metrics)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- storage

variable "storage_prefix" {
  description = "Key prefix of the service's objects in the upload bucket; the task role may touch nothing else."
  type        = string
  default     = "telemetry"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_./-]*[A-Za-z0-9_-]$", var.storage_prefix)) && !strcontains(var.storage_prefix, "*")
    error_message = "storage_prefix must be a plain key prefix without leading/trailing slashes or wildcards."
  }
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which S3 aborts unfinished multipart uploads (abandoned uploads cost money)."
  type        = number
  default     = 3

  validation {
    condition     = var.abort_incomplete_multipart_days >= 1
    error_message = "abort_incomplete_multipart_days must be at least 1."
  }
}

variable "upload_retention_days" {
  description = "Delete uploads this many days after they were written; null keeps them forever."
  type        = number
  default     = null

  validation {
    condition     = var.upload_retention_days == null || try(var.upload_retention_days >= 1, false)
    error_message = "upload_retention_days must be null or at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days to keep replaced (noncurrent) versions of uploads, the window to recover an overwritten or deleted upload."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1
    error_message = "noncurrent_version_retention_days must be at least 1."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete buckets that still hold objects (throwaway environments only)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- observability

variable "log_retention_days" {
  description = "Days to keep the service's logs in CloudWatch Logs."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 3653)."
  }
}

variable "alarm_email" {
  description = "Address subscribed to the alarm topic (confirm the subscription mail). Outside dev, this or alarm_sns_topic_arn is required."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be empty or an e-mail address."
  }

  # Alarms nobody receives are no alarms.
  validation {
    condition     = var.environment == "dev" || var.alarm_email != "" || var.alarm_sns_topic_arn != ""
    error_message = "Outside dev, alarms must reach someone: set alarm_email or alarm_sns_topic_arn (e.g. a topic wired to PagerDuty/Opsgenie/Chatbot)."
  }
}

variable "alarm_sns_topic_arn" {
  description = "Existing SNS topic (on-call tooling: PagerDuty, Opsgenie, AWS Chatbot, ...) that also receives every alarm and failed-deployment event. Its policy must let cloudwatch.amazonaws.com and events.amazonaws.com publish."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_sns_topic_arn == "" || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be empty or an SNS topic ARN."
  }
}

variable "alarm_cpu_percent" {
  description = "Alarm when the service's average CPU stays above this for 10 minutes (autoscaling should have caught up by then)."
  type        = number
  default     = 85

  validation {
    condition     = var.alarm_cpu_percent > 0 && var.alarm_cpu_percent <= 100
    error_message = "alarm_cpu_percent must be in (0, 100]."
  }
}

variable "alarm_memory_percent" {
  description = "Alarm when the service's average memory use stays above this for 10 minutes."
  type        = number
  default     = 85

  validation {
    condition     = var.alarm_memory_percent > 0 && var.alarm_memory_percent <= 100
    error_message = "alarm_memory_percent must be in (0, 100]."
  }
}

variable "alarm_p99_latency_seconds" {
  description = "Alarm when the p99 duration of the service's small requests (its access log: not PUT/PATCH uploads, responses under 1 MiB) exceeds this many seconds for 15 minutes. Uploads and large downloads are left out: their time is the client's link speed."
  type        = number
  default     = 2

  validation {
    condition     = var.alarm_p99_latency_seconds > 0
    error_message = "alarm_p99_latency_seconds must be positive."
  }
}

variable "alarm_s3_error_count" {
  description = "Alarm when the service's S3 requests (request metrics on its prefix) get more than this many 4xx or 5xx answers in 5 minutes."
  type        = number
  default     = 10

  validation {
    condition     = var.alarm_s3_error_count >= 0
    error_message = "alarm_s3_error_count must be 0 or more."
  }
}

variable "alarm_5xx_percent" {
  description = "Alarm when more than this percentage of requests get a 5xx (from the targets or the ALB itself) over 5 minutes."
  type        = number
  default     = 5

  validation {
    condition     = var.alarm_5xx_percent > 0 && var.alarm_5xx_percent <= 100
    error_message = "alarm_5xx_percent must be in (0, 100]."
  }
}

variable "alarm_latency_seconds" {
  description = "Alarm when the median target response time exceeds this many seconds for 15 minutes. The ALB counts an upload's transfer time in it, so a percentile above the median fires on every big upload."
  type        = number
  default     = 2

  validation {
    condition     = var.alarm_latency_seconds > 0
    error_message = "alarm_latency_seconds must be positive."
  }
}



variable "ecr_keep_images" {
  description = "How many tagged images the ECR lifecycle policy keeps (older ones are deleted); rollbacks can go back this far."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 5
    error_message = "ecr_keep_images must be at least 5."
  }
}

# ---------------------------------------------------------------- edge and operator access

variable "enable_waf" {
  description = "Attach an AWS WAF web ACL to the ALB: the AWS managed common rule set (size limits on bodies left to the service) and a per-IP rate rule. About $5/month + $1/rule + $0.60 per million requests."
  type        = bool
  default     = false
}

variable "waf_rate_limit_per_5_minutes" {
  description = "WAF: requests one IP may send in any 5-minute window before it is blocked (fleets behind one carrier NAT share an IP: size it for that)."
  type        = number
  default     = 20000

  validation {
    condition     = var.waf_rate_limit_per_5_minutes >= 100 && var.waf_rate_limit_per_5_minutes <= 2000000000
    error_message = "waf_rate_limit_per_5_minutes must be between 100 and 2e9 (the WAF limits)."
  }
}

variable "enable_execute_command" {
  description = "ECS Exec: operators may open a shell or run a command in a running task (`aws ecs execute-command`), logged to an encrypted log group and S3. No SSH, no bastion."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- token signing keys

variable "previous_signing_keys_secret" {
  description = "Create a second secret for the previous signing keys (MINDPROJECT_PREVIOUS_SECRET_KEYS, comma-separated) and inject it into the task, so tokens signed by a retired key keep working during a rotation. Its value is set outside Terraform, as the current key's."
  type        = bool
  default     = true
}

variable "secret_recovery_window_days" {
  description = "Days a deleted signing-key secret can be restored (7-30), or 0 to delete it at once (throwaway environments: lets destroy + create reuse the name the same day)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

# ---------------------------------------------------------------- fleet index database (issue 12)

variable "enable_index_database" {
  description = "Fleet mode: an Aurora PostgreSQL Serverless v2 cluster holds the index (MINDPROJECT_INDEX), bytes stay in S3. Off: S3-only mode, no database."
  type        = bool
  default     = false
}

variable "db_engine_version" {
  description = "Aurora PostgreSQL engine version."
  type        = string
  default     = "16.4"
}

variable "db_min_acu" {
  description = "Aurora Serverless v2 minimum capacity (ACU, 0.5 steps). 0 lets an idle dev cluster pause."
  type        = number
  default     = 0.5

  validation {
    condition     = var.db_min_acu >= 0 && var.db_min_acu <= 256
    error_message = "db_min_acu must be between 0 and 256."
  }
}

variable "db_max_acu" {
  description = "Aurora Serverless v2 maximum capacity (ACU)."
  type        = number
  default     = 8

  validation {
    condition     = var.db_max_acu >= 1 && var.db_max_acu <= 256
    error_message = "db_max_acu must be between 1 and 256."
  }
}

variable "db_instances" {
  description = "Aurora instances: 1 writer + readers in other AZs. Outside dev at least 2 (Multi-AZ: a reader in the second AZ is promoted in about 30 s if the writer fails)."
  type        = number
  default     = 1

  validation {
    condition     = var.db_instances >= 1 && var.db_instances <= 15
    error_message = "db_instances must be between 1 and 15."
  }
  validation {
    condition     = !var.enable_index_database || var.environment == "dev" || var.db_instances >= 2
    error_message = "Outside dev the index database must be Multi-AZ: db_instances >= 2."
  }
}

variable "db_backup_retention_days" {
  description = "Days of Aurora automated backups (point-in-time restore window)."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_name" {
  description = "Database name of the index."
  type        = string
  default     = "mindproject"
}

variable "alarm_db_cpu_percent" {
  description = "Alarm when the index database's writer CPU stays above this for 10 minutes."
  type        = number
  default     = 80
}

variable "alarm_db_connections" {
  description = "Alarm when the index database has more connections than this (size it below max_connections of db_max_acu)."
  type        = number
  default     = 500
}

variable "alarm_db_free_storage_bytes" {
  description = "Alarm when the index database's free local storage (temporary files, sorts) falls below this many bytes."
  type        = number
  default     = 2147483648
}

# ---------------------------------------------------------------- disaster recovery (second region)

variable "dr_role" {
  description = "Place of this environment in a two-region setup: none; primary (replicates its uploads and database backups to the dr environment, failover record PRIMARY); secondary (the dr environment: receives them, failover record SECONDARY)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "primary", "secondary"], var.dr_role)
    error_message = "dr_role must be none, primary or secondary."
  }
  validation {
    condition     = var.dr_role == "none" || (var.route53_zone_id != "" && var.domain_name != "")
    error_message = "A primary or secondary environment needs route53_zone_id and domain_name (the failover record)."
  }
}

variable "dr_region" {
  description = "primary: region of the dr environment (where uploads and backups are replicated)."
  type        = string
  default     = ""

  validation {
    condition     = var.dr_region == "" || can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.dr_region))
    error_message = "dr_region must be empty or a region name."
  }
}

variable "dr_environment" {
  description = "primary: environment name of the dr stacks (its bucket and backup vault names derive from it)."
  type        = string
  default     = "dr"
}

variable "dr_peer_ready" {
  description = "Whether the peer environment of a two-region pair exists yet. false (first creation of the pair, e.g. TF_VAR_dr_peer_ready=false): leave out what names the peer's bucket and KMS key (S3 replication, secret replicas), which AWS refuses before they exist."
  type        = bool
  default     = true
}

variable "db_backup_copy_schedule" {
  description = "primary with the index database: AWS Backup schedule of the snapshots copied to the dr region (the database's RPO in a regional disaster)."
  type        = string
  default     = "cron(0 * * * ? *)"
}

variable "image_repository_name" {
  description = "secondary (dr): pull the service image from this ECR repository of this region instead of the stack's own, e.g. the primary's repository that ECR replicates here (mindproject/prod). Empty: the stack's repository."
  type        = string
  default     = ""
}
