#!/bin/sh
# Bucket initialisation for our MinIO (run by Job cxrtl-bucket-init). Idempotent: every step either
# creates what is missing or finds it already there, so the Job can run again after any change.
#   1. wait for the server;  2. buckets $BUCKETS;  3. policy cxrtl-readwrite (policy.json: those buckets
#   only);  4. user $MINIO_ACCESS_KEY with that policy, so the pipeline never holds the root credentials.
# No credential is echoed: mc prints alias and user names only.
set -eu

: "${MINIO_URL:?}" "${BUCKETS:?}" "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${MINIO_ACCESS_KEY:?}" "${MINIO_SECRET_KEY:?}"
if [ "$MINIO_ACCESS_KEY" = "$MINIO_ROOT_USER" ]; then
    echo "bucket-init: MINIO_ACCESS_KEY must differ from MINIO_ROOT_USER in Secret cxrtl-minio" >&2
    exit 1
fi

# --api S3v4 skips mc's probe of the server, which is not up yet on a first start.
mc alias set cxrtl "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" --api S3v4 >/dev/null
echo "bucket-init: waiting for MinIO at $MINIO_URL"
mc ready cxrtl

for bucket in $BUCKETS; do
    mc mb --ignore-existing "cxrtl/$bucket"
done

mc admin policy create cxrtl cxrtl-readwrite /config/policy.json
# Adding an existing user sets its secret key: a rotated MINIO_SECRET_KEY takes effect here.
mc admin user add cxrtl "$MINIO_ACCESS_KEY" "$MINIO_SECRET_KEY" >/dev/null
if ! out=$(mc admin policy attach cxrtl cxrtl-readwrite --user "$MINIO_ACCESS_KEY" 2>&1); then
    case "$out" in
        *"already in effect"*) ;;
        *) echo "$out" >&2; exit 1 ;;
    esac
fi
echo "bucket-init: buckets $BUCKETS and the pipeline's user (policy cxrtl-readwrite) are ready"
