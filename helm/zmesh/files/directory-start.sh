#!/bin/sh
# Starts one zmesh-directory replica of the StatefulSet (mounted from the chart's ConfigMap).
#
# - id: the pod's ordinal + 1 (pod NAME-0 is replica 1).
# - Raft address: POD_IP:RAFT_PORT. The Raft library takes IPv4 literals only, so the stable
#   DNS names cannot be Raft addresses; the IP is written to DATA_DIR/raft-address and a restart
#   with another IP is refused with what to do (docs/deploy.md).
# - gRPC address advertised to clients: the pod's stable DNS name.
# - First start (no DATA_DIR/raft yet): when a cluster already answers on the peers (a scale-up,
#   or a replica whose volume was replaced), start with --join; otherwise, for ordinals below
#   INITIAL_CLUSTER_SIZE, bootstrap with --initial-cluster built from the peers' current IPs
#   (waiting up to PEER_WAIT_SECONDS for their names to resolve); above it, --join.
# The settings shared by all replicas come from CONFIG; the flags here override it.
set -eu

say() { echo "directory-start: $*" >&2; }

ordinal=${POD_NAME##*-}
case $ordinal in
  '' | *[!0-9]*) say "cannot take an ordinal from the pod name '$POD_NAME'"; exit 1 ;;
esac
id=$((ordinal + 1))
domain="$PEERS_SERVICE.$POD_NAMESPACE.svc.$CLUSTER_DOMAIN"
raft_address="$POD_IP:$RAFT_PORT"
case $POD_IP in
  *:*) say "POD_IP $POD_IP is IPv6; the Raft transport needs IPv4"; exit 1 ;;
esac

set -- --config "$CONFIG" --data-dir "$DATA_DIR" --id "$id" --raft-listen "$raft_address" \
  --advertise "$POD_NAME.$domain:$GRPC_PORT"

peer_addresses() {  # gRPC addresses of the other replicas, comma-separated
  list=""
  i=0
  while [ "$i" -lt "$REPLICAS" ]; do
    [ "$i" -ne "$ordinal" ] && list="${list:+$list,}$STATEFULSET-$i.$domain:$GRPC_PORT"
    i=$((i + 1))
  done
  echo "$list"
}

if [ -d "$DATA_DIR/raft" ]; then
  recorded=$(cat "$DATA_DIR/raft-address" 2>/dev/null || true)
  if [ -n "$recorded" ] && [ "$recorded" != "$raft_address" ]; then
    say "replica $id was a member at Raft address $recorded, and this pod's address is now"
    say "$raft_address: the other replicas cannot reach it there. To bring it back:"
    say "  zmeshctl members remove $id;  delete this replica's volume (PVC data-$POD_NAME) and pod;"
    say "  it then starts empty with --join: zmeshctl members add $id <its new IP>:$RAFT_PORT"
    exit 1
  fi
  say "replica $id restarting from its data dir at $raft_address"
else
  mkdir -p "$DATA_DIR"
  peers=$(peer_addresses)
  if [ -n "$peers" ] && zmeshctl --directory "$peers" --timeout-ms 3000 members list >/dev/null 2>&1; then
    say "a cluster answers on the peers: replica $id joins it; if it is not a member yet, add it:"
    say "  zmeshctl members add $id $raft_address"
    set -- "$@" --join
  elif [ "$ordinal" -ge "$INITIAL_CLUSTER_SIZE" ]; then
    say "replica $id is beyond the initial cluster ($INITIAL_CLUSTER_SIZE): it joins; add it with"
    say "  zmeshctl members add $id $raft_address"
    set -- "$@" --join
  else
    deadline=$(($(date +%s) + PEER_WAIT_SECONDS))
    cluster=""
    i=0
    while [ "$i" -lt "$INITIAL_CLUSTER_SIZE" ]; do
      if [ "$i" -eq "$ordinal" ]; then
        ip=$POD_IP
      else
        name="$STATEFULSET-$i.$domain"
        while :; do
          ip=$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }')
          [ -n "$ip" ] && break
          if [ "$(date +%s)" -ge "$deadline" ]; then
            say "$name does not resolve after ${PEER_WAIT_SECONDS}s; is its pod scheduled?"
            exit 1
          fi
          sleep 1
        done
      fi
      cluster="${cluster:+$cluster,}$((i + 1))=$ip:$RAFT_PORT"
      i=$((i + 1))
    done
    say "replica $id bootstraps the cluster $cluster"
    set -- "$@" --initial-cluster "$cluster"
  fi
fi
echo "$raft_address" >"$DATA_DIR/raft-address"
exec zmesh-directory "$@"
