# build_common.sh -- shell helpers shared by build_horovod.sh and build_h5py_mpi.sh.
# Source it after setting TAG (log prefix), T_START (=$SECONDS) and LOG (build log path).
# run_logged leaves the build's PID in BUILD_PID while it runs, for the caller's cleanup.

log()  { printf '%s %s\n' "$TAG" "$*"; }
warn() { printf '%s WARNING: %s\n' "$TAG" "$*" >&2; }
die()  { printf '%s ERROR: %s\n' "$TAG" "$*" >&2; exit 1; }
elapsed() { local s=$((SECONDS - ${1:-$T_START})); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

run_logged() {  # $1 = description, rest = command
    local desc=$1; shift
    local t0=$SECONDS last=$SECONDS rc=0
    printf '\n===== %s: %s\n' "$desc" "$*" >>"$LOG"
    set -m   # own process group, so that cleanup can kill the whole build tree
    "$@" >>"$LOG" 2>&1 &
    BUILD_PID=$!
    set +m
    while kill -0 "$BUILD_PID" 2>/dev/null; do
        sleep 2
        if (( SECONDS - last >= 60 )); then
            last=$SECONDS
            log "  ... $desc: $(elapsed "$t0") elapsed; last log line: $(tail -n 1 "$LOG" | cut -c1-110)"
        fi
    done
    wait "$BUILD_PID" || rc=$?
    BUILD_PID=""
    return $rc
}

show_log_tail() {
    printf '%s ---- last 40 lines of %s ----\n' "$TAG" "$LOG" >&2
    tail -n 40 "$LOG" >&2
    printf '%s ---- errors (grep) ----\n' "$TAG" >&2
    grep -n -E 'error:|Error [0-9]|CMake Error|FAILED|fatal' "$LOG" | head -n 30 >&2 || true
}

# Run a 2-rank verification job in DIR whose ranks each write DIR/<PREFIX><rank> when they
# pass. The ranks' stdout interleaves on one pipe, so the marker files decide, not the
# printed lines. On failure: print the job's output, remove DIR, die.
# $1 = DIR, $2 = marker PREFIX, $3 = what is verified (for messages), rest = command.
verify_two_ranks() {
    local dir=$1 prefix=$2 what=$3 out rc=0 passed
    shift 3
    out=$(cd "$dir" && "$@" 2>&1) || rc=$?
    if [[ $rc -ne 0 || ! -f "$dir/${prefix}0" || ! -f "$dir/${prefix}1" ]]; then
        passed=$(cd "$dir" && ls "$prefix"* 2>/dev/null | tr '\n' ' ')
        printf '%s\n' "$out" >&2; rm -rf "$dir"
        die "2-rank $what failed (rc=$rc; rank markers present: ${passed:-none})"
    fi
    cat "$dir/${prefix}0" "$dir/${prefix}1" | sed "s/^/$TAG   /"
}
