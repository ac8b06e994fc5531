#!/bin/sh
# The image's entrypoint: `wa-agent` with the arguments given (serve, worker, migrate...).
# The image has no embedded Postgres, so it says so at once when DATABASE_URL is missing
# instead of failing deep inside the start-up. `exec`: wa-agent is PID 1's child no more
# but PID 1 itself, and receives the container's SIGTERM directly.
set -eu
if [ -z "${DATABASE_URL:-}" ]; then
    echo "wa-agent: DATABASE_URL is required in this image (Postgres with pgvector;" \
        "the embedded Postgres is for development only)" >&2
    exit 64
fi
exec wa-agent "$@"
