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

Syntax: ./bootstrap.sh -a create|plan|test|destroy [-e env] [-i device-id] [-f file] [-p platform] [-y] [-h]
options:
a     Creates, plans, tests or destroys the Project. Choices are (create|plan|test|destroy).
      'plan' shows every stack's Terraform plan and changes nothing.
      Use the 'test' action after creating the project.
t     Same as -a test: execute tests to showcase functionality.
e     Environment: selects backends/<env>.backend and vars/<env>.tfvars (default: dev).
i     (test) Device ID for the API requests (default: bootstrap-test-device).
f     (test) File to upload (default: 1 MiB of random bytes).
p     (create) Image platform (default: from cpu_architecture in appinfra's tfvars, linux/amd64).
y     (create, destroy) Do not ask: apply each plan outside dev, destroy each stack, without a yes.
h     Print this Help.

Outside dev, create shows each stack's plan and applies it only after you type yes (or -y).

Environment variables:
MINDPROJECT_URL     test against this base URL instead of the deployed service_url output
MINDPROJECT_TOKEN   bearer token to send; otherwise a 15-minute admin token is made inside a
                    running task (ECS Exec: `mindproject token create`), or locally from the
                    deployed signing key if your credentials may read it
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
platform=""
assume_yes=false

while getopts ":a:e:i:f:p:tyh" opt; do
  case "$opt" in
    a) action="$OPTARG" ;;
    t) action="test" ;;
    e) env_name="$OPTARG" ;;
    i) device_id="$OPTARG" ;;
    f) upload_file="$OPTARG" ;;
    p) platform="$OPTARG" ;;
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

# The stacks an environment has: networking and appinfra always; cicd where it has tfvars (the
# dr environment has no pipeline of its own: prod's delivers).
env_stacks=()

check_environment_files() {
  local stack
  env_stacks=()
  for stack in "${STACKS[@]}"; do
    if [ "$stack" = "cicd" ] && [ ! -f "$(tfvars_file "$stack")" ]; then
      log "cicd: no vars/$env_name.tfvars, no pipeline in $env_name"
      continue
    fi
    [ -f "$(tfvars_file "$stack")" ] || die "no $(tfvars_file "$stack")"
    [ -f "$TF_DIR/$stack/backends/$env_name.backend" ] || die "no backends/$env_name.backend in $stack"
    env_stacks+=("$stack")
  done
}

has_stack() {
  local want=$1 stack
  for stack in "${env_stacks[@]}"; do
    [ "$stack" != "$want" ] || return 0
  done
  return 1
}

# Outside dev, the example values of the tfvars must have been replaced before anything is applied.
check_no_placeholders() {
  [ "$env_name" != "dev" ] || return 0
  local stack
  for stack in "${env_stacks[@]}"; do
    if grep -Eq '^[^#]*(ZREPLACE|example\.com|your-org/)' "$(tfvars_file "$stack")"; then
      die "$(tfvars_file "$stack") still holds example values (ZREPLACE..., example.com, your-org/): set your own first"
    fi
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
  [ "$action" != "plan" ] || die "state bucket $state_bucket does not exist: nothing is deployed in $env_name yet (plan creates nothing; run create)"
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

# Shows a stack's plan (saved to a file), then applies exactly that plan: at once in dev, after a
# typed yes elsewhere (or with -y). Extra arguments go to `terraform plan` (-var, -target).
plan_and_apply() {
  local stack=$1
  shift
  local plan_file
  plan_file=$(mktemp "${TMPDIR:-/tmp}/mindproject-$stack.XXXXXX")
  log "$stack: terraform plan ($env_name)"
  tf "$stack" plan -input=false -out="$plan_file" "$@"
  if [ "$env_name" != "dev" ] && [ "$assume_yes" != true ]; then
    local answer=""
    printf 'Apply this plan of %s to %s? Type yes to apply: ' "$stack" "$env_name" >&2
    read -r answer || true
    if [ "$answer" != "yes" ]; then
      rm -f "$plan_file"
      die "$stack: not applied (answer was not yes)"
    fi
  fi
  log "$stack: terraform apply ($env_name)"
  tf "$stack" apply -input=false "$plan_file"
  rm -f "$plan_file"
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

# linux/amd64 or linux/arm64, from -p or from the task's cpu_architecture: the image must run on
# the tasks' CPU, whatever the machine building it (an arm64 laptop builds amd64 here).
image_platform() {
  if [ -n "$platform" ]; then
    echo "$platform"
    return
  fi
  local arch
  arch=$(sed -n -E 's/^[[:space:]]*cpu_architecture[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' "$(tfvars_file appinfra)" | head -n 1)
  case "${arch:-X86_64}" in
    X86_64) echo "linux/amd64" ;;
    ARM64) echo "linux/arm64" ;;
    *) die "unknown cpu_architecture $arch in $(tfvars_file appinfra)" ;;
  esac
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
  local target_platform
  target_platform=$(image_platform)
  log "building ($target_platform) and pushing $repository_url:$tag"
  if command -v docker >/dev/null 2>&1; then
    aws ecr get-login-password --region "$aws_region" |
      docker login --username AWS --password-stdin "${repository_url%%/*}" >/dev/null
    docker build --platform "$target_platform" --label "org.opencontainers.image.revision=$tag" \
      -t "$repository_url:$tag" "$ROOT_DIR"
    docker push "$repository_url:$tag"
  else
    aws ecr get-login-password --region "$aws_region" |
      buildah login --username AWS --password-stdin "${repository_url%%/*}" >/dev/null
    buildah bud --platform "$target_platform" --format docker \
      --label "org.opencontainers.image.revision=$tag" -t "$repository_url:$tag" "$ROOT_DIR"
    buildah push "$repository_url:$tag"
  fi
}

