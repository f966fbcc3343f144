# Sourced by the experiment scripts: `timed NAME COMMAND...` runs COMMAND and appends
# "NAME<tab>seconds" to $LOG (the run's timings.tsv).
timed() {
    local name=$1 t0=$SECONDS
    shift
    echo "== $name" >&2
    "$@"
    printf '%s\t%s\n' "$name" "$((SECONDS - t0))" >>"$LOG"
}
