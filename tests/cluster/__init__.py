"""Tests on the local twin of the AWS deployment (scripts/cluster.sh): HAProxy + replicas + S3."""
