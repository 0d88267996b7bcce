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
  description = "Deployment environment (dev, prod, ...); must match the appinfra stack's."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lowercase letters or digits, starting with a letter (e.g. dev, prod)."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into (the appinfra stack's region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like an AWS region name, e.g. eu-west-1."
  }
}

variable "state_bucket" {
  description = "S3 bucket holding the Terraform states; the appinfra stack's outputs are read from it."
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

variable "appinfra_state_key" {
  description = "Key of the appinfra stack's state in the state bucket. Empty: <project>/<environment>/appinfra.tfstate."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Extra tags applied to every resource (merged over Project, Environment, Stack and ManagedBy)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- source

variable "source_provider" {
  description = "Where the repository lives, for the CodeConnections connection: GitHub, GitHubEnterpriseServer, GitLab or Bitbucket."
  type        = string
  default     = "GitHub"

  validation {
    condition     = contains(["GitHub", "GitHubEnterpriseServer", "GitLab", "GitLabSelfManaged", "Bitbucket"], var.source_provider)
    error_message = "source_provider must be GitHub, GitHubEnterpriseServer, GitLab, GitLabSelfManaged or Bitbucket."
  }
}

variable "connection_arn" {
  description = "Existing CodeConnections/CodeStar connection to use. Empty: create one (it starts PENDING: approve it once in the console)."
  type        = string
  default     = ""

  validation {
    condition     = var.connection_arn == "" || can(regex("^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:[0-9]{12}:connection/.+$", var.connection_arn))
    error_message = "connection_arn must be empty or a connection ARN."
  }
}

variable "repository_id" {
  description = "Repository to build, as owner/name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+$", var.repository_id))
    error_message = "repository_id must look like owner/name."
  }
}

variable "branch" {
  description = "Branch whose pushes trigger the pipeline."
  type        = string
  default     = "main"
}

# ---------------------------------------------------------------- build

variable "buildspec_path" {
  description = "Path of the buildspec in the repository."
  type        = string
  default     = "deploy/buildspec.yml"
}

variable "codebuild_compute_type" {
  description = "CodeBuild compute type (the test suite runs a local S3 server: medium or larger)."
  type        = string
  default     = "BUILD_GENERAL1_MEDIUM"

  validation {
    condition     = contains(["BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE", "BUILD_GENERAL1_XLARGE", "BUILD_GENERAL1_2XLARGE"], var.codebuild_compute_type)
    error_message = "codebuild_compute_type must be a BUILD_GENERAL1_* compute type."
  }
}

variable "codebuild_image" {
  description = "CodeBuild build image (Amazon Linux or Ubuntu standard image with Docker)."
  type        = string
  default     = "aws/codebuild/standard:7.0"
}

variable "build_timeout_minutes" {
  description = "Build timeout (tests, image build and push)."
  type        = number
  default     = 60

  validation {
    condition     = var.build_timeout_minutes >= 5 && var.build_timeout_minutes <= 480
    error_message = "build_timeout_minutes must be between 5 and 480."
  }
}

variable "log_retention_days" {
  description = "Days to keep build logs."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts."
  }
}

variable "artifact_retention_days" {
  description = "Days to keep pipeline artifacts."
  type        = number
  default     = 30

  validation {
    condition     = var.artifact_retention_days >= 1
    error_message = "artifact_retention_days must be at least 1."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete the artifact bucket while it still holds objects."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- blue/green

variable "blue_green_termination_wait_minutes" {
  description = "Blue/green: minutes the old (blue) tasks keep running after traffic moved, the window for an instant rollback."
  type        = number
  default     = 15

  validation {
    condition     = var.blue_green_termination_wait_minutes >= 0 && var.blue_green_termination_wait_minutes <= 2880
    error_message = "blue_green_termination_wait_minutes must be between 0 and 2880."
  }
}

variable "blue_green_deployment_config" {
  description = "Blue/green: how CodeDeploy shifts traffic, e.g. CodeDeployDefault.ECSAllAtOnce, CodeDeployDefault.ECSCanary10Percent5Minutes, CodeDeployDefault.ECSLinear10PercentEvery1Minutes."
  type        = string
  default     = "CodeDeployDefault.ECSCanary10Percent5Minutes"

  validation {
    condition     = can(regex("^CodeDeployDefault\\.ECS", var.blue_green_deployment_config))
    error_message = "blue_green_deployment_config must be one of the CodeDeployDefault.ECS* configurations."
  }
}

# ---------------------------------------------------------------- gated delivery

variable "preprod_environment" {
  description = "Gated delivery: the environment (e.g. dev) the pipeline builds into, deploys and smoke-tests first; after a manual approval it promotes the same image digest to this environment. Empty: the pipeline deploys straight to this environment (allowed in dev only)."
  type        = string
  default     = ""

  validation {
    condition     = var.preprod_environment == "" || can(regex("^[a-z][a-z0-9]{1,9}$", var.preprod_environment))
    error_message = "preprod_environment must be empty or an environment name."
  }
  # Every push to main used to reach prod untested: outside dev, delivery is gated.
  validation {
    condition     = var.environment == "dev" || (var.preprod_environment != "" && var.preprod_environment != var.environment)
    error_message = "Outside dev the pipeline must be gated: set preprod_environment (e.g. dev) to deploy, smoke-test and approve there first."
  }
}

variable "preprod_appinfra_state_key" {
  description = "Key of the preprod environment's appinfra state. Empty: <project>/<preprod_environment>/appinfra.tfstate."
  type        = string
  default     = ""
}

variable "scan_fail_severity" {
  description = "The build fails when the ECR image scan finds a vulnerability of this severity or worse: CRITICAL, HIGH, MEDIUM, LOW or INFORMATIONAL."
  type        = string
  default     = "HIGH"

  validation {
    condition     = contains(["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"], var.scan_fail_severity)
    error_message = "scan_fail_severity must be CRITICAL, HIGH, MEDIUM, LOW or INFORMATIONAL."
  }
}

variable "approval_sns_topic_arn" {
  description = "Gated delivery: SNS topic told when a release waits for approval (empty: look at the pipeline in the console)."
  type        = string
  default     = ""

  validation {
    condition     = var.approval_sns_topic_arn == "" || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", var.approval_sns_topic_arn))
    error_message = "approval_sns_topic_arn must be empty or an SNS topic ARN."
  }
}
