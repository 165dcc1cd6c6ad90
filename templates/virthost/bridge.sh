#!/bin/sh
# bridge.sh - the Linux bridges kubelab makes from a NIC for a lab's bridged
# network (`kind: bridged` with `nic:`), on the virthost.
#
# A bridge belongs to the lab whose name is in its interface alias
# ("kubelab:LAB"); kubelab never touches another bridge. Making one moves the
# NIC's global addresses and its routes (default route included) onto the
# bridge in one go, after noting them in $KUBELAB_VIRTHOST_STATE/bridges/BRIDGE;
# removing it puts them back on the NIC. Runtime configuration only: it does
# not survive a reboot of the virthost (nor does the note, under /run), and a
# network manager that owns the NIC may undo it.
#
# Parameters (environment variables):
#   KUBELAB_ACTION   list | up | down
#   KUBELAB_LAB      the lab
#   KUBELAB_BRIDGE   the bridge (up, down)
#   KUBELAB_NIC      the NIC to enslave (up)
#   KUBELAB_VIRTHOST_STATE  where the notes go (default /run/kubelab)
# Output: list: one line per bridge of the lab ("BRIDGE NIC"); up/down:
# "changed: WHAT" lines, last line "changed=N". Errors on stderr, exit 1.
#
# This file is rendered by minijinja before it is sent: it must not contain
# the character pairs that open minijinja blocks, expressions or comments.
set -eu

ACTION=${KUBELAB_ACTION:?}
LAB=${KUBELAB_LAB:?}
STATE=${KUBELAB_VIRTHOST_STATE:-/run/kubelab}/bridges
OWNER="kubelab:$LAB"

# (changed, die, the root check, exists, alias_of, master_of: devices.sh)

# global addresses of a device, one per line: "4 ADDR/LEN" or "6 ADDR/LEN"
addresses() {
  ip -o -4 addr show dev "$1" scope global | awk '{print "4 " $4}'
  ip -o -6 addr show dev "$1" scope global | awk '{print "6 " $4}'
}
# routes of a device that are not made by the kernel or router advertisements,
# without the words that cannot be given back to `ip route add`
routes() {
  for f in 4 6; do
    ip -o "-$f" route show dev "$1" | grep -v -e 'proto kernel' -e 'proto ra' -e '^fe80:' -e '^multicast' \
      | sed -e 's/ linkdown//g' -e 's/ dead//g' -e 's/  *$//' | sed "s/^/$f /" || true
  done
}

# move_config FROM TO NOTE: addresses and routes listed in NOTE, from FROM to TO
move_config() {
  while read -r kind fam rest; do
    [ "$kind" = addr ] || continue
    ip "-$fam" addr del "$rest" dev "$1" 2>/dev/null || true
    ip "-$fam" addr add "$rest" dev "$2" 2>/dev/null || true
  done < "$3"
  while read -r kind fam rest; do
    [ "$kind" = route ] || continue
    # shellcheck disable=SC2086
    ip "-$fam" route replace $rest dev "$2" 2>/dev/null || echo "warning: route $rest could not be put on $2" >&2
  done < "$3"
}

case $ACTION in
list)
  # no process per interface: a virthost may have hundreds
  for d in /sys/class/net/*; do
    [ -d "$d/bridge" ] || continue
    b=${d##*/}
    [ "$(alias_of "$b")" = "$OWNER" ] || continue
    nic=none
    [ -f "$STATE/$b" ] && nic=$(sed -n 's/^nic //p' "$STATE/$b")
    echo "$b $nic"
  done
  ;;
up)
  BRIDGE=${KUBELAB_BRIDGE:?}
  NIC=${KUBELAB_NIC:?}
  exists "$NIC" || die "NIC $NIC does not exist on the virthost"
  if exists "$BRIDGE"; then
    [ "$(alias_of "$BRIDGE")" = "$OWNER" ] || die "bridge $BRIDGE exists and is not lab $LAB's (alias \"$(alias_of "$BRIDGE")\"); name another bridge in the lab file"
    if [ "$(master_of "$NIC")" != "$BRIDGE" ]; then
      [ "$(master_of "$NIC")" = none ] || die "NIC $NIC is already part of $(master_of "$NIC")"
      ip link set dev "$NIC" master "$BRIDGE"
      changed "$NIC back in bridge $BRIDGE"
    fi
  else
    [ "$(master_of "$NIC")" = none ] || die "NIC $NIC is already part of $(master_of "$NIC")"
    mkdir -p "$STATE"
    note="$STATE/$BRIDGE"
    {
      echo "nic $NIC"
      addresses "$NIC" | sed 's/^/addr /'
      routes "$NIC" | sed 's/^/route /'
    } > "$note.tmp"
    mv "$note.tmp" "$note"
    mac=$(cat "/sys/class/net/$NIC/address")
    mtu=$(cat "/sys/class/net/$NIC/mtu")
    ip link add name "$BRIDGE" type bridge stp_state 0 forward_delay 0
    ip link set dev "$BRIDGE" alias "$OWNER"
    ip link set dev "$BRIDGE" address "$mac" mtu "$mtu"
    ip link set dev "$BRIDGE" up
    ip link set dev "$NIC" master "$BRIDGE"
    move_config "$NIC" "$BRIDGE" "$note"
    changed "bridge $BRIDGE made from $NIC (its addresses and routes moved onto it)"
  fi
  ;;
down)
  BRIDGE=${KUBELAB_BRIDGE:?}
  if exists "$BRIDGE"; then
    [ "$(alias_of "$BRIDGE")" = "$OWNER" ] || die "bridge $BRIDGE is not lab $LAB's: left alone"
    note="$STATE/$BRIDGE"
    nic=$( [ -f "$note" ] && sed -n 's/^nic //p' "$note" || true)
    if [ -n "$nic" ] && exists "$nic"; then
      ip link set dev "$nic" nomaster
      move_config "$BRIDGE" "$nic" "$note"
    fi
    ip link del dev "$BRIDGE"
    rm -f "$note"
    changed "bridge $BRIDGE removed${nic:+ (addresses and routes back on $nic)}"
  fi
  ;;
*) die "unknown action $ACTION" ;;
esac
[ "$ACTION" = list ] || echo "changed=$CHANGED"
