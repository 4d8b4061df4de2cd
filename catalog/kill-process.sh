#!/bin/sh
# kill-process: show one process and (dry_run=false) signal it, refusing the processes
# whose end would take the machine or this remote session down with it.
set -eu

pid="$DESKSIDE_PARAM_PID"
signal="$DESKSIDE_PARAM_SIGNAL"
dry_run="$DESKSIDE_PARAM_DRY_RUN"

case "$pid" in
    '' | *[!0-9]*)
        echo "error: pid must be a number, got '$pid'" >&2
        exit 2
        ;;
esac

# state_of PID: the one-letter state from /proc/PID/stat (the field after "(comm)").
state_of() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1
}
# ppid_of PID
ppid_of() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 2
}

if [ ! -d "/proc/$pid" ]; then
    echo "error: there is no process with PID $pid (it may have ended already)" >&2
    exit 1
fi
comm="$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')"

agent="$PPID"
agent_parent="$(ppid_of "$agent" || true)"
if [ "$pid" -eq 1 ]; then
    echo "error: refusing to signal PID 1 ($comm): it is the init system; ending it stops the machine" >&2
    exit 1
fi
if [ "$pid" -eq "$$" ]; then
    echo "error: refusing to signal PID $pid: it is this script" >&2
    exit 1
fi
if [ "$pid" -eq "$agent" ]; then
    echo "error: refusing to signal PID $pid ($comm): it is the Deskside agent running this script" >&2
    exit 1
fi
if [ -n "$agent_parent" ] && [ "$pid" -eq "$agent_parent" ]; then
    echo "error: refusing to signal PID $pid ($comm): it is the parent of the Deskside agent" >&2
    exit 1
fi
if [ "$comm" = "deskside-agent" ]; then
    echo "error: refusing to signal PID $pid: it is a Deskside agent" >&2
    exit 1
fi
# Kernel threads have no executable and are children of kthreadd (PID 2).
if [ "$pid" -eq 2 ] || [ "$(ppid_of "$pid")" = "2" ]; then
    echo "error: refusing to signal PID $pid ($comm): it is a kernel thread" >&2
    exit 1
fi
if [ "$(state_of "$pid")" = "Z" ]; then
    echo "error: PID $pid ($comm) has already ended (zombie); only its parent (PID $(ppid_of "$pid")) can clear it" >&2
    exit 1
fi

echo "Process $pid:"
if command -v ps >/dev/null 2>&1; then
    ps -o pid,ppid,user,stat,etime,pcpu,rss,args -p "$pid" || true
else
    echo "  command: $comm"
    echo "  command line: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    echo "  parent PID: $(ppid_of "$pid")"
fi

if [ "$dry_run" = "true" ]; then
    echo "Dry run: would send SIG$signal to PID $pid ($comm) (run with dry_run=false to do it)"
    exit 0
fi

echo "Sending SIG$signal to PID $pid ($comm)"
if ! kill -s "$signal" "$pid"; then
    echo "error: could not signal PID $pid" >&2
    exit 1
fi

# Wait up to 10 s for it to go; an unreaped child (zombie) counts as ended.
i=0
while [ "$i" -lt 20 ]; do
    if [ ! -d "/proc/$pid" ] || [ "$(state_of "$pid")" = "Z" ] || [ -z "$(state_of "$pid")" ]; then
        echo "Done: PID $pid ($comm) has ended."
        exit 0
    fi
    sleep 0.5 2>/dev/null || sleep 1
    i=$((i + 1))
done
echo "error: PID $pid ($comm) is still running 10 s after SIG$signal; try signal=KILL" >&2
exit 1