# The token signing keys: Terraform creates the secrets, never their values (so no key is in a
# state file). The first time, store a random key generated by AWS; the previous-keys secret
# starts as "," (an empty list: MINDPROJECT_PREVIOUS_SECRET_KEYS is comma-separated).
secret_has_value() {
  local secret_id=$1 versions
  versions=$(aws secretsmanager list-secret-version-ids --region "$aws_region" \
    --secret-id "$secret_id" --query 'length(Versions)' --output text 2>/dev/null || echo 0)
  [ "$versions" != "0" ] && [ "$versions" != "None" ]
}

put_secret_from_file() {
  local secret_id=$1 file=$2
  # Read from a file so the value never shows on a command line.
  aws secretsmanager put-secret-value --region "$aws_region" --secret-id "$secret_id" \
    --secret-string "file://$file" >/dev/null
}

ensure_signing_key() {
  local secret_id=$1
  secret_has_value "$secret_id" && return
  log "storing a new random token signing key in secret $secret_id"
  local key_file
  key_file=$(mktemp)
  chmod 600 "$key_file"
  aws secretsmanager get-random-password --region "$aws_region" --password-length 64 \
    --exclude-punctuation --query RandomPassword --output text >"$key_file"
  put_secret_from_file "$secret_id" "$key_file"
  rm -f "$key_file"
}

ensure_previous_keys() {
  local secret_id=$1
  aws secretsmanager describe-secret --region "$aws_region" --secret-id "$secret_id" >/dev/null 2>&1 || return 0
  secret_has_value "$secret_id" && return
  log "secret $secret_id: no previous signing keys yet"
  local file
  file=$(mktemp)
  printf ',' >"$file"
  put_secret_from_file "$secret_id" "$file"
  rm -f "$file"
}

