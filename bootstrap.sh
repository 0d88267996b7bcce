#!/usr/bin/env bash
# MindProject on AWS: create, test or destroy a whole environment with the three Terraform stacks
# in deploy/terraform (networking, appinfra, cicd). See docs/deploy.md.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT_DIR
readonly TF_DIR="$ROOT_DIR/deploy/terraform"
readonly STACKS=(networking appinfra cicd)

usage() {
  cat <<'EOF'
This script builds out the entire Project, by running all needed Terraform deployments.

Syntax: ./bootstrap.sh -a create|test|destroy [-e env] [-i device-id] [-f file] [-y] [-h]
options:
a     Creates, tests or destroys the Project. Choices are (create|test|destroy).
      Use the 'test' action after creating the project.
t     Same as -a test: execute tests to showcase functionality.
e     Environment: selects backends/<env>.backend and vars/<env>.tfvars (default: dev).
i     (test) Device ID for the API requests (default: bootstrap-test-device).
f     (test) File to upload (default: 1 MiB of random bytes).
y     (destroy) Do not ask before destroying each stack.
h     Print this Help.

Environment variables:
MINDPROJECT_URL     test against this base URL instead of the deployed service_url output
MINDPROJECT_TOKEN   bearer token to send; otherwise one is made with `mindproject token create
                    --role admin` from MINDPROJECT_SECRET_KEY or from the deployed signing key
TF_STATE_BUCKET     Terraform state bucket (default: mindproject-tfstate-<account>-<region>,
                    created with versioning, encryption and public access blocked if missing)
IMAGE_TAG           (create) image tag to deploy (default: the current commit, 12 characters)
EOF
}

die() {
  echo "bootstrap: $*" >&2
  exit 1
}

log() {
  echo "==> $*" >&2
}

need() {
  local missing=()
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
  done
  [ "${#missing[@]}" -eq 0 ] || die "missing prerequisites: ${missing[*]} (see docs/deploy.md)"
}

action=""
env_name="dev"
device_id=""
upload_file=""
assume_yes=false

while getopts ":a:e:i:f:tyh" opt; do
  case "$opt" in
    a) action="$OPTARG" ;;
    t) action="test" ;;
    e) env_name="$OPTARG" ;;
    i) device_id="$OPTARG" ;;
    f) upload_file="$OPTARG" ;;
    y) assume_yes=true ;;
    h)
      usage
      exit 0
      ;;
    :) die "option -$OPTARG needs a value (-h for help)" ;;
    *) die "unknown option -$OPTARG (-h for help)" ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -eq 0 ] || die "unexpected arguments: $* (-h for help)"

[[ "$env_name" =~ ^[a-z][a-z0-9]{1,9}$ ]] || die "invalid environment name: $env_name"

# ---------------------------------------------------------------- Terraform helpers

tfvars_file() {
  echo "$TF_DIR/$1/vars/$env_name.tfvars"
}

# Reads a top-level string setting (name = "value") from a stack's tfvars.
tfvars_value() {
  local stack=$1 name=$2
  sed -n -E "s/^[[:space:]]*${name}[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/p" "$(tfvars_file "$stack")" | head -n 1
}

# Reads a top-level string setting from a stack's backend file.
backend_value() {
  local stack=$1 name=$2
  sed -n -E "s/^[[:space:]]*${name}[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/p" \
    "$TF_DIR/$stack/backends/$env_name.backend" | head -n 1
}

check_environment_files() {
  local stack
  for stack in "${STACKS[@]}"; do
    [ -f "$(tfvars_file "$stack")" ] || die "no $(tfvars_file "$stack")"
    [ -f "$TF_DIR/$stack/backends/$env_name.backend" ] || die "no backends/$env_name.backend in $stack"
  done
}

aws_region=""
state_bucket=""
state_region=""

