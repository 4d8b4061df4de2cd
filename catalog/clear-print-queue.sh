#!/bin/sh
# clear-print-queue: list, then (dry_run=false) cancel, the queued CUPS jobs.
set -eu

printer="$DESKSIDE_PARAM_PRINTER"
dry_run="$DESKSIDE_PARAM_DRY_RUN"

for tool in lpstat cancel; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: the CUPS client tools are not installed ($tool is missing); there is no print queue to clear" >&2
        exit 3
    fi
done
if ! lpstat -r 2>/dev/null | grep -q 'is running'; then
    echo "error: the CUPS scheduler is not running; no print queue to clear (restart-service service=cups may help)" >&2
    exit 3
fi

if [ "$printer" = "all" ]; then
    target="all printers"
    jobs="$(lpstat -o 2>/dev/null || true)"
else
    if ! lpstat -p "$printer" >/dev/null 2>&1; then
        echo "error: there is no printer named $printer; known printers:" >&2
        lpstat -p >&2 2>&1 || true
        exit 1
    fi
    target="printer $printer"
    jobs="$(lpstat -o "$printer" 2>/dev/null || true)"
fi

echo "Printer status:"
lpstat -p 2>/dev/null || true
if [ -z "$jobs" ]; then
    echo "No queued jobs on $target; nothing to cancel."
    exit 0
fi
count="$(printf '%s\n' "$jobs" | wc -l)"
echo "Queued jobs on $target ($count):"
printf '%s\n' "$jobs"

if [ "$dry_run" = "true" ]; then
    echo "Dry run: would cancel these $count job(s) (run with dry_run=false to cancel them)."
    exit 0
fi

if [ "$printer" = "all" ]; then
    echo "Cancelling every job on every printer"
    cancel -a
else
    echo "Cancelling every job on $printer"
    cancel -a "$printer"
fi
sleep 1
left="$(lpstat -o 2>/dev/null | wc -l)"
if [ "$printer" != "all" ]; then
    left="$(lpstat -o "$printer" 2>/dev/null | wc -l)"
fi
if [ "$left" -gt 0 ]; then
    echo "error: $left job(s) are still queued on $target after cancelling" >&2
    exit 1
fi
echo "Done: the queue of $target is empty."
