#!/bin/sh
# clean-temp: list or delete regular files untouched for more than N days under /tmp and
# /var/tmp. find deletes them itself: no symlink is followed, no other filesystem entered.
set -eu

where="$DESKSIDE_PARAM_PATH"
days="$DESKSIDE_PARAM_DAYS"
dry_run="$DESKSIDE_PARAM_DRY_RUN"
minutes=$((days * 1440))
shown=200

for tool in find readlink wc head sed; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is not installed; cannot look for old temp files" >&2
        exit 3
    fi
done

# old_files DIR ACTION...: regular files under DIR untouched for more than $days days,
# leaving alone services' private temp dirs and the X11/ICE socket dirs.
old_files() {
    dir="$1"
    shift
    find "$dir" -xdev -mindepth 1 -type f -mmin +"$minutes" -amin +"$minutes" \
        ! -path '*/systemd-private-*' ! -path '*/.X11-unix/*' ! -path '*/.ICE-unix/*' \
        ! -path '*/.XIM-unix/*' ! -path '*/.font-unix/*' ! -path '*/.Test-unix/*' \
        "$@" 2>/dev/null
}

# clean_one DIR REQUIRED: REQUIRED=yes makes a missing DIR an error rather than a note.
clean_one() {
    dir="$1"
    if [ -L "$dir" ]; then
        echo "error: $dir is a symbolic link; refusing to clean through it" >&2
        exit 1
    fi
    if [ ! -d "$dir" ]; then
        if [ "$2" = "yes" ]; then
            echo "error: $dir does not exist or is not a directory" >&2
            exit 1
        fi
        echo "$dir: no such directory, skipped"
        return 0
    fi
    # A directory below /tmp could lead elsewhere through a symlinked parent.
    real="$(readlink -f "$dir")"
    case "$real" in
        /tmp | /tmp/* | /var/tmp | /var/tmp/*) ;;
        *)
            echo "error: $dir resolves to $real, which is outside /tmp and /var/tmp; refusing" >&2
            exit 1
            ;;
    esac
    count="$(old_files "$real" -print | wc -l)"
    if [ "$count" -eq 0 ]; then
        echo "$real: no files untouched for more than $days days"
        return 0
    fi
    if [ "$dry_run" = "true" ]; then
        echo "$real: would delete $count file(s) untouched for more than $days days:"
    else
        echo "$real: deleting $count file(s) untouched for more than $days days:"
    fi
    old_files "$real" -print | head -n "$shown" | sed 's/^/  /'
    if [ "$count" -gt "$shown" ]; then
        echo "  ... and $((count - shown)) more"
    fi
    if [ "$dry_run" != "true" ]; then
        old_files "$real" -delete || true
        left="$(old_files "$real" -print | wc -l)"
        echo "$real: deleted $((count - left)) file(s); $left could not be deleted"
    fi
}

if [ "$dry_run" = "true" ]; then
    echo "Dry run: listing only, nothing is deleted (run with dry_run=false to delete)."
fi
if [ "$where" = "all" ]; then
    clean_one /tmp no
    clean_one /var/tmp no
else
    clean_one "$where" yes
fi
if command -v df >/dev/null 2>&1; then
    echo
    echo "Free space now:"
    if [ "$where" = "all" ]; then
        df -hP /tmp /var/tmp 2>/dev/null || true
    else
        df -hP "$where" 2>/dev/null || true
    fi
fi