resolve_aws() {
  aws_region=$(tfvars_value networking aws_region)
  [ -n "$aws_region" ] || die "aws_region is not set in $(tfvars_file networking)"
  state_region=$(backend_value networking region)
  state_region=${state_region:-$aws_region}
  local account
  account=$(aws sts get-caller-identity --query Account --output text) ||
    die "no AWS credentials: configure them (aws configure / AWS_PROFILE) first"
  state_bucket=${TF_STATE_BUCKET:-mindproject-tfstate-$account-$state_region}
}

ensure_state_bucket() {
  if aws s3api head-bucket --bucket "$state_bucket" >/dev/null 2>&1; then
    return
  fi
  log "creating Terraform state bucket $state_bucket"
  if [ "$state_region" = "us-east-1" ]; then
    aws s3api create-bucket --bucket "$state_bucket" --region "$state_region" >/dev/null
  else
    aws s3api create-bucket --bucket "$state_bucket" --region "$state_region" \
      --create-bucket-configuration "LocationConstraint=$state_region" >/dev/null
  fi
  aws s3api put-public-access-block --bucket "$state_bucket" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  aws s3api put-bucket-versioning --bucket "$state_bucket" --versioning-configuration Status=Enabled
  aws s3api put-bucket-encryption --bucket "$state_bucket" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
}

tf() {
  local stack=$1
  shift
  terraform -chdir="$TF_DIR/$stack" "$@"
}

tf_init() {
  local stack=$1
  log "$stack: terraform init ($env_name)"
  tf "$stack" init -input=false -reconfigure \
    -backend-config="backends/$env_name.backend" \
    -backend-config="bucket=$state_bucket" \
    -backend-config="region=$state_region" >/dev/null
}

# Variables every stack but networking needs to find the others' state.
stack_vars() {
  local stack=$1
  local vars=("-var-file=vars/$env_name.tfvars")
  if [ "$stack" != "networking" ]; then
    vars+=("-var=state_bucket=$state_bucket" "-var=state_region=$state_region")
  fi
  printf '%s\n' "${vars[@]}"
}

# ---------------------------------------------------------------- image

image_tag() {
  if [ -n "${IMAGE_TAG:-}" ]; then
    echo "$IMAGE_TAG"
    return
  fi
  git -C "$ROOT_DIR" rev-parse --short=12 HEAD 2>/dev/null ||
    die "not a git checkout: set IMAGE_TAG"
}

