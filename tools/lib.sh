# Helpers shared by the scripts in tools/: source it, don't run it.
# Messages go to stderr so that a script's stdout stays free for data.

export LC_ALL=C  # EPOCHREALTIME and printf must use '.' as the decimal point

pd_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

pd_die() {
    pd_log "error: $*"
    exit 1
}

# Seconds elapsed since a start time taken from $EPOCHREALTIME, as "1.23".
pd_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

pd_docker_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
