#!/bin/sh
# Starts zmesh-proxy on this node (mounted from the chart's ConfigMap). The sockets it creates
# in the shared IPC directory get mode 0770 (umask 0007): the services connecting to them run
# with the directory's group. NODE_NAME and HOST_IP come from the downward API; the other
# settings from CONFIG.
set -eu
umask 0007
exec zmesh-proxy --config "$CONFIG" --node-name "$NODE_NAME" --advertise-host "$HOST_IP" "$@"