push_image() {
  local repository_url=$1 tag=$2
  local repository_name=${repository_url#*/}
  if aws ecr describe-images --region "$aws_region" --repository-name "$repository_name" \
    --image-ids "imageTag=$tag" >/dev/null 2>&1; then
    log "image $repository_url:$tag is in ECR already"
    return
  fi
  if [ -n "$(git -C "$ROOT_DIR" status --porcelain 2>/dev/null)" ]; then
    log "warning: the work tree has uncommitted changes; they go into image $tag"
  fi
  log "building and pushing $repository_url:$tag"
  aws ecr get-login-password --region "$aws_region" |
    docker login --username AWS --password-stdin "${repository_url%%/*}" >/dev/null
  docker build --label "org.opencontainers.image.revision=$tag" -t "$repository_url:$tag" "$ROOT_DIR"
  docker push "$repository_url:$tag"
}

# The token signing key: Terraform creates the secret, never its value (so the key is in no
# state file). The first time, store a random key generated by AWS.
ensure_signing_key() {
  local secret_id=$1
  local versions
  versions=$(aws secretsmanager list-secret-version-ids --region "$aws_region" \
    --secret-id "$secret_id" --query 'length(Versions)' --output text)
  if [ "$versions" != "0" ] && [ "$versions" != "None" ]; then
    return
  fi
  log "storing a new random token signing key in secret $secret_id"
  local key_file
  key_file=$(mktemp)
  chmod 600 "$key_file"
  aws secretsmanager get-random-password --region "$aws_region" --password-length 64 \
    --exclude-punctuation --query RandomPassword --output text >"$key_file"
  # Read from a file so the key never shows on a command line.
  aws secretsmanager put-secret-value --region "$aws_region" --secret-id "$secret_id" \
    --secret-string "file://$key_file" >/dev/null
  rm -f "$key_file"
}

# ---------------------------------------------------------------- actions

do_create() {
  need terraform aws docker git jq curl
  check_environment_files
  resolve_aws
  ensure_state_bucket

  local -a vars
  local tag
  tag=$(image_tag)

  tf_init networking
  mapfile -t vars < <(stack_vars networking)
  log "networking: terraform apply"
  tf networking apply -input=false -auto-approve "${vars[@]}"

  tf_init appinfra
  mapfile -t vars < <(stack_vars appinfra)
  vars+=("-var=image_tag=$tag")
  # The service needs its image before it can start: create the repository first, push, then
  # apply the rest.
  log "appinfra: creating the image repository and the signing key secret"
  tf appinfra apply -input=false -auto-approve "${vars[@]}" \
    -target=aws_ecr_repository.app -target=aws_ecr_lifecycle_policy.app \
    -target=aws_secretsmanager_secret.signing_key
  # (A targeted apply does not refresh every output: look the two up by their fixed names.)
  local project
  project=$(tfvars_value appinfra project)
  project=${project:-mindproject}
  ensure_signing_key "$project/$env_name/token-signing-key"
  push_image "$(aws ecr describe-repositories --region "$aws_region" \
    --repository-names "$project/$env_name" --query 'repositories[0].repositoryUri' --output text)" "$tag"

  log "appinfra: terraform apply (image $tag)"
  tf appinfra apply -input=false -auto-approve "${vars[@]}"

  tf_init cicd
  mapfile -t vars < <(stack_vars cicd)
  log "cicd: terraform apply"
  tf cicd apply -input=false -auto-approve "${vars[@]}"

  local cluster service
  cluster=$(tf appinfra output -raw cluster_name)
  service=$(tf appinfra output -raw service_name)
  log "waiting for the service to become stable"
  aws ecs wait services-stable --region "$aws_region" --cluster "$cluster" --services "$service"

  if tf cicd output -raw connection_arn >/dev/null 2>&1; then
    log "approve the source connection once in the console if it is PENDING: $(tf cicd output -raw connection_arn)"
  fi

  do_test
}

# The token for the test calls: MINDPROJECT_TOKEN, or made by the mindproject CLI from
# MINDPROJECT_SECRET_KEY, or from the deployed signing key. Empty when none can be had.
make_token() {
  if [ -n "${MINDPROJECT_TOKEN:-}" ]; then
    echo "$MINDPROJECT_TOKEN"
    return
  fi
  if ! command -v mindproject >/dev/null 2>&1; then
    log "no MINDPROJECT_TOKEN and no mindproject CLI: sending requests without a token"
    return
  fi
  local key=${MINDPROJECT_SECRET_KEY:-}
  if [ -z "$key" ] && [ -z "${MINDPROJECT_URL:-}" ]; then
    local secret_arn
    secret_arn=$(tf appinfra output -raw signing_key_secret_arn)
    key=$(aws secretsmanager get-secret-value --region "$aws_region" --secret-id "$secret_arn" \
      --query SecretString --output text)
  fi
  if [ -z "$key" ]; then
    log "no MINDPROJECT_TOKEN or MINDPROJECT_SECRET_KEY: sending requests without a token"
    return
  fi
  MINDPROJECT_SECRET_KEY="$key" mindproject token create --role admin
}

do_test() {
  need curl jq base64 cmp
  local url=${MINDPROJECT_URL:-}
  if [ -z "$url" ]; then
    need terraform aws
    check_environment_files
    resolve_aws
    tf_init appinfra
    url=$(tf appinfra output -raw service_url)
  fi
  url=${url%/}

  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT

  device_id=${device_id:-bootstrap-test-device}
  if [ -z "$upload_file" ]; then
    upload_file="$work/upload.bin"
    head -c 1048576 /dev/urandom >"$upload_file"
  fi
  [ -r "$upload_file" ] || die "cannot read $upload_file"

  local token
  token=$(make_token)
  local curl_opts=(--silent --show-error --fail-with-body --retry 3 --retry-connrefused --max-time 600)
  if [ -n "$token" ]; then
    # Passed through a file, so the token does not show in the process list.
    printf 'header = "Authorization: Bearer %s"\n' "$token" >"$work/curl.conf"
    curl_opts+=(--config "$work/curl.conf")
  fi

  log "testing $url with device $device_id and $(wc -c <"$upload_file") bytes from $upload_file"

  # 1. Upload File to Deviceid parameter (the seed's PUT).
  curl "${curl_opts[@]}" -X PUT -F "file=@$upload_file" "$url/api/devices/$device_id" \
    -o "$work/put.json" || die "upload failed: $(cat "$work/put.json" 2>/dev/null)"
  jq -r '.message' "$work/put.json"

  # 2. List files for download: the device must be listed (following next_cursor pages).
  local listed=false page=0 cursor=""
  while [ "$page" -lt 100 ]; do
    local list_url="$url/api/devices/"
    [ -z "$cursor" ] || list_url="$list_url?cursor=$(jq -rn --arg c "$cursor" '$c|@uri')"
    curl "${curl_opts[@]}" -X GET "$list_url" -o "$work/list.json" ||
      die "listing failed: $(cat "$work/list.json" 2>/dev/null)"
    if jq -e --arg id "$device_id" '.TelemetryDataDownloads | index($id) != null' "$work/list.json" >/dev/null; then
      listed=true
      break
    fi
    cursor=$(jq -r '.next_cursor // empty' "$work/list.json")
    [ -n "$cursor" ] || break
    page=$((page + 1))
  done
  [ "$listed" = true ] || die "device $device_id is missing from GET /api/devices/"
  echo "GET /api/devices/ lists $device_id"

  # 3. Download binary data from deviceid as base64 (the seed's GET), decode, compare bytes.
  curl "${curl_opts[@]}" -X GET "$url/api/devices/$device_id" --output "$work/download.b64" ||
    die "base64 download failed: $(cat "$work/download.b64" 2>/dev/null)"
  base64 -d <"$work/download.b64" >"$work/download.bin" || die "the download is not valid base64"
  cmp -s "$upload_file" "$work/download.bin" || die "the base64 download differs from the upload"
  echo "GET /api/devices/$device_id returned the uploaded bytes (base64)"

  # And the raw form.
  curl "${curl_opts[@]}" -X GET "$url/api/devices/$device_id?encoding=raw" --output "$work/download.raw" ||
    die "raw download failed: $(cat "$work/download.raw" 2>/dev/null)"
  cmp -s "$upload_file" "$work/download.raw" || die "the raw download differs from the upload"
  echo "GET /api/devices/$device_id?encoding=raw returned the uploaded bytes"

  echo "All API tests passed. Service URL:"
  echo "$url"
}

do_destroy() {
  need terraform aws
  check_environment_files
  resolve_aws

  local -a vars approve=()
  [ "$assume_yes" = true ] && approve=(-auto-approve)
  local i stack
  for ((i = ${#STACKS[@]} - 1; i >= 0; i--)); do
    stack=${STACKS[$i]}
    tf_init "$stack"
    mapfile -t vars < <(stack_vars "$stack")
    [ "$stack" != "appinfra" ] || vars+=("-var=image_tag=destroy")
    log "$stack: terraform destroy"
    tf "$stack" destroy -input=false "${approve[@]}" "${vars[@]}" || die "$stack: destroy failed
(non-empty buckets need force_destroy_buckets = true, and the ALB enable_deletion_protection = false:
apply that first, see docs/deploy.md)"
  done
  log "destroyed $env_name; the state bucket $state_bucket is kept"
}

case "$action" in
  create) do_create ;;
  test) do_test ;;
  destroy) do_destroy ;;
  "")
    usage >&2
    exit 2
    ;;
  *) die "unknown action: $action (create, test or destroy)" ;;
esac
