#!/usr/bin/env bash
# A self-signed certificate for trying TLS (and so HTTP/2) on this machine: DIR/cert.pem and
# DIR/key.pem, for localhost and 127.0.0.1, valid 7 days. For examples/nginx-h2.conf and
# examples/nginx-tls.conf; tests/demo_browser.rs runs it too.
#
#   scripts/self-signed-cert.sh /tmp/realtime-h2
#
# A browser warns about it (no authority signed it): accept the warning, or start Chromium
# with --ignore-certificate-errors as the test does. Never use it beyond this machine.
set -euo pipefail
dir="${1:?usage: $0 DIR}"
mkdir -p "$dir"
# P-256: a key made in milliseconds, which every browser and nginx accept. The subjectAltName
# is what browsers check: Chromium has ignored the CN since version 58.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
echo "$dir/cert.pem $dir/key.pem"
