#!/bin/sh
# tunnel.sh - the VXLAN devices that join a lab network's libvirt bridges on
# several virthosts into one layer-2 segment, on one virthost.
#
# One device per network: VNI and name derived from the lab and the network
# by kubelab; every other virthost of the lab is a flooding peer (an
# all-zero FDB entry: broadcast, unknown unicast and multicast go to each,
# unicast is learned), so n virthosts make n*(n-1)/2 tunnels per network
# without any loop (a bridge never floods back out of the port a frame came
# in on). A device belongs to the lab whose name is in its interface alias
# ("kubelab:LAB:NETWORK"); kubelab never touches another. Runtime
# configuration only: `up` makes it again after a reboot of the virthost.
#
# Parameters (environment variables):
#   KUBELAB_ACTION   list | ensure | remove
#   KUBELAB_LAB      the lab
#   KUBELAB_DEVICE   the VXLAN device (ensure, remove)
#   KUBELAB_NETWORK  the lab network (ensure)
#   KUBELAB_VNI      its VXLAN network identifier (ensure)
#   KUBELAB_LOCAL    this virthost's tunnel address (ensure)
#   KUBELAB_PEERS    the other virthosts' tunnel addresses, space-separated (ensure)
#   KUBELAB_BRIDGE   the network's bridge on this virthost (ensure)
#   KUBELAB_MTU      the network's MTU (ensure)
# Output: list: one line per device of the lab
#   "DEVICE NETWORK VNI LOCAL MASTER PEER,PEER,..."
# ensure/remove: "changed: WHAT" lines, last line "changed=N".
# Errors on stderr, exit 1.
#
# This file is rendered by minijinja before it is sent: it must not contain
# the character pairs that open minijinja blocks, expressions or comments.
set -eu

ACTION=${KUBELAB_ACTION:?}
LAB=${KUBELAB_LAB:?}
OWNER="kubelab:$LAB:"
PORT=4789

# (changed, die, the root check, exists, alias_of, master_of: devices.sh)
# "VNI LOCAL" of a VXLAN device
vxlan_of() {
  ip -d -o link show dev "$1" | sed -n 's/.* vxlan id \([0-9]*\).* local \([^ ]*\).*/\1 \2/p'
}
# the flooding peers of a device, one per line
peers_of() {
  bridge fdb show dev "$1" 2>/dev/null | sed -n 's/^00:00:00:00:00:00 dst \([^ ]*\).*/\1/p' | LC_ALL=C sort -u
}
# the VXLAN devices only (one `ip` for all), then their aliases
owned_devices() {
  for d in $(ip -o link show type vxlan | awk -F': ' '{print $2}' | cut -d@ -f1); do
    case "$(alias_of "$d")" in "$OWNER"*) echo "$d" ;; esac
  done
}

case "$ACTION" in
list)
  for d in $(owned_devices); do
    set -- $(vxlan_of "$d") - -
    echo "$d $(alias_of "$d" | sed "s/^$OWNER//") $1 $2 $(master_of "$d") $(peers_of "$d" | paste -sd, -)"
  done
  ;;
ensure)
  DEV=${KUBELAB_DEVICE:?}; NET=${KUBELAB_NETWORK:?}; VNI=${KUBELAB_VNI:?}
  LOCAL=${KUBELAB_LOCAL:?}; BRIDGE=${KUBELAB_BRIDGE:?}; MTU=${KUBELAB_MTU:?}
  PEERS=${KUBELAB_PEERS:-}
  exists "$BRIDGE" || die "bridge $BRIDGE of network $NET is not there"
  if exists "$DEV"; then
    [ "$(alias_of "$DEV")" = "$OWNER$NET" ] || die "$DEV exists and is not the device of network $NET of lab $LAB (alias: $(alias_of "$DEV"))"
    if [ "$(vxlan_of "$DEV")" != "$VNI $LOCAL" ]; then
      ip link del dev "$DEV"
      changed "removed $DEV (VNI or local address changed)"
    fi
  fi
  if ! exists "$DEV"; then
    ip link add "$DEV" type vxlan id "$VNI" local "$LOCAL" dstport "$PORT" \
      || die "cannot make VXLAN device $DEV (VNI $VNI, local $LOCAL): is VNI $VNI on port $PORT taken by another device?"
    ip link set dev "$DEV" alias "$OWNER$NET"
    changed "VXLAN $DEV (VNI $VNI, local $LOCAL) for network $NET"
  fi
  if [ "$(cat "/sys/class/net/$DEV/mtu")" != "$MTU" ]; then
    ip link set dev "$DEV" mtu "$MTU"
    changed "$DEV mtu $MTU"
  fi
  have=$(peers_of "$DEV")
  for p in $PEERS; do
    if ! echo "$have" | grep -qx "$p"; then
      bridge fdb append 00:00:00:00:00:00 dev "$DEV" dst "$p"
      changed "$DEV floods to $p"
    fi
  done
  for p in $have; do
    case " $PEERS " in *" $p "*) ;; *)
      bridge fdb del 00:00:00:00:00:00 dev "$DEV" dst "$p"
      changed "$DEV no longer floods to $p" ;;
    esac
  done
  if [ "$(master_of "$DEV")" != "$BRIDGE" ]; then
    ip link set dev "$DEV" master "$BRIDGE"
    changed "$DEV joined bridge $BRIDGE"
  fi
  if ! ip -o link show dev "$DEV" | grep -q '[<,]UP[,>]'; then
    ip link set dev "$DEV" up
    changed "$DEV up"
  fi
  ;;
remove)
  DEV=${KUBELAB_DEVICE:?}
  if exists "$DEV"; then
    case "$(alias_of "$DEV")" in
      "$OWNER"*) ip link del dev "$DEV"; changed "removed $DEV" ;;
      *) die "$DEV is not a device of lab $LAB" ;;
    esac
  fi
  ;;
*) die "unknown action $ACTION" ;;
esac
echo "changed=$CHANGED"
