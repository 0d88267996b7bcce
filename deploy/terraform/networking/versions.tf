terraform {
  # 1.10+: the S3 backend locks with a lock file in the state bucket (no DynamoDB table);
  # 1.7+: terraform test with mock providers.
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.90"
    }
  }

  # Filled in by `terraform init -backend-config=backends/<env>.backend -backend-config=bucket=<state bucket>`
  # (bootstrap.sh does this).
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = local.tags
  }
}
