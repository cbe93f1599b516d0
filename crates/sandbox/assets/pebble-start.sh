#!/bin/sh
# Starts Pebble, Let's Encrypt's test CA, validating for real (HTTP-01 on
# port 80, TLS-ALPN-01 on 443, names resolved by the container's resolver).
# The key and certificate of its own API are made here at first start, never
# baked into the image; their root is /var/lib/pebble/api-root.pem.
set -e
d=/var/lib/pebble
if [ ! -s "$d/key.pem" ]; then
  mkdir -p "$d"
  cd "$d"
  umask 077
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=clusterkit-sandbox-pebble-api-root -keyout api-root.key -out api-root.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pebble \
    -keyout key.pem -out api.csr 2>/dev/null
  # CLUSTERKIT_PEBBLE_ADDRESS: the address clients are given for its API.
  san="DNS:pebble,DNS:localhost,IP:127.0.0.1"
  [ -n "$CLUSTERKIT_PEBBLE_ADDRESS" ] && san="$san,IP:$CLUSTERKIT_PEBBLE_ADDRESS"
  printf 'subjectAltName=%s\n' "$san" > api.ext
  openssl x509 -req -in api.csr -CA api-root.pem -CAkey api-root.key -CAcreateserial \
    -days 30 -extfile api.ext -out cert.pem 2>/dev/null
  rm -f api-root.key api.csr api.ext
  chmod 644 api-root.pem cert.pem
fi
cat > /etc/pebble.json <<JSON
{
  "pebble": {
    "listenAddress": "0.0.0.0:14000",
    "managementListenAddress": "0.0.0.0:15000",
    "certificate": "$d/cert.pem",
    "privateKey": "$d/key.pem",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "profiles": {
      "default": { "description": "the default", "validityPeriod": 7776000 }
    }
  }
}
JSON
# The sandbox's names: with CLUSTERKIT_TEST_DOMAIN and CLUSTERKIT_TEST_ADDRESSES
# set, dnsmasq answers every name under that domain with those addresses (the
# ingress nodes, as round-robin DNS would) and Pebble resolves through it.
# `sandbox-dns ADDRESS...` changes the set while it runs (`sandbox stop` leaves
# a powered-off node out, as a health-checked DNS would).
if [ -n "$CLUSTERKIT_TEST_DOMAIN" ] && [ -n "$CLUSTERKIT_TEST_ADDRESSES" ]; then
  echo "$CLUSTERKIT_TEST_DOMAIN" > /etc/sandbox-dns-domain
  # shellcheck disable=SC2086
  /usr/local/bin/sandbox-dns $CLUSTERKIT_TEST_ADDRESSES
  set -- -dnsserver 127.0.0.1:53 "$@"
fi
exec /usr/bin/pebble -config /etc/pebble.json "$@"
