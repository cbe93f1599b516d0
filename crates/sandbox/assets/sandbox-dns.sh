#!/bin/sh
# sandbox-dns ADDRESS...: the sandbox's resolver answers every name under its
# domain (/etc/sandbox-dns-domain) with these addresses; dnsmasq restarted.
set -e
domain=$(cat /etc/sandbox-dns-domain)
: > /etc/dnsmasq-clusterkit.conf.new
for a in "$@"; do
  echo "address=/$domain/$a" >> /etc/dnsmasq-clusterkit.conf.new
done
mv /etc/dnsmasq-clusterkit.conf.new /etc/dnsmasq-clusterkit.conf
if [ -s /run/sandbox-dnsmasq.pid ]; then
  kill "$(cat /run/sandbox-dnsmasq.pid)" 2>/dev/null || true
  sleep 0.2
fi
dnsmasq --conf-file=/etc/dnsmasq-clusterkit.conf --no-resolv --no-hosts \
  --listen-address=127.0.0.1 --bind-interfaces --user=root --pid-file=/run/sandbox-dnsmasq.pid
