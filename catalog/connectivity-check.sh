#!/bin/sh
# connectivity-check: name lookup, ping and a TCP connect to one host and port, each
# reported in plain words. The host is only ever passed as an argument, never as code.
set -eu

host="$DESKSIDE_PARAM_HOST"
port="$DESKSIDE_PARAM_PORT"
count="$DESKSIDE_PARAM_COUNT"

echo "Checking $host (TCP port $port)"

# 1. Name lookup.
if ! command -v getent >/dev/null 2>&1; then
    echo "error: getent is not installed; cannot look up $host" >&2
    exit 3
fi
if addresses="$(getent ahosts "$host" 2>/dev/null | awk '{ print $1 }' | sort -u)" && [ -n "$addresses" ]; then
    echo "DNS: $host resolves to:"
    printf '%s\n' "$addresses" | sed 's/^/  /'
else
    echo "DNS: $host does not resolve; check the name and the DNS servers:"
    grep '^nameserver' /etc/resolv.conf 2>/dev/null | sed 's/^/  /' || true
    echo "Result: FAILED - $host cannot be looked up"
    exit 1
fi

# 2. Ping (informational: many hosts and firewalls drop ICMP).
if [ "$count" -eq 0 ]; then
    echo "Ping: skipped (count=0)"
elif command -v ping >/dev/null 2>&1; then
    if ping -c "$count" -W 2 "$host" 2>&1; then
        echo "Ping: $host answers"
    else
        echo "Ping: no answer from $host (many networks block ping; the TCP test below decides)"
    fi
else
    echo "Ping: skipped (ping is not installed)"
fi

# 3. TCP connect, with whichever tool exists.
tcp_status=""
if command -v nc >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then
    if timeout 10 nc -z -w 5 "$host" "$port" 2>/dev/null; then tcp_status=ok; else tcp_status=failed; fi
elif command -v python3 >/dev/null 2>&1; then
    tcp_status="$(python3 -c '
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("ok")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
except OSError as e:
    print("failed: " + (e.strerror or str(e)))
' "$host" "$port")"
else
    echo "error: neither nc nor python3 is installed; cannot test a TCP connection" >&2
    exit 3
fi

case "$tcp_status" in
    ok)
        echo "TCP $host:$port: connected"
        echo "Result: OK - $host is reachable on port $port"
        ;;
    refused)
        echo "TCP $host:$port: connection refused (the host is up but nothing listens on port $port)"
        echo "Result: FAILED - port $port is closed on $host"
        exit 1
        ;;
    timeout)
        echo "TCP $host:$port: no answer within 5 seconds (a firewall may drop it)"
        echo "Result: FAILED - $host does not answer on port $port"
        exit 1
        ;;
    *)
        echo "TCP $host:$port: $tcp_status"
        echo "Result: FAILED - cannot connect to $host on port $port"
        exit 1
        ;;
esac
