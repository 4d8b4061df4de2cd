#!/bin/sh
# top-processes: load, memory, and the heaviest processes by CPU and by memory. Read-only.
set -eu

count="$DESKSIDE_PARAM_COUNT"

if ! command -v ps >/dev/null 2>&1; then
    echo "error: ps (procps) is not installed; cannot list processes" >&2
    exit 3
fi

echo "== Load =="
echo "Load average (1, 5, 15 min): $(cut -d ' ' -f 1-3 /proc/loadavg) with $(grep -c '^processor' /proc/cpuinfo) CPU(s)"
echo
echo "== Memory (MiB) =="
awk '/^(MemTotal|MemAvailable|SwapTotal|SwapFree):/ { printf "%-13s %8.0f\n", $1, $2 / 1024 }' /proc/meminfo
echo
echo "== Top $count by CPU =="
ps -eo pid,user,pcpu,pmem,etime,comm --sort=-pcpu | head -n "$((count + 1))"
echo
echo "== Top $count by memory (RSS, KiB) =="
ps -eo pid,user,rss,pmem,etime,comm --sort=-rss | head -n "$((count + 1))"