# A destroy followed by a create within the secrets' recovery window (prod: 30 days) finds the
# names still taken by secrets scheduled for deletion. Restore them and adopt them into the
# state, keeping their values (the same signing key: devices' tokens stay valid). dev deletes
# its secrets at once (secret_recovery_window_days = 0), so there is nothing to restore there.
adopt_existing_secrets() {
  local project=$1 name address secret_id deleted
  for name in token-signing-key:aws_secretsmanager_secret.signing_key \
    token-signing-keys-previous:'aws_secretsmanager_secret.previous_signing_keys[0]' \
    smoke-device-token:aws_secretsmanager_secret.smoke_token; do
    secret_id="$project/$env_name/${name%%:*}"
    address=${name#*:}
    deleted=$(aws secretsmanager describe-secret --region "$aws_region" --secret-id "$secret_id" \
      --query DeletedDate --output text 2>/dev/null) || continue
    if [ "$deleted" != "None" ] && [ -n "$deleted" ]; then
      log "restoring secret $secret_id (scheduled for deletion on $deleted)"
      aws secretsmanager restore-secret --region "$aws_region" --secret-id "$secret_id" >/dev/null
    fi
    if ! tf appinfra state list "$address" 2>/dev/null | grep -q .; then
      log "adopting existing secret $secret_id into the appinfra state"
      mapfile -t vars < <(stack_vars appinfra)
      tf appinfra import -input=false "${vars[@]}" "-var=image_tag=$(image_tag)" "$address" \
        "$(aws secretsmanager describe-secret --region "$aws_region" --secret-id "$secret_id" --query ARN --output text)"
    fi
  done
}

# ---------------------------------------------------------------- tokens

# Runs `mindproject token create ARGS` where the key is: inside a running task through ECS Exec
# (the key never leaves AWS), else locally with the key read from Secrets Manager (needs
# secretsmanager:GetSecretValue on it). Prints the token; fails with what to do otherwise.
mint_token() {
  local cluster service task output
  cluster=$(tf appinfra output -raw cluster_name 2>/dev/null || true)
  service=$(tf appinfra output -raw service_name 2>/dev/null || true)
  if [ -n "$cluster" ] && command -v session-manager-plugin >/dev/null 2>&1 &&
    [ "$(aws ecs describe-services --region "$aws_region" --cluster "$cluster" --services "$service" \
      --query 'services[0].enableExecuteCommand' --output text 2>/dev/null)" = "True" ]; then
    task=$(aws ecs list-tasks --region "$aws_region" --cluster "$cluster" --service-name "$service" \
      --desired-status RUNNING --query 'taskArns[0]' --output text)
    output=$(aws ecs execute-command --region "$aws_region" --cluster "$cluster" --task "$task" \
      --container mindproject --interactive --command "mindproject token create $*" 2>/dev/null || true)
    # The session's banner lines surround the token: keep the line that looks like one.
    output=$(printf '%s\n' "$output" | tr -d '\r' | grep -E '^[A-Za-z0-9_.~+/=-]{40,}$' | tail -n 1 || true)
    if [ -n "$output" ]; then
      echo "$output"
      return
    fi
    log "ECS Exec did not return a token; trying the local CLI"
  fi
  if command -v mindproject >/dev/null 2>&1; then
    local key
    key=$(aws secretsmanager get-secret-value --region "$aws_region" \
      --secret-id "$(tf appinfra output -raw signing_key_secret_arn)" --query SecretString --output text 2>/dev/null || true)
    if [ -n "$key" ]; then
      MINDPROJECT_SECRET_KEY="$key" mindproject token create "$@"
      return
    fi
  fi
  die "cannot make a token: set MINDPROJECT_TOKEN, or enable_execute_command = true in the
appinfra tfvars (and install the Session Manager plugin), or install the mindproject CLI
(pip install .) and use credentials that may read the signing-key secret. By hand:
  aws ecs execute-command --cluster <cluster> --task <task> --container mindproject \\
    --interactive --command 'mindproject token create --role admin --ttl 15m'"
}

# Stores a 90-day token of the smoke-test device, read by the pipeline's smoke test.
ensure_smoke_token() {
  local secret_id=$1
  secret_has_value "$secret_id" && return
  local file
  file=$(mktemp)
  chmod 600 "$file"
  if mint_token --device pipeline-smoke --ttl 90d >"$file" 2>/dev/null && [ -s "$file" ]; then
    log "stored the smoke-test device token in $secret_id"
    put_secret_from_file "$secret_id" "$file"
  else
    log "warning: no smoke-test device token stored in $secret_id; the pipeline's smoke test fails until one is (docs/deploy.md)"
  fi
  rm -f "$file"
}

# ---------------------------------------------------------------- actions

do_plan() {
  need terraform aws
  check_environment_files
  resolve_aws
  ensure_state_bucket
  local -a vars
  local stack failed=()
  for stack in "${env_stacks[@]}"; do
    tf_init "$stack"
    mapfile -t vars < <(stack_vars "$stack")
    [ "$stack" != "appinfra" ] || vars+=("-var=image_tag=$(image_tag)")
    log "$stack: terraform plan ($env_name): nothing is changed"
    # -lock=false: reading only; a plan must not block (or be blocked by) an apply.
    tf "$stack" plan -input=false -lock=false "${vars[@]}" || failed+=("$stack")
  done
  [ "${#failed[@]}" -eq 0 ] || die "plan failed for: ${failed[*]} (a stack whose inputs are not deployed yet cannot plan)"
  log "planned ${env_stacks[*]} for $env_name; nothing was applied"
}

do_create() {
  need terraform aws git jq curl
  command -v docker >/dev/null 2>&1 || need buildah
  check_environment_files
  check_no_placeholders
  resolve_aws
  ensure_state_bucket

  local -a vars
  local tag
  tag=$(image_tag)

  tf_init networking
  mapfile -t vars < <(stack_vars networking)
  plan_and_apply networking "${vars[@]}"

  tf_init appinfra
  mapfile -t vars < <(stack_vars appinfra)
  vars+=("-var=image_tag=$tag")
  local project
  project=$(tfvars_value appinfra project)
  project=${project:-mindproject}
  adopt_existing_secrets "$project"
  # The service needs its image and keys before it can start: create the repository and the
  # secrets first, push, store the keys, then apply the rest.
  plan_and_apply appinfra "${vars[@]}" \
    -target=aws_ecr_repository.app -target=aws_ecr_lifecycle_policy.app \
    -target=aws_secretsmanager_secret.signing_key -target=aws_secretsmanager_secret.previous_signing_keys \
    -target=aws_secretsmanager_secret.smoke_token
  # (A targeted apply does not refresh every output: look them up by their fixed names.)
  ensure_signing_key "$project/$env_name/token-signing-key"
  ensure_previous_keys "$project/$env_name/token-signing-keys-previous"
  local image_repository
  image_repository=$(tfvars_value appinfra image_repository_name)
  if [ -n "$image_repository" ]; then
    # dr: the service runs the images ECR replicates from prod; nothing is built here.
    if aws ecr describe-images --region "$aws_region" --repository-name "$image_repository" \
      --image-ids "imageTag=$tag" >/dev/null 2>&1; then
      log "using $image_repository:$tag, replicated from the primary region"
    elif [ "${TF_VAR_dr_peer_ready:-true}" = "false" ]; then
      log "image $image_repository:$tag is not here yet (first pass): the tasks start once prod's images are replicated"
    else
      die "image $image_repository:$tag is not in $aws_region: set IMAGE_TAG to a commit prod ran (docs/runbook.md, F4)"
    fi
  else
    push_image "$(aws ecr describe-repositories --region "$aws_region" \
      --repository-names "$project/$env_name" --query 'repositories[0].repositoryUri' --output text)" "$tag"
  fi

  plan_and_apply appinfra "${vars[@]}"

  if has_stack cicd; then
    tf_init cicd
    mapfile -t vars < <(stack_vars cicd)
    plan_and_apply cicd "${vars[@]}"
  fi

  local cluster service
  cluster=$(tf appinfra output -raw cluster_name)
  service=$(tf appinfra output -raw service_name)
  log "waiting for the service to become stable"
  aws ecs wait services-stable --region "$aws_region" --cluster "$cluster" --services "$service"

  ensure_smoke_token "$project/$env_name/smoke-device-token"

  if has_stack cicd && tf cicd output -raw connection_arn >/dev/null 2>&1; then
    log "approve the source connection once in the console if it is PENDING: $(tf cicd output -raw connection_arn)"
  fi

  do_test
}

# The token for the test calls: MINDPROJECT_TOKEN, or a 15-minute admin token made by
# mint_token (inside a task, or locally from the signing key).
make_token() {
  if [ -n "${MINDPROJECT_TOKEN:-}" ]; then
    echo "$MINDPROJECT_TOKEN"
    return
  fi
  if [ -n "${MINDPROJECT_URL:-}" ] && [ -z "$aws_region" ]; then
    log "no MINDPROJECT_TOKEN for $MINDPROJECT_URL: sending requests without a token"
    return
  fi
  mint_token --role admin --ttl 15m
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
    if ! curl "${curl_opts[@]}" -X GET "$list_url" -o "$work/list.json"; then
      # A device token (the pipeline's smoke test) may not list other devices: 403 is right.
      if jq -e '.error.code == "forbidden" or .code == "forbidden"' "$work/list.json" >/dev/null 2>&1; then
        echo "GET /api/devices/ answered 403: this token may not list devices (a device token), skipped"
        listed=true
        break
      fi
      die "listing failed: $(cat "$work/list.json" 2>/dev/null)"
    fi
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
  for ((i = ${#env_stacks[@]} - 1; i >= 0; i--)); do
    stack=${env_stacks[$i]}
    tf_init "$stack"
    mapfile -t vars < <(stack_vars "$stack")
    [ "$stack" != "appinfra" ] || vars+=("-var=image_tag=destroy")
    log "$stack: terraform destroy"
    tf "$stack" destroy -input=false "${approve[@]}" "${vars[@]}" || die "$stack: destroy failed
(non-empty buckets need force_destroy_buckets = true, and the ALB enable_deletion_protection = false:
apply that first, see docs/deploy.md)"
  done
  log "destroyed $env_name; the state bucket $state_bucket is kept"
  local window
  window=$(sed -n -E 's/^[[:space:]]*secret_recovery_window_days[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "$(tfvars_file appinfra)" | head -n 1)
  if [ "${window:-7}" != "0" ]; then
    log "the signing-key secrets stay restorable for ${window:-7} days; a create within that window restores and reuses them (same keys)"
  fi
}

case "$action" in
  create) do_create ;;
  plan) do_plan ;;
  test) do_test ;;
  destroy) do_destroy ;;
  "")
    usage >&2
    exit 2
    ;;
  *) die "unknown action: $action (create, plan, test or destroy)" ;;
esac
