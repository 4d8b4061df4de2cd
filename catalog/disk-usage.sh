#!/bin/sh
# disk-usage: free space of the filesystem holding PATH and the largest directories
# directly under PATH (this filesystem only). Read-only.
set -eu

path="$DESKSIDE_PARAM_PATH"
top="$DESKSIDE_PARAM_TOP"

if [ ! -d "$path" ]; then
    echo "error: $path does not exist or is not a directory" >&2
    exit 1
fi
for tool in df du sort head awk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is not installed; cannot measure disk usage" >&2
        exit 3
    fi
done

echo "Filesystem holding $path:"
df -hP "$path"
echo
df -iP "$path" | awk 'NR == 2 { print "Inodes: " $3 " used of " $2 " (" $5 ")" }'
echo
echo "Largest $top directories directly under $path (this filesystem only, sizes in MiB):"
# du exits 1 when some directory is unreadable; the sizes it could read are still right.
# Output goes through a temp file so that failure is not hidden by the pipeline.
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
du_status=0
du -x -k -d 1 -- "$path" >"$tmp" 2>/dev/null || du_status=$?
# The line for $path itself is the total; it sorts first and is labelled as such.
sort -rn "$tmp" | head -n "$((top + 1))" |
    awk -v self="$path" '{ size = $1; sub(/^[0-9]+[ \t]+/, "");
        if ($0 == self) printf "%10.1f  %s (total)\n", size / 1024, $0;
        else printf "%10.1f  %s\n", size / 1024, $0 }'
if [ "$du_status" -ne 0 ]; then
    echo
    echo "note: some directories could not be read (du exited $du_status); their sizes are missing above"
fi
